"""What every training loop hands back to the child: per-epoch figures and a way to predict."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

__all__ = ["Trained", "RunConfig", "test_figures"]


@dataclass(frozen=True)
class RunConfig:
    net: str  # mlp | cnn
    epochs: int
    batch_size: int
    seed: int
    threads: int
    log_dir: str  # this run's TensorBoard folder


@dataclass
class Trained:
    epoch_s: list[float]
    train_loss: list[float]
    train_acc: list[float]
    predict: Callable[[np.ndarray], np.ndarray]  # canonical float32 N×28×28 → class probabilities
    model: Any = None
    versions: dict = field(default_factory=dict)
    extra: dict = field(default_factory=dict)
    logged_train: bool = False  # the framework's own TensorBoard writer already logged the epochs


def test_figures(probs: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) from probabilities: one rule for every framework."""
    p = np.clip(probs[np.arange(len(y)), y].astype(np.float64), 1e-7, 1.0)  # Keras' epsilon
    return float((probs.argmax(1) == y).mean()), float(-np.log(p).mean())
