from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Pipeline"]


@dataclass(frozen=True)
class Pipeline:
    dataset: str
    models: tuple[str, ...] | str = "all"
    formats: tuple[str, ...] | str = "all"
    epochs: int = 10
    batch_size: int = 32
    seed: int = 0
    qat_epochs: int = 1
    calibration_samples: int = 500  # representative training images for int8 calibration
    qat_samples: int = 10_000  # training images for quantization-aware fine-tuning
    description: str = ""
