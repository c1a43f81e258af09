"""Backend errors stop at the runtime boundary: damaged artifacts (truncated, garbage with a matching
checksum) and a runtime that dies by a signal while loading. `train-export` records the artifact as
failed and goes on; `serve`, `bench` and `edge` print one line and exit non-zero; never a traceback."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from deploykit.errors import ArtifactLoadError
from deploykit.export import EXPORTERS
from deploykit.export.onnx import OnnxExporter
from deploykit.manifest import ModelManifest, sha256_file
from deploykit.pipeline import train_export
from deploykit.runtimes import load_predictor

from tests.conftest import free_port

# (model, format) pairs covering each runtime that reads a single file.
DAMAGED = [("torch-mlp", "onnx"), ("torch-mlp", "torchscript"), ("keras-sequential", "tflite-fp32")]


def damaged_copy(mnist_models: Path, tmp_path: Path, model: str, fmt: str, how: str = "truncate") -> Path:
    """A copy of `model` whose `fmt` artifact is damaged *and* re-checksummed, as a file broken
    before it was recorded would be: the sha256 check passes, the runtime must say what is wrong."""
    model_dir = tmp_path / model
    shutil.copytree(mnist_models / model, model_dir)
    manifest = ModelManifest.read(model_dir)
    entry = manifest.artifact(fmt)
    path = model_dir / entry.path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2] if how == "truncate" else b"\x00garbage" * 64)
    entry.sha256 = sha256_file(path)
    manifest.write(model_dir)
    return model_dir


def run_cli(*args: str, timeout: float = 300, env: dict | None = None):
    return subprocess.run([sys.executable, "-m", "deploykit", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


def one_line(proc) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


@pytest.mark.parametrize("model,fmt", DAMAGED)
@pytest.mark.parametrize("how", ["truncate", "garbage"])
def test_the_predictor_raises_ours(mnist_models, tmp_path, model, fmt, how):
    model_dir = damaged_copy(mnist_models, tmp_path, model, fmt, how)
    with pytest.raises(ArtifactLoadError) as exc:
        load_predictor(model_dir, fmt)
    assert "cannot load" in str(exc.value) and "\n" not in str(exc.value)
    assert exc.value.__cause__ is not None  # the backend's own exception is kept as the cause


@pytest.mark.parametrize("model,fmt", DAMAGED)
def test_serve_says_it_in_one_line_and_does_not_start(mnist_models, tmp_path, model, fmt):
    model_dir = damaged_copy(mnist_models, tmp_path, model, fmt)
    proc = run_cli("serve", str(model_dir), "--format", fmt, "--port", str(free_port()), timeout=180)
    assert proc.returncode == 2
    line = one_line(proc)
    assert "cannot load" in line and Path(ModelManifest.read(model_dir).artifact(fmt).path).name in line


def test_serve_reports_a_runtime_killed_by_a_signal_while_loading(mnist_models, tmp_path):
    """sitecustomize makes the probe child die by SIGSEGV as it imports onnxruntime: a real signal
    death of the process that loads the artifact, which no Python handler could catch."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import os, signal, sys\n"
        "class _Crash:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'onnxruntime' and 'deploykit.runtimes.probe' in sys.orig_argv:\n"
        "            os.kill(os.getpid(), signal.SIGSEGV)\n"
        "sys.meta_path.insert(0, _Crash())\n")
    import os

    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hook), *sys.path])}
    proc = run_cli("serve", str(mnist_models / "torch-mlp"), "--format", "onnx", "--port", str(free_port()),
                   env=env, timeout=180)
    assert proc.returncode == 2
    assert "the runtime crashed (SIGSEGV) while loading" in one_line(proc)


def test_bench_records_each_damaged_artifact_as_failed_in_one_line(mnist_models, tmp_path):
    model_dir = damaged_copy(mnist_models, tmp_path, "torch-mlp", "onnx")
    proc = run_cli("bench", str(model_dir), "--formats", "onnx,torchscript", "--batch-sizes", "1", "--min-time", "0.05",
                   "--out", str(tmp_path / "r.json"))
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "torch-mlp/onnx batch 1: onnxruntime cannot load model.onnx: InvalidProtobuf" in proc.stderr


def test_edge_check_says_a_damaged_tflite_in_one_line(mnist_models, tmp_path):
    model_dir = damaged_copy(mnist_models, tmp_path, "keras-sequential", "tflite-fp32")
    proc = run_cli("edge", "check", str(model_dir), "--formats", "tflite-fp32")
    assert proc.returncode != 0
    assert "damaged TFLite flatbuffer" in one_line(proc)


class TruncatingOnnx(OnnxExporter):
    """A real ONNX export whose file is then cut in half, as a full disk or a killed writer leaves it."""

    key = "onnx-truncated"
    filename = "truncated.onnx"

    def export(self, ctx):
        result = super().export(ctx)
        result.path.write_bytes(result.path.read_bytes()[:200])
        return result


def test_train_export_records_an_artifact_its_runtime_cannot_load_and_goes_on(tmp_path, monkeypatch):
    monkeypatch.setitem(EXPORTERS, TruncatingOnnx.key, TruncatingOnnx)
    summary = train_export("mnist", models="torch-mlp", formats="onnx,onnx-truncated,torchscript", epochs=1,
                           batch_size=64, seed=0, out=tmp_path, store=False)
    m = ModelManifest.read(tmp_path / "mnist" / "torch-mlp")
    status = {a.format: a.status for a in m.artifacts}
    assert status == {"onnx": "passed", "onnx-truncated": "failed", "torchscript": "passed"}
    error = m.artifact("onnx-truncated").error
    assert "cannot load truncated.onnx" in error and "\n" not in error
    assert len(summary.failed) == 1
