"""compare-training's parent: data once, every variant × net × repeat in its own child, interleaved."""

from __future__ import annotations

import importlib.util
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from deploykit.compare.variants import VARIANTS, Variant, resolve_variants
from deploykit.errors import UsageError
from deploykit.results import ResultsFile, TrainingRecord, TrainingRun, machine_info

__all__ = ["compare_training", "prepare_data", "RESULTS_NAME", "NETS", "SINGLE_PROCESS_BASE"]

RESULTS_NAME = "compare-training.json"
NETS = ("mlp", "cnn")
CHILD_TIMEOUT_S = 3600.0
# A distributed variant's scaling is measured against the one-process variant with the same loop.
SINGLE_PROCESS_BASE = {"tf-mwms-2": "keras-tape", "torch-ddp-2": "torch"}


def _resolve_nets(nets) -> list[str]:
    names = [n.strip() for n in nets.split(",")] if isinstance(nets, str) else list(nets)
    bad = [n for n in names if n not in NETS]
    if bad or not names:
        raise UsageError(f"--nets {','.join(names)!r}: choose from {', '.join(NETS)}")
    return list(dict.fromkeys(names))


def prepare_data(dataset: str, out: Path, *, epochs: int, seed: int, subset: Optional[int],
                 data_dir: Optional[Path] = None, progress: Callable[[str], None] = lambda m: None):
    """Load, normalise and subset once; one seeded order per epoch; all in OUT/data.npz for the children.
    Returns (path, data info as the manifests record it, class names)."""
    from deploykit.data import load_dataset, normalize

    ds = load_dataset(dataset, data_dir, progress=progress)
    rng = np.random.default_rng(seed)
    x_train, y_train, x_test, y_test = ds.x_train, ds.y_train, ds.x_test, ds.y_test
    if subset is not None:
        tr = np.sort(rng.choice(len(x_train), min(subset, len(x_train)), replace=False))
        te = np.sort(rng.choice(len(x_test), min(subset, len(x_test)), replace=False))
        x_train, y_train, x_test, y_test = x_train[tr], y_train[tr], x_test[te], y_test[te]
    order = np.stack([rng.permutation(len(x_train)) for _ in range(epochs)]).astype(np.int64)
    classes = list(ds.classes)
    path = out / "data.npz"
    np.savez(path, x_train=normalize(x_train), y_train=y_train.astype(np.int64), x_test=normalize(x_test),
             y_test=y_test.astype(np.int64), order=order)  # uncompressed: each child loads it fast
    info = {"name": dataset, "source": ds.source, "location": ds.location, "train_samples": len(x_train),
            "test_samples": len(x_test), "note": ds.note, "origin": ds.origin, "verified": ds.verified}
    return path, info, classes


# The [paddle] extra cannot be resolved together with deploykit's onnx pin (paddle2onnx asks onnx<=1.17):
# it installs with --no-deps, as scripts/bootstrap.sh does.
_INSTALL = {"paddle": "pip install --no-deps paddlepaddle==3.3.1 paddle2onnx==2.1.0 (see docs/frameworks.md)"}


def _missing(variant: Variant) -> Optional[str]:
    absent = [m for m in variant.needs if importlib.util.find_spec(m) is None]
    if absent:
        hint = _INSTALL.get(variant.extra) or f"pip install 'deploykit[{variant.extra}]'"
        return f"{', '.join(absent)} not installed: {hint}"
    return None


def _child_env() -> dict:
    env = dict(os.environ)
    for key in ("KERAS_BACKEND", "TF_USE_LEGACY_KERAS", "TF_CONFIG"):  # each child sets its own
        env.pop(key, None)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    return env


