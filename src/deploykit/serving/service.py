"""The BentoML service: any exported artifact behind one Runtime predictor, served by BentoML.

    bentoml serve deploykit.serving.service:DeployKitService --arg model=MODEL_DIR_OR_TAG [--arg format=onnx]
    bentoml serve serving.service:DeployKitService ...        (the same, from the repository root)
    DEPLOYKIT_MODEL=... bentoml serve serving.service:DeployKitService
    deploykit serve MODEL_DIR_OR_TAG [--format auto] ...      (checks, prints the choice, then the same)

Settings come from bento arguments and DEPLOYKIT_* variables (see config.py); they are read when
this module is imported, because BentoML's service configuration (workers, logging) is fixed then.

Start-up, in order:
1. on deployment (``bentoml serve``'s own process, before any worker): resolve the model, choose the
   format, verify its sha256 against the manifest, check its runtime: a failure stops the server with
   the error and a non-zero exit.
2. each worker: the same checks (the file could have changed since), then the predictor loads and
   warms up in the background: /livez answers at once, /readyz is 503 until the model is loaded and
   warm, and predictions meanwhile get 503 + Retry-After.
"""

from __future__ import annotations

import asyncio
import os
import sys

import bentoml

from deploykit.errors import DeployKitError
from deploykit.serving.app import ServingApp
from deploykit.serving.config import ServeSettings
from deploykit.serving.engine import Engine, ModelInfo
from deploykit.serving.model_input import ServedInput
from deploykit.serving.startup import check_port_free, is_store_tag, prepare

__all__ = ["DeployKitService", "SETTINGS", "SERVICE_NAME", "HOT_PATHS"]

SERVICE_NAME = "deploykit"
# Excluded from tracing (see _service_config): OpenTelemetry matches these as regular expressions, by search.
HOT_PATHS = ["/predict", "/predict_image", "/v2/models/", "/v1/models/"]


def _read_settings() -> ServeSettings:
    return ServeSettings.from_sources(vars(bentoml.use_arguments()), os.environ)


SETTINGS = _read_settings()
serving_app = ServingApp()
_MODEL_TAG = SETTINGS.model if SETTINGS.model and is_store_tag(SETTINGS.model) else None


def _service_config(settings: ServeSettings) -> dict:
    """BentoML settings that decide the per-request cost (measured: benchmarks/serve_bench.py).

    - access log off by default: it formats and writes a line per request.
    - tracing: OpenTelemetry's middleware is always installed; excluding the prediction routes makes
      it pass them straight through (no span per request). Other routes keep it.
    - traffic.timeout: BentoML arms a timer per request for this long and never cancels it, so each
      request leaves a few objects alive that long (measured: ~6 per request). At 60 s (the default)
      and thousands of requests per second that is over a million objects for every full garbage
      collection to scan (p99 at c=32 was ~100 ms here); 10 s keeps it small and is ample for
      this service (the queue deadline, max_latency_ms, is far shorter).
    - metrics: BentoML's request metrics (by path and status) are off by default: deploykit's own
      (metrics.py: by endpoint, format and status, which BentoML's lack) answer the same questions,
      and BentoML's add a middleware and locked multiprocess-file writes to every request. /metrics
      is then served by the app from the same registry; `bentoml_http_metrics=true` brings BentoML's
      back on its own /metrics.
    """
    return {
        "name": SERVICE_NAME,
        "workers": settings.workers,
        "traffic": {"timeout": settings.request_timeout_s},
        "logging": {"access": {"enabled": settings.access_log}},
        "tracing": {"excluded_urls": list(HOT_PATHS)},
        "metrics": {"enabled": settings.bentoml_http_metrics},
    }


