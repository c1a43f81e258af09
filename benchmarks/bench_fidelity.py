"""Benchmark: does `deploykit bench` report what the runtime does? Its p50 against hand-written timing loops.

Target (issue #4): for each artifact, the p50 that `deploykit bench` reports agrees within 10 % with a
direct timing loop around the bare runtime call (onnxruntime `InferenceSession.run`, LiteRT
`Interpreter.set_tensor/invoke/get_tensor`, a TorchScript module's forward), measured in the same run.

Three figures per artifact, batch 1, one thread:
  bare   a plain loop around the runtime's own API, in this process, no deploykit code
  run    the same plain loop around deploykit's `Predictor.run` (what bench times), in this process
  bench  `deploykit bench`'s p50: protocol windows, in its own worker process (the real code path)
bench/bare is the issue's criterion; bench/run isolates the harness; run/bare is the Predictor's own
Python wrapper, which serving pays too. Rounds alternate bench and loops, and each figure is the
median over rounds, so slow drift of the machine hits all three alike.

    .venv/bin/python benchmarks/bench_fidelity.py                          # trains small models first (~1 min)
    .venv/bin/python benchmarks/bench_fidelity.py --models models/mnist    # reuse a train-export run
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

CASES = [  # (model, format): the MLP is the harder test (a few µs per call), the CNN the heavier one
    ("keras-sequential", "onnx"),
    ("keras-sequential", "tflite-fp32"),
    ("keras-sequential", "tflite-int8"),
    ("torch-mlp", "torchscript"),
    ("keras-cnn", "onnx"),
    ("keras-cnn", "tflite-int8"),
    ("torch-cnn", "torchscript"),
]
TOLERANCE = 0.10


def plain_loop(fn, seconds: float) -> float:
    """p50 in µs of a bare `perf_counter_ns` loop: warm up 0.2 s, then time calls for `seconds`."""
    end = time.perf_counter() + 0.2
    while time.perf_counter() < end:
        fn()
    times = []
    pc = time.perf_counter_ns
    stop = pc() + int(seconds * 1e9)
    while True:
        t0 = pc()
        fn()
        t1 = pc()
        times.append(t1 - t0)
        if t1 >= stop:
            break
    return float(np.median(times)) / 1e3


def bare_call(model_dir: Path, entry, tensor: np.ndarray):
    """The runtime's own API, loaded and called as a hand-written script would, one thread."""
    path = str(model_dir / entry.path)
    if entry.runtime == "onnxruntime":
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
        sess = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
        feed = {sess.get_inputs()[0].name: tensor}
        out = [sess.get_outputs()[0].name]
        return lambda: sess.run(out, feed)
    if entry.runtime == "litert":
        from ai_edge_litert.interpreter import Interpreter

        it = Interpreter(model_path=path, num_threads=1)
        inp = it.get_input_details()[0]
        if list(inp["shape"]) != list(tensor.shape):
            it.resize_tensor_input(inp["index"], list(tensor.shape))
        it.allocate_tensors()
        i, o = inp["index"], it.get_output_details()[0]["index"]

        def invoke():
            it.set_tensor(i, tensor)
            it.invoke()
            return it.get_tensor(o)
        return invoke
    if entry.runtime == "torch":
        import torch

        torch.set_num_threads(1)
        module = torch.jit.load(path, map_location="cpu").eval()
        x = torch.from_numpy(tensor)

        def forward():
            # Per call, as a request handler would; no process-wide grad switch (which would also speed
            # up the `run` loop in this process and hide the difference being measured).
            with torch.inference_mode():
                return module(x).numpy()
        return forward
    raise SystemExit(f"no bare loop for runtime {entry.runtime}")


def make_models(out: Path) -> Path:
    from deploykit.pipeline import QuietReporter, train_export

    models = sorted({m for m, _ in CASES})
    formats = sorted({f for _, f in CASES})
    print(f"training {', '.join(models)} (1 epoch) and exporting {', '.join(formats)} into {out} …", flush=True)
    summary = train_export("mnist", models=",".join(models), formats=",".join(formats), epochs=1, batch_size=64,
                           seed=0, out=out, store=False, reporter=QuietReporter())
    return summary.out / "mnist"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, help="folder with one model folder per reference model (default: train)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per figure and round")
    parser.add_argument("--formats", help="comma list: only these formats' cases")
    parser.add_argument("--json", type=Path, default=Path("bench-fidelity.json"))
    args = parser.parse_args()

    from deploykit.bench.run import run_bench
    from deploykit.bench.settings import BenchSettings
    from deploykit.manifest import ModelManifest
    from deploykit.runtimes import load_artifact
    from deploykit.runtimes.base import to_input

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("BENTOML_HOME", str(Path(tmp) / "bentoml"))
        root = args.models or make_models(Path(tmp) / "models")
        rows = []
        cases = [c for c in CASES if not args.formats or c[1] in args.formats.split(",")]
        for model, fmt in cases:
            model_dir = root / model
            manifest = ModelManifest.read(model_dir)
            entry = manifest.artifact(fmt)
            with np.load(model_dir / manifest.reference) as ref:
                x = ref["x"][:1].astype(np.float32) / 255.0
            tensor = to_input(x, entry.input)
            predictor = load_artifact(model_dir, entry, manifest, threads=1)
            bare = bare_call(model_dir, entry, tensor)
            settings = BenchSettings(formats=[fmt], batch_sizes=[1], threads=[1], min_time_s=args.seconds)
            figures = {"bare": [], "run": [], "bench": []}
            stable = []
            for _ in range(args.rounds):
                results, _ = run_bench([str(model_dir)], settings)
                (record,) = results.records
                if record.status != "ok":
                    raise SystemExit(f"{model}/{fmt}: {record.status}: {record.reason}")
                figures["bench"].append(record.latency.p50_us)
                stable.append(record.stable)
                figures["run"].append(plain_loop(lambda: predictor.run(tensor), args.seconds))
                figures["bare"].append(plain_loop(bare, args.seconds))
            predictor.close()
            med = {k: statistics.median(v) for k, v in figures.items()}
            ratio = med["bench"] / med["bare"]
            rows.append({"model": model, "format": fmt, "runtime": entry.runtime, **{f"{k}_p50_us": v for k, v in med.items()},
                         "rounds": figures, "bench_stable": stable, "bench_over_bare": ratio,
                         "bench_over_run": med["bench"] / med["run"], "run_over_bare": med["run"] / med["bare"],
                         "within_tolerance": abs(ratio - 1) <= TOLERANCE})
            r = rows[-1]
            print(f"{model:17s} {fmt:12s} bare {med['bare']:9.2f} µs   run {med['run']:9.2f} µs   bench {med['bench']:9.2f} µs"
                  f"   bench/bare {ratio:5.3f}   bench/run {r['bench_over_run']:5.3f}   run/bare {r['run_over_bare']:5.3f}"
                  f"   {'ok' if r['within_tolerance'] else 'OUTSIDE ±10 %'}", flush=True)

    ok = all(r["within_tolerance"] for r in rows)
    print(f"\n{sum(r['within_tolerance'] for r in rows)}/{len(rows)} artifacts: bench p50 within ±{TOLERANCE:.0%} "
          f"of the bare runtime loop (median of {args.rounds} alternating rounds, batch 1, one thread)")
    args.json.write_text(json.dumps({"tolerance": TOLERANCE, "rounds": args.rounds, "seconds": args.seconds,
                                     "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
