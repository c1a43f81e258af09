"""Reference pipelines: which dataset, which models, which formats, which training settings.

`deploykit train-export DATASET` runs PIPELINES[DATASET]; its flags override these defaults.
"""

from __future__ import annotations

from pipelines.base import Pipeline
from pipelines.fashion_mnist import PIPELINE as FASHION_MNIST
from pipelines.mnist import PIPELINE as MNIST

__all__ = ["Pipeline", "PIPELINES"]

PIPELINES: dict[str, Pipeline] = {p.dataset: p for p in (MNIST, FASHION_MNIST)}
