"""The Locust side of the load test: the user that sends requests, and the per-process controller.

Imported only inside the load engine's process (deploykit.loadtest.engine): importing Locust
monkeypatches the standard library with gevent, which must not happen to the CLI or to pytest.

Every load-generating process (the single local process, or each distributed worker) holds one
`LoadProcess`. The coordinator drives it through the same five calls, directly in local mode and via
Locust custom messages in distributed mode: configure → (Locust spawns the users) → go → begin → end.

- Closed loop: each user is one connection sending its next request as soon as the last answer
  arrives (no think time).
- Open loop: one dispatcher greenlet per process releases request slots at their scheduled times into
  a queue (waiting on a timer, loadtest.timer, never spinning); free users take them. When every user is
  busy (a stalled server), slots wait in the queue and are sent late; each is timed from its scheduled
  time, so the stall shows in the latency. The generator's own lateness — from the moment a slot was
  due and a connection was free until it was sent — is recorded apart (send lag): that part is the
  load tester's fault, not the server's, and a step where it is large is marked invalid.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Optional

import gevent
from gevent.queue import Empty, Queue
from httptools import HttpParserError
from locust import FastHttpUser, constant, task

from deploykit.loadtest.client import RawConnection, encode_request
from deploykit.loadtest.record import ArrivalSchedule, StepRecorder
from deploykit.loadtest.timer import PreciseSleeper

__all__ = ["LoadUser", "LoadProcess", "RequestConfig", "PROCESS", "MESSAGES"]

# Custom Locust message types (master ↔ workers).
MESSAGES = {"step": "dk_step", "go": "dk_go", "begin": "dk_begin", "end": "dk_end", "result": "dk_result"}
_IDLE_S = 0.05  # how often an idle user looks for work (between steps)
_now = time.perf_counter_ns


@dataclass
class RequestConfig:
    path: str
    headers: dict
    bodies: list
    server_time_header: Optional[str]
    client: str  # "raw" (loadtest.client.RawConnection) or "fasthttp" (Locust's FastHttpSession)
    host: str
    port: int
    timeout_s: float
    encoded: list  # raw client: each body as one complete request, encoded once


class _Step:
    def __init__(self, step_id: int, spec: dict, hard_stop_s: float):
        self.id = step_id
        self.mode = spec["mode"]
        self.spec = spec
        self.recorder = StepRecorder(self.mode)
        self.queue: Queue = Queue()
        self.schedule: Optional[ArrivalSchedule] = None
        self.dispatcher: Optional[gevent.Greenlet] = None
        self.active = True
        self.hard_stop_ns = _now() + int(hard_stop_s * 1e9)  # bound on a step whose end never arrives


class LoadProcess:
    """One load-generating process's state (one instance per process: `PROCESS`)."""

    def __init__(self):
        self.request: Optional[RequestConfig] = None
        self.step: Optional[_Step] = None
        self.index = 0
        self.processes = 1
        self.seed = 0
        self._users_started = 0
        self._cpu_at_begin = 0.0

    def next_user_offset(self) -> int:
        self._users_started += 1
        return self._users_started * 7919  # users start at different bodies

    def configure(self, data: dict) -> None:
        """A new step: request settings, step spec, this process's index; the old step stops."""
        self.stop_step()
        req = data["request"]
        if self.request is None or self.request.bodies != req["bodies"] or self.request.path != req["path"]:
            host_header = f"[{req['host']}]:{req['port']}" if ":" in req["host"] else f"{req['host']}:{req['port']}"
            encoded = ([encode_request("POST", req["path"], host_header, req["headers"], b) for b in req["bodies"]]
                       if req["client"] == "raw" else [])
            self.request = RequestConfig(req["path"], dict(req["headers"]), list(req["bodies"]), req["server_time_header"],
                                         req["client"], req["host"], int(req["port"]), float(req["timeout_s"]), encoded)
        LoadUser.network_timeout = LoadUser.connection_timeout = float(req["timeout_s"])
        self.index, self.processes, self.seed = int(data["index"]), int(data["processes"]), int(data["seed"])
        self.step = _Step(int(data["step_id"]), data["step"], hard_stop_s=float(data["hard_stop_s"]))

    def go(self, rate_rps: float) -> None:
        """Open loop: start releasing this process's share of the rate (0: this process has no users)."""
        step = self.step
        if step is None or step.mode != "open" or rate_rps <= 0:
            return
        step.schedule = ArrivalSchedule(_now(), rate_rps, step.spec.get("arrival") or "constant",
                                        seed=self.seed * 1_000_003 + self.index * 1009 + step.id,
                                        phase=self.index / max(self.processes, 1))
        step.dispatcher = gevent.spawn(_dispatch, step)

    def begin(self) -> None:
        if self.step is not None:
            self._cpu_at_begin = _cpu_seconds()
            self.step.recorder.begin(_now())

    def end(self, drain_s: float) -> dict:
        """Close the window; in open loop wait (at most drain_s) for slots scheduled inside it. → snapshot."""
        step = self.step
        if step is None:
            return StepRecorder("closed").snapshot()
        end_ns, cpu_at_end = _now(), _cpu_seconds()
        step.recorder.end(end_ns)
        if step.recorder.begin_ns is not None:
            window_s = (end_ns - step.recorder.begin_ns) / 1e9
            step.recorder.cpu_busy = round((cpu_at_end - self._cpu_at_begin) / window_s, 3) if window_s > 0 else None
        if step.mode == "open" and step.schedule is not None:
            step.schedule.close(end_ns)
            deadline = end_ns + int(drain_s * 1e9)
            while _now() < deadline and (step.schedule.peek() is not None or step.recorder.in_flight_in_window > 0):
                gevent.sleep(0.01)
            step.recorder.give_up(unsent=step.schedule.remaining())
        step.active = False
        step.recorder.final = True
        snapshot = step.recorder.snapshot()
        if step.dispatcher is not None:
            step.dispatcher.kill(block=False)
        return snapshot

    def stop_step(self) -> None:
        if self.step is not None:
            self.step.active = False
            if self.step.dispatcher is not None:
                self.step.dispatcher.kill(block=False)


