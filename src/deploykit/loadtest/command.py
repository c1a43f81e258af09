"""`deploykit loadtest`: HTTP load against one endpoint, closed loop (concurrency sweep) and open loop
(constant or Poisson arrivals, latency from each request's scheduled send time).

This module is the CLI side: it parses and checks the options (one line + exit 2 on bad input),
encodes the request bodies, runs the load engine (deploykit.loadtest.engine: Locust, in its own
process because Locust monkeypatches with gevent) and turns the engine's merged HDR histograms into a
`ResultsFile(kind="loadtest")` plus a table.

    deploykit loadtest http://127.0.0.1:3000/predict --concurrency 1,4,16,64 --duration 30s
    deploykit loadtest http://127.0.0.1:3000/predict --rate 200 --arrival poisson
    deploykit loadtest http://127.0.0.1:3000/predict --rate 4000 -H 'X-Request-Timeout-Ms: 200'
    deploykit loadtest http://127.0.0.1:3000/predict_image --payload image --model-dir models/mnist/torch-mlp
    deploykit loadtest URL --workers 2                                    (master + 2 local workers)
    deploykit loadtest URL --master-bind 0.0.0.0:5557 --expect-workers 4  (workers on other machines:)
    deploykit loadtest-worker --master MASTER_HOST:5557                   (on each load machine)
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import typer

from deploykit.loadtest.spec import (
    DEFAULT_CONCURRENCY,
    DEFAULT_CONNECTIONS,
    DEFAULT_SERVER_TIME_HEADER,
    LoadSpec,
    StepSpec,
    check_reachable,
    parse_cpu_list,
    parse_duration,
    parse_headers,
    parse_host_port,
    parse_int_list,
    parse_rate_list,
    parse_url,
)
from deploykit.errors import DeployKitError, UsageError
from deploykit.results import LoadStep, ResultsFile

__all__ = ["LoadTestError", "LoadRun", "build_spec", "run_loadtest", "to_results", "steps_table", "open_step_invalid_reason",
           "loadtest_cmd", "loadtest_worker_cmd", "register"]

_ENGINE = [sys.executable, "-m", "deploykit.loadtest.engine"]
_ENGINE_NAMES = {
    "raw": "locust (FastHttpUser users; requests over deploykit's keep-alive HTTP/1.1 client, httptools parser)",
    "fasthttp": "locust FastHttpUser (requests through FastHttpSession)",
}
_GENERATOR_SATURATED = 0.9  # a load-generating process busier than this (CPU s per s) may be the bottleneck


class LoadTestError(DeployKitError):
    """The load engine failed (the message carries its last words)."""


@dataclass
class LoadRun:
    results: ResultsFile
    raw: dict  # the engine's output: merged histograms (encoded) and per-process counts per step


def build_spec(url: str, *, concurrency: Optional[str] = None, rate: Optional[str] = None,
               connections: int = DEFAULT_CONNECTIONS, arrival: str = "constant", duration: str = "30s",
               warmup: str = "5s", drain: str = "10s", payload: str = "json", client: str = "auto",
               model_dir: Optional[str] = None, samples: int = 64, seed: int = 0, server_time_header: Optional[str] = DEFAULT_SERVER_TIME_HEADER,
               timeout: str = "60s", workers: int = 0, master_bind: Optional[str] = None,
               expect_workers: Optional[int] = None, worker_wait: str = "60s",
               cpu_affinity: Optional[str] = None, headers: Optional[list[str]] = None) -> LoadSpec:
    """Command-line strings → a checked LoadSpec (UsageError with one line on anything wrong)."""
    url = parse_url(url)
    if payload not in ("json", "image"):
        raise UsageError(f"--payload {payload!r}: expected json or image")
    if client not in ("auto", "raw", "fasthttp"):
        raise UsageError(f"--client {client!r}: expected auto, raw or fasthttp")
    https = url.lower().startswith("https:")
    if client == "raw" and https:
        raise UsageError("--client raw speaks plain HTTP only; use --client fasthttp (or auto) for https:// URLs")
    client = ("fasthttp" if https else "raw") if client == "auto" else client
    if arrival not in ("constant", "poisson"):
        raise UsageError(f"--arrival {arrival!r}: expected constant or poisson")
    if not 1 <= connections <= 10_000:
        raise UsageError(f"--connections {connections}: expected 1 to 10000")
    if not 1 <= samples <= 10_000:
        raise UsageError(f"--samples {samples}: expected 1 to 10000")
    closed = parse_int_list(concurrency, "--concurrency") if concurrency is not None else []
    rates = parse_rate_list(rate) if rate is not None else []
    if not closed and not rates:
        closed = list(DEFAULT_CONCURRENCY)
    steps = [StepSpec(mode="closed", users=c) for c in closed]
    steps += [StepSpec(mode="open", users=connections, rate_rps=r, arrival=arrival) for r in rates]
    duration_s = parse_duration(duration, "--duration")
    if duration_s <= 0:
        raise UsageError(f"--duration {duration!r}: must be longer than 0")
    if workers < 0 or (expect_workers is not None and expect_workers < 0):
        raise UsageError("--workers and --expect-workers cannot be negative")
    expect = workers if expect_workers is None else expect_workers
    if expect < workers:
        raise UsageError(f"--expect-workers {expect} is fewer than the {workers} local --workers")
    if master_bind is not None:
        parse_host_port(master_bind, "--master-bind")
        if expect == 0:
            raise UsageError("--master-bind needs workers: give --expect-workers N (remote) and/or --workers N (local)")
    worker_wait_s = parse_duration(worker_wait, "--worker-wait")
    if worker_wait_s <= 0:
        raise UsageError(f"--worker-wait {worker_wait!r}: must be longer than 0")
    timeout_s = parse_duration(timeout, "--timeout")
    if timeout_s <= 0:
        raise UsageError(f"--timeout {timeout!r}: must be longer than 0")
    return LoadSpec(
        url=url, steps=steps, duration_s=duration_s, warmup_s=parse_duration(warmup, "--warmup"),
        drain_s=parse_duration(drain, "--drain"), payload=payload, client=client, model_dir=model_dir,
        samples=samples, seed=seed, server_time_header=server_time_header or None, timeout_s=timeout_s,
        workers=workers, expect_workers=expect, master_bind=master_bind, worker_wait_s=worker_wait_s,
        cpu_affinity=parse_cpu_list(cpu_affinity) if cpu_affinity else None, headers=parse_headers(headers),
    )


def _engine_time_bound(spec: LoadSpec) -> float:
    per_step = spec.warmup_s + spec.duration_s + spec.drain_s + 2 * 60.0  # + spawn and report timeouts
    return len(spec.steps) * per_step + spec.worker_wait_s + 120.0  # + waiting for workers, start-up


def run_loadtest(spec: LoadSpec, *, progress: Callable[[str], None] = lambda line: None) -> LoadRun:
    """Run every step against spec.url in a load-engine process; → results (not yet written)."""
    import msgpack

    from deploykit.loadtest.payload import build_payloads

    check_reachable(spec.url)
    payloads = build_payloads(spec.payload, spec.model_dir, spec.samples, spec.seed)
    with tempfile.TemporaryDirectory(prefix="deploykit-loadtest-") as tmp:
        spec_path, payload_path, raw_path = Path(tmp, "spec.json"), Path(tmp, "payload.msgpack"), Path(tmp, "raw.json")
        spec_path.write_text(spec.model_dump_json())
        payload_path.write_bytes(msgpack.packb({"content_type": payloads.content_type, "bodies": payloads.bodies}))
        _run_engine([*_ENGINE, "run", str(spec_path), str(payload_path), str(raw_path)], _engine_time_bound(spec),
                    progress, Path(tmp, "engine.log"))
        raw = json.loads(raw_path.read_text())
    return LoadRun(to_results(spec, raw, payloads.source), raw)


def _run_engine(cmd: list[str], time_bound_s: float, progress: Callable[[str], None], log_path: Path) -> None:
    """Start the engine in its own process group (so its worker processes stop with it), relay its
    progress lines, stop it past `time_bound_s`, and turn a failure into one line."""
    with open(log_path, "w+") as log:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
        timed_out = threading.Event()

        def stop_group():
            timed_out.set()
            _kill_group(proc)

        timer = threading.Timer(time_bound_s, stop_group)
        timer.start()
        try:
            for line in proc.stdout:
                progress(line.rstrip("\n"))
            proc.wait()
        except BaseException:  # Ctrl-C included: never leave the engine and its workers running
            _kill_group(proc)
            raise
        finally:
            timer.cancel()
            proc.stdout.close()
        if timed_out.is_set():
            raise LoadTestError(f"load engine stopped after {time_bound_s:.0f} s (its time bound)")
        if proc.returncode != 0:
            log.seek(0)
            tail = deque((ln.strip() for ln in log if ln.strip()), maxlen=1)
            last = tail[0] if tail else "no message"
            if last.startswith("error: "):
                raise LoadTestError(last[len("error: "):])
            raise LoadTestError(f"load engine failed (exit {proc.returncode}): {last}")


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # the group this call created for the engine
        except ProcessLookupError:
            pass
        proc.wait()


def _fmt_us(us: Optional[float]) -> str:
    if us is None:
        return "too few samples"
    return f"{us:,.0f} µs" if us < 10_000 else f"{us / 1000:,.1f} ms"


def open_step_invalid_reason(lag, own_lag, rate_rps: float, connections: int) -> Optional[str]:
    """Why an open-loop step did not offer the server the schedule it names, or None when it did.

    `lag`: sent − scheduled for the sends in the window; `own_lag`: the generator's own part of it
    (sent − max(scheduled, connection free)). Sent later than the gap between two arrivals, requests
    bunch and the server sees another load: invalid when the lag's p90 exceeds one interval
    (1 / rate), or its p50 half of one (late all the time). The reason says whose lateness it was:
    the generator's own (timer, CPU), or every connection busy (the server fell behind the rate, or
    too few --connections). Either way the latency would describe a load that was not sent."""
    if lag is None or rate_rps <= 0:
        return None
    interval_us = 1e6 / rate_rps
    late_p90 = lag.p90_us is not None and lag.p90_us > interval_us
    if not (late_p90 or lag.p50_us > 0.5 * interval_us):
        return None
    worst, q = (lag.p90_us, "p90") if late_p90 else (lag.p50_us, "p50")
    own = getattr(own_lag, f"{q}_us") if own_lag is not None else None
    if own is not None and own >= 0.5 * worst:
        whose = f"the generator itself was late (own lag {q} {_fmt_us(own)}: timer or CPU; add --workers and cores)"
    else:
        whose = (f"all {connections} connections were busy when requests were due (the server fell behind "
                 f"{rate_rps:g}/s, or too few --connections)")
    return (f"load generator could not keep the schedule: send lag {q} {_fmt_us(worst)} exceeds the "
            f"{_fmt_us(interval_us)} between arrivals at {rate_rps:g}/s; {whose}; latency withheld")


def to_results(spec: LoadSpec, raw: dict, payload_source: str) -> ResultsFile:
    """The engine's raw output → the one results schema, with notes saying how it was measured."""
    from deploykit.loadtest import hdr as load_hdr
    from deploykit.results import machine_info

    steps, notes = [], []
    header = spec.server_time_header
    for i, s in enumerate(raw["steps"]):
        step = StepSpec.model_validate(s["step"])
        latency = load_hdr.latency_stats(load_hdr.decode(s["latency"])) if s["latency"] else None
        server = load_hdr.latency_stats(load_hdr.decode(s["server"])) if s["server"] else None
        answered = load_hdr.latency_stats(load_hdr.decode(s["answered"])) if s.get("answered") else None
        lag = load_hdr.latency_stats(load_hdr.decode(s["send_lag"])) if s.get("send_lag") else None
        own = load_hdr.latency_stats(load_hdr.decode(s["own_lag"])) if s.get("own_lag") else None
        invalid = None
        if step.mode == "open":
            invalid = open_step_invalid_reason(lag, own, step.rate_rps, step.users)
            if lag is None and s["requests"]:
                invalid = "load generator sent nothing in the measured window (a backlog from the warm-up); latency withheld"
        errors = sum(s["errors_by_status"].values())
        steps.append(LoadStep(
            mode=step.mode, concurrency=step.users, rate_rps=step.rate_rps, arrival=step.arrival,
            duration_s=round(s["window_s"], 3), warmup_s=spec.warmup_s, requests=s["requests"], errors=errors,
            errors_by_status=s["errors_by_status"], throughput_rps=round(s["throughput_rps"], 2),
            latency=None if invalid else latency, server_time=server, corrected=step.mode == "open",
            answer_time=None if invalid else answered,
            send_lag=lag, valid=invalid is None, invalid_reason=invalid,
        ))
        where = f"step {i + 1} ({step.label()})"
        if invalid:
            notes.append(f"{where}: INVALID, {invalid}")
        if step.mode == "open" and lag is not None and not invalid:
            notes.append(f"{where}: schedule kept: send lag p50 {_fmt_us(lag.p50_us)}, p90 {_fmt_us(lag.p90_us)}; the "
                         f"generator's own part (p50 {_fmt_us(own.p50_us) if own else 'not recorded'}, timer: "
                         f"{', '.join(s.get('timers') or ['?'])}) is left out of the corrected latency")
        if step.mode == "open" and s.get("uncorrected") and latency is not None and not invalid:
            unc = load_hdr.latency_stats(load_hdr.decode(s["uncorrected"]))
            notes.append(f"{where}: p50/p99 corrected (from the scheduled send, less the generator's own lag) {_fmt_us(latency.p50_us)} / "
                         f"{_fmt_us(latency.p99_us)}; from the actual send (uncorrected, what a closed-loop tool "
                         f"reports) {_fmt_us(unc.p50_us)} / {_fmt_us(unc.p99_us)}")
        if errors and answered is not None and not invalid:
            notes.append(f"{where}: every answer with a status, errors included ({answered.samples:,}): p50 "
                         f"{_fmt_us(answered.p50_us)}, p99 {_fmt_us(answered.p99_us)}, max {_fmt_us(answered.max_us)}")
        ok = s["requests"] - errors
        if header and ok and s["server_time_missing"]:
            notes.append(f"{where}: {s['server_time_missing']} of {ok} successful answers had no {header} header")
        if len(s["processes"]) > 1:
            counts = " + ".join(f"{p['requests']}" for p in s["processes"])
            notes.append(f"{where}: histograms merged from {len(s['processes'])} workers: {counts} = {s['requests']} requests")
        if s["missing_processes"]:
            notes.append(f"{where}: {len(s['missing_processes'])} worker(s) did not report; their samples are missing")
        busy = [p["cpu_busy"] for p in s["processes"] if p.get("cpu_busy") is not None]
        if busy and max(busy) >= _GENERATOR_SATURATED:
            notes.append(f"{where}: a load-generating process used {max(busy):.0%} of a core: the figures may be "
                         "limited by the load generator; add --workers (and cores)")
        if s["errors_by_status"].get("unfinished"):
            notes.append(f"{where}: {s['errors_by_status']['unfinished']} requests scheduled in the window did not "
                         f"finish within the {spec.drain_s:g} s drain; counted as errors 'unfinished'")
    notes.extend(_pinning_notes(spec, raw))
    notes.append(f"request bodies: {spec.payload}, {payload_source}")
    notes.append("latency: successful answers only (status < 400), HdrHistogram at 1 µs resolution; errors are "
                 "counted by HTTP status, or by exception name when no answer came")
    settings = spec.model_dump()
    settings.update(engine=_ENGINE_NAMES[spec.client], locust_version=raw.get("locust_version"),
                    gevent_version=raw.get("gevent_version"), generator_cpus=raw.get("affinity"))
    return ResultsFile(kind="loadtest", url=spec.url, machine=machine_info(), settings=settings, steps=steps, notes=notes)


