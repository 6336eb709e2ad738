"""Render a :class:`~adaptlab.engine.summary.ProjectSummary` as one self-contained HTML file.

All formatting happens here, so the template only places strings and the tests can
format a number exactly as the page does. User text (names, labels, reasons) reaches
the page only through Jinja2's autoescaping; the SVGs are marked safe because
matplotlib escapes the text it writes into them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adaptlab.config import ProjectConfig
from adaptlab.core.files import write_text_atomically
from adaptlab.core.format import dollars, ms, number, p_value, pct, plural, usd
from adaptlab.decide.explain import selection_line
from adaptlab.decide.verdict import BreakEven
from adaptlab.engine.summary import ProjectSummary
from adaptlab.evaluation.batch_notes import batch_notes
from adaptlab.evaluation.scoring import ScoredAnswer, metric_stat
from adaptlab.evaluation.summary import CandidateSummary, answer_notes
from adaptlab.rag.context import check_citations, passages_from_json
from adaptlab.report import plots
from adaptlab.report.notes import (
    SOURCES,
    better_than_winner,
    loaded_timing_line,
    p_text,
    prompt_language_text,
    selection_evidence,
    selection_source,
    standing_on_test,
)
from adaptlab.store.files import os_error

if TYPE_CHECKING:
    import numpy as np

    from adaptlab.evaluation.served import LiveTraffic

TEMPLATE = "report.html.j2"

# The explanations name the run's primary metric: str.format(metric="field F1").
KINDS = {
    "significant": (
        "significant",
        "Its {metric} lead over every other candidate is statistically significant.",
    ),
    "cheapest-within-noise": (
        "cheapest within noise",
        "No candidate is significantly better in {metric} than all the others, so the "
        "cheapest one that is statistically tied with the best wins.",
    ),
    "best-estimate": (
        "best estimate",
        "Not every lead in {metric} is significant, but no rival is within half a standard "
        "error of the best, so the highest estimate wins.",
    ),
    "lowest-expected-cost": (
        "lowest expected cost",
        "Among the candidates within noise of the best in {metric}, the one with the lowest "
        "expected total over the horizon wins: wrong answers at profile.error_cost_usd, "
        "running, hosting and setup.",
    ),
    "faster-within-noise": (
        "faster within noise",
        "No candidate is significantly better in {metric} than all the others, their costs "
        "count as equal, and the one with a p95 latency lower by a factor of 2 or more wins.",
    ),
    "quicker-to-train-within-noise": (
        "quicker to train within noise",
        "No candidate is significantly better in {metric} than all the others, their costs "
        "and latencies count as equal, and the one at least twice as fast to train wins.",
    ),
    "best-of-equal-cost": (
        "best of equal cost",
        "No candidate is significantly better in {metric} than all the others, and their "
        "costs differ by no amount that matters (cost.tie_tolerance, cost.negligible_usd), "
        "nor does anything else weighed, so the one with the best {metric} where "
        "candidates are chosen wins.",
    ),
    "only-candidate": (
        "only candidate",
        "The run holds a single candidate, so nothing was compared.",
    ),
}


def num(x: float, digits: int = 3) -> str:
    """Three significant digits without an exponent; thousands separators above 100
    (:func:`adaptlab.core.format.number`); "—" for a value that is not finite."""
    return number(x, digits) if math.isfinite(x) else "—"


def _when(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).strftime("%Y-%m-%d %H:%M %Z").strip()
    except ValueError:
        return iso


def _extra_columns(task: str, confidence: float) -> list[tuple[str, str]]:
    """(title, second line) of the task's columns after the primary metric."""
    if task == "classification":
        return [("Macro-F1", f"{confidence:.0%} CI")]
    if task == "extraction":
        return [("Precision", "recall"), ("Valid", "answers")]
    return [("Token F1", "exact match"), ("Valid", "answers"), ("Cited", "docs recall")]


