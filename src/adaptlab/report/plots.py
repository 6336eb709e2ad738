"""The report's plots, each returned as an inline ``<svg>`` string.

matplotlib is imported inside the functions: importing it costs about half a
second, which ``adaptlab --help`` must not pay. Figures are built with the
Figure API (no pyplot, so no GUI backend and no global figure state).
"""

from __future__ import annotations

import io
import math
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

    from adaptlab.decide.recommend import BreakEven
    from adaptlab.evaluation.summary import CandidateSummary

# Observable's categorical palette: distinguishable, and readable in greyscale print.
PALETTE = [
    "#4269d0",
    "#efb118",
    "#ff725c",
    "#6cc5b0",
    "#3ca951",
    "#ff8ab7",
    "#a463f2",
    "#97bbf5",
    "#9c6b4e",
    "#9498a0",
]
INK = "#1f2328"
MUTED = "#6e7781"

_RC: dict[RcKeyType, Any] = {
    # Text stays text (small, selectable); the page's fallback fonts are only ever
    # narrower than the DejaVu metrics matplotlib lays out with, so nothing overflows.
    "svg.fonttype": "none",
    "svg.hashsalt": "adaptlab",  # stable ids: the same run renders the same file
    "font.family": "sans-serif",
    "font.sans-serif": ["DejaVu Sans"],
    "font.size": 9,
    "axes.edgecolor": "#8c959f",
    "axes.labelcolor": INK,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.color": "#e6e8eb",
    "grid.linewidth": 0.8,
    "xtick.color": MUTED,
    "ytick.color": MUTED,
    "legend.frameon": False,
    "text.usetex": False,
    "text.parse_math": False,  # a '$' pair in a candidate name is a name, not a formula
}


# ---------------------------------------------------------------- formatting


MANY_LABELS = 20


def usd(x: float) -> str:
    """Dollars; sub-cent amounts keep three significant digits instead of rounding to 0."""
    if not math.isfinite(x):
        return "—"
    if x == 0:
        return "0"
    if abs(x) >= 1:
        return f"{x:,.2f}"
    return str(np.format_float_positional(x, precision=3, fractional=False, trim="-"))


def short(text: str, limit: int = 32) -> str:
    """A label as a tick or legend shows it: long ones cut, so the layout stays bounded."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


def color(i: int) -> str:
    return PALETTE[i % len(PALETTE)]


# ---------------------------------------------------------------- svg plumbing


@contextmanager
def _figure(width: float, height: float, ncols: int = 1) -> Iterator[tuple[Figure, list[Axes]]]:
    import matplotlib as mpl
    from matplotlib.figure import Figure

    with mpl.rc_context(_RC):
        fig = Figure(figsize=(width, height), layout="constrained")
        axes = [fig.add_subplot(1, ncols, i + 1) for i in range(ncols)]
        yield fig, axes


def _svg(fig: Figure) -> str:
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    text = buf.getvalue()
    # Inline SVG needs neither the XML prolog nor the DOCTYPE (whose DTD is a URL), and the
    # RDF metadata names more URLs; drop all three so the page references nothing outside.
    text = text[text.index("<svg") :]
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)
    # Every plot keeps its data inside autoscaled limits, so clipping changes nothing, and
    # without it there is no url(#…) left: the file is checkable with a plain substring test.
    text = re.sub(r' clip-path="url\(#[^"]*\)"', "", text)
    return re.sub(r"\s*<clipPath .*?</clipPath>", "", text, flags=re.S)


def scope_ids(svg: str, prefix: str) -> str:
    """Prefix every id and #reference: matplotlib reuses ids across figures of one page."""
    svg = re.sub(r'\bid="', f'id="{prefix}', svg)
    return re.sub(r'href="#', f'href="#{prefix}', svg)


def _label_points(
    ax: Axes, xs: Sequence[float], ys: Sequence[float], names: Sequence[str], winner: str
) -> None:
    for x, y, name in zip(xs, ys, names, strict=True):
        ax.annotate(
            short(name),
            (x, y),
            xytext=(6, 5),
            textcoords="offset points",
            fontsize=8.5,
            color=INK,
            fontweight="bold" if name == winner else "normal",
        )


