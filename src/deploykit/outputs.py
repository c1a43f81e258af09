"""What a model's output means: probabilities or logits, and the one softmax rule for every framework.

Every artifact deploykit writes returns class probabilities. A model that already ends in softmax
is exported as it is; a model that emits logits gets a softmax appended at export. The same rule
decides what the source model's reference outputs are, so parity compares like with like.

Detection (`--outputs auto`): the outputs are probabilities when, on the probe inputs, every value
is ≥ -PROBS_ATOL and every row sums to 1 within PROBS_ATOL. Logits almost never satisfy both on a
whole probe set; a user whose logits do (or whose probabilities do not, e.g. sigmoid heads) says
`--outputs logits|probs`.
"""

from __future__ import annotations

from typing import Literal, Optional

import numpy as np

from deploykit.errors import UsageError

__all__ = ["OutputKind", "OUTPUT_CHOICES", "PROBS_ATOL", "detect_output_kind", "resolve_output_kind", "softmax",
           "to_probs", "framework_default_kind"]

OutputKind = Literal["probs", "logits"]
OUTPUT_CHOICES = ("auto", "probs", "logits")
PROBS_ATOL = 1e-3  # float32 softmax rows sum to 1 within ~1e-6; fp16 heads within ~1e-3


def softmax(z: np.ndarray) -> np.ndarray:
    z = np.asarray(z, np.float64)
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)


def detect_output_kind(raw: np.ndarray) -> OutputKind:
    raw = np.asarray(raw, np.float64)
    if raw.ndim != 2 or not np.isfinite(raw).all():
        return "logits"
    is_probs = raw.min() >= -PROBS_ATOL and np.abs(raw.sum(axis=1) - 1).max() <= PROBS_ATOL
    return "probs" if is_probs else "logits"


def resolve_output_kind(choice: str, raw: np.ndarray) -> tuple[OutputKind, str]:
    """(kind, how it was decided: "detected" or "user") for `--outputs auto|probs|logits`."""
    if choice not in OUTPUT_CHOICES:
        raise UsageError(f"--outputs {choice!r}: expected one of {', '.join(OUTPUT_CHOICES)}")
    if choice == "auto":
        return detect_output_kind(raw), "detected"
    return choice, "user"  # type: ignore[return-value]


def to_probs(raw: np.ndarray, kind: OutputKind) -> np.ndarray:
    return softmax(raw) if kind == "logits" else np.asarray(raw, np.float32)


def framework_default_kind(framework: str, kind: Optional[OutputKind]) -> OutputKind:
    """The reference models: torch (and PaddlePaddle) ones emit logits, Keras ones end in softmax."""
    if kind is not None:
        return kind
    return "logits" if framework in ("torch", "paddle") else "probs"
