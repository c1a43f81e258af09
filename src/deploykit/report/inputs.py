"""What `deploykit report` reads: results files, train-export runs and model folders, told apart by content.

An argument may be
- a results file (`bench`, `loadtest`, `edge bench`, `edge check` output: `deploykit.results.ResultsFile`),
- a `train-export.json` (stage timings of one run; its models' manifests are read with it),
- a `manifest.json`, or a folder holding model folders (each model's manifest, and the `bench.json`
  that `deploykit bench` leaves beside it).
Anything else is a ManifestError naming the file: the CLI prints it as one line and exits 2.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import ValidationError

from deploykit.errors import ManifestError
from deploykit.manifest import MANIFEST_NAME, ModelManifest
from deploykit.results import ResultsFile

__all__ = ["TRAIN_EXPORT_NAME", "BENCH_NAME", "TrainExportRun", "Inputs", "load_inputs", "load_baseline", "read_any"]

TRAIN_EXPORT_NAME = "train-export.json"
BENCH_NAME = "bench.json"  # what `deploykit bench` writes into each model folder


@dataclass
class TrainExportRun:
    path: Path
    dataset: str
    wall_seconds: float | None
    stages: dict[str, float]
    failed: list[str]
    model_dirs: list[Path]
    missing: list[str]


@dataclass
class Inputs:
    results: list[tuple[Path, ResultsFile]] = field(default_factory=list)
    model_results: list[tuple[Path, ResultsFile]] = field(default_factory=list)  # bench.json beside manifests
    train_runs: list[TrainExportRun] = field(default_factory=list)
    manifests: list[tuple[Path, ModelManifest]] = field(default_factory=list)  # (model folder, manifest)
    notes: list[str] = field(default_factory=list)

    def add_results(self, path: Path, results: ResultsFile, *, beside_manifest: bool = False) -> None:
        if all(p.resolve() != path.resolve() for p, _ in self.results + self.model_results):
            (self.model_results if beside_manifest else self.results).append((path, results))

    def add_manifest(self, model_dir: Path) -> None:
        if any(d.resolve() == model_dir.resolve() for d, _ in self.manifests):
            return
        self.manifests.append((model_dir, ModelManifest.read(model_dir)))
        bench = model_dir / BENCH_NAME
        if bench.is_file():
            self.add_results(bench, _validate_results(bench, _read_json(bench)), beside_manifest=True)


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ManifestError(f"{path}: no such file") from exc
    except IsADirectoryError as exc:
        raise ManifestError(f"{path}: is a folder") from exc
    except UnicodeDecodeError as exc:
        raise ManifestError(f"{path}: not a deploykit results file (not text)") from exc
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}: not a deploykit results file (not JSON: {exc.msg} at line {exc.lineno})") from exc
    except OSError as exc:
        raise ManifestError(f"{path}: unreadable: {exc.strerror or exc}") from exc


def _validate_results(path: Path, data) -> ResultsFile:
    try:
        return ResultsFile.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "top level"
        raise ManifestError(f"{path}: not a deploykit results file ({where}: {first['msg']})") from exc


def _train_export_run(path: Path, data: dict) -> TrainExportRun:
    """The run's manifests where it wrote them, else beside the file (the folder was moved or copied)."""
    model_dirs, missing = [], []
    for listed in data.get("manifests", []):
        listed = Path(listed)
        for candidate in (listed, path.parent / listed.parent.name / MANIFEST_NAME):
            if candidate.is_file():
                model_dirs.append(candidate.parent)
                break
        else:
            missing.append(str(listed))
    stages = data.get("stages") or {}
    if not isinstance(stages, dict) or not all(isinstance(v, (int, float)) for v in stages.values()):
        raise ManifestError(f"{path}: not a train-export.json (stages must map names to seconds)")
    return TrainExportRun(path=path, dataset=str(data.get("dataset", "?")), wall_seconds=data.get("wall_seconds"),
                          stages={k: float(v) for k, v in stages.items()}, failed=list(data.get("failed") or []),
                          model_dirs=model_dirs, missing=missing)


def read_any(path: Path) -> tuple[str, object]:
    """('results', ResultsFile) | ('train-export', TrainExportRun) | ('manifest', model folder)."""
    data = _read_json(path)
    if isinstance(data, dict) and ("kind" in data or "records" in data or "steps" in data):
        return "results", _validate_results(path, data)
    if isinstance(data, dict) and "stages" in data and "dataset" in data:
        return "train-export", _train_export_run(path, data)
    if isinstance(data, dict) and "artifacts" in data and "framework" in data:
        ModelManifest.read(path)  # a clear error if it is a broken manifest
        return "manifest", path.parent
    raise ManifestError(f"{path}: not a deploykit results file, train-export.json or manifest.json")


def _add_folder(inputs: Inputs, folder: Path) -> None:
    runs = sorted(folder.rglob(TRAIN_EXPORT_NAME))
    model_dirs = sorted(m.parent for m in folder.rglob(MANIFEST_NAME))
    if not runs and not model_dirs:
        raise ManifestError(f"{folder}: no {MANIFEST_NAME} or {TRAIN_EXPORT_NAME} under this folder")
    for run_file in runs:
        _add_run(inputs, read_any(run_file)[1])
    for d in model_dirs:
        inputs.add_manifest(d)


def _add_run(inputs: Inputs, run: TrainExportRun) -> None:
    if any(r.path.resolve() == run.path.resolve() for r in inputs.train_runs):
        return
    inputs.train_runs.append(run)
    for d in run.model_dirs:
        inputs.add_manifest(d)
    if run.missing:
        inputs.notes.append(f"{run.path}: {len(run.missing)} manifest(s) it lists were not found "
                            f"(neither where written nor beside it): {', '.join(run.missing)}")


def load_inputs(paths: list[Path], model_dirs: list[Path] = ()) -> Inputs:
    """Read every argument (and every `--models` folder); the first bad one raises ManifestError."""
    if not paths and not model_dirs:
        raise ManifestError("nothing to report: give results files, train-export.json files or model folders")
    inputs = Inputs()
    for raw in list(paths) + list(model_dirs):
        path = Path(raw)
        if not path.exists():
            raise ManifestError(f"{path}: no such file or folder")
        if path.is_dir():
            _add_folder(inputs, path)
            continue
        what, value = read_any(path)
        if what == "results":
            inputs.add_results(path, value)
        elif what == "train-export":
            _add_run(inputs, value)
        else:
            inputs.add_manifest(value)
    return inputs


def load_baseline(paths: list[Path]) -> list[tuple[Path, ResultsFile]]:
    """Baseline results files (bench, edge-bench or loadtest output)."""
    found = []
    for raw in paths:
        path = Path(raw)
        if not path.is_file():
            raise ManifestError(f"--baseline {path}: no such file")
        what, value = read_any(path)
        if what != "results":
            raise ManifestError(f"--baseline {path}: a {what} file has no measurements to compare; give a results file")
        found.append((path, value))
    return found