# ---------------------------------------------------------------- plots


def quality_vs_cost(cands: Sequence[CandidateSummary], winner: str, confidence: float) -> str:
    """The primary metric (CI bars) against cost per 1,000 requests, and against latency p50."""
    names = [c.name for c in cands]
    info = cands[0].metric_info
    scale = 100.0 if info.percent else 1.0
    acc = [scale * c.quality for c in cands]
    err = (
        np.array(
            [
                [max(0.0, c.quality - c.quality_ci.low) for c in cands],
                [max(0.0, c.quality_ci.high - c.quality) for c in cands],
            ]
        )
        * scale
    )
    panels = [
        ([c.cost_per_1k_usd for c in cands], "cost per 1,000 requests (USD)"),
        ([c.latency_p50_ms for c in cands], "latency p50 (ms, one request at a time)"),
    ]
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    with _figure(9.2, 3.6, ncols=2) as (fig, axes):
        for ax, (xs, xlabel) in zip(axes, panels, strict=True):
            for i, c in enumerate(cands):
                win = c.name == winner
                ax.errorbar(
                    xs[i],
                    acc[i],
                    yerr=err[:, i : i + 1],
                    fmt="o",
                    color=color(i),
                    ecolor=color(i),
                    elinewidth=1.4,
                    capsize=3,
                    markersize=9 if win else 6,
                    markeredgecolor=INK if win else color(i),
                    markeredgewidth=1.6 if win else 0,
                    zorder=3,
                )
            _label_points(ax, xs, acc, names, winner)
            ax.set_xlabel(xlabel)
            ax.margins(x=0.25, y=0.12)
        unit = " (%)" if info.percent else ""
        axes[0].set_ylabel(f"{info.name}{unit} with {confidence:.0%} CI")
        axes[0].xaxis.set_major_locator(MaxNLocator(5))
        axes[0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: usd(v)))
        return _svg(fig)


#: The confusion matrix shows at most this many labels: the ones most often confused.
CONFUSION_LABELS = 25


def confusion_labels(c: CandidateSummary) -> list[int]:
    """Indices of the labels the matrix shows: all of them, or the most confused ones.

    Past :data:`CONFUSION_LABELS` a full matrix is unreadable (and with thousands of
    labels, unbounded in size): the labels with the most errors in their row and column
    are kept, the most frequent first among equals, in the labels' own order.
    """
    assert c.metrics is not None
    k = len(c.metrics.labels)
    if k <= CONFUSION_LABELS:
        return list(range(k))
    errors: dict[int, int] = {}
    for (i, j), v in c.metrics.confusion_counts.items():
        if i != j:
            errors[i] = errors.get(i, 0) + v
            errors[j] = errors.get(j, 0) + v
    support = {label: m.support for label, m in c.metrics.per_class.items()}
    labels = c.metrics.labels
    ranked = sorted(range(k), key=lambda i: (-errors.get(i, 0), -support.get(labels[i], 0), i))
    return sorted(ranked[:CONFUSION_LABELS])


