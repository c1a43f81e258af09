"""Sleep until an absolute `time.perf_counter_ns()` moment, accurately and without spinning (gevent).

Why not `gevent.sleep`: gevent's timers wake up to a millisecond late (libev's epoll backend waits in
whole milliseconds), and an open-loop latency is timed from the scheduled send, so every such delay
would be added to the figure. The load tester used to close that gap by yielding in a loop for the
last 2 ms before each send, which kept a core busy at 500 req/s and measured its own spinning.

Here a Linux timerfd is armed at the absolute CLOCK_MONOTONIC time (what `perf_counter_ns` reads on
Linux) and the greenlet waits on its file descriptor: the kernel's high-resolution timer wakes the
event loop, other greenlets run meanwhile, no CPU is spent waiting. Python 3.13 has
`os.timerfd_create`; on 3.11 it is two libc calls through ctypes (the PyPI wrappers, pytimerfd and
linuxfd, are unmaintained since 2013 and 2020). Elsewhere: `gevent.sleep`, and the send lag the load
tester records says how late that was.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
import time

__all__ = ["PreciseSleeper"]

_CLOCK_MONOTONIC = 1
_TFD_NONBLOCK = os.O_NONBLOCK
_TFD_CLOEXEC = 0o2000000
_TFD_TIMER_ABSTIME = 1


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


def _libc():
    if not sys.platform.startswith("linux") or time.get_clock_info("perf_counter").implementation != \
            "clock_gettime(CLOCK_MONOTONIC)":
        return None
    try:
        lib = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        lib.timerfd_create.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.timerfd_settime.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.POINTER(_Itimerspec), ctypes.c_void_p]
        return lib
    except (OSError, AttributeError):
        return None


class PreciseSleeper:
    """One timer per greenlet that sleeps with it (a dispatcher); `close()` when done.

    `kind` says which timer is in use: "timerfd" or "gevent.sleep"."""

    def __init__(self):
        self._lib = _libc()
        self._fd = -1
        if self._lib is not None:
            self._fd = self._lib.timerfd_create(_CLOCK_MONOTONIC, _TFD_NONBLOCK | _TFD_CLOEXEC)
        self.kind = "timerfd" if self._fd >= 0 else "gevent.sleep"

    def sleep_until(self, t_ns: int) -> None:
        import gevent
        from gevent.socket import wait_read

        if t_ns <= time.perf_counter_ns():
            return
        if self._fd < 0:
            gevent.sleep((t_ns - time.perf_counter_ns()) / 1e9)
            return
        spec = _Itimerspec(_Timespec(0, 0), _Timespec(t_ns // 1_000_000_000, t_ns % 1_000_000_000))
        if self._lib.timerfd_settime(self._fd, _TFD_TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime failed")
        wait_read(self._fd)
        try:
            os.read(self._fd, 8)  # the expiry count; reading it disarms readability
        except BlockingIOError:
            pass

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
