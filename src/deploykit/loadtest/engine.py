"""The load engine: Locust (FastHttpUser) in a process of its own.

    python -m deploykit.loadtest.engine run SPEC.json PAYLOAD.msgpack RAW_OUT.json
    python -m deploykit.loadtest.engine worker --master HOST:PORT [--cpu-affinity LIST]

Why a separate process: importing Locust monkeypatches the standard library with gevent (sockets,
threads, time). Doing that inside the `deploykit` CLI or inside pytest would change how everything
else in those processes behaves (thread pools, servers started by tests, subprocess handling). The
CLI therefore writes the spec, starts this module, relays its progress lines (stdout) and reads the
raw results it writes. It is also what distributed workers run (`deploykit loadtest-worker`).

Local mode: one process, Locust's LocalRunner. Distributed mode: this process is Locust's master
(MasterRunner; it sends no requests), optionally starts N local workers, waits for the expected
number of workers, and drives each step with custom messages; each worker answers the end of a step
with its encoded HDR histograms, which the master adds up (load_hdr.merge): no sample is re-binned.
"""

# Locust first, before anything imports socket/ssl/threading: it monkeypatches them with gevent.
from locust.env import Environment  # noqa: I001  (import order is deliberate)

import argparse
import json
import logging
import os
import subprocess
import sys
import time
from typing import Optional
from urllib.parse import urlsplit

import gevent
import locust
import msgpack

from deploykit.loadtest import hdr as load_hdr
from deploykit.loadtest.spec import LoadSpec, StepSpec, parse_cpu_list, parse_host_port
from deploykit.loadtest.users import MESSAGES, PROCESS, LoadUser, register_worker_messages
from deploykit.errors import DeployKitError, UsageError

__all__ = ["main", "run", "run_worker", "EngineError"]

_SPAWN_RATE = 10_000  # users per second: steps start at full concurrency, not as a ramp
_SPAWN_TIMEOUT_S = 60.0


class EngineError(DeployKitError):
    """The load engine could not run the test (workers missing, spawning stuck...)."""


def _say(line: str) -> None:
    print(line, flush=True)


def pin_cpus(cpus: Optional[list[int]]) -> Optional[list[int]]:
    """Restrict this process (and the worker processes it starts, which inherit it) to `cpus`."""
    if cpus:
        os.sched_setaffinity(0, cpus)
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None


