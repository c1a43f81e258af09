"""PyTorch on the Pi as TFLite: the reference torch models' tflite-fp32 (torch.onnx → onnx2tf, in its own
environment) is proven like every artifact, loads in the Pi's tflite-runtime 2.14.0, and sits in the
same report as the Keras TFLite rows."""

import subprocess
import sys

from deploykit.manifest import ModelManifest
from deploykit.results import read_results

TORCH = ("torch-mlp", "torch-cnn")


def deploykit(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "deploykit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_the_torch_models_tflite_is_made_by_onnx2tf_and_says_what_it_takes(mnist_models):
    for name in TORCH:
        m = ModelManifest.read(mnist_models / name)
        a = m.artifact("tflite-fp32")
        assert a.status == "passed" and a.runtime == "litert", a.error
        assert a.tool_versions["onnx2tf"] == "1.29.24" and a.tool_versions["converter"].startswith("onnx2tf 1.29.24")
        assert a.parity.max_abs_diff <= 1e-4 and a.parity.top1_agreement >= 0.999 and a.dynamic_batch
        assert abs(a.accuracy - m.training.accuracy) < 0.002
    cnn = ModelManifest.read(mnist_models / "torch-cnn")
    assert (cnn.input.layout, cnn.input.shape) == ("NCHW", [None, 1, 28, 28])
    art = cnn.artifact("tflite-fp32").input  # onnx2tf moves the channel last: the manifest says so
    assert (art.layout, art.shape) == ("NHWC", [None, 28, 28, 1])


def test_a_pytorch_made_tflite_loads_in_tflite_runtime_2_14_beside_the_keras_rows(mnist_models, tmp_path):
    out = tmp_path / "check.json"
    proc = deploykit("edge", "check", *(mnist_models / m for m in (*TORCH, "keras-cnn")), "--profile", "rpi4",
                     "--formats", "tflite-fp32", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = {r.model: r for r in read_results(out).records}
    assert set(records) == {*TORCH, "keras-cnn"}
    for name, r in records.items():
        assert (r.format, r.runtime, r.runtime_version, r.target) == ("tflite-fp32", "tflite-runtime", "2.14.0", "edge:rpi4")
        assert r.compat["verdict"] == "compatible" and r.compat["ok"], (name, r.compat)
        assert r.top1_agreement >= 0.999 and r.max_abs_diff <= 1e-4, (name, r.max_abs_diff)

    report = deploykit("report", out)
    assert report.returncode == 0, report.stderr[-2000:]
    rows = [ln for ln in report.stdout.splitlines() if "| tflite-fp32 |" in ln and "edge:rpi4" in ln]
    for name in (*TORCH, "keras-cnn"):
        assert any(f"| {name} |" in ln and "compatible" in ln for ln in rows), (name, rows)
