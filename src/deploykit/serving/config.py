"""Serving settings: one pydantic model, read from BentoML bento arguments and DEPLOYKIT_* variables.

Sources, first wins:
1. BentoML bento arguments: ``bentoml serve ... --arg model=DIR --arg format=onnx``, ``--arg-file
   FILE.yaml`` (the config file), or the ``args:`` of ``serving/bentofile.yaml`` baked into a bento;
   ``deploykit serve`` passes its options this way too.
2. Environment variables: ``DEPLOYKIT_`` + the field name in upper case (``DEPLOYKIT_MODEL``,
   ``DEPLOYKIT_FORMAT``, ``DEPLOYKIT_MAX_BATCH_SIZE`` …): what a container or CI sets.
3. The defaults below.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Mapping, Optional

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from deploykit.errors import UsageError

__all__ = ["ServeSettings", "ENV_PREFIX", "read_config_file"]

ENV_PREFIX = "DEPLOYKIT_"


class ServeSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    model: Optional[str] = Field(None, description="model folder (with manifest.json) or BentoML model tag")
    format: str = Field("auto", description="artifact format, or 'auto': fastest that passed validation")
    bench_results: Optional[Path] = Field(
        None, description="results JSON of `deploykit bench` for --format auto (default: MODEL_DIR/bench.json)")
    device: Literal["cpu", "cuda"] = "cpu"
    threads: Optional[int] = Field(1, ge=1, description="runtime threads per worker; 1 suits many small requests")
    workers: int = Field(1, ge=1, description="server processes, each with its own predictor")
    max_batch_size: int = Field(64, ge=2, description="adaptive batching: most images in one model call")
    max_latency_ms: int = Field(500, ge=1, description="adaptive batching: a request waiting longer, or expected to, gets 503")
    max_images: int = Field(64, ge=1, description="most images in one request")
    max_body_bytes: int = Field(4 << 20, ge=1024, description="largest request body")
    max_image_pixels: int = Field(
        4096 * 3072, ge=784, description="largest uploaded image (width × height), read from its header before "
                                        "decoding; default 12.6 MP, a 12-megapixel photo")
    body_timeout_s: float = Field(
        5.0, gt=0, description="whole request body within this time, else 408 and the connection closed; "
                               "below request_timeout_s")
    max_uploads: int = Field(
        64, ge=1, description="requests per worker still sending their body (past the first packet); beyond: 503")
    decode_threads: int = Field(2, ge=1, description="threads decoding and resizing images per worker")
    max_queue: int = Field(1024, ge=1, description="images admitted per worker (queued + running); beyond: 503")
    max_concurrency: int = Field(
        128, ge=1, description="prediction requests in progress per worker, once their body is read; beyond: 503 "
                               "(bounds memory: at most this many bodies of max_body_bytes)")
    invert: Literal["auto", "always", "never"] = Field("auto", description="image polarity rule (see decode.py)")
    warmup_s: float = Field(0.5, ge=0, description="minimum warm-up time before the server reports ready")
    retry_after_s: int = Field(1, ge=1, description="Retry-After sent with 503")
    request_timeout_s: float = Field(
        10.0, gt=0, description="BentoML's per-request timeout (504 past it); see service.py on why not longer")
    access_log: bool = Field(False, description="BentoML access log (costs time per request)")
    bentoml_http_metrics: bool = Field(
        False, description="also BentoML's per-request HTTP metrics (by path and status) on /metrics; they cost "
                           "a locked shared-file write per request (see service.py). deploykit's own metrics "
                           "(by endpoint, format and status) are always there")

    @model_validator(mode="after")
    def _body_before_request_timeout(self) -> "ServeSettings":
        if self.body_timeout_s >= self.request_timeout_s:
            raise ValueError(f"body_timeout_s ({self.body_timeout_s:g}) must be below request_timeout_s "
                             f"({self.request_timeout_s:g}): BentoML answers 504 at the latter")
        return self

    @classmethod
    def from_sources(cls, args: Mapping[str, object] | None = None, env: Mapping[str, str] | None = None) -> "ServeSettings":
        """Merge bento arguments over DEPLOYKIT_* variables over defaults; bad values → UsageError."""
        values: dict[str, object] = {}
        for name in cls.model_fields:
            key = ENV_PREFIX + name.upper()
            if env and env.get(key, "") != "":
                values[name] = env[key]
        unknown = sorted(set(args or {}) - set(cls.model_fields))
        if unknown:
            raise UsageError(f"unknown serving setting(s) {', '.join(unknown)}; known: {', '.join(cls.model_fields)}")
        values.update({k: v for k, v in (args or {}).items() if v is not None and v != ""})
        try:
            return cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            if not where:  # a rule across settings (the validator above)
                raise UsageError(f"serving settings: {first['msg'].removeprefix('Value error, ')}") from None
            raise UsageError(f"serving setting {where}={first.get('input')!r}: {first['msg']}") from None

    def as_args(self) -> dict[str, str]:
        """The settings as BentoML bento arguments (strings), for workers and bentos."""
        return {k: str(v) for k, v in self.model_dump(exclude_none=True).items()}


def read_config_file(path: Path) -> dict:
    """A YAML or JSON file of settings (the same keys as the fields above)."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise UsageError(f"cannot read config file {path}: {exc.strerror}") from exc
    import yaml  # comes with BentoML; YAML is a superset of JSON, so .json files parse too

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise UsageError(f"config file {path}: {str(exc).splitlines()[0]}") from exc
    if not isinstance(data, dict):
        raise UsageError(f"config file {path}: expected a mapping of settings, got {type(data).__name__}")
    return data
