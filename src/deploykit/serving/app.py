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
from starlette.routing import BaseRoute, Match, Route

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


# Bytes of an over-limit or refused body read and thrown away before answering: a server that closes
# while the client still sends makes the client see ECONNRESET instead of the answer (urllib does).
_DRAIN_BYTES = 16 << 20


class _Body:
    """Reads a request body under a deadline, counting the requests still sending.

    Hand-written because neither uvicorn nor BentoML has a body-read timeout (uvicorn's timeouts cover
    keep-alive and shutdown only) nor a limit on uploads in progress. A request whose body came with
    its headers (the usual small request) never waits and never takes an upload slot; one that must
    wait for more takes a slot, and beyond `max_uploads` it is refused at once, so stalled uploads
    cannot fill the in-progress limit or hold more than max_uploads bodies in memory."""

    __slots__ = ("app", "request", "deadline", "complete", "slot")

    def __init__(self, app: "ServingApp", request: Request, timeout_s: float):
        self.app, self.request = app, request
        self.deadline = time.monotonic() + timeout_s
        self.complete = False
        self.slot = False

    async def _next(self) -> dict:
        import anyio

        try:
            with anyio.fail_after(max(self.deadline - time.monotonic(), 0.001)):
                message = await self.request.receive()
        except TimeoutError:
            raise BadRequest(408, "body_timeout", f"request body not received within {self.app.settings.body_timeout_s:g} s") from None
        if message["type"] == "http.disconnect":
            raise BadRequest(400, "client_disconnected", "client disconnected before the body was complete")
        if not message.get("more_body", False):
            self.complete = True
        elif not self.slot:
            limit = self.app.settings.max_uploads
            if self.app._uploads >= limit:
                raise Overloaded(f"{self.app._uploads} uploads in progress (limit {limit}); retry later",
                                 self.app.settings.retry_after_s)
            self.slot = True
            self.app._uploads += 1
        return message

    async def read(self, limit: int) -> bytes:
        """The body, refusing more than `limit` bytes before reading it when Content-Length says so,
        and while streaming otherwise (chunked uploads)."""
        declared = self.request.headers.get("content-length")
        if declared is not None:
            if not declared.isdigit():
                raise BadRequest(400, "bad_request", "invalid Content-Length header")
            if int(declared) > limit:
                raise BadRequest(413, "body_too_large", f"body of {declared} bytes; the limit is {limit} bytes")
        chunks, size = [], 0
        try:
            while not self.complete:
                chunk = (await self._next()).get("body", b"")
                size += len(chunk)
                if size > limit:
                    raise BadRequest(413, "body_too_large", f"body over the limit of {limit} bytes")
                chunks.append(chunk)
        finally:
            self.release()
        return b"".join(chunks)

    async def drain(self) -> None:
        """Read and discard what the client still sends (bounded in bytes and by the deadline)."""
        size = 0
        try:
            while not self.complete and size < _DRAIN_BYTES:
                size += len((await self._next()).get("body", b""))
        except BadRequest:
            pass
        finally:
            self.release()

    def release(self) -> None:
        if self.slot:
            self.slot = False
            self.app._uploads -= 1


class _MountedApp(Starlette):
    """A Starlette app without error/exception middleware of its own: BentoML's app, which mounts
    it, already wraps every request in both; a second layer only costs time on the hot path."""

    def build_middleware_stack(self):
        return _json_errors(self.router)


def _json_errors(router):
    """404/405 from the router (Starlette raises HTTPException inside a mounted app, and BentoML's
    handler renders it as plain text) and unexpected errors become the documented JSON errors."""
    from starlette.exceptions import HTTPException

    async def app(scope, receive, send) -> None:
        try:
            await router(scope, receive, send)
        except HTTPException as exc:
            code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
            message = {404: f"no route {scope.get('path', '')}; see GET /docs.json",
                       405: f"{scope.get('method')} is not allowed here"}.get(exc.status_code, str(exc.detail))
            await Response(error_body(code, message), status_code=exc.status_code, media_type=_JSON,
                           headers=exc.headers)(scope, receive, send)

    return app