def confusion_matrix(c: CandidateSummary) -> str:
    """Heatmap of counts; rows are gold labels, columns predicted labels."""
    assert c.metrics is not None, "a confusion matrix needs a classification candidate"
    shown = confusion_labels(c)
    pos = {label: n for n, label in enumerate(shown)}
    labels = [short(c.metrics.labels[i]) for i in shown]
    k = len(labels)
    m = np.zeros((k, k), dtype=float)
    for (i, j), v in c.metrics.confusion_counts.items():
        if i in pos and j in pos:
            m[pos[i], pos[j]] = v
    many = k > MANY_LABELS  # past this, counts in cells and full-size ticks are unreadable
    side = min(7.0, 2.2 + 0.55 * k) if not many else min(16.0, 0.16 * k + 2.0)
    with _figure(side + 0.8, side) as (fig, (ax,)):
        # pcolormesh stays vector (imshow would embed a bitmap).
        mesh = ax.pcolormesh(
            m, cmap="Blues", vmin=0, vmax=max(1.0, float(m.max())), edgecolors="white", linewidth=1
        )
        ax.grid(False)
        ax.set_xlim(0, k)
        ax.set_ylim(k, 0)
        ticks = np.arange(k) + 0.5
        size = 9 if not many else 5
        ax.set_xticks(
            ticks,
            labels,
            rotation=35 if not many else 90,
            ha="right",
            rotation_mode="anchor",
            fontsize=size,
        )
        ax.set_yticks(ticks, labels, fontsize=size)
        ax.tick_params(length=0)
        ax.set_xlabel("predicted label")
        ax.set_ylabel("gold label")
        for s in ax.spines.values():
            s.set_visible(False)
        dark = 0.55 * m.max()
        for (i, j), v in np.ndenumerate(m):
            if v and not many:
                ax.text(
                    j + 0.5,
                    i + 0.5,
                    f"{int(v)}",
                    ha="center",
                    va="center",
                    fontsize=9,
                    color="white" if v > dark else INK,
                )
        fig.colorbar(mesh, ax=ax, shrink=0.8, label="examples")
        return _svg(fig)


def per_class_f1(cands: Sequence[CandidateSummary], labels: Sequence[str], winner: str) -> str:
    """F1 per class, one bar per candidate in each class group.

    With many labels only the hardest ones for the winner are drawn, so the figure
    stays readable; the report's per-class table still lists every class.
    """

    def f1(c: CandidateSummary, label: str) -> float:
        return c.metrics.per_class[label].f1 if c.metrics is not None else 0.0

    return _grouped_f1(cands, labels, f1, winner)


def per_field_f1(cands: Sequence[CandidateSummary], fields: Sequence[str], winner: str) -> str:
    """Extraction: F1 per field of the target, one bar per candidate in each field group."""

    def f1(c: CandidateSummary, name: str) -> float:
        found = c.extraction.per_field.get(name) if c.extraction is not None else None
        return found.f1 if found is not None else 0.0

    return _grouped_f1(cands, fields, f1, winner, rotate=any(len(f) > 12 for f in fields))


