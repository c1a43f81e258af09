"""The HTTP hot path: a Starlette app that BentoML mounts (``@bentoml.asgi_app``) in its own server.

Routes (BentoML itself serves /livez, /readyz, /metrics and the docs UI at /):
- ``POST /predict``        JSON ``{"inputs": [image, ...]}`` → predictions
- ``POST /predict_image``  multipart/form-data with one or more PNG/JPEG files (or a raw image/png or
                           image/jpeg body) → predictions; ``?invert=auto|always|never``
- ``GET /info``            model, format, runtime, state and limits
- ``GET /docs.json``       BentoML's OpenAPI document plus these routes (the docs UI reads it)
- ``GET /metrics``         only when BentoML's is off (``bentoml_http_metrics=false``): the same registry

Every answer is JSON. Client errors are 4xx with ``{"error": {"code", "message"}}`` (a few hundred
bytes at most); overload and not-ready are 503 with Retry-After. Successful answers carry
``X-Inference-Time-Us`` (model compute of the batch the request ran in) and ``X-Server-Time-Us``
(from the request's arrival in the handler to the answer: body read, decode, queue, compute, encode).
"""

from __future__ import annotations

import time
from typing import Optional

import msgspec
import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deploykit.serving.config import ServeSettings
from deploykit.serving.decode import check_batch_size, decode_image, decode_json_batch
from deploykit.serving.engine import Engine
from deploykit.serving.errors import BadRequest, Overloaded, error_body
from deploykit.serving.metrics import ServingMetrics

__all__ = ["ServingApp", "INFERENCE_TIME_HEADER", "SERVER_TIME_HEADER"]

