"""`deploykit edge …`: the Typer sub-app (registered in deploykit.cli). Parses, delegates, prints.

Heavy imports (numpy, asyncssh, deploykit's runtimes) stay inside the command bodies so that
`deploykit --help` does not pay for them.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

__all__ = ["edge_app"]

edge_app = typer.Typer(
    help="Edge targets: will a TFLite or ONNX artifact load in a device's runtime, how fast does it run there, and set one up.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_RUNTIME_HELP = "Exact TFLite runtime, e.g. tflite-runtime==2.14.0 or ai-edge-litert==2.3.0."


def _formats(text: Optional[str]) -> Optional[list[str]]:
    return [f.strip() for f in text.split(",") if f.strip()] if text else None


def _duration(text: str, option: str) -> float:
    """'60s' / '2m' / '90' → seconds, by the load tester's one duration syntax; > 0 (one line, exit 2)."""
    from deploykit.loadtest.spec import parse_duration
    from deploykit.errors import UsageError

    value = parse_duration(text, option)
    if value <= 0:
        raise UsageError(f"{option} {text!r}: expected a positive duration")
    return value


def _console():
    from rich.console import Console

    from deploykit.console import console

    # Off a terminal (CI logs, pipes) rich assumes 80 columns, which would cut every cell. A wider
    # console is needed there: print(width=…) can only narrow (rich takes min(width, console.width)).
    if console.is_terminal:
        return console
    return Console(highlight=False, width=max(console.width, 160), file=console.file)


@edge_app.command("profiles")
def profiles_cmd():
    """List the device profiles (CPU, cores, OS, Python, TFLite runtimes commonly found)."""
    from rich.table import Table

    from deploykit.edge.profiles import load_profiles

    console = _console()
    table = Table("profile", "device", "CPU", "OS / Python", "runtimes (first: default)", "accelerator")
    for p in load_profiles().values():
        table.add_row(p.name, p.title, f"{p.cores}× {p.cpu} @ {p.clock_ghz} GHz", f"{p.os} / {p.python}",
                      ", ".join(p.runtimes), p.accelerator or "—")
    console.print(table)


