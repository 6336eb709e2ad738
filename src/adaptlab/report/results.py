"""A run's results as plain records for machines: one JSON document, or CSV rows.

Everything comes from a :class:`~adaptlab.engine.summary.ProjectSummary` (the run's
measurements and the verdict made on them), so the numbers are those
``adaptlab report`` shows, unrounded: fractions (0.912, not
"91.2%"), seconds, milliseconds and USD as floats. A figure that does not apply to
a candidate, or could not be measured (no latencies, no val answers), is None
(``null`` in JSON, an empty cell in CSV), never NaN: strict JSON parsers refuse NaN.
Every candidate record has the same keys, in the same order; which task metrics
appear depends on the task (see :func:`candidate_record`).

(Exporting a trained model is a different thing and does not live here.)
"""

from __future__ import annotations

import csv
import io
import json
import math
from typing import Any

from adaptlab.engine.summary import ProjectSummary
from adaptlab.evaluation.batch_notes import batch_record
from adaptlab.evaluation.stats import Interval
from adaptlab.evaluation.summary import CandidateSummary

#: Bumped when a key changes meaning or goes away; new keys do not bump it.
FORMAT_VERSION = 1

#: Run-level fields repeated on every CSV row, so rows of several runs can be stacked.
CSV_RUN_FIELDS = ("run_id", "metric", "selected_on")


def _num(x: Any) -> float | None:
    """A finite Python float, or None (NaN and infinities become None)."""
    if x is None:
        return None
    value = float(x)
    return value if math.isfinite(value) else None


def _interval(prefix: str, ci: Interval | None) -> dict[str, float | None]:
    return {
        prefix: _num(ci.estimate) if ci else None,
        f"{prefix}_ci_low": _num(ci.low) if ci else None,
        f"{prefix}_ci_high": _num(ci.high) if ci else None,
    }


def _task_metrics(c: CandidateSummary) -> dict[str, Any]:
    """The task's figures beside the primary metric (fractions of 1; counts as ints)."""
    out: dict[str, Any] = {}
    if c.metrics is not None:  # classification
        out.update(_interval("macro_f1", c.macro_f1_ci))
        if c.macro_f1_ci is None:
            out["macro_f1"] = _num(c.metrics.macro_f1)
    if c.extraction is not None:
        out["field_precision"] = _num(c.extraction.precision)
        out["field_recall"] = _num(c.extraction.recall)
    if c.generation is not None:
        g = c.generation
        out["token_f1"] = _num(g.token_f1)
        out["exact_match"] = _num(g.exact_match)
        if c.metric == "judge":
            out["judge_unparsed"] = g.judge_unparsed
        r = g.retrieval
        out["citation_rate"] = _num(r.citation_rate) if r else None
        out["groundedness"] = _num(r.groundedness) if r else None
        out["docs_recall"] = _num(r.recall) if r else None
    out["valid_rate"] = _num(c.valid_rate)
    out["unparsed"] = c.unparsed
    return out


def candidate_record(summary: ProjectSummary, c: CandidateSummary) -> dict[str, Any]:
    """One candidate's figures as a flat dict of JSON values, in export order.

    ``test*`` is the primary metric (``summary.metric``) on the test split with its
    bootstrap interval; ``selection*`` the same on the split the winner was chosen on
    (``summary.selected_on``: "val", or "test" when some result holds no val answers).
    Task figures follow: ``macro_f1`` (+ interval) for classification,
    ``field_precision``/``field_recall`` for extraction, ``token_f1``/``exact_match``
    (and citation figures, None for a closed-book candidate) for generation;
    ``valid_rate`` (None: not generative) and ``unparsed`` for all. Against the winner,
    on test: ``gap_to_winner`` (winner minus this candidate), ``paired_test`` (its
    name), ``p_vs_winner`` and ``p_vs_winner_holm`` (Holm-adjusted over the
    candidates); all None on the winner's own record. Costs are USD; ``monthly_usd``
    is at ``monthly_requests`` of the document; ``usage_estimated`` is True when the
    token counts (and the costs from them) rest on estimated or doubted usage. ``params``
    is a dict. ``tuned`` and the ``tuning_*`` figures say what a candidate's own search
    of its settings bought (:func:`_tuning_record`).
    """
    paired = summary.verdict.test_tests.get(c.name)
    test = None if paired is None else paired.test
    return {
        "name": c.name,
        "strategy": c.strategy,
        "route": c.route,
        "llm": c.llm,
        "params": c.params,
        "winner": c.name == summary.verdict.winner,
        "reused": c.reused,
        "n_test": c.n,
        "n_selection": c.selection_n,
        **_interval("test", c.quality_ci),
        **_interval("selection", c.selection_ci),
        **_task_metrics(c),
        "gap_to_winner": _num(test.diff) if test else None,
        "paired_test": test.name if test else None,
        "p_vs_winner": _num(test.p_value) if test else None,
        "p_vs_winner_holm": _num(paired.p_holm) if paired else None,
        "latency_p50_ms": _num(c.latency_p50_ms),
        "latency_p95_ms": _num(c.latency_p95_ms),
        "throughput_per_s": _num(c.throughput_per_s),
        "fit_seconds": _num(c.fit_seconds),
        "cost_per_1k_usd": _num(c.cost_per_1k_usd),
        "setup_usd": _num(c.setup_cost_usd),
        "monthly_usd": _num(c.monthly_cost_usd),
        "input_tokens_per_request": _num(c.input_tokens_per_request),
        "output_tokens_per_request": _num(c.output_tokens_per_request),
        # True: the token counts and the costs from them rest on estimated or doubted usage
        "usage_estimated": c.usage_estimated,
        # Evaluated through a batch API: its lines by outcome and the cost at the price paid
        **batch_record(summary.cfg, c),
        **_tuning_record(c),
    }


