"""The `deploykit bench-ab` command (registered in deploykit.cli): interleaved A/B of two model
folders, or of one folder in two Python environments; exit 1 with --fail-on-regression when one is slower."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from deploykit.bench.ab import DEFAULT_AB_WINDOW_S, DEFAULT_MAX_ROUNDS, DEFAULT_ROUNDS

__all__ = ["bench_ab_cmd", "AB_RULE", "compare_model_dirs"]

AB_RULE = ("interleaved A/B: baseline and candidate loaded once each, in their own process, and measured "
           "alternately in short windows (ABBA order; at least --rounds pairs, more until the interval is within 8 %), both pinned to one CPU; ratio = median over pairs of candidate/baseline window p50, "
           "95 % interval a bootstrap over pairs; regression only when the interval's low end is more than 10 % "
           "slower (improvement: its high end more than 10 % faster), else within noise")


def _jobs(model_dir: Path, settings) -> dict:
    from deploykit.bench.plan import plan_jobs

    jobs, notes = plan_jobs([model_dir], settings)
    return {(j.format, j.batch, j.threads): (m, j) for m, _, j in jobs}, notes


def compare_model_dirs(baseline: Path, candidate: Path, settings, *, rounds: int, max_rounds: int,
                       baseline_python: Optional[str] = None, candidate_python: Optional[str] = None,
                       reporter=None):
    """Every (format, batch, threads) both folders have, measured interleaved → ABResultsFile."""
    from deploykit.bench.ab import TARGET_WIDTH, ABWorkerError, run_interleaved, worker_command, worker_env
    from deploykit.noise import classify_ratio
    from deploykit.results import ABComparison, ABResultsFile, machine_info

    base_jobs, notes = _jobs(baseline, settings)
    cand_jobs, cand_notes = _jobs(candidate, settings)
    notes += [n for n in cand_notes if n not in notes]
    keys = [k for k in base_jobs if k in cand_jobs]
    for side, jobs in (("baseline", base_jobs), ("candidate", cand_jobs)):
        left = sorted(f"{f} b{b} t{t}" for f, b, t in jobs if (f, b, t) not in keys)
        if left:
            notes.append(f"only the {side} has {', '.join(left)}: not compared")
    if not keys:
        from deploykit.errors import UsageError

        raise UsageError(f"nothing to compare: {baseline} and {candidate} share no measured format")
    if reporter:
        reporter.stage("bench-ab", total=len(keys))
    comparisons = []
    for key in keys:
        (bm, bj), (cm, cj) = base_jobs[key], cand_jobs[key]
        common = dict(format=key[0], batch=key[1], threads=key[2], device=settings.device,
                      baseline_model=bm.model, candidate_model=cm.model)
        try:
            r = run_interleaved(worker_command(bj, baseline_python), worker_command(cj, candidate_python),
                                rounds=rounds, max_rounds=max_rounds, window_s=settings.window_s, env=worker_env())
        except ABWorkerError as exc:
            comparisons.append(ABComparison(**common, status="failed", reason=str(exc)))
        else:
            sides = {k: {"python": r[k]["ready"].get("python"), "runtime_version": r[k]["ready"].get("runtime_version"),
                         "window_p50s_us": r[k]["window_p50s_us"], "window_calls": r[k]["window_calls"],
                         "latency": r[k]["latency"]} for k in ("baseline", "candidate")}
            comparisons.append(ABComparison(**common, status="ok", verdict=classify_ratio(r["ratio_ci"]),
                                            ratio=r["ratio"], ratio_ci=r["ratio_ci"], rounds=r["rounds"],
                                            stop_reason=r["stop_reason"], cpu=r["cpu"],
                                            window_s=r["window_s"], **sides))
        if reporter:
            c = comparisons[-1]
            reporter.advance(f"{key[0]} b{key[1]} t{key[2]}: "
                             + (f"×{c.ratio:.3f} {c.verdict}" if c.status == "ok" else "failed"))
    if reporter:
        reporter.done()
    settings_d = dict(settings.as_dict(), rounds=rounds, max_rounds=max_rounds, target_width=TARGET_WIDTH, baseline=str(baseline), candidate=str(candidate),
                      baseline_python=baseline_python, candidate_python=candidate_python)
    for k in ("min_time_s", "max_windows", "tolerance", "max_time_s", "isolation"):
        settings_d.pop(k, None)  # the A/B run has its own stopping rule: `rounds` windows per side
    return ABResultsFile(machine=machine_info(), rule=AB_RULE, settings=settings_d, notes=notes,
                         comparisons=comparisons)


def _table(results):
    from rich.table import Table

    t = Table(title="bench-ab: candidate / baseline p50, interleaved", show_lines=False)
    for col in ("format", "batch", "threads", "baseline p50", "candidate p50", "ratio", "95 % interval", "verdict"):
        t.add_column(col, justify="right" if col not in ("format", "verdict") else "left")
    for c in results.comparisons:
        if c.status != "ok":
            t.add_row(c.format, str(c.batch), str(c.threads), "", "", "", "", f"failed: {c.reason}")
            continue
        t.add_row(c.format, str(c.batch), str(c.threads), f"{c.baseline['latency']['p50_us']:,.1f} µs",
                  f"{c.candidate['latency']['p50_us']:,.1f} µs", f"×{c.ratio:.3f}",
                  f"×{c.ratio_ci[0]:.3f}–{c.ratio_ci[1]:.3f}", c.verdict)
    return t


def bench_ab_cmd(
    baseline: str = typer.Argument(..., help="Baseline model folder (with manifest.json) or BentoML tag."),
    candidate: str = typer.Argument(..., help="Candidate model folder; give the baseline's folder again with --candidate-python to compare two environments."),
    formats: Optional[str] = typer.Option(None, "--formats", "-f", help="Comma list of formats (default: every artifact that passed validation in both)."),
    batch_sizes: str = typer.Option("1", "--batch-sizes", "-b", help="Comma list of batch sizes."),
    threads: str = typer.Option("1", "--threads", "-t", help="Comma list of runtime thread counts."),
    device: str = typer.Option("cpu", "--device", "-d", help="cpu or cuda."),
    rounds: int = typer.Option(DEFAULT_ROUNDS, "--rounds", help="Least pairs of windows per configuration (ABBA order); more run until the ratio's 95 % interval is within 8 %."),
    max_rounds: int = typer.Option(DEFAULT_MAX_ROUNDS, "--max-rounds", help="Most pairs of windows per configuration."),
    window: float = typer.Option(DEFAULT_AB_WINDOW_S, "--window", help="Seconds per window."),
    baseline_python: Optional[Path] = typer.Option(None, "--baseline-python", help="Python interpreter of the baseline's environment (default: this one); it must have deploykit installed."),
    candidate_python: Optional[Path] = typer.Option(None, "--candidate-python", help="Python interpreter of the candidate's environment (default: this one)."),
    out: Path = typer.Option(Path("bench-ab-results.json"), "--out", "-o", help="Results file."),
    fail_on_regression: bool = typer.Option(False, "--fail-on-regression", help="Exit 1 when a configuration is a regression."),
):
    """Is the candidate slower than the baseline? Both measured alternately, window by window, in one run.

    Robust to a noisy machine where two separate `bench` runs are not: each pair of windows sees the same machine state. Verdict per configuration: regression / improvement / within noise (the 95 % interval of the p50 ratio must clear 10 %).
    """
    from deploykit.bench.plan import resolve_model_dirs
    from deploykit.bench.settings import BenchSettings, parse_int_list
    from deploykit.console import RichReporter, console, err_console
    from deploykit.errors import UsageError
    from deploykit.pipeline import check_out_dir

    if rounds < 2 or max_rounds < rounds or window <= 0:
        raise UsageError("--rounds must be ≥ 2, --max-rounds ≥ --rounds, and --window > 0 seconds")
    for opt, py in (("--baseline-python", baseline_python), ("--candidate-python", candidate_python)):
        if py is not None and not py.is_file():
            raise UsageError(f"{opt} {py}: no such interpreter")
    if out.is_dir():
        raise UsageError(f"--out {out} is a folder; give a file name such as {out / 'bench-ab-results.json'}")
    check_out_dir(out.parent)
    settings = BenchSettings(
        formats=[f.strip() for f in formats.split(",") if f.strip()] if formats else None,
        batch_sizes=parse_int_list(batch_sizes, "--batch-sizes"), threads=parse_int_list(threads, "--threads"),
        device=device, window_s=window)
    dirs = []
    for arg in (baseline, candidate):
        found, _, _ = resolve_model_dirs([arg])
        if len(found) != 1:
            raise UsageError(f"{arg}: holds {len(found)} model folders; give one model folder per side")
        dirs.append(found[0])
    results = compare_model_dirs(dirs[0], dirs[1], settings, rounds=rounds, max_rounds=max_rounds,
                                 baseline_python=str(baseline_python) if baseline_python else None,
                                 candidate_python=str(candidate_python) if candidate_python else None,
                                 reporter=RichReporter())
    console.print(_table(results))
    for note in results.notes:
        console.print(f"[dim]note:[/dim] {note}", soft_wrap=True)
    console.print(f"rule: {results.rule}", soft_wrap=True, markup=False)
    console.print(f"wrote {results.write(out)}", soft_wrap=True)
    failed = [c for c in results.comparisons if c.status == "failed"]
    regressions = [c for c in results.comparisons if c.verdict == "regression"]
    if failed:
        err_console.print(f"[red]{len(failed)} comparison(s) failed[/red]")
    if regressions:
        err_console.print(f"{len(regressions)} regression(s): "
                          + ", ".join(f"{c.format} b{c.batch} ×{c.ratio:.2f}" for c in regressions), markup=False)
    if failed or (fail_on_regression and regressions):
        raise typer.Exit(1)
