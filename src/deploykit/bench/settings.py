"""Settings of the measuring commands: the protocol's part that `bench`, `bench-ab` and `edge bench`
share (ProtocolSettings), `bench`'s own (BenchSettings), and one planned record (BenchJob)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Optional

from deploykit.errors import UsageError

from deploykit.bench import protocol

__all__ = ["TIMED_CALL", "DEFAULT_BATCH_SIZES", "DEFAULT_THREADS", "ProtocolSettings", "BenchSettings", "BenchJob",
           "parse_int_list"]

TIMED_CALL = ("Predictor.run on a tensor prepared once with to_input: the raw runtime call; "
              "input preparation and output dequantization are not timed")
DEFAULT_BATCH_SIZES = (1, 8, 32)
DEFAULT_THREADS = (1,)


# kw_only: the commands' own fields (edge bench's `target` has no default) may come before these.
@dataclass(kw_only=True)
class ProtocolSettings:
    """What deploykit.bench.protocol.measure is run with, and the batch sizes and thread counts swept."""

    batch_sizes: list[int] = field(default_factory=lambda: [1])
    threads: Optional[list[int]] = None  # None: the command chooses (edge bench: per device)
    min_time_s: float = protocol.DEFAULT_MIN_TIME_S
    warmup_s: float = protocol.DEFAULT_WARMUP_S
    window_s: float = protocol.DEFAULT_WINDOW_S
    max_windows: int = protocol.DEFAULT_MAX_WINDOWS
    tolerance: float = protocol.DEFAULT_TOLERANCE

    def __post_init__(self):
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise UsageError(f"batch sizes must be integers ≥ 1, got {self.batch_sizes}")
        if self.threads is not None and (not self.threads or any(t < 1 for t in self.threads)):
            raise UsageError(f"thread counts must be integers ≥ 1, got {self.threads}")
        if self.min_time_s <= 0 or self.warmup_s < 0 or self.window_s <= 0:
            raise UsageError("--min-time must be > 0 and --warmup ≥ 0 seconds")

    @property
    def max_time_s(self) -> float:
        """Bound on one record's measuring time, whatever the windows do."""
        return max(10.0, 20.0 * self.min_time_s)

    def protocol_settings(self) -> dict:
        """protocol.measure's keyword arguments."""
        return {"warmup_s": self.warmup_s, "min_time_s": self.min_time_s, "window_s": self.window_s,
                "max_windows": self.max_windows, "tolerance": self.tolerance, "max_time_s": self.max_time_s}

    def unstable_note(self, labels: list[str]) -> Optional[str]:
        """The note for records whose windows did not agree, or None when all did."""
        if not labels:
            return None
        return (f"windows did not agree within {self.tolerance:.0%} (figures kept, stable=false): "
                + ", ".join(labels))


@dataclass
class BenchSettings(ProtocolSettings):
    """`deploykit bench`'s settings, recorded in the results file as run."""

    formats: Optional[list[str]] = None  # None: every artifact that passed validation
    batch_sizes: list[int] = field(default_factory=lambda: list(DEFAULT_BATCH_SIZES))
    threads: list[int] = field(default_factory=lambda: list(DEFAULT_THREADS))
    device: str = "cpu"

    def __post_init__(self):
        from deploykit.runtimes import DEVICES

        if self.device not in DEVICES:
            raise UsageError(f"--device {self.device!r}: expected one of {', '.join(DEVICES)}")
        if self.threads is None:
            raise UsageError("thread counts must be integers ≥ 1, got None")
        super().__post_init__()
        if self.formats is not None:
            from deploykit.export import EXPORTERS
            from deploykit.errors import unknown_name

            for fmt in self.formats:
                if fmt not in EXPORTERS:
                    raise unknown_name("format", fmt, EXPORTERS)

    def as_dict(self) -> dict:
        d = asdict(self)
        d.update(max_time_s=self.max_time_s, timed=TIMED_CALL, isolation="one fresh process per record",
                 protocol_version=protocol.PROTOCOL_VERSION)
        return d


@dataclass
class BenchJob:
    """One record to measure; plain data so it can be handed to a worker process as JSON."""

    model_dir: str
    format: str
    device: str
    threads: int
    batch: int
    warmup_s: float
    min_time_s: float
    window_s: float
    max_windows: int
    tolerance: float
    max_time_s: float


def parse_int_list(text: str, option: str) -> list[int]:
    """'1,8,32' → [1, 8, 32]; anything else is a usage error naming the option."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or any(v < 1 for v in values):
        raise UsageError(f"{option} {text!r}: expected comma-separated integers ≥ 1, like 1,8,32")
    return list(dict.fromkeys(values))
