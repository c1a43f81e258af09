"""A real `train-export mnist` run (conftest `trained`): every artifact is re-checked from the manifest
alone, in its own runtime, against the reference outputs saved beside it."""

import json

import numpy as np
import pytest

from deploykit.data import load_dataset, normalize
from deploykit.manifest import ModelManifest, sha256_file
from deploykit.models import REFERENCE_MODELS
from deploykit.runtimes import load_artifact
from deploykit.validate import accuracy


@pytest.fixture(scope="module")
def manifests(mnist_models):
    return {p.name: (p, ModelManifest.read(p)) for p in sorted(mnist_models.iterdir()) if p.is_dir()}


@pytest.fixture(scope="module")
def test_set(full_mnist_dir):
    ds = load_dataset("mnist", full_mnist_dir)
    return normalize(ds.x_test), ds.y_test


# The int8 bars are 98 % agreement and 1 point of accuracy; the fixture's artifacts must clear them
# by this much, so that a machine whose floating point trains slightly different weights still
# passes (the 1-epoch 4,000-image fixture of before missed by 1.5 points on one such machine).
INT8_MIN_AGREEMENT = 0.99
INT8_MAX_DROP_POINTS = 0.5


def test_every_reference_model_was_trained_and_described(manifests, trained):
    assert sorted(manifests) == sorted(REFERENCE_MODELS)
    assert not trained.failed, trained.failed
    for name, (model_dir, m) in manifests.items():
        spec = REFERENCE_MODELS[name]
        assert (m.framework, m.architecture, m.input) == (spec.framework, spec.architecture, spec.input)
        assert m.dataset.name == "mnist" and m.dataset.source == "data-dir" and m.dataset.verified
        assert (m.dataset.train_samples, m.dataset.test_samples) == (60_000, 10_000)
        assert m.training.epochs == 1 and m.training.seconds > 0 and 0.5 < m.training.accuracy <= 1
        assert m.classes == [str(i) for i in range(10)] or len(m.classes) == 10
        assert m.bentoml_tag and m.bentoml_tag.startswith(f"mnist-{name}:")
        assert m.artifacts, name
        for a in m.artifacts:
            assert a.status == "passed", (name, a.format, a.error)
            assert a.bytes > 0 and len(a.sha256) == 64 and a.tool_versions
            assert a.parity.samples == min(1000, m.dataset.test_samples) and a.parity.passed
            assert a.dynamic_batch or a.dynamic_batch_note


def test_artifacts_recheck_from_the_manifest_alone(manifests, test_set):
    x_test, y_test = test_set
    for name, (model_dir, m) in manifests.items():
        ref = np.load(model_dir / m.reference)
        ref_x = normalize(ref["x"])
        for a in m.artifacts:
            assert sha256_file(model_dir / a.path) == a.sha256
            with load_artifact(model_dir, a, m) as predictor:
                probs = np.concatenate([predictor.predict(x_test[i:i + 500]) for i in range(0, len(x_test), 500)])
                assert accuracy(probs, y_test) == pytest.approx(a.accuracy, abs=1e-9), (name, a.format)
                got = predictor.predict(ref_x)
            diff = float(np.abs(got - ref["probs"]).max())
            agree = float((got.argmax(1) == ref["probs"].argmax(1)).mean())
            assert agree >= a.parity.min_top1_agreement, (name, a.format, agree)
            if a.parity.atol is not None:
                assert diff <= a.parity.atol, (name, a.format, diff)
            if a.parity.max_accuracy_drop_points is not None:
                assert (m.training.accuracy - a.accuracy) * 100 <= a.parity.max_accuracy_drop_points


def test_models_are_in_the_bentoml_store(manifests):
    import bentoml

    tags = {str(m.tag) for m in bentoml.models.list()}
    for _, (model_dir, m) in manifests.items():
        assert m.bentoml_tag in tags
        stored = bentoml.models.get(m.bentoml_tag)
        assert ModelManifest.read(stored.path) == m


def test_run_summary_breaks_wall_time_down_by_stage(trained):
    summary = json.loads((trained.out / "mnist" / "train-export.json").read_text())
    stages = summary["stages"]
    assert "data" in stages
    assert {k.split(":")[1] for k in stages if k.startswith("train:")} == set(REFERENCE_MODELS)
    assert any(k.startswith("export:") for k in stages) and any(k.startswith("validate:") for k in stages)
    assert summary["wall_seconds"] >= sum(v for k, v in stages.items() if k.startswith("train:"))


def test_int8_artifacts_clear_their_bars_with_margin(manifests):
    seen = 0
    for name, (_, m) in manifests.items():
        for a in m.artifacts:
            if a.parity.max_accuracy_drop_points is None:
                continue
            seen += 1
            assert a.parity.top1_agreement >= INT8_MIN_AGREEMENT, (name, a.format, a.parity.top1_agreement)
            assert a.parity.accuracy_drop_points <= INT8_MAX_DROP_POINTS, (name, a.format, a.parity)
    assert seen >= 14  # tflite-dynamic/int8/qat for 4 Keras models, onnx-int8 for all 6
