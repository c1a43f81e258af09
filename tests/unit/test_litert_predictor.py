"""One predictor per runtime: the registry's LiteRT and ONNX Runtime predictors run the edge runner's
`Model` / `OnnxModel` (the code a device runs), not copies."""

import flatbuffers
import numpy as np
import pytest

from deploykit.edge import runner
from deploykit.errors import ArtifactLoadError
from deploykit.manifest import InputSpec
from deploykit.runtimes import get_runtime, runtime_names

s = pytest.importorskip("ai_edge_litert.schema_py_generated")


def add_model(path, batch=-1, version=1):
    """x → ADD(x, x), built with the TFLite schema's builder (no converter: a unit test stays fast)."""
    tensors = []
    for name in ("x", "y"):
        t = s.TensorT()
        t.shape, t.shapeSignature, t.type, t.buffer, t.name = [1 if batch == -1 else batch, 4], [batch, 4], s.TensorType.FLOAT32, 0, name
        tensors.append(t)
    code = s.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = s.BuiltinOperator.ADD
    code.version = version
    op = s.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 0], [1]
    op.builtinOptionsType, op.builtinOptions = s.BuiltinOptions.AddOptions, s.AddOptionsT()
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators = tensors, [0], [1], [op]
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.buffers = 3, [code], [graph], [s.BufferT()]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


SPEC = InputSpec(name="x", shape=[None, 4], layout="NC")


def test_registry_predictor_is_the_runner_model(tmp_path):
    pred = get_runtime("litert")().load(add_model(tmp_path / "m.tflite"), SPEC)
    assert type(pred.model) is runner.Model
    assert pred.run.__func__ is runner.Model.run  # the timed call is the runner's, not a copy
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    np.testing.assert_array_equal(pred.predict(x), x + x)
    np.testing.assert_array_equal(pred.predict(x[:1]), x[:1] * 2)  # resized back down


def test_fixed_batch_artifact_pads_and_chunks(tmp_path):
    pred = get_runtime("litert")().load(add_model(tmp_path / "m.tflite", batch=2), SPEC)
    assert pred.max_batch == 2
    x = np.arange(20, dtype=np.float32).reshape(5, 4)
    np.testing.assert_array_equal(pred.predict(x), x + x)
    np.testing.assert_array_equal(pred.model.run(x), x + x)  # the runner chunks by itself too


def test_unloadable_file_is_one_line_artifact_load_error(tmp_path):
    with pytest.raises(ArtifactLoadError, match=r"^litert cannot load m.tflite: ValueError: .*ADD.*99") as exc:
        get_runtime("litert")().load(add_model(tmp_path / "m.tflite", version=99), SPEC)
    assert "\n" not in str(exc.value)


def test_no_unreachable_tflite_runtime_entry():
    """tflite-runtime needs NumPy 1.x and cannot import beside deploykit: only `edge` runs it (isolated)."""
    assert "tflite-runtime" not in runtime_names()


def test_registry_onnx_predictor_is_the_runner_onnx_model(tmp_path):
    """The same holds for ONNX: the device runner's OnnxModel is what the registry runs."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 4])
    graph = helper.make_graph([helper.make_node("Add", ["x", "x"], ["y"])], "add", [x], [y])
    path = tmp_path / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    pred = get_runtime("onnxruntime")().load(path, SPEC)
    assert type(pred.model) is runner.OnnxModel and pred.run.__func__ is runner.OnnxModel.run
    data = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_array_equal(pred.predict(data), data + data)
