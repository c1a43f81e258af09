"""Fit loops for both frameworks: seeded, Adam, progress per epoch, timed around the loop only."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

__all__ = ["TrainResult", "EpochCallback", "train_model", "framework_predict", "framework_outputs"]

# on_epoch(epoch_index, epochs, loss, train_accuracy)
EpochCallback = Callable[[int, int, float, float], None]


@dataclass
class TrainResult:
    model: Any
    seconds: float
    loss: float
    accuracy: float  # on the test set
    history: list[dict] = field(default_factory=list)


def train_model(spec, x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, *,
                epochs: int, batch_size: int, seed: int, num_classes: int = 10,
                on_epoch: Optional[EpochCallback] = None) -> TrainResult:
    """Build `spec` (a models.ModelSpec) and train it on canonical float32 N×28×28 data."""
    model = spec.build(num_classes, seed)
    fit = _fit_keras if spec.framework == "keras" else _fit_torch
    x_train = x_train.reshape(-1, *spec.input.shape[1:])
    start = time.perf_counter()
    history = fit(model, x_train, y_train, epochs, batch_size, seed, on_epoch or (lambda *a: None))
    seconds = time.perf_counter() - start
    probs = framework_predict(model, spec.framework, x_test.reshape(-1, *spec.input.shape[1:]))
    acc = float((probs.argmax(1) == y_test).mean())
    return TrainResult(model, seconds, history[-1]["loss"] if history else float("nan"), acc, history)


def framework_predict(model, framework: str, x: np.ndarray, batch: Optional[int] = None,
                      output_kind: Optional[str] = None) -> np.ndarray:
    """Probabilities from the framework model itself (the reference every artifact is compared with).

    `output_kind` is what the model emits (deploykit.outputs); None: the reference models' kind.
    """
    from deploykit.outputs import framework_default_kind, to_probs

    return to_probs(framework_outputs(model, framework, x, batch), framework_default_kind(framework, output_kind))


def framework_outputs(model, framework: str, x: np.ndarray, batch: Optional[int] = None) -> np.ndarray:
    """The framework model's raw outputs, float32, as it returns them (no softmax added).

    `batch`: samples per call; None sizes it to the input (validate.eval_batch), so a large input
    does not hold a thousand samples' activations at once."""
    from deploykit.validate import eval_batch

    batch = batch or eval_batch(x)
    if framework == "keras":
        # model(x) in graph-free eager batches: model.predict builds a tf.data pipeline per call.
        outs = [np.asarray(model(x[i : i + batch], training=False)) for i in range(0, len(x), batch)]
        return np.concatenate(outs).astype(np.float32)
    import torch

    model.eval()
    with torch.inference_mode():
        outs = [model(torch.from_numpy(np.ascontiguousarray(x[i : i + batch]))).numpy()
                for i in range(0, len(x), batch)]
    return np.concatenate(outs).astype(np.float32)


def _fit_keras(model, x, y, epochs, batch_size, seed, on_epoch) -> list[dict]:
    import keras

    keras.utils.set_random_seed(seed)
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"])

    class _Progress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            on_epoch(epoch, epochs, float(logs["loss"]), float(logs["accuracy"]))

    hist = model.fit(x, y, epochs=epochs, batch_size=batch_size, verbose=0, shuffle=True, callbacks=[_Progress()])
    return [{"loss": l, "accuracy": a} for l, a in zip(hist.history["loss"], hist.history["accuracy"])]


def _fit_torch(model, x, y, epochs, batch_size, seed, on_epoch) -> list[dict]:
    import torch

    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(y.astype(np.int64))
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)  # Keras' Adam default
    loss_fn = torch.nn.CrossEntropyLoss()
    history = []
    model.train()
    for epoch in range(epochs):
        order = torch.randperm(len(xt), generator=gen)
        total_loss, correct = 0.0, 0
        # Index tensors directly: a DataLoader's per-sample collation costs more than these tiny models.
        for i in range(0, len(xt), batch_size):
            idx = order[i : i + batch_size]
            xb, yb = xt[idx], yt[idx]
            opt.zero_grad(set_to_none=True)
            logits = model(xb)
            loss = loss_fn(logits, yb)
            loss.backward()
            opt.step()
            total_loss += loss.item() * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        history.append({"loss": total_loss / len(xt), "accuracy": correct / len(xt)})
        on_epoch(epoch, epochs, history[-1]["loss"], history[-1]["accuracy"])
    model.eval()
    return history