def _extra_cells(c: CandidateSummary) -> list[tuple[str, str]]:
    valid = pct(c.valid_rate) if c.valid_rate is not None else "—"
    if c.metrics is not None:
        f1 = c.macro_f1_ci
        return [(pct(c.metrics.macro_f1), f"{pct(f1.low)}–{pct(f1.high)}" if f1 else "")]
    if c.extraction is not None:
        e = c.extraction
        return [(pct(e.precision), pct(e.recall)), (valid, f"{c.n - c.unparsed} of {c.n}")]
    g = c.generation
    assert g is not None
    r = g.retrieval
    cited = ("—", "closed-book")
    if r is not None:
        recall = "" if r.recall is None else f"recall@{r.k} {pct(r.recall)}"
        cited = (f"{pct(r.citation_rate)} ({r.cited}/{r.citable})", recall)
    return [(pct(g.token_f1), pct(g.exact_match)), (valid, f"{c.n - c.unparsed} of {c.n}"), cited]


def _row(c: CandidateSummary, s: ProjectSummary) -> dict[str, Any]:
    ci, fmt = c.quality_ci, c.metric_info.fmt
    v = s.verdict
    paired = v.test_tests.get(c.name)  # the winner against c on test; None for the winner
    standing = standing_on_test(v, c.name)
    resamples = int(s.config.get("evaluation", {}).get("bootstrap_resamples", 1000))
    return {
        "name": c.name,
        "strategy": c.strategy,
        "params": ", ".join(f"{k}={v}" for k, v in sorted(c.params.items())),
        "accuracy": fmt(c.quality),
        "accuracy_ci": f"{fmt(ci.low)}–{fmt(ci.high)}",
        "extra": _extra_cells(c),
        "selection": fmt(c.selection_ci.estimate),
        "p": "winner" if paired is None else p_text(paired, resamples),
        # red: the winner is significantly better; "better": this one is, on test
        "p_class": {"worse": "sig", "better": "sig-better"}.get(standing, ""),
        "p50": num(c.latency_p50_ms),
        "p95": num(c.latency_p95_ms),
        "throughput": num(c.throughput_per_s),
        "fit": num(c.fit_seconds),
        "per_1k": dollars(c.cost_per_1k_usd) + (" ~" if c.usage_estimated else ""),
        "setup": dollars(c.setup_cost_usd),
        "monthly": dollars(c.monthly_cost_usd),
        "is_best": c.name == (v.best_on_test or v.winner),
        "is_winner": c.name == v.winner,
        "reused": c.reused,
    }


def _fit_note(c: CandidateSummary) -> str:
    """The overfitting read-out: train vs validation loss at the best epoch (or step)."""
    if c.overfit is not None:
        text = "; ".join(c.overfit.lines())
        return text[:1].upper() + text[1:] + "."
    best = c.info.get("best_epoch")
    if not isinstance(best, int | float) or best <= 0:
        return "No best epoch was recorded for this candidate."
    epoch = [(sp, m, v) for _, e, sp, m, v in c.curves if best - 1 < e <= best]
    train = [v for sp, m, v in epoch if sp == "train" and m == "loss"]
    val = {e: v for _, e, sp, m, v in c.curves if sp == "val" and m == "loss"}
    run = c.info.get("epochs_run")
    text = f"Best epoch {number(best)}" + (f" of {run}" if run else "")
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
            f"pays back after {plural(round(b.requests), 'request')} = "
            f"{b.monthly_volume:,.0f}/month over {plural(b.horizon_months, 'month')}"
        )
        months = b.requests / forecast if forecast else math.inf
        at_forecast = (
            f"pays back in {months:.1f} months"
            if months <= b.horizon_months
            else f"does not pay back within {plural(b.horizon_months, 'month')}"
        )
    return {
        "candidate": b.candidate,
        "baseline": b.baseline,
        "text": text,
        "at_forecast": at_forecast,
    }


_PRICE_KINDS = {
    "table": "shipped price table",
    "override": "your prices (llms.*.prices)",
    "self-hosted": "self-hosted: compute cost only",
    "unknown": "no price known",
}


