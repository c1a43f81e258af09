"""What a .tflite file asks of a runtime: its operator codes with versions, and the minimum runtime
version the converter recorded in it.

Read with the flatbuffers schema module that LiteRT ships (`ai_edge_litert.schema_py_generated`,
generated from TFLite's `schema.fbs`; TensorFlow ships the same module), not by hand: it is generated
from the schema every runtime uses, so new fields and ops come with a package upgrade.
"""

from __future__ import annotations

import importlib
import struct
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from deploykit.errors import ArtifactLoadError, ManifestError, MissingDependency

__all__ = ["OpCode", "TfliteInfo", "inspect_tflite", "version_tuple"]

_SCHEMA_MODULES = ("ai_edge_litert.schema_py_generated", "tensorflow.lite.python.schema_py_generated")
# `OperatorCode.version` is field 2 of the table in schema.fbs (deprecated_builtin_code, custom_code,
# version, builtin_code): vtable slot 4 + 2 × 2. The runner patches it in place when probing (see
# runner.probe_missing_ops); the offset is checked against the value the generated reader returns.
_VERSION_SLOT = 8
_PLACEHOLDER_FOR_GREATER_OP_CODES = 127


@dataclass
class OpCode:
    index: int
    name: str
    builtin_code: int
    version: int
    custom_code: Optional[str] = None
    version_offset: Optional[int] = None  # byte offset of the version field, None when it is not stored

    def label(self) -> str:
        return f"{self.name} v{self.version}"


@dataclass
class TfliteInfo:
    path: str
    bytes: int
    ops: list[OpCode] = field(default_factory=list)
    min_runtime_version: Optional[str] = None  # the "min_runtime_version" metadata the converter writes
    schema_version: Optional[int] = None
    description: Optional[str] = None

    def op_labels(self) -> list[str]:
        return [op.label() for op in self.ops]

    def as_job_ops(self) -> list[dict]:
        return [asdict(op) for op in self.ops]


def _schema():
    for name in _SCHEMA_MODULES:
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise MissingDependency("ai-edge-litert (its TFLite schema reader, with flatbuffers)", "tf")


def version_tuple(text: Optional[str]) -> Optional[tuple[int, ...]]:
    """'2.17.0' → (2, 17, 0); None for anything that does not start with a number."""
    if not text:
        return None
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit()) if piece[:1].isdigit() else ""
        if not digits:
            break
        parts.append(int(digits))
    return tuple(parts) or None


def inspect_tflite(path: Path | str) -> TfliteInfo:
    """Parse a .tflite flatbuffer: operator codes (name, version, where the version is stored) and
    the converter's minimum-runtime record."""
    schema = _schema()
    path = Path(path)
    try:
        buf = path.read_bytes()
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc}") from exc
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise ManifestError(f"{path} is not a TFLite flatbuffer (no TFL3 identifier)")
    try:
        return _parse(schema, path, buf)
    except (struct.error, IndexError, ValueError, TypeError, UnicodeDecodeError) as exc:
        # flatbuffers reads offsets the file promises: a truncated file reads past its end.
        raise ArtifactLoadError(f"{path.name}: damaged TFLite flatbuffer ({type(exc).__name__}: "
                                f"{str(exc).splitlines()[0][:160] if str(exc) else 'unreadable'})") from exc


def _parse(schema, path: Path, buf: bytes) -> "TfliteInfo":
    model = schema.Model.GetRootAs(buf, 0)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    info = TfliteInfo(path=str(path), bytes=len(buf), schema_version=model.Version())
    for i in range(model.OperatorCodesLength()):
        oc = model.OperatorCodes(i)
        # Codes above 127 live in `builtin_code`; older files only fill `deprecated_builtin_code`
        # (the rule of tflite's schema_util.get_builtin_code_from_operator_code).
        code = max(oc.BuiltinCode(), oc.DeprecatedBuiltinCode())
        if oc.DeprecatedBuiltinCode() == _PLACEHOLDER_FOR_GREATER_OP_CODES:
            code = oc.BuiltinCode()
        custom = oc.CustomCode()
        name = names.get(code, f"BUILTIN_{code}")
        if custom:
            name = custom.decode(errors="replace")
        rel = oc._tab.Offset(_VERSION_SLOT)
        offset = oc._tab.Pos + rel if rel else None
        if offset is not None and int.from_bytes(buf[offset:offset + 4], "little", signed=True) != oc.Version():
            offset = None  # the schema moved the field: no probing rather than patching the wrong bytes
        info.ops.append(OpCode(index=i, name=name, builtin_code=code, version=oc.Version(),
                               custom_code=custom.decode(errors="replace") if custom else None,
                               version_offset=offset))
    for i in range(model.MetadataLength()):
        md = model.Metadata(i)
        if md.Name() == b"min_runtime_version":
            data = model.Buffers(md.Buffer()).DataAsNumpy()
            if not isinstance(data, int):  # flatbuffers returns 0 for an empty vector
                info.min_runtime_version = bytes(data).split(b"\0", 1)[0].decode(errors="replace") or None
    if model.Description():
        info.description = model.Description().decode(errors="replace")
    return info
