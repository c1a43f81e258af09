"""The compatibility verdict for one artifact in one runtime, and the message that says what to do.

Inputs are facts, not guesses: whether the runtime loaded the file (the runner tried), which op
versions it lacks (the runner probed them), the op versions in the file and the minimum runtime the
converter recorded in it (flatbuffer parse), the converter's version (manifest tool_versions), and
parity of the runtime's outputs with the framework model's reference outputs (the manifest's bars).
"""

from __future__ import annotations

import base64
import io
import platform
import sys
from typing import Optional

import numpy as np

from deploykit.manifest import ArtifactEntry
from deploykit.runtimes.base import from_output
from deploykit.validate import parity
from deploykit.edge.tflite_file import TfliteInfo, version_tuple

__all__ = ["decode_array", "verdict", "static_verdict", "actionable_message", "ways_out", "runtime_label",
           "runtime_name"]

# Converter settings that avoid a specific new op version, each seen working here: a TensorFlow 2.21
# conversion with the setting loads in tflite-runtime 2.14.0. Keyed by (format, op, version).
# deploykit applies them itself under --edge-runtime (deploykit.edge.target.converter_settings).
_CONVERTER_REMEDIES = {
    ("tflite-dynamic", "FULLY_CONNECTED", 12): (
        "re-export with --edge-runtime {runtime} (deploykit train-export|export), which converts with "
        "converter._experimental_disable_per_channel_quantization_for_dense_layers = True "
        "(per-tensor dense weights: FULLY_CONNECTED v9, which tflite-runtime 2.14.0 loads) and proves it there"),
}
# Runtimes whose version numbers are TensorFlow's (so they compare with the file's min_runtime_version).
_TF_NUMBERED = ("tflite-runtime", "tensorflow")


# pip package → deploykit's runtime registry name (deploykit.runtimes.RUNTIMES), so that records of
# `edge bench` and `deploykit bench` name the same runtime the same way in a report.
_REGISTRY_NAMES = {"ai-edge-litert": "litert", "tflite-runtime": "tflite-runtime", "tensorflow": "tensorflow"}


def runtime_name(package: Optional[str]) -> str:
    return _REGISTRY_NAMES.get(package or "", package or "unknown")


def decode_array(b64: str) -> np.ndarray:
    return np.load(io.BytesIO(base64.b64decode(b64)), allow_pickle=False)


def runtime_label(runtime: dict) -> str:
    return f"{runtime.get('package')} {runtime.get('version')}"


def _op_text(op: dict) -> str:
    if op.get("custom"):
        return f"custom op {op['op']}"
    has = op.get("runtime_max_version")
    version = f" version {op['version']}" if op.get("version") is not None else ""
    if has:
        return f"{op['op']}{version} (the runtime has {op['op']} up to version {has})"
    return f"{op['op']}{version} ({op.get('note') or 'the runtime has no version of it that resolves'})"


def _tf_series(version: str) -> Optional[str]:
    v = version_tuple(version)
    return f"{v[0]}.{v[1]}" if v and len(v) >= 2 else None


def _older_converter(series: str) -> str:
    """Converting with the runtime's own TensorFlow series; the pip command names a release the index
    holds for this host (where one converts), or none when there is none or the index did not answer."""
    from deploykit.edge.index import index_versions

    why = f"convert with TensorFlow {series}, whose converter writes only op versions that runtime knows"
    answer = index_versions("tensorflow")
    if answer.versions is None:
        return f"{why} (the package index could not be reached to name a release that installs here)"
    same = [v for v in answer.versions if _tf_series(v) == series]
    if same:
        return f"{why} (pip install tensorflow=={same[0]})"
    return (f"{why}; the package index has no TensorFlow {series} for this host (Python "
            f"{sys.version_info.major}.{sys.version_info.minor}, {platform.machine()}): convert under a Python it supports")


def ways_out(entry: ArtifactEntry, info: TfliteInfo, runtime: dict, lacking: list[dict],
             loadable_formats: list[str]) -> list[str]:
    """What the user can do about an artifact that does not load, most direct first."""
    out = []
    others = [f for f in loadable_formats if f != entry.format]
    if others:
        out.append(f"deploy {', '.join(others)} instead: {'they load' if len(others) > 1 else 'it loads'} "
                   f"in {runtime_label(runtime)}")
    for op in lacking:
        remedy = _CONVERTER_REMEDIES.get((entry.format, op.get("op"), op.get("version")))
        if remedy:
            out.append(remedy.format(runtime=f"{runtime.get('package')}=={runtime.get('version')}"))
    series = _tf_series(runtime.get("version") or "") if runtime.get("package") in _TF_NUMBERED else None
    if series:
        out.append(_older_converter(series))
    if info.min_runtime_version:
        out.append(f"run a newer runtime on the device: at least TFLite {info.min_runtime_version}, as the file "
                   f"records (tflite-runtime stops at 2.14.0; ai-edge-litert carries newer runtimes)")
    return out