def _tuning_record(c: CandidateSummary) -> dict[str, Any]:
    """What a tuned candidate's search bought (:mod:`adaptlab.evaluation.tuning`): the
    default's and the tuned setting's validation figures, the interval of the gain and
    its paired test's p, the drop from validation to test, and what it spent (minutes,
    calls, USD); every value None on an untuned candidate."""
    t = c.tuning
    return {
        "tuned": t is not None,
        "tuning_default_val": _num(t.default.estimate) if t else None,
        "tuning_tuned_val": _num(t.tuned.estimate) if t else None,
        "tuning_gain_ci_low": _num(t.gain.low) if t else None,
        "tuning_gain_ci_high": _num(t.gain.high) if t else None,
        "tuning_p": _num(t.test.p_value) if t and t.test else None,
        "tuning_val_test_drop": _num(t.drop) if t else None,
        "tuning_trials": t.trials if t else None,
        "tuning_minutes": _num(t.minutes) if t else None,
        "tuning_calls": t.calls if t else None,
        "tuning_usd": _num(t.usd) if t else None,
    }


def candidate_records(summary: ProjectSummary) -> list[dict[str, Any]]:
    """:func:`candidate_record` of every candidate, in run order, all with the same keys
    (a key only some candidates have is None on the others)."""
    records = [candidate_record(summary, c) for c in summary.candidates]
    keys = list(dict.fromkeys(k for r in records for k in r))
    return [{k: r.get(k) for k in keys} for r in records]


def results_document(summary: ProjectSummary) -> dict[str, Any]:
    """The whole run as one JSON-ready dict: what was run, the verdict, every candidate.

    Keys: ``format``/``version``, ``project``, ``run_id``, ``created_at`` (ISO 8601,
    UTC), ``task``, ``metric`` (key) and ``metric_name``, ``confidence`` of the
    intervals, ``selected_on``, ``split`` (examples per split), ``monthly_requests``,
    ``recommendation`` {``winner``, ``kind``}, ``best_on_test``, ``not_run``
    {candidate: why} and ``candidates`` (:func:`candidate_records`).
    """
    v = summary.verdict
    return {
        "format": "adaptlab-results",
        "version": FORMAT_VERSION,
        "project": summary.project,
        "run_id": summary.run_id,
        "created_at": summary.created_at,
        "task": summary.task,
        "metric": summary.metric,
        "metric_name": summary.metric_info.name,
        "confidence": _num(summary.confidence),
        "selected_on": summary.selected_on,
        "split": dict(summary.split),
        "monthly_requests": summary.config.get("profile", {}).get("monthly_requests"),
        "recommendation": {"winner": v.winner, "kind": v.kind},
        "best_on_test": v.best_on_test,
        "not_run": dict(summary.not_run),
        "candidates": candidate_records(summary),
    }


def results_json(summary: ProjectSummary) -> str:
    """:func:`results_document` as indented JSON text ending in a newline."""
    return json.dumps(results_document(summary), indent=2, ensure_ascii=False) + "\n"


def _cell(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"  # as in the JSON, not Python's True
    if isinstance(value, dict | list):
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    return value  # None is written as an empty cell; floats as repr, which round-trips


def results_csv(summary: ProjectSummary) -> str:
    """One CSV row per candidate under a header: :data:`CSV_RUN_FIELDS`, then the keys
    of :func:`candidate_records`. ``params`` is a JSON object in its cell, booleans are
    ``true``/``false``, a missing figure an empty cell; lines end in CRLF (RFC 4180)."""
    records = candidate_records(summary)
    run = {"run_id": summary.run_id, "metric": summary.metric, "selected_on": summary.selected_on}
    fields = [*CSV_RUN_FIELDS, *(records[0] if records else {})]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields)
    writer.writeheader()
    for r in records:
        writer.writerow({k: _cell(v) for k, v in {**run, **r}.items()})
    return buf.getvalue()
