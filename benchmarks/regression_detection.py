"""Benchmark: does regression detection hold under noise? Hit rates of the decision rules.

Target (issue #10, part 3): on this noisy shared machine, two runs with no code change report
0 regressions in ≥ 9 of 10 paired trials, while an injected 30 % slowdown is caught in ≥ 9 of 10.

A tiny ONNX MLP (built with onnx.helper, random weights, 784 → 512 → 512 → 10) at batch 1 and 32.
The slowdown wraps the runtime call and spins (a sleep with µs accuracy) for 30 % of the time that
very call took. One trial, per batch:
- interleaved A/B (what `deploykit bench-ab` runs): `deploykit.bench.ab.run_interleaved` with a
  plain baseline worker and a plain (no change) or slowed candidate worker, each its own process,
  measured alternately window by window; verdict `deploykit.noise.classify_ratio`;
- for contrast, separate runs (what `report --baseline` compares): baseline, no-change and slowed runs
  each in a fresh process with `deploykit.bench.protocol.measure`, verdict from
  `classify_intervals` (95 % p50 intervals must separate by 10 %).
A trial counts as clean when neither batch reports a regression, as caught when both slowed ones do.

    .venv/bin/python benchmarks/regression_detection.py                 # 10 trials, ~4 minutes
    .venv/bin/python benchmarks/regression_detection.py --trials 3 --no-contrast

Measured 2026-12-02, 10 trials, load average 5–9 on 2 shared cores, 460 s: interleaved A/B no change
clean 10/10, slowdown caught 10/10 (no-change ratios ×0.959–×1.052, highest interval low end 1.030;
slowed ×1.29–×1.84); separate runs, interval rule 8/10 and 7/10; old flat rule 7/10 and 7/10.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SLOWDOWN = 0.30
BATCHES = (1, 32)


def build_model(path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    dims = [784, 512, 512, 10]
    inits, nodes, prev = [], [], "x"
    for i, (a, b) in enumerate(zip(dims, dims[1:])):
        inits += [numpy_helper.from_array((rng.standard_normal((a, b)) / np.sqrt(a)).astype(np.float32), f"w{i}"),
                  numpy_helper.from_array(np.zeros(b, np.float32), f"b{i}")]
        nodes += [helper.make_node("MatMul", [prev, f"w{i}"], [f"m{i}"]),
                  helper.make_node("Add", [f"m{i}", f"b{i}"], [f"a{i}"])]
        prev = f"a{i}"
        if i < len(dims) - 2:
            nodes.append(helper.make_node("Relu", [prev], [f"r{i}"]))
            prev = f"r{i}"
    graph = helper.make_graph(nodes, "mlp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 784])],
                              [helper.make_tensor_value_info(prev, TensorProto.FLOAT, [None, 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))


def make_call(model: str, batch: int, slow: float):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    feed = {"x": np.random.default_rng(1).random((batch, 784), dtype=np.float32)}
    clock = time.perf_counter_ns

    def call():
        t0 = clock()
        sess.run(None, feed)
        if slow:  # the injected regression: spin for `slow` × this call's own time
            until = clock() + int((clock() - t0) * slow)
            while clock() < until:
                pass

    return call


def worker(model: str, batch: int, slow: float, min_time: float) -> None:
    """One separate measurement in this fresh process; prints the protocol's result as JSON."""
    from deploykit.bench import protocol

    m = protocol.measure(make_call(model, batch, slow), min_time_s=min_time)
    print(json.dumps({k: m[k] for k in ("latency", "window_p50s_us", "figure_windows", "stable")}))


def ab_worker(model: str, batch: int, slow: float, window_s: float) -> None:
    """One side of an interleaved A/B run: serve windows on stdin/stdout."""
    from deploykit.bench.ab import serve_windows

    serve_windows(make_call(model, batch, slow), window_s=window_s)


def run_ab(model: Path, batch: int, slow: float, rounds: int, max_rounds: int, window_s: float) -> dict:
    from deploykit.bench.ab import run_interleaved

    cmd = lambda s: [sys.executable, __file__, "--ab-worker", str(model), str(batch), str(s), str(window_s)]  # noqa: E731
    return run_interleaved(cmd(0.0), cmd(slow), rounds=rounds, max_rounds=max_rounds, window_s=window_s)


