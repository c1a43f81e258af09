"""Interleaved A/B: is a candidate slower than its baseline, beyond this machine's noise?

Two runs of `deploykit bench` minutes apart on a shared 2-core machine differed by −31 % to +77 % with
no code change, and no single run can see that drift. Here the baseline and the candidate are each
loaded once, in a worker process of their own (their own Python, so two environments can be compared),
and measured alternately, one short window each, in ABBA order, while the other worker waits on its
pipe (it spins nothing). Each round gives a pair of windows run back to back on the same machine
state; the verdict comes from the pairs' ratios (`protocol.paired_ratio`) through
`deploykit.noise.classify_ratio`.

Worker side: `serve_windows(call)` answers one line per command on stdin: "w" (time one window; reply
its p50 and calls), "s" (latency figures over every window), "q" (quit).
Parent side: `run_interleaved(base_cmd, cand_cmd)`: at least `rounds` pairs, then on until the ratio's
interval is narrow or `max_rounds`.
`python -m deploykit.bench.ab JOB_JSON` is the worker for a deploykit artifact (`deploykit bench-ab`).
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import IO, Callable, Optional

import numpy as np

from deploykit.bench import protocol
from deploykit.errors import DeployKitError

__all__ = ["DEFAULT_ROUNDS", "DEFAULT_MAX_ROUNDS", "TARGET_WIDTH", "DEFAULT_AB_WINDOW_S", "serve_windows", "run_interleaved", "ABWorkerError"]

DEFAULT_ROUNDS = 12  # at least; then on until the interval is narrow (TARGET_WIDTH) or DEFAULT_MAX_ROUNDS
DEFAULT_MAX_ROUNDS = 80
TARGET_WIDTH = 0.08  # high/low − 1 of the ratio's 95 % interval: narrower than the 10 % verdict margin
DEFAULT_AB_WINDOW_S = 0.05  # short: the two windows of a pair should see the same machine state
_START_TIMEOUT_S = 240.0  # import + load + first call (TensorFlow on a slow machine)


class ABWorkerError(DeployKitError):
    """A worker of an interleaved A/B run failed or stopped answering."""


def serve_windows(call: Callable[[], object], *, warmup_s: float = protocol.DEFAULT_WARMUP_S,
                  window_s: float = DEFAULT_AB_WINDOW_S, sync: Optional[Callable[[], None]] = None,
                  ready: Optional[dict] = None, inp: IO[str] = sys.stdin, out: IO[str] = sys.stdout) -> None:
    """Warm `call` up, say ready, then time one window per "w" line until "q" (or end of input)."""
    timed = call if sync is None else (lambda: (call(), sync()))
    clock = time.perf_counter_ns
    start, n = clock(), 0
    while n < 3 or clock() - start < warmup_s * 1e9:
        timed()
        n += 1

    def say(obj: dict) -> None:
        out.write(json.dumps(obj) + "\n")
        out.flush()

    say({"ready": True, "warmup_calls": n, **(ready or {})})
    windows: list[np.ndarray] = []
    for line in inp:
        cmd = line.strip()
        if cmd == "w":
            ns, _ = protocol.time_window(timed, int(window_s * 1e9))
            windows.append(ns)
            say({"p50_us": float(np.median(ns)) / 1e3, "calls": int(ns.size)})
        elif cmd == "s":
            lat = protocol.latency_stats(np.concatenate(windows))
            lat["p50_ci_us"] = list(protocol.p50_interval(windows))
            say({"latency": lat})
        elif cmd == "q":
            return


class _Worker:
    def __init__(self, name: str, cmd: list[str], env: Optional[dict], err_dir: Path, cpu: Optional[int]):
        self.name = name
        self.err_path = err_dir / f"{name}.stderr"
        self._err = open(self.err_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._err,
                                     env=env, text=True, bufsize=1)
        if cpu is not None:
            # set from here, at once: the interpreter is still starting, before any runtime makes threads
            # (they inherit the mask). preexec_fn would do it before exec, but is unsafe in a threaded parent.
            os.sched_setaffinity(self.proc.pid, {cpu})

    def read(self, timeout_s: float) -> dict:
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            self.proc.kill()
            self.proc.wait()
            why = "no answer within {:.0f} s".format(timeout_s) if not ready else f"exited with {self.proc.returncode}"
            raise ABWorkerError(f"{self.name} worker {why}: {self._last_error()}")
        try:
            msg = json.loads(line)
        except json.JSONDecodeError:  # something in the worker printed to stdout, the protocol's channel
            self.proc.kill()
            self.proc.wait()
            raise ABWorkerError(f"{self.name} worker wrote a line that is not its protocol: {line.strip()[:120]!r}")
        if "error" in msg:
            raise ABWorkerError(f"{self.name}: {msg['error']}")
        return msg

    def ask(self, cmd: str, timeout_s: float) -> dict:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        return self.read(timeout_s)

    def _last_error(self) -> str:
        self._err.flush()
        lines = [ln for ln in self.err_path.read_text(errors="replace").splitlines() if ln.strip()]
        return lines[-1].strip()[:400] if lines else "no error output"

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("q\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        self._err.close()


def run_interleaved(base_cmd: list[str], cand_cmd: list[str], *, rounds: int = DEFAULT_ROUNDS,
                    max_rounds: int = DEFAULT_MAX_ROUNDS, target_width: float = TARGET_WIDTH,
                    window_s: float = DEFAULT_AB_WINDOW_S, env: Optional[dict] = None,
                    base_env: Optional[dict] = None, cand_env: Optional[dict] = None,
                    cpu: Optional[int] = -1) -> dict:
    """Start both workers, measure pairs of windows in ABBA order — at least `rounds`, then on until
    the ratio's 95 % interval is no wider than `target_width` (high/low − 1) or `max_rounds` — and
    return {ratio, ratio_ci, rounds, stop_reason, baseline: {...}, candidate: {...}} (each side: ready
    message, window p50s and calls, latency figures over its windows).

    Why adaptive: on a quiet machine 12 rounds decide; under a neighbour's bursts the interval stays
    wide (a 30 % slowdown once measured ×1.20 [1.02, 1.35] after 20 rounds) and more rounds narrow
    it. The stopping test looks at the interval's width only, never at which side of the margin it
    lies, so stopping early cannot bias the verdict.

    `cpu`: both workers are pinned to this one CPU (default -1: the last this process may use; None:
    not pinned). Why the same one: on a shared machine one core can be busier than the other for
    minutes, and two workers on two cores then differ by the cores' load, not by their code (a
    no-change pair once read ×1.06 [1.02, 1.11] unpinned). The recorded `cpu` says which."""
    if rounds < 2 or max_rounds < rounds:
        raise ValueError("run_interleaved needs 2 ≤ rounds ≤ max_rounds")
    window_timeout = max(60.0, 200 * window_s)
    if cpu == -1:
        cpu = max(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None
    with tempfile.TemporaryDirectory(prefix="deploykit-ab-") as tmp:
        sides = [_Worker("baseline", base_cmd, base_env or env, Path(tmp), cpu),
                 _Worker("candidate", cand_cmd, cand_env or env, Path(tmp), cpu)]
        try:
            ready = [w.read(_START_TIMEOUT_S) for w in sides]
            p50s: list[list[float]] = [[], []]
            calls: list[list[int]] = [[], []]
            stop_reason = "max_rounds"
            for i in range(max_rounds):
                # ABBA: a drift that grows through a round favours A in one round and B in the next
                for k in ((0, 1) if i % 2 == 0 else (1, 0)):
                    msg = sides[k].ask("w", window_timeout)
                    p50s[k].append(msg["p50_us"])
                    calls[k].append(msg["calls"])
                if i + 1 >= rounds and (i + 1) % 2 == 0:
                    _, lo, hi = protocol.paired_ratio(p50s[0], p50s[1])
                    if hi / lo - 1.0 <= target_width:
                        stop_reason = "narrow"
                        break
            stats = [w.ask("s", window_timeout)["latency"] for w in sides]
        finally:
            for w in sides:
                w.close()
    ratio, lo, hi = protocol.paired_ratio(p50s[0], p50s[1])
    side = lambda k: {"ready": ready[k], "window_p50s_us": p50s[k], "window_calls": calls[k],  # noqa: E731
                      "latency": stats[k]}
    return {"ratio": ratio, "ratio_ci": [lo, hi], "rounds": len(p50s[0]), "stop_reason": stop_reason, "cpu": cpu,
            "window_s": window_s, "baseline": side(0), "candidate": side(1)}


def _worker_main(argv: list[str]) -> int:
    """`python -m deploykit.bench.ab JOB_JSON`: load one artifact (as `bench` does) and serve windows."""
    from deploykit.bench.measure import prepared_call
    from deploykit.bench.settings import BenchJob

    job = BenchJob(**json.loads(argv[0]))
    try:
        with prepared_call(job) as p:
            serve_windows(p.call, warmup_s=job.warmup_s, window_s=job.window_s, sync=p.sync,
                          ready={"runtime_version": p.runtime_version, "python": sys.executable,
                                 "load_ms": p.load_ms, "input": p.input_source})
    except DeployKitError as exc:
        print(json.dumps({"error": str(exc)}), flush=True)
        return 1
    return 0


def worker_command(job, python: Optional[str] = None) -> list[str]:
    """The command line of a deploykit A/B worker for `job` (a BenchJob), in `python` (default: this one)."""
    return [python or sys.executable, "-m", "deploykit.bench.ab", json.dumps(asdict(job))]


def worker_env() -> dict:
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))


if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
