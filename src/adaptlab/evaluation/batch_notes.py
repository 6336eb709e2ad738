"""How a candidate's answers were fetched through a batch API, and what they cost.

Read from what the run stored with the result: ``info["batch"]`` (the batches, each
line's outcome, what went one by one; :func:`adaptlab.engine.batching.prefetch`) and
``info["llm"]["paid"]`` (the answers used by the tier they were billed in, with their
tokens; :class:`adaptlab.llm.batch.PaidTally`). The cost is recomputed from those tokens
at the shipped table's prices (or the project's override): batch answers at the batch
tier, the rest at the standard price (:func:`adaptlab.llm.batch.evaluation_cost_usd`).
"""

from __future__ import annotations

from typing import Any

from adaptlab.config import ProjectConfig
from adaptlab.core.format import and_list, plural, usd
from adaptlab.evaluation.llm_costs import answer_price
from adaptlab.evaluation.summary import CandidateSummary, RunSummary
from adaptlab.llm.batch import PaidTally, evaluation_cost_usd
from adaptlab.llm.prices import batch_price, batch_terms

__all__ = ["batch_note", "batch_notes", "batch_record"]

_OUTCOMES = ("succeeded", "expired", "errored", "canceled", "missing")


def _batch_info(c: CandidateSummary) -> dict[str, Any] | None:
    info = c.info.get("batch")
    return info if isinstance(info, dict) else None


def _paid(c: CandidateSummary) -> PaidTally | None:
    llm = c.info.get("llm")
    return PaidTally.from_json(llm.get("paid")) if isinstance(llm, dict) else None


def _cost(cfg: ProjectConfig, c: CandidateSummary, tally: PaidTally) -> float | None:
    cand = next((k for k in cfg.candidates if k.name == c.name), None)
    if cand is None or cand.llm is None or cand.llm not in cfg.llms:
        return None
    llm = cfg.llms[cand.llm]
    price, _ = answer_price(llm, c.info)
    if price is None:
        return None
    terms = batch_terms(llm.backend)
    return evaluation_cost_usd(tally, price, batch_price(price, terms) if terms else None)


def batch_record(cfg: ProjectConfig, c: CandidateSummary) -> dict[str, Any]:
    """Flat fields for ``export results`` of a candidate evaluated through a batch API
    (empty for any other): ``batch_lines_<outcome>`` (sent, succeeded, expired, errored,
    canceled, missing), ``batch_retried_one_by_one``, ``batch_latency_one_by_one``,
    ``answers_at_batch_price``, ``answers_at_standard_price`` and
    ``evaluation_cost_usd`` (None without a price)."""
    info = _batch_info(c)
    if info is None:
        return {}
    lines = info.get("lines") if isinstance(info.get("lines"), dict) else {}
    assert isinstance(lines, dict)
    out: dict[str, Any] = {"batch_lines_sent": lines.get("sent", 0)}
    out.update({f"batch_lines_{k}": lines.get(k, 0) for k in _OUTCOMES})
    out["batch_retried_one_by_one"] = info.get("retried_one_by_one", 0)
    out["batch_latency_one_by_one"] = info.get("latency_one_by_one", 0)
    tally = _paid(c)
    if tally is not None:
        out["answers_at_batch_price"] = tally.batch.answers
        out["answers_at_standard_price"] = tally.standard.answers
        out["evaluation_cost_usd"] = _cost(cfg, c, tally)
    return out


def batch_note(cfg: ProjectConfig, c: CandidateSummary) -> str | None:
    """One sentence on how ``c``'s requests went (None when no batch was involved):
    lines sent in which batches, how each ended, what went one by one and why, and the
    evaluation's cost at the price actually paid."""
    info = _batch_info(c)
    if info is None:
        return None
    lines = info.get("lines") if isinstance(info.get("lines"), dict) else {}
    assert isinstance(lines, dict)
    batches = [b for b in info.get("batches") or [] if isinstance(b, dict)]
    provider = info.get("provider", "provider")
    if batches:
        ids = and_list([f"{b.get('id')} ({b.get('status')})" for b in batches])
        text = (
            f"{c.name}: {plural(int(lines.get('sent', 0)), 'request')} sent in "
            f"{plural(len(batches), f'{provider} batch', f'{provider} batches')} {ids}"
        )
        ended = [f"{lines[k]} {k}" for k in _OUTCOMES if lines.get(k)]
        if ended:
            text += ": " + ", ".join(ended)
    else:
        text = f"{c.name}: no batch needed (every answer was in the response cache)"
    retried = int(info.get("retried_one_by_one", 0) or 0)
    if retried:
        text += (
            f"; {plural(retried, 'line')} without an answer asked once more one by one at "
            "the standard price (evaluation.batch_retry: sync)"
        )
    latency = int(info.get("latency_one_by_one", 0) or 0)
    if latency:
        text += f"; {latency} test requests sent one by one to measure latency"
    tally = _paid(c)
    cost = _cost(cfg, c, tally) if tally is not None else None
    if tally is not None and cost is not None:
        text += (
            f"; its answers cost {usd(cost)} at the price paid ({tally.batch.answers} at the "
            f"batch price, {tally.standard.answers} at the standard price)"
        )
    return text + "."


def batch_notes(summary: RunSummary) -> list[str]:
    """:func:`batch_note` of every candidate that has one, in run order."""
    return [n for c in summary.candidates if (n := batch_note(summary.cfg, c)) is not None]
