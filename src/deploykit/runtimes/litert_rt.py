"""TFLite interpreters: ai-edge-litert (today's) and tflite-runtime (what many edge images still run)."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np

from deploykit.errors import RuntimeUnavailable
from deploykit.manifest import InputSpec, OutputSpec
from deploykit.quiet import muted_stderr
from deploykit.runtimes.base import Predictor, Runtime

__all__ = ["LiteRTRuntime", "TFLiteRuntime", "TFLitePredictor"]


class TFLitePredictor(Predictor):
    """One interpreter; resized only when the batch size changes (a resize re-plans memory)."""

    def __init__(self, interpreter, runtime: str, input_spec: InputSpec, output_spec: OutputSpec | None, threads):
        super().__init__(input_spec, output_spec)
        self.interpreter = interpreter
        self.runtime = runtime
        self.device = "cpu"
        self.threads = threads
        self._in = interpreter.get_input_details()[0]
        self._out = interpreter.get_output_details()[0]["index"]
        self._batch = int(self._in["shape"][0])
        dims = self._in.get("shape_signature", self._in["shape"])
        if int(dims[0]) != -1:
            self.max_batch = self._batch  # fixed batch artifact: predict() splits larger batches

    def run(self, tensor: np.ndarray) -> np.ndarray:
        n = tensor.shape[0]
        if n != self._batch:
            if self.max_batch and n < self.max_batch:  # fixed-batch artifact: pad, run, cut
                pad = np.zeros((self.max_batch - n, *tensor.shape[1:]), tensor.dtype)
                return self.run(np.concatenate([tensor, pad]))[:n]
            self.interpreter.resize_tensor_input(self._in["index"], list(tensor.shape), strict=True)
            self.interpreter.allocate_tensors()
            self._batch = n
        self.interpreter.set_tensor(self._in["index"], tensor)
        self.interpreter.invoke()
        return self.interpreter.get_tensor(self._out)  # get_tensor already returns a copy


class LiteRTRuntime(Runtime):
    name = "litert"
    formats = ("tflite-fp32", "tflite-fp16", "tflite-dynamic", "tflite-int8", "tflite-qat")
    package = "ai-edge-litert"
    extra = "tf"
    module = "ai_edge_litert.interpreter"

    @classmethod
    def _module(cls):
        try:
            return importlib.import_module(cls.module)
        except ImportError as exc:
            raise RuntimeUnavailable(f"{cls.package} is not installed: pip install {cls.package}") from exc

    @classmethod
    def available(cls, device: str = "cpu") -> tuple[bool, str]:
        if device != "cpu":
            return False, f"{cls.package} runs TFLite on the CPU here (GPU delegates are for mobile GPUs)"
        try:
            cls._module()
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
        kwargs = {"num_threads": threads} if threads else {}
        with muted_stderr():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
            interpreter = self._module().Interpreter(model_path=str(path), **kwargs)
            interpreter.allocate_tensors()
        return TFLitePredictor(interpreter, self.name, input_spec, output_spec, threads)


class TFLiteRuntime(LiteRTRuntime):
    name = "tflite-runtime"
    package = "tflite-runtime"
    extra = "edge"
    module = "tflite_runtime.interpreter"