def _grouped_f1(
    cands: Sequence[CandidateSummary],
    groups: Sequence[str],
    f1_of: Callable[[CandidateSummary, str], float],
    winner: str,
    *,
    rotate: bool = False,
) -> str:
    if len(groups) > MANY_LABELS:
        best = next((c for c in cands if c.name == winner), cands[0])
        groups = sorted(groups, key=lambda g: f1_of(best, g))[:MANY_LABELS]
    n = len(cands)
    width = 0.8 / n
    x = np.arange(len(groups))
    rotate = rotate or any(len(g) > 12 for g in groups)
    fig_width = max(6.0, 1.1 * len(groups) + 2.5)
    # As many legend columns as the longest name allows (about 14 characters an inch at
    # this size), and room below for its rows, so long names never squeeze the axes away.
    longest = max(len(short(c.name)) + 9 for c in cands)
    ncols = max(1, min(n, 4, int(fig_width * 14 // (longest + 4))))
    rows = -(-n // ncols)
    height = 3.4 + (0.8 if rotate else 0) + 0.2 * rows
    with _figure(fig_width, height) as (fig, (ax,)):
        for i, c in enumerate(cands):
            ax.bar(
                x + (i - (n - 1) / 2) * width,
                [100 * f1_of(c, g) for g in groups],
                width,
                color=color(i),
                label=short(c.name) + (" (winner)" if c.name == winner else ""),
                edgecolor=INK if c.name == winner else "none",
                linewidth=0.8,
                zorder=2,
            )
        ticks = [short(g) for g in groups]
        if rotate:
            ax.set_xticks(x, ticks, rotation=30, ha="right", rotation_mode="anchor")
        else:
            ax.set_xticks(x, ticks)
        ax.set_ylabel("F1 (%)")
        ax.set_ylim(0, 105)
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.15 * rotate), ncols=ncols)
        return _svg(fig)


def training_curves(c: CandidateSummary) -> str:
    """Loss (train and val) on the left, other validation metrics on the right."""
    series: dict[tuple[str, str], list[tuple[float, float]]] = {}
    # A generative fine-tune evaluates every N optimizer steps, not once per epoch.
    by_step = c.overfit is not None
    for step, epoch, split, metric, value in c.curves:
        series.setdefault((split, metric), []).append((step if by_step else epoch, value))
    best = c.overfit.best_step if c.overfit is not None else c.info.get("best_epoch")
    unit = "step" if by_step else "epoch"
    split_color = {"train": PALETTE[0], "val": PALETTE[2]}
    from matplotlib.ticker import MaxNLocator

    with _figure(9.2, 3.2, ncols=2) as (fig, (loss_ax, metric_ax)):
        for (split, metric), pts in sorted(series.items()):
            ax = loss_ax if metric == "loss" else metric_ax
            xs, ys = zip(*pts, strict=True)
            scale = 100.0 if metric == "accuracy" else 1.0
            ax.plot(
                xs,
                [scale * y for y in ys],
                marker="o" if split != "train" else None,
                markersize=4,
                color=split_color.get(split, MUTED),
                label=f"{split} {metric}",
            )
        for ax in (loss_ax, metric_ax):
            if isinstance(best, int | float) and best > 0:
                ax.axvline(
                    best, color=MUTED, linestyle="--", linewidth=1, label=f"best {unit} ({best:g})"
                )
            ax.set_xlabel(f"optimizer {unit}" if by_step else unit)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.margins(y=0.08)
            ax.legend(loc="best", fontsize=8)
        loss_ax.set_ylabel("loss")
        metric_ax.set_ylabel(
            "validation accuracy (%)" if ("val", "accuracy") in series else "validation metric"
        )
        return _svg(fig)


def cumulative_cost(
    cands: Sequence[CandidateSummary],
    break_even: Sequence[BreakEven],
    forecast: int,
    horizon: int,
    winner: str,
    growth: float = 0.0,
) -> str:
    """Total cost over the horizon (:meth:`CostModel.total_usd`) against monthly volume.

    Setup costs are often paid back at a small fraction of the forecast volume, where the
    full-range lines are indistinguishable; a second panel then zooms in on the crossings.
    """
    crossings = [b.monthly_volume for b in break_even if b.monthly_volume is not None]
    top = max([2.0 * forecast, 1.5 * max(crossings, default=0.0), 1000.0])
    ranges = [top]
    if crossings and 3 * max(crossings) < 0.5 * top:
        ranges.append(3 * max(crossings))
    by_name = {c.name: c for c in cands}

    def total(c: CandidateSummary, volume: Any) -> Any:
        return c.cost.total_usd(volume, horizon, growth)

    from matplotlib.ticker import FuncFormatter

    with _figure(9.2, 3.6, ncols=len(ranges)) as (fig, axes):
        for ax, right in zip(axes, ranges, strict=True):
            volume = np.linspace(0.0, right, 200)
            for i, c in enumerate(cands):
                ax.plot(
                    volume,
                    total(c, volume),
                    color=color(i),
                    linewidth=2.4 if c.name == winner else 1.5,
                    label=short(c.name) + (" (winner)" if c.name == winner else ""),
                )
            for b in break_even:
                if b.monthly_volume is not None:
                    y = total(by_name[b.candidate], b.monthly_volume)
                    ax.plot([b.monthly_volume], [y], "o", color=INK, markersize=5, zorder=4)
                    ax.annotate(
                        f"{b.candidate} pays back",
                        (b.monthly_volume, y),
                        xytext=(8, -12),
                        textcoords="offset points",
                        fontsize=8,
                    )
            if forecast <= right:
                ax.axvline(
                    forecast,
                    color=MUTED,
                    linestyle=":",
                    linewidth=1.2,
                    label=f"forecast ({forecast:,}/month)",
                )
            ax.set_xlim(0, right)
            ax.set_xlabel("requests per month")
            ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: usd(v)))
        axes[0].set_ylabel(f"total cost over {horizon} months (USD)")
        axes[0].legend(loc="upper left", fontsize=8)
        if len(axes) > 1:
            axes[1].set_title("zoom on the break-even points", fontsize=9, color=MUTED)
        return _svg(fig)
