"""The Exporter interface: one class per target format, registered by its key.

An exporter writes one artifact from a framework model and says how to feed it (input spec) and
how it was quantized; validation (deploykit.validate) then proves it in its own runtime against
the bars declared here as class attributes.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Optional

import numpy as np

from deploykit.manifest import InputSpec, OutputSpec

__all__ = ["Exporter", "ExportContext", "ExportResult", "EXPORTERS", "register"]

EXPORTERS: dict[str, type["Exporter"]] = {}


def register(cls: type["Exporter"]) -> type["Exporter"]:
    """Class decorator: make an exporter reachable by its `key`."""
    if cls.key in EXPORTERS:
        raise LookupError(f"two exporters claim the format key {cls.key!r}")
    EXPORTERS[cls.key] = cls
    return cls


@dataclass
class ExportContext:
    """Everything an exporter may need. Data arrays are canonical (float32 N×28×28 in [0,1])."""

    model: Any  # a built Keras 3 model, or a torch nn.Module returning logits
    framework: Literal["keras", "torch"]
    model_name: str
    architecture: str  # mlp | cnn | custom
    input: InputSpec  # the framework model's own input
    out_dir: Path
    calib_x: np.ndarray  # representative sample for int8 calibration (a few hundred train images)
    train_x: Optional[np.ndarray] = None  # for quantization-aware fine-tuning
    train_y: Optional[np.ndarray] = None
    seed: int = 0
    qat_epochs: int = 1
    batch_size: int = 32
    num_classes: int = 10
    # Produced by earlier exporters and reused (e.g. the SavedModel for tf2onnx); keyed by format.
    produced: dict[str, Path] = field(default_factory=dict)
    progress: Callable[[str], None] = lambda msg: None
    # What `model` returns (deploykit.outputs): None is the reference models' kind (torch logits,
    # Keras probabilities). Torch exporters append softmax to logits; a Keras model that emits
    # logits is handed over already wrapped in a Softmax layer (user_export does it).
    output_kind: Optional[str] = None
    # --edge-runtime: the device runtime (deploykit.edge.envs.RuntimeSpec) the artifacts must load in;
    # exporters ask deploykit.edge.target.converter_settings what that takes.
    edge_runtime: Any = None

    @property
    def source_kind(self) -> str:
        from deploykit.outputs import framework_default_kind

        return framework_default_kind(self.framework, self.output_kind)


@dataclass
class ExportResult:
    path: Path
    input: InputSpec
    output: Optional[OutputSpec] = None
    dynamic_batch: bool = True
    dynamic_batch_note: Optional[str] = None
    quantization: Optional[dict] = None
    tool_versions: dict[str, str] = field(default_factory=dict)
    # A model whose outputs the artifact should be compared with, when it is not the context's
    # model (QAT fine-tunes its own copy). Called with canonical input, returns probabilities.
    reference: Optional[Callable[[np.ndarray], np.ndarray]] = None


class Exporter(ABC):
    key: ClassVar[str]  # the format key users type
    frameworks: ClassVar[frozenset[str]]  # frameworks it exports from
    architectures: ClassVar[Optional[frozenset[str]]] = None  # None: any
    runtime: ClassVar[str]  # the runtime that loads the artifact
    filename: ClassVar[str]  # file (or folder) written in the model's folder
    precision: ClassVar[Literal["float32", "float16", "int8"]] = "float32"
    # Validation bars (issue #2): float formats top-1 ≥ 99.9 % and max |Δp| ≤ 1e-4; fp16 ≤ 1e-2;
    # int8 formats top-1 ≥ 98 % and accuracy within 1 point of float32 (no |Δp| bar).
    atol: ClassVar[Optional[float]] = 1e-4
    min_top1_agreement: ClassVar[float] = 0.999
    max_accuracy_drop_points: ClassVar[Optional[float]] = None
    description: ClassVar[str] = ""

    @classmethod
    def applies(cls, framework: str, architecture: str) -> bool:
        return framework in cls.frameworks and (cls.architectures is None or architecture in cls.architectures)

    @abstractmethod
    def export(self, ctx: ExportContext) -> ExportResult:
        """Write the artifact under ctx.out_dir / self.filename; raise ExportError with the reason."""


class Int8Exporter(Exporter, ABC):
    precision = "int8"
    atol = None
    min_top1_agreement = 0.98
    max_accuracy_drop_points = 1.0
