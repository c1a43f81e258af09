"""`deploykit edge bench`: latency of TFLite (and ONNX, in ONNX Runtime) artifacts on a device over SSH,
or emulated here.

On the device, the runner times ``set_tensor → invoke → get_tensor`` with `deploykit.bench.protocol`
(warm-up, windows until three agree within 10 %, percentiles), the same call and protocol
`deploykit bench` uses here, for each thread count and batch size; the runtime's defaults apply
(XNNPACK for float models; the Edge TPU delegate for *_edgetpu.tflite). Each artifact is also
checked on the device (loads, op versions, parity with the framework model), so every latency has
its compatibility verdict beside it.

`--target local --profile rpi4` runs the same runner here, in the profile's runtime (tflite-runtime
2.14.0 for a Pi, installed into deploykit's isolated environment) with the profile's thread count on
pinned cores; every record is then `emulated` and labelled "emulated on <this CPU> in <runtime>
(the profile's runtime | --runtime override), not a device measurement".

Nothing is written until every artifact is done: a refused login, a missing runtime or a dropped
connection leaves no results file.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Optional

from deploykit.errors import RuntimeUnavailable, UsageError
from deploykit.manifest import ModelManifest
from deploykit.results import BenchRecord, LatencyStats, MachineInfo, ResultsFile
from deploykit.bench import protocol
from deploykit.bench.settings import ProtocolSettings
from deploykit.edge.compat import runtime_name, verdict
from deploykit.edge.envs import RuntimeEnv, RuntimeSpec, ensure_runtime_env, parse_runtime_spec
from deploykit.edge.index import verify_version
from deploykit.edge.prepare import edge_entries, kinds_for, load_reference, prepare_artifacts, resolve_models
from deploykit.edge.profiles import DeviceProfile, get_profile
from deploykit.edge.session import LOAD_ALLOWANCE_S, run_session
from deploykit.edge.transport import LocalTransport, SSHTransport, parse_ssh_target

__all__ = ["EdgeBenchSettings", "run_edge_bench", "emulation_label", "local_runtime", "pinned_cores", "machine_from_facts",
           "throttle_notes"]

TIMED_CALL = ("set_tensor → invoke → get_tensor on a tensor prepared once on the host with to_input "
              "(what deploykit bench times through Predictor.run)")


@dataclass
class EdgeBenchSettings(ProtocolSettings):
    """`deploykit edge bench`'s settings; the protocol's (batch sizes, threads, windows) are ProtocolSettings'."""

    target: str  # "local" or ssh://USER@HOST[:PORT]
    profile: Optional[str] = None
    runtime: Optional[str] = None
    # threads (ProtocolSettings) None: 1 on a device; the profile's cores (capped to this machine) locally
    formats: Optional[list[str]] = None
    identity: Optional[Path] = None
    known_hosts: Optional[Path] = None
    trust_new_host: bool = False
    python: Optional[str] = None  # None: the venv `deploykit edge setup` made on the device, else python3
    samples: int = 256
    sustained_s: Optional[float] = None  # measure each record this long, sampling clock and temperature
    sample_every_s: float = 1.0
    op_profile: bool = False  # top operators by time, where the runtime has a profiler (ONNX Runtime)

    def __post_init__(self):
        if self.sustained_s is not None and self.sustained_s <= 0:
            raise UsageError(f"--sustained must be a positive duration, got {self.sustained_s}")
        super().__post_init__()
        if self.samples < 1:
            raise UsageError("--samples must be ≥ 1")

    @property
    def local(self) -> bool:
        return self.target == "local"

    @property
    def max_time_s(self) -> float:
        if self.sustained_s:
            return 2.0 * self.sustained_s
        return super().max_time_s

    def protocol_settings(self) -> dict:
        if self.sustained_s:  # at least that long of steady windows; room for enough windows to hold it
            windows = max(self.max_windows, int(self.max_time_s / self.window_s) + 10)
            return {"warmup_s": self.warmup_s, "min_time_s": self.sustained_s, "window_s": self.window_s,
                    "max_windows": windows, "tolerance": self.tolerance, "max_time_s": self.max_time_s}
        return super().protocol_settings()