@edge_app.command("check")
def check_cmd(
    model_dirs: List[str] = typer.Argument(..., help="Model folder (with manifest.json), a folder of them, or a BentoML tag."),
    runtime: Optional[str] = typer.Option(None, "--runtime", "-r", help=_RUNTIME_HELP + " Default: the profile's first runtime."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Device profile: rpi4, rpi5, coral-devboard, jetson-nano (see `deploykit edge profiles`). Default rpi4 when --runtime is not given."),
    formats: Optional[str] = typer.Option(None, "--formats", "-f", help="Comma list of TFLite formats (default: every TFLite artifact that did not fail export)."),
    samples: int = typer.Option(1000, "--samples", min=1, help="Reference samples compared with the framework model."),
    out: Path = typer.Option(Path("edge-check.json"), "--out", "-o", help="Results file (kind edge-check; `deploykit report` merges it)."),
):
    """Load each TFLite artifact in the exact runtime a device runs (installed into an isolated, cached
    environment of deploykit's own), run it on the reference inputs and compare with the framework model.

    Exit codes: 0 every artifact loaded and matched in that runtime; 1 one does not load or its outputs
    differ; 3 nothing failed but some verdict is unknown (the runtime could not be tried here, e.g. a
    device-only version), with a one-line reason; 2 bad input (unknown profile, a runtime version that
    does not exist on the package index, no artifacts).
    """
    from deploykit.console import RichReporter, err_console
    from deploykit.edge.check import CheckSettings, exit_code, run_check
    from deploykit.edge.render import check_table

    console = _console()
    results = run_check(model_dirs, CheckSettings(runtime=runtime, profile=profile, formats=_formats(formats),
                                                  samples=samples), reporter=RichReporter())
    console.print(check_table(results))
    for note in results.notes:
        console.print(f"[dim]note:[/dim] {note}", soft_wrap=True)
    path = results.write(out)
    console.print(f"wrote {path}", soft_wrap=True)
    code, lines = exit_code(results.records)
    for line in lines:
        err_console.print(line, markup=False, soft_wrap=True)
    if code:
        raise typer.Exit(code)


@edge_app.command("bench")
def bench_cmd(
    model_dirs: List[str] = typer.Argument(..., help="Model folder (with manifest.json), a folder of them, or a BentoML tag."),
    target: str = typer.Option(..., "--target", "-t", help="ssh://USER@HOST[:PORT] (a device), or local (emulate --profile here)."),
    profile: Optional[str] = typer.Option(None, "--profile", "-p", help="Device profile (required with --target local)."),
    runtime: Optional[str] = typer.Option(None, "--runtime", "-r", help="Device: which runtime the runner uses (tflite-runtime, ai-edge-litert, tensorflow; NAME==VERSION to insist on a version). Local: " + _RUNTIME_HELP + " Default: the first found on the device; locally, the profile's runtime (an override is recorded in every record)."),
    threads: Optional[str] = typer.Option(None, "--threads", help="Comma list of interpreter thread counts, e.g. 1,2,4 (default: 1 on a device; the profile's cores, capped to this machine's, locally)."),
    batch_sizes: str = typer.Option("1", "--batch-sizes", "-b", help="Comma list of batch sizes."),
    formats: Optional[str] = typer.Option(None, "--formats", "-f", help="Comma list of TFLite formats (default: every TFLite artifact that did not fail export)."),
    identity: Optional[Path] = typer.Option(None, "--identity", "-i", help="SSH private key (default: your ~/.ssh keys and agent)."),
    known_hosts: Optional[Path] = typer.Option(None, "--known-hosts", help="known_hosts file that verifies the device's host key (default ~/.ssh/known_hosts)."),
    trust_new_host: bool = typer.Option(False, "--trust-new-host", help="Record the key of a device not yet in known_hosts (prints its fingerprint). A changed key is refused regardless."),
    python: Optional[str] = typer.Option(None, "--python", help="Python on the device (e.g. ~/venv/bin/python). Default: the venv `deploykit edge setup` made (~/.deploykit/venv), else python3."),
    samples: int = typer.Option(256, "--samples", min=1, help="Reference samples sent for the on-device parity check."),
    min_time: float = typer.Option(0.5, "--min-time", help="Least seconds measured per record; windows continue until three agree within 10 %."),
    warmup: float = typer.Option(0.1, "--warmup", help="Warm-up seconds per record before measuring."),
    out: Path = typer.Option(Path("edge-bench.json"), "--out", "-o", help="Results file (kind edge-bench), written only when every artifact is done."),
    op_profile: bool = typer.Option(False, "--op-profile", help="Top operators by time per artifact, where the runtime has a profiler (ONNX Runtime; the TFLite Python interpreters have none, which the results say)."),
    sustained: Optional[str] = typer.Option(None, "--sustained", help="Measure each record at least this long (e.g. 60s, 2m), sampling CPU clock and temperature every second, so heat soak and throttling show."),
):
    """Copy TFLite artifacts and a self-contained runner to a device over SSH (or run it here against a
    profile), time them with deploykit's measurement protocol, and bring the results back."""
    from deploykit.bench.settings import parse_int_list
    from deploykit.console import RichReporter
    from deploykit.edge.bench import EdgeBenchSettings, run_edge_bench
    from deploykit.edge.render import bench_table

    console = _console()
    settings = EdgeBenchSettings(
        target=target, profile=profile, runtime=runtime,
        threads=parse_int_list(threads, "--threads") if threads else None,
        batch_sizes=parse_int_list(batch_sizes, "--batch-sizes"), formats=_formats(formats), identity=identity,
        known_hosts=known_hosts, trust_new_host=trust_new_host, python=python, samples=samples,
        min_time_s=min_time, warmup_s=warmup, op_profile=op_profile, sustained_s=_duration(sustained, "--sustained") if sustained else None)
    results = run_edge_bench(model_dirs, settings, reporter=RichReporter())
    console.print(bench_table(results))
    for note in results.notes:
        console.print(f"[dim]note:[/dim] {note}", soft_wrap=True)
    console.print(f"wrote {results.write(out)}", soft_wrap=True)


@edge_app.command("setup")
def setup_cmd(
    target: str = typer.Option(..., "--target", "-t", help="ssh://USER@HOST[:PORT] of the device."),
    runtime: Optional[str] = typer.Option(None, "--runtime", "-r", help="TFLite runtime NAME==VERSION (default: the newest tflite-runtime the device's Python installs, else ai-edge-litert)."),
    onnx: bool = typer.Option(False, "--onnx", help="Also install onnxruntime (the newest the device's Python installs), for .onnx artifacts (PyTorch models)."),
    identity: Optional[Path] = typer.Option(None, "--identity", "-i", help="SSH private key (default: your ~/.ssh keys and agent)."),
    known_hosts: Optional[Path] = typer.Option(None, "--known-hosts", help="known_hosts file that verifies the device's host key (default ~/.ssh/known_hosts)."),
    trust_new_host: bool = typer.Option(False, "--trust-new-host", help="Record the key of a device not yet in known_hosts (prints its fingerprint)."),
    python: str = typer.Option("python3", "--python", help="The device's Python to make the venv from."),
):
    """Make a venv on the device (~/.deploykit/venv) with numpy and a TFLite runtime (and onnxruntime),
    in versions the device's Python installs: Raspberry Pi OS / Debian 12 refuse a bare `pip install`
    (externally managed). `edge bench` uses that venv when --python is not given."""
    from deploykit.console import RichReporter
    from deploykit.edge.setup import SetupSettings, run_setup

    console = _console()
    result = run_setup(SetupSettings(target=target, runtime=runtime, onnx=onnx, identity=identity,
                                     known_hosts=known_hosts, trust_new_host=trust_new_host, python=python),
                       reporter=RichReporter())
    runtimes = result.facts.get("runtimes") or {}
    have = ", ".join(f"{r['package']} {r['version']}" for r in runtimes.values())
    console.print(f"{result.where}: venv {result.venv} (Python {result.facts.get('python')}, numpy "
                  f"{result.facts.get('numpy')}, {have}); `deploykit edge bench --target {target}` uses it "
                  f"without --python", soft_wrap=True)
