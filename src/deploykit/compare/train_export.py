"""`train-export --variants`: the comparison's variants trained by its own children and loops
(deploykit.compare.runner, one repeat) and every trained model exported and proven by deploykit's
export path (deploykit.compare.export), one model folder per variant × net."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from deploykit.errors import UsageError

__all__ = ["VariantsRun", "train_export_variants"]


@dataclass
class VariantsRun:
    results_path: Path  # the run's compare-training.json (timings, accuracy, thread settings)
    manifests: list[Path] = field(default_factory=list)
    not_exported: list[str] = field(default_factory=list)  # "model/format: why"
    not_trained: list[str] = field(default_factory=list)  # "variant net: status: why"


def train_export_variants(dataset: str, *, variants: str, nets: str = "mlp", formats="all", epochs: int,
                          batch_size: int, seed: int, out: Path, data_dir: Optional[Path] = None,
                          threads: Optional[int] = None, subset: Optional[int] = None, store: bool = True,
                          export_options: Optional[dict] = None,
                          progress: Callable[[str], None] = lambda m: None) -> VariantsRun:
    from deploykit.compare.runner import compare_training
    from deploykit.compare.variants import resolve_variants
    from deploykit.export import resolve_formats

    chosen = resolve_variants(variants)
    distributed = [v.name for v in chosen if v.processes > 1]
    if distributed:  # their model is the one-process loop's (same updates): export that variant instead
        raise UsageError(f"--variants {','.join(distributed)}: distributed variants run under compare-training; "
                         "train-export takes one-process variants (torch, keras-tape train the same model)")
    for framework in ("keras", "torch", "paddle"):  # an unknown format fails before any training
        resolve_formats(formats, framework, "mlp")
    fmt = formats if isinstance(formats, str) else ",".join(formats)
    results, path = compare_training(
        dataset, nets=nets, variants=[v.name for v in chosen], epochs=epochs, repeats=1, threads=threads,
        subset=subset, batch_size=batch_size, seed=seed, out=Path(out) / dataset / "variants", data_dir=data_dir,
        formats=fmt, models_dir=Path(out), export_options=export_options, progress=progress)
    (path.parent / "data.npz").unlink(missing_ok=True)  # the children's scratch copy of the dataset
    run = VariantsRun(results_path=path)
    for r in results.training:
        if r.status != "ok":
            run.not_trained.append(f"{r.variant} {r.net}: {r.status}: {r.reason}")
            continue
        manifest = Path(r.artifacts[0]["manifest"]) if r.artifacts else None
        if manifest is None:
            run.not_trained.append(f"{r.variant} {r.net}: exported nothing (no format of --formats applies)")
            continue
        run.manifests.append(manifest)
        run.not_exported += [f"{manifest.parent.name}/{a['format']}: {a['error']}" for a in r.artifacts
                             if a["status"] == "not exported"]
        if store:
            from deploykit.manifest import ModelManifest
            from deploykit.store import save_to_bentoml

            save_to_bentoml(manifest.parent, ModelManifest.read(manifest.parent), name=f"{dataset}-{manifest.parent.name}")
    return run
