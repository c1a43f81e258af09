"""Serving settings, the `--format auto` choice, and the serving image kept in step with the bentofile."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from deploykit.errors import ManifestError, RuntimeUnavailable, UsageError
from deploykit.manifest import ArtifactEntry, InputSpec, ModelManifest
from deploykit.results import BenchRecord, LatencyStats, ResultsFile, machine_info
from deploykit.serving.config import ServeSettings, read_config_file
from deploykit.serving.selection import AUTO_ORDER, choose_format

ROOT = Path(__file__).resolve().parents[2]


# -- settings -----------------------------------------------------------------------------------------
def test_bento_arguments_win_over_environment_over_defaults():
    env = {"DEPLOYKIT_MODEL": "from-env", "DEPLOYKIT_FORMAT": "onnx", "DEPLOYKIT_MAX_BATCH_SIZE": "8", "OTHER": "x"}
    s = ServeSettings.from_sources({"format": "tflite-fp32"}, env)
    assert (s.model, s.format, s.max_batch_size) == ("from-env", "tflite-fp32", 8)
    assert ServeSettings.from_sources({}, {}).max_latency_ms == 500
    assert ServeSettings.from_sources({}, {"DEPLOYKIT_ACCESS_LOG": "true"}).access_log is True


def test_settings_round_trip_as_bento_arguments():
    s = ServeSettings.from_sources({"model": "m", "max_queue": 7, "warmup_s": 0.25}, {})
    assert ServeSettings.from_sources(s.as_args(), {}) == s


@pytest.mark.parametrize("args, words", [
    ({"max_batch_siz": 3}, "unknown serving setting(s) max_batch_siz"),
    ({"max_batch_size": "lots"}, "max_batch_size='lots'"),
    ({"max_batch_size": 1}, "max_batch_size=1"),
    ({"invert": "sometimes"}, "invert='sometimes'"),
])
def test_bad_settings_are_one_usage_error_naming_the_key(args, words):
    with pytest.raises(UsageError, match=re.escape(words)):
        ServeSettings.from_sources(args, {})


def test_config_file_yaml_and_json(tmp_path):
    (tmp_path / "s.yaml").write_text("model: mnist-torch-mlp\nmax_batch_size: 16\n")
    (tmp_path / "s.json").write_text('{"format": "onnx"}')
    assert read_config_file(tmp_path / "s.yaml") == {"model": "mnist-torch-mlp", "max_batch_size": 16}
    assert read_config_file(tmp_path / "s.json") == {"format": "onnx"}
    (tmp_path / "bad.yaml").write_text("a: [1,\n")
    with pytest.raises(UsageError, match="bad.yaml"):
        read_config_file(tmp_path / "bad.yaml")
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(UsageError, match="expected a mapping"):
        read_config_file(tmp_path / "list.yaml")
    with pytest.raises(UsageError, match="cannot read"):
        read_config_file(tmp_path / "missing.yaml")


# -- format choice ------------------------------------------------------------------------------------
def _entry(fmt: str, runtime: str, status: str = "passed") -> ArtifactEntry:
    spec = InputSpec(name="input", shape=[None, 28, 28], layout="NHW")
    return ArtifactEntry(format=fmt, path=f"model.{fmt}", bytes=1, sha256="0" * 64, runtime=runtime, input=spec,
                         status=status)


def _manifest(*entries: ArtifactEntry) -> ModelManifest:
    return ModelManifest(model="keras-sequential", framework="keras", architecture="mlp",
                         input=InputSpec(name="input", shape=[None, 28, 28], layout="NHW"), artifacts=list(entries))


MANIFEST = _manifest(_entry("savedmodel", "tensorflow"), _entry("onnx", "onnxruntime"),
                     _entry("tflite-fp32", "litert"), _entry("tflite-int8", "litert", status="failed"))


def _bench(path: Path, p50s: dict[str, float], batch: int = 1, model: str = "keras-sequential") -> Path:
    def stats(p50):
        return LatencyStats(samples=100, p50_us=p50, p90_us=p50, p99_us=p50, p999_us=p50, mean_us=p50, std_us=0,
                            min_us=p50, max_us=p50)

    records = [BenchRecord(target="cpu", model=model, format=f, runtime="x", batch=batch, status="ok", latency=stats(p))
               for f, p in p50s.items()]
    return ResultsFile(kind="bench", machine=machine_info(), records=records).write(path)


def test_auto_without_bench_results_follows_the_documented_order(tmp_path):
    choice = choose_format(tmp_path, MANIFEST)
    assert choice.format == "tflite-fp32"  # tflite-int8 failed validation; savedmodel comes last
    assert "default order" in choice.reason
    assert AUTO_ORDER.index("tflite-int8") < AUTO_ORDER.index("tflite-fp32") < AUTO_ORDER.index("onnx")
    assert choose_format(tmp_path, _manifest(_entry("savedmodel", "tensorflow"), _entry("onnx", "onnxruntime"))).format == "onnx"


def test_auto_takes_the_fastest_benchmarked_passed_format(tmp_path):
    _bench(tmp_path / "bench.json", {"onnx": 9.0, "tflite-fp32": 12.0, "tflite-int8": 1.0, "savedmodel": 3000.0})
    choice = choose_format(tmp_path, MANIFEST)
    assert choice.format == "onnx"  # tflite-int8 is faster but failed validation
    assert "bench.json" in choice.reason and "9.0" in choice.reason


def test_auto_prefers_the_smallest_measured_batch_and_ignores_other_models(tmp_path):
    path = _bench(tmp_path / "other.json", {"onnx": 50.0}, batch=32)
    results = ResultsFile.model_validate_json(path.read_text())
    results.records += ResultsFile.model_validate_json(
        _bench(tmp_path / "b1.json", {"tflite-fp32": 20.0}).read_text()).records
    results.records += ResultsFile.model_validate_json(
        _bench(tmp_path / "m.json", {"onnx": 1.0}, model="someone-else").read_text()).records
    results.write(tmp_path / "all.json")
    assert choose_format(tmp_path, MANIFEST, bench_results=tmp_path / "all.json").format == "tflite-fp32"


def test_a_named_bench_file_must_exist_and_be_a_results_file(tmp_path):
    with pytest.raises(UsageError, match="does not exist"):
        choose_format(tmp_path, MANIFEST, bench_results=tmp_path / "nope.json")
    (tmp_path / "x.json").write_text("{}")
    with pytest.raises(ManifestError, match="not a deploykit results file"):
        choose_format(tmp_path, MANIFEST, bench_results=tmp_path / "x.json")


def test_a_named_format_must_exist_have_passed_and_have_its_runtime(tmp_path):
    assert choose_format(tmp_path, MANIFEST, "onnx").reason == "asked for"
    with pytest.raises(UsageError, match="known: onnx, savedmodel, tflite-fp32, tflite-int8"):
        choose_format(tmp_path, MANIFEST, "torchscript")
    with pytest.raises(ManifestError, match="status 'failed'"):
        choose_format(tmp_path, MANIFEST, "tflite-int8")
    with pytest.raises(RuntimeUnavailable, match="cannot serve onnx"):  # no CUDA provider on these machines
        import onnxruntime

        if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
            pytest.skip("this machine has CUDA: the unavailable path cannot be shown here")
        choose_format(tmp_path, MANIFEST, "onnx", device="cuda")


def test_no_servable_artifact_says_so(tmp_path):
    with pytest.raises(ManifestError, match="no artifact that passed validation"):
        choose_format(tmp_path, _manifest(_entry("onnx", "onnxruntime", status="failed")))


# -- the serving image and the bento stay in step -----------------------------------------------------
def _pip_packages_in_dockerfile() -> set[str]:
    text = (ROOT / "Dockerfile").read_text()
    run = re.search(r"RUN pip install(.*?)(?:&&|\n\n)", text, re.S).group(1)
    return set(re.findall(r'"([^"]+)"', run))


def test_dockerfile_installs_what_the_bentofile_lists():
    bentofile = yaml.safe_load((ROOT / "serving/bentofile.yaml").read_text())
    in_bento = set(bentofile["python"]["packages"])
    in_docker = _pip_packages_in_dockerfile()
    assert in_docker - {"bentoml==1.4.39"} == in_bento  # `bentoml build` adds the running BentoML's pin
    import bentoml

    assert "bentoml==" + bentoml.__version__ in in_docker


def test_dockerfile_and_bentofile_point_at_the_same_service():
    text = (ROOT / "Dockerfile").read_text()
    bentofile = yaml.safe_load((ROOT / "serving/bentofile.yaml").read_text())
    assert bentofile["service"] in text
    module, _, name = bentofile["service"].partition(":")
    assert (ROOT / (module.replace(".", "/") + ".py")).is_file()
    for src in re.findall(r"^COPY (\S+) ", text, re.M):
        if not src.startswith("$"):
            assert (ROOT / src).exists(), src


def test_the_body_timeout_must_be_below_bentomls_request_timeout():
    from deploykit.errors import UsageError
    from deploykit.serving.config import ServeSettings

    with pytest.raises(UsageError, match="body_timeout_s .* must be below request_timeout_s"):
        ServeSettings.from_sources({"body_timeout_s": "10", "request_timeout_s": "10"})
    assert ServeSettings.from_sources({"body_timeout_s": "3"}).body_timeout_s == 3.0
