import numpy as np
import pytest

from deploykit.errors import UsageError
from deploykit.outputs import detect_output_kind, framework_default_kind, resolve_output_kind, softmax, to_probs


def test_softmax_rows_are_probabilities():
    z = np.array([[1.0, 2.0, 3.0], [1000.0, 1000.0, -1000.0]], np.float32)
    p = softmax(z)
    np.testing.assert_allclose(p.sum(1), 1, atol=1e-6)
    np.testing.assert_allclose(p[1], [0.5, 0.5, 0], atol=1e-6)


def test_probabilities_and_logits_are_told_apart():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 10)).astype(np.float32)
    assert detect_output_kind(logits) == "logits"
    assert detect_output_kind(softmax(logits)) == "probs"
    assert detect_output_kind(np.full((5, 10), 0.1, np.float32)) == "probs"
    assert detect_output_kind(np.abs(logits)) == "logits"  # non-negative, rows not summing to 1
    assert detect_output_kind(np.full((3, 4), np.nan)) == "logits"


def test_softmax_only_for_logits():
    p = softmax(np.random.default_rng(1).normal(size=(4, 3)))
    np.testing.assert_array_equal(to_probs(p, "probs"), p)
    assert not np.allclose(to_probs(p, "logits"), p)


def test_user_choice_wins_and_bad_choice_is_a_usage_error():
    logits = np.random.default_rng(2).normal(size=(8, 3))
    assert resolve_output_kind("auto", logits) == ("logits", "detected")
    assert resolve_output_kind("probs", logits) == ("probs", "user")
    with pytest.raises(UsageError, match="--outputs"):
        resolve_output_kind("softmax", logits)


def test_reference_models_keep_their_kind():
    assert framework_default_kind("torch", None) == "logits"
    assert framework_default_kind("keras", None) == "probs"
    assert framework_default_kind("torch", "probs") == "probs"
