"""Interleaved A/B: the paired-ratio statistic, its decision rule on recorded windows, the worker's
line protocol, and two real worker processes driven by run_interleaved."""

import io
import json
import os
import sys
from pathlib import Path

import pytest

from deploykit.bench import protocol
from deploykit.bench.ab import ABWorkerError, run_interleaved, serve_windows
from deploykit.noise import classify_ratio

RECORDED = json.loads((Path(__file__).parents[1] / "fixtures" / "ab_windows.json").read_text())


def test_paired_ratio_cancels_a_shared_drift():
    # Both sides slow down together (a neighbour's burst in rounds 3–5): the pairs' ratio does not move.
    base = [100, 101, 99, 180, 190, 185, 100, 102]
    cand = [b * 1.02 for b in base]
    ratio, lo, hi = protocol.paired_ratio(base, cand)
    assert ratio == pytest.approx(1.02) and lo == pytest.approx(1.02) and hi == pytest.approx(1.02)
    assert classify_ratio([lo, hi]) == "within noise"


def test_paired_ratio_rejects_unpaired_input():
    with pytest.raises(ValueError):
        protocol.paired_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        protocol.paired_ratio([0.0], [1.0])


def test_classify_ratio_edges():
    assert classify_ratio([1.11, 1.3]) == "regression"
    assert classify_ratio([1.10, 1.3]) == "within noise"  # exactly at the margin is noise
    assert classify_ratio([0.5, 0.9]) == "improvement"
    assert classify_ratio([0.95, 1.08]) == "within noise"


@pytest.mark.parametrize("case", RECORDED["cases"], ids=lambda c: c["name"])
def test_rule_on_recorded_windows(case):
    """Window p50s recorded by benchmarks/regression_detection.py on this 2-core shared machine: the
    no-change pairs stay within noise, the 30 % slowed ones are regressions, whatever the drift."""
    _, lo, hi = protocol.paired_ratio(case["baseline_p50s_us"], case["candidate_p50s_us"])
    assert classify_ratio([lo, hi]) == case["expected"]


def test_serve_windows_line_protocol():
    calls = []
    inp = io.StringIO("w\nw\ns\nq\nw\n")  # nothing after q is read
    out = io.StringIO()
    serve_windows(lambda: calls.append(1), warmup_s=0.0, window_s=0.001, ready={"who": "test"}, inp=inp, out=out)
    lines = [json.loads(ln) for ln in out.getvalue().splitlines()]
    assert lines[0]["ready"] and lines[0]["who"] == "test" and lines[0]["warmup_calls"] >= 3
    assert [set(m) for m in lines[1:3]] == [{"p50_us", "calls"}] * 2
    assert lines[3]["latency"]["samples"] == lines[1]["calls"] + lines[2]["calls"]
    assert len(lines) == 4


_SLEEPER = """
import sys, time
sys.path[:0] = {path!r}
from deploykit.bench.ab import serve_windows
serve_windows(lambda: time.sleep({sleep}), warmup_s=0.0, window_s=0.01)
"""


def _cmd(sleep):
    return [sys.executable, "-c", _SLEEPER.format(path=sys.path, sleep=sleep)]


def test_run_interleaved_with_two_real_workers():
    # 1 ms against 3 ms sleeps: a 3× ratio that no scheduling noise on a busy machine turns into < 1.1×
    r = run_interleaved(_cmd(0.001), _cmd(0.003), rounds=4, max_rounds=6, window_s=0.01)
    assert 4 <= r["rounds"] <= 6 and r["stop_reason"] in ("narrow", "max_rounds")
    assert len(r["baseline"]["window_p50s_us"]) == len(r["candidate"]["window_p50s_us"]) == r["rounds"]
    assert r["cpu"] == max(os.sched_getaffinity(0))  # both on one CPU
    assert classify_ratio(r["ratio_ci"]) == "regression"
    assert r["candidate"]["latency"]["samples"] == sum(r["candidate"]["window_calls"])


def test_run_interleaved_names_a_worker_that_dies():
    dead = [sys.executable, "-c", "import sys; sys.stderr.write('boom: no such model\\n'); sys.exit(3)"]
    with pytest.raises(ABWorkerError, match="candidate worker exited with 3: boom: no such model"):
        run_interleaved(_cmd(0.0), dead, rounds=2, window_s=0.01)
