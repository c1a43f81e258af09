"""TensorFlow SavedModel from a Keras 3 model, plus the helpers every exporter shares.

The SavedModel is what TF Serving runs and the source the TFLite converters read. Shared helpers:
`captured_output` keeps converter noise (TF's C++ log, absl, tf2onnx, Python warnings) off the
user's terminal and hands it back for the error message when a conversion fails; `export_error`
builds that message; `tool_versions` records converter versions; `replace_path` writes an artifact
so a reader never sees half of one.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
import tempfile
import warnings
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Iterator, Optional

from deploykit.errors import ExportError, MissingDependency, RuntimeUnavailable
from deploykit.export.base import ExportContext, Exporter, ExportResult, register
from deploykit.fileperm import publish
from deploykit.manifest import InputSpec, OutputSpec

__all__ = [
    "SavedModelExporter",
    "CapturedOutput",
    "captured_output",
    "export_error",
    "import_tf",
    "tool_versions",
    "replace_path",
    "write_saved_model",
    "saved_model_for",
    "keras_input_signature",
]

# Python loggers that converters talk through; quieted to ERROR while a conversion runs.
_NOISY_LOGGERS = ("tensorflow", "absl", "tf2onnx", "onnxruntime", "torch.onnx", "torch.export", "onnxscript", "root")


class CapturedOutput:
    """What a conversion printed (file descriptors 1 and 2, plus Python warnings)."""

    def __init__(self) -> None:
        self.text = ""

    def tail(self, lines: int = 4, width: int = 400) -> str:
        kept = [ln.strip() for ln in self.text.splitlines() if ln.strip()][-lines:]
        out = " | ".join(kept)
        return out if len(out) <= width else "…" + out[-width:]


@contextmanager
def captured_output() -> Iterator[CapturedOutput]:
    """Redirect fds 1/2 to a temp file and record warnings; `.text` is filled on exit.

    Works at the descriptor level because TF and onnxruntime log from C++. Not thread-safe (it
    swaps process-wide descriptors); exporters run one at a time.
    """
    log = CapturedOutput()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    saved = [os.dup(1), os.dup(2)]
    levels = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    with tempfile.TemporaryFile() as sink, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for name in _NOISY_LOGGERS:
            logging.getLogger(name).setLevel(logging.ERROR)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield log
        finally:
            for stream in (sys.stdout, sys.stderr):
                stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            for name, level in levels.items():
                logging.getLogger(name).setLevel(level)
            sink.seek(0)
            text = sink.read().decode("utf-8", errors="replace")
            notes = "".join(f"{w.category.__name__}: {w.message}\n" for w in caught)
            log.text = text + notes


def _strip_mlir_locations(text: str) -> str:
    """Drop MLIR `loc(...)` blocks and `<unknown>:0:` prefixes: they bury the TFLite converter's reason."""
    out, i = [], 0
    while i < len(text):
        if text.startswith("loc(", i):
            depth, i = 1, i + 4
            while i < len(text) and depth:
                depth += {"(": 1, ")": -1}.get(text[i], 0)
                i += 1
            continue
        out.append(text[i])
        i += 1
    text = re.sub(r"\x1b\[[0-9;]*m", "", "".join(out))  # and terminal colours (torch.export's messages)
    return text.replace("<unknown>:0: ", "").replace(": : ", ": ")


def export_error(fmt: str, what: str, exc: BaseException, log: Optional[CapturedOutput] = None) -> ExportError:
    """ExportError("<format>: <what>: <reason>"), with the converter's last log lines when it printed any."""
    reason = " ".join(_strip_mlir_locations(str(exc)).split()) or type(exc).__name__
    if len(reason) > 500:
        reason = reason[:500] + "…"
    msg = f"{fmt}: {what}: {reason}"
    if log is not None and log.text.strip():
        msg += f" [converter log: {log.tail()}]"
    err = ExportError(msg)
    err.converter_log = log.text if log is not None else ""  # the whole log, for whoever wants it
    return err


