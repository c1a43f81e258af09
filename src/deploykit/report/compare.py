"""Merge what was read into one comparison (`Report`): every figure with the source that measured it.

Merging rules:
- every record becomes a row, including unavailable and failed ones (with their reason);
- a record that appears twice (a model folder's `bench.json` is a copy of part of the run's results
  file) is kept once;
- an edge-check verdict is attached to the latency rows of the same (dataset, model, format) on the
  same target, so each artifact shows its compatibility next to its latency; a row with a verdict of
  its own (an emulation or a device run checks too) keeps it and shows the check's beside it, marked
  when they disagree; a verdict with no latency to sit beside stays a row of its own;
- size, accuracy and parity come from the records (bench copies them from the manifest); where a
  record lacks them and the manifest was given, the manifest fills them in.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Optional

from deploykit import __version__
from deploykit.manifest import ModelManifest
from deploykit.results import BenchRecord, MachineInfo, ResultsFile
from deploykit.noise import figure_spread
from deploykit.report.baseline import compare_with_baseline
from deploykit.report.inputs import Inputs
from deploykit.report.schema import (ArtifactRow, Compat, LatencyRow, LoadRow, Report, Source, TrainingRow,
                                     TrainRun)

__all__ = ["machine_label", "normalise_compat", "build_report", "report_json"]

_OK_WORDS = {"compatible", "ok", "pass", "passed", "supported", "yes", "true", "runs"}
_BAD_WORDS = {"incompatible", "fail", "failed", "unsupported", "no", "false", "error"}


def machine_label(m: Optional[MachineInfo]) -> str:
    if m is None:
        return "—"
    what = m.board or m.cpu_model
    if m.gpu:
        what = f"{what} + {m.gpu}"
    return f"{what} ({m.hostname})"


def normalise_compat(raw: dict, source: str) -> Compat:
    """Edge-check verdicts into one shape: a verdict word, whether it runs, and why.

    Reads the common spellings (`verdict`/`status`/`result`, a boolean `compatible`/`ok`, reasons as
    `reason`/`detail`/`message`/`error`/`reasons`, op lists as `unsupported_ops`/`lacking_ops`/`missing_ops`
    of names or {op, version}) so the report keeps working if the edge check adds fields.
    """
    verdict = next((str(raw[k]) for k in ("verdict", "status", "result") if raw.get(k) is not None), None)
    ok = next((bool(raw[k]) for k in ("compatible", "ok", "passed", "runs") if isinstance(raw.get(k), bool)), None)
    if ok is None and verdict is not None:
        word = verdict.strip().lower()
        ok = True if word in _OK_WORDS else False if word in _BAD_WORDS else None
    if verdict is None:
        verdict = "compatible" if ok else "incompatible" if ok is False else "unknown"
    details = [str(raw[k]) for k in ("reason", "detail", "details", "message", "note", "error") if raw.get(k)]
    if raw.get("reasons"):
        details.append("; ".join(map(str, raw["reasons"])) if isinstance(raw["reasons"], list) else str(raw["reasons"]))
    for key in ("unsupported_ops", "lacking_ops", "missing_ops"):
        if raw.get(key):
            ops = raw[key] if isinstance(raw[key], list) else [raw[key]]
            details.append(f"{key.replace('_', ' ')}: " + ", ".join(_op_text(o) for o in ops))
    return Compat(verdict=verdict, ok=ok, detail="; ".join(details) or None, source=source, raw=raw)


def _op_text(op) -> str:
    """'GELU', or {'op': 'FULLY_CONNECTED', 'version': 12} → 'FULLY_CONNECTED v12'."""
    if isinstance(op, dict):
        name = op.get("op") or op.get("name") or op.get("builtin_code") or "?"
        return f"{name} v{op['version']}" if op.get("version") is not None else str(name)
    return str(op)


def _row(sid: str, results: ResultsFile, r: BenchRecord) -> LatencyRow:
    import_ms = r.import_ms if r.import_ms is not None else r.extra.get("import_ms")  # files before the field
    return LatencyRow(
        source=sid, kind=results.kind, machine=machine_label(results.machine), host=results.machine.hostname,
        target=r.target, emulated=r.emulated,
        label=r.label, dataset=r.dataset, model=r.model, format=r.format, runtime=r.runtime,
        runtime_version=r.runtime_version, device=r.device, threads=r.threads, batch=r.batch, status=r.status,
        reason=r.reason, latency=r.latency, throughput_sps=r.throughput_sps,
        process_start_ms=r.process_start_ms, import_ms=import_ms, load_ms=r.load_ms,
        first_inference_ms=r.first_inference_ms, cold_start_ms=r.cold_start_ms, peak_rss_bytes=r.peak_rss_bytes,
        warmup_s=r.warmup_s, window_s=r.window_s, windows=r.windows, figure_windows=r.figure_windows,
        window_spread=figure_spread(r), stable=r.stable,
        artifact_bytes=r.artifact_bytes, accuracy=r.accuracy, max_abs_diff=r.max_abs_diff,
        top1_agreement=r.top1_agreement, compat=normalise_compat(r.compat, sid) if r.compat else None, extra=r.extra,
    )


def _target_name(target: str) -> str:
    return target.split(":", 1)[-1]


def _attach_compat(rows: list[LatencyRow]) -> list[LatencyRow]:
    checks = [r for r in rows if r.kind == "edge-check" and r.compat is not None]
    measured = [r for r in rows if r.kind != "edge-check"]
    standalone = []
    for check in checks:
        same = [r for r in measured if (r.dataset, r.model, r.format) == (check.dataset, check.model, check.format)]
        matches = [r for r in same if r.target == check.target] or \
                  [r for r in same if _target_name(r.target) == _target_name(check.target)]
        for r in matches:
            if r.compat is None:
                r.compat = check.compat
            elif r.compat.source != check.compat.source:
                # Both were measured (possibly in different runtimes): neither may hide the other.
                r.check_compat = check.compat
                r.verdicts_disagree = r.compat.ok != check.compat.ok
        if not matches or check.latency is not None:
            standalone.append(check)
    return measured + standalone + [r for r in rows if r.kind == "edge-check" and r.compat is None]


def _fill_from_manifests(rows: list[LatencyRow], manifests: list[tuple[Path, ModelManifest]]) -> None:
    by_key = {}
    for _d, m in manifests:
        for a in m.artifacts:
            by_key[(m.dataset.name if m.dataset else None, m.model, a.format)] = a
            by_key.setdefault((None, m.model, a.format), a)
    for r in rows:
        a = by_key.get((r.dataset, r.model, r.format)) or by_key.get((None, r.model, r.format))
        if a is None:
            continue
        if r.artifact_bytes is None and a.bytes:
            r.artifact_bytes = a.bytes
        if r.accuracy is None:
            r.accuracy = a.accuracy
        if r.max_abs_diff is None and a.parity:
            r.max_abs_diff, r.top1_agreement = a.parity.max_abs_diff, a.parity.top1_agreement


def _training_row(sid: str, model_dir: Path, m: ModelManifest) -> TrainingRow:
    t = m.training
    data = m.dataset
    return TrainingRow(
        source=sid, path=str(model_dir), dataset=data.name if data else None,
        data_source=(f"{data.source}: {data.train_samples:,} train / {data.test_samples:,} test" if data else None),
        model=m.model, framework=m.framework, architecture=m.architecture,
        api=(t.extra.get("api") if t else None), epochs=t.epochs if t else None, batch_size=t.batch_size if t else None,
        train_seconds=t.seconds if t else None, seconds_per_epoch=(t.seconds / t.epochs if t and t.epochs else None),
        accuracy=t.accuracy if t else None, loss=t.loss if t else None,
        artifacts=[ArtifactRow(format=a.format, runtime=a.runtime, status=a.status, bytes=a.bytes, accuracy=a.accuracy,
                               max_abs_diff=a.parity.max_abs_diff if a.parity else None,
                               top1_agreement=a.parity.top1_agreement if a.parity else None,
                               export_seconds=a.export_seconds, validate_seconds=a.validate_seconds, error=a.error)
                   for a in m.artifacts],
    )


def _row_sort_key(r: LatencyRow):
    return (r.dataset or "", r.model, r.format, r.target, r.batch, r.threads or 0, r.source)


def build_report(inputs: Inputs, baseline: list[tuple[Path, ResultsFile]] = ()) -> Report:
    sources: list[Source] = []
    rows: list[LatencyRow] = []
    load_rows: list[LoadRow] = []
    notes = list(inputs.notes)
    seen_records: set[str] = set()
    compared: list[tuple[str, ResultsFile]] = []  # compare-training files: the Frameworks section
    duplicates = 0
    # Results files first, then the bench.json copies beside manifests: a copy adds only records the
    # results files do not already hold (a real record is unique: its timings and measured_at differ).
    for origin, path, results in [("run", p, r) for p, r in inputs.results] + \
                                 [("copy", p, r) for p, r in inputs.model_results]:
        fresh = []
        for r in results.records:
            fingerprint = results.machine.hostname + r.model_dump_json()
            if origin == "copy" and fingerprint in seen_records:
                duplicates += 1
                continue
            seen_records.add(fingerprint)
            fresh.append(r)
        if origin == "copy" and not fresh:
            continue
        sid = f"S{len(sources) + 1}"
        sources.append(Source(id=sid, path=str(path), kind=results.kind, created_at=results.created_at,
                              deploykit_version=results.deploykit_version, machine=results.machine,
                              settings=results.settings, notes=results.notes, url=results.url))
        rows += [_row(sid, results, r) for r in fresh]
        if results.kind == "compare-training":
            compared.append((sid, results))
        for s in results.steps:
            load_rows.append(LoadRow(source=sid, machine=machine_label(results.machine), host=results.machine.hostname,
                                     url=results.url, **s.model_dump()))
    if duplicates:
        notes.append(f"{duplicates} record(s) read twice (a model folder's bench.json repeats its run's results) were kept once")

    training: list[TrainingRow] = []
    train_runs: list[TrainRun] = []
    for run in inputs.train_runs:
        sid = f"S{len(sources) + 1}"
        sources.append(Source(id=sid, path=str(run.path), kind="train-export",
                              notes=[f"failed: {f}" for f in run.failed]))
        train_runs.append(TrainRun(source=sid, dataset=run.dataset, wall_seconds=run.wall_seconds, stages=run.stages,
                                   failed=run.failed, missing_manifests=run.missing))
    folder_source: dict[Path, str] = {}
    for run, tr in zip(inputs.train_runs, train_runs):
        for d in run.model_dirs:
            folder_source[d.resolve()] = tr.source
    for model_dir, manifest in inputs.manifests:
        key = model_dir.resolve()
        if key not in folder_source:
            parent = model_dir.parent.resolve()
            if parent not in folder_source:
                sid = f"S{len(sources) + 1}"
                sources.append(Source(id=sid, path=str(model_dir.parent), kind="manifest"))
                folder_source[parent] = sid
            folder_source[key] = folder_source[parent]
        training.append(_training_row(folder_source[key], model_dir, manifest))

    _fill_from_manifests(rows, inputs.manifests)
    rows = sorted(_attach_compat(rows), key=_row_sort_key)
    training.sort(key=lambda t: (t.dataset or "", t.architecture, t.framework, t.model))

    unavailable = sum(r.status == "unavailable" for r in rows)
    if unavailable:
        notes.append(f"{unavailable} configuration(s) could not be measured where they ran; each row says why")
    summary = None
    if baseline:
        base_pairs = []
        for i, (path, results) in enumerate(baseline, 1):
            sid = f"B{i}"
            sources.append(Source(id=sid, role="baseline", path=str(path), kind=results.kind,
                                  created_at=results.created_at, deploykit_version=results.deploykit_version,
                                  machine=results.machine, settings=results.settings, notes=results.notes,
                                  url=results.url))
            base_pairs.append((sid, results))
        hostnames = {s.id: s.machine.hostname for s in sources if s.machine is not None}
        summary = compare_with_baseline(rows, load_rows, base_pairs, hostnames)
    from deploykit.report.frameworks import ARTICLE_FIGURES, framework_rows

    from deploykit.report.decide import decisions

    frameworks = framework_rows(compared, rows)
    report = Report(generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"), deploykit_version=__version__,
                    sources=sources, rows=rows, load_steps=load_rows, training=training, train_runs=train_runs,
                    frameworks=frameworks, article_figures=ARTICLE_FIGURES if frameworks else [],
                    baseline=summary, notes=notes)
    if any(r.status == "ok" and r.latency for r in rows):
        report.decisions = decisions(report)
    return report


def report_json(report: Report) -> str:
    return json.dumps(report.model_dump(mode="json"), indent=2, ensure_ascii=False) + "\n"