def _llm_rows(s: ProjectSummary) -> list[dict[str, str]]:
    """Tokens, cost, parsing and consistency of the candidates that prompt a model."""
    rows = []
    for c in s.candidates:
        if c.llm is None and c.agreement is None:
            continue
        llm = c.info.get("llm") if isinstance(c.info.get("llm"), dict) else {}
        assert isinstance(llm, dict)
        tokens = "–"
        if c.input_tokens_per_request is not None and c.output_tokens_per_request is not None:
            tokens = f"{c.input_tokens_per_request:,.0f} / {c.output_tokens_per_request:,.0f}"
            tokens += " ~" if c.usage_estimated else ""
        statuses = ", ".join(f"{k} {v}" for k, v in sorted(c.statuses.items())) or "–"
        rows.append(
            {
                "name": c.name,
                "model": c.llm or "local",
                "template": f"{c.info.get('template', '')} @ {c.info.get('template_version', '')}"
                if c.info.get("template_version")
                else "–",
                "tokens": tokens,
                "api_per_1k": "–"
                if c.api_cost_per_1k_usd is None
                else dollars(c.api_cost_per_1k_usd) + (" ~" if c.usage_estimated else ""),
                "price": _PRICE_KINDS.get(c.price_kind or "", c.price_kind or "–"),
                "statuses": statuses,
                "answer": str(c.info.get("answer") or "–"),
                "agreement": "–"
                if c.agreement is None
                else f"{pct(c.agreement)} (n = {c.consistency_samples})",
                "validity": "–" if c.format_validity is None else pct(c.format_validity),
                "retries": str(llm.get("retries", "–")),
                "cache_hits": f"{llm['cache_hits']} of {llm['requests']}" if llm else "–",
                "cut_off": str(c.cut_off),
            }
        )
    return rows


def _llm_notes(s: ProjectSummary) -> list[str]:
    """Refused and cut-off answers explained with their fix; estimated token counts."""
    notes = [n for c in s.candidates for n in answer_notes(c)] + batch_notes(s)
    if any(c.usage_estimated for c in s.candidates):
        notes.append(
            "~ marks token counts, and the costs computed from them, that were estimated "
            "or repaired: the provider reported none, or figures that cannot be true (more "
            "cached tokens than prompt tokens, negative counts, none for a text that was "
            "sent or received, more than any context window)."
        )
    return notes


def _context(s: ProjectSummary) -> dict[str, Any]:
    from markupsafe import Markup

    cfg = ProjectConfig.model_validate(s.config)
    v = s.verdict
    winner = s.candidate(v.winner)
    forecast, horizon = cfg.profile.monthly_requests, cfg.profile.horizon_months

    def svg(name: str, text: str) -> Markup:
        return Markup(plots.scope_ids(text, f"{name}-"))

    selection_split = _selection_label(s)
    kind_label, kind_text = KINDS.get(v.kind, (v.kind, ""))
    kind_text = kind_text.format(metric=s.metric_info.name)
    curves = [
        {"name": c.name, "svg": svg(f"curves{i}", plots.training_curves(c)), "note": _fit_note(c)}
        for i, c in enumerate(s.candidates)
        if c.curves
    ]
    model = s.model
    disagree, disagree_total = disagreements(s)
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
        "rows": [_row(c, s) for c in s.candidates],
        "cfg": cfg,
        "winner": winner,
        "metric": s.metric_info,
        "metric_title": s.metric_info.name[0].upper() + s.metric_info.name[1:],
        "test_name": "McNemar p" if s.metric_info.binary else "Bootstrap p",
        "confidence": f"{cfg.evaluation.confidence:.0%}",
        "extra_columns": _extra_columns(s.task, cfg.evaluation.confidence),
        "quality_svg": svg(
            "quality", plots.quality_vs_cost(s.candidates, winner.name, cfg.evaluation.confidence)
        ),
        "curves": curves,
        "tuning": [
            {"name": c.name, "lines": c.tuning.lines(s.metric_info.percent)}
            for c in s.candidates
            if c.tuning is not None
        ],
        "llm_rows": _llm_rows(s),
        "llm_notes": _llm_notes(s),
        "not_run": sorted(s.not_run.items()),
        "break_even": [_break_even_row(b, forecast) for b in v.break_evens],
        "verdict_floor": v.quality_floor,
        "cost_svg": svg(
            "cost",
            plots.cumulative_cost(
                s.candidates,
                v.break_evens,
                forecast,
                horizon,
                winner.name,
                cfg.profile.monthly_growth,
            ),
        ),
        "forecast": f"{forecast:,}",
        "horizon": horizon,
        "n_rows": plural(sum(c.n for c in s.candidates), "row"),
        "n_test": plural(winner.n, "test example"),
        "n_selection": selection_evidence(winner),
        "selection_split": selection_split,
        "selection": selection_line(v, s),
        "timing_warnings": [w] if (w := loaded_timing_line(s.candidates)) else [],
        "better_than_winner": better_than_winner(v, s),
        "alpha": f"{cfg.evaluation.alpha:g}",
        "comparisons": plural(len(s.candidates) - 1, "comparison"),
        "cpu_hour": dollars(cfg.cost.cpu_hour_usd),
        "judge": s.judge,
        "disagree": disagree,
        "disagree_total": disagree_total,
        "prompts": _prompts(s),
        "learning": _learning(s, svg),
        "svg": svg,
        "plural": plural,
        **_task_context(s, winner, svg),
    }


