"""The HTTP hot path: a Starlette app that BentoML mounts (``@bentoml.asgi_app``) in its own server.

Routes (BentoML itself serves /livez, /readyz, /metrics and the docs UI at /):
- ``POST /predict``        JSON ``{"inputs": [sample, ...]}`` → predictions (samples shaped as the manifest says)
- ``POST /predict_image``  multipart/form-data with one or more PNG/JPEG files (or a raw image/png or
                           image/jpeg body) → predictions; ``?invert=auto|always|never``
- the Open Inference Protocol (KServe v2) and KServe v1 / TF Serving routes (protocol_routes.py)
- ``GET /info``            model, format, runtime, input, state and limits
- ``GET /docs.json``       BentoML's OpenAPI document plus these routes (the docs UI reads it)
- ``GET /schema.json``     (service.py) the routes as BentoML's client discovers them
- ``GET /metrics``         (unless bentoml_http_metrics=true: then BentoML's own) deploykit's metrics

Every answer is JSON. Client errors are 4xx with ``{"error": {"code", "message"}}`` (the protocol
routes: ``{"error": "…", "code"}``), a few hundred bytes at most; overload and not-ready are 503 with
Retry-After. Successful answers carry ``X-Inference-Time-Us`` (model compute of the batch the request
ran in: the runtime call alone, what `deploykit bench` times), ``X-Batch-Size`` (that batch's images) and ``X-Server-Time-Us`` (from the request's arrival in the handler to the answer: body read,
decode, queue, compute, encode). A request may carry a deadline, ``X-Request-Timeout-Ms`` (or the
OIP ``parameters.timeout``), counted from its arrival: work still queued past it is dropped, and work
expected to finish past it is refused at arrival, 503.
"""

from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, Optional

import msgspec
import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deploykit.serving.asgi import JSON, Body, Endpoint, MountedApp, NotFound
from deploykit.serving.config import ServeSettings
from deploykit.serving.decode import check_batch_size, decode_image, decode_json_batch
from deploykit.serving.engine import Engine
from deploykit.serving.errors import BadRequest, DeadlineExceeded, Overloaded, error_body
from deploykit.serving.metrics import ServingMetrics

__all__ = ["ServingApp", "INFERENCE_TIME_HEADER", "BATCH_HEADER", "SERVER_TIME_HEADER", "TIMEOUT_HEADER"]

INFERENCE_TIME_HEADER = "X-Inference-Time-Us"
BATCH_HEADER = "X-Batch-Size"
SERVER_TIME_HEADER = "X-Server-Time-Us"
TIMEOUT_HEADER = "X-Request-Timeout-Ms"
_IMAGE_TYPES = ("image/png", "image/jpeg")
_encoder = msgspec.json.Encoder()

# parse(request, body bytes) → (input tensor, context for render, deadline from the request or None)
Parse = Callable[[Request, bytes], Awaitable[tuple[np.ndarray, object, Optional[float]]]]
# render(engine, probabilities, context) → (body, extra headers, media type)
Render = Callable[[Engine, np.ndarray, object], tuple[bytes, dict, str]]


def media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


def header_deadline(request: Request, start_ns: int) -> Optional[float]:
    """The deadline (perf_counter seconds) an X-Request-Timeout-Ms header sets, counted from arrival."""
    value = request.headers.get(TIMEOUT_HEADER.lower())
    if value is None:
        return None
    try:
        ms = float(value)
    except ValueError:
        ms = -1.0
    if not ms > 0 or ms != ms or ms == float("inf"):
        raise BadRequest(400, "invalid_header", f"{TIMEOUT_HEADER}: {value[:40]!r} is not a positive number of ms")
    return start_ns / 1e9 + ms / 1e3


