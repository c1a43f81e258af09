"""The one rule for "fastest": which configurations are faster than others beyond noise, and which tie.

Used by `deploykit serve --format auto` (serving.selection), `bench.bench_file.fastest_format`, the
report's highlights, recommendations and Pareto table. Records are anything with `.latency`
(`LatencyStats`: `p50_us`, optional `p50_ci_us`) — `BenchRecord` and the report's `LatencyRow`.

Two records are *tied* unless the baseline rule (`deploykit.noise`) would call one a regression of the other: their 95 %
p50 intervals must separate by more than 10 % (`classify_intervals`), or without intervals their p50s
differ by more than the noise (`classify`): max(10 %, each record's window spread over the windows its
figures came from), as the baseline decides without intervals. Why the baseline's rule: records of one `bench` run are
measured one after another, minutes apart, in separate processes — the same drift that made two
runs differ by −31 % to +77 % lies between them, so a smaller gap is not evidence of a faster format
(tflite-dynamic / fp16 / fp32 swapped order between two runs).
"""

from __future__ import annotations

from typing import Sequence, TypeVar

from deploykit.noise import classify, classify_intervals, figure_spread, noise_threshold

__all__ = ["TIE_RULE", "tied", "by_speed", "fastest_group", "speed_marks", "comparable_key"]

R = TypeVar("R")

TIE_RULE = ("fastest = lowest p50; others are tied with it unless their 95 % p50 intervals are more than 10 % "
            "apart (without intervals: p50 apart by more than max(10 %, each record's window spread)) — the rule "
            "that decides regressions")


def tied(a, b) -> bool:
    """True when records `a` and `b` are within noise of each other."""
    la, lb = a.latency, b.latency
    if la.p50_ci_us and lb.p50_ci_us:
        return classify_intervals(la.p50_ci_us, lb.p50_ci_us)[1] == "within noise"
    noise = noise_threshold(figure_spread(a), figure_spread(b))
    return classify(la.p50_us, lb.p50_us, noise)[1] == "within noise"


def by_speed(records: Sequence[R]) -> list[R]:
    """Records with a latency, lowest p50 first."""
    return sorted((r for r in records if r.latency is not None), key=lambda r: r.latency.p50_us)


def fastest_group(records: Sequence[R]) -> list[R]:
    """The fastest record first, then every record tied with it (lowest p50 first); [] when none."""
    ranked = by_speed(records)
    if not ranked:
        return []
    best = ranked[0]
    return [best] + [r for r in ranked[1:] if tied(best, r)]


def comparable_key(r) -> tuple:
    """Records that compete for "fastest": one model on one target, same batch and threads."""
    return (getattr(r, "dataset", None) or "", r.model, r.target, r.batch, r.threads)


def speed_marks(records: Sequence[R], key=comparable_key) -> dict[int, str]:
    """id(record) → "fastest" (lowest p50 of its group, with others measured) or "tied" (within noise
    of it), for the records with a latency whose group (`key`) holds at least two of them."""
    groups: dict[tuple, list] = {}
    for r in records:
        if r.latency is not None and getattr(r, "status", "ok") == "ok":
            groups.setdefault(key(r), []).append(r)
    marks: dict[int, str] = {}
    for members in groups.values():
        if len(members) < 2:
            continue
        best, *ties = fastest_group(members)
        marks[id(best)] = "fastest"
        marks.update((id(t), "tied") for t in ties)
    return marks
