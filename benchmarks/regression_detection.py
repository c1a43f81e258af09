"""Benchmark: does the baseline comparison hold under noise? Hit rates of its decision rule.

Target (issue #10, part 3): on this noisy shared machine, two runs with no code change report
0 regressions in ≥ 9 of 10 paired trials, while an injected 30 % slowdown is caught in ≥ 9 of 10.

A tiny ONNX MLP (built with onnx.helper, random weights, 784 → 512 → 512 → 10) is measured with
`deploykit.bench.protocol.measure`, each run in a fresh process as `deploykit bench` does, at batch
1 and 32. One trial = baseline run, no-change run, slowed run, for both batches; a trial counts as
clean when neither batch reports a regression, and as caught when both slowed records do. The
slowdown wraps the runtime call and spins (a sleep with µs accuracy) for 30 % of the time that very
call took. The verdicts come from `deploykit.report.baseline.classify_intervals` (the rule
`report --baseline` applies); the old flat rule (`classify` with max(10 %, window spread)) is shown
beside it for contrast.

    .venv/bin/python benchmarks/regression_detection.py                 # 10 trials, ~2 minutes
    .venv/bin/python benchmarks/regression_detection.py --trials 3 --min-time 0.2
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


def worker(model: str, batch: int, slow: float, min_time: float) -> None:
    """One measurement in this fresh process; prints the protocol's result as JSON."""
    import onnxruntime as ort

    from deploykit.bench import protocol

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

    m = protocol.measure(call, min_time_s=min_time)
    print(json.dumps({k: m[k] for k in ("latency", "window_p50s_us", "figure_windows", "stable")}))


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
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trials", type=int, default=10)
    ap.add_argument("--min-time", type=float, default=0.3, help="protocol min_time_s per record (bench's default: 0.5)")
    ap.add_argument("--worker", nargs=4, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.worker:
        worker(a.worker[0], int(a.worker[1]), float(a.worker[2]), float(a.worker[3]))
        return 0
    t_start = time.perf_counter()
    clean = {"intervals": 0, "flat": 0}
    caught = {"intervals": 0, "flat": 0}
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(tmp) / "mlp.onnx"
        build_model(model)
        for t in range(1, a.trials + 1):
            same = {"intervals": [], "flat": []}
            slowed = {"intervals": [], "flat": []}
            line = []
            for batch in BATCHES:
                base = run_one(model, batch, 0.0, a.min_time)
                again = run_one(model, batch, 0.0, a.min_time)
                slow = run_one(model, batch, SLOWDOWN, a.min_time)
                for bucket, new in ((same, again), (slowed, slow)):
                    ci_rule, flat = verdicts(base, new)
                    bucket["intervals"].append(ci_rule)
                    bucket["flat"].append(flat)
                p = lambda r: r["latency"]["p50_us"]  # noqa: E731
                line.append(f"b{batch}: p50 {p(base):.1f} / {p(again):.1f} ({p(again) / p(base) - 1:+.0%}) / "
                            f"{p(slow):.1f} ({p(slow) / p(base) - 1:+.0%}) µs, "
                            f"same→{same['intervals'][-1]}, slowed→{slowed['intervals'][-1]}")
            for rule in clean:
                clean[rule] += "regression" not in same[rule]
                caught[rule] += all(v == "regression" for v in slowed[rule])
            print(f"trial {t:2d}: " + "; ".join(line), flush=True)
    n = a.trials
    print(f"\n{n} paired trials, batches {', '.join(map(str, BATCHES))}, min-time {a.min_time} s, "
          f"{time.perf_counter() - t_start:.0f} s")
    print(f"interval rule (report --baseline): no change clean {clean['intervals']}/{n}, "
          f"30 % slowdown caught {caught['intervals']}/{n}  (target ≥ 9/{n} each)")
    print(f"old flat rule, for contrast:       no change clean {clean['flat']}/{n}, "
          f"30 % slowdown caught {caught['flat']}/{n}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