def pinned_cores(cores_wanted: int) -> list[int]:
    """The first min(cores_wanted, available) cores this process may run on."""
    available = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    return available[: max(1, min(cores_wanted, len(available)))]


def emulation_label(cpu_model: str, runtime: str, runtime_source: str) -> str:
    """Every emulated record carries which runtime ran, and whether it was the profile's."""
    how = "the profile's runtime" if runtime_source == "profile" else "--runtime override"
    return f"emulated on {cpu_model} in {runtime} ({how}), not a device measurement"


def local_runtime(profile: DeviceProfile, asked: Optional[str]) -> tuple[RuntimeSpec, str, list[str]]:
    """The runtime an emulation runs: the profile's (what the device runs) unless --runtime overrides it."""
    if not asked:
        return parse_runtime_spec(profile.default_runtime), "profile", []
    spec = parse_runtime_spec(asked)
    if str(spec) in profile.runtimes:
        return spec, "profile", []
    notes = verify_version(spec.package, spec.version, arch=profile.arch, python=profile.python)
    return spec, "override", notes + [f"--runtime {spec} overrides the {profile.name} profile's "
                                      f"{', '.join(profile.runtimes)}"]


def ensure_local_env(spec: RuntimeSpec, profile: DeviceProfile, reporter) -> RuntimeEnv:
    try:
        return ensure_runtime_env(spec, reporter=reporter)
    except RuntimeUnavailable as exc:
        # Emulating with another runtime than the one named would make the label false: refuse.
        raise RuntimeUnavailable(f"cannot emulate {profile.name}: {exc}; pass --runtime NAME==VERSION to emulate "
                                 f"with a runtime that installs here (recorded as an override)") from exc


def machine_from_facts(facts: dict, first_state: dict, last_state: dict) -> MachineInfo:
    """The device's facts as the results schema's MachineInfo; clock/temperature/throttling in `extra`."""
    rt = facts.get("runtime") or {}
    return MachineInfo(
        hostname=facts.get("hostname") or "unknown", cpu_model=facts.get("cpu_model") or "unknown",
        cores_logical=int(facts.get("cores_logical") or 1), memory_bytes=facts.get("memory_bytes"),
        os=facts.get("os") or "unknown", python=facts.get("python") or "unknown", board=facts.get("board"),
        extra={"arch": facts.get("arch"), "numpy": facts.get("numpy"), "runtime": rt, "runtimes": facts.get("runtimes"),
               "cpu_governor": facts.get("cpu_governor"), "cpu_max_hz": facts.get("cpu_max_hz"),
               "edgetpu_library": facts.get("edgetpu_library"), "state_before": first_state,
               "state_after": last_state, "throttled": _throttled(first_state, last_state),
               "not_available": {**(facts.get("not_available") or {}), **(first_state.get("not_available") or {})}})


def _throttled(*states: Optional[dict]):
    """True/False from the firmware's "now" bits; "not available" where the device records none."""
    known = [s["throttled_now"] for s in states if s and s.get("throttled_now") is not None]
    if not known:
        why = next((s.get("not_available", {}).get("throttled") for s in states if s), None)
        return why or "not available: the device reported no throttling state"
    return any(known)


