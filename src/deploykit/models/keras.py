"""The reference networks in tf.keras (Keras 3), built with each of the three Keras APIs.

The three MLPs are the same network; only the API differs (the comparison the source articles make).
"""

from __future__ import annotations

__all__ = ["build", "SubclassMLP", "SubclassCNN", "build_cnn_tf_keras"]

import os

if os.environ.get("KERAS_BACKEND", "tensorflow") == "tensorflow":  # other backends (compare-training) skip TF
    from deploykit.runtimes.tensorflow_rt import import_tf

    import_tf()  # quietly, before Keras pulls TensorFlow in
# tf.keras *is* Keras 3 with TensorFlow 2.16+, but the `tensorflow.keras` shim lacks some namespaces
# (keras.saving) and becomes Keras 2 if TF_USE_LEGACY_KERAS is set: import Keras 3 by its own name.
import keras  # noqa: E402

layers = keras.layers


def _mlp_layers(num_classes: int):
    return [layers.Flatten(), layers.Dense(256, activation="relu"), layers.Dense(num_classes, activation="softmax")]


def _cnn_layers(num_classes: int, lib=layers):
    return [
        lib.Conv2D(32, 3, activation="relu"),
        lib.AveragePooling2D(pool_size=2),
        lib.Conv2D(64, 3, activation="relu"),
        lib.AveragePooling2D(pool_size=2),
        lib.Flatten(),
        lib.Dense(128, activation="relu"),
        lib.Dense(num_classes, activation="softmax"),
    ]


@keras.saving.register_keras_serializable(package="deploykit")
class SubclassMLP(keras.Model):
    def __init__(self, num_classes: int = 10, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.flatten, self.hidden, self.classifier = _mlp_layers(num_classes)

    def call(self, inputs):
        return self.classifier(self.hidden(self.flatten(inputs)))

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


@keras.saving.register_keras_serializable(package="deploykit")
class SubclassCNN(keras.Model):
    """The reference CNN as a keras.Model subclass (the third API, for the API comparison)."""

    def __init__(self, num_classes: int = 10, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = num_classes
        self.stack = _cnn_layers(num_classes)

    def call(self, inputs):
        x = inputs
        for layer in self.stack:
            x = layer(x)
        return x

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


def _functional(shape, stack, name):
    inputs = keras.Input(shape, name="input")
    x = inputs
    for layer in stack:
        x = layer(x)
    return keras.Model(inputs, x, name=name)


def build(api: str, architecture: str, num_classes: int = 10, seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    if architecture == "cnn":
        if api == "functional":
            return _functional((28, 28, 1), _cnn_layers(num_classes), "cnn_functional")
        if api == "subclass":
            model = SubclassCNN(num_classes, name="cnn_subclass")
            model(keras.ops.zeros((1, 28, 28, 1)))
            return model
        return keras.Sequential([keras.Input((28, 28, 1), name="input"), *_cnn_layers(num_classes)], name="cnn")
    if api == "sequential":
        return keras.Sequential([keras.Input((28, 28), name="input"), *_mlp_layers(num_classes)], name="mlp_sequential")
    if api == "functional":
        return _functional((28, 28), _mlp_layers(num_classes), "mlp_functional")
    if api == "subclass":
        model = SubclassMLP(num_classes, name="mlp_subclass")
        model(keras.ops.zeros((1, 28, 28)))  # build the weights so export and summary work
        return model
    raise ValueError(f"no keras builder for api={api!r} architecture={architecture!r}")


def build_cnn_tf_keras(num_classes: int = 10):
    """The same CNN in tf_keras (Keras 2): tensorflow-model-optimization's QAT works only on tf_keras."""
    import tf_keras

    return tf_keras.Sequential([tf_keras.Input((28, 28, 1), name="input"), *_cnn_layers(num_classes, tf_keras.layers)])
