"""Benchmark: anchors.md's raw-runtime table (batch 1, one thread), reproduced through `deploykit bench`.

For each runtime row of the anchor table, the MLP and the LeNet-style CNN: deploykit's p50 (artifacts
through `run_bench`, the `deploykit bench` code path; eager PyTorch and Keras `__call__`, which are not
artifacts, through the same protocol in this process), beside the anchor's figure. The anchors were
measured on another day: compare the ordering and the spread between runtimes (up to ~500x), not the
absolute ratios. Weights here are trained for 1 epoch; the anchors used untrained weights (same graphs,
same latency).

    .venv/bin/python benchmarks/runtimes_anchor.py                        # trains small models (~1 min)
    .venv/bin/python benchmarks/runtimes_anchor.py --models models/mnist  # reuse a train-export run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np

# row → (anchor MLP p50 µs, anchor CNN p50 µs, how deploykit measures it)
ANCHORS = {
    "LiteRT, TFLite int8": (4.0, 38.0, ("keras", "tflite-int8")),
    "LiteRT, TFLite float32": (8.1, 51.0, ("keras", "tflite-fp32")),
    "ONNX Runtime, float32": (12.6, 49.0, ("keras", "onnx")),
    "TorchScript (frozen)": (23.0, 199.0, ("torch", "torchscript")),
    "PyTorch eager": (25.0, 238.0, ("eager", "torch")),
    "Keras model __call__": (1520.0, 3720.0, ("eager", "keras")),
    "SavedModel signature": (3220.0, 3500.0, ("keras", "savedmodel")),
}
MODELS = {("keras", "mlp"): "keras-sequential", ("keras", "cnn"): "keras-cnn",
          ("torch", "mlp"): "torch-mlp", ("torch", "cnn"): "torch-cnn"}


def eager_p50(framework: str, architecture: str, min_time_s: float) -> float:
    """p50 of an eager framework model's call, batch 1, one thread, through the bench protocol."""
    from deploykit.bench.protocol import measure
    from deploykit.models import REFERENCE_MODELS

    spec = REFERENCE_MODELS[MODELS[(framework, architecture)]]
    x = np.random.default_rng(0).random((1, *spec.input.shape[1:]), dtype=np.float32)
    if framework == "torch":
        import torch

        from deploykit.models.torch import WithSoftmax

        torch.set_num_threads(1)
        model = WithSoftmax(spec.build()).eval()
        t = torch.from_numpy(x)

        def call():
            with torch.inference_mode():
                return model(t).numpy()
    else:
        from deploykit.runtimes.tensorflow_rt import _set_tf_threads, import_tf

        tf = import_tf()
        _set_tf_threads(tf, 1)
        model = spec.build()
        t = tf.constant(x)

        def call():
            return model(t, training=False).numpy()
    return measure(call, min_time_s=min_time_s)["latency"]["p50_us"]


def make_models(out: Path) -> Path:
    from deploykit.pipeline import QuietReporter, train_export

    formats = sorted({how[1] for _, _, how in ANCHORS.values() if how[0] != "eager"})
    print(f"training {', '.join(MODELS.values())} (1 epoch), exporting {', '.join(formats)} …", flush=True)
    summary = train_export("mnist", models=",".join(MODELS.values()), formats=",".join(formats), epochs=1,
                           batch_size=64, seed=0, out=out, store=False, reporter=QuietReporter())
    return summary.out / "mnist"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path)
    parser.add_argument("--min-time", type=float, default=1.0)
    parser.add_argument("--json", type=Path, default=Path("runtimes-anchor.json"))
    args = parser.parse_args()

    from deploykit.bench.run import run_bench
    from deploykit.bench.settings import BenchSettings

    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("BENTOML_HOME", str(Path(tmp) / "bentoml"))
        root = args.models or make_models(Path(tmp) / "models")
        formats = sorted({how[1] for _, _, how in ANCHORS.values() if how[0] != "eager"})
        results, _ = run_bench([str(root / m) for m in MODELS.values()],
                               BenchSettings(formats=formats, batch_sizes=[1], threads=[1], min_time_s=args.min_time))
    p50 = {(r.model, r.format): r.latency.p50_us for r in results.records if r.status == "ok"}

    rows = []
    print(f"\n{'runtime':26s} {'MLP p50':>10s} {'anchor':>9s} {'ratio':>6s}   {'CNN p50':>10s} {'anchor':>9s} {'ratio':>6s}")
    for name, (a_mlp, a_cnn, (kind, what)) in ANCHORS.items():
        figures = []
        for arch, anchor in (("mlp", a_mlp), ("cnn", a_cnn)):
            if kind == "eager":
                value = eager_p50(what, arch, args.min_time)
            else:
                value = p50.get((MODELS[(kind, arch)], what))
            figures.append((value, anchor))
        rows.append({"runtime": name, "mlp_p50_us": figures[0][0], "mlp_anchor_us": a_mlp,
                     "cnn_p50_us": figures[1][0], "cnn_anchor_us": a_cnn})
        cells = []
        for value, anchor in figures:
            cells.append(f"{value:10.1f} {anchor:9.1f} {value / anchor:6.2f}" if value else f"{'n/a':>10s} {anchor:9.1f} {'':6s}")
        print(f"{name:26s} {cells[0]}   {cells[1]}", flush=True)
    fastest = min(r["mlp_p50_us"] for r in rows if r["mlp_p50_us"])
    slowest = max(r["mlp_p50_us"] for r in rows if r["mlp_p50_us"])
    print(f"\nMLP spread between runtimes: {slowest / fastest:,.0f}x (anchor: {1520 / 4.0:,.0f}x to {3220 / 4.0:,.0f}x)")
    args.json.write_text(json.dumps({"rows": rows, "bench": json.loads(results.model_dump_json())}, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
