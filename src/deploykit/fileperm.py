"""File modes for what deploykit publishes: the modes a plain `open()`/`mkdir()` would give.

Temp files (`tempfile.mkstemp`, 0600) and temp folders (`mkdtemp`, 0700) renamed into place keep
their private mode, so a server running as another user could not read an artifact. Every writer
that renames a temp path into place calls `publish` on the result.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

__all__ = ["publish", "current_umask"]

_lock = threading.Lock()


def current_umask() -> int:
    """The process umask (reading it means setting it; the lock keeps the two steps together)."""
    with _lock:
        mask = os.umask(0o022)
        os.umask(mask)
    return mask


def publish(path: Path | str) -> Path:
    """Give `path` (recursively, for a folder) mode 0o666 & ~umask for files, 0o777 & ~umask for folders."""
    path = Path(path)
    mask = current_umask()
    file_mode, dir_mode = 0o666 & ~mask, 0o777 & ~mask
    if path.is_dir():
        for root, dirs, files in os.walk(path):
            os.chmod(root, dir_mode)
            for name in files:
                os.chmod(os.path.join(root, name), file_mode)
    else:
        os.chmod(path, file_mode)
    return path