def run_one(variant: Variant, spec: dict, run_dir: Path, timeout: float = CHILD_TIMEOUT_S) -> dict:
    """One repeat of one variant in its own process(es); the child's result dict (status ok/failed/…)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    spec_path, out_path = run_dir / "spec.json", run_dir / "result.json"
    spec_path.write_text(json.dumps(spec))
    if variant.processes > 1:
        from deploykit.compare.distributed import launch

        return launch(variant, spec_path, run_dir, _child_env(), timeout)
    cmd = [sys.executable, "-m", "deploykit.compare.child", str(spec_path), str(out_path)]
    with open(run_dir / "log.txt", "w") as log:
        try:
            proc = subprocess.run(cmd, env=_child_env(), stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        except subprocess.TimeoutExpired:
            return {"status": "failed", "reason": f"no result within {timeout:.0f} s (log: {run_dir / 'log.txt'})"}
    if out_path.is_file():
        return json.loads(out_path.read_text())
    return {"status": "failed", "reason": f"child exited with code {proc.returncode}: {_tail(run_dir / 'log.txt')}"}


def _tail(path: Path) -> str:
    lines = [l for l in path.read_text(errors="replace").splitlines() if l.strip()]
    return lines[-1][:300] if lines else "no output"


def compare_training(dataset: str, *, nets="mlp", variants=None, epochs: int = 2, repeats: int = 1,
                     threads: Optional[int] = None, subset: Optional[int] = None, batch_size: int = 32,
                     seed: int = 0, out: Path = Path("compare"), data_dir: Optional[Path] = None,
                     export: bool = True, formats: Optional[str] = None, models_dir: Optional[Path] = None,
                     export_options: Optional[dict] = None,
                     progress: Callable[[str], None] = lambda m: None) -> tuple[ResultsFile, Path]:
    """Every variant × net × repeat in its own child; the results file (kind compare-training) and its path.

    Exports: with `formats` None only Paddle's ONNX (the comparison's "other framework through ONNX");
    with `formats` (train-export --variants) every variant exports them, on its first repeat, into
    `models_dir` (default OUT/models)/<dataset>/<variant>-<net>; `export_options` go to the child
    (calibration_samples, qat_samples, qat_epochs, clean)."""
    from deploykit.pipeline import check_out_dir

    chosen = resolve_variants(variants)
    net_names = _resolve_nets(nets)
    for name, value in (("--epochs", epochs), ("--repeats", repeats), ("--batch-size", batch_size)):
        if value < 1:
            raise UsageError(f"{name} must be at least 1, not {value}")
    cores = len(os.sched_getaffinity(0))
    threads = threads or cores
    if not 1 <= threads <= cores:
        raise UsageError(f"--threads {threads}: this process may use {cores} CPU(s)")
    out = check_out_dir(out)
    log_root = out / "tensorboard"
    models_dir = Path(models_dir) if models_dir else out / "models"
    data_path, data_info, classes = prepare_data(dataset, out, epochs=epochs, seed=seed, subset=subset, data_dir=data_dir,
                                        progress=progress)
    progress(f"{dataset}: {data_info['train_samples']:,} train / {data_info['test_samples']:,} test from "
             f"{data_info['source']}; {len(chosen)} variant(s) × {len(net_names)} net(s) × {repeats} repeat(s)")
    missing = {v.name: _missing(v) for v in chosen}
    runs: dict[tuple[str, str], list[dict]] = {(v.name, n): [] for v in chosen for n in net_names}
    for repeat in range(repeats):  # interleaved: A, B, C, A, B, C … so machine noise spreads evenly
        for variant in chosen:
            if missing[variant.name]:
                continue
            for net in net_names:
                run_name = f"{variant.name}-{net}/r{repeat}"
                spec = {"variant": variant.name, "net": net, "epochs": epochs, "batch_size": batch_size, "seed": seed,
                        "threads": threads, "data": str(data_path), "log_dir": str(log_root / run_name),
                        "dataset": dataset, "data_info": data_info, "classes": classes, **(export_options or {}),
                        "export_dir": str(models_dir) if export and repeat == 0 else None,
                        "formats": formats or ("onnx" if variant.framework == "paddle" else None)}
                result = run_one(variant, spec, out / "runs" / run_name)
                result["repeat"], result["log_dir"] = repeat, spec["log_dir"]
                runs[(variant.name, net)].append(result)
                progress(_progress_line(variant.name, net, repeat, result))
    records = [_record(v, n, runs[(v.name, n)], missing[v.name], epochs, batch_size, threads, data_info)
               for v in chosen for n in net_names]
    _add_scaling(records)
    results = ResultsFile(
        kind="compare-training", machine=machine_info(),
        settings={"dataset": dataset, "nets": net_names, "variants": [v.name for v in chosen], "epochs": epochs,
                  "repeats": repeats, "threads": threads, "batch_size": batch_size, "seed": seed, "subset": subset,
                  "optimizer": "Adam, learning rate 1e-3", "data": data_info, "tensorboard": str(log_root)},
        notes=_notes(records),
        training=records,
    )
    path = results.write(out / RESULTS_NAME)
    return results, path


def _progress_line(variant: str, net: str, repeat: int, r: dict) -> str:
    if r["status"] != "ok":
        return f"{variant} {net} r{repeat}: {r['status']}: {r.get('reason')}"
    epochs = ", ".join(f"{s:.2f}" for s in r["epoch_s"])
    return f"{variant} {net} r{repeat}: epochs {epochs} s, test accuracy {r['test_accuracy']:.2%}"


def _median(values):
    return float(statistics.median(values)) if values else None


def _record(variant: Variant, net: str, results: list[dict], missing: Optional[str], epochs: int, batch_size: int,
            threads: int, data_info: dict) -> TrainingRecord:
    base = dict(variant=variant.name, net=net, framework=variant.framework, style=variant.style,
                description=variant.description, processes=variant.processes, epochs=epochs, batch_size=batch_size,
                train_samples=data_info["train_samples"], test_samples=data_info["test_samples"], threads=threads)
    if missing:
        return TrainingRecord(**base, status="unavailable", reason=missing)
    ok = [r for r in results if r["status"] == "ok"]
    if not ok:
        first = results[0] if results else {"status": "failed", "reason": "not run"}
        return TrainingRecord(**base, status=first["status"], reason=first.get("reason"))
    steady = [statistics.median(r["epoch_s"][1:]) for r in ok if len(r["epoch_s"]) > 1]
    steady_s = _median(steady)
    accs = [r["test_accuracy"] for r in ok]
    per_epoch = steady_s or _median([r["epoch_s"][0] for r in ok])
    runs = [TrainingRun(repeat=r["repeat"], epoch_s=r["epoch_s"], train_loss=r["train_loss"],
                        test_accuracy=r["test_accuracy"], test_loss=r["test_loss"], peak_rss_bytes=r["peak_rss_bytes"],
                        import_s=r.get("import_s"), log_dir=r["log_dir"]) for r in ok]
    failed = [r for r in results if r["status"] != "ok"]
    return TrainingRecord(
        **base, status="ok", reason=f"{len(failed)} of {len(results)} repeats failed: {failed[0].get('reason')}"
        if failed else None,
        thread_settings=ok[0].get("threads", {}), versions=ok[0].get("versions", {}),
        first_epoch_s=_median([r["epoch_s"][0] for r in ok]), steady_epoch_s=steady_s,
        steady_epoch_s_range=[min(steady), max(steady)] if steady else None,
        samples_per_s=data_info["train_samples"] / per_epoch if per_epoch else None,
        peak_rss_bytes=max(r["peak_rss_bytes"] for r in ok), test_accuracy=_median(accs),
        test_accuracy_range=[min(accs), max(accs)], test_loss=_median([r["test_loss"] for r in ok]), runs=runs,
        artifacts=next((r["artifacts"] for r in ok if r.get("artifacts")), []),
        extra={**ok[0].get("extra", {}), **({"samples_per_s_from": "first epoch (one epoch run)"} if not steady_s else {})},
    )


def _add_scaling(records: list[TrainingRecord]) -> None:
    by_key = {(r.variant, r.net): r for r in records}
    for r in records:
        base = by_key.get((SINGLE_PROCESS_BASE.get(r.variant, ""), r.net))
        if r.status == "ok" and base and base.status == "ok" and r.steady_epoch_s and base.steady_epoch_s:
            r.scaling = round(base.steady_epoch_s / r.steady_epoch_s, 3)
        elif r.status == "ok" and r.processes > 1:
            r.extra["scaling"] = f"not computed: run {SINGLE_PROCESS_BASE.get(r.variant)} with ≥ 2 epochs beside it"


def _notes(records: list[TrainingRecord]) -> list[str]:
    notes = ["every variant ran in its own process, pinned to the same CPUs, with the same data order, batch size, "
             "optimizer and seed; repeats interleaved",
             "first_epoch_s holds tracing/compilation; steady_epoch_s is the median of the later epochs"]
    notes += [f"{r.variant} ({r.net}): {r.status}: {r.reason}" for r in records if r.status != "ok"]
    return notes
