"""`--edge-runtime tflite-runtime==2.14.0` on `deploykit export`: a tflite-dynamic that loads in the old
runtime, proven there by the real check (tflite-runtime 2.14.0 in its isolated environment).

Seen here (TensorFlow 2.21): the default dynamic-range conversion writes FULLY_CONNECTED v12, which
2.14.0 lacks; with the target it writes FULLY_CONNECTED v9, loads and matches the Keras model."""

import json
import subprocess
import sys

from deploykit.edge.tflite_file import inspect_tflite
from deploykit.manifest import ModelManifest

OLD = "tflite-runtime==2.14.0"


def deploykit(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "deploykit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_export_for_an_old_runtime_loads_there_and_clears_its_bar(mnist_models, full_mnist_dir, tmp_path):
    source = mnist_models / "keras-sequential" / "model.keras"
    proc = deploykit("export", source, "--formats", "tflite-dynamic", "--dataset", "mnist", "--data-dir",
                     full_mnist_dir, "--edge-runtime", OLD, "--out", tmp_path, "--no-store")
    assert proc.returncode == 0, proc.stderr[-3000:]
    model_dir = tmp_path / "user" / "model"
    manifest = ModelManifest.read(model_dir)
    assert manifest.edge_runtime == OLD
    entry = manifest.artifact("tflite-dynamic")
    assert entry.status == "passed", entry.error  # its own bar, in LiteRT
    assert entry.parity.top1_agreement >= entry.parity.min_top1_agreement
    edge = entry.edge
    assert edge["runtime"] == OLD and edge["verdict"] == "compatible" and edge["ok"] is True, edge
    assert edge["where"].startswith("tflite-runtime==2.14.0 in ")  # the isolated environment holding it
    assert edge["top1_agreement"] >= 0.98 and edge["samples"] > 0  # the bar, measured in 2.14.0
    assert entry.quantization["dense_weights"].startswith("per-tensor")
    assert entry.quantization["converter_settings"] == {
        "_experimental_disable_per_channel_quantization_for_dense_layers": True}
    fc = {op.version for op in inspect_tflite(model_dir / entry.path).ops if op.name == "FULLY_CONNECTED"}
    assert fc and max(fc) < 12, fc  # what 2.14.0 has

    # The artifact is what the manifest says (sha256), so the ordinary check takes it: exit 0.
    check = deploykit("edge", "check", model_dir, "--runtime", OLD, "--out", tmp_path / "check.json")
    assert check.returncode == 0, check.stderr
    record = json.loads((tmp_path / "check.json").read_text())["records"][0]
    assert record["compat"]["verdict"] == "compatible"


def test_an_edge_runtime_that_does_not_exist_is_one_line_and_nothing_written(mnist_models, tmp_path):
    proc = deploykit("export", mnist_models / "keras-sequential" / "model.keras", "--formats", "tflite-dynamic",
                     "--edge-runtime", "tflite-runtime==9.9.9", "--out", tmp_path / "out", "--no-store")
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert "tflite-runtime==9.9.9 does not exist" in proc.stderr and "2.14.0" in proc.stderr
    assert not (tmp_path / "out").exists()
