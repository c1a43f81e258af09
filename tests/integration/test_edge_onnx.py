"""PyTorch models on the edge through ONNX Runtime: `.onnx` artifacts checked and timed by the same
runner (its `OnnxModel`, which the registry's onnxruntime predictor also runs), in an isolated
environment holding an exact onnxruntime, as a device's venv would."""

import asyncio
import shutil
import subprocess
import sys

import numpy as np
import pytest

from deploykit.edge.compat import decode_array
from deploykit.edge.onnx_file import inspect_onnx
from deploykit.edge.session import PreparedArtifact, run_session
from deploykit.edge.transport import LocalTransport
from deploykit.manifest import ArtifactEntry, InputSpec, ModelManifest
from deploykit.results import read_results

ORT = "onnxruntime==1.32.0"  # has aarch64 cp311 wheels (Raspberry Pi OS bookworm's Python)


def deploykit(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "deploykit", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout)


def test_runner_checks_an_onnx_file(tmp_path):
    """A hand-built ONNX graph through the runner (deploykit's own Python: numpy + onnxruntime)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "add",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])])
    path = tmp_path / "add.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    entry = ArtifactEntry(format="onnx", path=path.name, bytes=path.stat().st_size, sha256="0" * 64,
                          runtime="onnxruntime", status="exported", input=InputSpec(name="x", shape=[None, 4], layout="NC"))
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    art = PreparedArtifact(entry=entry, path=path, info=inspect_onnx(path), tensor=x)
    session = asyncio.run(run_session(LocalTransport(sys.executable), [art], mode="check"))
    assert session.facts["runtimes"]["onnx"]["package"] == "onnxruntime"
    result = session.results[0]
    assert result["load"]["ok"] is True and result["runtime"]["package"] == "onnxruntime"
    np.testing.assert_array_equal(decode_array(result["outputs"]), x + x)


def test_edge_check_of_a_pytorch_model_in_onnxruntime(mnist_models, tmp_path):
    out = tmp_path / "check.json"
    proc = deploykit("edge", "check", mnist_models / "torch-mlp", "--runtime", ORT, "--profile", "rpi4", "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(out)
    by_format = {r.format: r for r in results.records}
    assert set(by_format) == {"onnx", "onnx-int8"}
    for r in by_format.values():
        assert r.compat["verdict"] == "compatible" and r.runtime == "onnxruntime" and r.runtime_version == "1.32.0"
        assert r.target == "edge:rpi4" and r.top1_agreement >= 0.98
        assert any(label.startswith("ai.onnx opset") for label in r.compat["ops"])
    assert by_format["onnx"].max_abs_diff < 1e-4


def test_a_tflite_runtime_check_of_an_onnx_only_model_says_which_runtime_checks_it(mnist_models, tmp_path):
    model = tmp_path / "torch-mlp"  # as a PyTorch model is without its tflite-fp32 (no onnx2tf environment)
    shutil.copytree(mnist_models / "torch-mlp", model)
    manifest = ModelManifest.read(model)
    manifest.artifacts = [a for a in manifest.artifacts if not a.path.endswith(".tflite")]
    manifest.write(model)
    proc = deploykit("edge", "check", model, "--profile", "rpi4", "--out", tmp_path / "c.json")
    assert proc.returncode == 2
    assert "--runtime onnxruntime==VERSION" in proc.stderr and "Traceback" not in proc.stderr


def test_emulated_bench_of_onnx_with_an_op_profile(mnist_models, tmp_path):
    """`--runtime onnxruntime==…` emulates the device in that ONNX Runtime (recorded as an override of
    the profile's TFLite runtime); `--op-profile` gives ORT's per-operator time."""
    out = tmp_path / "bench.json"
    proc = deploykit("edge", "bench", mnist_models / "torch-mlp", "--target", "local", "--profile", "rpi4",
                     "--runtime", ORT, "--formats", "onnx", "--min-time", "0.1", "--samples", "50", "--op-profile",
                     "--out", out)
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = read_results(out)
    r = results.records[0]
    assert r.status == "ok" and r.runtime == "onnxruntime" and r.runtime_version == "1.32.0" and r.emulated
    assert r.extra["runtime_source"] == "override" and r.compat["verdict"] == "compatible"
    prof = r.extra["op_profile"]
    assert prof["calls"] > 0 and prof["top"] and abs(sum(o["share"] for o in prof["top"]) - 1) < 0.5
    assert "Gemm" in {o["op"] for o in prof["top"]}  # torch Linear layers export as Gemm
    assert any(n.startswith("op profile torch-mlp/onnx") for n in results.notes)
