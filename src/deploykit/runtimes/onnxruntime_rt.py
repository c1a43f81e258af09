"""ONNX Runtime: CPU, and CUDA / TensorRT execution providers where onnxruntime-gpu has them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
    runtime = "onnxruntime"

    def __init__(self, session, input_spec: InputSpec, output_spec: OutputSpec | None, device: str, threads):
        super().__init__(input_spec, output_spec)
        self.session = session
        self.device = device
        self.threads = threads
        self._input = session.get_inputs()[0].name
        self._output = [session.get_outputs()[0].name]

    def run(self, tensor: np.ndarray) -> np.ndarray:
        # Numpy in, numpy out: ORT copies results back to host, so no explicit sync is needed.
        return self.session.run(self._output, {self._input: tensor})[0]


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
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        if threads:
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
        providers = [p for p in _PROVIDERS[device] if p in ort.get_available_providers()]
        session = ort.InferenceSession(str(path), sess_options=opts, providers=providers)
        return OnnxPredictor(session, input_spec, output_spec, device, threads)
