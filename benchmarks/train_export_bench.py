"""Benchmark: wall time of `train-export` broken down by stage, against the raw training loops inside it.

Target (issue #2): the whole run within 1.5× the sum of the raw training loops it contains, i.e.
export, validation and bookkeeping must not dominate. Also prints the per-model comparison the source
articles care about: training seconds and accuracy per framework and Keras API, side by side.

    .venv/bin/python benchmarks/train_export_bench.py                  # mnist, pipeline defaults
    .venv/bin/python benchmarks/train_export_bench.py --dataset fashion-mnist --epochs 2

Runs the same code path as `deploykit train-export` (deploykit.pipeline.train_export) in a temp
folder, with a temp BentoML home, and writes the figures as JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Measure the local path (cache, system folders, fallback) rather than a mirror's latency; set
# DEPLOYKIT_OFFLINE=0 to include the download attempt in the data stage.
os.environ.setdefault("DEPLOYKIT_OFFLINE", "1")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--epochs", type=int, default=None, help="default: the pipeline's (10)")
    parser.add_argument("--models", default="all")
    parser.add_argument("--formats", default="all")
    parser.add_argument("--json", type=Path, default=Path("train-export-bench.json"))
    args = parser.parse_args()

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from pipelines import PIPELINES

    from deploykit.console import RichReporter
    from deploykit.manifest import ModelManifest
    from deploykit.pipeline import train_export

    p = PIPELINES[args.dataset]
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["BENTOML_HOME"] = str(Path(tmp) / "bentoml")
        start = time.perf_counter()
        summary = train_export(args.dataset, models=args.models, formats=args.formats, epochs=args.epochs or p.epochs,
                               batch_size=p.batch_size, seed=p.seed, out=Path(tmp) / "models",
                               qat_epochs=p.qat_epochs, calibration_samples=p.calibration_samples,
                               qat_samples=p.qat_samples, reporter=RichReporter())
        wall = time.perf_counter() - start
        manifests = [ModelManifest.read(m) for m in summary.manifests]

    by_kind: dict[str, float] = defaultdict(float)
    by_format: dict[str, float] = defaultdict(float)
    for key, seconds in summary.stages.items():
        kind = key.split(":")[0]
        by_kind[kind] += seconds
        if kind in ("export", "validate"):
            by_format[key.split(":")[2]] += seconds
    train = by_kind["train"]
    ratio = wall / train if train else float("inf")

    print(f"\ntrain-export {args.dataset}: wall {wall:.1f} s; raw training loops {train:.1f} s; ratio {ratio:.2f} "
          f"(target ≤ 1.5) -> {'MET' if ratio <= 1.5 else 'NOT MET'}")
    print("\nby stage:")
    for kind, seconds in sorted(by_kind.items(), key=lambda kv: -kv[1]):
        print(f"  {kind:<10} {seconds:8.1f} s  {seconds / wall:6.1%}")
    other = wall - sum(by_kind.values())
    print(f"  {'other':<10} {other:8.1f} s  {other / wall:6.1%}  (imports, progress, table)")
    print("\nexport + validation by format (all models):")
    for fmt, seconds in sorted(by_format.items(), key=lambda kv: -kv[1]):
        print(f"  {fmt:<15} {seconds:7.1f} s")
    print("\ntraining per model (the framework / Keras-API comparison):")
    print(f"  {'model':<18}{'framework':<10}{'api':<12}{'epochs':>7}{'seconds':>9}{'s/epoch':>9}{'accuracy':>10}")
    rows = []
    for m in manifests:
        t = m.training
        rows.append({"model": m.model, "framework": m.framework, "api": t.extra.get("api"), "epochs": t.epochs,
                     "seconds": t.seconds, "accuracy": t.accuracy})
        print(f"  {m.model:<18}{m.framework:<10}{t.extra.get('api', ''):<12}{t.epochs:>7}{t.seconds:>9.1f}"
              f"{t.seconds / t.epochs:>9.2f}{t.accuracy:>10.2%}")
    print(f"\ndata: {manifests[0].dataset.source} ({manifests[0].dataset.train_samples} train / "
          f"{manifests[0].dataset.test_samples} test) on {os.cpu_count()} cores")
    args.json.write_text(json.dumps({
        "dataset": args.dataset, "wall_seconds": wall, "train_seconds": train, "ratio": ratio, "target": 1.5,
        "by_stage": by_kind, "by_format": by_format, "models": rows, "stages": summary.stages,
        "failed": summary.failed}, indent=2) + "\n")
    print(f"figures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
