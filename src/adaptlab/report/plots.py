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

from adaptlab.core.format import dollars, number, plural
from adaptlab.decide.curves import SURE_CROSSING, LearningCurves
from adaptlab.decide.economics import break_even_volume
from adaptlab.decide.verdict import BreakEven
from adaptlab.evaluation.summary import CandidateSummary

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.typing import RcKeyType

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
    # Tick labels never in exponent form, nor with an offset ("1e-5" above the axis):
    # the axes that need a wide range are logarithmic with plain labels (_log_axis).
    "axes.formatter.limits": (-30, 30),
    "axes.formatter.useoffset": False,
}


# ---------------------------------------------------------------- formatting


MANY_LABELS = 20


def num_text(x: float) -> str:
    """A tick label: no exponent, thousands separators, at most three significant digits."""
    if x >= 100:
        return f"{x:,.0f}"
    return str(np.format_float_positional(x, precision=3, fractional=False, trim="-"))


def usd_tick(x: float) -> str:
    """A tick of a cost axis in USD: two significant digits under a dollar ("0.0015",
    "< 0.000001"), whole dollars without cents above ("1", "10", "1,000")."""
    return number(x) if x >= 1 else dollars(x)


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


# ---------------------------------------------------------------- plots


def quality_vs_cost(cands: Sequence[CandidateSummary], winner: str, confidence: float) -> str:
    """The primary metric (CI bars) against cost per 1,000 requests, and against latency p50.

    The cost panel draws the quality-cost frontier: the candidates no cheaper candidate
    beats. Candidates are told apart by colour and marker in a legend below the axes
    (labels next to the points collide when candidates cost the same). A cost axis
    spanning more than two decades is logarithmic.
    """
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
    costs = [c.cost_per_1k_usd for c in cands]
    panels = [
        (costs, "cost per 1,000 requests (USD)"),
        ([c.latency_p50_ms for c in cands], "latency p50 (ms, one request at a time)"),
    ]
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    labels = [short(c.name) + (" (winner)" if c.name == winner else "") for c in cands]
    labels.append("frontier: no cheaper candidate is better")
    height = 3.6 + 0.22 * _legend_rows(labels)
    with _figure(FIG_WIDTH, height, ncols=2) as (fig, axes):
        for ax, (xs, xlabel) in zip(axes, panels, strict=True):
            for i, c in enumerate(cands):
                win = c.name == winner
                ax.errorbar(
                    xs[i],
                    acc[i],
                    yerr=err[:, i : i + 1],
                    fmt=marker(i),
                    color=color(i),
                    ecolor=color(i),
                    elinewidth=1.4,
                    capsize=3,
                    markersize=9 if win else 6,
                    markeredgecolor=INK if win else color(i),
                    markeredgewidth=1.6 if win else 0,
                    zorder=3,
                )
            ax.set_xlabel(xlabel)
            ax.margins(x=0.15, y=0.12)
            positive = [x for x in xs if x > 0]
            if positive and len(positive) == len(xs) and max(xs) / min(positive) > 100:
                _log_axis(ax, "x", usd_tick if ax is axes[0] else num_text)
        front = frontier(costs, acc)
        axes[0].step(
            [costs[i] for i in front],
            [acc[i] for i in front],
            where="post",
            color=MUTED,
            linestyle="--",
            linewidth=1,
            zorder=1,
        )
        unit = " (%)" if info.percent else ""
        axes[0].set_ylabel(f"{info.name}{unit} with {confidence:.0%} CI")
        if axes[0].get_xscale() != "log":
            axes[0].xaxis.set_major_locator(MaxNLocator(5))
            axes[0].xaxis.set_major_formatter(FuncFormatter(lambda v, _: usd_tick(v)))
        handles = [
            Line2D([], [], marker=marker(i), color=color(i), linestyle="", markersize=7)
            for i in range(len(cands))
        ] + [Line2D([], [], color=MUTED, linestyle="--", linewidth=1)]
        _legend_below(fig, handles, labels)
        return _svg(fig)


