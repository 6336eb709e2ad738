"""Render a :class:`RunSummary` as one self-contained HTML file.

All formatting happens here, so the template only places strings and the tests can
format a number exactly as the page does. User text (names, labels, reasons) reaches
the page only through Jinja2's autoescaping; the SVGs are marked safe because
matplotlib escapes the text it writes into them.
"""

from __future__ import annotations

import math
import os
import tempfile
from datetime import datetime
from pathlib import Path
from typing import Any

from adaptlab.config import ProjectConfig
from adaptlab.evaluation.summary import BreakEven, CandidateSummary, RunSummary, pct
from adaptlab.report import plots
from adaptlab.report.plots import usd

TEMPLATE = "report.html.j2"

KINDS = {
    "significant": (
        "significant",
        "Its accuracy lead over every other candidate is statistically significant.",
    ),
    "cheapest-within-noise": (
        "cheapest within noise",
        "No candidate is significantly more accurate than all the others, so the cheapest "
        "one that is statistically tied with the best wins.",
    ),
    "only-candidate": (
        "only candidate",
        "The run holds a single candidate, so nothing was compared.",
    ),
}


def num(x: float, digits: int = 3) -> str:
    """Three significant digits without an exponent; thousands separators above 100."""
    if not math.isfinite(x):
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return f"{x:.{digits}g}"


def p_value(p: float) -> str:
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M %Z").strip()
    except ValueError:
        return iso


def _row(c: CandidateSummary, s: RunSummary, alpha: float) -> dict[str, Any]:
    ci, f1 = c.accuracy_ci, c.macro_f1_ci
    test = c.vs_best
    return {
        "name": c.name,
        "strategy": c.strategy,
        "params": ", ".join(f"{k}={v}" for k, v in sorted(c.params.items())),
        "accuracy": pct(c.accuracy),
        "accuracy_ci": f"{pct(ci.low)}–{pct(ci.high)}",
        "macro_f1": pct(c.metrics.macro_f1),
        "macro_f1_ci": f"{pct(f1.low)}–{pct(f1.high)}",
        "p": "best" if test is None else p_value(test.p_value),
        "significant": test is not None and test.p_value < alpha,
        "p50": num(c.latency_p50_ms),
        "p95": num(c.latency_p95_ms),
        "throughput": num(c.throughput_per_s),
        "fit": num(c.fit_seconds),
        "per_1k": usd(c.cost_per_1k_usd),
        "setup": usd(c.setup_cost_usd),
        "monthly": usd(c.monthly_cost_usd),
        "is_best": c.name == s.best,
        "is_winner": c.name == s.recommendation.winner,
        "reused": c.reused,
    }


def _fit_note(c: CandidateSummary) -> str:
    """The overfitting read-out: train vs validation loss at the best epoch."""
    best = c.info.get("best_epoch")
    if not isinstance(best, int | float) or best <= 0:
        return "No best epoch was recorded for this candidate."
    epoch = [(sp, m, v) for _, e, sp, m, v in c.curves if best - 1 < e <= best]
    train = [v for sp, m, v in epoch if sp == "train" and m == "loss"]
    val = {e: v for _, e, sp, m, v in c.curves if sp == "val" and m == "loss"}
    run = c.info.get("epochs_run")
    text = f"Best epoch {best:g}" + (f" of {run}" if run else "")
    if c.info.get("stopped_early"):
        text += " (stopped early)"
    if isinstance(c.info.get("best_val_accuracy"), float):
        text += f", validation accuracy {pct(c.info['best_val_accuracy'])}"
    if not train or best not in val:
        return text + "."
    t, v = sum(train) / len(train), val[best]
    text += (
        f". Over that epoch the mean train loss is {num(t)}, and the validation loss after it "
        f"{num(v)}: a gap of {num(v - t)}"
    )
    if t > 0:
        text += f" (validation loss {v / t:.1f}× train loss)"
    later = [val[e] for e in sorted(val) if e > best]
    if later:
        trend = "rose" if later[-1] > v else "did not rise"
        text += f". After it, validation loss {trend} (last: {num(later[-1])})"
    return text + "."


def _break_even_row(b: BreakEven, forecast: int) -> dict[str, str]:
    if b.requests is None or b.monthly_volume is None:
        text = at_forecast = "never: not cheaper per request"
    else:
        text = (
            f"pays back after {b.requests:,.0f} requests = {b.monthly_volume:,.0f}/month "
            f"over {b.horizon_months} months"
        )
        months = b.requests / forecast if forecast else math.inf
        at_forecast = (
            f"pays back in {months:.1f} months"
            if months <= b.horizon_months
            else f"does not pay back within {b.horizon_months} months"
        )
    return {
        "candidate": b.candidate,
        "baseline": b.baseline,
        "text": text,
        "at_forecast": at_forecast,
    }


def _context(s: RunSummary) -> dict[str, Any]:
    from markupsafe import Markup

    cfg = ProjectConfig.model_validate(s.config)
    winner = s.candidate(s.recommendation.winner)
    forecast, horizon = cfg.cost.monthly_requests, cfg.cost.horizon_months

    def svg(name: str, text: str) -> Markup:
        return Markup(plots.scope_ids(text, f"{name}-"))

    kind_label, kind_text = KINDS.get(s.recommendation.kind, (s.recommendation.kind, ""))
    curves = [
        {"name": c.name, "svg": svg(f"curves{i}", plots.training_curves(c)), "note": _fit_note(c)}
        for i, c in enumerate(s.candidates)
        if c.curves
    ]
    model = s.model
    return {
        "s": s,
        "when": _when(s.created_at),
        "model": model.get("name", "?"),
        "model_detail": ", ".join(
            str(model[k]) for k in ("backend", "device", "precision") if model.get(k)
        ),
        "split": [(k, f"{v:,}") for k, v in s.split.items()],
        "kind_label": kind_label,
        "kind_text": kind_text,
        "rows": [_row(c, s, cfg.evaluation.alpha) for c in s.candidates],
        "cfg": cfg,
        "winner": winner,
        "per_class": [
            {
                "label": label,
                "precision": pct(m.precision),
                "recall": pct(m.recall),
                "f1": pct(m.f1),
                "support": m.support,
            }
            for label, m in winner.metrics.per_class.items()
        ],
        "quality_svg": svg("quality", plots.quality_vs_cost(s.candidates, winner.name)),
        "confusion_svg": svg("confusion", plots.confusion_matrix(winner)),
        "f1_svg": svg("f1", plots.per_class_f1(s.candidates, s.labels, winner.name)),
        "labels": s.labels,
        "many_labels": plots.MANY_LABELS,
        "curves": curves,
        "break_even": [_break_even_row(b, forecast) for b in s.break_even],
        "cost_svg": svg(
            "cost",
            plots.cumulative_cost(s.candidates, s.break_even, forecast, horizon, winner.name),
        ),
        "forecast": f"{forecast:,}",
        "horizon": horizon,
        "n_rows": f"{sum(c.metrics.n for c in s.candidates):,}",
        "n_test": f"{winner.metrics.n:,}",
    }


def render_report(summary: RunSummary) -> str:
    """The report as one HTML string: inline CSS and SVG, no external references."""
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    return env.get_template(TEMPLATE).render(**_context(summary))


def write_report(summary: RunSummary, path: str | Path) -> Path:
    """Render and write atomically: a reader never sees a half-written report."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    html = render_report(summary)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the report from whoever it is shared with
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
