"""HDR histograms: µs resolution, encodings that merge without losing or re-binning samples."""

import numpy as np
import pytest

from deploykit.loadtest import hdr as load_hdr


def test_percentiles_match_numpy_within_hdr_precision():
    rng = np.random.default_rng(0)
    values = np.concatenate([rng.integers(80, 400, 9_000), rng.integers(20_000, 300_000, 1_000)])  # µs
    hist = load_hdr.new_histogram()
    for v in values:
        hist.record_value(int(v))
    stats = load_hdr.latency_stats(hist)
    assert stats.samples == len(values)
    for got, q in ((stats.p50_us, 50), (stats.p90_us, 90), (stats.p99_us, 99), (stats.p999_us, 99.9)):
        exact = np.percentile(values, q, method="inverted_cdf")
        assert got == pytest.approx(exact, rel=2e-3)
    assert stats.min_us == pytest.approx(values.min(), rel=1e-3) and stats.max_us == pytest.approx(values.max(), rel=1e-3)
    assert stats.mean_us == pytest.approx(values.mean(), rel=2e-3)


def test_sub_millisecond_values_keep_microsecond_resolution():
    hist = load_hdr.new_histogram()
    for v in (101, 102, 103, 104, 105):
        hist.record_value(v)
    assert load_hdr.latency_stats(hist).p50_us == 103  # whole-ms buckets would say 0 or 1 ms


def test_merge_of_encoded_histograms_is_their_sum():
    parts, everything = [], load_hdr.new_histogram()
    rng = np.random.default_rng(1)
    for n in (1_000, 2_345, 17):
        h = load_hdr.new_histogram()
        for v in rng.integers(50, 5_000_000, n):
            h.record_value(int(v))
            everything.record_value(int(v))
        parts.append(load_hdr.encode(h))
    merged = load_hdr.merge(parts)
    assert merged.get_total_count() == 1_000 + 2_345 + 17
    assert load_hdr.latency_stats(merged) == load_hdr.latency_stats(everything)
    assert load_hdr.latency_stats(load_hdr.decode(parts[0])).samples == 1_000


def test_empty_histogram_has_no_stats():
    assert load_hdr.latency_stats(load_hdr.new_histogram()) is None
    assert load_hdr.merge([]).get_total_count() == 0
