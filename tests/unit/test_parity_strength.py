import numpy as np

from deploykit.console import artifact_table
from deploykit.manifest import ArtifactEntry, InputSpec, ModelManifest
from deploykit.outputs import softmax
from deploykit.validate import MIN_SPREAD, parity, reference_strength


def _varied(n=200, k=10, seed=0):
    return softmax(np.random.default_rng(seed).normal(size=(n, k)) * 3)


def test_varied_reference_is_strong():
    assert reference_strength(_varied()) == ("strong", None)


def test_constant_reference_is_weak_and_a_constant_artifact_would_pass():
    ref = np.full((100, 10), 0.1, np.float32)
    strength, reason = reference_strength(ref)
    assert strength == "weak" and "near-constant" in reason
    par, failures = parity(ref, np.full_like(ref, 0.1), atol=1e-4, min_top1=0.999)
    assert not failures and par.passed and par.strength == "weak" and par.weak_reason == reason


def _two_class(bump):
    ref = np.full((100, 3), 1 / 3)
    ref[::2, 0] += bump  # class 0 wins the even rows, class 1 the odd ones
    ref[1::2, 1] += bump
    return ref


def test_the_spread_criterion_sits_at_min_spread():
    assert reference_strength(_two_class(1.5 * MIN_SPREAD))[0] == "strong"
    assert reference_strength(_two_class(0.5 * MIN_SPREAD))[0] == "weak"


def test_all_one_class_is_weak():
    ref = _varied()
    ref[:, 4] += 5
    strength, reason = reference_strength(ref)
    assert strength == "weak" and "class 4" in reason


def test_table_flags_a_weak_pass():
    from rich.console import Console

    ref = np.full((10, 10), 0.1)
    par, _ = parity(ref, ref, atol=1e-4, min_top1=0.999)
    spec = InputSpec(name="input", shape=[None, 4], layout="NC")
    entry = ArtifactEntry(format="onnx", path="model.onnx", bytes=10, sha256="x", runtime="onnxruntime", input=spec,
                          status="passed", parity=par)
    m = ModelManifest(model="m", framework="torch", architecture="custom", input=spec, artifacts=[entry])
    con = Console(record=True, width=120)
    con.print(artifact_table([m]))
    assert "passed, parity weak" in con.export_text()
