"""`deploykit edge check`: will these TFLite artifacts load, and give the same answers, in the exact
runtime version a device runs?

Each artifact is loaded by the device runner in an isolated environment holding that runtime version
(`deploykit.edge.envs`), run on the model's reference inputs, and compared with the framework model's
outputs. An artifact that does not load gets the op versions the runtime lacks and the ways out. When
the runtime cannot be installed here at all (an old wheel for another Python), the verdict is static:
the minimum runtime the converter recorded in the file, compared with the version asked.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Optional

from deploykit.errors import RuntimeUnavailable
from deploykit.manifest import ModelManifest
from deploykit.results import BenchRecord, ResultsFile, machine_info
from deploykit.edge.compat import runtime_name, static_verdict, verdict
from deploykit.edge.envs import RuntimeSpec, ensure_runtime_env, parse_runtime_spec
from deploykit.edge.index import verify_version
from deploykit.edge.prepare import edge_entries, kinds_for, load_reference, prepare_artifacts, resolve_models
from deploykit.edge.profiles import DeviceProfile, get_profile
from deploykit.edge.session import run_session
from deploykit.edge.transport import LocalTransport

__all__ = ["CheckSettings", "run_check", "DEFAULT_PROFILE", "check_target", "exit_code", "EXIT_UNKNOWN"]

DEFAULT_PROFILE = "rpi4"
CHECK_TIMEOUT_S = 300.0
EXIT_INCOMPATIBLE = 1
EXIT_UNKNOWN = 3  # distinct from 0: a CI must not pass a check that tested nothing


def exit_code(records: list[BenchRecord]) -> tuple[int, list[str]]:
    """(exit code, one line per artifact that is not compatible). 0 only when every artifact loaded and
    matched; a definite failure (1) outranks an unknown (3)."""
    bad = [r for r in records if (r.compat or {}).get("ok") is False]
    unknown = [r for r in records if (r.compat or {}).get("ok") is None]
    lines = [f"{r.model}/{r.format}: {r.reason}" for r in bad]
    lines += [f"{r.model}/{r.format}: unknown ({r.compat.get('verdict') if r.compat else 'no verdict'}): "
              f"{(r.reason or 'no reason recorded').splitlines()[0]}" for r in unknown]
    return (EXIT_INCOMPATIBLE if bad else EXIT_UNKNOWN if unknown else 0), lines


@dataclass
class CheckSettings:
    runtime: Optional[str] = None  # NAME==VERSION; default: the profile's first runtime
    profile: Optional[str] = None  # default DEFAULT_PROFILE when runtime is None too
    formats: Optional[list[str]] = None
    samples: int = 1000

    def resolve(self) -> tuple[RuntimeSpec, Optional[DeviceProfile], list[str]]:
        notes = []
        profile = get_profile(self.profile) if self.profile else None
        if self.runtime:
            spec = parse_runtime_spec(self.runtime)
        else:
            if profile is None:
                profile = get_profile(DEFAULT_PROFILE)
                notes.append(f"no --runtime or --profile: checked against the {DEFAULT_PROFILE} profile")
            spec = parse_runtime_spec(profile.default_runtime)
        if profile is not None and str(spec) not in profile.runtimes:
            notes.append(f"{spec} is not among the runtimes the {profile.name} profile lists "
                         f"({', '.join(profile.runtimes)})")
        if profile is None or str(spec) not in profile.runtimes:
            # A profile's own runtime is a recorded fact (Coral's comes from its apt repository, not
            # PyPI); a version typed by the user must exist somewhere.
            notes += verify_version(spec.package, spec.version, arch=profile.arch if profile else "aarch64",
                                    python=profile.python if profile else None)
        return spec, profile, notes


def check_target(spec: RuntimeSpec, profile: Optional[DeviceProfile]) -> str:
    """The records' target: the profile's name (so a report puts the verdict beside that device's
    latency: `edge:rpi4` matches `emulated:rpi4`), or the runtime."""
    return f"edge:{profile.name}" if profile else f"runtime:{spec}"


def _record(manifest: ModelManifest, entry, *, target: str, spec: RuntimeSpec, samples: int, compat: dict,
            label: str, extra: dict) -> BenchRecord:
    ok = compat.get("ok")
    status = "ok" if ok else "unavailable" if compat["verdict"] in ("unavailable", "unknown") else "failed"
    return BenchRecord(
        target=target, label=label, model=manifest.model, dataset=manifest.dataset.name if manifest.dataset else None,
        format=entry.format, runtime=runtime_name(spec.package), runtime_version=spec.version, device="cpu", threads=None,
        batch=samples, status=status, reason=None if ok else compat.get("reason"), artifact_bytes=entry.bytes,
        accuracy=entry.accuracy, max_abs_diff=compat.get("max_abs_diff"), top1_agreement=compat.get("top1_agreement"),
        compat=compat, extra=extra)


def run_check(paths: list[str], settings: CheckSettings, reporter=None) -> ResultsFile:
    spec, profile, notes = settings.resolve()
    model_dirs, more = resolve_models(paths)
    notes += more
    target = check_target(spec, profile)
    label = f"compatibility check in {spec} on this machine; not a device measurement"
    machine = machine_info()
    records: list[BenchRecord] = []
    plans = []
    kinds = kinds_for(str(spec))
    hints = []
    for model_dir in model_dirs:
        manifest = ModelManifest.read(model_dir)
        entries, left_out = edge_entries(manifest, settings.formats, kinds)
        notes += left_out
        if not entries:
            hints.append(_other_kind_hint(manifest, kinds))
            notes.append(f"{manifest.model}: no {_kind_text(kinds)} artifacts to check in {spec}{hints[-1]}")
            continue
        reference = load_reference(model_dir, manifest, settings.samples)
        plans.append((model_dir, manifest, prepare_artifacts(model_dir, manifest, entries, reference), reference))
    if not plans:
        from deploykit.errors import UsageError

        raise UsageError(f"no {_kind_text(kinds)} artifacts for {spec} in {', '.join(paths)}{next(filter(None, hints), '')}")

    try:
        env = ensure_runtime_env(spec, reporter=reporter)
    except RuntimeUnavailable as exc:
        why = str(exc)
        notes.append(f"{spec} could not be installed here, so the check is static (the file's recorded "
                     f"minimum runtime): {why}")
        for _model_dir, manifest, prepared, reference in plans:
            for art in prepared:
                compat = static_verdict(art.entry, art.info, spec.package, spec.version, why)
                records.append(_record(manifest, art.entry, target=target, spec=spec, samples=reference["samples"],
                                       compat=compat, label=label, extra={"static": True}))
        return _results(machine, settings, spec, profile, notes, records, model_dirs, env_info=None)

    for model_dir, manifest, prepared, reference in plans:
        if reporter:
            reporter.stage(f"edge check {manifest.model} in {spec}", total=len(prepared))
        try:
            session = asyncio.run(run_session(
                LocalTransport(env.python), prepared, mode="check", runtime=str(spec), run_timeout_s=CHECK_TIMEOUT_S,
                progress=(lambda msg: reporter.advance(msg) if reporter else None)))
        finally:
            if reporter:
                reporter.done()
        loads = [a.entry.format for a, r in zip(prepared, session.results) if (r.get("load") or {}).get("ok")]
        for art, result in zip(prepared, session.results):
            compat, _probs = verdict(art.entry, art.info, result, reference, loads,
                                     where=f"{spec} in {env.path} (this machine)")
            load = result.get("load") or {}
            extra = {"load_ms": load.get("load_ms"), "reference": reference["source"],
                     "runtime_env": str(env.path), "native_log": load.get("native_log", [])[-5:]}
            records.append(_record(manifest, art.entry, target=target, spec=spec, samples=reference["samples"],
                                   compat=compat, label=label, extra=extra))
    return _results(machine, settings, spec, profile, notes, records, model_dirs,
                    env_info={"path": str(env.path), "python": str(env.python), "packages": env.packages})


def _kind_text(kinds) -> str:
    return " or ".join("ONNX" if k == "onnx" else "TFLite" for k in kinds)


def _other_kind_hint(manifest: ModelManifest, kinds) -> str:
    """A model with ONNX artifacts and no TFLite ones (PaddlePaddle; PyTorch without its onnx2tf
    tflite-fp32), or the reverse: say which runtime checks them."""
    if "onnx" not in kinds and any(a.path.endswith(".onnx") for a in manifest.artifacts):
        return " (its ONNX artifacts are checked with --runtime onnxruntime==VERSION)"
    if "tflite" not in kinds and any(a.path.endswith(".tflite") for a in manifest.artifacts):
        return " (its TFLite artifacts are checked with a TFLite runtime, e.g. --runtime tflite-runtime==2.14.0)"
    return ""


def _results(machine, settings, spec, profile, notes, records, model_dirs, env_info) -> ResultsFile:
    machine.extra.update(runtime_env=env_info)
    s = {"runtime": str(spec), "profile": profile.name if profile else None, "formats": settings.formats,
         "samples": settings.samples}
    if profile:
        s["profile_facts"] = profile.model_dump()
    return ResultsFile(kind="edge-check", machine=machine, settings=s, notes=notes, records=records,
                       manifests=[str(d) for d in model_dirs])
