"""compare-training: the same networks trained by each framework, API, execution style and backend.

Every variant runs in its own child process (`python -m deploykit.compare.child`): Keras reads
KERAS_BACKEND once, at import, and a fresh process gives each variant its own peak-memory figure.
The data is prepared once by the parent (deploykit.data, normalised, with one seeded order per
epoch) and handed to every child as an .npz, so data cost and order are the same for all.
"""

__all__ = ["VARIANTS", "Variant", "resolve_variants", "compare_training"]

from deploykit.compare.variants import VARIANTS, Variant, resolve_variants  # noqa: E402


def compare_training(*args, **kwargs):
    from deploykit.compare.runner import compare_training as run

    return run(*args, **kwargs)