def _selection_label(s: ProjectSummary) -> str:
    """What candidates were chosen on, as the results table's column names it:
    "validation", "cross-validation", "test", or "cross-validation / validation" when
    some candidates were refitted over train+val and others not."""
    sources = {selection_source(c) for c in s.candidates}
    order = [k for k in SOURCES if k in sources] or [s.selected_on]
    return " / ".join(SOURCES.get(k, k) for k in order)


def _task_context(
    s: ProjectSummary, winner: CandidateSummary, svg: Callable[[str, str], Any]
) -> dict[str, Any]:
    """What only one task's sections show: classes, fields, or answers."""
    out: dict[str, Any] = {"task": s.task, "answers": [_answer_row(a) for a in winner.answers]}
    if s.task == "classification":
        assert winner.metrics is not None
        per_class = list(winner.metrics.per_class.items())
        if len(per_class) > PER_CLASS_ROWS:
            # The hardest classes first, the frequent ones first among equals: what to fix.
            per_class.sort(key=lambda item: (item[1].f1, -item[1].support))
            per_class = per_class[:PER_CLASS_ROWS]
        out.update(
            per_class=[
                {
                    "label": label,
                    "precision": pct(m.precision),
                    "recall": pct(m.recall),
                    "f1": pct(m.f1),
                    "support": m.support,
                }
                for label, m in per_class
            ],
            per_class_total=len(winner.metrics.per_class),
            confusion_shown=len(plots.confusion_labels(winner)),
            confusion_svg=svg("confusion", plots.confusion_matrix(winner)),
            f1_svg=svg("f1", plots.per_class_f1(s.candidates, s.labels, winner.name)),
            labels=s.labels,
            many_labels=plots.MANY_LABELS,
        )
    elif s.task == "extraction":
        assert winner.extraction is not None
        fields = sorted({f for c in s.candidates if c.extraction for f in c.extraction.per_field})
        out.update(
            per_field=[
                {
                    "field": name,
                    "precision": pct(m.precision),
                    "recall": pct(m.recall),
                    "f1": pct(m.f1),
                    "support": m.support,
                }
                for name, m in winner.extraction.per_field.items()
            ],
            fields_svg=svg("fields", plots.per_field_f1(s.candidates, fields, winner.name))
            if fields
            else "",
            n_fields=len(fields),
            many_labels=plots.MANY_LABELS,
        )
    return out


PER_CLASS_ROWS = 100  # more classes than this: the table lists the hardest ones

ANSWER_CHARS = 400  # longer inputs, references and answers are cut in the report


def _cut(text: str | None) -> str:
    if text is None:
        return ""
    return text if len(text) <= ANSWER_CHARS else text[: ANSWER_CHARS - 1] + "…"


