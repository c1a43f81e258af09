"""The `deploykit bench` command (registered in deploykit.cli): parses, delegates to bench.run, prints."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from deploykit.bench import protocol

__all__ = ["bench_cmd"]


def bench_cmd(
    model_dirs: List[str] = typer.Argument(..., help="Model folders (with manifest.json), folders holding them (models/mnist), or BentoML tags."),
    formats: Optional[str] = typer.Option(None, "--formats", "-f", help="Comma list of formats (default: every artifact that passed validation)."),
    batch_sizes: str = typer.Option("1,8,32", "--batch-sizes", "-b", help="Comma list of batch sizes."),
    threads: str = typer.Option("1", "--threads", "-t", help="Comma list of runtime thread counts (intra-op threads)."),
    device: str = typer.Option("cpu", "--device", "-d", help="cpu or cuda. Without a usable GPU, cuda records say 'unavailable' and why."),
    min_time: float = typer.Option(protocol.DEFAULT_MIN_TIME_S, "--min-time", help="Least seconds measured per record; windows continue until three agree within 10 % (bounded at max(10, 20 × min-time) s)."),
    warmup: float = typer.Option(protocol.DEFAULT_WARMUP_S, "--warmup", help="Warm-up seconds per record before measuring."),
    out: Path = typer.Option(Path("bench-results.json"), "--out", "-o", help="Results file (all records)."),
    no_model_files: bool = typer.Option(False, "--no-model-files", help="Do not write MODEL_DIR/bench.json (what `serve --format auto` reads)."),
):
    """Time each artifact's runtime call in process: cold start (process start, runtime import, load, first call), p50–p99.9, throughput, peak memory.

    Every record runs in a fresh process (clean cold start and memory peak). The defaults (batch 1,8,32, one thread, 0.5 s minimum per record) measure six models × their formats in about four minutes on 2 cores.
    """
    from deploykit.bench.bench_file import write_model_bench_files
    from deploykit.bench.run import run_bench
    from deploykit.bench.settings import BenchSettings, parse_int_list
    from deploykit.bench.table import bench_table
    from deploykit.console import RichReporter, console, err_console
    from deploykit.errors import UsageError
    from deploykit.pipeline import check_out_dir

    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name such as {out / 'bench-results.json'}")
    check_out_dir(out.parent)  # fail now, not after minutes of measuring
    settings = BenchSettings(
        formats=[f.strip() for f in formats.split(",") if f.strip()] if formats else None,
        batch_sizes=parse_int_list(batch_sizes, "--batch-sizes"), threads=parse_int_list(threads, "--threads"),
        device=device, min_time_s=min_time, warmup_s=warmup,
    )
    results, per_model = run_bench(model_dirs, settings, reporter=RichReporter())
    # Off a terminal (CI logs, pipes) rich assumes 80 columns, which would cut every cell: widen there.
    from rich.console import Console

    table_console = console if console.is_terminal else Console(width=max(console.width, 170), highlight=False)
    table_console.print(bench_table(results, title=f"bench on {device} ({results.machine.cpu_model})"))
    for note in results.notes:
        console.print(f"[dim]note:[/dim] {note}", soft_wrap=True)
    written = [results.write(out)]
    if not no_model_files:
        written += write_model_bench_files(per_model)
    console.print("wrote " + ", ".join(map(str, written)), soft_wrap=True)
    failed = [r for r in results.records if r.status == "failed"]
    if failed:
        err_console.print(f"[red]{len(failed)} record(s) failed[/red]")
        for r in failed:
            err_console.print(f"  {r.model}/{r.format} batch {r.batch}: {r.reason}", markup=False, soft_wrap=True)
        raise typer.Exit(1)