def tool_versions(*dists: str) -> dict[str, str]:
    """Installed versions of the named distributions (absent ones are left out)."""
    found = {}
    for dist in dists:
        try:
            found[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return found


def import_tf():
    """tensorflow, imported the runtime's quiet way (no start-up chatter on the terminal)."""
    from deploykit.runtimes.tensorflow_rt import import_tf as quiet_import

    try:
        return quiet_import()
    except RuntimeUnavailable as exc:
        raise MissingDependency("tensorflow", "tf") from exc


def replace_path(tmp: Path, final: Path) -> Path:
    """Move a finished file or folder into place, replacing an older artifact of the same name."""
    final.parent.mkdir(parents=True, exist_ok=True)
    if final.is_dir():
        shutil.rmtree(final)
    elif final.exists():
        final.unlink()
    publish(tmp)  # mkstemp/mkdtemp made it 0600/0700
    os.replace(tmp, final)  # same file system: callers make `tmp` beside `final`
    return final


def keras_input_signature(tf, spec: InputSpec):
    """The serving signature: the model's own input with a dynamic batch dimension."""
    return [tf.TensorSpec([None, *spec.shape[1:]], tf.as_dtype(spec.dtype), name=spec.name)]


def write_saved_model(tf, model, spec: InputSpec, path: Path) -> None:
    """Write `model` as a SavedModel whose serving_default takes one tensor named `spec.name`."""
    signature = keras_input_signature(tf, spec)
    if hasattr(model, "export"):  # Keras 3
        model.export(str(path), format="tf_saved_model", input_signature=signature, verbose=False)
        return
    fn = tf.function(lambda x: model(x, training=False), input_signature=signature)
    tf.saved_model.save(model, str(path), signatures=fn.get_concrete_function())


def saved_model_for(ctx: ExportContext, tmp: Path, fmt: str) -> Path:
    """The SavedModel exported earlier in this run, or a fresh one written under `tmp`."""
    earlier = ctx.produced.get("savedmodel")
    if earlier is not None and Path(earlier).is_dir():
        return Path(earlier)
    tf = import_tf()
    path = Path(tmp) / "savedmodel"
    with captured_output() as log:
        try:
            write_saved_model(tf, ctx.model, ctx.input, path)
        except Exception as exc:  # Keras/TF raise many types; wrapped with the cause kept
            raise export_error(fmt, "could not write the intermediate SavedModel", exc, log) from exc
    return path


def _spec_shape(tensor_spec) -> list[Optional[int]]:
    return [None if d is None else int(d) for d in tensor_spec.shape.as_list()]


@register
class SavedModelExporter(Exporter):
    key = "savedmodel"
    frameworks = frozenset({"keras"})
    runtime = "tensorflow"
    filename = "savedmodel"
    description = "TensorFlow SavedModel (serving_default signature), what TF Serving runs"

    def export(self, ctx: ExportContext) -> ExportResult:
        tf = import_tf()
        final = Path(ctx.out_dir) / self.filename
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".savedmodel.", dir=final.parent))
        try:
            with captured_output() as log:
                try:
                    write_saved_model(tf, ctx.model, ctx.input, tmp / "sm")
                    fn = tf.saved_model.load(str(tmp / "sm")).signatures["serving_default"]
                except Exception as exc:  # wrapped, cause kept
                    raise export_error(self.key, "export failed", exc, log) from exc
            inputs, outputs = fn.structured_input_signature[1], fn.structured_outputs
            if len(inputs) != 1 or len(outputs) != 1:
                raise ExportError(f"{self.key}: expected one input and one output, the signature has "
                                  f"{sorted(inputs)} → {sorted(outputs)}")
            (in_name, in_spec), (out_name, out_spec) = next(iter(inputs.items())), next(iter(outputs.items()))
            replace_path(tmp / "sm", final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        in_shape = _spec_shape(in_spec)
        dynamic = in_shape[0] is None
        return ExportResult(
            path=final,
            input=InputSpec(name=in_name, shape=in_shape, layout=ctx.input.layout, dtype=in_spec.dtype.name),
            output=OutputSpec(name=out_name, shape=_spec_shape(out_spec), dtype=out_spec.dtype.name),
            dynamic_batch=dynamic,
            dynamic_batch_note=None if dynamic else "the serving signature has a fixed batch dimension",
            tool_versions=tool_versions("tensorflow", "keras"),
        )