def throttle_notes(states: list[tuple[str, dict]]) -> list[str]:
    """Notes that make a throttled run visible: firmware throttling flags, or the clock falling."""
    notes = []
    # Only the "now" bits say this run was throttled; the "occurred" bits may be from any time since boot.
    now = [(what, s) for what, s in states if s.get("throttled_now")]
    if now:
        what, s = now[-1]
        flags = [f for f in s["throttled_flags"] if f.endswith(" now")]
        notes.append(f"THROTTLING reported by the device ({what}): {', '.join(flags)} ({s.get('throttled')}); "
                     f"figures measured while throttled are slower than the device's best")
    else:
        past = [(what, s) for what, s in states if s.get("throttled_flags")]
        if past:
            what, s = past[-1]
            notes.append(f"the device reports {', '.join(s['throttled_flags'])} ({s.get('throttled')}, {what}): "
                         f"since boot, not during this run (its \"now\" bits were clear)")
    clocks = [s.get("arm_clock_hz") for _, s in states if s.get("arm_clock_hz")]
    temps = [s.get("temp_c") for _, s in states if s.get("temp_c") is not None]
    if clocks and temps:
        notes.append(f"CPU clock {min(clocks) / 1e6:,.0f}–{max(clocks) / 1e6:,.0f} MHz, temperature "
                     f"{min(temps):.1f}–{max(temps):.1f} °C during the run")
    missing = sorted({v for _, s in states for v in (s.get("not_available") or {}).values()})
    if missing:
        notes.append("device facts " + "; ".join(missing))
    return notes


def sustained_notes(records: list[BenchRecord], sustained_s: float) -> list[str]:
    """Heat soak, per record: clock and temperature at the first and last sample of its sustained run."""
    notes = []
    for r in records:
        samples = (r.extra or {}).get("state_samples") or []
        if not samples:
            continue
        first, last = samples[0], samples[-1]
        parts = []
        if first.get("arm_clock_hz") and last.get("arm_clock_hz"):
            parts.append(f"clock {first['arm_clock_hz'] / 1e6:,.0f} → {last['arm_clock_hz'] / 1e6:,.0f} MHz")
        if first.get("temp_c") is not None and last.get("temp_c") is not None:
            parts.append(f"temperature {first['temp_c']:.1f} → {last['temp_c']:.1f} °C")
        if any(s.get("throttled_now") for s in samples):
            parts.append("THROTTLED during the run")
        notes.append(f"sustained {sustained_s:g} s, {r.model}/{r.format} t{r.threads} b{r.batch}: "
                     f"{len(samples)} samples over {last['t_s']:.0f} s; "
                     + ("; ".join(parts) or "clock and temperature not available on this device"))
    return notes


def op_profile_notes(plans, results: list[dict]) -> list[str]:
    """One note per artifact: its top operators by time, or why the runtime gives none."""
    notes = []
    arts = [(manifest, art) for manifest, arts, _ in plans for art in arts]
    for (manifest, art), result in zip(arts, results):
        prof = result.get("op_profile")
        if not prof:
            continue
        what = f"op profile {manifest.model}/{art.entry.format}"
        if prof.get("not_available"):
            notes.append(f"{what}: {prof['not_available']}")
            continue
        top = ", ".join(f"{o['op']} {o['share']:.0%} ({o['us_per_call']:.1f} µs)" for o in prof["top"])
        notes.append(f"{what} (batch {prof['batch']}, {prof['calls']} calls, {prof['source']}): {top}")
    return notes


