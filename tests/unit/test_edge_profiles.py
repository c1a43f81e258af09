"""Device profiles and runtime specs: what `edge check --profile` and `--runtime` resolve to."""

import pytest

from deploykit.edge.check import CheckSettings, check_target
from deploykit.edge.envs import parse_runtime_spec, runtimes_cache_dir
from deploykit.edge.profiles import get_profile, load_profiles
from deploykit.errors import UsageError


def test_the_four_devices_have_profiles():
    profiles = load_profiles()
    assert {"rpi4", "rpi5", "coral-devboard", "jetson-nano"} <= set(profiles)
    for p in profiles.values():
        assert p.cores >= 1 and p.cpu and p.python and p.runtimes
        parse_runtime_spec(p.default_runtime)  # every listed runtime is an exact pip spec


def test_profile_facts():
    rpi4 = get_profile("rpi4")
    assert (rpi4.cores, rpi4.cpu, rpi4.python, rpi4.default_runtime) == (4, "Arm Cortex-A72", "3.11", "tflite-runtime==2.14.0")
    assert get_profile("coral-devboard").accelerator.startswith("Edge TPU")


def test_unknown_profile_lists_the_known_ones():
    with pytest.raises(UsageError, match="unknown device profile 'rpi3'.*coral-devboard, jetson-nano, rpi4, rpi5"):
        get_profile("rpi3")


@pytest.mark.parametrize("text,package,version,numpy", [
    ("tflite-runtime==2.14.0", "tflite-runtime", "2.14.0", "numpy<2"),
    ("tflite_runtime==2.5.0.post1", "tflite-runtime", "2.5.0.post1", "numpy<2"),
    ("ai-edge-litert==2.3.0", "ai-edge-litert", "2.3.0", "numpy"),
    ("tensorflow==2.15.1", "tensorflow", "2.15.1", "numpy<2"),
    ("tensorflow==2.21.0", "tensorflow", "2.21.0", "numpy"),
])
def test_runtime_specs(text, package, version, numpy):
    spec = parse_runtime_spec(text)
    assert (spec.package, spec.version, spec.numpy_requirement) == (package, version, numpy)


@pytest.mark.parametrize("text,needle", [("tvm==1.0", "expected one of"), ("tflite-runtime", "exact version"),
                                         ("tflite-runtime>=2.14", "expected one of"), ("tflite-runtime==latest", "exact version")])
def test_bad_runtime_specs(text, needle):
    with pytest.raises(UsageError, match=needle):
        parse_runtime_spec(text)


def test_cache_dir_honours_deploykit_cache(monkeypatch, tmp_path):
    monkeypatch.setenv("DEPLOYKIT_RUNTIMES", str(tmp_path / "own"))
    assert runtimes_cache_dir() == tmp_path / "own"
    monkeypatch.delenv("DEPLOYKIT_RUNTIMES")
    monkeypatch.setenv("DEPLOYKIT_CACHE", str(tmp_path))
    assert runtimes_cache_dir() == tmp_path / "runtimes"
    monkeypatch.delenv("DEPLOYKIT_CACHE")
    assert runtimes_cache_dir().parts[-3:] == (".cache", "deploykit", "runtimes")


def test_check_settings_resolution():
    spec, profile, notes = CheckSettings().resolve()
    assert (str(spec), profile.name) == ("tflite-runtime==2.14.0", "rpi4") and "no --runtime or --profile" in notes[0]
    spec, profile, notes = CheckSettings(runtime="ai-edge-litert==2.3.0", profile="rpi5").resolve()
    assert str(spec) == "ai-edge-litert==2.3.0" and "not among the runtimes" in notes[0]
    assert check_target(spec, profile) == "edge:rpi5"
    spec, profile, _ = CheckSettings(runtime="tflite-runtime==2.14.0").resolve()
    assert profile is None and check_target(spec, None) == "runtime:tflite-runtime==2.14.0"
