"""Fashion-MNIST: the six reference models, every format, same settings as MNIST (harder data:
about 88-91 % for these networks)."""

from pipelines.base import Pipeline

PIPELINE = Pipeline(dataset="fashion-mnist", description=__doc__)
