"""The Open Inference Protocol (KServe v2, what Triton's and KServe's clients speak) over REST: parsing an
infer request into the model's input tensor, and rendering the answer.

Hand-written because no maintained library implements the server side outside a whole server (KServe's
and Triton's own); the spec is short. Supported: JSON tensor data (flat or nested, row-major) and the
binary tensor data extension (``Inference-Header-Content-Length``; tritonclient's default), for inputs
and outputs. One input, named and shaped as the model metadata says (from the manifest's input spec):
``FP32`` / ``FP64`` values in the served range, or ``UINT8`` pixels mapped by the manifest's
normalisation. Outputs: ``probabilities`` (FP32, N×classes) and ``label`` (INT64, N), both unless the
request names some. A request's ``parameters.timeout`` (µs, as Triton's) is its deadline.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Optional

import msgspec
import numpy as np

from deploykit.serving.decode import check_batch_size, range_message, sample_type
from deploykit.serving.errors import BadRequest
from deploykit.serving.model_input import ServedInput

__all__ = ["HEADER_LENGTH", "OUTPUTS", "InferCall", "parse_infer", "render_infer", "model_metadata",
           "server_metadata", "PROTOCOL_VERSION"]

HEADER_LENGTH = "Inference-Header-Content-Length"
PROTOCOL_VERSION = "2"
OUTPUTS = {"probabilities": "FP32", "label": "INT64"}
_DTYPES = {"FP32": np.float32, "FP64": np.float64, "UINT8": np.uint8}


class _Tensor(msgspec.Struct):
    name: str
    shape: list[int]
    datatype: str
    parameters: Optional[dict[str, Any]] = None
    data: msgspec.Raw = msgspec.Raw()  # empty: not given (Optional[Raw] is not supported by msgspec)


class _Requested(msgspec.Struct):
    name: str
    parameters: Optional[dict[str, Any]] = None


class _Request(msgspec.Struct):
    inputs: list[_Tensor]
    id: Optional[str] = None
    parameters: Optional[dict[str, Any]] = None
    outputs: Optional[list[_Requested]] = None


_request = msgspec.json.Decoder(_Request)
_flat_numbers = msgspec.json.Decoder(list[float])
_pixels = msgspec.json.Decoder(list[Annotated[int, msgspec.Meta(ge=0, le=255)]])
_encoder = msgspec.json.Encoder()


@dataclass(frozen=True)
class InferCall:
    x: np.ndarray  # float32, N × served.shape
    id: Optional[str]
    outputs: tuple[tuple[str, bool], ...]  # (name, binary) in answer order
    timeout_us: Optional[int]


def _bad(code: str, message: str) -> BadRequest:
    return BadRequest(400, code, message)


def parse_infer(body: bytes, header_length: Optional[str], served: ServedInput, max_images: int) -> InferCall:
    """An infer request body → the input tensor and what to answer. BadRequest (400/413) on any problem."""
    head, binary = body, b""
    if header_length is not None:
        if not header_length.isdigit() or int(header_length) > len(body):
            raise _bad("invalid_header", f"{HEADER_LENGTH}: {header_length!r} is not a length within the body "
                                         f"of {len(body)} bytes")
        head, binary = body[: int(header_length)], body[int(header_length):]
    if not head:
        raise _bad("invalid_json", 'empty body: send {"inputs": [{"name", "shape", "datatype", "data"}]}')
    try:
        req = _request.decode(head)
    except msgspec.ValidationError as exc:
        raise _bad("invalid_input", str(exc)) from None
    except msgspec.DecodeError as exc:
        raise _bad("invalid_json", str(exc)) from None
    if len(req.inputs) != 1:
        raise _bad("invalid_input", f"{len(req.inputs)} inputs given; the model takes one, {served.name!r}")
    tensor = req.inputs[0]
    x = _tensor(tensor, binary, served, max_images)
    default_binary = bool((req.parameters or {}).get("binary_data_output", False))
    if req.outputs:
        unknown = [o.name for o in req.outputs if o.name not in OUTPUTS]
        if unknown:
            raise _bad("unknown_output", f"unknown output(s) {', '.join(map(repr, unknown))}; "
                                         f"outputs: {', '.join(OUTPUTS)}")
        outputs = tuple((o.name, bool((o.parameters or {}).get("binary_data", default_binary))) for o in req.outputs)
    else:
        outputs = tuple((name, default_binary) for name in OUTPUTS)
    timeout = (req.parameters or {}).get("timeout")
    if timeout is not None and (not isinstance(timeout, int) or isinstance(timeout, bool) or timeout <= 0):
        raise _bad("invalid_parameter", f"parameters.timeout={timeout!r}: a positive number of microseconds")
    return InferCall(x, req.id, outputs, timeout)


def _tensor(t: _Tensor, binary: bytes, served: ServedInput, max_images: int) -> np.ndarray:
    if t.name != served.name:
        raise _bad("unknown_input", f"input {t.name!r} is not the model's; its input is {served.name!r}")
    dtype = _DTYPES.get(t.datatype)
    if dtype is None:
        raise _bad("invalid_datatype", f"datatype {t.datatype!r} is not accepted; send FP32 (values in "
                                       f"[{served.low:g}, {served.high:g}]), FP64, or UINT8 (pixels 0..255)")
    want = ["-1", *map(str, served.shape)]
    if len(t.shape) != 1 + len(served.shape) or tuple(t.shape[1:]) != served.shape or t.shape[0] < 0:
        raise _bad("invalid_shape", f"shape {t.shape} does not fit the model's input [{', '.join(want)}]")
    check_batch_size(t.shape[0], max_images)
    count = int(np.prod(t.shape))
    size = (t.parameters or {}).get("binary_data_size")
    if size is not None:
        if len(t.data):
            raise _bad("invalid_input", "give the input's data as JSON or as binary_data_size, not both")
        if size != len(binary) or size != count * np.dtype(dtype).itemsize:
            raise _bad("invalid_binary", f"binary_data_size {size} with {len(binary)} bytes after the header; "
                                         f"shape {t.shape} of {t.datatype} is {count * np.dtype(dtype).itemsize} bytes")
        values = np.frombuffer(binary, dtype=dtype)
    elif not len(t.data) or bytes(t.data) == b"null":
        raise _bad("invalid_input", f"input {t.name!r} has no data (nor binary_data_size)")
    else:
        values = _json_values(t.data, dtype, t.shape, served)
    if values.size != count:
        raise _bad("invalid_shape", f"{values.size} values for shape {t.shape} ({count} values)")
    values = values.reshape(t.shape)
    if dtype is np.uint8:
        return served.from_pixels(values)
    return _in_range(values, served).astype(np.float32, copy=False)


def _json_values(raw: msgspec.Raw, dtype, shape: list[int], served: ServedInput) -> np.ndarray:
    """JSON data, flat (the usual form) or nested as the shape; UINT8 as a flat list of integers."""
    try:
        if dtype is np.uint8:
            return np.asarray(_pixels.decode(raw), dtype=np.uint8)
        values = _flat_numbers.decode(raw)
    except msgspec.ValidationError as exc:
        if dtype is np.uint8:
            raise _bad("invalid_input", f"UINT8 data must be a flat list of integers in [0, 255]: {exc}") from None
        try:  # nested: one level per dimension, numbers in the served range
            values = msgspec.json.decode(raw, type=sample_type(served, len(shape)))
        except msgspec.ValidationError as exc2:
            raise _bad("invalid_input", f"data: {exc2}") from None
    except msgspec.DecodeError as exc:
        raise _bad("invalid_json", f"data: {exc}") from None
    try:
        array = np.asarray(values, dtype=dtype)
    except ValueError:
        raise _bad("invalid_shape", f"data is ragged: not a {'×'.join(map(str, shape))} tensor") from None
    if array.ndim != 1 and array.shape != tuple(shape):
        raise _bad("invalid_shape", f"data nested as {list(array.shape)}; shape says {shape}")
    return array.ravel()


def _in_range(values: np.ndarray, served: ServedInput) -> np.ndarray:
    if not np.isfinite(values).all():
        raise _bad("invalid_input", "data holds NaN or infinity")
    lo, hi = float(values.min()), float(values.max())
    if lo < served.low or hi > served.high:
        raise _bad("invalid_input", range_message(served, f"got values from {lo:g} to {hi:g}"))
    return values


def render_infer(call: InferCall, probs: np.ndarray, *, model: str, version: str) -> tuple[bytes, dict[str, str]]:
    """The infer answer: (body, extra headers). Binary outputs follow the JSON header, in output order."""
    tensors = {"probabilities": probs.astype(np.float32, copy=False), "label": probs.argmax(axis=1).astype(np.int64)}
    outputs, blobs = [], []
    for name, binary in call.outputs:
        t = tensors[name]
        out = {"name": name, "datatype": OUTPUTS[name], "shape": list(t.shape)}
        if binary:
            blob = t.tobytes()
            out["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            out["data"] = t.ravel().tolist()
        outputs.append(out)
    answer = {"model_name": model, "model_version": version, "outputs": outputs}
    if call.id is not None:
        answer["id"] = call.id
    head = _encoder.encode(answer)
    if not blobs:
        return head, {}
    return head + b"".join(blobs), {HEADER_LENGTH: str(len(head))}


def model_metadata(served: ServedInput, *, model: str, version: str, platform: str, classes: int) -> dict:
    return {
        "name": model, "versions": [version], "platform": platform,
        "inputs": [{"name": served.name, "datatype": "FP32", "shape": [-1, *served.shape]}],
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, classes]},
                    {"name": "label", "datatype": "INT64", "shape": [-1]}],
    }


def server_metadata(version: str) -> dict:
    return {"name": "deploykit", "version": version, "extensions": ["binary_tensor_data"]}
