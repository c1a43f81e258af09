"""What `--edge-runtime` asks of the converters (deploykit.edge.target)."""

import pytest

from deploykit.edge.envs import parse_runtime_spec
from deploykit.edge.target import converter_settings
from deploykit.errors import UsageError

PER_TENSOR = {"_experimental_disable_per_channel_quantization_for_dense_layers": True}


@pytest.mark.parametrize("runtime,fmt,expected", [
    ("tflite-runtime==2.14.0", "tflite-dynamic", PER_TENSOR),  # lacks FULLY_CONNECTED v12
    ("tensorflow==2.16.1", "tflite-dynamic", PER_TENSOR),
    ("tensorflow==2.17.0", "tflite-dynamic", {}),  # has it
    ("ai-edge-litert==2.3.0", "tflite-dynamic", {}),  # today's runtime
    ("tflite-runtime==2.14.0", "tflite-fp32", {}),  # float kernels: nothing to change (seen loading)
    ("tflite-runtime==2.14.0", "tflite-int8", {}),
])
def test_converter_settings(runtime, fmt, expected):
    assert converter_settings(parse_runtime_spec(runtime), fmt) == expected


def test_no_target_no_settings():
    assert converter_settings(None, "tflite-dynamic") == {}


def test_malformed_target_is_a_usage_error():
    from deploykit.edge.target import parse_edge_runtime

    with pytest.raises(UsageError, match="exact version"):
        parse_edge_runtime("tflite-runtime")


def test_an_onnx_runtime_is_not_an_edge_runtime_target():
    """--edge-runtime converts and proves the TFLite artifacts: onnxruntime is refused before any work."""
    from deploykit.edge.target import parse_edge_runtime

    with pytest.raises(UsageError, match="a TFLite runtime is expected.*edge check --runtime onnxruntime"):
        parse_edge_runtime("onnxruntime==1.17.0")


def test_edge_setup_runtime_must_be_a_tflite_runtime():
    from deploykit.edge.setup import SetupSettings, choose_packages

    settings = SetupSettings(target="ssh://pi@127.0.0.1", runtime="onnxruntime==1.17.0")
    with pytest.raises(UsageError, match="add --onnx for onnxruntime"):
        choose_packages(settings, "aarch64", "3.11")
