"""The routes of the standard inference protocols, served by the same engine (one batcher, one model):

- Open Inference Protocol / KServe v2 (what ``tritonclient.http`` and KServe clients speak):
  ``GET /v2``, ``/v2/health/live``, ``/v2/health/ready``, ``/v2/models/{name}[/versions/{v}]`` (metadata),
  ``…/ready``, ``POST …/infer``. The model's name is the manifest's; its one version is the served
  format (``onnx``, ``tflite-fp32`` …). Not ready is 503 (as KServe; Triton answers 400).
- KServe v1 / TF Serving REST: ``GET /v1/models/{name}`` (``{"name", "ready"}``) and
  ``POST /v1/models/{name}:predict`` with ``{"instances": [...]}`` (row format) or ``{"inputs": ...}``
  (columnar, a list or ``{input name: list}``) → ``{"predictions": [[probabilities], ...]}``.

Errors on these routes are ``{"error": "message", "code": "…"}``: the string is what their clients read.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Optional, Union

import msgspec
import numpy as np
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from deploykit import __version__
from deploykit.serving import oip
from deploykit.serving.asgi import JSON, Endpoint
from deploykit.serving.decode import check_samples, decode_body, sample_type
from deploykit.serving.errors import BadRequest, protocol_error_body
from deploykit.serving.model_input import ServedInput

if TYPE_CHECKING:
    from deploykit.serving.app import ServingApp
    from deploykit.serving.engine import Engine

__all__ = ["protocol_routes"]

_encoder = msgspec.json.Encoder()


def _json(body: dict, status: int = 200, headers: Optional[dict] = None) -> Response:
    return Response(_encoder.encode(body), status_code=status, media_type=JSON, headers=headers)


def _error(status: int, code: str, message: str, headers: Optional[dict] = None) -> Response:
    return Response(protocol_error_body(code, message), status_code=status, media_type=JSON, headers=headers)


class _Protocols:
    def __init__(self, app: "ServingApp"):
        self.app = app

    # -- model name and version ---------------------------------------------------------------------
    def _check_model(self, request: Request) -> None:
        """404 unless the path names the served model (and its version, when given)."""
        engine = self.app.engine
        name = request.path_params.get("name")
        version = request.path_params.get("version")
        if name != engine.info.model:
            raise BadRequest(404, "unknown_model", f"model {name!r} is not served here; this server serves "
                                                   f"{engine.info.model!r}")
        if version is not None and version != engine.info.format:
            raise BadRequest(404, "unknown_version", f"version {version!r} of {name!r} is not served here; its "
                                                     f"version is {engine.info.format!r} (the served format)")

    def _refused(self, request: Request) -> Optional[Response]:
        """The error answer of a metadata or readiness route (starting, another model), else None."""
        if self.app.engine is None:
            return _error(503, "not_ready", "server is starting; retry later", {"Retry-After": "1"})
        try:
            self._check_model(request)
        except BadRequest as exc:
            return _error(exc.status, exc.code, exc.message)
        return None

    # -- health and metadata ------------------------------------------------------------------------
    async def server_metadata(self, request: Request) -> Response:
        return _json(oip.server_metadata(__version__))

    async def live(self, request: Request) -> Response:
        alive = self.app.engine is None or self.app.engine.alive
        return _json({"live": alive}, 200 if alive else 503)

    async def ready(self, request: Request) -> Response:
        ready = self.app.engine is not None and self.app.engine.ready
        return _json({"ready": ready}, 200 if ready else 503, None if ready else {"Retry-After": "1"})

    async def model_metadata(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        i = self.app.engine.info
        return _json(oip.model_metadata(i.served, model=i.model, version=i.format, platform=i.runtime,
                                        classes=self.app.engine.classes))

    async def model_ready(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        engine = self.app.engine
        body = {"name": engine.info.model, "ready": engine.ready}
        return _json(body, 200 if engine.ready else 503, None if engine.ready else {"Retry-After": "1"})

    # -- inference ----------------------------------------------------------------------------------
    async def infer(self, request: Request) -> Response:
        return await self.app.serve("v2_infer", request, self._parse_v2, self._render_v2, self._check_model,
                                    protocol_error_body)

    async def _parse_v2(self, request: Request, data: bytes):
        call = oip.parse_infer(data, request.headers.get(oip.HEADER_LENGTH.lower()), self.app.engine.info.served,
                               self.app.settings.max_images)
        return call.x, call, (call.timeout_us / 1e6 if call.timeout_us else None)

    def _render_v2(self, engine: "Engine", probs: np.ndarray, call: oip.InferCall):
        body, headers = oip.render_infer(call, probs, model=engine.info.model, version=engine.info.format)
        return body, headers, ("application/octet-stream" if headers else JSON)

    async def v1_predict(self, request: Request) -> Response:
        return await self.app.serve("v1_predict", request, self._parse_v1, _render_v1, self._check_model,
                                    protocol_error_body)

    async def _parse_v1(self, request: Request, data: bytes):
        served = self.app.engine.info.served
        if not data:
            raise BadRequest(400, "invalid_json", 'empty body: send {"instances": [...]} or {"inputs": [...]}')
        body = decode_body(_v1_decoder(served), data, served, 400, 'send {"instances": [...]}')
        if (body.instances is None) == (body.inputs is None):
            raise BadRequest(400, "invalid_input", 'send exactly one of "instances" (rows) or "inputs" (columns)')
        samples = body.instances if body.instances is not None else body.inputs
        if isinstance(samples, dict):
            if list(samples) != [served.name]:
                raise BadRequest(400, "unknown_input", f"inputs {list(samples)}: the model's one input is {served.name!r}")
            samples = samples[served.name]
        try:
            return check_samples(samples, self.app.settings.max_images, served), None, None
        except BadRequest as exc:  # the v1 protocols answer every bad request with 400
            raise BadRequest(400 if exc.status == 422 else exc.status, exc.code, exc.message) from None

    async def v1_model(self, request: Request) -> Response:
        if (refused := self._refused(request)) is not None:
            return refused
        engine = self.app.engine
        return _json({"name": engine.info.model, "ready": engine.ready}, 200 if engine.ready else 503)


def _render_v1(engine: "Engine", probs: np.ndarray, _context):
    return _encoder.encode({"predictions": probs.tolist()}), {}, JSON


@functools.lru_cache(maxsize=16)
def _v1_decoder(served: ServedInput) -> msgspec.json.Decoder:
    samples = list[sample_type(served)]
    body = msgspec.defstruct("V1Body", [("instances", Optional[samples], None),
                                        ("inputs", Optional[Union[samples, dict[str, samples]]], None),
                                        ("signature_name", Optional[str], None)], forbid_unknown_fields=True)
    return msgspec.json.Decoder(body)


def protocol_routes(app: "ServingApp") -> list[Route]:
    p = _Protocols(app)
    model = "/v2/models/{name}"
    version = "/v2/models/{name}/versions/{version}"
    return [
        Route("/v2", Endpoint(p.server_metadata), methods=["GET"]),
        Route("/v2/health/live", Endpoint(p.live), methods=["GET"]),
        Route("/v2/health/ready", Endpoint(p.ready), methods=["GET"]),
        *(Route(base, Endpoint(p.model_metadata), methods=["GET"]) for base in (model, version)),
        *(Route(base + "/ready", Endpoint(p.model_ready), methods=["GET"]) for base in (model, version)),
        *(Route(base + "/infer", Endpoint(p.infer), methods=["POST"]) for base in (model, version)),
        Route("/v1/models/{name}:predict", Endpoint(p.v1_predict), methods=["POST"]),
        Route("/v1/models/{name}", Endpoint(p.v1_model), methods=["GET"]),
    ]
