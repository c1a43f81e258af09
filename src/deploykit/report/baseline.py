"""Compare a run with a baseline: which configurations got slower or faster beyond noise.

The noise rule (documented in docs/results-schema.md):
- configurations match on (dataset, model, format, target, batch, threads) for in-process records, and
  on (URL path, mode, concurrency or rate) for load-test steps; where several baseline records share a
  key (several machines), the one from the same host is taken;
- change = new p50 / old p50 − 1 (shown; it decides only where an interval is missing);
- both records carry a 95 % interval of p50 (`p50_ci_us`, a bootstrap over windows): the verdict is
  "regression" only when the intervals separate by more than SEPARATION: new low > old high × (1 +
  SEPARATION); "improvement" the mirror; overlapping or nearly touching intervals are "within noise".
  Why: two back-to-back runs on a shared 2-core machine moved p50 by −31 % to +77 % under a flat
  10 % rule; an interval says how far this run's own windows let the figure move, and the margin
  covers the drift between runs that no single run can see;
- without intervals (older files, load-test steps): noise = max(10 %, the spread each run measured
  itself: (max − min) / median of its window p50s, 10 % for a load step); |change| > noise decides.
p50 decides because it is the figure the benchmark's windows were run until they agreed on; tails
(p99) and throughput are shown beside it but do not decide.
"""

from __future__ import annotations

from typing import Optional
from urllib.parse import urlsplit

from deploykit.noise import (NOISE_FLOOR, SEPARATION, classify, classify_intervals, figure_spread, noise_threshold,
                             window_spread)
from deploykit.results import BenchRecord, LoadStep, ResultsFile
from deploykit.report.schema import BaselineDiff, BaselineSummary, LatencyRow, LoadRow

__all__ = ["NOISE_FLOOR", "SEPARATION", "NOISE_RULE", "window_spread", "noise_threshold", "classify",
           "classify_intervals", "compare_with_baseline"]

NOISE_RULE = (
    "where both runs carry a 95 % interval of p50: regression only when the new low exceeds the old high by "
    "more than 10 % (improvement: the mirror); otherwise p50 change = new/old − 1 counts only beyond "
    "max(10 %, each run's window spread = (max − min)/median of its window p50s); matched on (dataset, model, "
    "format, target, batch, threads), load steps on (URL path, mode, concurrency or rate)"
)


def _bench_key(dataset, model, fmt, target, batch, threads) -> tuple:
    return (dataset or "", model, fmt, target, batch, threads)


def _ci_text(ci: list[float]) -> str:
    return f"{ci[0]:,.1f}–{ci[1]:,.1f} µs"


def _key_dict(key: tuple) -> dict:
    return dict(zip(("dataset", "model", "format", "target", "batch", "threads"), key))


def _load_key(url: Optional[str], step) -> tuple:
    path = urlsplit(url).path if url else ""
    level = step.concurrency if step.mode == "closed" else step.rate_rps
    return (path, step.mode, level)


def _pick(candidates: list, hostname: str):
    """Same host first: a key measured on two machines compares like with like."""
    for c in candidates:
        if c[2] == hostname:
            return c
    return candidates[0]