def run_one(model: Path, batch: int, slow: float, min_time: float) -> dict:
    out = subprocess.run([sys.executable, __file__, "--worker", str(model), str(batch), str(slow), str(min_time)],
                         capture_output=True, text=True, timeout=120, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def verdicts(old: dict, new: dict) -> tuple[str, str]:
    from deploykit.report.baseline import classify, classify_intervals, noise_threshold, window_spread

    def spread(r):
        return window_spread(r["window_p50s_us"][-r["figure_windows"]:])

    _, ci_rule = classify_intervals(old["latency"]["p50_ci_us"], new["latency"]["p50_ci_us"])
    _, flat = classify(old["latency"]["p50_us"], new["latency"]["p50_us"], noise_threshold(spread(old), spread(new)))
    return ci_rule, flat


def main() -> int:
    from deploykit.bench.ab import DEFAULT_AB_WINDOW_S, DEFAULT_MAX_ROUNDS, DEFAULT_ROUNDS
    from deploykit.noise import classify_ratio

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--rounds", type=int, default=DEFAULT_ROUNDS, help="A/B least rounds (pairs of windows)")
    ap.add_argument("--max-rounds", type=int, default=DEFAULT_MAX_ROUNDS, help="A/B most rounds")
    ap.add_argument("--window", type=float, default=DEFAULT_AB_WINDOW_S, help="A/B window seconds")
    ap.add_argument("--min-time", type=float, default=0.3, help="separate runs: protocol min_time_s (bench's default: 0.5)")
    ap.add_argument("--no-contrast", action="store_true", help="skip the separate-runs rule")
    ap.add_argument("--record", type=Path, help="write every A/B run's window p50s here (JSON)")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    ap.add_argument("--ab-worker", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker[0], int(a.worker[1]), float(a.worker[2]), float(a.worker[3]))
        return 0
    if a.ab_worker:
        ab_worker(a.ab_worker[0], int(a.ab_worker[1]), float(a.ab_worker[2]), float(a.ab_worker[3]))
        return 0
    t_start = time.perf_counter()
    rules = ["ab"] + ([] if a.no_contrast else ["intervals", "flat"])
    clean = dict.fromkeys(rules, 0)
    recorded = []
    caught = dict.fromkeys(rules, 0)
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "mlp.onnx"
        build_model(model)
        for t in range(1, a.trials + 1):
            same = {r: [] for r in rules}
            slowed = {r: [] for r in rules}
            line = []
            for batch in BATCHES:
                ab_same = run_ab(model, batch, 0.0, a.rounds, a.max_rounds, a.window)
                ab_slow = run_ab(model, batch, SLOWDOWN, a.rounds, a.max_rounds, a.window)
                for name, r in (("same", ab_same), ("slowed", ab_slow)):
                    recorded.append({"name": f"trial{t}-b{batch}-{name}", "ratio": r["ratio"], "ratio_ci": r["ratio_ci"],
                                     "baseline_p50s_us": r["baseline"]["window_p50s_us"],
                                     "candidate_p50s_us": r["candidate"]["window_p50s_us"]})
                same["ab"].append(classify_ratio(ab_same["ratio_ci"]))
                slowed["ab"].append(classify_ratio(ab_slow["ratio_ci"]))
                ci = lambda r: f"{r['ratio']:.3f} [{r['ratio_ci'][0]:.3f}, {r['ratio_ci'][1]:.3f}] {r['rounds']}r"  # noqa: E731
                text = (f"b{batch}: A/B same {ci(ab_same)}→{same['ab'][-1]}, "
                        f"slowed {ci(ab_slow)}→{slowed['ab'][-1]}")
                if not a.no_contrast:
                    base = run_one(model, batch, 0.0, a.min_time)
                    again = run_one(model, batch, 0.0, a.min_time)
                    slow = run_one(model, batch, SLOWDOWN, a.min_time)
                    for bucket, new in ((same, again), (slowed, slow)):
                        ci_rule, flat = verdicts(base, new)
                        bucket["intervals"].append(ci_rule)
                        bucket["flat"].append(flat)
                    p = lambda r: r["latency"]["p50_us"]  # noqa: E731
                    text += (f"; separate runs p50 {p(base):.1f} / {p(again):.1f} ({p(again) / p(base) - 1:+.0%}) / "
                             f"{p(slow):.1f} ({p(slow) / p(base) - 1:+.0%}) µs, "
                             f"same→{same['intervals'][-1]}, slowed→{slowed['intervals'][-1]}")
                line.append(text)
            for rule in rules:
                clean[rule] += "regression" not in same[rule]
                caught[rule] += all(v == "regression" for v in slowed[rule])
            print(f"trial {t:2d}: " + "; ".join(line), flush=True)
    if a.record:
        a.record.write_text(json.dumps({"cases": recorded}, indent=1) + "\n")
    n = a.trials
    print(f"\n{n} paired trials, batches {', '.join(map(str, BATCHES))}; A/B {a.rounds}–{a.max_rounds} rounds × "
          f"{a.window} s windows; {time.perf_counter() - t_start:.0f} s")
    print(f"interleaved A/B (bench-ab, classify_ratio): no change clean {clean['ab']}/{n}, "
          f"30 % slowdown caught {caught['ab']}/{n}  (target ≥ 9/{n} each)")
    if not a.no_contrast:
        print(f"separate runs, interval rule (report --baseline): no change clean {clean['intervals']}/{n}, "
              f"30 % slowdown caught {caught['intervals']}/{n}")
        print(f"separate runs, old flat rule:                     no change clean {clean['flat']}/{n}, "
              f"30 % slowdown caught {caught['flat']}/{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
