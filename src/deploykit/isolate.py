"""Validation of one artifact in a child process, so a runtime that crashes costs only that format.

Trade-off (measured, see docs/export.md): the *export* step stays in the parent process, because
converters need the live framework model (a child would have to reload it: TensorFlow's import
alone is ~4 s, a Keras model load more) and its Python exceptions are caught and recorded there.
The *load + predict* step, where native runtimes crash (LiteRT/XNNPACK aborts, segfaults in a
delegate), runs in a fresh `python -m deploykit.isolate` worker: it costs the interpreter start
plus the runtime's import (measured here: ~0.5 s for onnxruntime/LiteRT, ~1.5 s for torch, ~5 s
for TensorFlow's SavedModel runtime). Not multiprocessing: 'fork' after TensorFlow/torch started
their thread pools can deadlock, and 'spawn'/'forkserver' re-run the caller's `__main__`, which
breaks any script calling the pipeline without an `if __name__ == "__main__"` guard.

Arguments and the outcome travel as pickles in a temp folder; the worker's stdout/stderr go to a
log there, whose last line is the reason when the worker dies.
"""

from __future__ import annotations

import importlib
import os
import pickle
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from deploykit.errors import DeployKitError, RuntimeUnavailable, ValidationCrashed, ValidationFailed
from deploykit.manifest import InputSpec, OutputSpec
from deploykit.runtimes.base import one_line
from deploykit.validate import Proof, prove

__all__ = ["Bars", "validate_artifact", "VALIDATE_TIMEOUT"]

VALIDATE_TIMEOUT = 900.0  # seconds; a runtime that hangs longer is recorded as crashed


@dataclass(frozen=True)
class Bars:
    """An exporter's validation bars, as plain data for the child (exporter classes may be test-local)."""

    atol: Optional[float]
    min_top1_agreement: float
    max_accuracy_drop_points: Optional[float]

    @classmethod
    def of(cls, exporter) -> "Bars":
        return cls(exporter.atol, exporter.min_top1_agreement, exporter.max_accuracy_drop_points)


def _runtime_class(module: str, name: str):
    from deploykit.runtimes.base import Runtime

    mod = importlib.import_module(module)
    for obj in vars(mod).values():
        if isinstance(obj, type) and issubclass(obj, Runtime) and getattr(obj, "name", None) == name:
            return obj
    raise LookupError(f"{module} defines no runtime named {name!r}")


def _validate(module, name, path, in_spec, out_spec, bars, x, y, ref, float_acc) -> tuple[str, object]:
    """("ok", Proof) | ("unavailable", reason) | ("error", reason); what both the child and the parent run."""
    try:
        predictor = _runtime_class(module, name)().load(Path(path), in_spec, out_spec)
        try:
            proof = prove(predictor, bars, x, y, ref, float_acc)
        finally:
            predictor.close()
    except RuntimeUnavailable as exc:
        return "unavailable", str(exc)
    except DeployKitError as exc:
        return "error", str(exc)
    except Exception as exc:  # a runtime's own error types (RuntimeError from LiteRT, ORT's Fail…): this format fails
        return "error", one_line(exc)
    return "ok", proof


def _log_tail(path: Path) -> str:
    try:
        lines = [ln.strip() for ln in path.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return lines[-1][:200] if lines else ""


def _run_child(args, timeout: float) -> tuple[str, object]:
    """Run `_validate(*args)` in `python -m deploykit.isolate IN OUT`; its output goes to a log file."""
    with tempfile.TemporaryDirectory(prefix="deploykit-validate-") as tmp:
        tmp = Path(tmp)
        (tmp / "in.pkl").write_bytes(pickle.dumps(args, protocol=pickle.HIGHEST_PROTOCOL))
        # The parent's import path, so the worker finds the same deploykit (and test-local runtimes).
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p),
               "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2")}
        with open(tmp / "log.txt", "wb") as log:
            try:
                proc = subprocess.run([sys.executable, "-m", "deploykit.isolate", str(tmp / "in.pkl"),
                                       str(tmp / "out.pkl")], stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, env=env, timeout=timeout)
            except subprocess.TimeoutExpired:
                return "crashed", f"timed out after {timeout:.0f} s"
        if proc.returncode == 0 and (tmp / "out.pkl").is_file():
            return pickle.loads((tmp / "out.pkl").read_bytes())
        code = proc.returncode
        how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
        tail = _log_tail(tmp / "log.txt")
        return "crashed", how + (f" ({tail})" if tail else "")


def validate_artifact(runtime: str, path: Path, in_spec: InputSpec, out_spec: Optional[OutputSpec], bars: Bars,
                      x_test: np.ndarray, y_test: Optional[np.ndarray], reference: np.ndarray,
                      float_accuracy: Optional[float], *, isolate: bool = True,
                      timeout: float = VALIDATE_TIMEOUT) -> Proof:
    """Load `path` in `runtime` and prove it (deploykit.validate.prove), in a child when `isolate`.

    Raises RuntimeUnavailable (not validated), ValidationCrashed (the child died), ValidationFailed
    (any other load/predict error), each with a one-line reason.
    """
    from deploykit.runtimes import RUNTIMES, get_runtime

    get_runtime(runtime)  # an unknown name is a UsageError here, not a crash in the child
    args = (RUNTIMES[runtime], runtime, str(path), in_spec, out_spec, bars, x_test, y_test, reference, float_accuracy)
    kind, value = _run_child(args, timeout) if isolate else _validate(*args)
    if kind == "ok":
        return value
    if kind == "unavailable":
        raise RuntimeUnavailable(value)
    if kind == "crashed":
        raise ValidationCrashed(f"{runtime} crashed loading or running the artifact: {value}")
    raise ValidationFailed(value)


def _worker(argv: list[str]) -> int:
    """`python -m deploykit.isolate IN OUT`: unpickle the arguments, validate, pickle the outcome."""
    src, dst = map(Path, argv)
    outcome = _validate(*pickle.loads(src.read_bytes()))
    dst.write_bytes(pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL))
    return 0


if __name__ == "__main__":
    sys.exit(_worker(sys.argv[1:]))