PROCESS = LoadProcess()


def _cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def _dispatch(step: _Step) -> None:
    """Release each slot into the queue at its scheduled time (late slots at once: catching up).
    The wait is a timer (loadtest.timer), not a spin: the generator must not measure its own busy-waiting."""
    schedule = step.schedule
    sleeper = PreciseSleeper()
    step.recorder.timer = sleeper.kind
    try:
        while step.active and _now() < step.hard_stop_ns:
            t = schedule.peek()
            if t is None:
                return
            sleeper.sleep_until(t)
            t = schedule.next_slot()  # None if the window closed while we slept
            if t is None:
                return
            step.recorder.slot_taken(t)
            step.queue.put(t)
    finally:
        sleeper.close()


class LoadUser(FastHttpUser):
    """One connection. Request bodies are encoded beforehand; only sending and timing happen here."""

    wait_time = constant(0)
    concurrency = 1  # one request at a time: a user is one connection
    max_retries = 0

    def on_start(self) -> None:
        self._n = PROCESS.next_user_offset()
        self._conn: Optional[RawConnection] = None

    def on_stop(self) -> None:
        if self._conn is not None:
            self._conn.close()

    @task
    def send(self) -> None:
        """Send requests for as long as the current step lasts.

        One Locust task per step rather than per request: Locust's loop yields to the hub and
        consults the wait time after every task, which costs tens of µs per request here; this
        loop yields only when the socket waits, and every 64 requests so that timers and messages
        run even against an endpoint that answers before we ask for the answer."""
        step, req = PROCESS.step, PROCESS.request
        if step is None or not step.active or req is None:
            gevent.sleep(_IDLE_S)
            return
        while PROCESS.step is step and step.active and _now() < step.hard_stop_ns:
            intended = ready = None
            if step.mode == "open":
                free_since = _now()
                try:
                    intended = step.queue.get(timeout=_IDLE_S)
                except Empty:
                    continue
                # from when the slot was due and this connection free: any later send is the generator's lag
                ready = max(intended, free_since)
            self._n += 1
            if req.client == "raw":
                status, error, raw_header, sent, done = self._send_raw(req)
            else:
                status, error, raw_header, sent, done = self._send_fasthttp(req)
            server_us = None
            if raw_header is not None:
                try:
                    server_us = float(raw_header)
                except ValueError:
                    server_us = None
            step.recorder.record(intended, sent, done, status, error, server_us, ready_ns=ready)
            if not self._n & 63:
                gevent.sleep(0)

    def _send_raw(self, req: RequestConfig):
        if self._conn is None:
            self._conn = RawConnection(req.host, req.port, req.timeout_s, req.server_time_header)
        data = req.encoded[self._n % len(req.encoded)]
        sent = _now()
        try:
            status, header = self._conn.request(data)
        except (OSError, HttpParserError) as exc:
            return 0, "timeout" if isinstance(exc, TimeoutError) else type(exc).__name__, None, sent, _now()
        return status, None, header, sent, _now()

    def _send_fasthttp(self, req: RequestConfig):
        body = req.bodies[self._n % len(req.bodies)]
        sent = _now()
        resp = self.client.request("POST", req.path, data=body, headers=req.headers, name=req.path)
        done = _now()
        status = resp.status_code or 0
        error = header = None
        if not status:
            failure = getattr(resp, "error", None)
            error = type(failure).__name__ if failure is not None else "no answer"
        elif req.server_time_header and resp.headers is not None:
            header = resp.headers.get(req.server_time_header)
        return status, error, header, sent, done


def register_worker_messages(runner) -> None:
    """Distributed worker: drive PROCESS from the master's messages; answer `end` with the snapshot."""

    def on_step(environment, msg, **_):
        PROCESS.configure(msg.data)

    def on_go(environment, msg, **_):
        PROCESS.go(float(msg.data["rate_rps"]))

    def on_begin(environment, msg, **_):
        PROCESS.begin()

    def on_end(environment, msg, **_):
        snapshot = PROCESS.end(float(msg.data["drain_s"]))
        snapshot.update(step_id=msg.data["step_id"], users=runner.user_count)
        runner.send_message(MESSAGES["result"], snapshot)

    runner.register_message(MESSAGES["step"], on_step)
    runner.register_message(MESSAGES["go"], on_go)
    runner.register_message(MESSAGES["begin"], on_begin)
    # concurrent: the open-loop drain waits, and the worker must keep handling messages meanwhile
    runner.register_message(MESSAGES["end"], on_end, concurrent=True)
