"""The variants: one name per way of training the same network (the comparisons the articles make)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Optional

from deploykit.errors import UsageError, unknown_name

__all__ = ["Variant", "VARIANTS", "resolve_variants", "DEFAULT_VARIANTS"]


@dataclass(frozen=True)
class Variant:
    name: str
    framework: Literal["keras", "torch", "paddle"]
    style: str  # what the comparison varies: the model API, the loop, the execution mode
    description: str
    backend: Optional[str] = None  # KERAS_BACKEND for Keras variants
    api: str = "sequential"  # Keras model API
    loop: str = "fit"  # fit | tape | torch | paddle
    run_eagerly: bool = False  # Keras fit(run_eagerly=True) / the tape loop without tf.function
    jit_compile: Optional[bool] = None  # None: Keras' own default ("auto": no XLA on a CPU-only TensorFlow)
    compile: bool = False  # torch.compile
    processes: int = 1  # > 1: a distributed run (deploykit.compare.distributed)
    needs: tuple[str, ...] = ()  # importable modules; missing → an "unavailable" row naming the extra
    extra: str = ""  # the deploykit extra that provides `needs`


_K = ("keras", "tensorflow")
VARIANTS: dict[str, Variant] = {v.name: v for v in (
    Variant("keras-sequential", "keras", "API: Sequential", "keras.Sequential, model.fit (TensorFlow backend)",
            backend="tensorflow", api="sequential", needs=_K, extra="tf"),
    Variant("keras-functional", "keras", "API: Functional", "Keras functional API, model.fit",
            backend="tensorflow", api="functional", needs=_K, extra="tf"),
    Variant("keras-subclass", "keras", "API: Subclassing", "keras.Model subclass, model.fit",
            backend="tensorflow", api="subclass", needs=_K, extra="tf"),
    Variant("keras-fit-eager", "keras", "fit, eager", "model.fit with run_eagerly=True (no tf.function)",
            backend="tensorflow", run_eagerly=True, needs=_K, extra="tf"),
    Variant("keras-fit-xla", "keras", "fit, XLA", "model.fit with jit_compile=True (XLA)",
            backend="tensorflow", jit_compile=True, needs=_K, extra="tf"),
    Variant("keras-tape", "keras", "GradientTape, tf.function", "custom loop: tf.GradientTape step under tf.function",
            backend="tensorflow", loop="tape", needs=_K, extra="tf"),
    Variant("keras-tape-eager", "keras", "GradientTape, eager", "the same custom loop, run eagerly",
            backend="tensorflow", loop="tape", run_eagerly=True, needs=_K, extra="tf"),
    Variant("keras-jax", "keras", "backend: JAX", "the same Keras model and fit on KERAS_BACKEND=jax",
            backend="jax", needs=("keras", "jax"), extra="compare"),
    Variant("keras-torch", "keras", "backend: PyTorch", "the same Keras model and fit on KERAS_BACKEND=torch",
            backend="torch", needs=("keras", "torch"), extra="torch"),
    Variant("torch", "torch", "hand loop", "PyTorch nn.Module, hand-written loop (deploykit's train-export loop)",
            loop="torch", needs=("torch",), extra="torch"),
    Variant("torch-compile", "torch", "torch.compile", "the same loop, model wrapped in torch.compile",
            loop="torch", compile=True, needs=("torch",), extra="torch"),
    Variant("paddle", "paddle", "hand loop", "PaddlePaddle nn.Layer, hand loop; exported with paddle2onnx and proven",
            loop="paddle", needs=("paddle", "paddle2onnx"), extra="paddle"),
    Variant("tf-mwms-2", "keras", "distributed: 2 workers",
            "custom GradientTape step under tf.distribute.MultiWorkerMirroredStrategy (strategy.run; Keras 3 fit does "
            "not run under it), 2 CPU workers on loopback (TF_CONFIG)",
            backend="tensorflow", processes=2, needs=_K, extra="tf"),
    Variant("torch-ddp-2", "torch", "distributed: 2 processes",
            "the hand loop under DistributedDataParallel (gloo), 2 processes started by torchrun",
            loop="torch", processes=2, needs=("torch",), extra="torch"),
)}

# What `compare-training` runs without --variants: everything that runs in one process.
DEFAULT_VARIANTS = tuple(n for n, v in VARIANTS.items() if v.processes == 1)


def resolve_variants(names) -> list[Variant]:
    """`all` → every variant; None → the single-process ones; else a comma list of names."""
    if names is None:
        return [VARIANTS[n] for n in DEFAULT_VARIANTS]
    if names == "all" or names == ["all"]:
        return list(VARIANTS.values())
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    if not names:
        raise UsageError("--variants is empty")
    for n in names:
        if n not in VARIANTS:
            raise unknown_name("variant", n, VARIANTS)
    return [VARIANTS[n] for n in dict.fromkeys(names)]
