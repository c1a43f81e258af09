"""ASGI plumbing of the serving app: body reads under a deadline, JSON 404/405, handlers as bare ASGI apps."""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match

from deploykit.serving.errors import BadRequest, Overloaded, error_body_for

if TYPE_CHECKING:
    from deploykit.serving.app import ServingApp

__all__ = ["Body", "MountedApp", "NotFound", "Endpoint", "JSON"]

JSON = "application/json"


# Bytes of an over-limit or refused body read and thrown away before answering: a server that closes
# while the client still sends makes the client see ECONNRESET instead of the answer (urllib does).
_DRAIN_BYTES = 16 << 20


class Body:
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
        try:
            # asyncio.timeout, not anyio.fail_after: 7–19 µs against 50–73 µs per call (see app._within),
            # and every request makes at least one receive.
            async with asyncio.timeout(max(self.deadline - time.monotonic(), 0.001)):
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


class MountedApp(Starlette):
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
            await Response(error_body_for(scope.get("path", ""))(code, message), status_code=exc.status_code, media_type=JSON,
                           headers=exc.headers)(scope, receive, send)

    return app


# BentoML's own GET routes: another method there gets BentoML's plain-text 405 (or this app's 404);
# these answer it as the documented JSON 405 instead.
BENTOML_GET_PATHS = frozenset({"/", "/livez", "/readyz", "/healthz", "/metrics", "/docs.json", "/schema.json"})


class NotFound(BaseRoute):
    """The last route: any path nothing else serves gets a JSON 404, and a method BentoML's own GET routes
    do not take a JSON 405. Hand-written because BentoML renders its router's 404/405 as plain text and
    offers no handler for them; it matches only what no route of this app serves (BentoML's own routes
    come first; its static folders, mounted after this app, are left to it), so known paths (templated
    ones too) keep their 405 from the router."""

    def __init__(self, routes: list, left_to_bentoml: tuple[str, ...] = ("/static_content", "/assets")):
        self.routes = routes
        self.left_to_bentoml = left_to_bentoml

    def matches(self, scope):
        if scope["type"] != "http":
            return Match.NONE, {}
        path = scope.get("path", "")
        if path in BENTOML_GET_PATHS:
            return (Match.NONE if scope.get("method") in ("GET", "HEAD") else Match.FULL), {}
        # The routes' own matching (not their regular expressions on the path: a fuzzed path that the
        # regular expression takes can still fail a route's match, and would then get BentoML's text 404).
        if path.startswith(self.left_to_bentoml) or any(r.matches(scope)[0] != Match.NONE for r in self.routes):
            return Match.NONE, {}
        return Match.FULL, {}

    async def handle(self, scope, receive, send) -> None:
        path = scope.get("path", "")
        if path in BENTOML_GET_PATHS:
            body = error_body_for(path)("method_not_allowed", f"{scope.get('method')} is not allowed here")
            response = Response(body, status_code=405, media_type=JSON, headers={"Allow": "GET, HEAD"})
        else:
            body = error_body_for(path)("not_found", f"no route {path}; see GET /docs.json")
            response = Response(body, status_code=404, media_type=JSON)
        await response(scope, receive, send)


class Endpoint:
    """A handler `async (Request) -> Response` as a plain ASGI app. Starlette wraps function
    endpoints in a per-request exception-handling layer; these handlers turn every client error into
    a response themselves, so the layer is skipped."""

    __slots__ = ("handler",)

    def __init__(self, handler):
        self.handler = handler

    async def __call__(self, scope, receive, send) -> None:
        response = await self.handler(Request(scope, receive))
        await response(scope, receive, send)


