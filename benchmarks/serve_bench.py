"""HTTP serving benchmark: deploykit's BentoML service vs a lean Starlette + uvicorn + onnxruntime anchor.

Both servers serve the same ONNX artifact of an MLP (torch-mlp or keras-sequential, `onnx` format),
answer the same JSON request (one 28×28 test digit as 784 floats in [0, 1]) with label + probabilities,
and run one process each, pinned to the same core(s) with `taskset`; the load comes from `wrk` (an
independent tool, Debian package `wrk`) pinned to other core(s). Measured in one run, side by side:
p50 / p99 latency and throughput at concurrency 1, and throughput / p99 at concurrency 32.

Targets (serving issue): deploykit p50 at c=1 ≤ 2× the anchor's; deploykit throughput at c=32 ≥ 1×
the anchor's; zero errors (non-2xx, socket errors, timeouts) for both.

    .venv/bin/python benchmarks/serve_bench.py [--model models/mnist/torch-mlp] [--duration 10]

The anchor is what a lean hand-written endpoint looks like: `await request.json()` (stdlib json),
numpy, `session.run`, `JSONResponse`. It validates nothing beyond what numpy refuses; deploykit
also checks types, range, shape and sizes on every request. Both use ONNX Runtime with 1 thread.
Every load run is bounded by --duration; servers are stopped at the end (also on errors).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from _servers import free_port, stop, wait_ready  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]

# wrk's Lua hooks: POST the body, then print the summary as one JSON line (latencies in µs).
WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "errors_connect": %d, "errors_read": %d, ' ..
    '"errors_write": %d, "errors_status": %d, "errors_timeout": %d, "p50_us": %d, "p90_us": %d, ' ..
    '"p99_us": %d, "max_us": %d, "mean_us": %.1f}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max, latency.mean))
end
"""


# -- the anchor server (run by this same file with --anchor-server) ---------------------------------
def make_anchor_app(model_path: str):
    import onnxruntime as ort
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, sess_options=opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    inner = [d if isinstance(d, int) else -1 for d in session.get_inputs()[0].shape[1:]]

    async def predict(request):
        body = await request.json()
        x = np.asarray(body["inputs"], dtype=np.float32).reshape(-1, *inner)
        probs = session.run(None, {name: x})[0]
        return JSONResponse({"predictions": [{"label": int(p.argmax()), "probabilities": p.tolist()} for p in probs]})

    async def ready(request):
        return JSONResponse({"ready": True})

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]), Route("/readyz", ready)])


def run_anchor(model_path: str, port: int) -> None:
    import uvicorn

    uvicorn.run(make_anchor_app(model_path), host="127.0.0.1", port=port, log_level="warning", access_log=False)


# -- helpers -----------------------------------------------------------------------------------------
def post(url: str, body: bytes) -> tuple[dict, dict]:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"}, method="POST")
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read()), dict(r.headers)


