"""Reading op versions and the recorded minimum runtime out of .tflite flatbuffers."""

from pathlib import Path

import flatbuffers
import pytest

from deploykit.edge.tflite_file import inspect_tflite, version_tuple
from deploykit.errors import ManifestError

schema = pytest.importorskip("ai_edge_litert.schema_py_generated")


def single_op_model(path: Path, *, op: str = "ADD", version: int = 1, min_runtime: str | None = "1.5.0") -> Path:
    """A real one-op TFLite model (two float inputs → ADD → output), written with the schema's own
    builder, with any op version (the converter never writes a future one; a test can)."""
    s = schema
    tensors = []
    for i, name in enumerate(("a", "b", "out")):
        t = s.TensorT()
        t.shape, t.type, t.buffer, t.name = [1, 4], s.TensorType.FLOAT32, 0, name
        tensors.append(t)
    code = s.OperatorCodeT()
    code.builtinCode = getattr(s.BuiltinOperator, op)
    code.deprecatedBuiltinCode = min(code.builtinCode, 127)
    code.version = version
    operator = s.OperatorT()
    operator.opcodeIndex, operator.inputs, operator.outputs = 0, [0, 1], [2]
    operator.builtinOptionsType, operator.builtinOptions = s.BuiltinOptions.AddOptions, s.AddOptionsT()
    graph = s.SubGraphT()
    graph.tensors, graph.inputs, graph.outputs, graph.operators, graph.name = tensors, [0, 1], [2], [operator], "main"
    model = s.ModelT()
    model.version, model.operatorCodes, model.subgraphs, model.description = 3, [code], [graph], "deploykit test"
    model.buffers = [s.BufferT()]
    if min_runtime is not None:
        buf = s.BufferT()
        buf.data = list(min_runtime.encode().ljust(16, b"\0"))
        model.buffers.append(buf)
        meta = s.MetadataT()
        meta.name, meta.buffer = "min_runtime_version", 1
        model.metadata = [meta]
    builder = flatbuffers.Builder(1024)
    builder.Finish(model.Pack(builder), file_identifier=b"TFL3")
    path.write_bytes(bytes(builder.Output()))
    return path


def test_reads_ops_versions_and_min_runtime(tmp_path):
    info = inspect_tflite(single_op_model(tmp_path / "m.tflite", version=7, min_runtime="2.17.0"))
    assert info.op_labels() == ["ADD v7"]
    assert info.min_runtime_version == "2.17.0"
    assert info.description == "deploykit test"
    op = info.ops[0]
    data = (tmp_path / "m.tflite").read_bytes()
    # The recorded offset points at the stored version: what the runner patches when probing.
    assert int.from_bytes(data[op.version_offset:op.version_offset + 4], "little") == 7


def test_default_version_is_not_stored(tmp_path):
    info = inspect_tflite(single_op_model(tmp_path / "m.tflite", version=1, min_runtime=None))
    assert info.op_labels() == ["ADD v1"]
    assert info.ops[0].version_offset is None  # a default scalar is absent from the buffer: nothing to patch
    assert info.min_runtime_version is None


def test_not_a_tflite_file(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07\x12\x04onnx" * 4)
    with pytest.raises(ManifestError, match="not a TFLite flatbuffer"):
        inspect_tflite(bad)


@pytest.mark.parametrize("text,expected", [("2.17.0", (2, 17, 0)), ("2.5.0.post1", (2, 5, 0)),
                                           ("1.14.0", (1, 14, 0)), ("", None), (None, None), ("abc", None)])
def test_version_tuple(text, expected):
    assert version_tuple(text) == expected