def frontier(costs: Sequence[float], quality: Sequence[float]) -> list[int]:
    """Indices on the quality-cost frontier, cheapest first: each beats every cheaper one.

    Among equal costs only the best counts; a candidate no better than a cheaper one is
    dominated and left out.
    """
    order = sorted(range(len(costs)), key=lambda i: (costs[i], -quality[i]))
    out: list[int] = []
    for i in order:
        if not out or quality[i] > quality[out[-1]]:
            out.append(i)
    return out


MARKERS = ["o", "s", "D", "^", "v", "P", "X", "<", ">", "h"]


def marker(i: int) -> str:
    return MARKERS[i % len(MARKERS)]


LEGEND_COLUMNS = 3
FIG_WIDTH = 9.2  # inches, of the report's wide figures


def _legend_columns(labels: Sequence[str], width: float = FIG_WIDTH) -> int:
    """As many columns as the longest label allows (about 14 characters an inch at 8 pt)."""
    longest = max((len(label) for label in labels), default=1) + 6  # marker and gap
    return max(1, min(LEGEND_COLUMNS, len(labels), int(width * 14 // longest)))


def _legend_rows(labels: Sequence[str], width: float = FIG_WIDTH) -> int:
    return -(-len(labels) // _legend_columns(labels, width))


def _legend_below(
    fig: Figure, handles: Sequence[Any], labels: Sequence[str], width: float = FIG_WIDTH
) -> None:
    """A legend under the axes, outside them: it can never cover a line or a label."""
    fig.legend(
        handles,
        labels,
        loc="outside lower center",
        ncols=_legend_columns(labels, width),
        fontsize=8,
        # Wider than matplotlib's 2.0: a figure shrunk to a phone's width is drawn with
        # hinted fonts a little wider than the metrics it was laid out with.
        columnspacing=3.0,
    )


def _log_axis(ax: Axes, which: str, fmt: Callable[[float], str]) -> None:
    """Log scale with plain tick labels: matplotlib's default ones are mathtext, which
    ``text.parse_math: False`` would print raw; minor ticks stay unlabelled."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    axis: Any = ax.xaxis if which == "x" else ax.yaxis
    if which == "x":
        ax.set_xscale("log")
    else:
        ax.set_yscale("log")
    low, high = ax.get_xlim() if which == "x" else ax.get_ylim()
    few = low > 0 and math.log10(high / low) <= 2.5  # under 2.5 decades: label 1, 2, 5
    axis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if few else (1.0,)))
    axis.set_major_formatter(FuncFormatter(lambda v, _: fmt(v)))
    axis.set_minor_formatter(NullFormatter())


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
    # Capped: a wider figure is shrunk on a narrow screen until its text is unreadable.
    fig_width = min(13.0, max(6.0, 1.1 * len(groups) + 2.5))
    names = [short(c.name) + (" (winner)" if c.name == winner else "") for c in cands]
    # The legend sits under the tick labels (outside the axes, placed by the constrained
    # layout), so even rotated 32-character labels cannot run into it.
    height = 3.4 + (0.8 if rotate else 0) + 0.22 * _legend_rows(names, fig_width)
    with _figure(fig_width, height) as (fig, (ax,)):
        for i, c in enumerate(cands):
            ax.bar(
                x + (i - (n - 1) / 2) * width,
                [100 * f1_of(c, g) for g in groups],
                width,
                color=color(i),
                label=names[i],
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
        handles, labels = ax.get_legend_handles_labels()
        _legend_below(fig, handles, labels, fig_width)
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

    # A provider fine-tune reports losses only: then one panel, no empty second one.
    metrics = any(metric != "loss" for _, metric in series)
    with _figure(9.2 if metrics else 5.2, 3.2, ncols=2 if metrics else 1) as (fig, panels):
        loss_ax = panels[0]
        metric_ax = panels[1] if metrics else loss_ax
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
        for ax in panels:
            if isinstance(best, int | float) and best > 0:
                ax.axvline(
                    best,
                    color=MUTED,
                    linestyle="--",
                    linewidth=1,
                    label=f"best {unit} ({number(best)})",
                )
            ax.set_xlabel(f"optimizer {unit}" if by_step else unit)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.margins(y=0.08)
            ax.legend(loc="best", fontsize=8)
        loss_ax.set_ylabel("loss")
        if metrics:
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
    """Monthly cost against monthly volume, one line per candidate, crossings marked.

    The monthly cost is :meth:`CostModel.total_usd` over the horizon divided by its
    months (setup spread over the horizon), so two lines cross exactly at their
    break-even volume (:func:`adaptlab.decide.economics.break_even_volume`). Both axes
    are logarithmic: candidates' costs differ by decades, and crossings far below the
    forecast stay visible. The cost axis starts where costs are worth reading
    (:func:`cost_floor`: a cent a month, or a thousandth of the dearest line when
    every cost is smaller), not at the millionths of a dollar a local model costs at
    one request a month; lines are cut where they drop below it. The crossings marked
    are the winner's with every other candidate and those of the break-even table, from
    one request a month up, each pair once; each is named in the legend below the
    axes, never next to its point, so no label can cover another. Crossings below the
    cost axis are not drawn, and the legend says how many.
    """
    from matplotlib.lines import Line2D

    by_name = {c.name: c for c in cands}
    # A pair is one crossing whichever side it was asked for from (the winner's pairs and
    # the break-even table's often name the same two candidates the other way round).
    pairs = {_pair(winner, c.name) for c in cands if c.name != winner and winner in by_name}
    pairs |= {_pair(b.baseline, b.candidate) for b in break_even if b.baseline in by_name}
    crossings: list[tuple[float, float, str]] = []
    for a_name, b_name in sorted(pairs):
        if a_name not in by_name or b_name not in by_name:
            continue
        a, b = by_name[a_name].cost, by_name[b_name].cost
        v = break_even_volume(a, b, horizon, growth)
        if v is None or not math.isfinite(v) or v < 1:
            continue  # below one request a month one of them is cheaper at any volume
        cheaper = a_name if a.per_request_usd < b.per_request_usd else b_name
        other = b_name if cheaper == a_name else a_name
        y = a.total_usd(v, horizon, growth) / horizon
        crossings.append(
            (v, y, f"{short(cheaper)} cheaper than {short(other)} above {v:,.0f}/month")
        )
    crossings.sort()

    def monthly(c: CandidateSummary, v: Any) -> Any:
        return c.cost.total_usd(v, horizon, growth) / horizon

    def volumes(marks: Sequence[tuple[float, float, str]]) -> Any:
        low = max(1.0, min([forecast / 1000, *(v / 3 for v, _, _ in marks)], default=1.0))
        high = max([10.0 * forecast, 3.0 * max((v for v, _, _ in marks), default=0.0), 1000.0])
        return np.geomspace(low, high, 400)

    # The floor from the lines over every volume a crossing could ask for; the marks
    # under it are left out, and the volume axis then spans only the ones drawn.
    everything = np.concatenate([monthly(c, volumes(crossings)) for c in cands])
    floor = cost_floor(everything)
    marks = [m for m in crossings if floor is None or m[1] >= floor]
    hidden = len(crossings) - len(marks)
    volume = volumes(marks)

    handles: list[Any] = [
        Line2D([], [], color=color(i), linewidth=2.4 if c.name == winner else 1.5)
        for i, c in enumerate(cands)
    ]
    labels = [short(c.name) + (" (winner)" if c.name == winner else "") for c in cands]
    handles.append(Line2D([], [], color=MUTED, linestyle=":", linewidth=1.2))
    labels.append(f"forecast ({forecast:,}/month)")
    for k, (_, _, text) in enumerate(marks):
        handles.append(Line2D([], [], marker=marker(k), color=INK, linestyle="", fillstyle="none"))
        labels.append(text)
    if hidden and floor is not None:
        handles.append(Line2D([], [], linestyle="", marker=""))
        labels.append(
            f"{plural(hidden, 'crossing')} under {dollars(floor)} USD/month not drawn "
            "(see the break-even table)"
        )
    height = 3.6 + 0.22 * _legend_rows(labels)
    with _figure(FIG_WIDTH, height) as (fig, (ax,)):
        top = 0.0
        for i, c in enumerate(cands):
            ys = np.asarray(monthly(c, volume), dtype=float)
            shown = ys > 0 if floor is None else ys >= floor
            top = max(top, float(ys.max())) if ys.size else top
            ax.plot(
                volume,
                np.where(shown, ys, np.nan),
                color=color(i),
                linewidth=2.4 if c.name == winner else 1.5,
                zorder=2,
            )
        for k, (v, y, _) in enumerate(marks):
            ax.plot([v], [y], marker(k), color=INK, markersize=7, zorder=4, fillstyle="none")
        ax.axvline(forecast, color=MUTED, linestyle=":", linewidth=1.2)
        ax.set_xlim(volume[0], volume[-1])
        _log_axis(ax, "x", lambda v: f"{v:,.0f}")
        if floor is not None and top > floor:
            # The SVG keeps no clip path: the limits must hold every point drawn.
            ax.set_ylim(floor, top * 1.3)
            _log_axis(ax, "y", usd_tick)
        ax.set_xlabel("requests per month (log scale)")
        ax.set_ylabel(f"USD per month over {plural(horizon, 'month')}")
        _legend_below(fig, handles, labels)
        return _svg(fig)


#: The cost axis of :func:`cumulative_cost` starts at a cent a month at the lowest ...
VISIBLE_USD = 0.01
#: ... or, when the dearest line stays under ten dollars, this many decades below it.
COST_DECADES = 3


def cost_floor(monthly: Any) -> float | None:
    """Where the break-even chart's cost axis starts, for the monthly costs ``monthly``
    (every line at every volume): a cent a month (:data:`VISIBLE_USD`), or
    :data:`COST_DECADES` decades under the dearest cost when that is under ten dollars,
    and never under the cheapest positive cost. None when no cost is positive (the
    axis then stays linear)."""
    values = np.asarray(monthly, dtype=float)
    positive = values[np.isfinite(values) & (values > 0)]
    if not positive.size:
        return None
    top = float(positive.max())
    floor: float = max(float(positive.min()), min(VISIBLE_USD, top / 10**COST_DECADES))
    return floor


def _pair(a: str, b: str) -> tuple[str, str]:
    return (a, b) if a <= b else (b, a)


def learning_curves(
    curves: LearningCurves, order: Sequence[str], winner: str, metric: str, percent: bool
) -> str:
    """Test quality against training examples (log axis): points, fits and crossings.

    Each candidate's draws are a mean with a min–max bar per size and the fitted inverse
    power law through them (:func:`adaptlab.decide.curves.fit_power_law`), drawn on to
    twice the train split; candidates that do not learn from the train split are flat
    dashed lines. The crossings that involve the winner (found by at least
    :data:`adaptlab.decide.curves.SURE_CROSSING` of the refits) are marked with their
    bootstrap interval as a horizontal bar and named in the legend. ``order`` is the
    run's candidate order, which gives each its colour as in the other plots.
    """
    from matplotlib.lines import Line2D

    scale = 100.0 if percent else 1.0
    names = [n for n in order if n in {p.candidate for p in curves.points}]
    sizes = sorted({p.size for p in curves.points})
    right = max(sizes[-1], curves.n_train) * 2
    grid = np.geomspace(max(2, sizes[0]), right, 200)
    marks = [
        x
        for x in curves.crossings
        if x.n is not None
        and grid[0] <= x.n <= right  # drawn within the axes (the SVG keeps no clip path)
        and winner in (x.candidate, x.rival)
        and x.found >= SURE_CROSSING
    ]
    handles: list[Any] = []
    labels: list[str] = []
    for name in [*names, *curves.flat]:
        i = order.index(name) if name in order else len(order)
        tag = short(name) + (" (winner)" if name == winner else "")
        if name in curves.flat:
            handles.append(Line2D([], [], color=color(i), linestyle="--"))
            labels.append(f"{tag} (does not learn from train)")
        else:
            handles.append(Line2D([], [], marker=marker(i), color=color(i)))
            labels.append(tag)
    for k, x in enumerate(marks):
        handles.append(
            Line2D([], [], marker=MARKERS[(k + 3) % len(MARKERS)], color=INK, fillstyle="none")
        )
        interval = "" if x.low is None else f" ({x.low:,}–{x.high:,})"
        labels.append(f"{short(x.candidate)} passes {short(x.rival)} at ~{x.n:,}{interval}")
    height = 3.6 + 0.22 * _legend_rows(labels)
    with _figure(FIG_WIDTH, height) as (fig, (ax,)):
        for name in [*names, *curves.flat]:
            i = order.index(name) if name in order else len(order)
            if name in curves.flat:
                ax.axhline(scale * curves.flat[name], color=color(i), linestyle="--", linewidth=1.3)
                continue
            pts = [p for p in curves.points if p.candidate == name]
            xs = sorted({p.size for p in pts})
            vals = [[p.quality for p in pts if p.size == n] for n in xs]
            mean = np.array([scale * float(np.mean(v)) for v in vals])
            lo = mean - [scale * min(v) for v in vals]
            hi = [scale * max(v) for v in vals] - mean
            ax.errorbar(
                xs, mean, yerr=[lo, hi], fmt=marker(i), color=color(i), capsize=2, markersize=5
            )
            fit = curves.fit(name)
            if fit is not None:
                ax.plot(grid, scale * fit(grid), color=color(i), linewidth=1.4, alpha=0.8)
        for k, x in enumerate(marks):
            assert x.n is not None
            fit = curves.fit(x.candidate)
            y = scale * float(fit(x.n)) if fit is not None else float("nan")
            low, high = x.low or x.n, x.high or x.n
            ax.errorbar(
                [x.n],
                [y],
                xerr=[[x.n - min(low, x.n)], [max(high, x.n) - x.n]],
                fmt=MARKERS[(k + 3) % len(MARKERS)],
                color=INK,
                fillstyle="none",
                markersize=8,
                capsize=3,
                zorder=5,
            )
        ax.axvline(curves.n_train, color=MUTED, linestyle=":", linewidth=1)
        ax.set_xlim(grid[0] / 1.2, right)
        _log_axis(ax, "x", lambda v: f"{v:,.0f}")
        ax.set_xlabel("labelled training examples (log scale); dotted: the full train split")
        ax.set_ylabel(f"test {metric}" + (" (%)" if percent else ""))
        _legend_below(fig, handles, labels)
        return _svg(fig)


def live_accuracy(
    names: Sequence[str],
    estimates: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    confidence: float,
) -> str:
    """Accuracy on served requests with label feedback, one row per candidate (a shadow
    marked), with its percentile-bootstrap interval."""
    n = len(names)
    with _figure(FIG_WIDTH, 1.2 + 0.42 * n) as (fig, axes):
        ax = axes[0]
        ys = list(range(n))[::-1]
        for i, (y, est, lo, hi) in enumerate(zip(ys, estimates, lows, highs, strict=True)):
            ax.errorbar(
                100 * est,
                y,
                xerr=[[100 * max(0.0, est - lo)], [100 * max(0.0, hi - est)]],
                fmt=marker(i),
                color=color(i),
                elinewidth=1.4,
                capsize=3,
                markersize=7,
            )
        ax.set_yticks(ys)
        ax.set_yticklabels([short(x, 40) for x in names])
        ax.set_xlabel(f"accuracy on served requests with feedback (%), {confidence:.0%} CI")
        ax.margins(y=0.3)
        return _svg(fig)