class ServingApp:
    """Holds the Starlette app (created at import, mounted by the BentoML service) and, once the
    service instance starts, the engine and settings it serves with."""

    def __init__(self):
        from deploykit.serving.protocol_routes import protocol_routes

        self.engine: Optional[Engine] = None
        self.settings: Optional[ServeSettings] = None
        self.metrics = ServingMetrics()
        self.extra_openapi = None  # callable returning BentoML's spec dict; set by the service
        self._inflight = 0  # prediction requests past their body read (decode, queue, compute)
        self._uploads = 0  # requests waiting for more of their body (see asgi.Body)
        self._decode_limiter = None
        # (method, path) → the endpoint, for the service's middleware to call without routing (service._Edges).
        self.direct = {("POST", "/predict"): Endpoint(self.predict), ("POST", "/predict_image"): Endpoint(self.predict_image)}
        self.asgi = MountedApp(routes=[
            *(Route(path, endpoint, methods=[method]) for (method, path), endpoint in self.direct.items()),
            *protocol_routes(self),
            Route("/info", Endpoint(self.info), methods=["GET"]),
            # Shadows BentoML's /docs.json (the mount is matched first) to add these routes to it.
            Route("/docs.json", Endpoint(self.openapi), methods=["GET"]),
            # Reached only when BentoML's own /metrics route is off (bentoml_http_metrics=false).
            Route("/metrics", Endpoint(self.prometheus), methods=["GET"]),
        ])
        self.asgi.router.routes.append(NotFound(list(self.asgi.router.routes)))

    def attach(self, engine: Engine, settings: ServeSettings) -> None:
        self.engine = engine
        self.settings = settings
        engine.on_batch = self.metrics.batch_observer(engine.info.format)

    # -- the shared path of every prediction route --------------------------------------------------
    async def serve(self, endpoint: str, request: Request, parse: Parse, render: Render,
                    check: Optional[Callable[[Request], None]] = None, errors=error_body) -> Response:
        """Ready check, the route's own checks (`check`: content type, model name), the body read under
        its deadline, admission, parsing, inference through the batcher, the answer."""
        start = time.perf_counter_ns()
        body, counted = None, False
        try:
            engine, settings = self._serving()
            body = Body(self, request, settings.body_timeout_s)
            if check is not None:
                check(request)
            deadline = header_deadline(request, start)
            data = await body.read(settings.max_body_bytes)
            counted = self._enter()
            engine.admit(deadline)
            x, context, asked = await _within(deadline, parse(request, data), settings.retry_after_s)
            if asked is not None:
                deadline = min(deadline, start / 1e9 + asked) if deadline is not None else start / 1e9 + asked
            probs, compute_us, batch = await engine.infer(x, deadline=deadline)
            content, headers, media = render(engine, probs, context)
            server_us = (time.perf_counter_ns() - start) / 1e3
            self.metrics.observe(endpoint, engine.info.format, 200, server_us)
            return Response(content, media_type=media, headers={
                **headers, INFERENCE_TIME_HEADER: f"{compute_us:.0f}", BATCH_HEADER: str(batch),
                SERVER_TIME_HEADER: f"{server_us:.0f}"})
        except BadRequest as exc:
            return await self._error(endpoint, exc, start, body, errors)
        finally:
            if counted:
                self._inflight -= 1

    # -- deploykit's own routes -------------------------------------------------------------------
    async def predict(self, request: Request) -> Response:
        return await self.serve("predict", request, self._parse_json, _render_predictions, _require_json)

    async def predict_image(self, request: Request) -> Response:
        return await self.serve("predict_image", request, self._parse_images, _render_predictions, _require_image)

    async def _parse_json(self, request: Request, data: bytes):
        return decode_json_batch(data, self.settings.max_images, self.engine.info.served), None, None

    async def _parse_images(self, request: Request, data: bytes):
        settings = self.settings
        invert = request.query_params.get("invert", settings.invert)
        if invert not in ("auto", "always", "never"):
            raise BadRequest(422, "invalid_parameter", f"invert={invert!r}: use auto, always or never")
        files = await self._multipart_files(request, data, settings) if media_type(request) == "multipart/form-data" else [data]
        check_batch_size(len(files), settings.max_images)
        return await self._decode(files, settings, invert), None, None

    async def info(self, request: Request) -> Response:
        engine, settings = self.engine, self.settings
        if engine is None:
            return Response(_encoder.encode({"stage": "starting"}), media_type=JSON)
        i = engine.info
        body = {
            "model": i.model, "format": i.format, "runtime": i.runtime, "classes": list(i.classes),
            "input": {"name": i.served.name, "shape": list(i.served.shape), "layout": i.served.layout,
                      "range": [i.served.low, i.served.high], "accepted_shapes": [list(s) for s in i.served.accepted],
                      "image": i.served.geometry is not None},
            "stage": engine.stage, "ready": engine.ready, "error": engine.error,
            "load_s": engine.load_s, "warmup_p50_ms": engine.warmup_p50_ms,
            "inline": engine.inline,
            "limits": {k: getattr(settings, k) for k in (
                "max_batch_size", "max_latency_ms", "max_images", "max_body_bytes", "max_image_pixels", "max_queue",
                "max_concurrency", "max_uploads", "body_timeout_s", "decode_threads")},
            "invert": settings.invert, "threads": settings.threads, "device": settings.device,
            "headers": {"inference_time": INFERENCE_TIME_HEADER, "batch": BATCH_HEADER, "server_time": SERVER_TIME_HEADER,
                        "timeout": TIMEOUT_HEADER},
        }
        return Response(_encoder.encode(body), media_type=JSON)

    async def openapi(self, request: Request) -> Response:
        from deploykit.serving.openapi import merged_spec

        base = self.extra_openapi() if self.extra_openapi else {}
        info = self.engine.info if self.engine is not None else None
        limit = self.settings.max_images if self.settings is not None else 64
        return Response(_encoder.encode(merged_spec(base, info, limit)), media_type=JSON)

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
        served = self.engine.info.served

        def work() -> np.ndarray:
            return np.stack([decode_image(f, max_pixels=settings.max_image_pixels, invert=invert, served=served)
                             for f in files])

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

    async def _error(self, endpoint: str, exc: BadRequest, start: int, body: Optional[Body], errors) -> Response:
        fmt = self.engine.info.format if self.engine is not None else "none"
        self.metrics.observe(endpoint, fmt, exc.status, (time.perf_counter_ns() - start) / 1e3)
        headers = {"Retry-After": str(exc.retry_after_s)} if isinstance(exc, Overloaded) else {}
        if body is not None and not body.complete:
            # Answered before the whole body came: read the rest (bounded) so the client, still
            # sending, can read this answer, then close: the connection's state is unknown.
            if exc.status != 408:
                await body.drain()
            headers["Connection"] = "close"
        return Response(errors(exc.code, exc.message), status_code=exc.status, media_type=JSON, headers=headers)


