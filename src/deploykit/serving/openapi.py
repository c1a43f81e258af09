"""OpenAPI description of the prediction routes, merged into BentoML's own document (/docs.json),
which the docs UI at / renders. Written out by hand: the routes are plain Starlette handlers (the fast
path), so no framework derives it from type hints."""

from __future__ import annotations

import copy

__all__ = ["merged_spec", "PATHS", "SCHEMAS"]

_IMAGE = {
    "oneOf": [
        {"type": "array", "minItems": 28, "maxItems": 28, "description": "28 rows",
         "items": {"type": "array", "minItems": 28, "maxItems": 28, "items": {"$ref": "#/components/schemas/Pixel"}}},
        {"type": "array", "minItems": 784, "maxItems": 784, "description": "784 pixels, row-major",
         "items": {"$ref": "#/components/schemas/Pixel"}},
    ]
}

SCHEMAS = {
    "Pixel": {"type": "number", "minimum": 0, "maximum": 1,
              "description": "pixel / 255; white digit on black (values outside [0, 1] are rejected, not clipped)"},
    "PredictRequest": {"type": "object", "required": ["inputs"], "additionalProperties": False,
                       "properties": {"inputs": {"type": "array", "minItems": 1, "items": _IMAGE,
                                                 "description": "a batch of images (limit: GET /info → limits.max_images)"}}},
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
}

_TIME_HEADERS = {
    "X-Inference-Time-Us": {"description": "model compute time of the batch this request ran in, µs",
                            "schema": {"type": "integer"}},
    "X-Server-Time-Us": {"description": "time in the handler (read, decode, queue, compute, encode), µs",
                         "schema": {"type": "integer"}},
}


def _error(description: str, retry: bool = False) -> dict:
    resp = {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
    if retry:
        resp["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "seconds"}}
    return resp


_ERRORS = {
    "400": _error("malformed JSON or multipart body"),
    "413": _error("body, batch or image over the limit"),
    "415": _error("wrong Content-Type, or an image that is not PNG/JPEG"),
    "422": _error("wrong shape, non-numeric, non-finite or out-of-range values, empty batch, corrupt image"),
    "503": _error("overloaded or not ready yet", retry=True),
}
_OK = {"description": "one prediction per image", "headers": _TIME_HEADERS,
       "content": {"application/json": {"schema": {"$ref": "#/components/schemas/PredictResponse"}}}}

PATHS = {
    "/predict": {"post": {
        "tags": ["Service APIs"], "operationId": "deploykit__predict",
        "summary": "Classify a batch of 28×28 images given as JSON",
        "requestBody": {"required": True, "content": {"application/json": {
            "schema": {"$ref": "#/components/schemas/PredictRequest"}}}},
        "responses": {"200": _OK, **_ERRORS}}},
    "/predict_image": {"post": {
        "tags": ["Service APIs"], "operationId": "deploykit__predict_image",
        "summary": "Classify uploaded PNG/JPEG images (any size or colour)",
        "description": "Each file is converted like the training data: grayscale, polarity normalised to a light "
                       "digit on dark (invert=auto: when the border is light), padded square, 28×28, [0, 1].",
        "parameters": [{"name": "invert", "in": "query", "required": False,
                        "schema": {"type": "string", "enum": ["auto", "always", "never"], "default": "auto"}}],
        "requestBody": {"required": True, "content": {
            "multipart/form-data": {"schema": {"type": "object", "properties": {
                "image": {"type": "array", "items": {"type": "string", "format": "binary"}}}}},
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "image/jpeg": {"schema": {"type": "string", "format": "binary"}}}},
        "responses": {"200": _OK, **_ERRORS}}},
    "/info": {"get": {
        "tags": ["Infrastructure"], "operationId": "deploykit__info",
        "summary": "Model, format, runtime, loading state and limits of this worker",
        "responses": {"200": {"description": "JSON object"}}}},
}


def merged_spec(base: dict) -> dict:
    """BentoML's OpenAPI document with the prediction routes and their schemas added."""
    spec = copy.deepcopy(base) if base else {"openapi": "3.0.2", "info": {"title": "deploykit", "version": "0"}}
    spec.setdefault("paths", {}).update(PATHS)
    spec.setdefault("components", {}).setdefault("schemas", {}).update(SCHEMAS)
    return spec
