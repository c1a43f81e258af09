"""Benchmark: the whole framework comparison (`deploykit compare-training`) on full MNIST, and the
ratios the source articles argue about, measured side by side in one run.

    .venv/bin/python benchmarks/compare_training_bench.py                       # mlp+cnn, all variants, 2 epochs
    .venv/bin/python benchmarks/compare_training_bench.py --nets mlp --epochs 10   # the articles' accuracy setting
    # what docs/frameworks.md records (all variants on the CNN take hours on 2 shared cores):
    .venv/bin/python benchmarks/compare_training_bench.py --nets cnn --epochs 2 \
        --variants keras-sequential,keras-tape,keras-fit-xla,keras-jax,torch,torch-compile,paddle
    .venv/bin/python benchmarks/compare_training_bench.py --nets mlp --epochs 10 --threads 1 \
        --variants keras-sequential,keras-functional,keras-subclass,torch,paddle

Prints the table, then: graph vs eager (fit and GradientTape), XLA vs graph, the three Keras APIs,
Keras backends against TensorFlow, PyTorch and Paddle against Keras, torch.compile against eager
PyTorch, and the distributed runs' scaling; beside the articles' published figures, labelled as
theirs. Ratios are what to compare across machines, not absolute seconds (docs/frameworks.md).
Writes OUT/compare-training.json (the results file `deploykit report` reads).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("DEPLOYKIT_OFFLINE", "1")

RATIOS = [  # (label, numerator variant, denominator variant): steady s/epoch ratios
    ("fit(run_eagerly=True) / fit (graph)", "keras-fit-eager", "keras-sequential"),
    ("GradientTape eager / GradientTape tf.function", "keras-tape-eager", "keras-tape"),
    ("GradientTape tf.function / fit", "keras-tape", "keras-sequential"),
    ("fit jit_compile=True (XLA) / fit", "keras-fit-xla", "keras-sequential"),
    ("Functional / Sequential", "keras-functional", "keras-sequential"),
    ("Subclassing / Sequential", "keras-subclass", "keras-sequential"),
    ("Keras on JAX / Keras on TensorFlow", "keras-jax", "keras-sequential"),
    ("Keras on PyTorch / Keras on TensorFlow", "keras-torch", "keras-sequential"),
    ("PyTorch hand loop / Keras fit", "torch", "keras-sequential"),
    ("torch.compile / PyTorch eager", "torch-compile", "torch"),
    ("PaddlePaddle / Keras fit", "paddle", "keras-sequential"),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--nets", default="mlp,cnn")
    parser.add_argument("--variants", default="all")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--subset", type=int, default=None, help="default: the full training set")
    parser.add_argument("--out", type=Path, default=Path("compare-bench"))
    args = parser.parse_args()

    from rich.console import Console

    from deploykit.compare.command import training_table
    from deploykit.compare.runner import compare_training
    from deploykit.report.frameworks import ARTICLE_FIGURES

    console = Console(width=160)
    wall = time.perf_counter()
    results, path = compare_training(args.dataset, nets=args.nets, variants=args.variants, epochs=args.epochs,
                                     repeats=args.repeats, threads=args.threads, subset=args.subset, out=args.out,
                                     progress=lambda m: print(m, file=sys.stderr, flush=True))
    console.print(training_table(results.training, title=f"compare-training {args.dataset}, {args.epochs} epochs"))
    by = {(r.variant, r.net): r for r in results.training if r.status == "ok"}
    print(f"\nratios of steady seconds per epoch (same run, same machine, {results.settings['threads']} threads):")
    for net in results.settings["nets"]:
        for label, num, den in RATIOS:
            a, b = by.get((num, net)), by.get((den, net))
            if a and b and a.steady_epoch_s and b.steady_epoch_s:
                print(f"  {net}: {label}: {a.steady_epoch_s / b.steady_epoch_s:.2f}× "
                      f"({a.steady_epoch_s:.2f} s vs {b.steady_epoch_s:.2f} s)")
        for r in results.training:
            if r.net == net and r.processes > 1 and r.status == "ok":
                print(f"  {net}: {r.variant}: scaling vs one process {r.scaling if r.scaling else '—'}; "
                      f"test loss {r.test_loss:.4f}")
    print("\nthe source articles' figures (theirs, not measured here):")
    for fig in ARTICLE_FIGURES:
        print(f"  {fig['what']}: {fig['figure']} ({fig['source']})")
    print(f"\nresults: {path}\nwall: {time.perf_counter() - wall:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
