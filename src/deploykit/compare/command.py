"""`deploykit compare-training`: the CLI layer (parses, delegates to deploykit.compare.runner, prints)."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

__all__ = ["compare_training_cmd", "training_table"]


def compare_training_cmd(
    dataset: str = typer.Argument(..., help="mnist or fashion-mnist."),
    nets: str = typer.Option("mlp", "--nets", help="Comma list of networks: mlp, cnn."),
    variants: Optional[str] = typer.Option(None, "--variants", help="Comma list of variants, or 'all' (default: every single-process variant; see --list)."),
    epochs: int = typer.Option(2, "--epochs", min=1, help="Epochs per run (≥ 2 gives a steady seconds/epoch apart from the first)."),
    repeats: int = typer.Option(1, "--repeats", min=1, help="Runs per variant, interleaved across variants."),
    threads: Optional[int] = typer.Option(None, "--threads", min=1, help="Thread budget of every variant (default: the CPUs this process may use)."),
    subset: Optional[int] = typer.Option(None, "--subset", min=1, help="Train on N seeded random training images (and test on up to N)."),
    batch_size: int = typer.Option(32, "--batch-size", min=1, help="Batch size of every variant."),
    seed: int = typer.Option(0, "--seed", help="Seed for data order and initialisation."),
    out: Path = typer.Option(Path("compare"), "--out", "-o", help="Writes OUT/compare-training.json, OUT/tensorboard/, OUT/models/ (Paddle's ONNX)."),
    data_dir: Optional[Path] = typer.Option(None, "--data-dir", help="Folder with the dataset's files."),
    no_export: bool = typer.Option(False, "--no-export", help="Do not export the Paddle model to ONNX."),
    list_variants: bool = typer.Option(False, "--list", help="List the variants and exit."),
):
    """Train the same networks with each framework, API, loop, backend and distributed strategy, and compare them fairly."""
    from deploykit.compare.runner import compare_training
    from deploykit.compare.variants import VARIANTS
    from deploykit.console import console, err_console

    if list_variants:
        for v in VARIANTS.values():
            console.print(f"{v.name}: {v.description}", markup=False, soft_wrap=True)
        return
    results, path = compare_training(
        dataset, nets=nets, variants=variants, epochs=epochs, repeats=repeats, threads=threads, subset=subset,
        batch_size=batch_size, seed=seed, out=out, data_dir=data_dir, export=not no_export,
        progress=lambda m: err_console.print(m, markup=False, soft_wrap=True))
    console.print(training_table(results.training, title=f"compare-training {dataset}"), width=max(console.width, 120))
    for r in results.training:
        if r.reason:
            err_console.print(f"{r.status}: {r.variant} {r.net}: {r.reason}", markup=False, soft_wrap=True)
    for r in results.training:
        for a in r.artifacts:
            console.print(f"{r.variant} {r.net}: {a['format']} {a['status']}"
                          f"{': ' + a['error'] if a.get('error') else ''} ({a['manifest']})", markup=False, soft_wrap=True)
    console.print(f"results: {path}", markup=False, soft_wrap=True)
    console.print(f"tensorboard --logdir {results.settings['tensorboard']}", markup=False, soft_wrap=True)


def training_table(records, title: str = ""):
    """One row per variant × net; reasons of rows that did not run are printed under the table."""
    from rich.table import Table

    table = Table("variant", "net", "1st epoch s", "s/epoch", "samples/s", "RSS MB", "test acc", "test loss",
                  "scaling", "status", title=title)
    table.columns[0].no_wrap = True

    def f(v, fmt):
        return "—" if v is None else format(v, fmt)

    for r in records:
        table.add_row(r.variant, r.net, f(r.first_epoch_s, ".2f"), f(r.steady_epoch_s, ".2f"),
                      f(r.samples_per_s, ",.0f"), f(r.peak_rss_bytes and r.peak_rss_bytes / 2**20, ",.0f"),
                      f(r.test_accuracy, ".2%"), f(r.test_loss, ".3f"), f(r.scaling, ".2f"), r.status)
    return table