INFERENCE_TIME_HEADER = "X-Inference-Time-Us"
SERVER_TIME_HEADER = "X-Server-Time-Us"
_JSON = "application/json"
_IMAGE_TYPES = ("image/png", "image/jpeg")
_encoder = msgspec.json.Encoder()


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refusing more than `limit` bytes before reading it when Content-Length says so,
    and while streaming otherwise (chunked uploads)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise BadRequest(400, "bad_request", "invalid Content-Length header")
        if int(declared) > limit:
            raise BadRequest(413, "body_too_large", f"body of {declared} bytes; the limit is {limit} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, "body_too_large", f"body over the limit of {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class _MountedApp(Starlette):
    """A Starlette app without error/exception middleware of its own: BentoML's app, which mounts
    it, already wraps every request in both; a second layer only costs time on the hot path."""

    def build_middleware_stack(self):
        return self.router


class _Endpoint:
    """A handler `async (Request) -> Response` as a plain ASGI app. Starlette wraps function
    endpoints in a per-request exception-handling layer; these handlers turn every client error into
    a response themselves, so the layer is skipped."""

    __slots__ = ("handler",)

    def __init__(self, handler):
        self.handler = handler

    async def __call__(self, scope, receive, send) -> None:
        response = await self.handler(Request(scope, receive))
        await response(scope, receive, send)


class ServingApp:
    """Holds the Starlette app (created at import, mounted by the BentoML service) and, once the
    service instance starts, the engine and settings it serves with."""

    def __init__(self):
        self.engine: Optional[Engine] = None
        self.settings: Optional[ServeSettings] = None
        self.metrics = ServingMetrics()
        self.extra_openapi = None  # callable returning BentoML's spec dict; set by the service
        self._inflight = 0  # prediction requests in this worker's handlers, body reads included
        self.asgi = _MountedApp(routes=[
            Route("/predict", _Endpoint(self.predict), methods=["POST"]),
            Route("/predict_image", _Endpoint(self.predict_image), methods=["POST"]),
            Route("/info", _Endpoint(self.info), methods=["GET"]),
            # Shadows BentoML's /docs.json (the mount is matched first) to add these routes to it.
            Route("/docs.json", _Endpoint(self.openapi), methods=["GET"]),
            # Reached only when BentoML's own /metrics route is off (bentoml_http_metrics=false).
            Route("/metrics", _Endpoint(self.prometheus), methods=["GET"]),
        ])

    def attach(self, engine: Engine, settings: ServeSettings) -> None:
        self.engine = engine
        self.settings = settings
        engine.on_batch = self.metrics.batch_observer(engine.info.format)

    # -- handlers -----------------------------------------------------------------------------------
    async def predict(self, request: Request) -> Response:
        start = time.perf_counter_ns()
        self._inflight += 1
        try:
            engine, settings = self._serving()
            if _media_type(request) != _JSON:
                raise BadRequest(415, "unsupported_media_type", f"send Content-Type: {_JSON} (got {_media_type(request) or 'none'})")
            body = await _read_body(request, settings.max_body_bytes)
            x = decode_json_batch(body, settings.max_images)
            return await self._answer("predict", engine, x, start)
        except BadRequest as exc:
            return self._error("predict", exc, start)
        finally:
            self._inflight -= 1

    async def predict_image(self, request: Request) -> Response:
        start = time.perf_counter_ns()
        self._inflight += 1
        try:
            engine, settings = self._serving()
            invert = request.query_params.get("invert", settings.invert)
            if invert not in ("auto", "always", "never"):
                raise BadRequest(422, "invalid_parameter", f"invert={invert!r}: use auto, always or never")
            media = _media_type(request)
            if media == "multipart/form-data":
                files = await self._multipart_files(request, settings)
            elif media in _IMAGE_TYPES:
                files = [await _read_body(request, settings.max_body_bytes)]
            else:
                raise BadRequest(415, "unsupported_media_type",
                                 f"send multipart/form-data with PNG/JPEG files, or an image/png or image/jpeg body (got {media or 'none'})")
            check_batch_size(len(files), settings.max_images)
            x = np.stack([decode_image(f, max_pixels=settings.max_image_pixels, invert=invert) for f in files])
            return await self._answer("predict_image", engine, x, start)
        except BadRequest as exc:
            return self._error("predict_image", exc, start)
        finally:
            self._inflight -= 1

    async def info(self, request: Request) -> Response:
        engine, settings = self.engine, self.settings
        if engine is None:
            return Response(_encoder.encode({"stage": "starting"}), media_type=_JSON)
        i = engine.info
        body = {
            "model": i.model, "format": i.format, "runtime": i.runtime, "classes": list(i.classes),
            "stage": engine.stage, "ready": engine.ready, "error": engine.error,
            "load_s": engine.load_s, "warmup_p50_ms": engine.warmup_p50_ms,
            "inline": engine.inline,
            "limits": {k: getattr(settings, k) for k in (
                "max_batch_size", "max_latency_ms", "max_images", "max_body_bytes", "max_image_pixels", "max_queue",
                "max_concurrency")},
            "invert": settings.invert, "threads": settings.threads, "device": settings.device,
            "headers": {"inference_time": INFERENCE_TIME_HEADER, "server_time": SERVER_TIME_HEADER},
        }
        return Response(_encoder.encode(body), media_type=_JSON)

    async def openapi(self, request: Request) -> Response:
        from deploykit.serving.openapi import merged_spec

        base = self.extra_openapi() if self.extra_openapi else {}
        return Response(_encoder.encode(merged_spec(base)), media_type=_JSON)

    async def prometheus(self, request: Request) -> Response:
        import anyio
        from bentoml._internal.container import BentoMLContainer

        client = BentoMLContainer.metrics_client.get()  # the same multiprocess registry BentoML exports
        return Response(await anyio.to_thread.run_sync(client.generate_latest), media_type=client.CONTENT_TYPE_LATEST)

    # -- helpers ------------------------------------------------------------------------------------
    def _serving(self) -> tuple[Engine, ServeSettings]:
        if self.engine is None:
            raise Overloaded("server is starting; retry later")
        self.engine.check_ready()
        if self._inflight > self.settings.max_concurrency:  # this request is counted already
            raise Overloaded(f"{self._inflight - 1} requests in progress (limit {self.settings.max_concurrency}); retry later",
                             self.settings.retry_after_s)
        return self.engine, self.settings

    async def _multipart_files(self, request: Request, settings: ServeSettings) -> list[bytes]:
        from starlette.datastructures import UploadFile
        from starlette.formparsers import MultiPartException, MultiPartParser

        body = await _read_body(request, settings.max_body_bytes)

        async def once():
            yield body

        parser = MultiPartParser(request.headers, once(), max_files=settings.max_images + 1, max_fields=16,
                                 max_part_size=settings.max_body_bytes)
        try:
            form = await parser.parse()
        except MultiPartException as exc:
            raise BadRequest(400, "invalid_multipart", f"cannot parse the multipart body: {exc.message}") from None
        try:
            uploads = [v for _, v in form.multi_items() if isinstance(v, UploadFile)]
            if not uploads:
                raise BadRequest(422, "empty_batch", "no file in the multipart body: send the image as a file part")
            check_batch_size(len(uploads), settings.max_images)
            return [await u.read() for u in uploads]
        finally:
            await form.close()

    async def _answer(self, endpoint: str, engine: Engine, x: np.ndarray, start: int) -> Response:
        probs, compute_us = await engine.infer(x)
        labels = probs.argmax(axis=1)
        classes = engine.info.classes
        predictions = [
            {"label": int(k), "class": classes[k] if k < len(classes) else str(k), "probabilities": p}
            for k, p in zip(labels.tolist(), probs.tolist())
        ]
        body = _encoder.encode({"model": engine.info.model, "format": engine.info.format,
                                "runtime": engine.info.runtime, "predictions": predictions})
        server_us = (time.perf_counter_ns() - start) / 1e3
        self.metrics.observe(endpoint, engine.info.format, 200, server_us)
        return Response(body, media_type=_JSON, headers={
            INFERENCE_TIME_HEADER: f"{compute_us:.0f}", SERVER_TIME_HEADER: f"{server_us:.0f}"})

    def _error(self, endpoint: str, exc: BadRequest, start: int) -> Response:
        fmt = self.engine.info.format if self.engine is not None else "none"
        self.metrics.observe(endpoint, fmt, exc.status, (time.perf_counter_ns() - start) / 1e3)
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Overloaded) else None
        return Response(error_body(exc.code, exc.message), status_code=exc.status, media_type=_JSON, headers=headers)
