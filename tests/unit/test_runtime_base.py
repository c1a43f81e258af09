import numpy as np
import pytest

from deploykit.errors import UsageError
from deploykit.manifest import InputSpec, OutputSpec
from deploykit.runtimes import get_runtime, runtime_names
from deploykit.runtimes.base import from_output, to_input


@pytest.mark.parametrize("shape,layout", [([None, 28, 28], "NHW"), ([None, 28, 28, 1], "NHWC"),
                                          ([None, 1, 28, 28], "NCHW"), ([None, 784], "NC")])
def test_to_input_reshapes_canonical_batches(shape, layout):
    x = np.random.default_rng(0).random((3, 28, 28), dtype=np.float32)
    t = to_input(x, InputSpec(name="x", shape=shape, layout=layout))
    assert t.shape == (3, *shape[1:]) and t.dtype == np.float32
    np.testing.assert_array_equal(t.reshape(3, 28, 28), x)


def test_to_input_accepts_flat_rows():
    x = np.zeros((2, 784), np.float32)
    assert to_input(x, InputSpec(name="x", shape=[None, 28, 28], layout="NHW")).shape == (2, 28, 28)


def test_int8_quantize_and_dequantize():
    spec = InputSpec(name="x", shape=[None, 28, 28], layout="NHW", dtype="int8", scale=1 / 255, zero_point=-128)
    q = to_input(np.array([[[0.0] * 28] * 28, [[1.0] * 28] * 28], np.float32), spec)
    assert q.dtype == np.int8 and q[0].max() == -128 and q[1].min() == 127
    out = OutputSpec(name="y", shape=[None, 10], dtype="int8", scale=1 / 256, zero_point=-128)
    probs = from_output(np.array([[-128, 127]], np.int8), out)
    np.testing.assert_allclose(probs, [[0.0, 255 / 256]])


def test_to_input_rejects_wrong_shapes():
    with pytest.raises(UsageError, match=r"\(N, 28, 28\)"):
        to_input(np.zeros((2, 5), np.float32), InputSpec(name="x", shape=[None, 28, 28], layout="NHW"))


def test_runtime_registry():
    assert set(runtime_names()) >= {"onnxruntime", "litert", "tensorflow", "torch"}
    for name in runtime_names():
        cls = get_runtime(name)
        assert cls.name == name
        ok, why = cls.available("cuda")
        assert ok or why  # never a silent "no"
    with pytest.raises(UsageError, match="unknown runtime 'nope'; known:"):
        get_runtime("nope")
