"""PyTorch: TorchScript archives, on CPU or CUDA.

torch.jit.load reads the archive's code and tensors with TorchScript's own loader, which restores
only TorchScript types (no arbitrary Python objects, unlike torch.load with pickle); deploykit also
checks the file's sha256 against the manifest before loading.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from deploykit.errors import RuntimeUnavailable
from deploykit.manifest import InputSpec, OutputSpec
from deploykit.runtimes.base import Predictor, Runtime

__all__ = ["TorchRuntime", "TorchPredictor"]


def import_torch():
    try:
        import torch
    except ImportError as exc:
        raise RuntimeUnavailable("torch is not installed: pip install torch==2.13.0") from exc
    return torch


class TorchPredictor(Predictor):
    runtime = "torch"

    def __init__(self, module, torch, input_spec: InputSpec, output_spec: OutputSpec | None, device: str, threads):
        super().__init__(input_spec, output_spec)
        self.module = module
        self._torch = torch
        self.device = device
        self.threads = threads

    def run(self, tensor: np.ndarray) -> np.ndarray:
        torch = self._torch
        with torch.inference_mode():
            if self.device == "cpu":  # no device hops: they cost microseconds on these tiny models
                return self.module(torch.from_numpy(tensor)).numpy()
            out = self.module(torch.from_numpy(tensor).to(self.device, non_blocking=True))
            return out.cpu().numpy()  # .cpu() waits for the device

    def synchronize(self) -> None:
        if self.device == "cuda":
            self._torch.cuda.synchronize()


class TorchRuntime(Runtime):
    name = "torch"
    formats = ("torchscript",)
    package = "torch"
    extra = "torch"

    @classmethod
    def available(cls, device: str = "cpu") -> tuple[bool, str]:
        try:
            torch = import_torch()
        except RuntimeUnavailable as exc:
            return False, str(exc)
        if device == "cuda" and not torch.cuda.is_available():
            built = torch.version.cuda or "none (CPU build)"
            return False, f"torch {torch.__version__} sees no CUDA device (CUDA build: {built})"
        return True, ""

    @classmethod
    def version(cls) -> str:
        return import_torch().__version__

    def open(self, path: Path, input_spec: InputSpec, output_spec: OutputSpec | None = None,
             device: str = "cpu", threads: int | None = None) -> TorchPredictor:
        ok, why = self.available(device)
        if not ok:
            raise RuntimeUnavailable(why)
        torch = import_torch()
        if threads:
            torch.set_num_threads(threads)  # process-wide in torch; recorded with every figure
        module = torch.jit.load(str(path), map_location=device).eval()
        return TorchPredictor(module, torch, input_spec, output_spec, device, threads)
