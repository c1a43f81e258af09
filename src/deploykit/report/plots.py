"""The report's plots, drawn with matplotlib into PNG bytes (embedded as data: URIs, so the HTML is one
file that works offline).

Figures are built with `matplotlib.figure.Figure` and the Agg canvas directly, not pyplot: no global
backend switch, no figure registry to leak, and it works without a display.

- latency distribution per format (one figure per batch size): per configuration, a whisker from the
  fastest call to p99.9, a box from p50 to p99 and a dot at p50, on a log axis — drawn from the
  recorded percentiles, since results keep percentiles, not raw samples;
- throughput and latency against concurrency (closed-loop load steps; open-loop steps against the
  offered rate), the client's p50/p99 beside the server's own inference time;
- latency against artifact size and against accuracy (scatter, smallest batch);
- training time per epoch and accuracy per model (framework and Keras API comparison).
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field

from deploykit.report.schema import LatencyRow, LoadRow, Report, TrainingRow

__all__ = ["Plot", "MAX_DISTRIBUTION_ROWS", "make_plots"]

MAX_DISTRIBUTION_ROWS = 120  # beyond this a figure is too tall to read; the caption says what was left out
_MARKERS = "osD^v<>PX*hp"


@dataclass
class Plot:
    name: str  # file stem: latency-b1, load, size-accuracy, training
    title: str
    caption: str
    png: bytes
    labels: list = field(default_factory=list)  # text written next to points (scatter: model/format per point)

    @property
    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode()


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _png(fig) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, facecolor="white")
    return buf.getvalue()


def _palette(names):
    from matplotlib import colormaps

    cmap = colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {n: cmap(i % cmap.N) for i, n in enumerate(sorted(names))}


def _plain_log(axis) -> None:
    """Log axis labelled 10, 20, 100 (not 10^1, 2×10^1): easier to read as µs or ms. Matplotlib's own
    log formatters decide which ticks get a label (minor ones only on short ranges); only the text changes."""
    from matplotlib.ticker import LogFormatter

    class PlainLogFormatter(LogFormatter):
        def _num_to_string(self, x, vmin, vmax):
            return f"{x:g}"

    axis.set_major_formatter(PlainLogFormatter(labelOnlyBase=False))
    axis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False, minor_thresholds=(2, 0.5)))


def _target_text(r: LatencyRow) -> str:
    return f"{r.target} (emulated)" if r.emulated and "emulated" not in r.target else r.target


def _latency_distribution(rows: list[LatencyRow], batch: int, colors: dict) -> Plot:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    ok = sorted((r for r in rows if r.batch == batch and r.status == "ok" and r.latency),
                key=lambda r: (r.format, r.latency.p50_us))
    left_out = max(0, len(ok) - MAX_DISTRIBUTION_ROWS)
    ok = ok[:MAX_DISTRIBUTION_ROWS]
    fig = _figure(10.5, max(2.6, 0.27 * len(ok) + 1.3))
    ax = fig.add_subplot()
    for y, r in enumerate(ok):
        s, color = r.latency, colors[r.format]
        # a withheld tail (too few samples) is drawn to the slowest call, not to an invented p99
        tail = s.p99_us if s.p99_us is not None else s.max_us
        ax.hlines(y, s.min_us, max(s.p999_us or s.max_us, tail), color="#888888", linewidth=1)
        ax.barh(y, max(tail - s.p50_us, s.p50_us * 0.01), left=s.p50_us, height=0.62, color=color, alpha=0.85)
        ax.plot([s.p50_us], [y], "o", markersize=5, markerfacecolor="white", markeredgecolor="black", markeredgewidth=1)
    ax.set_yticks(range(len(ok)), [f"{r.format} · {r.model} · {_target_text(r)} · {r.threads or '?'} thr" for r in ok],
                  fontsize=8)
    ax.set_ylim(len(ok) - 0.5, -0.5)  # top to bottom, no empty margin
    ax.set_xscale("log")
    _plain_log(ax.xaxis)
    ax.set_xlabel(f"latency of one call with batch {batch} (µs, log scale)")
    ax.grid(axis="x", which="both", alpha=0.25)
    ax.set_title(f"Latency distribution per format, batch {batch}", fontsize=11, loc="left")
    handles = [Line2D([], [], marker="o", linestyle="", markerfacecolor="white", markeredgecolor="black", label="p50"),
               Patch(facecolor="white", edgecolor="black", label="box: p50 → p99"),
               Line2D([], [], color="#888888", label="whisker: fastest → p99.9")]
    handles += [Patch(color=colors[f], label=f) for f in sorted({r.format for r in ok})]
    ax.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    caption = (f"{len(ok)} configurations measured with batch {batch}, grouped by format, fastest first within each "
               "format. Unavailable and failed configurations are in the tables, not here.")
    if left_out:
        caption += f" {left_out} slower configurations were left out of the figure (all are in the tables)."
    return Plot(f"latency-b{batch}", f"Latency distribution per format (batch {batch})", caption, _png(fig))


def _load(steps: list[LoadRow]) -> Plot:
    from matplotlib.ticker import FuncFormatter

    closed = [s for s in steps if s.mode == "closed" and s.concurrency]
    opened = [s for s in steps if s.mode == "open" and s.rate_rps]
    panels = (2 if closed else 0) + (1 if opened else 0)
    fig = _figure(5.0 * panels + 0.5, 4.0)
    axes = fig.subplots(1, panels, squeeze=False)[0]
    series = sorted({(s.source, s.url or "", s.machine) for s in steps})
    colors = _palette([f"{sid} {url}" for sid, url, _ in series])
    i = 0
    if closed:
        ax_t, ax_l = axes[0], axes[1]
        for sid, url, machine in series:
            pts = sorted((s for s in closed if s.source == sid), key=lambda s: s.concurrency)
            if not pts:
                continue
            c = colors[f"{sid} {url}"]
            xs = [s.concurrency for s in pts]
            ax_t.plot(xs, [s.throughput_rps for s in pts], "o-", color=c, label=f"{sid} {url}")
            lat = [(s.concurrency, s.latency) for s in pts if s.latency]
            ax_l.plot([x for x, _ in lat], [v.p50_us / 1000 for _, v in lat], "o-", color=c, label=f"{sid} client p50")
            tail = [(x, v) for x, v in lat if v.p99_us is not None]  # withheld: too few samples
            ax_l.plot([x for x, _ in tail], [v.p99_us / 1000 for _, v in tail], "s--", color=c, label=f"{sid} client p99")
            srv = [(s.concurrency, s.server_time) for s in pts if s.server_time]
            if srv:
                ax_l.plot([x for x, _ in srv], [v.p50_us / 1000 for _, v in srv], "^:", color=c,
                          label=f"{sid} server p50")
        for ax in (ax_t, ax_l):
            ax.set_xscale("log", base=2)
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:g}"))
            ax.set_xlabel("concurrent clients (closed loop)")
            ax.grid(alpha=0.25, which="both")
        ax_t.set_ylabel("throughput (requests/s)")
        ax_t.set_ylim(bottom=0)
        ax_t.set_title("Throughput against concurrency", fontsize=11, loc="left")
        ax_l.set_yscale("log")
        _plain_log(ax_l.yaxis)
        ax_l.set_ylabel("latency (ms, log scale)")
        ax_l.set_title("Latency against concurrency", fontsize=11, loc="left")
        ax_t.legend(fontsize=7, frameon=False)
        ax_l.legend(fontsize=7, frameon=False)
        i = 2
    if opened:
        ax = axes[i]
        for sid, url, machine in series:
            pts = sorted((s for s in opened if s.source == sid and s.latency), key=lambda s: s.rate_rps)
            if not pts:
                continue
            c = colors[f"{sid} {url}"]
            xs = [s.rate_rps for s in pts]
            ax.plot(xs, [s.latency.p50_us / 1000 for s in pts], "o-", color=c, label=f"{sid} p50")
            tail = [s for s in pts if s.latency.p99_us is not None]  # withheld: too few samples
            ax.plot([s.rate_rps for s in tail], [s.latency.p99_us / 1000 for s in tail], "s--", color=c, label=f"{sid} p99")
        ax.set_xlabel("offered rate (requests/s, open loop)")
        ax.set_ylabel("latency from scheduled send (ms, log)")
        ax.set_yscale("log")
        _plain_log(ax.yaxis)
        ax.grid(alpha=0.25, which="both")
        ax.set_title("Open loop: latency against rate", fontsize=11, loc="left")
        ax.legend(fontsize=7, frameon=False)
    caption = ("Closed loop: each client sends its next request when the last one returns. Client latency is "
               "measured by the load generator; server p50 is the inference time the server reports in its "
               "response header, so the gap between them is HTTP, queueing and serialisation. ")
    if opened:
        caption += "Open loop latencies are measured from each request's scheduled send time (no coordinated omission)."
    return Plot("load", "Throughput and latency against load", caption.strip(), _png(fig))


def _size_accuracy(rows: list[LatencyRow], colors: dict) -> Plot | None:
    ok = [r for r in rows if r.status == "ok" and r.latency]
    if not ok:
        return None
    batch = min(r.batch for r in ok)
    ok = [r for r in ok if r.batch == batch]
    targets = sorted({_target_text(r) for r in ok})
    markers = {t: _MARKERS[i % len(_MARKERS)] for i, t in enumerate(targets)}
    fig = _figure(11.0, 5.0)
    ax_s, ax_a = fig.subplots(1, 2)
    labels: list[str] = []
    for r in ok:
        kw = dict(color=colors[r.format], marker=markers[_target_text(r)], s=38, alpha=0.85, edgecolors="black",
                  linewidths=0.4)
        label = f"{r.model}/{r.format}" + (f" @{_target_text(r)}" if len(targets) > 1 else "")
        labels.append(label)
        if r.artifact_bytes:
            ax_s.scatter(r.artifact_bytes / 1000, r.latency.p50_us, **kw)
            ax_s.annotate(label, (r.artifact_bytes / 1000, r.latency.p50_us), fontsize=6, xytext=(4, 2),
                          textcoords="offset points", color="#333333")
        if r.accuracy is not None:
            ax_a.scatter(r.accuracy * 100, r.latency.p50_us, **kw)
            ax_a.annotate(label, (r.accuracy * 100, r.latency.p50_us), fontsize=6, xytext=(4, 2),
                          textcoords="offset points", color="#333333")
    ax_s.set_xscale("log")
    ax_s.set_yscale("log")
    for axis in (ax_s.xaxis, ax_s.yaxis, ax_a.yaxis):
        _plain_log(axis)
    ax_s.set_xlabel("artifact size (KB, log scale)")
    ax_s.set_ylabel(f"p50 latency, batch {batch} (µs, log scale)")
    ax_s.set_title("Latency against size", fontsize=11, loc="left")
    ax_a.set_yscale("log")
    _plain_log(ax_a.yaxis)
    ax_a.set_xlabel("test accuracy of the artifact (%)")
    ax_a.set_title("Latency against accuracy", fontsize=11, loc="left")
    for ax in (ax_s, ax_a):
        ax.grid(alpha=0.25, which="both")
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="s", linestyle="", color=colors[f], label=f) for f in sorted({r.format for r in ok})]
    handles += [Line2D([], [], marker=markers[t], linestyle="", color="#555555", label=t) for t in targets]
    ax_a.legend(handles=handles, fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                title="colour: format · marker: target", title_fontsize=8)
    caption = (f"Each point is one artifact on one target at batch {batch}, labelled model/format: down and to the "
               "left is smaller and faster; down and to the right is faster and more accurate. Size and accuracy come "
               "from the manifest; the Pareto tables above list the points worth choosing.")
    return Plot("size-accuracy", "Latency against size and accuracy", caption, _png(fig), labels)


def _training(training: list[TrainingRow]) -> Plot | None:
    rows = [t for t in training if t.train_seconds is not None and t.accuracy is not None]
    if not rows:
        return None
    datasets = {t.dataset for t in rows}
    labels = [f"{t.model}" + (f" ({t.dataset})" if len(datasets) > 1 else "") + f"\n{t.api or t.framework}"
              for t in rows]
    fw_colors = {"keras": "#d62728", "torch": "#1f77b4"}
    colors = [fw_colors.get(t.framework, "#7f7f7f") for t in rows]
    fig = _figure(max(7.0, 1.25 * len(rows) * 2 + 1.0), 3.8)
    ax_t, ax_a = fig.subplots(1, 2)
    xs = range(len(rows))
    per_epoch = [t.seconds_per_epoch or t.train_seconds for t in rows]
    ax_t.bar(xs, per_epoch, color=colors)
    for x, v in zip(xs, per_epoch):
        ax_t.annotate(f"{v:.1f} s", (x, v), ha="center", va="bottom", fontsize=8)
    ax_t.set_xticks(list(xs), labels, fontsize=7)
    ax_t.set_ylabel("training seconds per epoch")
    ax_t.set_title("Training time per epoch", fontsize=11, loc="left")
    acc = [t.accuracy * 100 for t in rows]
    ax_a.bar(xs, acc, color=colors)
    for x, v in zip(xs, acc):
        ax_a.annotate(f"{v:.2f}", (x, v), ha="center", va="bottom", fontsize=8)
    low = min(acc)
    ax_a.set_ylim(max(0.0, low - max(2.0, (100 - low) * 0.5)), 100)
    ax_a.set_xticks(list(xs), labels, fontsize=7)
    ax_a.set_ylabel("test accuracy (%)")
    ax_a.set_title("Accuracy of the framework model", fontsize=11, loc="left")
    from matplotlib.patches import Patch

    ax_a.legend(handles=[Patch(color=c, label=f) for f, c in fw_colors.items() if any(t.framework == f for t in rows)],
                fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    for ax in (ax_t, ax_a):
        ax.grid(axis="y", alpha=0.25)
    epochs = sorted({t.epochs for t in rows if t.epochs})
    caption = (f"Trained for {', '.join(map(str, epochs))} epoch(s) on this report's training runs; the accuracy "
               "axis is zoomed. Models of the same architecture (MLP, CNN) are directly comparable.")
    return Plot("training", "Training time and accuracy per framework and API", caption, _png(fig))


def _frameworks(rows) -> Plot | None:
    """compare-training: seconds per epoch, test accuracy and peak memory per variant, one row per net."""
    ok = [r for r in rows if r.status == "ok" and (r.steady_epoch_s or r.first_epoch_s)]
    if not ok:
        return None
    nets = sorted({r.net for r in ok})
    most = max(sum(r.net == n for r in ok) for n in nets)
    fig = _figure(max(9.0, 0.55 * most * 3), 3.4 * len(nets))
    axes = fig.subplots(len(nets), 3, squeeze=False)
    fw_colors = {"keras": "#d62728", "torch": "#1f77b4", "paddle": "#2ca02c"}
    for row_axes, net in zip(axes, nets):
        sel = [r for r in ok if r.net == net]
        xs = range(len(sel))
        colors = [fw_colors.get(r.framework, "#7f7f7f") for r in sel]
        names = [r.variant for r in sel]
        # one-epoch runs have no steady figure: their bar is the first epoch (tracing and compilation in it), said so
        steady = all(r.steady_epoch_s is not None for r in sel)
        panels = [([r.steady_epoch_s if steady else r.first_epoch_s for r in sel],
                   "seconds per epoch (steady)" if steady else "seconds, first epoch (with tracing/compilation)", "{:.2f}"),
                  ([r.test_accuracy * 100 for r in sel], "test accuracy (%)", "{:.1f}"),
                  ([(r.peak_rss_bytes or 0) / 2**20 for r in sel], "peak RSS (MiB)", "{:.0f}")]
        for ax, (values, label, fmt) in zip(row_axes, panels):
            ax.bar(xs, values, color=colors)
            for x, v in zip(xs, values):
                ax.annotate(fmt.format(v), (x, v), ha="center", va="bottom", fontsize=6)
            ax.set_xticks(list(xs), names, rotation=60, ha="right", fontsize=7)
            ax.set_title(f"{net}: {label}", fontsize=10, loc="left")
            ax.grid(axis="y", alpha=0.25)
    from matplotlib.patches import Patch

    axes[0][2].legend(handles=[Patch(color=c, label=f) for f, c in fw_colors.items() if any(r.framework == f for r in ok)],
                      fontsize=8, frameon=False, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    caption = ("Each variant trained the same network on the same data order, batch size, optimizer and thread "
               "budget in its own process; seconds per epoch exclude the first epoch when there are several.")
    return Plot("frameworks", "Frameworks: training time, accuracy and memory per variant", caption, _png(fig))


def make_plots(report: Report) -> list[Plot]:
    """Every plot the report's data supports, in reading order."""
    plots: list[Plot] = []
    colors = _palette({r.format for r in report.rows})
    for batch in sorted({r.batch for r in report.rows if r.status == "ok" and r.latency}):
        plots.append(_latency_distribution(report.rows, batch, colors))
    scatter = _size_accuracy(report.rows, colors)
    if scatter:
        plots.append(scatter)
    if any(s.mode == "closed" and s.concurrency or s.mode == "open" and s.rate_rps for s in report.load_steps):
        plots.append(_load(report.load_steps))
    training = _training(report.training)
    if training:
        plots.append(training)
    frameworks = _frameworks(report.frameworks)
    if frameworks:
        plots.append(frameworks)
    return plots
