"""Support for the serving tests (no tests here): start and stop real deploykit servers, BentoML's own
server in a subprocess, on free loopback ports."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[2]
SERVICE = "deploykit.serving.service:DeployKitService"


@dataclass
class Server:
    name: str
    url: str
    model_dir: Path
    format: str
    proc: subprocess.Popen
    log: Path
    early: dict = field(default_factory=dict)  # what readiness said before the model was ready

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def bentoml_serve_cmd(port: int, args: dict) -> list[str]:
    cmd = [sys.executable, "-m", "bentoml", "serve", SERVICE, "--host", "127.0.0.1", "--port", str(port)]
    for k, v in args.items():
        cmd += ["--arg", f"{k}={v}"]
    return cmd


def start(name: str, cmd: list[str], port: int, model_dir: Path, fmt: str, log_dir: Path,
          env: Optional[dict] = None) -> Server:
    log = log_dir / f"{name}.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
                                env={**os.environ, "BENTOML_DO_NOT_TRACK": "True", **(env or {})})
    return Server(name, f"http://127.0.0.1:{port}", model_dir, fmt, proc, log)


def wait_all_ready(servers: list[Server], timeout_s: float = 240, watch: tuple[str, ...] = ()) -> None:
    """Poll every server until /readyz is 200. For servers named in `watch`, record in `early` what
    /readyz and /predict answered the first time /livez answered (the model still loading)."""
    pending = {s.name: s for s in servers}
    deadline = time.monotonic() + timeout_s
    # Short timeouts for polling: until a worker serves, a connection waits in the listen backlog, and
    # one such wait must not hold up the others. The watched server's answers get a long timeout:
    # its worker may be busy importing a framework while it answers.
    with httpx.Client(timeout=1) as client:
        while pending and time.monotonic() < deadline:
            for name, s in list(pending.items()):
                if s.proc.poll() is not None:
                    raise RuntimeError(f"server {name} exited with {s.proc.returncode}:\n{s.output()[-3000:]}")
                try:
                    if name in watch and not s.early and client.get(s.url + "/livez").status_code == 200:
                        ready = client.get(s.url + "/readyz", timeout=30)
                        pred = client.post(s.url + "/predict", json={"inputs": [[0.0] * 784]}, timeout=30)
                        s.early = {"readyz": ready.status_code, "predict": pred.status_code,
                                   "retry_after": pred.headers.get("retry-after"), "body": pred.json()}
                    if client.get(s.url + "/readyz").status_code == 200:
                        del pending[name]
                except httpx.TransportError:
                    pass
            time.sleep(0.1)
    if pending:
        raise RuntimeError(f"not ready after {timeout_s:.0f} s: {', '.join(pending)}\n" +
                           "\n".join(s.output()[-2000:] for s in pending.values()))


def worker_pids(arbiter_pid: int) -> list[int]:
    """Live BentoML worker processes under a server's arbiter (`python -m _bentoml_impl.worker…`).
    Also used by benchmarks/serve_resilience.py and serve_soak.py."""
    pids = []
    for p in psutil.Process(arbiter_pid).children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and any("_bentoml_impl.worker" in a for a in p.cmdline()[1:3]):
                pids.append(p.pid)
        except psutil.Error:  # gone meanwhile
            pass
    return sorted(pids)


def answers_within(metrics: str, bound_s: float, endpoint: str = "predict") -> tuple[float, float]:
    """(prediction answers so far, those answered within bound_s of arrival) from a server's /metrics text:
    the histogram deploykit_request_duration_seconds, summed over statuses and workers; bound_s must be
    one of its bucket edges. Also used by benchmarks/serve_resilience.py."""
    total = within = 0.0
    for line in metrics.splitlines():
        if line.startswith("deploykit_request_duration_seconds_bucket{") and f'endpoint="{endpoint}"' in line:
            le = re.search(r'le="([^"]+)"', line).group(1)
            value = float(line.rsplit(" ", 1)[1])
            if le == "+Inf":
                total += value
            elif float(le) == bound_s:
                within += value
    return total, within


def stop(server: Server, timeout_s: float = 20) -> None:
    """SIGINT to BentoML's arbiter (it stops its workers); kill whatever is left after the timeout."""
    proc = server.proc
    if proc.poll() is not None:
        return
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
    for child in children:
        try:
            child.wait(timeout=5)
        except psutil.TimeoutExpired:
            child.kill()
        except psutil.NoSuchProcess:
            pass
