"""Format registry. Each module registers its exporters on import; heavy frameworks are imported
inside `export()`, so listing formats costs nothing."""

from __future__ import annotations

import importlib

from deploykit.errors import unknown_name
from deploykit.export.base import EXPORTERS, ExportContext, Exporter, ExportResult

__all__ = ["EXPORTERS", "ExportContext", "Exporter", "ExportResult", "get_exporter", "resolve_formats", "format_names"]

_MODULES = ("savedmodel", "tflite", "tflite_qat", "onnx", "onnx_int8", "torchscript")
for _m in _MODULES:
    importlib.import_module(f"deploykit.export.{_m}")


def format_names() -> list[str]:
    return list(EXPORTERS)


def get_exporter(key: str) -> type[Exporter]:
    if key not in EXPORTERS:
        raise unknown_name("format", key, EXPORTERS)
    return EXPORTERS[key]


def resolve_formats(names: str | list[str] | None, framework: str, architecture: str) -> list[type[Exporter]]:
    """`all`/None → every format that applies to the model; otherwise the named ones that apply.

    An unknown name is an error; a known format that does not apply to this model (e.g. tflite for
    a torch model) is skipped, so one `--formats` list can serve a mixed set of models.
    """
    if names is None or names == "all" or names == ["all"]:
        return [cls for cls in EXPORTERS.values() if cls.applies(framework, architecture)]
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    chosen = [get_exporter(n) for n in names]
    return [cls for cls in chosen if cls.applies(framework, architecture)]
