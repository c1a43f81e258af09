"""The noise rules every verdict in deploykit comes from: is one p50 different from another beyond noise?

Self-contained (no deploykit imports) so the bench, the report and serving can all use it without
import cycles. `report.baseline` documents the rules in words (docs/results-schema.md); `fastest`
ties configurations with them; `bench.ab` decides interleaved A/B runs with `classify_ratio`.
"""

from __future__ import annotations

from typing import Optional

__all__ = ["NOISE_FLOOR", "SEPARATION", "window_spread", "figure_spread", "noise_threshold", "classify",
           "classify_intervals", "classify_ratio"]

NOISE_FLOOR = 0.10
SEPARATION = 0.10
_EPS = 1e-9  # 110/100 − 1 is 0.10000000000000009 in floating point: exactly at the threshold is noise


def window_spread(window_p50s_us: list[float]) -> Optional[float]:
    """(max − min) / median of the per-window p50s: how much the run disagreed with itself."""
    values = sorted(v for v in window_p50s_us if v > 0)
    if len(values) < 2:
        return None
    mid = len(values) // 2
    median = values[mid] if len(values) % 2 else (values[mid - 1] + values[mid]) / 2
    return (values[-1] - values[0]) / median


def figure_spread(record) -> Optional[float]:
    """The window spread of the windows a record's figures came from: a report row's `window_spread`,
    or from a bench record's `window_p50s_us` (the last `figure_windows` of them); None without windows."""
    if hasattr(record, "window_spread"):
        return record.window_spread
    p50s = getattr(record, "window_p50s_us", None) or []
    used = getattr(record, "figure_windows", None)
    return window_spread(p50s[-used:] if used else p50s)


def noise_threshold(*spreads: Optional[float]) -> float:
    """Noise for a p50 change without intervals: the floor, or the larger spread the runs measured."""
    return max([NOISE_FLOOR, *(s for s in spreads if s is not None)])


def classify(old_p50: float, new_p50: float, noise: float) -> tuple[float, str]:
    change = new_p50 / old_p50 - 1.0
    if change > noise + _EPS:
        return change, "regression"
    if change < -noise - _EPS:
        return change, "improvement"
    return change, "within noise"


def classify_intervals(old_ci: list[float], new_ci: list[float],
                       separation: float = SEPARATION) -> tuple[float, str]:
    """(gap, verdict) from two p50 intervals [low, high]: gap = how far they separate (new low / old
    high − 1 when slower, −(old low / new high − 1) when faster, 0 when they overlap)."""
    (old_lo, old_hi), (new_lo, new_hi) = old_ci, new_ci
    if new_lo > old_hi:
        gap = new_lo / old_hi - 1.0
        return gap, "regression" if gap > separation + _EPS else "within noise"
    if new_hi < old_lo:
        gap = old_lo / new_hi - 1.0
        return -gap, "improvement" if gap > separation + _EPS else "within noise"
    return 0.0, "within noise"


def classify_ratio(ratio_ci: list[float], separation: float = SEPARATION) -> str:
    """Interleaved A/B verdict from the 95 % interval [low, high] of candidate/baseline p50
    (`protocol.paired_ratio`): "regression" only when even the low end is more than `separation`
    slower, "improvement" when even the high end is that much faster, else "within noise". The margin
    covers what pairing cannot: two processes differ a little in memory layout for good."""
    lo, hi = ratio_ci
    if lo > 1.0 + separation + _EPS:
        return "regression"
    if hi < 1.0 / (1.0 + separation) - _EPS:
        return "improvement"
    return "within noise"
