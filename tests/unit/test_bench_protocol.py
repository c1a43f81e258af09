"""The measurement protocol on a scripted clock: window logic, stop rule and statistics, deterministically.

The fake call advances a fake clock by a scripted duration, so every "timed" figure is known exactly
and nothing depends on this machine's speed.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deploykit.bench import protocol
from deploykit.bench.protocol import first_call, latency_stats, measure, peak_rss_bytes, windows_agree
from deploykit.results import LatencyStats


class ScriptedCall:
    """A clock (ns) that only moves when the call runs, by `duration(i)` for the i-th call."""

    def __init__(self, duration):
        self.now = 0
        self.i = 0
        self.duration = duration
        self.syncs = 0

    def clock(self) -> int:
        return self.now

    def __call__(self):
        self.now += int(self.duration(self.i))
        self.i += 1

    def sync(self):
        self.syncs += 1


def test_latency_stats_matches_numpy_percentiles_in_microseconds():
    ns = np.random.default_rng(1).lognormal(mean=10, sigma=0.5, size=10001)
    d = latency_stats(ns)
    us = ns / 1e3
    for key, q in (("p50_us", 50), ("p90_us", 90), ("p99_us", 99), ("p999_us", 99.9)):
        assert d[key] == pytest.approx(np.percentile(us, q), rel=1e-12)
    assert d["mean_us"] == pytest.approx(us.mean()) and d["std_us"] == pytest.approx(us.std())
    assert (d["min_us"], d["max_us"], d["samples"]) == (us.min(), us.max(), 10001) and d["withheld"] == {}
    LatencyStats(**d)  # the results schema takes it as is
    json.dumps(d)


def test_latency_stats_on_a_known_array():
    d = latency_stats([1000, 2000, 3000, 4000, 5000])  # 1..5 µs
    assert (d["p50_us"], d["min_us"], d["max_us"], d["mean_us"]) == (3.0, 1.0, 5.0, 3.0)
    assert d["p90_us"] is None and "p90_us" in d["withheld"]  # 5 samples are too few for p90
    with pytest.raises(ValueError):
        latency_stats([])


@pytest.mark.parametrize("p50s,ok", [([10, 10.5, 11.0], True), ([10, 11.0, 10.2], True), ([10, 11.01, 10], False),
                                     ([50, 10, 10, 10.9], True), ([10, 10], False), ([0, 0, 0], True)])
def test_windows_agree_means_max_over_min_within_tolerance(p50s, ok):
    assert windows_agree(p50s, 0.10) is ok


def test_constant_call_stops_after_three_agreeing_windows_once_min_time_is_reached():
    fake = ScriptedCall(lambda i: 10_000)  # 10 µs per call
    r = measure(fake, warmup_s=0.001, min_time_s=0.05, window_s=0.01, max_windows=50, clock=fake.clock)
    # 0.01 s windows of 10 µs calls = 1,000 calls each; min time 0.05 s needs five windows.
    assert r["windows"] == 5 and r["window_calls"] == [1000] * 5
    assert r["stable"] is True and r["stop_reason"] == "stable"
    assert r["window_p50s_us"] == [10.0] * 5
    assert r["latency"]["samples"] == r["calls"] == 5000
    assert r["latency"]["p50_us"] == r["latency"]["p99_us"] == 10.0 and r["latency"]["std_us"] == 0.0
    assert r["latency"]["p999_us"] is None  # 5,000 samples: too few for p99.9
    assert r["latency"]["p50_ci_us"] == [10.0, 10.0] and r["figure_windows"] == 5
    assert r["measured_s"] == pytest.approx(0.05) and r["calls_per_s"] == pytest.approx(100_000)
    assert r["warmup_calls"] == 100 and r["warmup_s"] == pytest.approx(0.001)
    assert fake.i == 100 + 5000  # warm-up calls are run but not recorded
    assert r["clock_overhead_us"] == 0.0
    json.dumps(r)


def test_drifting_call_keeps_measuring_until_windows_agree():
    # Calls slow down 1.5x per window for the first windows (e.g. a CPU clocking down), then settle.
    def duration(i):
        window = i // 100
        return 1_000_000 * (1.5 ** min(window, 4))

    fake = ScriptedCall(duration)
    r = measure(fake, warmup_s=0, min_warmup_calls=0, min_time_s=0, window_s=0.001, max_windows=50, clock=fake.clock,
                min_window_calls=100, max_window_calls=100)
    assert r["stable"] is True
    p50s = r["window_p50s_us"]
    assert windows_agree(p50s, 0.10) and not windows_agree(p50s[:-1], 0.10)  # stopped at the first agreement
    assert p50s[:3] == [1000.0, 1500.0, 2250.0]


def test_unsteady_call_reports_unstable_at_max_windows():
    # Alternating slow/fast windows never agree: the result says so instead of pretending.
    fake = ScriptedCall(lambda i: 1_000_000 if (i // 10) % 2 else 2_000_000)
    r = measure(fake, warmup_s=0, min_warmup_calls=0, min_time_s=0, window_s=0.001, max_windows=7, clock=fake.clock,
                min_window_calls=10, max_window_calls=10)
    assert r["windows"] == 7 and r["stable"] is False and r["stop_reason"] == "max_windows"
    assert r["calls"] == 70 and r["window_calls"] == [10] * 7


def test_max_time_bounds_a_slow_call():
    fake = ScriptedCall(lambda i: 1_000_000_000 if i % 20 < 10 else 3_000_000_000)  # 1 s / 3 s calls
    r = measure(fake, warmup_s=0, min_warmup_calls=0, min_time_s=1, window_s=0.5, max_windows=100, max_time_s=25,
                clock=fake.clock, min_window_calls=10)
    # window 1: ten 1 s calls (10 s); window 2: ten 3 s calls (40 s in all, past the 25 s bound).
    assert r["stop_reason"] == "max_time" and r["stable"] is False
    assert r["windows"] == 2 and r["measured_s"] == 40


def test_window_call_cap_bounds_samples_of_a_fast_call():
    fake = ScriptedCall(lambda i: 50)  # 50 ns calls: 0.1 s windows would hold 2 M samples
    r = measure(fake, warmup_s=0, min_time_s=0, window_s=0.1, max_window_calls=1000, clock=fake.clock)
    assert fake.i == 3 + 3000  # three warm-up calls (the minimum), then three capped windows
    assert r["window_calls"] == [1000] * r["windows"] and r["windows"] == 3


def test_sync_runs_inside_every_timed_call():
    fake = ScriptedCall(lambda i: 1000)
    r = measure(fake, sync=fake.sync, warmup_s=0, min_warmup_calls=2, min_time_s=0, window_s=1e-6,
                min_window_calls=5, clock=fake.clock)
    assert fake.syncs == fake.i == 2 + r["calls"]


def test_measure_rejects_nonsense_settings():
    with pytest.raises(ValueError):
        measure(lambda: None, window_s=0)
    with pytest.raises(ValueError):
        measure(lambda: None, max_windows=0)


def test_first_call_returns_result_and_milliseconds():
    fake = ScriptedCall(lambda i: 2_500_000)
    result, ms = first_call(lambda: (fake(), "done")[1], clock=fake.clock)
    assert (result, ms) == ("done", 2.5)


def test_peak_rss_is_at_least_current_rss():
    peak, now = peak_rss_bytes(), protocol.current_rss_bytes()
    assert peak is not None and now is not None and peak >= now > 1_000_000


def test_protocol_runs_standalone_without_deploykit(tmp_path):
    """The edge runner ships this one file to a device: it must import with numpy alone."""
    src = Path(protocol.__file__).read_text()
    assert "deploykit" not in "".join(line for line in src.splitlines() if line.lstrip().startswith(("import", "from")))
    (tmp_path / "protocol.py").write_text(src)
    code = ("import sys, json; sys.path.insert(0, '.'); sys.modules.pop('deploykit', None); import protocol; "
            "r = protocol.measure(lambda: sum(range(50)), min_time_s=0.01, window_s=0.005, warmup_s=0.001); "
            "assert 'deploykit' not in sys.modules; print(json.dumps(r))")
    out = subprocess.run([sys.executable, "-I", "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["latency"]["samples"] > 0


def test_figures_come_from_the_steady_windows_not_a_blend_with_the_settling_ones():
    # The onnx-int8 batch 8: 1439, 1438, 1387 µs, then 942, 888, 906 µs. The old p50 over all
    # six (1169 µs) described neither level and was called stable.
    levels = [1439, 1438, 1387, 942, 888, 906]
    fake = ScriptedCall(lambda i: levels[min(i // 100, 5)] * 1000)
    r = measure(fake, warmup_s=0, min_warmup_calls=0, min_time_s=100, window_s=1e-9, max_windows=6, clock=fake.clock,
                min_window_calls=100, max_window_calls=100)
    assert r["windows"] == 6 and r["stop_reason"] == "max_windows"
    assert r["stable"] is True and r["figure_windows"] == 3  # the last three agree, and only they count
    assert r["latency"]["samples"] == 300 and r["latency"]["p50_us"] == 906.0
    assert r["latency"]["max_us"] == 942.0  # nothing from the settling windows
    lo, hi = r["latency"]["p50_ci_us"]
    assert 888.0 <= lo <= 906.0 <= hi <= 942.0
    assert r["calls"] == 600  # every window's calls are still counted as run


@pytest.mark.parametrize("p50s,start", [([1439, 1438, 1387, 942, 888, 906], 3), ([10, 10, 10, 10], 0),
                                        ([10, 20, 10, 20], None), ([50, 10, 10.5], None), ([9, 10, 10.5, 10.2], 1)])
def test_steady_start_is_the_longest_agreeing_tail_of_three_or_more(p50s, start):
    assert protocol.steady_start(p50s, 0.10) == start


def test_min_time_counts_only_the_steady_windows():
    # Two slow settling windows, then steady ones: min_time 0.3 s needs three steady 0.1 s windows.
    fake = ScriptedCall(lambda i: 2_000_000 if i < 100 else 1_000_000)
    r = measure(fake, warmup_s=0, min_warmup_calls=0, min_time_s=0.3, window_s=0.1, clock=fake.clock,
                min_window_calls=1)
    assert r["window_p50s_us"][:2] == [2000.0, 2000.0] and r["stable"] is True
    assert r["figure_windows"] == 3 and r["windows"] == 5 and r["latency"]["max_us"] == 1000.0


def test_tail_percentiles_are_withheld_without_enough_samples():
    assert [protocol.min_samples(q) for q in (90, 99, 99.9)] == [100, 1000, 10000]
    d = latency_stats(np.arange(1, 60) * 1000)  # 59 samples: a batch-32 record at the default 0.5 s
    assert d["p50_us"] == 30.0 and d["p90_us"] is None and d["p99_us"] is None and d["p999_us"] is None
    assert d["withheld"]["p99_us"] == "too few samples: 59 < 1,000"
    d = latency_stats(np.arange(1, 1001) * 1000)
    assert d["p99_us"] == pytest.approx(990.01) and d["p999_us"] is None and set(d["withheld"]) == {"p999_us"}
    LatencyStats(**d)


def test_p50_interval_resamples_windows_and_spans_their_medians():
    same = [np.full(100, 1000)] * 5
    assert protocol.p50_interval(same) == (1.0, 1.0)
    spread = [np.full(100, v) for v in (1000, 1050, 1100, 950, 1020)]
    lo, hi = protocol.p50_interval(spread)
    assert 0.95 <= lo < 1.02 < hi <= 1.1
    assert protocol.p50_interval(spread) == (lo, hi)  # seeded: the same data give the same interval
