"""What an .onnx file asks of ONNX Runtime: its opsets and operator types (read with the `onnx`
package, graph only: weights are not loaded). The counterpart of `tflite_file` for `edge check|bench`
of ONNX artifacts (PyTorch models reach a device this way)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from deploykit.errors import ArtifactLoadError

__all__ = ["OnnxInfo", "inspect_onnx"]


@dataclass
class OnnxInfo:
    path: str
    bytes: int
    opsets: dict[str, int] = field(default_factory=dict)  # domain ("" = ai.onnx) → version
    ir_version: Optional[int] = None
    op_types: list[str] = field(default_factory=list)
    min_runtime_version: Optional[str] = None  # ONNX files record none; kept for the verdict's shape

    def op_labels(self) -> list[str]:
        opsets = [f"{d or 'ai.onnx'} opset {v}" for d, v in sorted(self.opsets.items())]
        return opsets + [f"IR {self.ir_version}"] + self.op_types

    def as_job_ops(self) -> list[dict]:
        return []  # op-version probing is TFLite's (the runner patches flatbuffers)


def inspect_onnx(path: Path) -> OnnxInfo:
    import onnx  # a core dependency of deploykit

    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - onnx raises DecodeError and others: not an ONNX model
        raise ArtifactLoadError(f"{path.name} is not an ONNX model: {type(exc).__name__}: {str(exc)[:200]}") from exc
    return OnnxInfo(path=str(path), bytes=path.stat().st_size,
                    opsets={o.domain: int(o.version) for o in model.opset_import}, ir_version=int(model.ir_version),
                    op_types=sorted({n.op_type for n in model.graph.node}))
