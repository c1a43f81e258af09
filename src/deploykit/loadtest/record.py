"""What one load-generating process records during a step, and the open-loop arrival schedule.

Pure Python (no gevent, no Locust), so its rules are unit-tested on their own:

- Closed loop: a request counts when it *completes* inside the measurement window; its latency is
  from the moment it was sent.
- Open loop: a request counts when it was *scheduled* inside the window; its latency is from its
  scheduled send time (coordinated-omission correction). While the server stalls, the schedule keeps
  running: requests that should have been sent during the stall are sent late, and their latency
  includes the wait, as a real user arriving then would have seen. The same requests are also timed
  from their actual send (the "uncorrected" histogram), which is what a closed-loop tool reports.
  After the window closes, requests scheduled inside it may still finish (drain); those that do not
  finish in time are counted as errors ("unfinished"), never dropped.
- Open loop, keeping the schedule: every send in the window records its send lag (sent − scheduled)
  and its own lag (sent − max(scheduled, connection free): the generator's timer and CPU). The own
  lag is left out of the corrected latency (it is not the server's); the wait for a free connection
  stays in (queueing behind slow answers). A send lag that bunches the arrivals — every connection
  busy, or a generator short of CPU — means the server was not offered the schedule the step names:
  the step is invalid (loadtest.open_step_invalid_reason).
- Only successful answers (HTTP status < 400) enter the latency histograms; errors are counted by
  status code, or by the exception's name when no answer came. Every answer with a status, errors
  included, is also timed (timed the same way) in the answer-time histogram: a server that sheds load
  must shed it in time (a 503 after the client gave up is no answer).
"""

from __future__ import annotations

import copy
import random
from collections import Counter
from typing import Optional

from deploykit.loadtest import hdr as load_hdr

__all__ = ["ArrivalSchedule", "StepRecorder", "UNFINISHED"]

UNFINISHED = "unfinished"


class ArrivalSchedule:
    """Send times for one process's share of an open-loop rate, in perf_counter_ns units.

    Constant arrivals are computed from the start (k × interval), so rounding never drifts; Poisson
    arrivals draw exponential gaps from a seeded generator. Once closed at `end_ns`, no slot at or
    after it is handed out, but earlier slots still are (the backlog of a stall).
    """

    def __init__(self, start_ns: int, rate_rps: float, arrival: str = "constant", seed: int = 0, phase: float = 0.0):
        if rate_rps <= 0:
            raise ValueError("rate must be positive")
        self.start_ns = start_ns
        self.rate_rps = rate_rps
        self.arrival = arrival
        self.interval_ns = 1e9 / rate_rps
        self._rng = random.Random(seed)
        self._k = 0
        # phase ∈ [0, 1): processes sharing one rate offset their constant slots so they interleave
        self._next = start_ns + int(phase * self.interval_ns) if arrival == "constant" else start_ns
        self._phase_ns = self._next - start_ns
        self.end_ns: Optional[int] = None
        self.issued = 0

    def close(self, end_ns: int) -> None:
        self.end_ns = end_ns

    def peek(self) -> Optional[int]:
        if self.end_ns is not None and self._next >= self.end_ns:
            return None
        return self._next

    def next_slot(self) -> Optional[int]:
        t = self.peek()
        if t is None:
            return None
        self._k += 1
        self.issued += 1
        if self.arrival == "poisson":
            self._next += int(self._rng.expovariate(self.rate_rps) * 1e9)
        else:
            self._next = self.start_ns + self._phase_ns + int(self._k * self.interval_ns)
        return t

    def remaining(self) -> int:
        """Slots not yet handed out before end_ns (the closed schedule's unsent backlog)."""
        if self.end_ns is None:
            raise ValueError("remaining() needs a closed schedule")
        probe, n = copy.deepcopy(self), 0  # a copy: counting must not consume this schedule's slots
        while probe.next_slot() is not None:
            n += 1
        return n


