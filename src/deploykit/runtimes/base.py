"""The one Runtime interface: validation, serving, benchmarking and the edge runner all use it.

A runtime loads an artifact and returns a Predictor whose `predict` takes canonical input
(float32, N×28×28, values in [0, 1]) and returns class probabilities (float32, N×classes).
Layout (NHWC/NCHW/flat), integer quantization and device placement live here, once.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import numpy as np

from deploykit.errors import ArtifactLoadError, DeployKitError, InferenceError, UsageError
from deploykit.manifest import InputSpec, OutputSpec

__all__ = ["Runtime", "Predictor", "to_input", "from_output", "one_line", "DEVICES"]

DEVICES = ("cpu", "cuda")


def to_input(x: np.ndarray, spec: InputSpec) -> np.ndarray:
    """Canonical float32 input (N×28×28 for the reference models; any N×… with the right number of
    values per sample for a user's model) → the artifact's input tensor (shape, dtype, quantization)."""
    x = np.asarray(x, dtype=np.float32)
    inner = spec.shape[1:]
    if any(d is None for d in inner):
        raise UsageError(f"input {spec.name} has dynamic inner dimensions {spec.shape}; cannot map onto it")
    per_sample = int(np.prod(inner)) if inner else 1
    if x.ndim < 2 or int(np.prod(x.shape[1:])) != per_sample:
        want = "(N, 28, 28)" if per_sample == 784 else f"(N, {', '.join(map(str, inner))})"
        raise UsageError(f"expected input of shape {want}, got {x.shape}")
    x = x.reshape(x.shape[0], *inner)
    if spec.dtype in ("int8", "uint8"):
        info = np.iinfo(spec.dtype)
        q = np.round(x / spec.scale) + spec.zero_point
        return np.clip(q, info.min, info.max).astype(spec.dtype)
    return x.astype(spec.dtype, copy=False)


def from_output(y: np.ndarray, spec: OutputSpec | None) -> np.ndarray:
    """The artifact's output tensor → float32 probabilities (dequantized when integer)."""
    y = np.asarray(y)
    if spec is not None and spec.dtype in ("int8", "uint8"):
        return ((y.astype(np.float32) - spec.zero_point) * spec.scale).astype(np.float32)
    return y.astype(np.float32, copy=False)


class Predictor(ABC):
    """A loaded artifact, ready to predict. Not thread-safe unless a runtime says so."""

    runtime: str
    device: str
    threads: int | None
    max_batch: int | None = None  # None: any batch size; otherwise predict() splits larger batches

    def __init__(self, input_spec: InputSpec, output_spec: OutputSpec | None):
        self.input_spec = input_spec
        self.output_spec = output_spec

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Canonical input (N×28×28 float32 in [0,1]) → probabilities (N×classes float32)."""
        return self.predict_timed(x)[0]

    def predict_timed(self, x: np.ndarray) -> tuple[np.ndarray, int]:
        """`predict`, and the nanoseconds spent in the runtime call(s) alone: what `deploykit bench`
        times (Predictor.run on a prepared tensor), so that serving's X-Inference-Time-Us and bench's
        p50 describe the same work; input preparation and dequantization are not in it."""
        x = np.asarray(x, dtype=np.float32)
        if self.max_batch and len(x) > self.max_batch:
            parts = [self.predict_timed(x[i : i + self.max_batch]) for i in range(0, len(x), self.max_batch)]
            return np.concatenate([p for p, _ in parts]), sum(ns for _, ns in parts)
        tensor = to_input(x, self.input_spec)
        try:
            t = time.perf_counter_ns()
            raw = self.run(tensor)
            run_ns = time.perf_counter_ns() - t
        except DeployKitError:
            raise
        except Exception as exc:  # the runtime boundary: a backend's own exception becomes ours, cause kept
            raise InferenceError(f"{self.runtime} failed on a batch of {len(x)}: {one_line(exc)}") from exc
        return from_output(raw, self.output_spec), run_ns

    @abstractmethod
    def run(self, tensor: np.ndarray) -> np.ndarray:
        """Run the raw runtime call on an already-prepared input tensor (what benchmarks time)."""

    def synchronize(self) -> None:
        """Wait for queued device work (GPU runtimes); a no-op on CPU."""

    def close(self) -> None:
        """Release the runtime's resources."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class Runtime(ABC):
    """Loads one family of artifacts. Subclasses register themselves by `name`."""

    name: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]  # export formats whose artifacts it loads
    package: ClassVar[str]  # the pip package that provides it (for version records and errors)
    extra: ClassVar[str]  # the deploykit extra that installs it

    @classmethod
    @abstractmethod
    def available(cls, device: str = "cpu") -> tuple[bool, str]:
        """(True, "") when usable on `device`, else (False, reason): never raises."""

    @classmethod
    @abstractmethod
    def version(cls) -> str:
        """The runtime package's version."""

    def load(
        self,
        path: Path,
        input_spec: InputSpec,
        output_spec: OutputSpec | None = None,
        device: str = "cpu",
        threads: int | None = None,
    ) -> Predictor:
        """Load the artifact at `path`: the runtime boundary.

        RuntimeUnavailable when the device or package is missing; ArtifactLoadError (one line, the
        backend's exception kept as the cause) for anything the backend raises on a damaged or
        unsupported file, whatever its own type (onnxruntime's InvalidProtobuf, LiteRT's
        ValueError, torch's RuntimeError...).
        """
        try:
            return self.open(Path(path), input_spec, output_spec, device=device, threads=threads)
        except DeployKitError:
            raise
        except Exception as exc:
            raise ArtifactLoadError(f"{self.name} cannot load {Path(path).name}: {one_line(exc)}") from exc

    @abstractmethod
    def open(
        self,
        path: Path,
        input_spec: InputSpec,
        output_spec: OutputSpec | None = None,
        device: str = "cpu",
        threads: int | None = None,
    ) -> Predictor:
        """The backend's own load; `load` wraps it. Raise RuntimeUnavailable when the device is missing."""


def one_line(exc: BaseException, width: int = 300) -> str:
    """`Type: message` on one line, cut to `width` (backends print pages).

    TorchScript's interpreter errors open with a banner and a code listing; their reason is last.
    """
    lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
    text = "" if not lines else lines[-1] if lines[0].startswith("The following operation failed") else lines[0]
    text = text if len(text) <= width else text[:width] + "…"
    kind = type(exc).__name__
    if text.startswith(f"{kind}: "):  # TorchScript repeats the type in its last line
        return text
    return f"{kind}: {text}" if text else kind