def _records_for(manifest, art, result, compat, *, target, emulated, label, settings, threads, batch_sizes) -> list[BenchRecord]:
    entry = art.entry
    rt = result.get("runtime") or {}
    load = result.get("load") or {}
    base = dict(
        target=target, emulated=emulated, label=label, model=manifest.model,
        dataset=manifest.dataset.name if manifest.dataset else None, format=entry.format,
        runtime=runtime_name(rt.get("package")), runtime_version=rt.get("version"),
        device="edgetpu" if load.get("edgetpu") else "cpu", artifact_bytes=entry.bytes, accuracy=entry.accuracy,
        max_abs_diff=compat.get("max_abs_diff"), top1_agreement=compat.get("top1_agreement"), compat=compat,
    )
    common_extra = {"op_profile": result.get("op_profile"), "timed": TIMED_CALL, "state_before": result.get("state_before"),
                    "state_after": result.get("state_after"), "pinned_cpus": result.get("pinned_cpus"),
                    "xnnpack": load.get("xnnpack"), "parity": "measured where it ran, vs the framework model's reference outputs",
                    "fixed_batch": result.get("fixed_batch")}
    if not load.get("ok"):
        status = "unavailable" if compat["verdict"] == "unavailable" else "failed"
        return [BenchRecord(**base, threads=threads[0], batch=batch_sizes[0], status=status,
                            reason=compat.get("reason"), extra=common_extra)]
    records = []
    for run in result.get("runs", []):
        if "error" in run:
            records.append(BenchRecord(**base, threads=run["threads"], batch=batch_sizes[0], status="failed",
                                       reason=f"reloading with {run['threads']} threads failed: {run['error'][:300]}",
                                       extra=common_extra))
            continue
        m = run["measure"]
        extra = dict(common_extra, state_samples=run.get("state_samples") or None, **{k: m[k] for k in ("calls", "measured_s", "stop_reason", "window_calls",
                                                         "warmup_calls", "clock", "clock_overhead_us", "tolerance",
                                                         "min_time_s", "protocol_version")})
        records.append(BenchRecord(
            **base, threads=run["threads"], batch=run["batch"], status="ok", load_ms=run["load_ms"],
            first_inference_ms=run["first_inference_ms"], latency=LatencyStats(**m["latency"]),
            throughput_sps=run["batch"] * m["calls_per_s"], peak_rss_bytes=result.get("peak_rss_bytes"),
            warmup_s=m["warmup_s"], window_s=m["window_s"], windows=m["windows"],
            window_p50s_us=m["window_p50s_us"], figure_windows=m.get("figure_windows"), stable=m["stable"], extra=extra))
    return records