def wrk(url: str, concurrency: int, duration_s: float, cores: str, script: Path, body: Path) -> dict:
    threads = max(1, min(concurrency, len(cores.split(","))))
    cmd = ["taskset", "-c", cores, "wrk", f"-t{threads}", f"-c{concurrency}", f"-d{duration_s:.0f}s",
           "--timeout", "5s", "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "BENCH_BODY": str(body)},
                         timeout=duration_s + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(line[len("WRK_JSON "):])
    r["errors"] = sum(r[k] for k in r if k.startswith("errors_"))
    r["rps"] = r["requests"] / (r["duration_us"] / 1e6)
    return r


def cpu_seconds(proc: subprocess.Popen) -> float:
    """CPU time (user + system) of a server's whole process tree: BentoML's arbiter and workers.
    Per request it is a companion figure that other load on the machine disturbs far less than
    wall-clock throughput does (a server pinned to one busy core just gets less of it)."""
    import psutil

    try:
        root = psutil.Process(proc.pid)
        total = 0.0
        for p in [root, *root.children(recursive=True)]:
            try:
                t = p.cpu_times()
                total += t.user + t.system
            except psutil.NoSuchProcess:
                pass
        return total
    except psutil.NoSuchProcess:
        return float("nan")


def uvicorn_stack() -> str:
    """The event loop and HTTP parser uvicorn picks here ("auto": uvloop and httptools when installed),
    for both servers alike: they run in this same environment."""
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    http = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return f"uvicorn loop={loop} http={http}"


def find_model(arg: str | None) -> Path:
    candidates = [Path(arg)] if arg else [ROOT / "models/mnist/torch-mlp", ROOT / "models/mnist/keras-sequential"]
    for c in candidates:
        if (c / "manifest.json").is_file():
            return c
    raise SystemExit(f"no model folder at {', '.join(map(str, candidates))}: run "
                     "`deploykit train-export mnist --models torch-mlp --epochs 1` first, or pass --model")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", help="model folder with an `onnx` artifact (default: models/mnist/torch-mlp)")
    ap.add_argument("--duration", type=float, default=5, help="seconds per measurement (default 5)")
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds; medians are compared (default 3)")
    ap.add_argument("--warmup", type=float, default=3, help="seconds of load before measuring (default 3)")
    ap.add_argument("--server-cores", default="1", help="taskset cores for the servers (default 1)")
    ap.add_argument("--client-cores", default="0", help="taskset cores for wrk (default 0)")
    ap.add_argument("--workers", type=int, default=1, help="deploykit workers (default 1, like the anchor)")
    ap.add_argument("--concurrency", default="1,32", help="wrk connections to measure (default 1,32)")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON here")
    ap.add_argument("--lean", action="store_true",
                    help="also measure deploykit with bentoml_http_metrics=false (reported, not part of the targets)")
    ap.add_argument("--anchor-server", nargs=2, metavar=("MODEL_PATH", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.anchor_server:
        run_anchor(args.anchor_server[0], int(args.anchor_server[1]))
        return 0
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install -y {'wrk' if tool == 'wrk' else 'util-linux'})")

    model_dir = find_model(args.model)
    from deploykit.manifest import ModelManifest

    manifest = ModelManifest.read(model_dir)
    onnx_path = manifest.verify(model_dir, manifest.artifact("onnx"))
    ref = np.load(model_dir / manifest.reference) if manifest.reference else None
    image = (ref["x"][0] if ref is not None else np.zeros((28, 28), np.uint8)).astype(np.float64) / 255.0

    tmp = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    body = tmp / "body.json"
    body.write_text(json.dumps({"inputs": [image.ravel().tolist()]}))
    script = tmp / "post.lua"
    script.write_text(WRK_SCRIPT)
    levels = [int(c) for c in args.concurrency.split(",")]
    py = sys.executable
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BENTOML_HOME": str(tmp / "bentoml"),
           "BENTOML_DO_NOT_TRACK": "True", "TF_CPP_MIN_LOG_LEVEL": "2"}

    servers = {
        "anchor": lambda port: [py, __file__, "--anchor-server", str(onnx_path), str(port)],
        "deploykit": lambda port: [py, "-m", "bentoml", "serve", "deploykit.serving.service:DeployKitService",
                                   "--host", "127.0.0.1", "--port", str(port),
                                   "--arg", f"model={model_dir}", "--arg", "format=onnx",
                                   "--arg", f"workers={args.workers}"],
    }
    if args.lean:  # the same service with BentoML's per-request HTTP metrics off (deploykit's stay)
        servers["dk-lean"] = lambda port: servers["deploykit"](port) + ["--arg", "bentoml_http_metrics=false"]
    stack = uvicorn_stack()
    print(f"model {manifest.model} ({onnx_path}); both servers up, pinned to cores {args.server_cores}; wrk on cores "
          f"{args.client_cores}; {args.rounds} interleaved rounds of {args.duration:.0f} s per server and level, "
          f"after {args.warmup:.0f} s warm-up each; both: {stack}", flush=True)
    procs: dict[str, subprocess.Popen] = {}
    bases: dict[str, str] = {}
    results: dict[str, dict] = {}
    try:
        for name, make_cmd in servers.items():  # both up at once; the idle one costs nothing measurable
            port = free_port()
            log = open(tmp / f"{name}.log", "w")
            procs[name] = subprocess.Popen(["taskset", "-c", args.server_cores, *make_cmd(port)], stdout=log,
                                           stderr=subprocess.STDOUT, env=env, cwd=ROOT, start_new_session=True)
            bases[name] = f"http://127.0.0.1:{port}"
        for name in servers:
            wait_ready(bases[name] + "/readyz", procs[name])
            answer, headers = post(bases[name] + "/predict", body.read_bytes())
            results[name] = {"label": answer["predictions"][0]["label"],
                             "inference_header": headers.get("x-inference-time-us"),
                             **{c: [] for c in levels}}
            wrk(bases[name] + "/predict", max(levels), args.warmup, args.client_cores, script, body)
        for rnd in range(args.rounds):
            order = list(servers) if rnd % 2 == 0 else list(reversed(servers))  # alternate who goes first
            for c in levels:
                for name in order:
                    cpu0 = cpu_seconds(procs[name])
                    r = wrk(bases[name] + "/predict", c, args.duration, args.client_cores, script, body)
                    r["cpu_us_per_req"] = (cpu_seconds(procs[name]) - cpu0) / max(1, r["requests"]) * 1e6
                    results[name][c].append(r)
                    print(f"  round {rnd + 1} {name:9s} c={c:<3d} {r['rps']:8.0f} req/s  p50 {r['p50_us'] / 1e3:6.2f} ms  "
                          f"p99 {r['p99_us'] / 1e3:6.2f} ms  server CPU {r['cpu_us_per_req']:4.0f} µs/req  "
                          f"errors {r['errors']}", flush=True)
    finally:
        for proc in procs.values():
            stop(proc)

    def median(name: str, c: int, key: str) -> float:
        return float(np.median([r[key] for r in results[name][c]]))

    a, d = results["anchor"], results["deploykit"]
    lo, hi = min(levels), max(levels)
    p50_ratio = median("deploykit", lo, "p50_us") / median("anchor", lo, "p50_us")
    rps_ratio = median("deploykit", hi, "rps") / median("anchor", hi, "rps")
    errors = sum(r["errors"] for s in results for c in levels for r in results[s][c])
    print(f"\nmedians over {args.rounds} rounds")
    print(f"{'server':10s} {'c=' + str(lo) + ' p50':>10s} {'p99':>9s} {'req/s':>8s} | {'c=' + str(hi) + ' req/s':>11s} "
          f"{'p50':>9s} {'p99':>9s} {'CPU/req':>9s} {'errors':>7s}")
    for s in results:
        errs = sum(r["errors"] for c in levels for r in results[s][c])
        print(f"{s:10s} {median(s, lo, 'p50_us') / 1e3:8.2f}ms {median(s, lo, 'p99_us') / 1e3:7.2f}ms "
              f"{median(s, lo, 'rps'):8.0f} | {median(s, hi, 'rps'):11.0f} {median(s, hi, 'p50_us') / 1e3:7.2f}ms "
              f"{median(s, hi, 'p99_us') / 1e3:7.2f}ms {median(s, hi, 'cpu_us_per_req'):7.0f}µs {errs:7d}")
    cpu_ratio = median("deploykit", hi, "cpu_us_per_req") / median("anchor", hi, "cpu_us_per_req")
    print(f"\n  server CPU per request at c={hi}, deploykit / anchor: {cpu_ratio:.2f} "
          f"(companion figure; ≤ 1 means the same core serves at least as many requests)")
    checks = [
        (f"deploykit p50 at c={lo} / anchor", p50_ratio, "≤ 2.0", p50_ratio <= 2.0),
        (f"deploykit req/s at c={hi} / anchor", rps_ratio, "≥ 1.0", rps_ratio >= 1.0),
        ("errors (both servers, all levels)", errors, "= 0", errors == 0),
        ("same label from both servers", float(a["label"] == d["label"]), "= 1", a["label"] == d["label"]),
    ]
    if "dk-lean" in results:
        print(f"\n  (dk-lean, BentoML HTTP metrics off: p50 c={lo} / anchor "
              f"{median('dk-lean', lo, 'p50_us') / median('anchor', lo, 'p50_us'):.2f}, req/s c={hi} / anchor "
              f"{median('dk-lean', hi, 'rps') / median('anchor', hi, 'rps'):.2f}; not a target)")
    print()
    for what, value, target, ok in checks:
        print(f"  {what:40s} {value:8.2f}  target {target:6s} {'PASS' if ok else 'FAIL'}")
    if args.out:
        args.out.write_text(json.dumps({"model": manifest.model, "artifact": str(onnx_path), "servers": results,
                                        "uvicorn": stack,
                                        "ratios": {"p50_c1": p50_ratio, "rps_c32": rps_ratio, "cpu_per_req_c32": cpu_ratio},
                                        "server_cores": args.server_cores, "client_cores": args.client_cores},
                                       indent=2, default=str))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if all(ok for *_, ok in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
