"""Open Inference Protocol parsing/rendering and the served input read from a manifest's input spec."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deploykit.manifest import InputSpec
from deploykit.serving.decode import decode_json_batch
from deploykit.serving.errors import BadRequest
from deploykit.serving.model_input import MNIST_INPUT, ServedInput
from deploykit.serving.oip import HEADER_LENGTH, parse_infer, render_infer

RGB = ServedInput.from_spec(InputSpec(name="image", shape=[None, 96, 96, 3], layout="NHWC"))
CNN = ServedInput.from_spec(InputSpec(name="input", shape=[None, 28, 28, 1], layout="NHWC"))


def _body(shape, data, datatype="FP32", name="input", **extra) -> bytes:
    return json.dumps({"inputs": [{"name": name, "shape": shape, "datatype": datatype, "data": data}], **extra}).encode()


def _bad(body: bytes, served=MNIST_INPUT, header=None) -> BadRequest:
    with pytest.raises(BadRequest) as info:
        parse_infer(body, header, served, 8)
    return info.value


def test_accepted_shapes_follow_the_manifest():
    assert MNIST_INPUT.accepted == ((28, 28), (784,))
    assert CNN.accepted == ((28, 28, 1), (28, 28), (784,))
    assert RGB.accepted == ((96, 96, 3), (27648,)) and RGB.geometry == (96, 96, 3)
    tab = ServedInput.from_spec(InputSpec(name="x", shape=[None, 20], layout="NC"))
    assert tab.accepted == ((20,),) and tab.geometry is None
    scaled = ServedInput.from_spec(InputSpec(name="x", shape=[None, 4], layout="NC", pixel_scale=2 / 255, pixel_offset=-1))
    assert (scaled.low, scaled.high) == (-1.0, 1.0)


def test_json_batches_of_any_manifest_shape():
    x = np.random.default_rng(0).random((2, 96, 96, 3), dtype=np.float32)
    got = decode_json_batch(json.dumps({"inputs": x.tolist()}).encode(), 4, RGB)
    np.testing.assert_array_equal(got, x)
    with pytest.raises(BadRequest) as info:
        decode_json_batch(json.dumps({"inputs": [[[[0.0] * 3] * 96] * 95]}).encode(), 4, RGB)
    assert info.value.code == "invalid_shape" and "96×96×3 or 27648" in info.value.message
    cnn = decode_json_batch(json.dumps({"inputs": [[[0.5] * 28] * 28]}).encode(), 4, CNN)
    assert cnn.shape == (1, 28, 28, 1)


def test_flat_nested_and_binary_tensors_give_the_same_input():
    x = np.random.default_rng(1).random((2, 28, 28), dtype=np.float32)
    flat = parse_infer(_body([2, 28, 28], x.ravel().tolist()), None, MNIST_INPUT, 8)
    nested = parse_infer(_body([2, 28, 28], x.tolist()), None, MNIST_INPUT, 8)
    head = json.dumps({"inputs": [{"name": "input", "shape": [2, 28, 28], "datatype": "FP32",
                                   "parameters": {"binary_data_size": x.nbytes}}]}).encode()
    binary = parse_infer(head + x.tobytes(), str(len(head)), MNIST_INPUT, 8)
    for call in (flat, nested, binary):
        np.testing.assert_array_equal(call.x, x)
    assert [name for name, _ in flat.outputs] == ["probabilities", "label"]


@pytest.mark.parametrize("body, words", [
    (_body([1, 28, 27], [0.0] * 756), "does not fit the model's input [-1, 28, 28]"),
    (_body([1, 28, 28], [0.0] * 783), "783 values for shape"),
    (_body([1, 28, 28], [0.0] * 784, name="x"), "its input is 'input'"),
    (_body([1, 28, 28], [0.0] * 784, "BOOL"), "datatype 'BOOL' is not accepted"),
    (_body([1, 28, 28], [2.0] * 784), "values must be in [0, 1]"),
    (_body([1, 28, 28], [True] * 784), "got `bool`"),
    (_body([1, 28, 28], [300] * 784, "UINT8"), "integers in [0, 255]"),
    (_body([1, 28, 28], [0.0] * 784, outputs=[{"name": "logits"}]), "unknown output"),
    (_body([1, 28, 28], [0.0] * 784, parameters={"timeout": -5}), "positive number of microseconds"),
    (b"{", "truncated"),
    (b'{"inputs": []}', "0 inputs given"),
])
def test_bad_requests_are_400_naming_the_problem(body, words):
    err = _bad(body)
    assert err.status == 400 and words in err.message, err.message


def test_batch_limit_and_binary_size_mismatch():
    assert _bad(_body([9, 28, 28], [0.0] * 9 * 784)).status == 413
    head = json.dumps({"inputs": [{"name": "input", "shape": [1, 28, 28], "datatype": "FP32",
                                   "parameters": {"binary_data_size": 100}}]}).encode()
    assert "binary_data_size 100" in _bad(head + b"\0" * 100, header=str(len(head))).message
    assert _bad(head, header="999999").code == "invalid_header"


def test_binary_and_json_answers():
    probs = np.array([[0.1, 0.9], [0.8, 0.2]], np.float32)
    call = parse_infer(_body([2, 28, 28], [0.0] * 1568, id="a", parameters={"binary_data_output": True}),
                       None, MNIST_INPUT, 8)
    body, headers = render_infer(call, probs, model="m", version="onnx")
    n = int(headers[HEADER_LENGTH])
    head = json.loads(body[:n])
    assert head["id"] == "a" and head["outputs"][0]["parameters"]["binary_data_size"] == probs.nbytes
    np.testing.assert_array_equal(np.frombuffer(body[n:n + probs.nbytes], np.float32).reshape(2, 2), probs)
    assert np.frombuffer(body[n + probs.nbytes:], np.int64).tolist() == [1, 0]
    call = parse_infer(_body([2, 28, 28], [0.0] * 1568, outputs=[{"name": "label"}]), None, MNIST_INPUT, 8)
    body, headers = render_infer(call, probs, model="m", version="onnx")
    assert headers == {} and json.loads(body)["outputs"] == [{"name": "label", "datatype": "INT64", "shape": [2], "data": [1, 0]}]