def compare_with_baseline(rows: list[LatencyRow], load_rows: list[LoadRow], baseline: list[tuple[str, ResultsFile]],
                          hostnames: dict[str, str]) -> BaselineSummary:
    """`baseline`: (source id, results) pairs; `hostnames`: current source id → its machine's hostname."""
    old_bench: dict[tuple, list[tuple[str, BenchRecord, str]]] = {}
    old_load: dict[tuple, list[tuple[str, LoadStep, str]]] = {}
    for sid, results in baseline:
        for r in results.records:
            key = _bench_key(r.dataset, r.model, r.format, r.target, r.batch, r.threads)
            old_bench.setdefault(key, []).append((sid, r, results.machine.hostname))
        for s in results.steps:
            old_load.setdefault(_load_key(results.url, s), []).append((sid, s, results.machine.hostname))

    diffs: list[BaselineDiff] = []
    seen_bench, seen_load = set(), set()
    for row in rows:
        if row.kind == "edge-check" and row.latency is None:
            continue
        key = _bench_key(row.dataset, row.model, row.format, row.target, row.batch, row.threads)
        seen_bench.add(key)
        base = dict(key=_key_dict(key), kind="bench", source=row.source,
                    new_p50_us=row.latency.p50_us if row.latency else None,
                    new_p99_us=row.latency.p99_us if row.latency else None, new_throughput=row.throughput_sps)
        if key not in old_bench:
            diffs.append(BaselineDiff(**base, verdict="new"))
            continue
        sid, old, old_host = _pick(old_bench[key], hostnames.get(row.source, ""))
        base.update(baseline_source=sid, old_p50_us=old.latency.p50_us if old.latency else None,
                    old_p99_us=old.latency.p99_us if old.latency else None, old_throughput=old.throughput_sps)
        if old.status != "ok" or row.status != "ok" or not old.latency or not row.latency:
            why = "; ".join(f"{side}: {r_status}" for side, r_status in (("baseline", old.status), ("now", row.status))
                            if r_status != "ok") or "no latency recorded"
            diffs.append(BaselineDiff(**base, verdict="not comparable", note=why))
            continue
        notes = []
        if old.latency.p50_ci_us and row.latency.p50_ci_us:
            gap, verdict = classify_intervals(old.latency.p50_ci_us, row.latency.p50_ci_us)
            change, noise = row.latency.p50_us / old.latency.p50_us - 1.0, SEPARATION
            notes.append(f"95 % intervals {_ci_text(old.latency.p50_ci_us)} → {_ci_text(row.latency.p50_ci_us)}"
                         + (f", apart by {abs(gap):.0%}" if gap else ", overlapping"))
        else:
            noise = noise_threshold(figure_spread(old), figure_spread(row))
            change, verdict = classify(old.latency.p50_us, row.latency.p50_us, noise)
            gap = None
        if old_host != hostnames.get(row.source, old_host):
            notes.append(f"baseline measured on {old_host}")
        if row.stable is False or old.stable is False:
            notes.append("windows did not agree within 10 % in " +
                         " and ".join(s for s, st in (("the baseline", old.stable), ("this run", row.stable)) if st is False))
        diffs.append(BaselineDiff(**base, change=change, noise=noise, separation=gap, verdict=verdict,
                                  note="; ".join(notes) or None))

    for step in load_rows:
        key = _load_key(step.url, step)
        seen_load.add(key)
        kd = {"url_path": key[0], "mode": key[1], "concurrency" if key[1] == "closed" else "rate_rps": key[2]}
        base = dict(key=kd, kind="loadtest", source=step.source,
                    new_p50_us=step.latency.p50_us if step.latency else None,
                    new_p99_us=step.latency.p99_us if step.latency else None, new_throughput=step.throughput_rps)
        if key not in old_load:
            diffs.append(BaselineDiff(**base, verdict="new"))
            continue
        sid, old, _host = _pick(old_load[key], hostnames.get(step.source, ""))
        base.update(baseline_source=sid, old_p50_us=old.latency.p50_us if old.latency else None,
                    old_p99_us=old.latency.p99_us if old.latency else None, old_throughput=old.throughput_rps)
        if not old.latency or not step.latency:
            diffs.append(BaselineDiff(**base, verdict="not comparable", note="no latency recorded"))
            continue
        noise = noise_threshold()
        change, verdict = classify(old.latency.p50_us, step.latency.p50_us, noise)
        note = f"errors {old.errors} → {step.errors}" if old.errors != step.errors else None
        diffs.append(BaselineDiff(**base, change=change, noise=noise, verdict=verdict, note=note))

    for key, found in old_bench.items():
        if key not in seen_bench:
            sid, old, _ = found[0]
            diffs.append(BaselineDiff(key=_key_dict(key), kind="bench", baseline_source=sid,
                                      old_p50_us=old.latency.p50_us if old.latency else None,
                                      old_p99_us=old.latency.p99_us if old.latency else None,
                                      old_throughput=old.throughput_sps, verdict="missing",
                                      note="in the baseline, not in this run"))
    for key, found in old_load.items():
        if key not in seen_load:
            sid, old, _ = found[0]
            kd = {"url_path": key[0], "mode": key[1], "concurrency" if key[1] == "closed" else "rate_rps": key[2]}
            diffs.append(BaselineDiff(key=kd, kind="loadtest", baseline_source=sid,
                                      old_p50_us=old.latency.p50_us if old.latency else None,
                                      old_throughput=old.throughput_rps, verdict="missing",
                                      note="in the baseline, not in this run"))

    order = {"regression": 0, "improvement": 1, "not comparable": 2, "missing": 3, "new": 4, "within noise": 5}
    diffs.sort(key=lambda d: (order[d.verdict], -abs(d.change or 0.0)))
    counts: dict[str, int] = {}
    for d in diffs:
        counts[d.verdict] = counts.get(d.verdict, 0) + 1
    return BaselineSummary(rule=NOISE_RULE, counts=counts, diffs=diffs)
