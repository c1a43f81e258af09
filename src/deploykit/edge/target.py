"""`--edge-runtime NAME==VERSION` on train-export / export: artifacts made for an old device runtime.

Two halves, both inside deploykit:

- **Converter settings the target needs** (`converter_settings`): what the exporters set so that the
  file uses only op versions that runtime has. Each rule was seen working here: TensorFlow 2.21's
  dynamic-range conversion writes FULLY_CONNECTED v12 (per-channel dense weights, TFLite ≥ 2.17),
  which tflite-runtime 2.14.0 lacks; with per-tensor dense weights it writes FULLY_CONNECTED v9,
  which loads there and keeps top-1 agreement with the framework model.
- **Proof in that runtime** (`prove_for_edge`): after the usual validation, every TFLite artifact is
  loaded and compared in the target runtime by `deploykit edge check`'s own machinery (its isolated
  environment, the device runner); the verdict goes into the artifact's manifest entry (`edge`), and
  an artifact that does not load there, or misses its parity bar there, is `failed`.
"""

from __future__ import annotations

from typing import Optional

from deploykit.edge.envs import RuntimeSpec, parse_runtime_spec
from deploykit.edge.tflite_file import version_tuple

__all__ = ["parse_edge_runtime", "converter_settings", "prove_for_edge", "PER_CHANNEL_DENSE_SINCE"]

# TFLite's FULLY_CONNECTED v12 (per-channel int8 dense weights in hybrid kernels) exists since 2.17;
# tflite-runtime numbers its releases like TensorFlow.
PER_CHANNEL_DENSE_SINCE = (2, 17)
_TF_NUMBERED = ("tflite-runtime", "tensorflow")
# what --edge-runtime targets: the TFLite artifacts are converted and proven for it
TFLITE_RUNTIMES = ("tflite-runtime", "ai-edge-litert", "tensorflow")


def parse_edge_runtime(text: Optional[str]) -> Optional[RuntimeSpec]:
    """'tflite-runtime==2.14.0' → RuntimeSpec (a UsageError names the accepted form), after checking
    that the version exists on the package index (a typo is an error naming the versions that do)."""
    if not text:
        return None
    spec = parse_runtime_spec(text)
    if spec.package not in TFLITE_RUNTIMES:
        from deploykit.errors import UsageError

        raise UsageError(f"--edge-runtime {text}: a TFLite runtime is expected ({', '.join(TFLITE_RUNTIMES)}); "
                         "ONNX artifacts are checked with 'deploykit edge check --runtime onnxruntime==V'")
    from deploykit.edge.index import verify_version

    verify_version(spec.package, spec.version)
    return spec


def _before(spec: RuntimeSpec, version: tuple[int, int]) -> bool:
    have = version_tuple(spec.version)
    return spec.package in _TF_NUMBERED and bool(have) and tuple(have[:2]) < version


def converter_settings(spec: Optional[RuntimeSpec], fmt: str) -> dict[str, object]:
    """Converter attributes to set for `fmt` so that it loads in `spec` ({} when nothing is needed)."""
    if spec is None:
        return {}
    if fmt == "tflite-dynamic" and _before(spec, PER_CHANNEL_DENSE_SINCE):
        return {"_experimental_disable_per_channel_quantization_for_dense_layers": True}
    return {}


def prove_for_edge(model_dir, manifest, spec: RuntimeSpec, reporter=None) -> None:
    """Check every TFLite artifact that passed its own validation in `spec`; record each verdict in
    the manifest entry and fail the artifacts that do not load or match there. Rewrites the manifest."""
    from deploykit.edge.check import CheckSettings, run_check

    formats = [a.format for a in manifest.artifacts if a.path.endswith(".tflite") and a.status == "passed"]
    if not formats:
        return
    results = run_check([str(model_dir)], CheckSettings(runtime=str(spec), formats=formats), reporter=reporter)
    by_format = {r.format: r for r in results.records}
    for entry in manifest.artifacts:
        record = by_format.get(entry.format)
        if record is None:
            continue
        compat = record.compat or {}
        entry.edge = {"runtime": str(spec), "verdict": compat.get("verdict"), "ok": compat.get("ok"),
                      "where": compat.get("where"), "max_abs_diff": compat.get("max_abs_diff"),
                      "top1_agreement": compat.get("top1_agreement"), "samples": compat.get("samples"),
                      "ops": compat.get("ops")}
        if compat.get("ok") is False:
            entry.status = "failed"
            entry.error = f"--edge-runtime {spec}: {record.reason}"
        elif compat.get("ok") is None:
            entry.edge["reason"] = record.reason
    manifest.write(model_dir)
