"""TorchScript: `torch.jit.trace(for_export(model))` (softmax appended to logits only), saved with `torch.jit.save`.

Tracing records the operations run on one example; a model whose code depends on the batch size
(e.g. `x.view(2, -1)`) would be specialised to it. The trace is therefore checked against the
eager model on batches of 1 and 7 (`check_inputs`), and an export that diverges fails rather than
producing an artifact that only serves one batch size.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from deploykit.errors import MissingDependency
from deploykit.export.base import ExportContext, Exporter, ExportResult, register
from deploykit.export.savedmodel import captured_output, export_error, replace_path, tool_versions
from deploykit.manifest import InputSpec, OutputSpec

__all__ = ["TorchScriptExporter"]

_CHECK_BATCHES = (1, 7)


@register
class TorchScriptExporter(Exporter):
    key = "torchscript"
    frameworks = frozenset({"torch"})
    runtime = "torch"
    filename = "model.torchscript.pt"
    description = "TorchScript archive (torch.jit.trace of the model, softmax appended to logits), loads with torch.jit.load"

    def export(self, ctx: ExportContext) -> ExportResult:
        try:
            import torch
        except ImportError as exc:
            raise MissingDependency("torch", "torch") from exc
        from deploykit.models.torch import for_export

        model = ctx.model
        was_training = getattr(model, "training", False)
        wrapped = for_export(model, ctx.source_kind).eval()
        param = next(iter(model.parameters()), None)
        device = param.device if param is not None else torch.device("cpu")
        dtype = getattr(torch, ctx.input.dtype)
        inner = list(ctx.input.shape[1:])
        gen = torch.Generator().manual_seed(ctx.seed)

        def example(n: int):
            return torch.rand([n, *inner], generator=gen, dtype=dtype).to(device)

        final = Path(ctx.out_dir) / self.filename
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", dir=final.parent)
        os.close(fd)
        try:
            with captured_output() as log:
                try:
                    with torch.no_grad():
                        traced = torch.jit.trace(wrapped, example(2),
                                                 check_inputs=[(example(n),) for n in _CHECK_BATCHES])
                        out_shape = [None, *traced(example(1)).shape[1:]]
                    torch.jit.save(traced, tmp)
                except torch.jit.TracingCheckError as exc:
                    what = f"the trace does not reproduce the model on batches {_CHECK_BATCHES} (batch-size-dependent code?)"
                    raise export_error(self.key, what, exc, log) from exc
                except Exception as exc:  # tracing raises many types; wrapped, cause kept
                    raise export_error(self.key, "torch.jit.trace failed", exc, log) from exc
                finally:
                    model.train(was_training)
            replace_path(Path(tmp), final)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return ExportResult(
            path=final,
            input=InputSpec(name=ctx.input.name, shape=[None, *inner], layout=ctx.input.layout, dtype=ctx.input.dtype),
            output=OutputSpec(name="probabilities", shape=out_shape),
            dynamic_batch=True,
            tool_versions=tool_versions("torch"),
        )