def _answer_row(a: ScoredAnswer) -> dict[str, Any]:
    return {
        "id": a.example_id,
        "input": _cut(a.input),
        "reference": _cut(a.reference),
        "answer": _cut(a.answer),
        "missing": a.answer is None,
        "score": num(a.score),
        "status": a.status or "",
        "citations": _citations(a),
    }


def _citations(a: ScoredAnswer) -> list[dict[str, Any]]:
    """What a RAG answer cites: each id, whether it was shown, its document and text."""
    passages = passages_from_json(a.context_json)
    if passages is None:
        return []
    check = check_citations(a.raw or "", passages)
    by_n = {p.n: p for p in passages}
    out = []
    for n in check.cited:
        p = by_n.get(n)
        out.append(
            {
                "n": n,
                "valid": p is not None,
                "supported": p is not None and n not in check.unsupported,
                "doc": p.doc_id if p else "",
                "text": _cut(p.text)[:200] if p else "",
            }
        )
    if not out:
        out.append({"n": None, "valid": False, "supported": False, "doc": "", "text": ""})
    return out


DISAGREEMENT_ROWS = 100  # examples shown in the disagreement browser


def example_scores(c: CandidateSummary) -> np.ndarray:
    """Each test example's score in [0, 1]: correct (1/0), token F1, or field F1
    (:func:`adaptlab.evaluation.scoring.metric_stat` applied to each example's row)."""
    import numpy as np

    cols = np.asarray(c.columns, dtype=float)
    return metric_stat(c.metric)(cols if cols.ndim == 2 else cols[:, None])


def disagreements(
    s: ProjectSummary, limit: int = DISAGREEMENT_ROWS
) -> tuple[list[dict[str, Any]], int]:
    """Test examples the candidates answer differently, and how many there are in all.

    Different means different labels (classification) or scores at least 0.5 apart
    (extraction, generation: two free-text answers nearly always differ in wording).
    The examples the winner gets wrong come first, then those where the candidates
    split most evenly. Each row holds the input, the gold answer and every candidate's
    answer with its score and raw model text.
    """
    import numpy as np

    cands = [c for c in s.candidates if c.rows]
    if len(cands) < 2:
        return [], 0
    n = min(len(c.rows) for c in cands)
    scores = np.stack([example_scores(c)[:n] for c in cands])
    winner = next((i for i, c in enumerate(cands) if c.name == s.verdict.winner), 0)
    picked = []
    for i in range(n):
        if len({c.rows[i].example_id for c in cands}) > 1:
            continue  # different splits: nothing to line up
        col = scores[:, i]
        differ = float(col.max() - col.min()) >= 0.5
        if s.task == "classification":
            differ = differ or len({c.rows[i].predicted for c in cands}) > 1
        if differ:
            picked.append((float(col[winner]), -float(col.std()), i))
    picked.sort()
    out = []
    for _, _, i in picked[:limit]:
        first = cands[0].rows[i]
        answers: list[dict[str, Any]] = []
        for k, c in enumerate(cands):
            r = c.rows[i]
            raw = r.raw if r.raw is not None and r.raw.strip() != (r.predicted or "") else ""
            answers.append(
                {
                    "name": c.name,
                    "answer": _cut(r.predicted) if r.predicted is not None else "",
                    "status": r.status or "",
                    "score": num(float(scores[k, i])),
                    "right": bool(scores[k, i] >= 0.5),
                    "raw": _cut(raw),
                }
            )
        right = int((scores[:, i] >= 0.5).sum())
        out.append(
            {
                "id": first.example_id,
                "input": _cut(first.input),
                "gold": _cut(first.gold),
                "answers": answers,
                "summary": f"{right} of {len(answers)} right",
                "winner_right": answers[winner]["right"],
            }
        )
    return out, len(picked)