def _pinning_notes(spec: LoadSpec, raw: dict) -> list[str]:
    """Pinning as recorded by the engine (its affinity), not as asked: a generator started under taskset
    is pinned though --cpu-affinity was not given."""
    cores = os.cpu_count() or 1
    pinned = raw.get("affinity") if raw.get("affinity") and len(raw["affinity"]) < cores else None
    if pinned:
        line = (f"load generator pinned to CPU(s) {','.join(map(str, pinned))} of {cores} "
                "(the engine process's affinity as recorded; local workers inherit it); deploykit does not pin "
                "the server: pin it to other cores (taskset -c ...) so the two do not compete")
    else:
        line = (f"load generator not pinned (may run on any of {cores} cores): a server on this machine competes "
                "with it for cores; use --cpu-affinity and taskset for the server to pin them apart")
    notes = [line]
    if raw.get("cpu_warning"):
        notes.append("Locust reported a load-generator CPU above 90 % during the run")
    return notes


def steps_table(results: ResultsFile):
    """One row per step; latencies in ms with µs digits (closed: from send; open*: from scheduled send)."""
    from rich.table import Table

    has_open = any(st.mode == "open" for st in results.steps)
    table = Table(title=f"loadtest {results.url}", title_justify="left", caption=(
        "open*: latency from each request's scheduled send time (coordinated omission corrected)" if has_open else None))
    for col in ("step", "requests", "errors", "req/s", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "server p50 ms"):
        table.add_column(col, justify="left" if col in ("step", "errors") else "right")
    for st in results.steps:
        lat, srv = st.latency, st.server_time
        step = f"closed c={st.concurrency}" if st.mode == "closed" else f"open* {st.rate_rps:g}/s"
        if not st.valid:
            step += " [red]invalid[/red]"
        errs = ", ".join(f"{k}: {v}" for k, v in sorted(st.errors_by_status.items())) or "0"
        table.add_row(
            step, f"{st.requests:,}", f"[red]{errs}[/red]" if st.errors else errs, f"{st.throughput_rps:,.1f}",
            *((f"{v / 1000:,.3f}" if v is not None else "few samples" for v in (lat.p50_us, lat.p90_us, lat.p99_us, lat.p999_us))
              if lat else ["—"] * 4),
            f"{srv.p50_us / 1000:,.3f}" if srv else "—",
        )
    return table