class _NotFound(BaseRoute):
    """The last route: any path nothing else serves gets a JSON 404. Hand-written because BentoML
    renders its router's 404 as plain text and offers no handler for it; it matches only what no
    route of this app or of BentoML serves (BentoML's own routes come first; its static folders,
    mounted after this app, are left to it), so known paths keep their 405."""

    def __init__(self, known: set[str], left_to_bentoml: tuple[str, ...] = ("/static_content", "/assets")):
        self.known, self.left_to_bentoml = known, left_to_bentoml

    def matches(self, scope):
        path = scope.get("path", "")
        if scope["type"] != "http" or path in self.known or path.startswith(self.left_to_bentoml):
            return Match.NONE, {}
        return Match.FULL, {}

    async def handle(self, scope, receive, send) -> None:
        body = error_body("not_found", f"no route {scope.get('path', '')}; see GET /docs.json")
        await Response(body, status_code=404, media_type=_JSON)(scope, receive, send)


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
        self._inflight = 0  # prediction requests past their body read (decode, queue, compute)
        self._uploads = 0  # requests waiting for more of their body (see _Body)
        self._decode_limiter = None
        self.asgi = _MountedApp(routes=[
            Route("/predict", _Endpoint(self.predict), methods=["POST"]),
            Route("/predict_image", _Endpoint(self.predict_image), methods=["POST"]),
            Route("/info", _Endpoint(self.info), methods=["GET"]),
            # Shadows BentoML's /docs.json (the mount is matched first) to add these routes to it.
            Route("/docs.json", _Endpoint(self.openapi), methods=["GET"]),
            # Reached only when BentoML's own /metrics route is off (bentoml_http_metrics=false).
            Route("/metrics", _Endpoint(self.prometheus), methods=["GET"]),
        ])
        self.asgi.router.routes.append(_NotFound({r.path for r in self.asgi.router.routes}))

    def attach(self, engine: Engine, settings: ServeSettings) -> None:
        self.engine = engine
        self.settings = settings
        engine.on_batch = self.metrics.batch_observer(engine.info.format)

    # -- handlers -----------------------------------------------------------------------------------
    async def predict(self, request: Request) -> Response:
        start = time.perf_counter_ns()
        body, counted = None, False
        try:
            engine, settings = self._serving()
            body = _Body(self, request, settings.body_timeout_s)
            if _media_type(request) != _JSON:
                raise BadRequest(415, "unsupported_media_type", f"send Content-Type: {_JSON} (got {_media_type(request) or 'none'})")
            data = await body.read(settings.max_body_bytes)
            counted = self._enter()
            x = decode_json_batch(data, settings.max_images)
            return await self._answer("predict", engine, x, start)
        except BadRequest as exc:
            return await self._error("predict", exc, start, body)
        finally:
            if counted:
                self._inflight -= 1

    async def predict_image(self, request: Request) -> Response:
        start = time.perf_counter_ns()
        body, counted = None, False
        try:
            engine, settings = self._serving()
            body = _Body(self, request, settings.body_timeout_s)
            invert = request.query_params.get("invert", settings.invert)
            if invert not in ("auto", "always", "never"):
                raise BadRequest(422, "invalid_parameter", f"invert={invert!r}: use auto, always or never")
            media = _media_type(request)
            if media not in _IMAGE_TYPES and media != "multipart/form-data":
                raise BadRequest(415, "unsupported_media_type",
                                 f"send multipart/form-data with PNG/JPEG files, or an image/png or image/jpeg body (got {media or 'none'})")
            data = await body.read(settings.max_body_bytes)
            counted = self._enter()
            files = await self._multipart_files(request, data, settings) if media == "multipart/form-data" else [data]
            check_batch_size(len(files), settings.max_images)
            x = await self._decode(files, settings, invert)
            return await self._answer("predict_image", engine, x, start)
        except BadRequest as exc:
            return await self._error("predict_image", exc, start, body)
        finally:
            if counted:
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
                "max_concurrency", "max_uploads", "body_timeout_s", "decode_threads")},
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
        return self.engine, self.settings

    def _enter(self) -> bool:
        """Count a request whose body is read; past max_concurrency it is refused (503)."""
        if self._inflight >= self.settings.max_concurrency:
            raise Overloaded(f"{self._inflight} requests in progress (limit {self.settings.max_concurrency}); retry later",
                             self.settings.retry_after_s)
        self._inflight += 1
        return True

    async def _decode(self, files: list[bytes], settings: ServeSettings, invert: str) -> np.ndarray:
        """Decode and resize in worker threads (Pillow releases the GIL there), at most
        `decode_threads` at a time: the event loop keeps answering meanwhile, and the memory of
        decoded images is bounded by the threads, not by the requests waiting."""
        import anyio

        if self._decode_limiter is None:  # created in the server's event loop
            self._decode_limiter = anyio.CapacityLimiter(settings.decode_threads)

        def work() -> np.ndarray:
            return np.stack([decode_image(f, max_pixels=settings.max_image_pixels, invert=invert) for f in files])

        return await anyio.to_thread.run_sync(work, limiter=self._decode_limiter)

    async def _multipart_files(self, request: Request, body: bytes, settings: ServeSettings) -> list[bytes]:
        from starlette.datastructures import UploadFile
        from starlette.formparsers import MultiPartException, MultiPartParser

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

    async def _error(self, endpoint: str, exc: BadRequest, start: int, body: Optional[_Body]) -> Response:
        fmt = self.engine.info.format if self.engine is not None else "none"
        self.metrics.observe(endpoint, fmt, exc.status, (time.perf_counter_ns() - start) / 1e3)
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Overloaded) else {}
        if body is not None and not body.complete:
            # Answered before the whole body came: read the rest (bounded) so the client, still
            # sending, can read this answer, then close: the connection's state is unknown.
            if exc.status != 408:
                await body.drain()
            headers["Connection"] = "close"
        return Response(error_body(exc.code, exc.message), status_code=exc.status, media_type=_JSON, headers=headers)
