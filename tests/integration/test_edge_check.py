"""`deploykit edge check` for real: tflite-runtime 2.14.0 (what Raspberry Pi images run), installed into
deploykit's isolated environment, against artifacts converted by TensorFlow 2.21.

Seen here: the dynamic-range artifact uses FULLY_CONNECTED version 12, which 2.14.0 lacks; fp32, fp16,
int8 and QAT artifacts load and match the framework model."""

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import flatbuffers
import numpy as np
import pytest

from deploykit.edge.compat import decode_array
from deploykit.edge.envs import ensure_runtime_env, parse_runtime_spec
from deploykit.edge.session import PreparedArtifact, run_session
from deploykit.edge.tflite_file import inspect_tflite
from deploykit.edge.transport import LocalTransport
from deploykit.manifest import ArtifactEntry, InputSpec
from deploykit.results import read_results

OLD_RUNTIME = "tflite-runtime==2.14.0"


def deploykit(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "deploykit", *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def old_runtime_env():
    """The isolated tflite-runtime 2.14.0 environment (cached in $DEPLOYKIT_RUNTIMES, kept between test runs)."""
    return ensure_runtime_env(parse_runtime_spec(OLD_RUNTIME))


def test_isolated_env_holds_only_the_runtime(old_runtime_env):
    pkgs = old_runtime_env.packages
    assert pkgs["tflite-runtime"] == "2.14.0"
    assert pkgs["numpy"].startswith("1.")  # tflite-runtime 2.14 was built for NumPy 1.x
    assert "deploykit" not in pkgs and "tensorflow" not in pkgs
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # the env itself, not the caller's path
    probe = subprocess.run([str(old_runtime_env.python), "-c", "import deploykit"], capture_output=True, text=True,
                           env=env)
    assert probe.returncode != 0  # the user's environment and deploykit stay out of it
    assert ensure_runtime_env(parse_runtime_spec(OLD_RUNTIME)).path == old_runtime_env.path  # cached


def test_old_runtime_rejects_dynamic_and_loads_the_rest(mnist_models, old_runtime_env, tmp_path):
    out = tmp_path / "edge-check.json"
    proc = deploykit("edge", "check", str(mnist_models / "keras-cnn"), "--runtime", OLD_RUNTIME, "--profile", "rpi4",
                     "--out", str(out))
    assert proc.returncode == 1, proc.stderr  # one artifact is incompatible
    assert "Traceback" not in proc.stderr + proc.stdout
    results = read_results(out)
    assert results.kind == "edge-check" and results.settings["runtime"] == OLD_RUNTIME
    by_format = {r.format: r for r in results.records}
    assert set(by_format) == {"tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8", "tflite-qat"}

    dynamic = by_format["tflite-dynamic"]
    assert dynamic.status == "failed" and dynamic.target == "edge:rpi4"
    assert dynamic.compat["verdict"] == "incompatible"
    lacking = dynamic.compat["lacking_ops"]
    assert [(o["op"], o["version"]) for o in lacking] == [("FULLY_CONNECTED", 12)]
    assert 1 <= lacking[0]["runtime_max_version"] < 12
    assert dynamic.compat["min_runtime_version"] == "2.17.0"
    for needle in ("FULLY_CONNECTED version 12", "tensorflow 2.21.0", "TFLite ≥ 2.17.0", "tflite-fp32",
                   "_experimental_disable_per_channel_quantization_for_dense_layers"):
        assert needle in dynamic.reason
    assert "tflite-dynamic does not load in tflite-runtime 2.14.0" in proc.stderr

    for fmt in ("tflite-fp32", "tflite-fp16", "tflite-int8", "tflite-qat"):
        r = by_format[fmt]
        assert r.status == "ok" and r.compat["verdict"] == "compatible", (fmt, r.reason)
        assert r.compat["samples"] == 1000
        assert r.top1_agreement >= 0.98
    assert by_format["tflite-fp32"].max_abs_diff < 1e-4  # same float32 kernels: matches the framework model


def test_static_verdict_when_the_runtime_does_not_install_here(mnist_models, tmp_path):
    """The Coral board's tflite-runtime 2.5.0.post1 has no wheel for this Python: say so, and still
    judge from what the file records."""
    out = tmp_path / "coral.json"
    proc = deploykit("edge", "check", str(mnist_models / "keras-cnn"), "--profile", "coral-devboard",
                     "--formats", "tflite-fp32,tflite-dynamic", "--out", str(out))
    assert proc.returncode == 1, proc.stderr
    results = read_results(out)
    assert any("could not be installed here" in n for n in results.notes)
    by_format = {r.format: r for r in results.records}
    assert by_format["tflite-dynamic"].compat["verdict"] == "incompatible"
    assert "needs TFLite ≥ 2.17.0" in by_format["tflite-dynamic"].reason
    assert by_format["tflite-fp32"].compat["verdict"] == "unknown"  # never claimed compatible untried
    assert by_format["tflite-fp32"].status == "unavailable"


# -- a deliberately newer op version: every missing one is listed, not just the first -------------------
def chained_model(path: Path, ops: list[tuple[str, int]]) -> Path:
    """x → op1(x, x) → op2(·, x) → … : a real TFLite model built with the schema's builder, with any op
    versions (the converter would never write future ones; this test does)."""
    s = pytest.importorskip("ai_edge_litert.schema_py_generated")
    options = {"ADD": (s.BuiltinOptions.AddOptions, s.AddOptionsT), "MUL": (s.BuiltinOptions.MulOptions, s.MulOptionsT),
               "SUB": (s.BuiltinOptions.SubOptions, s.SubOptionsT)}
    names = ["x"] + [f"t{i}" for i in range(len(ops))]
    tensors = []
    for name in names:
        t = s.TensorT()
        t.shape, t.shapeSignature, t.type, t.buffer, t.name = [1, 4], [-1, 4], s.TensorType.FLOAT32, 0, name
        tensors.append(t)
    codes, operators = [], []
    for i, (op, version) in enumerate(ops):
        code = s.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = getattr(s.BuiltinOperator, op)
        code.version = version
        codes.append(code)
        o = s.OperatorT()
        o.opcodeIndex, o.inputs, o.outputs = i, [i, 0], [i + 1]
        o.builtinOptionsType, o.builtinOptions = options[op][0], options[op][1]()
        operators.append(o)
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [len(names) - 1], operators
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, codes, [graph], [s.BufferT()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


def _run_check(env, path: Path, x: np.ndarray) -> dict:
    entry = ArtifactEntry(format="tflite-test", path=path.name, bytes=path.stat().st_size, sha256="0" * 64,
                          runtime="litert", status="exported", input=InputSpec(name="x", shape=[None, 4], layout="NC"))
    art = PreparedArtifact(entry=entry, path=path, info=inspect_tflite(path), tensor=x)
    session = asyncio.run(run_session(LocalTransport(env.python), [art], mode="check", runtime=OLD_RUNTIME))
    assert session.facts["runtime"]["version"] == "2.14.0"
    return session.results[0]


def test_probe_lists_every_missing_op_version(old_runtime_env, tmp_path):
    path = chained_model(tmp_path / "future.tflite", [("ADD", 99), ("MUL", 1), ("SUB", 98)])
    result = _run_check(old_runtime_env, path, np.zeros((1, 4), np.float32))
    load = result["load"]
    assert load["ok"] is False and load["kind"] == "missing-op"
    assert [(o["op"], o["version"]) for o in load["lacking_ops"]] == [("ADD", 99), ("SUB", 98)]
    assert all(1 <= o["runtime_max_version"] < 10 for o in load["lacking_ops"])


def test_hand_built_model_with_known_versions_loads_and_computes(old_runtime_env, tmp_path):
    """The control for the probe test: the same kind of model at version 1 loads and computes."""
    path = chained_model(tmp_path / "ok.tflite", [("ADD", 1)])
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    result = _run_check(old_runtime_env, path, x)
    assert result["load"]["ok"] is True
    out = decode_array(result["outputs"])
    np.testing.assert_array_equal(out, x + x)
    assert json.dumps(result)  # plain JSON all the way


def test_edgetpu_artifact_without_the_delegate_is_unavailable(old_runtime_env, tmp_path):
    """*_edgetpu.tflite needs libedgetpu.so.1 (a Coral device); here there is none, and the result says
    so instead of running it on the CPU and calling that an Edge TPU figure."""
    path = chained_model(tmp_path / "model_edgetpu.tflite", [("ADD", 1)])
    result = _run_check(old_runtime_env, path, np.zeros((1, 4), np.float32))
    assert result["load"]["ok"] is False
    assert "Edge TPU delegate libedgetpu.so.1 unavailable" in result["load"]["unavailable"]
    assert "outputs" not in result


def test_unknown_verdicts_exit_3_with_one_line_each(mnist_models, tmp_path):
    """Coral's runtime does not install here and fp32's recorded minimum is met: nothing was tested, so
    a CI must not read success."""
    proc = deploykit("edge", "check", str(mnist_models / "keras-cnn"), "--profile", "coral-devboard",
                     "--formats", "tflite-fp32", "--out", str(tmp_path / "coral.json"))
    assert proc.returncode == 3, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("keras-cnn/tflite-fp32: unknown (unknown): not tried:")


def test_compatible_exits_0(mnist_models, old_runtime_env, tmp_path):
    proc = deploykit("edge", "check", str(mnist_models / "keras-cnn"), "--profile", "rpi4", "--formats",
                     "tflite-fp32", "--out", str(tmp_path / "ok.json"))
    assert proc.returncode == 0, proc.stderr