def loadtest_cmd(
    url: str = typer.Argument(..., help="Full endpoint URL, e.g. http://127.0.0.1:3000/predict (or /predict_image with --payload image)."),
    concurrency: Optional[str] = typer.Option(None, "--concurrency", "-c", help="Closed loop: comma list of concurrencies, one step each (default 1,4,16,64 when --rate is not given)."),
    rate: Optional[str] = typer.Option(None, "--rate", "-r", help="Open loop: comma list of arrival rates (requests/s), one step each; latency from each request's scheduled send time."),
    arrival: str = typer.Option("constant", "--arrival", help="Open loop arrivals: constant or poisson."),
    connections: int = typer.Option(DEFAULT_CONNECTIONS, "--connections", help="Open loop: connections (Locust users) available to keep the schedule."),
    duration: str = typer.Option("30s", "--duration", "-d", help="Measured time per step (30s, 500ms, 2m)."),
    warmup: str = typer.Option("5s", "--warmup", help="Load before each step's measurement, not recorded."),
    drain: str = typer.Option("10s", "--drain", help="Open loop: time allowed after a step for requests scheduled inside it to finish."),
    payload: str = typer.Option("json", "--payload", help="json ({\"inputs\": [28×28 image in [0,1]]}) or image (multipart PNG, field 'image')."),
    client: str = typer.Option("auto", "--client", help="HTTP client in the Locust users: raw (deploykit's lean keep-alive client, http only), fasthttp (Locust's FastHttpSession), auto (raw for http, fasthttp for https)."),
    model_dir: Optional[str] = typer.Option(None, "--model-dir", help="Model folder or BentoML tag: send its real test digits (reference.npz) instead of synthetic ones."),
    samples: int = typer.Option(64, "--samples", help="Distinct digits cycled through as request bodies."),
    seed: int = typer.Option(0, "--seed", help="Seed for synthetic digits and Poisson arrivals."),
    server_time_header: str = typer.Option(DEFAULT_SERVER_TIME_HEADER, "--server-time-header", help="Response header with the server's inference time in µs ('' to ignore)."),
    timeout: str = typer.Option("60s", "--timeout", help="Per-request network timeout."),
    workers: int = typer.Option(0, "--workers", help="Locust distributed mode: start a master and N local worker processes."),
    master_bind: Optional[str] = typer.Option(None, "--master-bind", help="HOST:PORT the master listens on for workers (default 127.0.0.1 and a free port); use with --expect-workers for workers on other machines."),
    expect_workers: Optional[int] = typer.Option(None, "--expect-workers", help="Workers to wait for in all, local and remote (default: --workers). Remote ones join with `deploykit loadtest-worker --master HOST:PORT`."),
    worker_wait: str = typer.Option("60s", "--worker-wait", help="How long the master waits for --expect-workers to join."),
    cpu_affinity: Optional[str] = typer.Option(None, "--cpu-affinity", help="Pin the load generator to these CPUs (1 | 0,1 | 0-3); pin the server elsewhere (taskset)."),
    header: Optional[list[str]] = typer.Option(None, "--header", "-H", help="Extra request header 'Name: value' sent with every request, e.g. 'X-Request-Timeout-Ms: 200' (repeatable)."),
    out: Path = typer.Option(Path("loadtest-results.json"), "--out", "-o", help="Results file (kind 'loadtest')."),
):
    """HTTP load test: p50–p99.9 at µs resolution, throughput, errors by status and the server's own inference time, per step."""
    from deploykit.console import console

    if not out.parent.is_dir():
        raise UsageError(f"--out {out}: folder {out.parent} does not exist")
    spec = build_spec(url, concurrency=concurrency, rate=rate, connections=connections, arrival=arrival,
                      duration=duration, warmup=warmup, drain=drain, payload=payload, client=client, model_dir=model_dir,
                      samples=samples, seed=seed, server_time_header=server_time_header, timeout=timeout,
                      workers=workers, master_bind=master_bind, expect_workers=expect_workers, worker_wait=worker_wait,
                      cpu_affinity=cpu_affinity, headers=header)
    run = run_loadtest(spec, progress=lambda line: console.print(f"[dim]•[/dim] {line}", markup=True, highlight=False))
    run.results.write(out)
    console.print(steps_table(run.results))
    for note in run.results.notes:
        console.print(f"[dim]note:[/dim] {note}", highlight=False)
    console.print(f"results: {out}")
    total = sum(st.requests for st in run.results.steps)
    if total and all(st.errors == st.requests for st in run.results.steps):
        from deploykit.console import err_console

        err_console.print(f"error: all {total} measured requests failed (results written to {out})", markup=False)
        raise typer.Exit(1)


def loadtest_worker_cmd(
    master: str = typer.Option(..., "--master", help="HOST:PORT of a `deploykit loadtest ... --master-bind` master."),
    cpu_affinity: Optional[str] = typer.Option(None, "--cpu-affinity", help="Pin this worker to these CPUs."),
):
    """Join a load-test master as a Locust worker and generate load until the master finishes."""
    parse_host_port(master, "--master")
    cmd = [*_ENGINE, "worker", "--master", master]
    if cpu_affinity:
        cmd += ["--cpu-affinity", ",".join(map(str, parse_cpu_list(cpu_affinity)))]
    rc = subprocess.run(cmd).returncode  # the engine prints its own one-line error
    if rc != 0:
        raise typer.Exit(rc)


def register(app: typer.Typer) -> None:
    """Add `loadtest` and `loadtest-worker` to the deploykit app (one line in deploykit.cli)."""
    app.command("loadtest")(loadtest_cmd)
    app.command("loadtest-worker")(loadtest_worker_cmd)
