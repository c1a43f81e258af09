"""TFLite through ai-edge-litert (today's interpreter), for validation, serving and `deploykit bench`.

The interpreter call path is the edge runner's (`deploykit.edge.runner.Model`): one implementation,
kept in the runner because the runner must stay self-contained when it is copied to a device. Old
runtimes (tflite-runtime 2.14.0, what many Pi images run) are not loaded into this process: they need
NumPy 1.x, so `deploykit edge check|bench` runs them through the runner in an isolated environment.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit.edge import runner
from deploykit.errors import RuntimeUnavailable
from deploykit.manifest import InputSpec, OutputSpec
from deploykit.quiet import muted_stderr
from deploykit.runtimes.base import Predictor, Runtime

__all__ = ["LiteRTRuntime", "TFLitePredictor"]


class TFLitePredictor(Predictor):
    """The registry's face of `runner.Model`: manifest input/output mapping around the runner's call."""

    def __init__(self, model: runner.Model, runtime: str, input_spec: InputSpec, output_spec: OutputSpec | None, threads):
        super().__init__(input_spec, output_spec)
        self.model = model
        self.runtime = runtime
        self.device = "cpu"
        self.threads = threads
        self.max_batch = model.fixed_batch  # fixed-batch artifact: predict() splits larger batches
        self.run = model.run  # what `deploykit bench` times is the runner's call itself, no extra frame

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return self.model.run(tensor)


class LiteRTRuntime(Runtime):
    name = "litert"
    formats = ("tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8", "tflite-qat")
    package = "ai-edge-litert"
    extra = "tf"
    module = "ai_edge_litert.interpreter"

    @classmethod
    def _runtime(cls) -> runner.Runtime:
        try:
            return runner.import_runtime(cls.package, cls.module)
        except ImportError as exc:
            raise RuntimeUnavailable(f"{cls.package} is not installed: pip install {cls.package}") from exc

    @classmethod
    def available(cls, device: str = "cpu") -> tuple[bool, str]:
        if device != "cpu":
            return False, f"{cls.package} runs TFLite on the CPU here (GPU delegates are for mobile GPUs)"
        try:
            cls._runtime()
        except RuntimeUnavailable as exc:
            return False, str(exc)
        return True, ""

    @classmethod
    def version(cls) -> str:
        from importlib.metadata import version

        return version(cls.package)

    def open(self, path: Path, input_spec: InputSpec, output_spec: OutputSpec | None = None,
             device: str = "cpu", threads: int | None = None) -> TFLitePredictor:
        ok, why = self.available(device)
        if not ok:
            raise RuntimeUnavailable(why)
        try:
            with muted_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                model, error = runner.open_model(self._runtime(), Path(path).read_bytes(), threads)
        except runner.Missing as exc:  # e.g. a runtime built for NumPy 1.x under NumPy 2
            raise RuntimeUnavailable(str(exc)) from exc
        if model is None:  # Runtime.load turns it into ArtifactLoadError, as for every backend
            raise ValueError(error or "the interpreter refused the file")
        return TFLitePredictor(model, self.name, input_spec, output_spec, threads)