def _prompts(s: ProjectSummary) -> list[dict[str, Any]]:
    """The prompt template, version hash and one prompt as sent, per generative candidate."""
    out = []
    for c in s.candidates:
        version = c.info.get("template_version")
        if not version:
            continue
        messages = c.info.get("prompt_example")
        out.append(
            {
                "name": c.name,
                "template": str(c.info.get("template", "")),
                "version": str(version),
                "language": prompt_language_text(c.info),
                "messages": [
                    {"role": str(m.get("role", "")), "content": str(m.get("content", ""))}
                    for m in messages
                    if isinstance(m, dict)
                ]
                if isinstance(messages, list)
                else [],
            }
        )
    return out


def _learning(s: ProjectSummary, svg: Callable[[str, str], Any]) -> dict[str, Any] | None:
    lc = s.verdict.learning
    if lc is None:
        return None
    lines = [x.text() for x in lc.crossings]
    return {
        "svg": svg(
            "learning",
            plots.learning_curves(
                lc,
                [c.name for c in s.candidates],
                s.verdict.winner,
                s.metric_info.name,
                s.metric_info.percent,
            ),
        ),
        "lines": lines,
        "draws": max((p.draw for p in lc.points), default=0) + 1,
        "sizes": ", ".join(f"{n:,}" for n in sorted({p.size for p in lc.points})),
    }


def _live(live: LiveTraffic | None, svg: Callable[[str, str], Any]) -> dict[str, Any] | None:
    """Rows, plot and paired comparisons of the served candidates."""
    if live is None:
        return None

    def latency(x: float | None) -> str:
        return "–" if x is None else ms(x)

    rows = []
    for s in live.stats:
        acc = s.accuracy
        rows.append(
            {
                "name": s.candidate + (" (shadow)" if s.shadow else ""),
                "requests": f"{s.requests:,}",
                "labelled": f"{s.labelled:,}",
                "accuracy": "–"
                if acc is None
                else f"{pct(acc.estimate)} [{pct(acc.low)}–{pct(acc.high)}]",
                "p50": latency(s.latency_p50_ms),
                "p95": latency(s.latency_p95_ms),
                "errors": f"{s.errors:,}",
                "cost": "–" if s.cost_usd is None else usd(s.cost_usd),
            }
        )
    scored = [s for s in live.stats if s.accuracy is not None]
    plot = None
    if scored:
        plot = svg(
            "live",
            plots.live_accuracy(
                [s.candidate + (" (shadow)" if s.shadow else "") for s in scored],
                [s.accuracy.estimate for s in scored],  # type: ignore[union-attr]
                [s.accuracy.low for s in scored],  # type: ignore[union-attr]
                [s.accuracy.high for s in scored],  # type: ignore[union-attr]
                live.confidence,
            ),
        )
    lines = [
        f"{c.a} against its shadow {c.b} on the {plural(c.pairs, 'labelled request')} both "
        "answered: "
        f"{100 * c.test.diff:+.1f} points, {c.test.name} p = {p_value(c.test.p_value)} "
        f"({c.test.a_only} right only for {c.a}, {c.test.b_only} only for {c.b})"
        for c in live.comparisons
        if c.test is not None
    ]
    return {"rows": rows, "svg": plot, "lines": lines, "confidence": f"{live.confidence:.0%}"}


def render_report(summary: ProjectSummary, live: LiveTraffic | None = None) -> str:
    """The report as one HTML string: inline CSS and SVG, no external references.

    ``live``: the request log's statistics (``adaptlab serve``), shown as its own section.
    """
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(
        loader=FileSystemLoader(Path(__file__).parent),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    context = _context(summary)
    context["live"] = _live(live, context["svg"])
    return env.get_template(TEMPLATE).render(**context)


def write_report(
    summary: ProjectSummary, path: str | Path, live: LiveTraffic | None = None
) -> Path:
    """Render and write atomically: a reader never sees a half-written report.

    A folder that cannot be written (a file in its place, no rights, a full disk)
    raises an :class:`~adaptlab.core.errors.AdaptlabError` naming it and the fix.
    """
    target = Path(path)
    html = render_report(summary, live)
    try:
        write_text_atomically(target, html)
    except OSError as exc:
        raise os_error(exc, "the report") from exc
    return target
