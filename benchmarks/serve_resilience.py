"""Serving under stress, measured (prints figures; asserts nothing): worker scaling, a killed worker,
deadlines under overload. Servers are `deploykit serve` on loopback ports; all are stopped at the end.

1. **Scaling**: throughput at concurrency 32 with `--workers 1` and `--workers 2`, load from deploykit's
   own load tester (`deploykit loadtest`, closed loop), same ONNX model and body. On a 2-core machine
   the load generator shares the cores with the workers: the ratio says what this machine allows.
2. **kill -9 of one of two workers** under closed-loop load (8 client threads): errors in the 10 s
   after the kill, and the time until BentoML's arbiter has a replacement worker answering.
3. **Deadlines**: a burst of concurrent requests (far above capacity) each with X-Request-Timeout-Ms;
   every answer must be 200 or 503 and come within deadline + 100 ms.

    .venv/bin/python benchmarks/serve_resilience.py --model models/mnist/torch-mlp [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from _servers import free_port, stop, wait_ready  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
BODY = json.dumps({"inputs": [[0.5] * 784]}).encode()


def serve(model: str, fmt: str, workers: int, **settings) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [sys.executable, "-m", "deploykit", "serve", model, "--format", fmt, "--port", str(port), "--workers", str(workers)]
    env = {**os.environ, "BENTOML_DO_NOT_TRACK": "True", **{f"DEPLOYKIT_{k.upper()}": str(v) for k, v in settings.items()}}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env, cwd=ROOT)
    url = f"http://127.0.0.1:{port}"
    wait_ready(url + "/readyz", proc, 240)
    return proc, url


def loadtest_rps(url: str, duration: int) -> tuple[float, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "load.json"
        subprocess.run([sys.executable, "-m", "deploykit", "loadtest", url + "/predict", "--concurrency", "32",
                        "--duration", f"{duration}s", "--warmup", "2s", "--out", str(out)], check=True,
                       capture_output=True, cwd=ROOT, timeout=duration + 120)
        step = json.loads(out.read_text())["steps"][0]
        return step["throughput_rps"], step["errors"]


def scaling(model: str, fmt: str, duration: int) -> None:
    rps = {}
    for workers in (1, 2):
        proc, url = serve(model, fmt, workers)
        try:
            rps[workers] = loadtest_rps(url, duration)
        finally:
            stop(proc)
    print(f"scaling, c=32, {duration} s, deploykit loadtest: 1 worker {rps[1][0]:,.0f} req/s ({rps[1][1]} errors), "
          f"2 workers {rps[2][0]:,.0f} req/s ({rps[2][1]} errors), ratio {rps[2][0] / rps[1][0]:.2f}")


def _workers(arbiter_pid: int) -> list[int]:
    """Live BentoML worker processes under the server (`python -m _bentoml_impl.worker…`)."""
    import psutil

    pids = []
    for p in psutil.Process(arbiter_pid).children(recursive=True):
        try:
            if p.status() != psutil.STATUS_ZOMBIE and any("_bentoml_impl.worker" in a for a in p.cmdline()[1:3]):
                pids.append(p.pid)
        except psutil.Error:  # gone meanwhile
            pass
    return sorted(pids)


def kill_worker(model: str, fmt: str) -> None:
    import httpx
    import psutil

    proc, url = serve(model, fmt, 2)
    try:
        before = _workers(proc.pid)
        if len(before) < 2:
            print(f"kill -9: expected 2 worker processes, found {before}; skipped")
            return
        results: list[tuple[float, int]] = []
        stop_at = time.monotonic() + 14

        def client():
            with httpx.Client(timeout=10) as c:
                while time.monotonic() < stop_at:
                    t = time.monotonic()
                    try:
                        status = c.post(url + "/predict", content=BODY, headers={"content-type": "application/json"}).status_code
                    except httpx.HTTPError:
                        status = 0
                    results.append((t, status))

        threads = [threading.Thread(target=client) for _ in range(8)]
        for t in threads:
            t.start()
        time.sleep(2)
        killed_at = time.monotonic()
        psutil.Process(before[0]).kill()  # SIGKILL one worker
        back_s = None
        while time.monotonic() < stop_at:
            now = _workers(proc.pid)
            if len(now) >= 2 and set(now) != set(before):
                back_s = time.monotonic() - killed_at
                break
            time.sleep(0.05)
        for t in threads:
            t.join()
        after = [s for t, s in results if killed_at <= t < killed_at + 10]
        bad = [s for s in after if s != 200]
        print(f"kill -9 of 1 of 2 workers under 8 clients: {len(after):,} requests in the next 10 s, {len(bad)} not 200 "
              f"({100 * len(bad) / max(len(after), 1):.2f} %; statuses {sorted(set(bad))}), replacement worker process "
              f"after {back_s:.1f} s" if back_s is not None else "no replacement seen")
    finally:
        stop(proc)


def deadlines(model: str, fmt: str, deadline_ms: int = 200, burst: int = 400) -> None:
    import httpx

    proc, url = serve(model, fmt, 1, max_concurrency=1024)
    local = threading.local()
    headers = {"content-type": "application/json", "X-Request-Timeout-Ms": str(deadline_ms)}
    try:
        def one(_):
            if not hasattr(local, "client"):
                local.client = httpx.Client(timeout=10)
            t = time.perf_counter()
            try:
                r = local.client.post(url + "/predict", content=BODY, headers=headers)
                s, server_ms = r.status_code, float(r.headers.get("x-server-time-us", "nan")) / 1e3
            except httpx.HTTPError:
                s, server_ms = 0, float("nan")
            return s, (time.perf_counter() - t) * 1e3, server_ms

        with ThreadPoolExecutor(64) as pool:
            answers = list(pool.map(one, range(burst)))
        statuses = [a[0] for a in answers]
        client_ms = [a[1] for a in answers]
        server_ms = [a[2] for a in answers if a[0] == 200]
        late = [ms for ms in client_ms if ms > deadline_ms + 100]
        print(f"deadline {deadline_ms} ms, {burst} requests from 64 client threads (keep-alive): "
              f"200: {statuses.count(200)}, 503: {statuses.count(503)}, other: {len(statuses) - statuses.count(200) - statuses.count(503)}; "
              f"client p50 {np.percentile(client_ms, 50):.0f} ms, p99 {np.percentile(client_ms, 99):.0f} ms, "
              f"{len(late)} answers after deadline + 100 ms (client clock, includes the generator's own queueing); "
              f"server time of 200s: max {max(server_ms, default=float('nan')):.0f} ms")
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models/mnist/torch-mlp"))
    ap.add_argument("--format", default="onnx")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--only", choices=["scaling", "kill", "deadlines"])
    args = ap.parse_args()
    for name, run in (("scaling", lambda: scaling(args.model, args.format, args.duration)),
                      ("kill", lambda: kill_worker(args.model, args.format)),
                      ("deadlines", lambda: deadlines(args.model, args.format))):
        if args.only in (None, name):
            run()


if __name__ == "__main__":
    main()
