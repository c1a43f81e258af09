"""OpenAPI description of the prediction routes, merged into BentoML's own document (/docs.json),
which the docs UI at / renders, and the route list BentoML's HTTP client discovers (/schema.json).

Generated from the served model's input (its manifest): the sample shapes and value range /predict
accepts, the v2 metadata, the model name and version in the protocol paths. Written out by hand: the
routes are plain Starlette handlers (the fast path), so no framework derives it from type hints.
"""

from __future__ import annotations

import copy
from typing import Optional

from deploykit.serving.model_input import MNIST_INPUT, ServedInput

__all__ = ["merged_spec", "client_schema", "paths", "schemas"]


def _nested(dims: tuple[int, ...], leaf: dict) -> dict:
    """A JSON array schema nested as `dims`."""
    schema = leaf
    for d in reversed(dims):
        schema = {"type": "array", "minItems": d, "maxItems": d, "items": schema}
    return schema


def _batch(served: ServedInput, max_images: int, leaf: dict) -> dict:
    """A batch of samples, all in one of the accepted shapes (the server refuses batches that mix them)."""
    # The batch limit (max_images, 413 past it) is said in words, not as maxItems: a body over it is
    # well-formed, and answered 413 rather than a validation error.
    forms = [{"type": "array", "minItems": 1, "items": _nested(s, leaf),
              "description": f"up to {max_images} samples of {'×'.join(map(str, s))}"} for s in served.accepted]
    return forms[0] if len(forms) == 1 else {"oneOf": forms}


def schemas(served: ServedInput, max_images: int, classes: int) -> dict:
    value = {"$ref": "#/components/schemas/Value"}
    v1_samples = _batch(served, max_images, value)
    return {
        "Value": {"type": "number", "minimum": served.low, "maximum": served.high,
                  "description": "pixel × pixel_scale + pixel_offset, as the model's manifest says (values outside "
                                 "are rejected, not clipped)"},
        "PredictRequest": {"type": "object", "required": ["inputs"], "additionalProperties": False,
                           "properties": {"inputs": {**_batch(served, max_images, value),
                                                     "description": "a batch (limit: GET /info → limits.max_images)"}}},
        "Prediction": {"type": "object", "properties": {
            "label": {"type": "integer", "description": "index of the most probable class"},
            "class": {"type": "string", "description": "its name from the model's manifest"},
            "probabilities": {"type": "array", "items": {"type": "number"}, "description": "one per class"}}},
        "PredictResponse": {"type": "object", "properties": {
            "model": {"type": "string"}, "format": {"type": "string"}, "runtime": {"type": "string"},
            "predictions": {"type": "array", "items": {"$ref": "#/components/schemas/Prediction"}}}},
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {
            "code": {"type": "string", "example": "invalid_shape"},
            "message": {"type": "string", "description": "names the problem; at most 240 characters"}}}}},
        "ProtocolError": {"type": "object", "properties": {
            "error": {"type": "string", "description": "names the problem; at most 240 characters"},
            "code": {"type": "string"}}},
        "InferRequest": {"type": "object", "required": ["inputs"], "properties": {
            "id": {"type": "string"},
            "parameters": {"type": "object", "properties": {
                "timeout": {"type": "integer", "minimum": 1, "description": "deadline in µs from arrival"},
                "binary_data_output": {"type": "boolean"}}},
            "inputs": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                "type": "object", "required": ["name", "shape", "datatype"], "properties": {
                    "name": {"type": "string", "enum": [served.name]},
                    "shape": {"type": "array", "minItems": 1 + len(served.shape), "maxItems": 1 + len(served.shape),
                              "items": {"type": "integer", "minimum": 1}},
                    "datatype": {"type": "string", "enum": ["FP32", "FP64", "UINT8"]},
                    "parameters": {"type": "object"},
                    "data": {"type": "array", "description": "row-major, flat or nested"}}}},
            "outputs": {"type": "array", "items": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": "string", "enum": ["probabilities", "label"]},
                "parameters": {"type": "object"}}}}}},
        "InferResponse": {"type": "object", "properties": {
            "model_name": {"type": "string"}, "model_version": {"type": "string"}, "id": {"type": "string"},
            "outputs": {"type": "array", "items": {"type": "object", "properties": {
                "name": {"type": "string"}, "datatype": {"type": "string"},
                "shape": {"type": "array", "items": {"type": "integer"}}, "data": {"type": "array"},
                "parameters": {"type": "object"}}}}}},
        "V1Request": {"oneOf": [
            {"type": "object", "required": ["instances"], "additionalProperties": False,
             "properties": {"instances": v1_samples, "signature_name": {"type": "string"}}},
            {"type": "object", "required": ["inputs"], "additionalProperties": False,
             "properties": {"inputs": v1_samples, "signature_name": {"type": "string"}}}]},
        "V1Response": {"type": "object", "properties": {"predictions": {
            "type": "array", "items": {"type": "array", "minItems": classes, "maxItems": classes,
                                       "items": {"type": "number"}}}}},
    }


