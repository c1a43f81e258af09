"""The measurement protocol: how deploykit times a call, on this machine or on an edge device.

This file is self-contained on purpose (Python standard library + numpy, no deploykit imports): the
edge runner copies it as is to a device (a Raspberry Pi over SSH) and imports `measure` there, so a
figure from a device and a figure from this CPU come out of the same code.

API
---
``measure(call, ...) -> dict``
    Warm up, then time ``call()`` in measurement windows until three consecutive windows agree.
``latency_stats(ns) -> dict``
    Percentiles, mean, spread of per-call times given in nanoseconds, reported in microseconds with
    the field names of ``deploykit.results.LatencyStats`` (``LatencyStats(**latency_stats(ns))``).
    A percentile with too few samples behind it is None, with the reason in ``withheld``.
``steady_start(p50s) -> int | None``
    Index of the first window of the longest trailing run of agreeing windows (None: fewer than three).
``p50_interval(windows) -> (lo, hi)``
    95 % interval of p50 from a bootstrap over windows.
``time_window(timed, window_ns, ...) -> (ns array, wall ns)``
    One measurement window, call by call (what ``measure`` and the interleaved A/B worker both run).
``paired_ratio(base_p50s, cand_p50s) -> (ratio, lo, hi)``
    Interleaved A/B: candidate/baseline p50 ratio from paired windows, with a 95 % bootstrap interval.
``first_call(fn, sync=None) -> (result, ms)``
    Time one call (a cold start: loading an artifact, or the first inference after loading).
``peak_rss_bytes()`` / ``current_rss_bytes()``
    This process's resident-memory high-water mark / current resident memory.

Why these choices
-----------------
- ``time.perf_counter_ns``: a monotonic clock with the best resolution Python offers, as an integer,
  so nothing is lost to float rounding on fast calls (TFLite runs an MLP in a few microseconds, where
  ``time.time()`` has neither the resolution nor monotonicity). Each call is timed on its own, so
  the result has a distribution (p99, p99.9), not just a mean. The two clock reads cost tens of
  nanoseconds; that cost is measured (``clock_overhead_us``) and reported, not subtracted.
- Warm-up first: the first calls pay for lazy initialisation, memory planning, caches and branch
  predictors; they describe a cold start (timed separately by ``first_call``), not the steady state.
- Windows until three consecutive window medians agree within ``tolerance`` (max/min − 1 ≤ 10 %):
  a fixed iteration count is too short for a 3 ms SavedModel call and wasteful for a 4 µs TFLite call,
  and a single long run cannot tell a steady state from drift (thermal throttling on a Pi, CPU
  frequency scaling, a noisy neighbour). When ``max_windows`` (or ``max_time_s``) runs out first, the
  figures are still returned but ``stable`` is False and ``stop_reason`` says so: never hidden.
- Figures come from the windows stability is judged on: the longest trailing run of windows whose
  medians all agree within ``tolerance`` (``steady_start``); earlier windows were still settling
  (a warm-up tail: onnx-int8 once ran 1439, 1438, 1387, 942, 888, 906 µs, and a p50 over all six,
  1169 µs, described neither level). The loop runs until that steady run alone holds ``min_time_s``.
  When no three windows agree, the figures are over every window and ``stable`` is False.
- A tail percentile needs enough samples behind it: q needs ≥ 10 / (1 − q) (p90: 100, p99: 1,000,
  p99.9: 10,000), so that at least ten samples lie beyond it; otherwise it is None and ``withheld``
  says why (59 samples give a "p99" that is the maximum). p50 is always given, with its interval.
- p50's 95 % interval is a bootstrap that resamples whole windows, not calls: calls in one window
  share the machine's state (a neighbour's burst, a frequency step), so resampling calls would
  pretend they are independent and give an interval far too narrow.
- ``sync``: GPU runtimes return before the device has finished (torch on CUDA queues kernels), so a
  timer read right after ``call()`` would time the launch, not the work. ``sync`` (e.g.
  ``torch.cuda.synchronize``) is called inside the timed region after every call. On CPU leave it None.
- The garbage collector stays on: a served model pays for its own allocations' collections too.
- Each window stops at ``window_s`` seconds or ``max_window_calls`` calls, whichever comes first, and
  runs at least ``min_window_calls`` calls; the whole measurement stops at ``max_windows`` windows or
  ``max_time_s``: every loop is bounded in count and time, and memory for samples stays small.
"""

from __future__ import annotations

import math
import os
import sys
import time
from typing import Callable, Optional

import numpy as np

