"""TensorBoard scalars without a framework: tensorboard's own event-file writer.

Keras on TensorFlow logs through its TensorBoard callback and PyTorch through
torch.utils.tensorboard; JAX, Keras-on-torch, the GradientTape loops and Paddle have no writer
of their own that avoids importing another framework, so they use this one (tensorboard is
what torch.utils.tensorboard itself writes with). Tags match the Keras callback's (epoch_loss,
epoch_accuracy under train/), so TensorBoard overlays every variant.
"""

from __future__ import annotations

import sys
import time
import types
from pathlib import Path

__all__ = ["ScalarWriter", "without_tensorflow"]


def without_tensorflow() -> None:
    """Make tensorboard use its TensorFlow stub unless TensorFlow is already loaded.

    tensorboard imports TensorFlow whenever it is installed; in a PyTorch, JAX or Paddle process
    that costs hundreds of MB (and TensorFlow imported after Paddle segfaults, seen here). A
    `tensorboard.compat.notf` module is tensorboard's own switch for the stub (its :no_tensorflow target).
    """
    if "tensorflow" not in sys.modules:
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))


class ScalarWriter:
    def __init__(self, log_dir: Path | str):
        without_tensorflow()
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        Path(log_dir).mkdir(parents=True, exist_ok=True)
        self._writer = EventFileWriter(str(log_dir))

    def scalar(self, tag: str, value: float, step: int) -> None:
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        summary = Summary(value=[Summary.Value(tag=tag, simple_value=float(value))])
        self._writer.add_event(Event(wall_time=time.time(), step=int(step), summary=summary))

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> "ScalarWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
