"""Keras 3 variants: fit with each model API, eager or XLA, a GradientTape loop, any backend.

Each epoch is one `fit(epochs=e+1, initial_epoch=e)` call on that epoch's data order (shuffle off),
so every variant sees the same batches; Keras keeps its compiled train function across the calls,
so only the first epoch pays tracing and compilation.
"""

from __future__ import annotations

import time

import numpy as np

from deploykit.compare.trained import RunConfig, Trained

__all__ = ["train"]


def _shape(net: str) -> tuple[int, ...]:
    return (28, 28, 1) if net == "cnn" else (28, 28)


def train(variant, cfg: RunConfig, data) -> Trained:
    import keras

    from deploykit.models import keras as km

    model = km.build(variant.api, cfg.net, 10, cfg.seed)  # seeds Keras, numpy and the backend
    x = data["x_train"].reshape(-1, *_shape(cfg.net))
    y = data["y_train"].astype(np.int64)
    run = _tape if variant.loop == "tape" else _fit
    trained = run(keras, model, variant, cfg, x, y, data["order"])
    trained.versions = {"keras": keras.__version__, **_backend_version(keras.backend.backend())}
    trained.extra.setdefault("keras_backend", keras.backend.backend())

    def predict(xs):
        xs = xs.reshape(-1, *_shape(cfg.net))
        return np.concatenate([keras.ops.convert_to_numpy(model(xs[i : i + 1000], training=False))
                               for i in range(0, len(xs), 1000)]).astype(np.float32)

    trained.predict, trained.model = predict, model
    return trained


def _backend_version(backend: str) -> dict:
    import importlib

    module = importlib.import_module(backend)
    return {backend: module.__version__}


def _fit(keras, model, variant, cfg, x, y, order) -> Trained:
    model.compile(optimizer=keras.optimizers.Adam(), loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  run_eagerly=variant.run_eagerly,
                  jit_compile="auto" if variant.jit_compile is None else variant.jit_compile)
    callbacks = []
    if keras.backend.backend() == "tensorflow":  # Keras' TensorBoard callback writes through tf.summary
        callbacks.append(keras.callbacks.TensorBoard(log_dir=cfg.log_dir, write_graph=False, profile_batch=0))
    out = Trained([], [], [], predict=None, logged_train=bool(callbacks))
    for epoch in range(cfg.epochs):
        xe, ye = x[order[epoch]], y[order[epoch]]
        start = time.perf_counter()
        hist = model.fit(xe, ye, batch_size=cfg.batch_size, epochs=epoch + 1, initial_epoch=epoch, shuffle=False,
                         verbose=0, callbacks=callbacks)
        out.epoch_s.append(time.perf_counter() - start)
        out.train_loss.append(float(hist.history["loss"][-1]))
        out.train_acc.append(float(hist.history["accuracy"][-1]))
    # What Keras resolved "auto" to (on TensorFlow without a GPU: no XLA).
    out.extra = {"jit_compile": bool(model.jit_compile), "run_eagerly": bool(model.run_eagerly)}
    return out


def _tape(keras, model, variant, cfg, x, y, order) -> Trained:
    import tensorflow as tf

    opt = keras.optimizers.Adam()
    opt.build(model.trainable_variables)  # variables made outside tf.function, before the first trace
    loss_fn = keras.losses.SparseCategoricalCrossentropy()

    def step(xb, yb):
        with tf.GradientTape() as tape:
            probs = model(xb, training=True)
            loss = loss_fn(yb, probs)
        grads = tape.gradient(loss, model.trainable_variables)
        opt.apply_gradients(zip(grads, model.trainable_variables))
        correct = tf.reduce_sum(tf.cast(tf.equal(tf.argmax(probs, 1, output_type=tf.int64), yb), tf.float32))
        return loss, correct

    if not variant.run_eagerly:  # one trace: the signature's batch dimension is open
        step = tf.function(step, input_signature=[tf.TensorSpec((None, *x.shape[1:]), tf.float32),
                                                  tf.TensorSpec((None,), tf.int64)])
    out = Trained([], [], [], predict=None)
    for epoch in range(cfg.epochs):
        # The same input pipeline fit builds from arrays: tf.data slices, batched.
        batches = tf.data.Dataset.from_tensor_slices((x[order[epoch]], y[order[epoch]])).batch(cfg.batch_size)
        start = time.perf_counter()
        total, correct = 0.0, 0.0
        for xb, yb in batches:
            loss, right = step(xb, yb)
            total += float(loss) * int(xb.shape[0])
            correct += float(right)
        out.epoch_s.append(time.perf_counter() - start)
        out.train_loss.append(total / len(x))
        out.train_acc.append(correct / len(x))
    out.extra = {"tf_function": not variant.run_eagerly}
    return out
