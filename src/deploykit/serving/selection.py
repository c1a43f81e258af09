"""Which artifact to serve: a named format, or `auto` = the fastest artifact that passed validation.

`auto` looks, in this order, for
1. benchmark results: the file given as ``bench_results``, else ``MODEL_DIR/bench.json`` (what
   ``deploykit bench`` writes beside each manifest). Among records of this model with status ``ok`` on
   the serving device, for formats that passed validation and whose runtime is installed, it takes the
   lowest p50 at the smallest measured batch (batch 1 when present: a served request is small).
2. otherwise the documented order ``AUTO_ORDER`` (fastest first, from raw batch-1 latencies measured
   on these machines, see docs/serving.md): TFLite int8 → TFLite float → ONNX → ONNX int8 → TorchScript
   → anything else → SavedModel (Python TensorFlow pays milliseconds per call).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from deploykit.errors import ManifestError, RuntimeUnavailable, UsageError
from deploykit.manifest import ArtifactEntry, ModelManifest

__all__ = ["AUTO_ORDER", "Choice", "choose_format", "BENCH_FILE"]

BENCH_FILE = "bench.json"
AUTO_ORDER = (
    "tflite-int8", "tflite-qat", "tflite-fp32", "tflite-fp16", "tflite-dynamic",
    "onnx", "onnx-int8", "torchscript",
)
_LAST = ("savedmodel",)


@dataclass(frozen=True)
class Choice:
    format: str
    runtime: str
    reason: str


def _runtime_ok(entry: ArtifactEntry, device: str) -> tuple[bool, str]:
    from deploykit.runtimes import get_runtime

    try:
        return get_runtime(entry.runtime).available(device)
    except UsageError as exc:  # a runtime this version does not know
        return False, str(exc)


def choose_format(model_dir: Path, manifest: ModelManifest, requested: str = "auto", *,
                  device: str = "cpu", bench_results: Optional[Path] = None) -> Choice:
    if requested != "auto":
        entry = manifest.artifact(requested)  # unknown format → UsageError listing the known ones
        if entry.status != "passed":
            raise ManifestError(f"artifact {requested} of {manifest.model} has status {entry.status!r}"
                                f"{': ' + entry.error if entry.error else ''}; only artifacts that passed validation are served")
        ok, why = _runtime_ok(entry, device)
        if not ok:
            raise RuntimeUnavailable(f"cannot serve {requested}: {why}")
        return Choice(requested, entry.runtime, "asked for")

    passed = {entry.format: entry for entry in manifest.passed}
    if not passed:
        raise ManifestError(f"model {manifest.model} in {model_dir} has no artifact that passed validation")
    # Runtimes are checked in order of preference and only until one is usable: checking imports the
    # runtime's framework, and importing TensorFlow to rule out SavedModel would cost seconds.
    skipped: list[str] = []

    def first_usable(ranked: list[str]) -> Optional[str]:
        for fmt in ranked:
            ok, why = _runtime_ok(passed[fmt], device)
            if ok:
                return fmt
            skipped.append(f"{fmt} ({why})")
        return None

    bench = _benchmarked(model_dir, manifest, passed, device, bench_results)
    if bench is not None:
        path, records = bench
        from deploykit.fastest import by_speed, tied

        smallest = min(r.batch for r in records)
        fastest = by_speed([r for r in records if r.batch == smallest])  # deploykit.fastest: the one rule
        fmt = first_usable(list(dict.fromkeys(r.format for r in fastest)))
        if fmt is not None:
            best = next(r for r in fastest if r.format == fmt)
            ties = sorted({r.format for r in fastest if r.format != fmt and tied(best, r)})
            return Choice(fmt, passed[fmt].runtime,
                          f"fastest in {path} (p50 {best.latency.p50_us:.1f} µs at batch {smallest}, {best.runtime}, "
                          f"{_count(len({r.format for r in records}), 'format')} measured"
                          + (f"; tied within noise with {', '.join(ties)}" if ties else "") + ")")
    ranked = sorted(passed, key=_auto_rank)
    fmt = first_usable(ranked)
    if fmt is None:
        raise ManifestError(f"model {manifest.model} in {model_dir} has no artifact that passed validation and can "
                            f"run on {device}; runtimes missing: {', '.join(dict.fromkeys(skipped))}")
    return Choice(fmt, passed[fmt].runtime, f"first passed format in the default order ({', '.join(ranked)}); "
                                            f"no benchmark results")


def _auto_rank(fmt: str) -> tuple[int, str]:
    if fmt in AUTO_ORDER:
        return AUTO_ORDER.index(fmt), fmt
    if fmt in _LAST:
        return len(AUTO_ORDER) + 1 + _LAST.index(fmt), fmt
    return len(AUTO_ORDER), fmt


def _benchmarked(model_dir: Path, manifest: ModelManifest, passed: dict[str, ArtifactEntry], device: str,
                 bench_results: Optional[Path]):
    """(path, usable records) from the bench results file, or None when there is none or no record fits."""
    from deploykit.results import read_results

    path = Path(bench_results) if bench_results else Path(model_dir) / BENCH_FILE
    if not path.is_file():
        if bench_results:
            raise UsageError(f"bench results file {path} does not exist")
        return None
    results = read_results(path)  # not a results file → ManifestError naming it
    records = [r for r in results.records
               if r.status == "ok" and r.latency is not None and r.model == manifest.model
               and r.format in passed and r.device == device and not r.emulated]
    return (path, records) if records else None


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
