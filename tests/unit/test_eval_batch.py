"""Evaluation batches sized to the input: MNIST keeps 1,000 per call, a 96×96×3 input far fewer
(a thousand MobileNetV2 samples' activations at once took 16.9 GB here)."""

import numpy as np

from deploykit.train import framework_outputs
from deploykit.validate import EVAL_BATCH, EVAL_VALUES, eval_batch, predict_batched


def test_mnist_keeps_the_full_batch():
    assert eval_batch(np.zeros((5, 28, 28, 1), np.float32)) == EVAL_BATCH
    assert eval_batch(np.zeros((5, 784), np.float32)) == EVAL_BATCH


def test_a_large_input_gets_a_batch_under_the_value_budget():
    x = np.zeros((3, 96, 96, 3), np.float32)
    b = eval_batch(x)
    assert b == EVAL_VALUES // (96 * 96 * 3) == 28
    assert eval_batch(np.zeros((1, 4000, 4000, 3), np.uint8)) == 1  # never zero


def test_predict_batched_calls_with_the_sized_batch_and_keeps_order():
    x = np.arange(100 * 96 * 96 * 3, dtype=np.float32).reshape(100, 96, 96, 3)
    sizes = []

    def predict(batch):
        sizes.append(len(batch))
        return batch[:, 0, 0, :1]

    out = predict_batched(predict, x)
    assert sizes == [28, 28, 28, 16]
    np.testing.assert_array_equal(out, x[:, 0, 0, :1])


def test_framework_outputs_batches_a_torch_model_by_input_size():
    import torch

    calls = []

    class Probe(torch.nn.Module):
        def forward(self, x):
            calls.append(x.shape[0])
            return x.flatten(1)[:, :10]

    x = np.random.default_rng(0).random((60, 3, 96, 96), dtype=np.float32)
    out = framework_outputs(Probe(), "torch", x)
    assert calls == [28, 28, 4] and out.shape == (60, 10)
    np.testing.assert_allclose(out, x.reshape(60, -1)[:, :10])
