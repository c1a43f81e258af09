"""HTTP client errors of the prediction endpoint: a status, a short machine-readable code and one
line naming the problem. Every error body is a small JSON object (a few hundred bytes at most)."""

from __future__ import annotations

import msgspec

from deploykit.errors import DeployKitError

__all__ = ["BadRequest", "Overloaded", "NotReady", "DeadlineExceeded", "error_body", "protocol_error_body",
           "error_body_for", "MAX_MESSAGE_CHARS"]

# Messages are cut so that no request can make the server echo back a large body.
MAX_MESSAGE_CHARS = 240


class BadRequest(DeployKitError):
    """The request cannot be served as sent (4xx); `code` is stable, `message` names the problem."""

    status: int = 400

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class Overloaded(BadRequest):
    """The server's queue is full or a request waited past its deadline: 503 + Retry-After."""

    def __init__(self, message: str = "server overloaded; retry later", retry_after_s: int = 1):
        super().__init__(503, "overloaded", message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(Overloaded):
    """The request's own deadline (X-Request-Timeout-Ms, OIP parameters.timeout) passed: 503 + Retry-After."""

    def __init__(self, message: str, retry_after_s: int = 1):
        super().__init__(message, retry_after_s)
        self.code = "deadline_exceeded"


class NotReady(Overloaded):
    """The model is still loading or warming up: 503 + Retry-After."""

    def __init__(self, message: str = "model is loading; retry later", retry_after_s: int = 1):
        super().__init__(message, retry_after_s)
        self.code = "not_ready"


def error_body(code: str, message: str) -> bytes:
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return msgspec.json.encode({"error": {"code": code, "message": message}})


def protocol_error_body(code: str, message: str) -> bytes:
    """The error body of the standard protocols' routes (KServe v1/v2, TF Serving): ``{"error": "…"}``,
    the string their clients read (tritonclient raises it as the exception's message), plus our code."""
    if len(message) > MAX_MESSAGE_CHARS:
        message = message[: MAX_MESSAGE_CHARS - 1] + "…"
    return msgspec.json.encode({"error": message, "code": code})


def _is_protocol_path(path: str) -> bool:
    return path == "/v2" or path.startswith(("/v1/", "/v2/"))


def error_body_for(path: str):
    """The error body function of the route family `path` belongs to: the standard protocols' paths
    (/v1/…, /v2, /v2/…) answer every error, 404 and 405 included, in their clients' shape; the rest in
    deploykit's. One rule for every place that answers an error (routes, router, middleware)."""
    return protocol_error_body if _is_protocol_path(path) else error_body