def actionable_message(entry: ArtifactEntry, info: TfliteInfo, runtime: dict, load: dict, converter: Optional[str],
                       loadable_formats: list[str]) -> str:
    lacking = load.get("lacking_ops") or []
    rt = runtime_label(runtime)
    if lacking:
        what = f"it uses {'; '.join(_op_text(op) for op in lacking)}"
    else:
        what = (load.get("error") or "unknown error").splitlines()[0][:300]
    if load.get("kind") == "crash":
        parts = [f"{entry.format} in {rt}: {what}."]
    else:
        parts = [f"{entry.format} does not load in {rt}: {what}."]
    made = f"Converted by {converter}" if converter else "Converter version not recorded in the manifest"
    if info.min_runtime_version:
        made += f"; the file records that it needs TFLite ≥ {info.min_runtime_version}"
    parts.append(made + ".")
    options = ways_out(entry, info, runtime, lacking, loadable_formats)
    if options:
        parts.append("Ways out: " + "; or ".join(options) + ".")
    return " ".join(parts)


def _converter(entry: ArtifactEntry) -> Optional[str]:
    tv = entry.tool_versions or {}
    for key in ("tensorflow", "ai-edge-torch", "ai-edge-litert", "tf2onnx", "torch"):
        if key in tv:
            return f"{key} {tv[key]}"
    return None


def verdict(entry: ArtifactEntry, info: TfliteInfo, result: dict, reference: Optional[dict],
            loadable_formats: list[str], where: str) -> tuple[dict, Optional[np.ndarray]]:
    """A runner result → (compat dict for BenchRecord.compat, probabilities or None).

    `reference`: {"probs": framework probabilities for the inputs sent, "y": labels or None}.
    verdict: "compatible" (loads and meets the manifest's parity bars), "parity-failed" (loads,
    outputs differ beyond the bars), "incompatible" (does not load), "unavailable" (cannot be tried
    there, e.g. no Edge TPU delegate).
    """
    runtime = result.get("runtime") or {}
    load = result.get("load") or {}
    converter = _converter(entry)
    compat = {"runtime": runtime_label(runtime), "where": where, "ops": info.op_labels(),
              "min_runtime_version": info.min_runtime_version, "converter": converter,
              "loads": bool(load.get("ok")), "xnnpack": load.get("xnnpack"), "edgetpu": load.get("edgetpu")}
    if load.get("unavailable"):
        compat.update(verdict="unavailable", ok=None, reason=load["unavailable"])
        return compat, None
    if not load.get("ok"):
        # `reason` is the actionable message; the runtime's own words are kept as `runtime_error`.
        compat.update(verdict="incompatible", ok=False, runtime_error=(load.get("error") or "")[:500],
                      lacking_ops=load.get("lacking_ops") or [],
                      ways_out=ways_out(entry, info, runtime, load.get("lacking_ops") or [], loadable_formats),
                      reason=actionable_message(entry, info, runtime, load, converter, loadable_formats))
        return compat, None
    probs = from_output(decode_array(result["outputs"]), entry.output)
    bar = entry.parity
    atol = bar.atol if bar else None
    min_top1 = bar.min_top1_agreement if bar else 0.98
    ref = reference["probs"][: len(probs)] if reference else None
    if ref is None:
        compat.update(verdict="compatible", ok=True, note="loads and runs; no reference outputs to compare")
        return compat, probs
    par, failures = parity(ref, probs, atol=atol, min_top1=min_top1)
    if not np.isfinite(probs).all():
        failures.insert(0, "non-finite outputs")
    compat.update(samples=par.samples, max_abs_diff=par.max_abs_diff, top1_agreement=par.top1_agreement,
                  parity_bar={"atol": atol, "min_top1_agreement": min_top1}, parity_passed=not failures)
    if reference.get("y") is not None:
        compat["accuracy_on_reference"] = float((probs.argmax(1) == reference["y"][: len(probs)]).mean())
    if failures:
        compat.update(verdict="parity-failed", ok=False,
                      reason=f"loads in {runtime_label(runtime)} but outputs differ from the framework model: "
                             + "; ".join(failures))
    else:
        compat.update(verdict="compatible", ok=True)
    return compat, probs


def static_verdict(entry: ArtifactEntry, info: TfliteInfo, package: str, version: str, why: str) -> dict:
    """When the runtime cannot be installed here: compare the file's recorded minimum runtime with
    the version asked (only for runtimes numbered like TensorFlow). Never claims "compatible"."""
    compat = {"runtime": f"{package} {version}", "where": "static (runtime not installable here)",
              "ops": info.op_labels(), "min_runtime_version": info.min_runtime_version,
              "converter": _converter(entry), "loads": None, "static": True}
    need, have = version_tuple(info.min_runtime_version), version_tuple(version)
    if package in _TF_NUMBERED and need and have and need > have:
        runtime = {"package": package, "version": version}
        options = ways_out(entry, info, runtime, [], [])
        compat.update(verdict="incompatible", ok=False, reason=(
            f"{entry.format} needs TFLite ≥ {info.min_runtime_version} (recorded in the file by "
            f"{compat['converter'] or 'its converter'}), newer than {package} {version}. "
            + ("Ways out: " + "; or ".join(options) + "." if options else "")).strip())
    else:
        compat.update(verdict="unknown", ok=None, reason=(
            f"not tried: {why}. The file records TFLite ≥ {info.min_runtime_version or '(not recorded)'}"
            + (f", which {package} {version} meets; op-level support is not verified" if need and have and need <= have else "")))
    return compat
