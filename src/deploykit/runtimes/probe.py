"""Load one artifact in a child process and answer one batch of zeros.

What `deploykit serve` checks before it starts BentoML: a runtime that crashes natively on a file
(SIGSEGV, SIGABRT inside a C++ kernel) would otherwise take a worker down after the server said
it was starting; here it becomes one line and a non-zero exit. A Python-level failure is the
runtime boundary's own one-line error (deploykit.runtimes.base.Runtime.load).

    python -m deploykit.runtimes.probe MODEL_DIR FORMAT [DEVICE] [THREADS]
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from deploykit.errors import ArtifactLoadError

__all__ = ["probe_in_child"]

_FAILED = 3  # exit code of the child for a DeployKitError (its one line is on stderr)


def probe_in_child(model_dir: Path, fmt: str, device: str = "cpu", threads: int | None = None,
                   timeout: float = 600.0) -> None:
    """Raise ArtifactLoadError (one line) unless the artifact loads and predicts in a child process."""
    cmd = [sys.executable, "-m", "deploykit.runtimes.probe", str(model_dir), fmt, device, str(threads or 0)]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
    try:
        proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as exc:
        raise ArtifactLoadError(f"{fmt}: loading the artifact did not finish in {timeout:g} s") from exc
    if proc.returncode == 0:
        return
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    if proc.returncode == _FAILED and lines:
        raise ArtifactLoadError(lines[-1].removeprefix("error: "))
    if proc.returncode < 0:
        try:
            name = signal.Signals(-proc.returncode).name
        except ValueError:
            name = f"signal {-proc.returncode}"
        raise ArtifactLoadError(f"{fmt}: the runtime crashed ({name}) while loading {Path(model_dir).name}'s artifact")
    raise ArtifactLoadError(f"{fmt}: loading the artifact failed (exit {proc.returncode})"
                            + (f": {lines[-1][:240]}" if lines else ""))


def main(argv: list[str]) -> int:
    import numpy as np

    from deploykit.errors import DeployKitError
    from deploykit.runtimes import load_predictor

    model_dir, fmt, device, threads = argv[0], argv[1], argv[2], int(argv[3]) or None
    try:
        with load_predictor(model_dir, fmt, device=device, threads=threads) as predictor:
            inner = [d or 1 for d in predictor.input_spec.shape[1:]]
            predictor.predict(np.zeros((1, int(np.prod(inner))), np.float32))
    except DeployKitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return _FAILED
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
