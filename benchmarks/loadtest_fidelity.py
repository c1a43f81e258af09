"""Fidelity of `deploykit loadtest`: its throughput and p50 against wrk's, same endpoint, same body.

The endpoint is deploykit's BentoML service on the ONNX artifact of an MLP (`--server deploykit`,
the default) or a lean Starlette + uvicorn + onnxruntime app (`--server lean`). The server runs pinned
to --server-cores; wrk and deploykit's load engine both run pinned to --client-cores (`taskset` for
wrk, `--cpu-affinity` for the engine), so on a 2-core machine the load generator and the server never
share a core. Both send byte-identical requests (one real test digit from the model folder, encoded
by deploykit.loadtest.payload.json_body) over the same number of keep-alive connections, in
interleaved rounds (alternating which tool goes first); medians are compared.

Target (issue 4): at c=1 and c=32, deploykit's throughput and p50 within 15 % of wrk's (the median
of the rounds' paired ratios, so drifts in machine load between rounds cancel out).

    .venv/bin/python benchmarks/loadtest_fidelity.py [--model models/mnist/torch-mlp] [--duration 5] [--rounds 3]

Every run is bounded by --duration; the server is stopped at the end (also on errors).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median
from _servers import free_port, stop, wait_ready  # benchmarks/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parents[1]
TOLERANCE = 0.15

# wrk: POST the body from $BODY; print the summary as one JSON line (wrk's latencies are in µs).
WRK_SCRIPT = r"""
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("BODY"), "rb"))
wrk.body = f:read("*a")
f:close()
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('WRK_JSON {"requests": %d, "duration_us": %d, "errors": %d, "p50_us": %d, "p99_us": %d}\n',
    summary.requests, summary.duration, e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def lean_app(model_path: str):
    """The lean endpoint: read JSON, run ONNX Runtime (1 thread), answer JSON."""
    import numpy as np
    import onnxruntime as ort
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    session = ort.InferenceSession(model_path, sess_options=opts, providers=["CPUExecutionProvider"])
    inp = session.get_inputs()[0]
    inner = [d if isinstance(d, int) else -1 for d in inp.shape[1:]]

    async def predict(request):
        x = np.asarray((await request.json())["inputs"], dtype=np.float32).reshape(-1, *inner)
        t = time.perf_counter_ns()
        probs = session.run(None, {inp.name: x})[0]
        us = (time.perf_counter_ns() - t) / 1000
        return JSONResponse({"predictions": [{"label": int(p.argmax())} for p in probs]},
                            headers={"X-Inference-Time-Us": f"{us:.0f}"})

    return Starlette(routes=[Route("/predict", predict, methods=["POST"]),
                             Route("/readyz", lambda r: Response("ok"))])


def run_wrk(url: str, connections: int, duration_s: float, cores: str, script: Path, body: Path) -> dict:
    cmd = ["taskset", "-c", cores, "wrk", "-t1", f"-c{connections}", f"-d{duration_s:g}s", "--timeout", "5s",
           "-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "BODY": str(body)},
                         timeout=duration_s + 60)
    line = next((ln for ln in out.stdout.splitlines() if ln.startswith("WRK_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk failed: {out.stdout}\n{out.stderr}")
    r = json.loads(line[len("WRK_JSON "):])
    return {"rps": r["requests"] / (r["duration_us"] / 1e6), "p50_us": float(r["p50_us"]), "p99_us": float(r["p99_us"]),
            "errors": r["errors"], "requests": r["requests"]}


def run_deploykit(url: str, connections: int, duration_s: float, warmup_s: float, cores: str, model_dir: Path,
                  client: str) -> dict:
    from deploykit.loadtest.command import build_spec, run_loadtest

    spec = build_spec(url, concurrency=str(connections), duration=f"{duration_s}s", warmup=f"{warmup_s}s",
                      model_dir=str(model_dir), samples=1, cpu_affinity=cores, client=client)
    step = run_loadtest(spec).results.steps[0]
    return {"rps": step.throughput_rps, "p50_us": step.latency.p50_us if step.latency else float("nan"),
            "p99_us": step.latency.p99_us if step.latency and step.latency.p99_us is not None else float("nan"),
            "errors": step.errors,
            "requests": step.requests,
            "server_p50_us": step.server_time.p50_us if step.server_time else None}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, help="model folder with an `onnx` artifact (default: models/mnist/torch-mlp)")
    ap.add_argument("--server", choices=("deploykit", "lean"), default="deploykit")
    ap.add_argument("--duration", type=float, default=3, help="measured seconds per run (default 3)")
    ap.add_argument("--warmup", type=float, default=2, help="warm-up seconds before each run (default 2)")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds; median ratios compared (default 5)")
    ap.add_argument("--concurrency", default="1,32")
    ap.add_argument("--client", default="auto", help="deploykit loadtest --client (auto, raw, fasthttp)")
    ap.add_argument("--server-cores", default="1")
    ap.add_argument("--client-cores", default="0")
    ap.add_argument("--out", type=Path, help="also write the figures as JSON here")
    ap.add_argument("--lean-server", nargs=2, metavar=("MODEL_PATH", "PORT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.lean_server:
        import uvicorn

        uvicorn.run(lean_app(args.lean_server[0]), host="127.0.0.1", port=int(args.lean_server[1]),
                    log_level="warning", access_log=False)
        return 0
    for tool in ("wrk", "taskset"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed (apt-get install -y {'wrk' if tool == 'wrk' else 'util-linux'})")
    model_dir = args.model or ROOT / "models/mnist/torch-mlp"
    if not (model_dir / "manifest.json").is_file():
        raise SystemExit(f"no model folder at {model_dir}: run `deploykit train-export mnist --models torch-mlp "
                         "--formats onnx --epochs 1` first, or pass --model")

    import numpy as np

    from deploykit.loadtest.payload import json_body
    from deploykit.manifest import ModelManifest

    manifest = ModelManifest.read(model_dir)
    onnx_path = manifest.verify(model_dir, manifest.artifact("onnx"))
    with np.load(model_dir / manifest.reference) as ref:
        digit = ref["x"][0]
    tmp = Path(tempfile.mkdtemp(prefix="loadtest-fidelity-"))
    body, script = tmp / "body.json", tmp / "post.lua"
    body.write_bytes(json_body(digit))  # the exact bytes the load engine sends with --samples 1
    script.write_text(WRK_SCRIPT)
    port = free_port()
    if args.server == "deploykit":
        cmd = [sys.executable, "-m", "bentoml", "serve", "deploykit.serving.service:DeployKitService", "--host",
               "127.0.0.1", "--port", str(port), "--arg", f"model={model_dir}", "--arg", "format=onnx",
               "--arg", "workers=1"]
    else:
        cmd = [sys.executable, __file__, "--lean-server", str(onnx_path), str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "BENTOML_HOME": str(tmp / "bentoml"), "BENTOML_DO_NOT_TRACK": "True"}
    levels = [int(c) for c in args.concurrency.split(",")]
    base = f"http://127.0.0.1:{port}"
    print(f"{args.server} server on {onnx_path.name} of {manifest.model}, pinned to cores {args.server_cores}; wrk and "
          f"deploykit loadtest (--client {args.client}) pinned to cores {args.client_cores}; {args.rounds} interleaved rounds of "
          f"{args.duration:g} s per tool and concurrency, {args.warmup:g} s warm-up each", flush=True)
    results = {c: {"wrk": [], "deploykit": []} for c in levels}
    with open(tmp / "server.log", "w") as log:
        server = subprocess.Popen(["taskset", "-c", args.server_cores, *cmd], stdout=log, stderr=subprocess.STDOUT,
                                  env=env, cwd=ROOT, start_new_session=True)
    try:
        wait_ready(base + "/readyz", server)
        url = base + "/predict"
        for rnd in range(args.rounds):
            for c in levels:
                order = ["wrk", "deploykit"] if rnd % 2 == 0 else ["deploykit", "wrk"]
                for tool in order:
                    if tool == "wrk":
                        run_wrk(url, c, args.warmup, args.client_cores, script, body)  # warm-up, discarded
                        r = run_wrk(url, c, args.duration, args.client_cores, script, body)
                    else:
                        r = run_deploykit(url, c, args.duration, args.warmup, args.client_cores, model_dir, args.client)
                    results[c][tool].append(r)
                    print(f"  round {rnd + 1} c={c:<3d} {tool:9s} {r['rps']:8.0f} req/s  p50 {r['p50_us'] / 1e3:7.3f} ms  "
                          f"p99 {r['p99_us'] / 1e3:7.3f} ms  errors {r['errors']}", flush=True)
    finally:
        stop(server)

    print(f"\nper concurrency: medians over {args.rounds} rounds, and the median of the rounds' paired ratios "
          f"(deploykit / wrk, measured back to back; target {1 - TOLERANCE:.2f}–{1 + TOLERANCE:.2f})")
    print(f"{'c':>4s} {'wrk req/s':>10s} {'dk req/s':>10s} {'ratio':>6s} | {'wrk p50':>10s} {'dk p50':>10s} {'ratio':>6s} | wrk spread")
    ok, summary = True, {}
    for c in levels:
        runs = results[c]
        m = {t: {k: median(r[k] for r in runs[t]) for k in ("rps", "p50_us")} for t in ("wrk", "deploykit")}
        rps_ratio = median(d["rps"] / w["rps"] for d, w in zip(runs["deploykit"], runs["wrk"]))
        p50_ratio = median(d["p50_us"] / w["p50_us"] for d, w in zip(runs["deploykit"], runs["wrk"]))
        errors = sum(r["errors"] for t in ("wrk", "deploykit") for r in runs[t])
        # how much wrk disagreed with itself across rounds: other load on the machine shows up here
        spread = max(r["rps"] for r in runs["wrk"]) / min(r["rps"] for r in runs["wrk"]) - 1
        good = abs(rps_ratio - 1) <= TOLERANCE and abs(p50_ratio - 1) <= TOLERANCE and errors == 0
        ok &= good
        summary[c] = {"medians": m, "rps_ratio": rps_ratio, "p50_ratio": p50_ratio, "errors": errors, "wrk_spread": spread}
        print(f"{c:4d} {m['wrk']['rps']:10.0f} {m['deploykit']['rps']:10.0f} {rps_ratio:6.2f} | "
              f"{m['wrk']['p50_us'] / 1e3:8.3f}ms {m['deploykit']['p50_us'] / 1e3:8.3f}ms {p50_ratio:6.2f} | "
              f"{spread:9.0%}  errors {errors}  {'PASS' if good else 'FAIL'}")
    if any(v["wrk_spread"] > 0.25 for v in summary.values()):
        print("  note: wrk's own throughput varied by more than 25 % between rounds: something else is loading this "
              "machine; rerun when it is idle (or with more --rounds)")
    if args.out:
        args.out.write_text(json.dumps({"server": args.server, "client": args.client, "model": manifest.model, "runs": results,
                                        "summary": summary, "server_cores": args.server_cores,
                                        "client_cores": args.client_cores}, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
