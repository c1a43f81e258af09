"""Serving under stress, measured (prints figures; asserts nothing): worker scaling, a killed worker,
deadlines under overload. Servers are `deploykit serve` on loopback ports; all are stopped at the end.

1. **Scaling**: throughput at concurrency 32 with `--workers 1` and `--workers 2`, load from deploykit's
   own load tester (`deploykit loadtest`, closed loop), same ONNX model and body. On a 2-core machine
   the load generator shares the cores with the workers: the ratio says what this machine allows.
2. **kill -9 of one of two workers** under closed-loop load (8 client threads): errors in the 10 s
   after the kill, and the time until BentoML's arbiter has a replacement worker answering.
3. **Overload with deadlines**: capacity measured closed loop, then open loop (`deploykit loadtest --rate`)
   at 4× and 16× of it, every request with `X-Request-Timeout-Ms` (`--header`): every answer must be
   200 or 503 within deadline + 100 ms, none may time out. Timed at the client (every answer, 503s
   included, from its scheduled send less the generator's own lag: the load tester's `answer_time`) and
   at the server (its Prometheus histogram, from arrival in the handler). By default one worker and
   max batch 2, so that the model is the limit and 16× capacity is a rate the generator can send.
   Measured 2026-12-02 (keras-cnn SavedModel, deadline 150 ms, --multiples 2,4, load average 7), before
   and after admission by expected completion: 2×: 29 → 327 × 200, server answers after 250 ms 34 % →
   0 of 5,078; 4×: 17 → 15 × 200, late 32 % → 31 of 10,163 (0.3 %), server and generator unpinned.
   With `--heavy-width 8192 --server-cores 1 --client-cores 0` (idle machine, capacity 55 req/s): 4× and
   16× both met: 0 client timeouts, client max 156 / 165 ms, 0 of 1,321 / 5,281 server answers late
   (docs/serving.md, "Deadlines").

    .venv/bin/python benchmarks/serve_resilience.py --model models/mnist/torch-mlp [--duration 10]
    .venv/bin/python benchmarks/serve_resilience.py --only overload --overload-model models/mnist/keras-cnn --overload-format savedmodel
    .venv/bin/python benchmarks/serve_resilience.py --only overload --heavy-width 4096 --server-cores 1 --client-cores 0
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
from pathlib import Path

from _servers import free_port, stop, wait_ready  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "integration"))
from test_serving_support import answers_within, worker_pids  # noqa: E402  (one definition, shared with the tests)

BODY = json.dumps({"inputs": [[0.5] * 784]}).encode()


# taskset prefixes (--server-cores / --client-cores): empty = unpinned
PIN = {"server": [], "client": []}


def serve(model: str, fmt: str, workers: int, **settings) -> tuple[subprocess.Popen, str]:
    port = free_port()
    cmd = [*PIN["server"], sys.executable, "-m", "deploykit", "serve", model, "--format", fmt, "--port", str(port),
           "--workers", str(workers)]
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


def kill_worker(model: str, fmt: str) -> None:
    import httpx
    import psutil

    proc, url = serve(model, fmt, 2)
    try:
        before = worker_pids(proc.pid)
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
            now = worker_pids(proc.pid)
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


def _server_answers(url: str, bound_s: float) -> tuple[float, float]:
    import urllib.request

    with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
        return answers_within(r.read().decode(), bound_s)


def _loadtest(url: str, args: list[str], timeout_s: float) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "load.json"
        done = subprocess.run([*PIN["client"], sys.executable, "-m", "deploykit", "loadtest", url + "/predict", *args,
                               "--out", str(out)],
                              capture_output=True, text=True, cwd=ROOT, timeout=timeout_s)
        if not out.exists():  # exit 1 with results written means every request failed: still figures
            raise SystemExit(f"loadtest failed ({done.returncode}): {done.stderr.strip()[-300:]}")
        return json.loads(out.read_text())


def heavy_model(root: Path, width: int) -> str:
    """An MNIST-shaped model whose compute, not HTTP, bounds the server (784 → width ×3 → 10, random
    weights), exported and proven by `deploykit export` like any user model: its capacity is low enough
    that 16× of it is a rate the load generator can send here."""
    import torch
    from torch import nn

    from deploykit.user_export import export_user_model

    torch.manual_seed(0)
    layers = [nn.Flatten(), nn.Linear(784, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(),
              nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10), nn.Softmax(dim=1)]
    torch.jit.script(nn.Sequential(*layers).eval()).save(str(root / "heavy.pt"))
    _, model_dir = export_user_model(root / "heavy.pt", formats="onnx", dataset="mnist", out=root / "models",
                                     name=f"heavy-mlp-{width}", isolate=False)
    return str(model_dir)


def overload(model: str, fmt: str, workers: int, max_batch_size: int, deadline_ms: int = 150,
             multiples: tuple[int, ...] = (4, 16), duration: int = 5) -> None:
    """Capacity (closed loop, c=16, no deadline), then open loop at each multiple of it with every
    request carrying X-Request-Timeout-Ms (the load tester's --header). Every answer must be 200 or
    503 within deadline + 100 ms, and no request may time out or go unanswered at the client."""
    bound_s = (deadline_ms + 100) / 1e3
    proc, url = serve(model, fmt, workers, max_batch_size=max_batch_size)
    try:
        step = _loadtest(url, ["--concurrency", "16", "--duration", f"{duration}s", "--warmup", "2s"], duration + 120)["steps"][0]
        capacity = step["throughput_rps"]
        print(f"overload: {model.rstrip('/').rsplit('/', 1)[-1]} {fmt}, {workers} worker(s), max batch {max_batch_size}: "
              f"capacity {capacity:,.0f} req/s (closed loop c=16, {duration} s, {step['errors']} errors: "
              f"{step['errors_by_status'] or 0}; a 503 here is admission's max_latency_ms at work)")
        for k in multiples:
            rate = round(k * capacity)
            connections = min(4000, max(64, int(rate * bound_s * 2)))  # enough to keep the schedule while answers take ≤ bound
            before = _server_answers(url, bound_s)
            results = _loadtest(url, ["--rate", str(rate), "--connections", str(connections), "--duration", f"{duration}s",
                                      "--warmup", "1s", "--drain", "5s", "--timeout", "10s", "--server-time-header",
                                      "X-Server-Time-Us", "--header", f"X-Request-Timeout-Ms: {deadline_ms}"], duration + 180)
            after = _server_answers(url, bound_s)
            st = results["steps"][0]
            errors = st["errors_by_status"]
            others = {k2: v for k2, v in errors.items() if k2 != "503"}
            ans, lag = st.get("answer_time"), st.get("send_lag")
            late_server = (after[0] - before[0]) - (after[1] - before[1])
            print(f"  {k}× = {rate:,}/s ({connections} connections, {duration} s, deadline {deadline_ms} ms): "
                  f"{st['requests']:,} requests: 200: {st['requests'] - st['errors']:,}, 503: {errors.get('503', 0):,}, "
                  f"other: {others or 0}; schedule {'kept' if st['valid'] else 'NOT kept: ' + st['invalid_reason']}")
            if lag:
                print(f"    send lag p50 {lag['p50_us'] / 1e3:.2f} ms, p90 {(lag['p90_us'] or float('nan')) / 1e3:.2f} ms, "
                      f"max {lag['max_us'] / 1e3:.1f} ms")
            if ans:
                print(f"    client, every answer (200 and 503) from its scheduled send less the generator's own lag: "
                      f"p50 {ans['p50_us'] / 1e3:.1f} ms, p99 {(ans['p99_us'] or float('nan')) / 1e3:.1f} ms, max "
                      f"{ans['max_us'] / 1e3:.1f} ms (bound {bound_s * 1e3:.0f} ms)")
            print(f"    server, every answer from arrival in the handler: {late_server:.0f} of {after[0] - before[0]:,.0f} "
                  f"after {bound_s * 1e3:.0f} ms (Prometheus histogram; includes warm-up and drain answers)")
    finally:
        stop(proc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models/mnist/torch-mlp"))
    ap.add_argument("--format", default="onnx")
    ap.add_argument("--duration", type=int, default=10)
    ap.add_argument("--only", choices=["scaling", "kill", "overload"])
    ap.add_argument("--overload-model", default=None, help="model for the overload run (default --model)")
    ap.add_argument("--overload-format", default=None)
    ap.add_argument("--overload-workers", type=int, default=1)
    ap.add_argument("--overload-batch", type=int, default=2, help="max batch size (2, the least): small batches make the model, not HTTP, the limit")
    ap.add_argument("--multiples", default="4,16")
    ap.add_argument("--heavy-width", type=int, default=0,
                    help="overload a generated MNIST-shaped MLP of this width (e.g. 4096; ONNX) instead of --overload-model")
    ap.add_argument("--server-cores", default="", help="taskset cores for the server (e.g. 1; default unpinned)")
    ap.add_argument("--client-cores", default="", help="taskset cores for the load tester (e.g. 0)")
    args = ap.parse_args()
    PIN.update(server=["taskset", "-c", args.server_cores] if args.server_cores else [],
               client=["taskset", "-c", args.client_cores] if args.client_cores else [])
    if args.heavy_width:
        work = Path(tempfile.mkdtemp(prefix="deploykit-heavy-"))
        args.overload_model, args.overload_format = heavy_model(work, args.heavy_width), "onnx"
        print(f"overload model: {args.overload_model}")
    for name, run in (("scaling", lambda: scaling(args.model, args.format, args.duration)),
                      ("kill", lambda: kill_worker(args.model, args.format)),
                      ("overload", lambda: overload(args.overload_model or args.model, args.overload_format or args.format,
                                                    args.overload_workers, args.overload_batch,
                                                    multiples=tuple(int(m) for m in args.multiples.split(","))))):
        if args.only in (None, name):
            run()


if __name__ == "__main__":
    main()
