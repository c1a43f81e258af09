"""Regressions and improvements beyond noise: max(10 %, the spread each run measured)."""

from pathlib import Path

import pytest

from deploykit.report.baseline import NOISE_FLOOR, classify, noise_threshold, window_spread
from deploykit.report.compare import build_report
from deploykit.report.inputs import load_baseline, load_inputs
from deploykit.results import read_results

FIXTURES = Path(__file__).parents[1] / "fixtures" / "results"


def test_window_spread_is_range_over_median():
    assert window_spread([100.0, 110.0, 90.0]) == pytest.approx(0.2)
    assert window_spread([100.0, 102.0, 98.0, 101.0]) == pytest.approx(4 / 100.5)
    assert window_spread([100.0]) is None and window_spread([]) is None


def test_noise_is_at_least_ten_percent_or_the_measured_spread():
    assert noise_threshold() == NOISE_FLOOR == 0.10
    assert noise_threshold(0.03, None) == 0.10
    assert noise_threshold(0.03, 0.25) == 0.25


@pytest.mark.parametrize("old,new,noise,verdict", [
    (100.0, 111.0, 0.10, "regression"),
    (100.0, 110.0, 0.10, "within noise"),  # exactly at the threshold does not count
    (100.0, 89.0, 0.10, "improvement"),
    (100.0, 120.0, 0.25, "within noise"),
    (100.0, 130.0, 0.25, "regression"),
])
def test_classify(old, new, noise, verdict):
    change, got = classify(old, new, noise)
    assert got == verdict and change == pytest.approx(new / old - 1)


def _diff(summary, **key):
    (d,) = [d for d in summary.diffs if all(d.key.get(k) == v for k, v in key.items())]
    return d


def test_fixture_run_against_its_baseline():
    report = build_report(load_inputs([FIXTURES / "bench-cpu.json"]), load_baseline([FIXTURES / "bench-cpu-baseline.json"]))
    b = report.baseline
    assert b.counts == {"regression": 1, "improvement": 1, "missing": 1, "new": 2, "within noise": 12}
    reg = _diff(b, model="torch-mlp", format="onnx", batch=1)
    assert reg.verdict == "regression" and reg.change == pytest.approx(12.6 / 9.8 - 1) and reg.noise == 0.10
    imp = _diff(b, model="keras-cnn", format="tflite-int8", batch=32)
    assert imp.verdict == "improvement" and imp.change == pytest.approx(1010 / 1420 - 1)
    # +15 % would be a regression under a flat 10 % rule; this run's windows spread 44 %, so it is noise
    noisy = _diff(b, model="keras-cnn", format="savedmodel", batch=1)
    assert noisy.change == pytest.approx(3500 / 3050 - 1) and noisy.noise == pytest.approx(0.44)
    assert noisy.verdict == "within noise" and "did not agree" in noisy.note
    assert _diff(b, model="torch-mlp", format="onnx", batch=8).verdict == "missing"
    assert _diff(b, model="keras-cnn", format="tflite-qat", batch=1).verdict == "new"
    assert [d.verdict for d in b.diffs[:2]] == ["regression", "improvement"]  # the news first
    assert {report.source(d.baseline_source).role for d in b.diffs if d.baseline_source} == {"baseline"}


def test_unavailable_now_is_not_comparable(tmp_path):
    results = read_results(FIXTURES / "bench-cpu.json")
    for r in results.records:
        if r.model == "torch-mlp" and r.format == "onnx":
            r.status, r.reason, r.latency = "unavailable", "onnxruntime missing", None
    now = results.write(tmp_path / "now.json")
    report = build_report(load_inputs([now]), load_baseline([FIXTURES / "bench-cpu.json"]))
    d = _diff(report.baseline, model="torch-mlp", format="onnx", batch=1)
    assert d.verdict == "not comparable" and d.note == "now: unavailable"


def test_same_host_is_preferred_when_a_key_was_measured_on_two_machines(tmp_path):
    other = read_results(FIXTURES / "bench-cpu-baseline.json")
    other.machine.hostname = "laptop"
    for r in other.records:
        if r.latency:
            r.latency.p50_us *= 10  # a slow other machine: would be a large "improvement" if matched
    laptop = other.write(tmp_path / "laptop.json")
    report = build_report(load_inputs([FIXTURES / "bench-cpu.json"]),
                          load_baseline([laptop, FIXTURES / "bench-cpu-baseline.json"]))
    d = _diff(report.baseline, model="torch-mlp", format="onnx", batch=1)
    assert d.verdict == "regression" and report.source(d.baseline_source).machine.hostname == "ci-runner-7"