class StepRecorder:
    """One process's measurements of one step."""

    def __init__(self, mode: str):
        if mode not in ("closed", "open"):
            raise ValueError(f"mode {mode!r}")
        self.mode = mode
        self.begin_ns: Optional[int] = None
        self.end_ns: Optional[int] = None
        self.latency = load_hdr.new_histogram()
        self.uncorrected = load_hdr.new_histogram()
        self.server = load_hdr.new_histogram()
        self.answered = load_hdr.new_histogram()  # every answer with an HTTP status, errors included
        self.send_lag = load_hdr.new_histogram()  # open loop: sent − scheduled, for sends in the window
        self.own_lag = load_hdr.new_histogram()  # open loop: sent − max(scheduled, connection free): the generator's part
        self.timer: Optional[str] = None  # open loop: how the dispatcher waited ("timerfd", "gevent.sleep")
        self.errors: Counter = Counter()
        self.requests = 0
        self.completed_in_window = 0
        self.server_time_missing = 0
        self.in_flight_in_window = 0  # open loop: taken slots inside the window, not yet answered
        self.final = False  # after give_up: late answers change nothing
        self.cpu_busy: Optional[float] = None  # this process's CPU seconds per second of window

    def begin(self, now_ns: int) -> None:
        self.begin_ns = now_ns

    def end(self, now_ns: int) -> None:
        self.end_ns = now_ns

    def _in_window(self, t_ns: int) -> bool:
        return self.begin_ns is not None and t_ns >= self.begin_ns and (self.end_ns is None or t_ns < self.end_ns)

    def slot_taken(self, intended_ns: int) -> None:
        if self._in_window(intended_ns):
            self.in_flight_in_window += 1

    def record(self, intended_ns: Optional[int], sent_ns: int, done_ns: int, status: int,
               error: Optional[str] = None, server_us: Optional[float] = None,
               ready_ns: Optional[int] = None) -> None:
        """One finished request. `intended_ns` is its scheduled send time (open loop) or None (closed);
        `ready_ns` (open loop) when it could have been sent: scheduled and a connection free.
        Recorded for every send inside the window: send lag = sent − scheduled (how late the schedule
        was kept, for whatever reason) and own lag = sent − ready (the generator's own part: its timer
        and CPU). The own lag is taken out of the corrected latency, which is then the wait for a free
        connection + send → answer: (ready − scheduled) + (answer − sent)."""
        if self.final:
            return
        if self._in_window(done_ns):
            self.completed_in_window += 1
        if self.mode == "open":
            if intended_ns is None:
                raise ValueError("open-loop samples need their scheduled send time")
            counted = self._in_window(intended_ns)
            if counted:
                self.in_flight_in_window -= 1
        else:
            counted = self._in_window(done_ns)
        if ready_ns is not None and self._in_window(sent_ns):
            # every send in the window, whenever it was scheduled: a backlog sent late is lateness too
            self.send_lag.record_value(_us(max(sent_ns - intended_ns, 0)))
            self.own_lag.record_value(_us(max(sent_ns - ready_ns, 0)))
        if not counted:
            return
        self.requests += 1
        start = intended_ns if self.mode == "open" else sent_ns
        if ready_ns is not None:
            # the generator's own lag is not the server's: what remains is the wait for a free
            # connection (queueing behind slow answers, the coordinated-omission part) + send → answer
            start += sent_ns - ready_ns
        if error is None and status > 0:
            self.answered.record_value(_us(done_ns - start))
        if error is not None or not 0 < status < 400:
            self.errors[str(status) if status else (error or "no answer")] += 1
            return
        self.latency.record_value(_us(done_ns - start))
        if self.mode == "open":
            self.uncorrected.record_value(_us(done_ns - sent_ns))
        if server_us is None:
            self.server_time_missing += 1
        else:
            self.server.record_value(max(load_hdr.LOWEST_US, min(int(round(server_us)), load_hdr.HIGHEST_US)))

    def give_up(self, unsent: int) -> None:
        """Drain over: slots inside the window never sent or never answered count as errors."""
        lost = unsent + max(self.in_flight_in_window, 0)
        if lost:
            self.requests += lost
            self.errors[UNFINISHED] += lost
        self.in_flight_in_window = 0
        self.final = True

    def snapshot(self) -> dict:
        """What this process sends to the master for the step (plain types: msgpack/JSON-safe)."""
        window_s = (self.end_ns - self.begin_ns) / 1e9 if self.begin_ns is not None and self.end_ns is not None else 0.0
        return {
            "requests": self.requests,
            "errors_by_status": dict(self.errors),
            "completed_in_window": self.completed_in_window,
            "window_s": window_s,
            "server_time_missing": self.server_time_missing,
            "cpu_busy": self.cpu_busy,
            "latency": load_hdr.encode(self.latency),
            "uncorrected": load_hdr.encode(self.uncorrected) if self.mode == "open" else None,
            "server": load_hdr.encode(self.server),
            "answered": load_hdr.encode(self.answered),
            "send_lag": load_hdr.encode(self.send_lag) if self.mode == "open" else None,
            "own_lag": load_hdr.encode(self.own_lag) if self.mode == "open" else None,
            "timer": self.timer,
        }


def _us(ns: int) -> int:
    return max(load_hdr.LOWEST_US, min(int(round(ns / 1000)), load_hdr.HIGHEST_US))
