"""What one `deploykit loadtest` run does, checked before any load is generated.

The command line is parsed here into a `LoadSpec` (pydantic, so the CLI process can hand it to the
load engine's process as JSON). Every parser raises `UsageError` with one line naming the bad value;
nothing in this module imports Locust or gevent.
"""

from __future__ import annotations

import math
import os
import re
import socket
from typing import Literal, Optional
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field

from deploykit.errors import UsageError

__all__ = [
    "DEFAULT_CONCURRENCY",
    "DEFAULT_CONNECTIONS",
    "DEFAULT_SERVER_TIME_HEADER",
    "StepSpec",
    "LoadSpec",
    "parse_duration",
    "parse_int_list",
    "parse_rate_list",
    "parse_cpu_list",
    "parse_url",
    "parse_host_port",
    "parse_headers",
    "check_reachable",
]

DEFAULT_CONCURRENCY = (1, 4, 16, 64)
DEFAULT_CONNECTIONS = 64
# The serving endpoint's header (deploykit.serving.app.INFERENCE_TIME_HEADER): model compute in µs.
DEFAULT_SERVER_TIME_HEADER = "X-Inference-Time-Us"
# Bounds that keep every loop finite even with absurd input: no step longer than a day.
MAX_STEP_SECONDS = 86_400.0
MAX_USERS = 10_000