def run_edge_bench(paths: list[str], settings: EdgeBenchSettings, reporter=None) -> ResultsFile:
    notes: list[str] = []
    profile = get_profile(settings.profile) if settings.profile else None
    note = reporter.note if reporter else (lambda msg: None)
    if settings.local:
        if profile is None:
            raise UsageError("--target local emulates a device: name it with --profile (e.g. --profile rpi4)")
        cpus = pinned_cores(profile.cores)
        threads = settings.threads or [len(cpus)]
        if len(cpus) < profile.cores:
            notes.append(f"{profile.name} has {profile.cores} cores; {len(cpus)} available here: pinned to cores "
                         f"{','.join(map(str, cpus))}" + ("" if settings.threads else f", {len(cpus)} thread(s)"))
        spec, runtime_source, more = local_runtime(profile, settings.runtime)
        notes += more
        env = ensure_local_env(spec, profile, reporter)
        transport, runtime = LocalTransport(env.python), str(spec)
    else:
        target = parse_ssh_target(settings.target)
        cpus = None
        threads = settings.threads or [1]
        if settings.runtime and "==" in settings.runtime:
            spec = parse_runtime_spec(settings.runtime)  # a usage error here, not on the device
            # The runner's advice names this version (pip install NAME==VERSION): it must exist.
            notes += verify_version(spec.package, spec.version, arch=profile.arch if profile else "aarch64",
                                    python=profile.python if profile else None)
        runtime = settings.runtime
        transport = SSHTransport(target, identity=settings.identity, known_hosts=settings.known_hosts,
                                 trust_new_host=settings.trust_new_host, python=settings.python, notify=note)

    model_dirs, more = resolve_models(paths)
    notes += more
    plans = []
    for model_dir in model_dirs:
        manifest = ModelManifest.read(model_dir)
        entries, left_out = edge_entries(manifest, settings.formats, kinds_for(runtime))
        notes += left_out
        if entries:
            reference = load_reference(model_dir, manifest, settings.samples)
            plans.append((manifest, prepare_artifacts(model_dir, manifest, entries, reference), reference))
    if not plans:
        what = " or ".join("ONNX" if k == "onnx" else "TFLite" for k in kinds_for(runtime))
        raise UsageError(f"no {what} artifacts for {runtime or 'the device'} in {', '.join(paths)}")
    prepared = [a for _, arts, _ in plans for a in arts]

    per_run = len(threads) * len(settings.batch_sizes) * (settings.max_time_s + 5)
    if reporter:
        reporter.stage(f"edge bench on {transport.where}", total=len(prepared))
    try:
        session = asyncio.run(run_session(
            transport, prepared, mode="bench", runtime=runtime, threads=threads, batch_sizes=settings.batch_sizes,
            cpus=cpus, protocol_settings=settings.protocol_settings(), run_timeout_s=LOAD_ALLOWANCE_S + per_run,
            sample_every_s=settings.sample_every_s if settings.sustained_s else None, op_profile=settings.op_profile,
            progress=(lambda msg: reporter.advance(msg) if reporter else None)))
    finally:
        if reporter:
            reporter.done()

    facts = session.facts
    results = session.results
    states = [("start", session.state)] + [(f"{r['format']} {w}", r.get(f"state_{w}") or {})
                                           for r in results for w in ("before", "after")]
    machine = machine_from_facts(facts, session.state, states[-1][1])
    if settings.local:
        label = emulation_label(machine.cpu_model, runtime, runtime_source)
        target_name, emulated = f"emulated:{profile.name}", True
        machine.extra["emulates"] = {"profile": profile.name, "title": profile.title, "cpu": profile.cpu,
                                     "cores": profile.cores, "clock_ghz": profile.clock_ghz,
                                     "runtime": runtime, "runtime_source": runtime_source}
        ran = "its runtime" if runtime_source == "profile" else f"{runtime} instead of its runtime"
        notes.insert(0, f"{label}: {profile.title} emulated by running {ran} ({runtime}, in an isolated "
                        f"environment) with its thread count on pinned cores of this machine; its latency on "
                        f"the device will differ")
    else:
        label, target_name, emulated = None, f"edge:{target.host}", False
        if profile:
            machine.extra["profile"] = profile.name
    notes += throttle_notes(states)

    records: list[BenchRecord] = []
    position = 0
    for manifest, arts, reference in plans:
        mine = results[position: position + len(arts)]
        position += len(arts)
        loads = [a.entry.format for a, r in zip(arts, mine) if (r.get("load") or {}).get("ok")]
        for art, result in zip(arts, mine):
            compat, _ = verdict(art.entry, art.info, result, reference, loads, where=f"{transport.where}")
            records += _records_for(manifest, art, result, compat, target=target_name, emulated=emulated, label=label,
                                    settings=settings, threads=threads, batch_sizes=settings.batch_sizes)
    if settings.local:
        for r in records:  # which runtime ran, and whether it was the profile's, travels with every record
            r.extra.update(runtime_spec=runtime, runtime_source=runtime_source)
    if settings.sustained_s:
        notes += sustained_notes(records, settings.sustained_s)
    if settings.op_profile:
        notes += op_profile_notes(plans, results)
    unstable = settings.unstable_note([f"{r.format} b{r.batch} t{r.threads}"
                                       for r in records if r.status == "ok" and not r.stable])
    if unstable:
        notes.append(unstable)
    s = asdict(settings)
    s.update(identity=str(settings.identity) if settings.identity else None,
             known_hosts=str(settings.known_hosts) if settings.known_hosts else None,
             threads=threads, cpus=cpus, runtime=runtime, runtime_source=runtime_source if settings.local else None, timed=TIMED_CALL, max_time_s=settings.max_time_s,
             protocol_version=protocol.PROTOCOL_VERSION, isolation="one runner process per artifact")
    return ResultsFile(kind="edge-bench", machine=machine, settings=s, notes=notes, records=records,
                       manifests=[str(d) for d in model_dirs])
