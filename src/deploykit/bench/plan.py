"""What `bench` measures: the arguments' model folders, and one job per artifact × threads × batch."""

from __future__ import annotations

from pathlib import Path

from deploykit.errors import ManifestError, UsageError
from deploykit.manifest import MANIFEST_NAME, ArtifactEntry, ModelManifest, find_manifests

from deploykit.bench.settings import BenchJob, BenchSettings

__all__ = ["resolve_model_dirs", "plan_jobs"]


def resolve_model_dirs(paths: list[str]) -> tuple[list[Path], list[str], set[Path]]:
    """Arguments → model folders (a model folder, a folder of them, a manifest.json, or a BentoML tag).

    Returns (folders, notes, folders from the BentoML store). A regular file that is not a manifest
    (`models/mnist/train-export.json` caught by a shell glob) is skipped with a note; a path that does
    not exist and is not a tag, or a folder without any manifest, is an error.
    """
    from deploykit.store import resolve_model_dir

    dirs: list[Path] = []
    notes: list[str] = []
    stored: set[Path] = set()
    for arg in paths:
        p = Path(arg)
        if p.is_file() and p.name != MANIFEST_NAME:
            notes.append(f"ignored {p}: not a model folder")
        elif p.exists():
            dirs.extend(find_manifests([p]))
        else:
            d = resolve_model_dir(arg)  # a BentoML tag, or a ManifestError naming the argument
            dirs.append(d)
            stored.add(d.resolve())
    unique = list({d.resolve(): d for d in dirs}.values())
    if not unique:
        raise ManifestError(f"no model folder among {', '.join(paths)}")
    return unique, notes, stored


def plan_jobs(model_dirs: list[Path], settings: BenchSettings) -> tuple[list[tuple[ModelManifest, ArtifactEntry, BenchJob]], list[str]]:
    """Every (artifact, threads, batch) to measure, and notes on what was left out and why."""
    jobs, notes = [], []
    for model_dir in model_dirs:
        manifest = ModelManifest.read(model_dir)
        if settings.formats is None:
            entries = manifest.passed
            for a in manifest.artifacts:
                if a.status != "passed":
                    notes.append(f"{manifest.model}/{a.format} not measured: status {a.status}"
                                 f"{' (' + a.error[:120] + ')' if a.error else ''}; name it in --formats to measure it anyway")
        else:
            have = {a.format: a for a in manifest.artifacts}
            entries = [have[f] for f in settings.formats if f in have]
            missing = [f for f in settings.formats if f not in have]
            if missing:
                notes.append(f"{manifest.model} has no {', '.join(missing)} artifact")
        for entry in entries:
            for threads in settings.threads:
                for batch in settings.batch_sizes:
                    jobs.append((manifest, entry, BenchJob(
                        model_dir=str(model_dir), format=entry.format, device=settings.device, threads=threads,
                        batch=batch, **settings.protocol_settings())))
    if not jobs:
        asked = ", ".join(settings.formats) if settings.formats else "passed artifacts"
        raise UsageError(f"nothing to measure: no {asked} in {', '.join(map(str, model_dirs))}")
    return jobs, notes