__all__ = [
    "PROTOCOL_VERSION",
    "DEFAULT_WARMUP_S",
    "DEFAULT_MIN_TIME_S",
    "DEFAULT_WINDOW_S",
    "DEFAULT_MAX_WINDOWS",
    "DEFAULT_TOLERANCE",
    "AGREEING_WINDOWS",
    "measure",
    "latency_stats",
    "windows_agree",
    "steady_start",
    "p50_interval",
    "time_window",
    "paired_ratio",
    "min_samples",
    "first_call",
    "peak_rss_bytes",
    "current_rss_bytes",
]

PROTOCOL_VERSION = 1
DEFAULT_WARMUP_S = 0.1
DEFAULT_MIN_TIME_S = 0.5
DEFAULT_WINDOW_S = 0.1
DEFAULT_MAX_WINDOWS = 30
DEFAULT_TOLERANCE = 0.10
AGREEING_WINDOWS = 3
BOOTSTRAP_RESAMPLES = 400
_PERCENTILES = (("p50_us", 50.0), ("p90_us", 90.0), ("p99_us", 99.0), ("p999_us", 99.9))

Clock = Callable[[], int]


def min_samples(q: float) -> int:
    """Samples needed for percentile `q` (0–100): ten of them beyond it (p99: 1,000; p99.9: 10,000)."""
    return math.ceil(round(10.0 / (1.0 - q / 100.0), 6))


def latency_stats(ns) -> dict:
    """Per-call times in nanoseconds → {samples, p50_us, p90_us, p99_us, p999_us, mean_us, std_us,
    min_us, max_us, withheld} in microseconds (numpy's linear-interpolation percentiles; population std).

    A percentile with fewer than `min_samples(q)` samples is None and `withheld[field]` says why.
    """
    a = np.asarray(ns, dtype=np.float64).ravel()
    if a.size == 0:
        raise ValueError("latency_stats needs at least one sample")
    us = a / 1e3
    out: dict = {"samples": int(us.size)}
    withheld = {}
    for name, q in _PERCENTILES:
        need = min_samples(q)
        if q <= 50 or us.size >= need:  # p50 is always given: it carries its own interval (p50_ci_us)
            out[name] = float(np.percentile(us, q))
        else:
            out[name] = None
            withheld[name] = f"too few samples: {us.size:,} < {need:,}"
    out.update(mean_us=float(us.mean()), std_us=float(us.std()), min_us=float(us.min()), max_us=float(us.max()),
               withheld=withheld)
    return out


def windows_agree(p50s, tolerance: float = DEFAULT_TOLERANCE, n: int = AGREEING_WINDOWS) -> bool:
    """True when the last `n` window medians agree: max/min − 1 ≤ tolerance."""
    if len(p50s) < n:
        return False
    last = p50s[-n:]
    lo, hi = min(last), max(last)
    if lo <= 0:
        return hi == lo
    return hi / lo - 1.0 <= tolerance + 1e-12


def steady_start(p50s, tolerance: float = DEFAULT_TOLERANCE, n: int = AGREEING_WINDOWS) -> Optional[int]:
    """Index where the longest trailing run of window medians that all agree (max/min − 1 ≤ tolerance)
    begins, or None when that run is shorter than `n` windows."""
    lo = hi = None
    start = None
    for i in range(len(p50s) - 1, -1, -1):
        v = p50s[i]
        lo2, hi2 = (v, v) if lo is None else (min(lo, v), max(hi, v))
        if lo2 <= 0 and hi2 != lo2 or lo2 > 0 and hi2 / lo2 - 1.0 > tolerance + 1e-12:
            break
        lo, hi, start = lo2, hi2, i
    if start is None or len(p50s) - start < n:
        return None
    return start


def p50_interval(windows, *, level: float = 0.95, resamples: int = BOOTSTRAP_RESAMPLES,
                 seed: int = 0) -> tuple[float, float]:
    """95 % interval of p50 in µs: resample whole windows with replacement, take each resample's
    call-weighted median of window medians. Windows are the independent unit (see the module notes);
    the weighted median of medians stands in for the pooled median so a resample costs O(windows)."""
    meds = np.asarray([np.median(w) for w in windows], dtype=np.float64) / 1e3
    weights = np.asarray([len(w) for w in windows], dtype=np.float64)
    if meds.size == 1:
        return float(meds[0]), float(meds[0])
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, meds.size, size=(resamples, meds.size))
    m, w = meds[idx], weights[idx]
    order = np.argsort(m, axis=1)
    m, w = np.take_along_axis(m, order, 1), np.take_along_axis(w, order, 1)
    cum = np.cumsum(w, axis=1)
    pick = (cum < cum[:, -1:] / 2).sum(axis=1)
    stats = m[np.arange(resamples), pick]
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(stats, [tail, 100 - tail])
    return float(lo), float(hi)


