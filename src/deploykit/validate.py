"""Proof of an artifact: it loads in its own runtime, scores the test set, and matches the framework model.

Bars come from the exporter class (issue #2): float formats top-1 agreement ≥ 99.9 % and
max |Δp| ≤ 1e-4 (fp16 ≤ 1e-2); int8 formats top-1 agreement ≥ 98 % and accuracy within one point
of the float32 model. Every shortfall is collected into one message rather than stopping at the first.

A proof also says how strong it is (`reference_strength`): when the reference outputs barely vary
across the probe inputs, or put every input in one class, the bars cannot tell the artifact from a
constant function, and the parity is marked weak with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from deploykit.manifest import Parity
from deploykit.runtimes.base import Predictor

__all__ = ["PARITY_SAMPLES", "Proof", "prove", "accuracy", "predict_batched", "eval_batch", "parity",
           "reference_strength", "MIN_SPREAD"]

PARITY_SAMPLES = 1000
EVAL_BATCH = 1000
# Values per evaluation call: 1,000 MNIST images, fewer samples of a larger input. Activations grow
# with the batch: MobileNetV2 at 96×96×3 in batches of 1,000 peaked at 16.9 GB RSS, in batches of
# 64 at 2.0 GB (measured here, 2,000 inputs through Keras).
EVAL_VALUES = EVAL_BATCH * 28 * 28
# Weak when every class's probability spans less than this across the probe inputs: the constant
# artifact returning the midpoints is then within MIN_SPREAD/2 = 1e-4 (the strictest |Δp| bar) of
# every reference row, so the float bar holds for it as well as for a faithful artifact.
MIN_SPREAD = 2e-4


def reference_strength(ref: np.ndarray) -> tuple[str, Optional[str]]:
    """("strong", None) or ("weak", reason) for reference probabilities (N×classes)."""
    ref = np.asarray(ref, np.float64)
    if len(ref) < 2:
        return "weak", f"only {len(ref)} reference input"
    spread = float((ref.max(axis=0) - ref.min(axis=0)).max())
    if not spread >= MIN_SPREAD:
        return "weak", (f"reference outputs near-constant across {len(ref)} inputs (largest per-class "
                        f"spread {spread:.1e} < {MIN_SPREAD:.0e}): a constant artifact would pass")
    top = np.unique(ref.argmax(axis=1))
    if len(top) == 1 and ref.shape[1] > 1:
        return "weak", (f"every one of {len(ref)} reference inputs is predicted as class {int(top[0])}: "
                        "top-1 agreement tests one class only")
    return "strong", None


@dataclass
class Proof:
    accuracy: Optional[float]
    test_samples: int
    parity: Parity
    failures: list[str]

    @property
    def passed(self) -> bool:
        return not self.failures


def eval_batch(x: np.ndarray) -> int:
    """Samples per evaluation call for inputs like `x`: EVAL_BATCH, or fewer so a call holds ≤ EVAL_VALUES values."""
    per_sample = max(1, int(np.prod(x.shape[1:])))
    return max(1, min(EVAL_BATCH, EVAL_VALUES // per_sample))


def predict_batched(predict, x: np.ndarray, batch: Optional[int] = None) -> np.ndarray:
    batch = batch or eval_batch(x)
    return np.concatenate([predict(x[i : i + batch]) for i in range(0, len(x), batch)])


def accuracy(probs: np.ndarray, y: np.ndarray) -> float:
    return float((probs.argmax(1) == y).mean())


def parity(ref: np.ndarray, got: np.ndarray, *, atol: Optional[float], min_top1: float,
           acc_drop: Optional[float] = None, max_acc_drop: Optional[float] = None) -> tuple[Parity, list[str]]:
    """Compare probabilities of the artifact (`got`) with the framework model's (`ref`)."""
    diff = float(np.abs(ref.astype(np.float64) - got.astype(np.float64)).max())
    agree = float((ref.argmax(1) == got.argmax(1)).mean())
    failures = []
    if atol is not None and not diff <= atol:  # `not <=` also catches NaN
        failures.append(f"max |Δp| {diff:.2e} > {atol:.0e}")
    if agree < min_top1:
        failures.append(f"top-1 agreement {agree:.2%} < {min_top1:.1%}")
    if max_acc_drop is not None and acc_drop is not None and acc_drop > max_acc_drop:
        failures.append(f"accuracy {acc_drop:.2f} points below float32 (allowed {max_acc_drop})")
    strength, weak_reason = reference_strength(ref)
    result = Parity(samples=len(ref), max_abs_diff=diff, top1_agreement=agree, atol=atol,
                    min_top1_agreement=min_top1, accuracy_drop_points=acc_drop, max_accuracy_drop_points=max_acc_drop,
                    passed=not failures, strength=strength, weak_reason=weak_reason)
    return result, failures


def prove(predictor: Predictor, exporter, x_test: np.ndarray, y_test: Optional[np.ndarray],
          reference_probs: np.ndarray, float_accuracy: Optional[float]) -> Proof:
    """Score `predictor` on the whole test set and compare its first len(reference_probs) outputs.

    `reference_probs` are the framework model's probabilities on x_test[:len(reference_probs)];
    `y_test` None means no labels apply (a user's model on seeded random inputs): parity only.
    """
    probs = predict_batched(predictor.predict, x_test)
    acc = accuracy(probs, y_test) if y_test is not None else None
    drop = None
    if acc is not None and float_accuracy is not None:
        drop = round((float_accuracy - acc) * 100, 4)
    par, failures = parity(reference_probs, probs[: len(reference_probs)], atol=exporter.atol,
                           min_top1=exporter.min_top1_agreement, acc_drop=drop,
                           max_acc_drop=exporter.max_accuracy_drop_points)
    if not np.isfinite(probs).all():
        failures.insert(0, "non-finite outputs")
    return Proof(accuracy=acc, test_samples=len(x_test), parity=par, failures=failures)
