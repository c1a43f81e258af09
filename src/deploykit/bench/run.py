"""`deploykit bench`: the in-process runtime benchmark, one record per artifact × batch × threads × device.

Modules by job: settings (BenchSettings, BenchJob), plan (model folders → jobs), measure (one
artifact in this process), worker (one record in a fresh process), bench_file (MODEL_DIR/bench.json
and the fastest format in it); this one runs the plan and gathers the records.

What is timed: the raw runtime call on a tensor prepared once (deploykit.bench.measure). Every record
is measured in a fresh Python process (deploykit.bench.worker says why).
The process start per record is not in the latency figures; it is the first step of the cold start,
which a record gives as a user meets it: `process_start_ms` (spawn → deploykit loaded, timed on the
system-wide monotonic clock across the two processes), `import_ms` (the runtime: ~9 s for TensorFlow),
`load_ms`, `first_inference_ms`, and their sum `cold_start_ms`.

Files: `--out` (default `bench-results.json`) holds every record; each model folder also gets
`bench.json` with its own records (merged by (target, format, batch, threads) with earlier runs on
this machine), which `bench_file.fastest_format` reads — `deploykit serve --format auto` uses it.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Optional

from deploykit.results import BenchRecord, ResultsFile, machine_info

from deploykit.bench.bench_file import BENCH_FILE
from deploykit.bench.measure import base_record
from deploykit.bench.plan import plan_jobs, resolve_model_dirs
from deploykit.bench.settings import BenchSettings
from deploykit.bench.worker import run_in_worker

__all__ = ["run_bench"]


def _gpu_name() -> Optional[str]:
    """The GPU's name from nvidia-smi, where there is one (recorded with cuda runs)."""
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip().replace("\n", "; ") or None


def run_bench(paths: list[str], settings: BenchSettings, reporter=None) -> tuple[ResultsFile, dict[Path, ResultsFile]]:
    """Measure every planned record; returns (all records, per model folder its own records; model
    folders inside the BentoML store are left out of the second, since store entries are immutable).

    `reporter` has the pipeline's Reporter methods (note, stage, advance, done), or None.
    """
    from deploykit.runtimes import get_runtime

    model_dirs, notes, stored = resolve_model_dirs(paths)
    jobs, plan_notes = plan_jobs(model_dirs, settings)
    notes += plan_notes
    machine = machine_info()
    if settings.device != "cpu":
        machine.gpu = _gpu_name()
    for n in notes:
        if reporter:
            reporter.note(n)
    # Device availability is a property of the runtime: ask once per runtime, in this process, and
    # record "unavailable" with its reason without starting a worker per record.
    availability: dict[str, tuple[bool, str]] = {}
    records: list[BenchRecord] = []
    by_dir: dict[Path, list[BenchRecord]] = {}
    if reporter:
        reporter.stage(f"bench on {settings.device}", total=len(jobs))
    for manifest, entry, job in jobs:
        if settings.device != "cpu" and entry.runtime not in availability:
            availability[entry.runtime] = get_runtime(entry.runtime).available(settings.device)
        ok, why = availability.get(entry.runtime, (True, ""))
        if entry.status == "failed":
            record = BenchRecord(**base_record(manifest, entry, job, status="failed",
                                                reason=f"artifact failed export or validation: {entry.error or 'see manifest'}"))
        elif not ok:
            record = BenchRecord(**base_record(manifest, entry, job, status="unavailable", reason=why))
        else:
            record = run_in_worker(job, manifest, entry)
        records.append(record)
        by_dir.setdefault(Path(job.model_dir), []).append(record)
        if reporter:
            p50 = f"p50 {record.latency.p50_us:,.1f} µs" if record.latency else record.status
            reporter.advance(f"{manifest.model}/{entry.format} b{job.batch} t{job.threads}: {p50}")
    if reporter:
        reporter.done()
    unavailable = sorted({f"{r.runtime}: {r.reason}" for r in records if r.status == "unavailable"})
    notes += [f"unavailable on {settings.device}: {u}" for u in unavailable]
    unstable = settings.unstable_note([f"{r.model}/{r.format} b{r.batch} t{r.threads}"
                                       for r in records if r.status == "ok" and not r.stable])
    if unstable:
        notes.append(unstable)
    if stored:
        notes.append(f"no {BENCH_FILE} written into BentoML store entries (they are immutable): "
                     + ", ".join(sorted(map(str, stored))))
    settings_d = settings.as_dict()
    results = ResultsFile(kind="bench", machine=machine, settings=settings_d, notes=notes, records=records,
                          manifests=[str(d) for d in model_dirs])
    per_model = {}
    for d, recs in by_dir.items():
        if d.resolve() in stored:
            continue
        model = recs[0].model
        per_model[d] = ResultsFile(kind="bench", machine=machine, settings=settings_d, records=recs,
                                   notes=[n for n in notes if model in n], manifests=[str(d)])
    return results, per_model
