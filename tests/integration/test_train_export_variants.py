"""train-export --variants for real: compare-training's children train each variant, and every
trained model is exported and proven by deploykit's export path into its own model folder.

Default run: Paddle on 512 images, one epoch (~5 s). Slow: the Keras backends (TensorFlow
tape loop, JAX, PyTorch) and torch.compile on both networks, every format.
"""

import importlib.util
import re
import subprocess
import sys

import pytest

from deploykit.manifest import ModelManifest
from deploykit.results import read_results

HAVE_PADDLE = importlib.util.find_spec("paddle") is not None and importlib.util.find_spec("paddle2onnx") is not None


def _train_export(data_dir, out, *args, timeout=600):
    return subprocess.run(
        [sys.executable, "-m", "deploykit", "train-export", "mnist", "--data-dir", str(data_dir), "--subset", "512",
         "--epochs", "1", "--no-store", "--out", str(out), *args], capture_output=True, text=True, timeout=timeout)


@pytest.mark.skipif(not HAVE_PADDLE, reason="the [paddle] extra (paddlepaddle, paddle2onnx) is not installed; "
                    "scripts/bootstrap.sh installs it")
def test_paddle_variant_trained_exported_and_proven(full_mnist_dir, tmp_path):
    proc = _train_export(full_mnist_dir, tmp_path, "--variants", "paddle", "--formats", "onnx,tflite-fp32")
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = ModelManifest.read(tmp_path / "mnist" / "paddle-mlp")
    assert manifest.framework == "paddle" and manifest.training.extra["variant"] == "paddle"
    assert [a.format for a in manifest.artifacts] == ["onnx"]  # tflite does not apply to a Paddle model
    onnx = manifest.artifacts[0]
    assert onnx.status == "passed" and onnx.parity.max_abs_diff <= 1e-4 and onnx.parity.top1_agreement >= 0.999
    assert onnx.accuracy == pytest.approx(manifest.training.accuracy, abs=1e-3)
    # paddle2onnx folded the graph's constants with polygraphy (the paddle-deps extra): fewer nodes after
    before, after = map(int, re.fullmatch(r"polygraphy: (\d+) → (\d+) nodes", onnx.tool_versions["constant_folding"]).groups())
    assert after < before
    results = read_results(tmp_path / "mnist" / "variants" / "compare-training.json")
    [record] = results.training
    assert record.test_accuracy == pytest.approx(manifest.training.accuracy) and record.artifacts[0]["status"] == "passed"
    assert not (tmp_path / "mnist" / "variants" / "data.npz").exists()  # the children's scratch data is gone


@pytest.mark.slow
def test_keras_backends_and_torch_compile_export_what_they_allow(full_mnist_dir, tmp_path):
    from deploykit.compare.export import _formats, export_plan, model_name
    from deploykit.compare.variants import VARIANTS

    names = ("keras-tape", "keras-jax", "keras-torch", "torch-compile")
    proc = _train_export(full_mnist_dir, tmp_path, "--variants", ",".join(names), "--nets", "mlp,cnn",
                         "--formats", "all", timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in names:
        for net in ("mlp", "cnn"):
            manifest = ModelManifest.read(tmp_path / "mnist" / model_name(name, net))
            planned, not_exported = _formats(export_plan(VARIANTS[name], net), "all", net)
            assert [a.format for a in manifest.artifacts] == planned
            assert all(a.status == "passed" for a in manifest.artifacts), [(a.format, a.error) for a in manifest.artifacts]
            assert manifest.training.extra["not_exported"] == not_exported
            for fmt, why in not_exported.items():
                assert f"not exported: {model_name(name, net)}/{fmt}: {why}" in proc.stderr