_DURATION = re.compile(r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*(us|µs|ms|s|m|h)?\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StepSpec(_Model):
    """One step: a closed-loop concurrency or an open-loop arrival rate."""

    mode: Literal["closed", "open"]
    users: int = Field(ge=1, le=MAX_USERS, description="closed: the concurrency; open: connections kept for the schedule")
    rate_rps: Optional[float] = Field(None, gt=0)
    arrival: Optional[Literal["constant", "poisson"]] = None

    def label(self) -> str:
        if self.mode == "closed":
            return f"closed c={self.users}"
        return f"open {self.rate_rps:g} req/s ({self.arrival}, {self.users} connections)"


class LoadSpec(_Model):
    url: str
    steps: list[StepSpec]
    duration_s: float = Field(gt=0, le=MAX_STEP_SECONDS)
    warmup_s: float = Field(ge=0, le=MAX_STEP_SECONDS)
    drain_s: float = Field(10.0, ge=0, description="open loop: how long requests scheduled inside the window may still finish")
    payload: Literal["json", "image"] = "json"
    client: Literal["raw", "fasthttp"] = Field("raw", description="raw: deploykit's keep-alive client (http only); fasthttp: Locust's FastHttpSession")
    model_dir: Optional[str] = None
    samples: int = Field(64, ge=1, le=10_000, description="distinct digits cycled through as request bodies")
    seed: int = 0
    server_time_header: Optional[str] = DEFAULT_SERVER_TIME_HEADER
    timeout_s: float = Field(60.0, gt=0, description="per-request network timeout")
    workers: int = Field(0, ge=0, le=256, description="local Locust worker processes (0: one process, no master)")
    expect_workers: int = Field(0, ge=0, le=256, description="workers to wait for in all (local + remote)")
    master_bind: Optional[str] = Field(None, description="HOST:PORT the master listens on (distributed mode)")
    worker_wait_s: float = Field(60.0, gt=0, le=MAX_STEP_SECONDS, description="how long the master waits for its workers")
    cpu_affinity: Optional[list[int]] = None
    headers: dict[str, str] = Field(default_factory=dict, description="extra request headers (--header), sent with every request")

    @property
    def distributed(self) -> bool:
        return self.expect_workers > 0


def parse_duration(text: str, option: str = "--duration") -> float:
    """'30s', '500ms', '2m', '1.5' (seconds) → seconds."""
    match = _DURATION.match(str(text))
    if not match:
        raise UsageError(f"{option} {text!r}: expected a duration like 30s, 500ms, 2m or 1.5")
    seconds = float(match.group(1)) * _UNIT_SECONDS[(match.group(2) or "s").lower()]
    if not math.isfinite(seconds) or seconds > MAX_STEP_SECONDS:
        raise UsageError(f"{option} {text!r}: at most {MAX_STEP_SECONDS:.0f} s")
    return seconds


def parse_int_list(text: str, option: str, *, low: int = 1, high: int = MAX_USERS) -> list[int]:
    """'1,4,16' → [1, 4, 16]; each an integer in [low, high]."""
    values = []
    for part in str(text).split(","):
        part = part.strip()
        if not re.fullmatch(r"\d+", part) or not low <= int(part) <= high:
            raise UsageError(f"{option} {text!r}: expected a comma list of integers from {low} to {high}")
        values.append(int(part))
    return values


def parse_rate_list(text: str, option: str = "--rate") -> list[float]:
    """'100,250.5' → [100.0, 250.5]; each a positive, finite number of requests per second."""
    values = []
    for part in str(text).split(","):
        try:
            value = float(part)
        except ValueError:
            value = float("nan")
        if not (math.isfinite(value) and 0 < value <= 1e6):
            raise UsageError(f"{option} {text!r}: expected a comma list of request rates per second (0 < R ≤ 1e6)")
        values.append(value)
    return values


def parse_cpu_list(text: str, option: str = "--cpu-affinity") -> list[int]:
    """'1', '0,1', '0-3' → sorted CPU numbers, each one this process may run on."""
    cpus: set[int] = set()
    for part in str(text).split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m or (m.group(2) and int(m.group(2)) < int(m.group(1))):
            raise UsageError(f"{option} {text!r}: expected CPU numbers like 1 or 0,1 or 0-3")
        cpus.update(range(int(m.group(1)), int(m.group(2) or m.group(1)) + 1))
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    if not cpus <= allowed:
        raise UsageError(f"{option} {text!r}: CPU(s) {sorted(cpus - allowed)} not available here (allowed: {sorted(allowed)})")
    return sorted(cpus)


def parse_url(text: str) -> str:
    """An absolute http(s) URL with a host; the path is what every request is sent to."""
    try:
        parts = urlsplit(str(text))
        port = parts.port
    except ValueError as exc:
        raise UsageError(f"URL {text!r}: {exc}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UsageError(f"URL {text!r}: expected an absolute http(s) URL such as http://127.0.0.1:3000/predict")
    if port == 0:
        raise UsageError(f"URL {text!r}: port 0 is not a server's port")
    return str(text)


def parse_host_port(text: str, option: str) -> tuple[str, int]:
    """'127.0.0.1:5557' or '[::1]:5557' → (host, port)."""
    m = re.fullmatch(r"\s*(\[[^\]]+\]|[^:\s]+):(\d+)\s*", str(text))
    if not m or not 0 < int(m.group(2)) < 65536:
        raise UsageError(f"{option} {text!r}: expected HOST:PORT, e.g. 127.0.0.1:5557")
    return m.group(1).strip("[]"), int(m.group(2))


# RFC 9110 field-name token; a value of visible characters, spaces and tabs (no CR/LF: no header injection).
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_HEADER_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*")
# Set by the load tester itself (framing, connection reuse, the payload's type): not overridable.
_OWN_HEADERS = frozenset({"host", "content-length", "transfer-encoding", "connection", "content-type"})


def parse_headers(texts: Optional[list[str]], option: str = "--header") -> dict[str, str]:
    """['X-Request-Timeout-Ms: 200', …] → {name: value}; one UsageError naming a bad one."""
    headers: dict[str, str] = {}
    for text in texts or []:
        name, sep, value = str(text).partition(":")
        name, value = name.strip(" \t"), value.strip(" \t")  # a CR or LF stays and is refused
        if not sep or not _HEADER_NAME.fullmatch(name) or not _HEADER_VALUE.fullmatch(value):
            raise UsageError(f"{option} {text!r}: expected 'Name: value' (a header name, then printable text)")
        if name.lower() in _OWN_HEADERS:
            raise UsageError(f"{option} {text!r}: {name} is set by the load tester itself")
        if any(k.lower() == name.lower() for k in headers):
            raise UsageError(f"{option} {text!r}: {name} given twice")
        headers[name] = value
    return headers


def check_reachable(url: str, timeout_s: float = 3.0) -> None:
    """Fail fast (one line) when nothing accepts TCP connections at the URL's host and port.

    A server that accepts connections but answers with errors is *not* refused here: that run still
    measures, and its results count the errors by status.
    """
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout_s):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise UsageError(f"cannot reach {parts.hostname}:{port} ({reason}): is the server running?") from exc