_TIME_HEADERS = {
    "X-Inference-Time-Us": {"description": "model compute time of the batch this request ran in (the runtime "
                                           "call, as deploykit bench times it), µs",
                            "schema": {"type": "integer"}},
    "X-Batch-Size": {"description": "images in the model call this request ran in (adaptive batching)",
                     "schema": {"type": "integer"}},
    "X-Server-Time-Us": {"description": "time in the handler (read, decode, queue, compute, encode), µs",
                         "schema": {"type": "integer"}},
}
_TIMEOUT = {"name": "X-Request-Timeout-Ms", "in": "header", "required": False,
            "description": "deadline from arrival; past it the request is dropped and answered 503",
            "schema": {"type": "number", "minimum": 0, "exclusiveMinimum": True}}


def _error(description: str, retry: bool = False, schema: str = "Error") -> dict:
    resp = {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}
    if retry:
        resp["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return resp


def _errors(schema: str, *statuses: str) -> dict:
    what = {
        "400": "malformed body, header, or (protocol routes) any invalid input",
        "404": "no such model or version",
        "408": "body not received in time",
        "413": "body, batch or image over the limit",
        "415": "wrong Content-Type, or an image that is not PNG/JPEG, or a model that takes no images",
        "422": "wrong shape, non-numeric or out-of-range values, empty batch, corrupt image",
    }
    out = {s: _error(what[s], schema=schema) for s in statuses}
    out["503"] = _error("overloaded, deadline passed, or not ready yet", retry=True, schema=schema)
    return out


def _ok(schema: str, description: str = "one prediction per sample") -> dict:
    return {"description": description, "headers": _TIME_HEADERS,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{schema}"}}}}


def _json_get(summary: str, op: str, params: list, ready: bool = False) -> dict:
    responses = {"200": {"description": "JSON object", "content": {"application/json": {"schema": {"type": "object"}}}}}
    if params:
        responses["404"] = _error("no such model or version", schema="ProtocolError")
    if ready:
        responses["503"] = _error("not ready", retry=True, schema="ProtocolError")
    return {"get": {"tags": ["Inference protocols"], "operationId": op, "summary": summary, "parameters": params,
                    "responses": responses}}


def paths(served: ServedInput, model: str, version: str, image: bool) -> dict:
    name = {"name": "name", "in": "path", "required": True, "schema": {"type": "string", "enum": [model]}}
    ver = {"name": "version", "in": "path", "required": True, "schema": {"type": "string", "enum": [version]}}
    infer = {"tags": ["Inference protocols"], "summary": "Open Inference Protocol (KServe v2) inference",
             "description": "JSON tensors, or the binary tensor extension (Inference-Header-Content-Length).",
             "requestBody": {"required": True, "content": {"application/json": {
                 "schema": {"$ref": "#/components/schemas/InferRequest"}}}},
             "responses": {"200": _ok("InferResponse", "the outputs"), **_errors("ProtocolError", "400", "404", "408", "413")}}
    out = {
        "/predict": {"post": {
            "tags": ["Service APIs"], "operationId": "deploykit__predict",
            "summary": f"Classify a batch of {served.describe_shapes()} samples given as JSON",
            "parameters": [_TIMEOUT],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
            "responses": {"200": _ok("PredictResponse"), **_errors("Error", "400", "408", "413", "415", "422")}}},
        "/predict_image": {"post": {
            "tags": ["Service APIs"], "operationId": "deploykit__predict_image",
            "summary": "Classify uploaded PNG/JPEG images (any size or colour)" if image
                       else "Not for this model: it takes a tensor, not images (415)",
            "description": "Each file is converted like the training data and resized to the model's input "
                           "(docs/serving.md).",
            "parameters": [{"name": "invert", "in": "query", "required": False,
                            "schema": {"type": "string", "enum": ["auto", "always", "never"], "default": "auto"}},
                           _TIMEOUT],
            "requestBody": {"required": True, "content": {
                "multipart/form-data": {"schema": {"type": "object", "required": ["image"], "properties": {
                    "image": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"}}}}},
                "image/png": {"schema": {"type": "string", "format": "binary"}},
                "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {"200": _ok("PredictResponse"), **_errors("Error", "400", "408", "413", "415", "422")}}},
        "/info": {"get": {
            "tags": ["Infrastructure"], "operationId": "deploykit__info",
            "summary": "Model, format, runtime, input, loading state and limits of this worker",
            "responses": {"200": {"description": "JSON object",
                                  "content": {"application/json": {"schema": {"type": "object"}}}}}}},
        "/v2": _json_get("Server metadata", "v2_server_metadata", []),
        "/v2/health/live": _json_get("Server liveness", "v2_live", [], ready=True),
        "/v2/health/ready": _json_get("Server readiness", "v2_ready", [], ready=True),
        "/v2/models/{name}": _json_get("Model metadata (inputs from the manifest)", "v2_model_metadata", [name]),
        "/v2/models/{name}/versions/{version}": _json_get("Model metadata", "v2_model_version_metadata", [name, ver]),
        "/v2/models/{name}/ready": _json_get("Model readiness", "v2_model_ready", [name], ready=True),
        "/v2/models/{name}/versions/{version}/ready": _json_get("Model readiness", "v2_model_version_ready",
                                                                [name, ver], ready=True),
        "/v2/models/{name}/infer": {"post": {**infer, "operationId": "v2_infer", "parameters": [name, _TIMEOUT]}},
        "/v2/models/{name}/versions/{version}/infer": {"post": {**infer, "operationId": "v2_version_infer",
                                                                "parameters": [name, ver, _TIMEOUT]}},
        "/v1/models/{name}": _json_get("KServe v1 model readiness", "v1_model", [name], ready=True),
        "/v1/models/{name}:predict": {"post": {
            "tags": ["Inference protocols"], "operationId": "v1_predict",
            "summary": "KServe v1 / TF Serving predict: instances (rows) or inputs (columns)",
            "parameters": [name, _TIMEOUT],
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/V1Request"}}}},
            "responses": {"200": _ok("V1Response", "probabilities per instance"),
                          **_errors("ProtocolError", "400", "404", "408", "413")}}},
    }
    return out


def merged_spec(base: dict, info=None, max_images: int = 64) -> dict:
    """BentoML's OpenAPI document with the prediction routes and their schemas added. `info` is the
    engine's ModelInfo (None before the service instance starts: the reference MNIST input)."""
    served, model, version, classes = _describe(info)
    spec = copy.deepcopy(base) if base else {"openapi": "3.0.2", "info": {"title": "deploykit", "version": "0"}}
    spec.setdefault("paths", {}).update(paths(served, model, version, served.geometry is not None))
    spec.setdefault("components", {}).setdefault("schemas", {}).update(schemas(served, max_images, classes))
    return spec


def _describe(info) -> tuple[ServedInput, str, str, int]:
    if info is None:
        return MNIST_INPUT, "model", "format", 10
    return info.served, info.model, info.format, len(info.classes) or 10


def client_schema(info=None, max_images: int = 64) -> dict:
    """The routes in the form BentoML's HTTP client reads from /schema.json (its own service lists
    `@bentoml.api` methods there; these routes are a mounted app, so they are listed by hand):
    ``bentoml.SyncHTTPClient(url).predict(inputs=[...])`` and ``.predict_image(images=[path, ...])``."""
    served, *_ = _describe(info)
    value = {"type": "number", "minimum": served.low, "maximum": served.high}
    answer = {"type": "object", "title": "PredictResponse"}
    routes = [{"name": "predict", "route": "/predict", "doc": "Classify a batch of samples given as JSON",
               "input": {"type": "object", "title": "Input", "required": ["inputs"],
                         "properties": {"inputs": _batch(served, max_images, value)}},
               "output": answer, "is_task": False}]
    if served.geometry is not None:
        routes.append({"name": "predict_image", "route": "/predict_image", "doc": "Classify PNG/JPEG images",
                       "input": {"type": "object", "title": "Input", "required": ["images"],
                                 "properties": {"images": {"type": "array", "items": {"type": "file", "format": "image"}}}},
                       "output": answer, "is_task": False})
    return {"name": "deploykit", "type": "service", "routes": routes}
