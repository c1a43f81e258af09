"""Soak: `deploykit serve --workers N` under steady closed-loop load for a long time; prints each
worker's RSS at the start and end of the measured window, its growth, requests and errors (asserts nothing).

Load is deploykit's own load tester (`deploykit loadtest`, closed loop, c=8 by default). The window
starts after the load tester's warm-up (allocator pools, caches and BentoML's per-request timers filled
by then), so growth is what the steady state adds. RSS is read every `--sample-s` seconds from every live
worker process (psutil); a worker that died and was replaced shows as two processes.

    .venv/bin/python benchmarks/serve_soak.py --model models/mnist/torch-mlp --duration 600

Measured 2026-12-02 (ONNX MLP, 2 workers, c=8, 600 s, shared 2-core machine at load average 11–13):
442,598 requests, 0 errors, 738 req/s; worker RSS 162.7 → 167.5 MB (+2.98 %) and 155.3 → 155.3 MB (+0.00 %).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
from _servers import stop  # benchmarks/ is on sys.path when run as a script
from serve_resilience import ROOT, serve, worker_pids


def rss_mb(pids: list[int]) -> dict[int, float]:
    out = {}
    for pid in pids:
        try:
            out[pid] = psutil.Process(pid).memory_info().rss / 1e6
        except psutil.Error:  # gone meanwhile
            pass
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "models/mnist/torch-mlp"))
    ap.add_argument("--format", default="onnx")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--duration", type=int, default=600, help="measured seconds")
    ap.add_argument("--warmup", type=int, default=30)
    ap.add_argument("--sample-s", type=float, default=30)
    args = ap.parse_args()

    proc, url = serve(args.model, args.format, args.workers)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "soak.json"
            load = subprocess.Popen([sys.executable, "-m", "deploykit", "loadtest", url + "/predict", "--concurrency",
                                     str(args.concurrency), "--duration", f"{args.duration}s", "--warmup", f"{args.warmup}s",
                                     "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=ROOT)
            time.sleep(args.warmup + 1)  # the load tester's measured window has begun
            samples: dict[int, list[float]] = {}
            t0 = time.monotonic()
            while load.poll() is None and time.monotonic() - t0 < args.duration + 300:
                for pid, mb in rss_mb(worker_pids(proc.pid)).items():
                    samples.setdefault(pid, []).append(mb)
                for _ in range(int(args.sample_s * 10)):
                    if load.poll() is not None or time.monotonic() - t0 >= args.duration:
                        break
                    time.sleep(0.1)
                if time.monotonic() - t0 >= args.duration:
                    for pid, mb in rss_mb(worker_pids(proc.pid)).items():  # the window's end
                        samples.setdefault(pid, []).append(mb)
                    break
            _, err = load.communicate(timeout=args.duration + 300)
            if load.returncode != 0:
                print(f"loadtest failed ({load.returncode}): {err.strip().splitlines()[-1:]}")
                return
            step = json.loads(out.read_text())["steps"][0]
        print(f"soak: {args.workers} workers, closed loop c={args.concurrency}, {step['duration_s']:.0f} s measured after "
              f"{args.warmup} s warm-up, deploykit loadtest: {step['requests']:,} requests, {step['errors']} errors "
              f"{step['errors_by_status'] or ''}, {step['throughput_rps']:,.0f} req/s, "
              f"p50 {step['latency']['p50_us'] / 1e3:.2f} ms, p99 {(step['latency']['p99_us'] or float('nan')) / 1e3:.2f} ms")
        for pid, mbs in sorted(samples.items()):
            print(f"  worker pid {pid}: RSS start {mbs[0]:.1f} MB, end {mbs[-1]:.1f} MB, growth "
                  f"{100 * (mbs[-1] - mbs[0]) / mbs[0]:+.2f} %, max {max(mbs):.1f} MB ({len(mbs)} samples)")
    finally:
        stop(proc)


if __name__ == "__main__":
    main()