async def _within(deadline: Optional[float], parsing: Awaitable, retry_after_s: int):
    """Parsing under the request's deadline: image decoding waits for a decode thread, and under
    overload that wait alone could outlast the deadline (a decode already running finishes first)."""
    if deadline is None:
        return await parsing
    left = deadline - time.perf_counter()
    try:
        if left <= 0:  # the engine refuses it anyway; no timeout that has expired on entry
            raise TimeoutError
        # asyncio.timeout, not anyio.fail_after: measured 7–19 µs against 50–73 µs per call here
        async with asyncio.timeout(left):
            return await parsing
    except TimeoutError:
        parsing.close()
        raise DeadlineExceeded("deadline passed before the input was decoded", retry_after_s) from None


def _require_json(request: Request) -> None:
    if media_type(request) != JSON:
        raise BadRequest(415, "unsupported_media_type", f"send Content-Type: {JSON} (got {media_type(request) or 'none'})")


def _require_image(request: Request) -> None:
    media = media_type(request)
    if media not in _IMAGE_TYPES and media != "multipart/form-data":
        raise BadRequest(415, "unsupported_media_type",
                         f"send multipart/form-data with PNG/JPEG files, or an image/png or image/jpeg body (got {media or 'none'})")


def _render_predictions(engine: Engine, probs: np.ndarray, _context) -> tuple[bytes, dict, str]:
    labels = probs.argmax(axis=1)
    classes = engine.info.classes
    predictions = [
        {"label": int(k), "class": classes[k] if k < len(classes) else str(k), "probabilities": p}
        for k, p in zip(labels.tolist(), probs.tolist())
    ]
    return _encoder.encode({"model": engine.info.model, "format": engine.info.format,
                            "runtime": engine.info.runtime, "predictions": predictions}), {}, JSON