def first_call(fn: Callable[[], object], *, sync: Optional[Callable[[], None]] = None,
               clock: Clock = time.perf_counter_ns):
    """Call `fn` once; return (its result, elapsed milliseconds), `sync` included in the time."""
    t0 = clock()
    result = fn()
    if sync is not None:
        sync()
    return result, (clock() - t0) / 1e6


def _clock_overhead_ns(clock: Clock, n: int = 1000) -> float:
    """Median cost of one empty timed region (two clock reads), to report beside the figures."""
    deltas = []
    for _ in range(n):
        t0 = clock()
        deltas.append(clock() - t0)
    return float(np.median(deltas))


def time_window(timed: Callable[[], object], window_ns: int, min_calls: int = 10, max_calls: int = 100_000,
                clock: Clock = time.perf_counter_ns) -> tuple[np.ndarray, int]:
    """One measurement window: time `timed()` call by call for `window_ns` (between `min_calls` and
    `max_calls` calls); returns (per-call nanoseconds, the window's wall time in ns)."""
    times: list[int] = []
    w_start = clock()
    while True:
        t0 = clock()
        timed()
        t1 = clock()
        times.append(t1 - t0)
        n = len(times)
        if n >= max_calls or (n >= min_calls and t1 - w_start >= window_ns):
            break
    return np.asarray(times, dtype=np.int64), clock() - w_start


def paired_ratio(base_p50s, cand_p50s, *, level: float = 0.95, resamples: int = 2000,
                 seed: int = 0) -> tuple[float, float, float]:
    """Interleaved A/B: (ratio, low, high) of candidate / baseline p50 from paired windows.

    Pair i is baseline window i and candidate window i, run back to back (ABBA order), so both saw the
    same machine state; the ratio is the median of the pairs' ratios and its 95 % interval a bootstrap
    over pairs. Why pairs: a neighbour's burst or a frequency step moves both windows of a pair
    alike and cancels in their ratio, where two runs minutes apart differed by −31 % to +77 %."""
    a = np.asarray(base_p50s, dtype=np.float64)
    b = np.asarray(cand_p50s, dtype=np.float64)
    if a.size != b.size or a.size == 0 or (a <= 0).any():
        raise ValueError("paired_ratio needs equally many positive window medians on each side")
    r = np.log(b / a)
    point = float(np.exp(np.median(r)))
    if r.size == 1:
        return point, point, point
    rng = np.random.default_rng(seed)
    stats = np.median(r[rng.integers(0, r.size, size=(resamples, r.size))], axis=1)
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.exp(np.percentile(stats, [tail, 100 - tail]))
    return point, float(lo), float(hi)