def _wait(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise EngineError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        gevent.sleep(0.02)


class _LocalCoordinator:
    """One process: the coordinator calls this process's LoadProcess directly."""

    def __init__(self, env: Environment):
        self.runner = env.create_local_runner()

    def configure(self, data: dict) -> list[str]:
        PROCESS.configure({**data, "index": 0, "processes": 1})
        return ["local"]

    def spawn(self, users: int) -> None:
        self.runner.start(users, spawn_rate=_SPAWN_RATE)
        _wait(lambda: self.runner.user_count == users, _SPAWN_TIMEOUT_S, f"{users} users to start")

    def go(self, rate_rps: float) -> None:
        PROCESS.go(rate_rps)

    def begin(self) -> None:
        PROCESS.begin()

    def end(self, step_id: int, drain_s: float) -> dict[str, dict]:
        return {"local": {**PROCESS.end(drain_s), "users": self.runner.user_count}}

    def cpu_warning(self) -> bool:
        return bool(self.runner.cpu_warning_emitted)

    def quit(self) -> None:
        self.runner.quit()


class _MasterCoordinator:
    """Locust master: drives workers with custom messages and collects their snapshots."""

    def __init__(self, env: Environment, spec: LoadSpec):
        # local workers only: loopback and a free port (0 asks ZeroMQ for one)
        host, port = parse_host_port(spec.master_bind, "--master-bind") if spec.master_bind else ("127.0.0.1", 0)
        self.runner = env.create_master_runner(master_bind_host=host, master_bind_port=port)
        self.port = self.runner.server.port
        self.results: dict[int, dict[str, dict]] = {}
        self.members: list[str] = []
        self.workers: list[subprocess.Popen] = []
        self.runner.register_message(MESSAGES["result"], self._on_result)
        _say(f"master listening on {host}:{self.port}; waiting for {spec.expect_workers} worker(s)")
        connect_host = "127.0.0.1" if host in ("*", "0.0.0.0", "") else ("::1" if host == "::" else host)
        for _ in range(spec.workers):
            cmd = [sys.executable, "-m", "deploykit.loadtest.engine", "worker", "--master", f"[{connect_host}]:{self.port}"
                   if ":" in connect_host else f"{connect_host}:{self.port}"]
            self.workers.append(subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=sys.stderr))
        try:
            self._wait_for_workers(spec.expect_workers, spec.worker_wait_s)
        except BaseException:
            self.quit()  # never leave local workers behind, waiting for a master that gave up
            raise

    def _wait_for_workers(self, expected: int, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while len(self.runner.clients.ready) < expected:
            dead = [w for w in self.workers if w.poll() is not None]
            if dead:
                raise EngineError(f"a local worker exited with code {dead[0].returncode} before joining the master")
            if time.monotonic() > deadline:
                raise EngineError(f"only {len(self.runner.clients.ready)} of {expected} workers joined "
                                  f"the master at port {self.port} within {wait_s:g} s")
            gevent.sleep(0.05)

    def _on_result(self, environment, msg, **_) -> None:
        self.results.setdefault(int(msg.data["step_id"]), {})[msg.node_id] = msg.data

    def configure(self, data: dict) -> list[str]:
        clients = sorted(self.runner.clients.all, key=lambda c: self.runner.get_worker_index(c.id))
        self.members = [c.id for c in clients]
        for i, client_id in enumerate(self.members):
            self.runner.send_message(MESSAGES["step"], {**data, "index": i, "processes": len(self.members)}, client_id=client_id)
        return list(self.members)

    def spawn(self, users: int) -> None:
        self.runner.start(users, spawn_rate=_SPAWN_RATE)
        _wait(lambda: self.runner.spawning_completed and self.runner.user_count == users, _SPAWN_TIMEOUT_S,
              f"{users} users to start on the workers")

    def go(self, rate_rps: float) -> None:
        total = max(self.runner.user_count, 1)
        for client_id in self.members:
            share = self.runner.clients[client_id].user_count / total  # each worker's share of the rate
            self.runner.send_message(MESSAGES["go"], {"rate_rps": rate_rps * share}, client_id=client_id)

    def begin(self) -> None:
        for client_id in self.members:
            self.runner.send_message(MESSAGES["begin"], {}, client_id=client_id)

    def end(self, step_id: int, drain_s: float) -> dict[str, dict]:
        for client_id in self.members:
            self.runner.send_message(MESSAGES["end"], {"step_id": step_id, "drain_s": drain_s}, client_id=client_id)
        deadline = time.monotonic() + drain_s + 30.0
        while len(self.results.get(step_id, {})) < len(self.members) and time.monotonic() < deadline:
            gevent.sleep(0.02)
        return dict(self.results.get(step_id, {}))

    def cpu_warning(self) -> bool:
        return bool(self.runner.worker_cpu_warning_emitted)

    def quit(self) -> None:
        grace = 15.0 if len(self.runner.clients) else 0.5  # workers that joined get "quit" and leave by themselves
        self.runner.quit()
        for w in self.workers:
            try:
                w.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                w.kill()  # a worker this process started
                w.wait()


def _merge_step(step: StepSpec, per_process: dict[str, dict], members: list[str], window_s: float) -> dict:
    """Add the processes' histograms and counters; throughput is the sum of each process's rate."""
    errors: dict[str, int] = {}
    for snap in per_process.values():
        for key, n in snap["errors_by_status"].items():
            errors[key] = errors.get(key, 0) + n

    def merged(key: str) -> Optional[str]:
        parts = [s[key] for s in per_process.values() if s.get(key)]
        return load_hdr.encode(load_hdr.merge(parts)) if parts else None

    return {
        "step": step.model_dump(),
        "window_s": window_s,
        "requests": sum(s["requests"] for s in per_process.values()),
        "errors_by_status": errors,
        "throughput_rps": sum(s["completed_in_window"] / s["window_s"] for s in per_process.values() if s["window_s"] > 0),
        "server_time_missing": sum(s["server_time_missing"] for s in per_process.values()),
        "latency": merged("latency"),
        "uncorrected": merged("uncorrected"),
        "server": merged("server"),
        "answered": merged("answered"),
        "send_lag": merged("send_lag"),
        "own_lag": merged("own_lag"),
        "timers": sorted({s["timer"] for s in per_process.values() if s.get("timer")}),
        "processes": [{"id": pid, "requests": s["requests"], "latency_samples": load_hdr.decode(s["latency"]).get_total_count(),
                       "users": s.get("users"), "cpu_busy": s.get("cpu_busy")} for pid, s in per_process.items()],
        "missing_processes": [m for m in members if m not in per_process],
    }


def run(spec: LoadSpec, payload: dict) -> dict:
    """Every step of `spec`, in order → the raw results (merged histograms, per-process counts)."""
    affinity = pin_cpus(spec.cpu_affinity)
    parts = urlsplit(spec.url)
    env = Environment(user_classes=[LoadUser], host=f"{parts.scheme}://{parts.netloc}")
    coordinator = _MasterCoordinator(env, spec) if spec.distributed else _LocalCoordinator(env)
    request = {"path": (parts.path or "/") + (f"?{parts.query}" if parts.query else ""),
               "headers": {"Content-Type": payload["content_type"], "Accept-Encoding": "identity", **spec.headers},
               "bodies": payload["bodies"], "server_time_header": spec.server_time_header, "timeout_s": spec.timeout_s,
               "client": spec.client, "host": parts.hostname, "port": parts.port or (443 if parts.scheme == "https" else 80)}
    hard_stop_s = spec.warmup_s + spec.duration_s + spec.drain_s + _SPAWN_TIMEOUT_S + 60.0
    steps = []
    try:
        for i, step in enumerate(spec.steps):
            _say(f"step {i + 1}/{len(spec.steps)}: {step.label()}: warm-up {spec.warmup_s:g} s, measuring {spec.duration_s:g} s")
            members = coordinator.configure({"step_id": i, "step": step.model_dump(), "request": request,
                                             "seed": spec.seed, "hard_stop_s": hard_stop_s})
            coordinator.spawn(step.users)
            if step.mode == "open":
                coordinator.go(step.rate_rps)
            gevent.sleep(spec.warmup_s)
            coordinator.begin()
            began = time.perf_counter()
            gevent.sleep(spec.duration_s)
            window_s = time.perf_counter() - began
            per_process = coordinator.end(i, spec.drain_s)
            steps.append(_merge_step(step, per_process, members, window_s))
    finally:
        cpu_warning = coordinator.cpu_warning()
        coordinator.quit()
    return {"locust_version": locust.__version__, "gevent_version": gevent.__version__, "affinity": affinity,
            "distributed": spec.distributed, "cpu_warning": cpu_warning, "steps": steps}


def run_worker(master: str, cpus: Optional[list[int]]) -> int:
    """A distributed worker: join the master at `master`, run what it says until it quits."""
    host, port = parse_host_port(master, "--master")
    pin_cpus(cpus)
    env = Environment(user_classes=[LoadUser])
    try:
        runner = env.create_worker_runner(master_host=host, master_port=port)
    except ConnectionError as exc:
        raise EngineError(f"could not join the master at {host}:{port}") from exc
    register_worker_messages(runner)
    runner.greenlet.join()
    return 0


def main(argv: Optional[list[str]] = None) -> int:
    logging.basicConfig(level=logging.ERROR, format="%(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m deploykit.loadtest.engine")
    sub = parser.add_subparsers(dest="mode", required=True)
    p_run = sub.add_parser("run")
    p_run.add_argument("spec")
    p_run.add_argument("payload")
    p_run.add_argument("out")
    p_worker = sub.add_parser("worker")
    p_worker.add_argument("--master", required=True)
    p_worker.add_argument("--cpu-affinity", default=None)
    args = parser.parse_args(argv)
    try:
        if args.mode == "worker":
            cpus = parse_cpu_list(args.cpu_affinity) if args.cpu_affinity else None
            return run_worker(args.master, cpus)
        with open(args.spec) as f:
            spec = LoadSpec.model_validate_json(f.read())
        with open(args.payload, "rb") as f:
            payload = msgpack.unpack(f)
        raw = run(spec, payload)
        tmp = f"{args.out}.tmp"
        with open(tmp, "w") as f:
            json.dump(raw, f)
        os.replace(tmp, args.out)
        return 0
    except (DeployKitError, UsageError) as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
