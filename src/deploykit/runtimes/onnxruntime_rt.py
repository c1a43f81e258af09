"""ONNX Runtime: CPU, and CUDA / TensorRT execution providers where onnxruntime-gpu has them.

The session call path is the edge runner's (`deploykit.edge.runner.OnnxModel`), so an `.onnx` timed on a
device and here runs the same code."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit.edge import runner
from deploykit.errors import RuntimeUnavailable
from deploykit.manifest import InputSpec, OutputSpec
from deploykit.runtimes.base import Predictor, Runtime

__all__ = ["OnnxRuntime", "OnnxPredictor"]

_PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    # TensorRT first when present: onnxruntime falls back provider by provider, per node.
    "cuda": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}


class OnnxPredictor(Predictor):
    """The registry's face of the edge runner's `OnnxModel`: one ONNX call path here and on devices."""

    runtime = "onnxruntime"

    def __init__(self, model: runner.OnnxModel, input_spec: InputSpec, output_spec: OutputSpec | None, device: str, threads):
        super().__init__(input_spec, output_spec)
        self.model = model
        self.session = model.session
        self.device = device
        self.threads = threads
        self.run = model.run  # what `deploykit bench` times is the runner's call itself

    def run(self, tensor: np.ndarray) -> np.ndarray:
        return self.model.run(tensor)


class OnnxRuntime(Runtime):
    name = "onnxruntime"
    formats = ("onnx", "onnx-int8")
    package = "onnxruntime"
    extra = "gpu"

    @classmethod
    def available(cls, device: str = "cpu") -> tuple[bool, str]:
        import onnxruntime as ort

        have = ort.get_available_providers()
        if device == "cpu":
            return True, ""
        if "CUDAExecutionProvider" not in have:
            return False, f"onnxruntime {ort.__version__} has no CUDAExecutionProvider (providers: {', '.join(have)}); install onnxruntime-gpu on a CUDA machine"
        return True, ""

    @classmethod
    def version(cls) -> str:
        import onnxruntime as ort

        return ort.__version__

    def open(self, path: Path, input_spec: InputSpec, output_spec: OutputSpec | None = None,
             device: str = "cpu", threads: int | None = None) -> OnnxPredictor:
        import onnxruntime as ort

        ok, why = self.available(device)
        if not ok:
            raise RuntimeUnavailable(why)
        providers = [p for p in _PROVIDERS[device] if p in ort.get_available_providers()]
        session = runner.onnx_session(runner.import_runtime("onnxruntime", "onnxruntime"), str(path), threads, providers)
        return OnnxPredictor(runner.OnnxModel(session), input_spec, output_spec, device, threads)
