"""MODEL_DIR/bench.json: each model folder's own `bench` records (merged with earlier runs on this
machine by (target, format, batch, threads)), and the fastest format in it, which
`deploykit serve --format auto` uses."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from deploykit.errors import ManifestError
from deploykit.manifest import ModelManifest
from deploykit.results import BenchRecord, ResultsFile

__all__ = ["BENCH_FILE", "write_model_bench_files", "fastest_format"]

BENCH_FILE = "bench.json"


def _key(r: BenchRecord) -> tuple:
    return (r.target, r.format, r.batch, r.threads)


def write_model_bench_files(per_model: dict[Path, ResultsFile]) -> list[Path]:
    """Write MODEL_DIR/bench.json for each model folder, keeping earlier records from this machine for
    combinations this run did not measure (a `--device cuda` run does not erase the CPU figures)."""
    from deploykit.results import read_results

    written = []
    for model_dir, new in per_model.items():
        path = Path(model_dir) / BENCH_FILE
        records = list(new.records)
        if path.is_file():
            try:
                old = read_results(path)
            except ManifestError:
                old = None  # an unreadable old file is replaced, not merged
            if old is not None and old.machine.hostname == new.machine.hostname:
                fresh = {_key(r) for r in records}
                records = [r for r in old.records if _key(r) not in fresh] + records
        written.append(new.model_copy(update={"records": records}).write(path))
    return written


def fastest_format(model_dir: Path | str, *, target: str = "cpu", batch: int = 1) -> Optional[str]:
    """The passed artifact with the lowest p50 at `batch` on `target` in MODEL_DIR/bench.json, or None
    when there is no such measurement (serving's `--format auto`)."""
    from deploykit.results import read_results

    path = Path(model_dir) / BENCH_FILE
    if not path.is_file():
        return None
    passed = {a.format for a in ModelManifest.read(model_dir).passed}
    candidates = [r for r in read_results(path).records
                  if r.status == "ok" and r.target == target and r.batch == batch and r.format in passed and r.latency]
    from deploykit.fastest import fastest_group

    group = fastest_group(candidates)
    return group[0].format if group else None
