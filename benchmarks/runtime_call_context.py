"""The same ONNX Runtime call, timed alone, after different work in between (prints figures; asserts nothing).

Why: a server's `X-Inference-Time-Us` times the runtime call alone, exactly as `deploykit bench` does,
yet on the MLP it reads 1.5–3× bench's figure. This tests one explanation: that what the core did
just before the call slows the call itself. Each case makes the same call 2,000 times on one batch of
`--batch` test digits — `Predictor.run` on a prepared tensor of the model's onnx artifact, 1 thread:
exactly what `deploykit bench` and the server's header time — and reports the call's p50:

- back to back (what `deploykit bench` measures);
- after decoding that batch's JSON bodies with msgspec into float32 (what the event loop does for
  the requests of one batch);
- after a pure-Python loop of similar length (interpreter work, little memory);
- after touching 4 MB of memory (data-cache eviction alone);
- after 25 round trips over a loopback TCP connection (a batch's worth of socket system calls);
- after `--sleep-ms` asleep (the core idle or given to another process; default 0.5 ms).

    taskset -c 1 .venv/bin/python benchmarks/runtime_call_context.py models/mnist/torch-mlp [--batch 25]
    ... --cases asleep --sleep-ms 1 --batch 1 --calls 500    (one case; benchmarks/serve_bench.py runs this)

The last line, `CALL_P50 {...}`, has the p50s (µs) by case as JSON.

Measured 2026-12-02, core 1 of the 2-core machine (load average 0.2–0.6), batch 25, p50 of the call
in the order above: torch-mlp 58.5 / 59.0 / 57.7 / 59.9 / 59.9 / 79.1 µs; torch-cnn 660 / 667 / 661 /
666 / 658 / 711 µs. With a busy loop on core 0 meanwhile (torch-mlp; an earlier version of this
script, timing the ONNX Runtime session directly, without the TCP case): 60.4 / 75.0 / 60.4 / 63.0 /
72.8 µs. None of these reaches the 1.5–3× that the server's header shows under load
(docs/serving.md, "How it is fast").
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from pathlib import Path

import msgspec
import numpy as np

from deploykit.manifest import ModelManifest
from deploykit.runtimes import load_predictor
from deploykit.runtimes.base import to_input

CASES = ("back-to-back", "json", "python", "memory", "tcp", "asleep")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, of {', '.join(CASES)}")
    ap.add_argument("--sleep-ms", type=float, default=0.5)
    args = ap.parse_args()
    wanted = args.cases.split(",")
    if not set(wanted) <= set(CASES):
        raise SystemExit(f"--cases: unknown {sorted(set(wanted) - set(CASES))}; known: {', '.join(CASES)}")
    manifest = ModelManifest.read(args.model_dir)
    ref = np.load(args.model_dir / manifest.reference)["x"][: args.batch].astype(np.float32) / 255.0
    bodies = [json.dumps({"inputs": [img.ravel().tolist()]}).encode() for img in ref]
    with load_predictor(args.model_dir, "onnx", threads=1) as predictor:
        spec = predictor.input_spec
        tensor = to_input(ref, spec)
        decoder = msgspec.json.Decoder()

        def decode_batch():
            return to_input(np.concatenate([np.asarray(decoder.decode(b)["inputs"], np.float32) for b in bodies])
                            .reshape(ref.shape), spec)

        junk = np.zeros(4 << 20, np.uint8)

        def touch():
            junk[::64] += 1
            return tensor

        if "tcp" in wanted:
            listener = socket.create_server(("127.0.0.1", 0))
            client = socket.create_connection(listener.getsockname())
            server = listener.accept()[0]

        def round_trips():
            for _ in range(args.batch):
                client.sendall(bodies[0])
                server.recv(1 << 16)
            return tensor

        cases = {
            "back-to-back": ("back to back (deploykit bench)", lambda: tensor),
            "json": (f"after decoding {args.batch} JSON bodies", decode_batch),
            "python": ("after a Python loop", lambda: (sum(range(20000)), tensor)[1]),
            "memory": ("after touching 4 MB", touch),
            "tcp": (f"after {args.batch} TCP round trips", round_trips),
            "asleep": (f"after {args.sleep_ms:g} ms asleep", lambda: (time.sleep(args.sleep_ms / 1e3), tensor)[1]),
        }
        p50s = {}
        for key in wanted:
            label, before = cases[key]
            times = []
            for i in range(args.calls + 200):
                x = before()
                t0 = time.perf_counter_ns()
                predictor.run(x)
                if i >= 200:  # warm-up calls left out
                    times.append(time.perf_counter_ns() - t0)
            p50s[key] = float(np.median(times) / 1e3)
            print(f"{label:34s} runtime call p50 {p50s[key]:7.1f} µs  (batch {args.batch}, {args.calls} calls)", flush=True)
    print("CALL_P50 " + json.dumps(p50s))


if __name__ == "__main__":
    main()