@bentoml.service(**_service_config(SETTINGS))
@bentoml.asgi_app(serving_app.asgi, path="/")
class DeployKitService:
    """deploykit prediction service: POST /predict (JSON) and POST /predict_image (PNG/JPEG)."""

    if _MODEL_TAG is not None:
        # Declared so that `bentoml build` packs the model into the bento and a bento resolves it.
        model_ref = bentoml.models.BentoModel(_MODEL_TAG)

    @bentoml.on_deployment
    def check_before_serving() -> None:
        # `bentoml serve` prints a ~50-line traceback for any exception raised here; a deploykit
        # problem is one line on stderr and exit code 2 instead (as with `deploykit serve`).
        try:
            prepared = prepare(SETTINGS)
            address = _cli_address()
            if address is not None:
                check_port_free(*address)
        except DeployKitError as exc:
            print(f"deploykit: error: {exc}", file=sys.stderr, flush=True)
            raise SystemExit(2) from None
        print(f"deploykit: {prepared.describe()}", flush=True)

    def __init__(self) -> None:
        prepared = prepare(SETTINGS)
        self.prepared = prepared
        manifest = prepared.manifest
        self.engine = Engine(
            ModelInfo(model=manifest.model, format=prepared.choice.format, runtime=prepared.entry.runtime,
                      classes=tuple(manifest.classes), model_dir=prepared.model_dir, artifact=prepared.artifact,
                      served=ServedInput.from_spec(manifest.input)),
            max_batch_size=SETTINGS.max_batch_size, max_latency_ms=SETTINGS.max_latency_ms,
            max_queue=SETTINGS.max_queue, warmup_s=SETTINGS.warmup_s, retry_after_s=SETTINGS.retry_after_s,
        )
        serving_app.attach(self.engine, SETTINGS)
        serving_app.extra_openapi = lambda: DeployKitService.openapi_spec.asdict()
        self._start_task = None

    @bentoml.on_startup
    def start_loading(self) -> None:
        # Runs inside the server's event loop before it accepts requests; the loading itself goes on in
        # the background so that liveness answers and readiness can say "not yet".
        self._start_task = asyncio.get_running_loop().create_task(self.engine.start(self._load))

    def _load(self):
        from deploykit.runtimes import load_artifact

        p = self.prepared
        return load_artifact(p.model_dir, p.entry, p.manifest, device=SETTINGS.device, threads=SETTINGS.threads)

    def __is_ready__(self) -> bool:
        return self.engine.ready

    def __is_alive__(self) -> bool:
        return self.engine.alive

    @bentoml.on_shutdown
    def close(self) -> None:
        self.engine.close()


def _cli_address():
    """(host, port) the `bentoml serve` (or `deploykit serve`) command in this process will bind, from its
    click context (its --host/--port, BENTOML_HOST/BENTOML_PORT, else BentoML's configuration); None
    where no such command runs (a worker, a test)."""
    import click

    ctx = click.get_current_context(silent=True)
    if ctx is None or "port" not in ctx.params:
        return None
    from bentoml._internal.configuration.containers import BentoMLContainer

    host = ctx.params.get("host") or BentoMLContainer.http.host.get()
    port = ctx.params.get("port") or BentoMLContainer.http.port.get()
    return str(host), int(port)


class _Edges:
    """Two things only a middleware (BentoML's public ``add_asgi_middleware`` hook) can reach, because
    BentoML's own routes and router sit in front of the mounted app:

    - GET /schema.json lists these routes, so that BentoML's own clients
      (``bentoml.SyncHTTPClient(url).predict(...)``, ``AsyncHTTPClient``) discover them: BentoML builds
      that document from ``@bentoml.api`` methods only.
    - a plain-text error BentoML's router answers itself (a path no route takes, e.g. one with a
      newline, which even the mount does not match) becomes the documented small JSON error.

    And one shortcut: POST /predict and /predict_image go from here to their endpoint directly
    (`ServingApp.direct`, one dict lookup) instead of through what sits between this middleware and the
    mounted app: BentoML's request-context middleware, its exception middleware, its router (a regular
    expression per route, then the mount matching each of this app's routes) and this app's router.
    The middlewares in front of this one (BentoML's timeout, concurrency limit, tracing exclusion) still
    apply; these endpoints answer every client error themselves, so no error handling is skipped.
    Measured in benchmarks/serve_bench.py (docs/serving.md, "How it is fast")."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        direct = serving_app.direct.get((scope["method"], scope["path"]))
        if direct is not None:
            return await direct(scope, receive, send)
        if scope["path"].startswith(_JSON_ALREADY):
            return await self.app(scope, receive, send)
        if scope["path"] == "/schema.json" and scope["method"] == "GET":
            return await self._schema(scope, receive, send)
        state = {}

        async def json_errors(message):
            if message["type"] == "http.response.start" and message["status"] >= 400:
                headers = dict(message.get("headers") or [])
                if headers.get(b"content-type", b"").startswith(b"text/plain"):
                    state["status"] = message["status"]
                    return
            if "status" in state and message["type"] == "http.response.body":
                if not message.get("more_body", False):
                    await self._error(state["status"], scope, send)
                return
            await send(message)

        await self.app(scope, receive, json_errors)

    @staticmethod
    async def _error(status: int, scope, send) -> None:
        from starlette.responses import Response

        from deploykit.serving.errors import error_body_for

        code = {404: "not_found", 405: "method_not_allowed"}.get(status, "http_error")
        message = {404: "no such route; see GET /docs.json"}.get(status, f"HTTP {status}")
        body = error_body_for(scope["path"])(code, message)
        await Response(body, status_code=status, media_type="application/json")(scope, None, send)

    @staticmethod
    async def _schema(scope, receive, send) -> None:
        import msgspec
        from starlette.responses import Response

        from deploykit.serving.openapi import client_schema

        info = serving_app.engine.info if serving_app.engine is not None else None
        body = {**DeployKitService.schema(), **client_schema(info, SETTINGS.max_images)}
        await Response(msgspec.json.encode(body), media_type="application/json")(scope, receive, send)


_JSON_ALREADY = ("/predict",)  # /predict and /predict_image: the hot path
DeployKitService.add_asgi_middleware(_Edges)