def measure(
    call: Callable[[], object],
    *,
    warmup_s: float = DEFAULT_WARMUP_S,
    min_time_s: float = DEFAULT_MIN_TIME_S,
    window_s: float = DEFAULT_WINDOW_S,
    max_windows: int = DEFAULT_MAX_WINDOWS,
    tolerance: float = DEFAULT_TOLERANCE,
    sync: Optional[Callable[[], None]] = None,
    min_warmup_calls: int = 3,
    min_window_calls: int = 10,
    max_window_calls: int = 100_000,
    max_time_s: Optional[float] = None,
    clock: Clock = time.perf_counter_ns,
) -> dict:
    """Time `call()` in the steady state; return a plain-JSON dict.

    Warm-up: calls for `warmup_s` seconds (at least `min_warmup_calls`), not recorded.
    Then windows of `window_s` seconds (between `min_window_calls` and `max_window_calls` calls),
    each call timed on its own, until a trailing run of at least three windows whose medians all agree
    within `tolerance` holds `min_time_s` seconds (`steady_start`); or until `max_windows` windows or
    `max_time_s` seconds (default: max(60, 10 × min_time_s)) of measuring, with `stable` False.

    Returns:
        latency: {samples, p50_us … max_us, withheld, p50_ci_us} over the calls of the steady windows
            (every window when not stable; see `latency_stats`, `p50_interval`)
        windows, window_p50s_us, window_calls: per-window medians and call counts, settling ones included
        figure_windows: the figures come from the last `figure_windows` windows
        stable: a trailing run of ≥ 3 windows agreed; stop_reason: "stable" | "max_windows" | "max_time"
        calls (every window), measured_s (every window's wall time), calls_per_s (steady windows)
        warmup_s, warmup_calls (as run), window_s, min_time_s, max_windows, tolerance (as asked)
        clock: "perf_counter_ns"; clock_overhead_us: cost of the timer itself, included in each figure
        protocol_version
    `sync` (for GPU runtimes) is called after every call inside the timed region.
    """
    if window_s <= 0 or min_time_s < 0 or warmup_s < 0 or max_windows < 1 or tolerance < 0:
        raise ValueError("measure: window_s > 0, min_time_s ≥ 0, warmup_s ≥ 0, max_windows ≥ 1, tolerance ≥ 0")
    if min_window_calls < 1 or max_window_calls < min_window_calls:
        raise ValueError("measure: 1 ≤ min_window_calls ≤ max_window_calls")
    if max_time_s is None:
        max_time_s = max(60.0, 10.0 * min_time_s)
    warmup_ns, window_ns, max_time_ns = int(warmup_s * 1e9), int(window_s * 1e9), int(max_time_s * 1e9)

    overhead_ns = _clock_overhead_ns(clock)
    if sync is None:
        timed = call  # no wrapper on CPU: every nanosecond inside the timed region belongs to the call
    else:
        def timed():
            call()
            sync()

    # Warm-up: run, don't record.
    warmup_calls = 0
    start = clock()
    while warmup_calls < min_warmup_calls or clock() - start < warmup_ns:
        timed()
        warmup_calls += 1
    warmup_elapsed_ns = clock() - start

    windows: list[np.ndarray] = []
    p50s: list[float] = []
    window_ns_used: list[int] = []
    measured_ns = 0
    stop_reason = "max_windows"
    while len(windows) < max_windows:
        times, w_ns = time_window(timed, window_ns, min_window_calls, max_window_calls, clock)
        measured_ns += w_ns
        window_ns_used.append(w_ns)
        windows.append(times)
        p50s.append(float(np.median(windows[-1])) / 1e3)
        start_i = steady_start(p50s, tolerance)
        # min_time_s counts only the steady windows: the figures come from them alone
        if start_i is not None and sum(window_ns_used[start_i:]) >= min_time_s * 1e9:
            stop_reason = "stable"
            break
        if measured_ns >= max_time_ns:
            stop_reason = "max_time"
            break

    start_i = steady_start(p50s, tolerance)
    used = windows[start_i:] if start_i is not None else windows
    calls = int(sum(w.size for w in windows))
    used_ns = sum(window_ns_used[start_i or 0:])
    latency = latency_stats(np.concatenate(used))
    latency["p50_ci_us"] = list(p50_interval(used))
    return {
        "latency": latency,
        "windows": len(windows),
        "figure_windows": len(used),
        "window_p50s_us": p50s,
        "window_calls": [int(w.size) for w in windows],
        "stable": start_i is not None,
        "stop_reason": stop_reason,
        "calls": calls,
        "measured_s": measured_ns / 1e9,
        "calls_per_s": sum(w.size for w in used) / (used_ns / 1e9) if used_ns > 0 else math.inf,
        "warmup_s": warmup_elapsed_ns / 1e9,
        "warmup_calls": warmup_calls,
        "window_s": window_s,
        "min_time_s": min_time_s,
        "max_windows": max_windows,
        "tolerance": tolerance,
        "clock": "perf_counter_ns" if clock is time.perf_counter_ns else getattr(clock, "__name__", "custom"),
        "clock_overhead_us": overhead_ns / 1e3,
        "protocol_version": PROTOCOL_VERSION,
    }


def current_rss_bytes() -> Optional[int]:
    """Resident memory of this process now (Linux /proc), or None where unknown."""
    return _proc_status_bytes("VmRSS:")


def peak_rss_bytes() -> Optional[int]:
    """This process's resident-memory high-water mark in bytes, or None where unknown.

    Linux: VmHWM from /proc/self/status (the high-water mark of this process's own memory map).
    Elsewhere: getrusage's ru_maxrss (kilobytes on Linux, bytes on macOS). The mark never goes down,
    so a per-artifact peak needs a process per artifact (what `deploykit bench` does).
    """
    hwm = _proc_status_bytes("VmHWM:")
    if hwm is not None:
        return hwm
    try:
        import resource
    except ImportError:  # Windows
        return None
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(maxrss if sys.platform == "darwin" else maxrss * 1024)


def _proc_status_bytes(key: str) -> Optional[int]:
    try:
        with open(f"/proc/{os.getpid()}/status") as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1]) * 1024  # the kernel reports kB
    except OSError:
        return None
    return None
