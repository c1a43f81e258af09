"""train-export: dataset → trained model → artifacts, each proven → manifest (+ BentoML model store).

`export_and_prove` is shared by `train-export` (reference models) and `export` (a user's model).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol

import numpy as np

from deploykit import __version__
from deploykit.errors import DeployKitError, RuntimeUnavailable, UsageError
from deploykit.export import ExportContext, resolve_formats
from deploykit.export.savedmodel import replace_path
from deploykit.isolate import Bars, validate_artifact
from deploykit.runtimes.base import one_line
from deploykit.manifest import (REFERENCE_NAME, ArtifactEntry, DataInfo, ModelManifest, TrainingInfo,
                                atomic_write_text, carry_over_entries, path_bytes, remove_previous, sha256_file)
from deploykit.runtimes import get_runtime
from deploykit.validate import PARITY_SAMPLES

__all__ = ["Reporter", "QuietReporter", "RunSummary", "export_and_prove", "train_export", "check_out_dir",
           "export_samples", "save_framework_model", "write_reference"]


class Reporter(Protocol):
    """What the pipeline tells its user; the CLI draws progress bars from these calls."""

    def note(self, message: str) -> None: ...
    def stage(self, name: str, total: Optional[int] = None) -> None: ...
    def advance(self, detail: str = "") -> None: ...
    def done(self) -> None: ...


class QuietReporter:
    def note(self, message: str) -> None:
        pass

    def stage(self, name: str, total: Optional[int] = None) -> None:
        pass

    def advance(self, detail: str = "") -> None:
        pass

    def done(self) -> None:
        pass


@dataclass
class RunSummary:
    """What one train-export run did, with its wall time broken down by stage (the benchmark reads it)."""

    dataset: str
    out: Path
    manifests: list[Path] = field(default_factory=list)
    stages: dict[str, float] = field(default_factory=dict)  # "data", "train:<model>", "export:<model>:<fmt>", ...
    wall_seconds: float = 0.0
    failed: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"dataset": self.dataset, "out": str(self.out), "wall_seconds": self.wall_seconds,
                "manifests": [str(p) for p in self.manifests], "stages": self.stages, "failed": self.failed}


def check_out_dir(out: Path) -> Path:
    out = Path(out)
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".deploykit-write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--out {out} is not writable: {exc.strerror or exc}") from exc
    return out


def _tool_version(runtime: str) -> dict[str, str]:
    try:
        return {get_runtime(runtime).package: get_runtime(runtime).version()}
    except DeployKitError:
        return {}


def export_and_prove(
    ctx: ExportContext,
    manifest: ModelManifest,
    model_dir: Path,
    *,
    formats,
    x_test: np.ndarray,
    y_test: Optional[np.ndarray],
    reference_probs: np.ndarray,
    float_accuracy: Optional[float],
    reporter: Reporter,
    stages: dict[str, float],
    isolate: bool = True,
) -> list[ArtifactEntry]:
    """Export every format in `formats` that applies, prove each, and rewrite the manifest after each.

    Each format is isolated: any exception of its exporter, and any crash of its runtime (validation
    runs in a child process when `isolate`, see deploykit.isolate), is recorded as that format's
    `failed` with a one-line reason, and the other formats go on.
    """
    exporters = resolve_formats(formats, ctx.framework, ctx.architecture)
    reporter.stage(f"{ctx.model_name}: export + prove", total=len(exporters))
    entries = []
    for cls in exporters:
        exporter = cls()
        entry = _export_one(exporter, ctx, model_dir, x_test, y_test, reference_probs, float_accuracy, isolate)
        stages[f"export:{ctx.model_name}:{cls.key}"] = entry.export_seconds or 0.0
        stages[f"validate:{ctx.model_name}:{cls.key}"] = entry.validate_seconds or 0.0
        manifest.upsert(entry)
        manifest.write(model_dir)
        entries.append(entry)
        reporter.advance(f"{cls.key}: {entry.status}")
    reporter.done()
    if ctx.edge_runtime is not None:  # --edge-runtime: prove the TFLite artifacts in that runtime too
        from deploykit.edge.target import prove_for_edge

        manifest.edge_runtime = str(ctx.edge_runtime)
        prove_for_edge(model_dir, manifest, ctx.edge_runtime, reporter=reporter)
    return entries


def _output_meaning(ctx: ExportContext) -> str:
    if ctx.source_kind == "logits":
        return "class probabilities (softmax appended at export: the model emits logits)"
    return "class probabilities (the model's own output)"


def _export_one(exporter, ctx, model_dir, x_test, y_test, reference_probs, float_accuracy, isolate=True) -> ArtifactEntry:
    start = time.perf_counter()
    target = model_dir / exporter.filename
    base = dict(format=exporter.key, path=exporter.filename, runtime=exporter.runtime)
    try:
        result = exporter.export(ctx)
        export_seconds = time.perf_counter() - start
        ref = reference_probs if result.reference is None else result.reference(x_test[: len(reference_probs)])
    except Exception as exc:  # noqa: BLE001 - in-process export: any converter error is this format's failure
        reason = str(exc) if isinstance(exc, DeployKitError) else f"{exporter.key}: export raised {one_line(exc)}"
        return ArtifactEntry(**base, bytes=0, sha256="", input=ctx.input, status="failed", error=reason,
                             export_seconds=round(time.perf_counter() - start, 3))
    ctx.produced[exporter.key] = result.path
    if result.output is not None:
        result.output.meaning = _output_meaning(ctx)
    entry = ArtifactEntry(
        **{**base, "path": result.path.relative_to(model_dir).as_posix()},
        bytes=path_bytes(result.path), sha256=sha256_file(result.path), input=result.input, output=result.output,
        dynamic_batch=result.dynamic_batch, dynamic_batch_note=result.dynamic_batch_note,
        quantization=result.quantization, status="exported", export_seconds=round(export_seconds, 3),
        tool_versions={**result.tool_versions, **_tool_version(exporter.runtime)},
    )
    start = time.perf_counter()
    try:
        proof = validate_artifact(exporter.runtime, target if target.exists() else result.path, result.input,
                                  result.output, Bars.of(exporter), x_test, y_test, ref, float_accuracy,
                                  isolate=isolate)
    except RuntimeUnavailable as exc:
        entry.error = f"not validated: {exc}"
        entry.validate_seconds = round(time.perf_counter() - start, 3)
        return entry
    except DeployKitError as exc:
        entry.status, entry.error = "failed", f"does not load in {exporter.runtime}: {exc}"
        entry.validate_seconds = round(time.perf_counter() - start, 3)
        return entry
    entry.validate_seconds = round(time.perf_counter() - start, 3)
    entry.accuracy, entry.test_samples, entry.parity = proof.accuracy, proof.test_samples, proof.parity
    entry.status = "passed" if proof.passed else "failed"
    entry.error = "; ".join(proof.failures) or None
    return entry


def write_reference(model_dir: Path, x_uint8: np.ndarray, y: Optional[np.ndarray], probs: np.ndarray) -> str:
    """Reference inputs and framework outputs, so later stages can check parity without the framework."""
    path = model_dir / REFERENCE_NAME
    tmp = model_dir / f".{REFERENCE_NAME}.tmp.npz"
    np.savez_compressed(tmp, x=x_uint8, y=y if y is not None else np.array([], np.int64), probs=probs.astype(np.float32))
    replace_path(tmp, path)
    return REFERENCE_NAME


def train_export(
    dataset: str,
    *,
    models="all",
    formats="all",
    epochs: int,
    batch_size: int,
    seed: int,
    out: Path,
    data_dir: Optional[Path] = None,
    allow_fallback: bool = True,
    qat_epochs: int = 1,
    calibration_samples: int = 500,
    qat_samples: int = 10_000,
    store: bool = True,
    clean: bool = False,
    reporter: Optional[Reporter] = None,
    edge_runtime: Optional[str] = None,
) -> RunSummary:
    from deploykit.data import load_dataset, normalize
    from deploykit.models import resolve_models
    from deploykit.train import framework_predict, train_model

    reporter = reporter or QuietReporter()
    specs = resolve_models(models)
    for spec in specs:  # fail on an unknown format (or edge runtime) before spending minutes training
        resolve_formats(formats, spec.framework, spec.architecture)
    from deploykit.edge.target import parse_edge_runtime

    edge_spec = parse_edge_runtime(edge_runtime)
    out = check_out_dir(out)
    wall = time.perf_counter()
    summary = RunSummary(dataset=dataset, out=out)

    t = time.perf_counter()
    reporter.stage(f"loading {dataset}")
    ds = load_dataset(dataset, data_dir, allow_fallback=allow_fallback, progress=reporter.note)
    x_train, x_test = normalize(ds.x_train), normalize(ds.x_test)
    reporter.done()
    summary.stages["data"] = round(time.perf_counter() - t, 3)
    reporter.note(f"{dataset}: {len(ds.x_train)} train / {len(ds.x_test)} test images from {ds.source} ({ds.location})")
    data_info = DataInfo(name=dataset, source=ds.source, location=ds.location, train_samples=len(ds.x_train),
                         test_samples=len(ds.x_test), note=ds.note, origin=ds.origin, verified=ds.verified)
    calib_x, qat_idx = export_samples(x_train, seed, calibration_samples, qat_samples)
    n_ref = min(PARITY_SAMPLES, len(x_test))

    for spec in specs:
        model_dir = out / dataset / spec.name
        if clean:
            remove_previous(model_dir)
        model_dir.mkdir(parents=True, exist_ok=True)
        reporter.stage(f"{spec.name}: training", total=epochs)
        result = train_model(spec, x_train, ds.y_train, x_test, ds.y_test, epochs=epochs, batch_size=batch_size,
                             seed=seed, num_classes=len(ds.classes),
                             on_epoch=lambda i, n, loss, acc: reporter.advance(f"epoch {i + 1}/{n} loss {loss:.4f} acc {acc:.2%}"))
        reporter.done()
        summary.stages[f"train:{spec.name}"] = round(result.seconds, 3)
        reporter.note(f"{spec.name}: trained {epochs} epochs in {result.seconds:.1f} s, test accuracy {result.accuracy:.2%}")

        t = time.perf_counter()
        ref_probs = framework_predict(result.model, spec.framework, x_test[:n_ref].reshape(-1, *spec.input.shape[1:]))
        manifest = ModelManifest(
            model=spec.name, framework=spec.framework, architecture=spec.architecture, dataset=data_info,
            input=spec.input, classes=list(ds.classes), deploykit_version=__version__,
            training=TrainingInfo(epochs=epochs, batch_size=batch_size, seed=seed, seconds=round(result.seconds, 3),
                                  loss=result.loss, accuracy=result.accuracy,
                                  extra={"api": spec.api, "description": spec.description, "history": result.history}),
            reference=write_reference(model_dir, ds.x_test[:n_ref], ds.y_test[:n_ref], ref_probs),
        )
        save_framework_model(result.model, spec.framework, model_dir)
        # Artifacts of an earlier run stay listed, marked stale (they came from other weights) until
        # this run re-exports their format; --clean deletes them first instead.
        carry_over_entries(manifest, model_dir, same_source=False)
        manifest.write(model_dir)
        summary.stages[f"reference:{spec.name}"] = round(time.perf_counter() - t, 3)
        ctx = ExportContext(
            model=result.model, framework=spec.framework, model_name=spec.name, architecture=spec.architecture,
            input=spec.input, out_dir=model_dir, calib_x=calib_x, train_x=x_train[qat_idx], train_y=ds.y_train[qat_idx],
            seed=seed, qat_epochs=qat_epochs, batch_size=batch_size, num_classes=len(ds.classes), progress=reporter.note,
            edge_runtime=edge_spec,
        )
        entries = export_and_prove(ctx, manifest, model_dir, formats=formats, x_test=x_test, y_test=ds.y_test,
                                   reference_probs=ref_probs, float_accuracy=result.accuracy, reporter=reporter,
                                   stages=summary.stages)
        summary.failed += [f"{spec.name}/{e.format}: {e.error}" for e in entries if e.status == "failed"]
        if store:
            t = time.perf_counter()
            from deploykit.store import save_to_bentoml

            save_to_bentoml(model_dir, manifest, name=f"{dataset}-{spec.name}")  # also rewrites the manifest
            summary.stages[f"store:{spec.name}"] = round(time.perf_counter() - t, 3)
        summary.manifests.append(model_dir / "manifest.json")

    summary.wall_seconds = round(time.perf_counter() - wall, 3)
    atomic_write_text(out / dataset / "train-export.json", json.dumps(summary.to_json(), indent=2) + "\n")
    return summary


def export_samples(x_train: np.ndarray, seed: int, calibration_samples: int, qat_samples: int):
    """(int8 calibration images, indices of the QAT fine-tuning images): seeded draws from the train set."""
    rng = np.random.default_rng(seed)
    calib_x = x_train[rng.choice(len(x_train), min(calibration_samples, len(x_train)), replace=False)]
    return calib_x, rng.choice(len(x_train), min(qat_samples, len(x_train)), replace=False)


def save_framework_model(model: Any, framework: str, model_dir: Path) -> None:
    """Keep the trained framework model too (Keras `.keras`, torch/Paddle weights-only state dict)."""
    if framework == "keras":
        model.save(model_dir / "model.keras")
    elif framework == "paddle":
        import paddle

        paddle.save(model.state_dict(), str(model_dir / "model.pdparams"))
    else:
        import torch

        torch.save(model.state_dict(), model_dir / "model.pt")