def test_load_steps_compare_on_url_path_mode_and_level(tmp_path):
    slower = read_results(FIXTURES / "loadtest.json")
    slower.url = "http://127.0.0.1:41234/predict"  # another port, same endpoint
    for s in slower.steps:
        if s.mode == "closed" and s.concurrency == 16:
            s.latency.p50_us *= 1.5
    now = slower.write(tmp_path / "now.json")
    report = build_report(load_inputs([now]), load_baseline([FIXTURES / "loadtest.json"]))
    c16 = _diff(report.baseline, mode="closed", concurrency=16)
    assert c16.kind == "loadtest" and c16.verdict == "regression" and c16.change == pytest.approx(0.5)
    assert _diff(report.baseline, mode="closed", concurrency=1).verdict == "within noise"
    assert _diff(report.baseline, mode="open", rate_rps=500.0).verdict == "within noise"


# Window medians (µs) and calls per window recorded by benchmarks/regression_detection.py (ONNX MLP,
# batch 32, one thread, 0.3 s): a baseline, a rerun with no change, and a rerun with a 30 % slowdown.
RECORDED = {"base": [197.8, 198.9, 198.5], "same": [197.9, 200.2, 201.8], "slowed": [263.8, 264.2, 263.4]}
RECORDED_CALLS = {"base": 491, "same": 492, "slowed": 375}


def _recorded_interval(name):
    import numpy as np

    from deploykit.bench.protocol import p50_interval

    return list(p50_interval([np.full(RECORDED_CALLS[name], int(v * 1000)) for v in RECORDED[name]]))


def test_interval_rule_on_recorded_windows():
    from deploykit.report.baseline import SEPARATION, classify_intervals

    base, same, slowed = (_recorded_interval(n) for n in ("base", "same", "slowed"))
    assert classify_intervals(base, same)[1] == "within noise"
    gap, verdict = classify_intervals(base, slowed)
    assert verdict == "regression" and gap > SEPARATION
    gap, verdict = classify_intervals(slowed, base)
    assert verdict == "improvement" and gap < -SEPARATION


@pytest.mark.parametrize("old,new,verdict", [
    ([100.0, 105.0], [104.0, 110.0], "within noise"),   # overlapping
    ([100.0, 105.0], [115.0, 120.0], "within noise"),   # apart, but by under 10 %
    ([100.0, 105.0], [116.0, 120.0], "regression"),     # 116 / 105 − 1 = 10.5 %
    ([100.0, 105.0], [80.0, 90.0], "improvement"),      # 100 / 90 − 1 = 11 %
])
def test_classify_intervals_needs_separation_beyond_the_margin(old, new, verdict):
    from deploykit.report.baseline import classify_intervals

    assert classify_intervals(old, new)[1] == verdict


def test_baseline_uses_intervals_when_both_records_carry_them(tmp_path):
    def with_ci(path, scale, out):
        results = read_results(path)
        for r in results.records:
            if r.latency:
                r.latency.p50_us *= scale
                r.latency.p50_ci_us = [r.latency.p50_us * 0.98, r.latency.p50_us * 1.02]
        return results.write(tmp_path / out)

    old = with_ci(FIXTURES / "bench-cpu.json", 1.0, "old.json")
    noisy = with_ci(FIXTURES / "bench-cpu.json", 1.12, "noisy.json")  # +12 %: the flat 10 % rule would flag it
    report = build_report(load_inputs([noisy]), load_baseline([old]))
    d = _diff(report.baseline, model="torch-mlp", format="onnx", batch=1)
    assert d.verdict == "within noise" and d.change == pytest.approx(0.12) and "95 % intervals" in d.note
    assert "regression" not in report.baseline.counts
    slow = with_ci(FIXTURES / "bench-cpu.json", 1.3, "slow.json")
    report = build_report(load_inputs([slow]), load_baseline([old]))
    assert _diff(report.baseline, model="torch-mlp", format="onnx", batch=1).verdict == "regression"
