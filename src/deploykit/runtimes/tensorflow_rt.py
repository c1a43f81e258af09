"""TensorFlow SavedModel, called through its serving signature (what TF Serving would run)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from deploykit.errors import RuntimeUnavailable
from deploykit.manifest import InputSpec, OutputSpec
from deploykit.quiet import muted_stderr
from deploykit.runtimes.base import Predictor, Runtime

__all__ = ["TensorFlowRuntime", "SavedModelPredictor"]


def import_tf():
    """Import TensorFlow without its start-up chatter on the user's terminal (see deploykit.quiet)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    try:
        with muted_stderr():
            import tensorflow as tf

            tf.config.list_physical_devices()  # device discovery logs a cuInit error on CPU-only machines
    except ImportError as exc:
        raise RuntimeUnavailable("tensorflow is not installed: pip install 'deploykit[tf]'") from exc
    return tf


class SavedModelPredictor(Predictor):
    runtime = "tensorflow"

    def __init__(self, loaded, tf, input_spec: InputSpec, output_spec: OutputSpec | None, device: str, threads):
        super().__init__(input_spec, output_spec)
        self._loaded = loaded  # keeps the signature's variables alive
        self._fn = loaded.signatures["serving_default"]
        self._tf = tf
        self._arg = next(iter(self._fn.structured_input_signature[1]))
        self._device = "/GPU:0" if device == "cuda" else "/CPU:0"
        self.device = device
        self.threads = threads

    def run(self, tensor: np.ndarray) -> np.ndarray:
        with self._tf.device(self._device):
            out = self._fn(**{self._arg: self._tf.constant(tensor)})
        # .numpy() copies to host, which also waits for the GPU.
        return next(iter(out.values())).numpy()


class TensorFlowRuntime(Runtime):
    name = "tensorflow"
    formats = ("savedmodel",)
    package = "tensorflow"
    extra = "tf"

    @classmethod
    def available(cls, device: str = "cpu") -> tuple[bool, str]:
        try:
            tf = import_tf()
        except RuntimeUnavailable as exc:
            return False, str(exc)
        if device == "cuda" and not tf.config.list_physical_devices("GPU"):
            return False, f"tensorflow {tf.__version__} sees no GPU (built with CUDA: {tf.test.is_built_with_cuda()})"
        return True, ""

    @classmethod
    def version(cls) -> str:
        return import_tf().__version__

    def open(self, path: Path, input_spec: InputSpec, output_spec: OutputSpec | None = None,
             device: str = "cpu", threads: int | None = None) -> SavedModelPredictor:
        ok, why = self.available(device)
        if not ok:
            raise RuntimeUnavailable(why)
        tf = import_tf()
        if threads:
            _set_tf_threads(tf, threads)
        return SavedModelPredictor(tf.saved_model.load(str(path)), tf, input_spec, output_spec, device, threads)


def _set_tf_threads(tf, threads: int) -> None:
    # TF fixes its thread pools when it first runs an op; later calls raise. The figure records
    # the request, so a process that already ran TF keeps its pools rather than failing.
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass
