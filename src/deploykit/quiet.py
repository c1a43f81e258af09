"""Mute native libraries' start-up chatter on file descriptor 2.

TensorFlow and LiteRT print INFO lines from C++ (oneDNN notice, CUDA stub, XNNPACK delegate) before
any logging configuration can reach them; Python's sys.stderr redirection cannot catch them, so the
descriptor itself is pointed at /dev/null for the duration of the call and restored after. Python
exceptions raised inside still propagate with their messages.
"""

from __future__ import annotations

import os
import sys
from contextlib import contextmanager

__all__ = ["muted_stderr"]


@contextmanager
def muted_stderr():
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)
