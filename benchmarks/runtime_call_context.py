"""The same ONNX Runtime call, timed alone, after different work in between (prints figures; asserts nothing).

Why: a server's `X-Inference-Time-Us` times the runtime call alone, exactly as `deploykit bench` does,
yet on the MLP it reads 2–3× bench's figure. This shows where that comes from: not the call, but
what the core did just before it. Each case makes the same call 2,000 times on one batch of
`--batch` test digits (session built by `deploykit.edge.runner.onnx_session`, as the server's and
bench's predictors build it, 1 thread) and reports the call's p50:

- back to back (what `deploykit bench` measures);
- after decoding that batch's JSON bodies with msgspec into float32 (what the event loop does for
  the requests of one batch);
- after a pure-Python loop of similar length (interpreter work, little memory);
- after touching 4 MB of memory (data-cache eviction alone);
- after 25 round trips over a loopback TCP connection (a batch's worth of socket system calls);
- after 0.5 ms asleep (the core idle or given to another process).

    taskset -c 1 .venv/bin/python benchmarks/runtime_call_context.py models/mnist/torch-mlp [--batch 25]

Measured 2026-12-02, core 1 of the 2-core machine (load average 0.5–1.0), batch 25, p50 of the call
in the order above: torch-mlp 60.4 / 60.5 / 60.2 / 61.1 / 61.3 / 78.9 µs; torch-cnn 670 / 689 / 684 /
674 / 670 / 742 µs. An earlier run with a busy loop on core 0 meanwhile (torch-mlp, no TCP case):
60.4 / 75.0 / 60.4 / 63.0 / 72.8 µs. None of these reaches the 1.5–3× that the server's header shows
under load (docs/serving.md, "How it is fast").
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from pathlib import Path

import msgspec
import numpy as np

from deploykit.edge.runner import import_runtime, onnx_session
from deploykit.manifest import ModelManifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", type=Path)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--calls", type=int, default=2000)
    args = ap.parse_args()
    manifest = ModelManifest.read(args.model_dir)
    path = manifest.verify(args.model_dir, manifest.artifact("onnx"))
    session = onnx_session(import_runtime("onnxruntime", "onnxruntime"), str(path), threads=1)
    name = session.get_inputs()[0].name
    shape = [d if isinstance(d, int) else 1 for d in session.get_inputs()[0].shape][1:]
    ref = np.load(args.model_dir / manifest.reference)["x"][: args.batch].astype(np.float32) / 255.0
    x = ref.reshape(args.batch, *shape)
    bodies = [json.dumps({"inputs": [img.ravel().tolist()]}).encode() for img in ref]
    decoder = msgspec.json.Decoder()
    junk = np.zeros(4 << 20, np.uint8)

    def decode_batch():
        return np.concatenate([np.asarray(decoder.decode(b)["inputs"], np.float32) for b in bodies]).reshape(x.shape)

    listener = socket.create_server(("127.0.0.1", 0))
    client = socket.create_connection(listener.getsockname())
    server, _ = listener.accept()
    message = b"x" * len(bodies[0])

    def round_trips():
        for _ in range(args.batch):
            client.sendall(message)
            server.recv(1 << 16)
        return x

    def touch():
        junk[::64] += 1
        return x

    cases = {
        "back to back (deploykit bench)": lambda: x,
        f"after decoding {args.batch} JSON bodies": decode_batch,
        "after a Python loop": lambda: (sum(range(20000)), x)[1],
        "after touching 4 MB": touch,
        f"after {args.batch} TCP round trips": round_trips,
        "after 0.5 ms asleep": lambda: (time.sleep(0.0005), x)[1],
    }
    for label, before in cases.items():
        times = []
        for i in range(args.calls + 200):
            xx = before()
            t0 = time.perf_counter_ns()
            session.run(None, {name: xx})
            if i >= 200:  # warm-up calls left out
                times.append(time.perf_counter_ns() - t0)
        print(f"{label:34s} runtime call p50 {np.median(times) / 1e3:7.1f} µs  (batch {args.batch}, {args.calls} calls)")


if __name__ == "__main__":
    main()
