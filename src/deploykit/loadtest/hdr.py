"""Latency histograms at microsecond resolution (HdrHistogram), and how they travel between processes.

Locust's own statistics round response times into whole-millisecond buckets, which hides everything
about a sub-millisecond endpoint. Every load-generating process records into HDR histograms instead
(1 µs to 10 min, 3 significant digits: ±0.1 %), ships them in HdrHistogram's compact encoding, and
the master adds them up, so no sample is lost or re-binned when workers merge.
"""

from __future__ import annotations

from typing import Iterable, Optional

from hdrh.histogram import HdrHistogram

from deploykit.bench.protocol import min_samples
from deploykit.results import LatencyStats

__all__ = ["LOWEST_US", "HIGHEST_US", "new_histogram", "encode", "decode", "merge", "latency_stats"]

LOWEST_US = 1
HIGHEST_US = 600_000_000  # 10 minutes: longer than any request timeout we allow
SIGNIFICANT_DIGITS = 3


def new_histogram() -> HdrHistogram:
    return HdrHistogram(LOWEST_US, HIGHEST_US, SIGNIFICANT_DIGITS)


def encode(hist: HdrHistogram) -> str:
    """HdrHistogram's standard compressed base64 encoding (readable by every HdrHistogram port)."""
    return hist.encode().decode("ascii")


def decode(text: str) -> HdrHistogram:
    return HdrHistogram.decode(text.encode("ascii"))


def merge(encoded: Iterable[str]) -> HdrHistogram:
    """Sum of histograms: counts add bucket by bucket, so percentiles of the merge are exact to ±0.1 %."""
    total = new_histogram()
    for text in encoded:
        total.decode_and_add(text.encode("ascii"))
    return total


def latency_stats(hist: HdrHistogram) -> Optional[LatencyStats]:
    """Percentiles, mean and spread in µs; None for an empty histogram (nothing to describe).
    A tail percentile with too few samples behind it is withheld by the same rule as `bench`
    (`protocol.min_samples`: p90 needs 100, p99 1,000, p99.9 10,000)."""
    n = hist.get_total_count()
    if n == 0:
        return None
    qs = {"p50_us": 50.0, "p90_us": 90.0, "p99_us": 99.0, "p999_us": 99.9}
    p = hist.get_percentile_to_value_dict(list(qs.values()))
    figures, withheld = {}, {}
    for name, q in qs.items():
        need = min_samples(q)
        if q <= 50 or n >= need:
            figures[name] = float(p[q])
        else:
            figures[name] = None
            withheld[name] = f"too few samples: {n:,} < {need:,}"
    return LatencyStats(
        samples=n, **figures, withheld=withheld,
        mean_us=round(float(hist.get_mean_value()), 2), std_us=round(float(hist.get_stddev()), 2),
        min_us=float(hist.get_min_value()), max_us=float(hist.get_max_value()),
    )
