"""What a generative candidate's answers and training cost, recomputed from stored rows.

:func:`generative_figures` gives the per-answer tokens, API cost, parse and
consistency figures of :class:`~adaptlab.evaluation.summary.CandidateSummary`;
:func:`setup_cost_usd` what a candidate paid before its first answer. Both read only
the run's config, its stored prediction rows and the ``info`` its strategy stored.

A provider fine-tune (``openai-finetune``) differs from a prompted model twice: its
setup is the job's training bill, and its answers come from the fine-tuned model,
which the provider prices above its base model (``finetuned:`` in ``prices.yaml``;
fine-tuned gpt-4o-mini is 0.30/1.20 USD per 1M tokens against 0.15/0.60).
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from adaptlab.evaluation.scoring import FAILED, INVALID
from adaptlab.llm.prices import PER_TOKENS, cost_usd, lookup_price, price_for, price_kind
from adaptlab.llm.types import Usage, token_count
from adaptlab.store import PredictionRow

if TYPE_CHECKING:
    from adaptlab.config import LLMConfig, ProjectConfig
    from adaptlab.llm.prices import Price, PriceKind

#: Keys of a strategy's ``info`` that hold the USD a provider billed (or will bill) for
#: training, most trusted first: the bill from the job's ``trained_tokens``, then the
#: estimate made before the upload (see ``strategies/openai_finetune/strategy.py``).
TRAINING_BILL_KEYS = ("actual_cost_usd", "estimated_cost_usd")


def _text(value: object) -> str | None:
    return None if value is None else str(value)


def _number(value: object) -> float | None:
    """A stored measurement as a finite float >= 0, or None (a row may hold anything)."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        x = float(value)
    except ValueError:
        return None
    return x if np.isfinite(x) and x >= 0 else None


def sane_row(r: PredictionRow) -> PredictionRow:
    """A stored prediction with every field of the type it should have.

    Rows come from a file that other versions (or other programs) may have written:
    token counts that are not counts become None (or are clamped, and marked not
    exact), so no stored row can crash a summary.
    """

    inp, out, cached = (token_count(v) for v in (r.input_tokens, r.output_tokens, r.cached_tokens))
    odd = any(
        raw is not None and got is None
        for raw, got in ((r.input_tokens, inp), (r.output_tokens, out), (r.cached_tokens, cached))
    )
    if inp is not None and cached is not None and cached > inp:
        cached, odd = inp, True
    exact = None if r.usage_exact is None else bool(r.usage_exact) and not odd
    if odd and exact is None:
        exact = False
    return PredictionRow(
        example_id=str(r.example_id),
        input=str(r.input),
        gold=str(r.gold),
        predicted=_text(r.predicted),
        score=_number(r.score),
        latency_ms=_number(r.latency_ms),
        raw=_text(r.raw),
        status=_text(r.status),
        input_tokens=inp,
        output_tokens=out,
        cached_tokens=cached,
        finish_reason=_text(r.finish_reason),
        usage_exact=exact,
        context_json=_text(r.context_json),
        sources_json=_text(r.sources_json),
    )


def training_bill_usd(info: dict[str, Any]) -> float | None:
    """USD a provider billed to train this candidate, from its strategy's ``info``.

    Recomputed where the job reported its ``trained_tokens``: those x the shipped table's
    ``finetuned.training`` price of ``provider_job.base_model`` / 1M (as the answers are
    priced from the table now, not from what a run wrote). Else the first of
    :data:`TRAINING_BILL_KEYS` that holds a number: ``actual_cost_usd``, then
    ``estimated_cost_usd`` (the estimate shown before the upload,
    :func:`adaptlab.train.cost.estimate_training_cost`). None for a candidate that paid
    no provider (a local fine-tune, a prompt) or whose model has no training price.
    """

    tokens = _number(info.get("trained_tokens"))
    job = info.get("provider_job")
    base = job.get("base_model") if isinstance(job, dict) else None
    if tokens is not None and isinstance(base, str):
        price = lookup_price(base)
        if price is not None and price.training is not None:
            return tokens * price.training / PER_TOKENS
    for key in TRAINING_BILL_KEYS:
        usd = _number(info.get(key))
        if usd is not None:
            return usd
    return None


def setup_cost_usd(fit_cpu_seconds: float, cpu_hour_usd: float, info: dict[str, Any]) -> float:
    """What a candidate cost before its first answer, in USD.

    ``fit_cpu_seconds`` x ``cpu_hour_usd`` / 3600 (the CPU this machine spent fitting:
    embedding, local training, preparing and following a job), plus the provider's
    training bill where there is one (:func:`training_bill_usd`).
    """
    cpu = fit_cpu_seconds * cpu_hour_usd / 3600
    return cpu + (training_bill_usd(info) or 0.0)


def answer_price(llm: LLMConfig, info: dict[str, Any]) -> tuple[Price | None, PriceKind]:
    """The price of a candidate's answers and where it comes from.

    A candidate whose ``info`` names a ``fine_tuned_model`` (a provider fine-tune) is
    answered by that model: the ``finetuned`` prices of its base model (the ``ft:<base>:…``
    id looked up in the table, else those of ``llm``'s own entry); None and "unknown"
    when the table has none. Any other candidate: :func:`adaptlab.llm.prices.price_for`
    and :func:`~adaptlab.llm.prices.price_kind` of ``llm``.
    """

    tuned = info.get("fine_tuned_model")
    if not isinstance(tuned, str) or not tuned:
        return price_for(llm), price_kind(llm)
    price = lookup_price(tuned)
    if price is None:
        base = price_for(llm)
        price = base.finetuned if base is not None else None
    return price, "table" if price is not None else "unknown"


def generative_figures(
    cfg: ProjectConfig,
    name: str,
    rows: list[PredictionRow],
    consistency: list[Any],
    info: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Token, cost, parse and consistency figures of candidate ``name`` (empty for encoders).

    Keys are fields of :class:`~adaptlab.evaluation.summary.CandidateSummary`
    (``statuses``, ``unparsed``, ``failed``, ``valid_rate``, ``cut_off``,
    ``consistency_samples``, ``agreement``, ``format_validity``, ``llm``,
    ``input_tokens_per_request``, ``output_tokens_per_request``, ``usage_exact``,
    ``price_kind``, ``api_cost_per_1k_usd``); those that do not apply are left out.
    ``info`` is what the candidate's strategy stored: its answers are priced by
    :func:`answer_price`. ``api_cost_per_1k_usd`` is the mean API cost of an answered
    request (refused inputs are not billed) x 1,000.
    """
    out: dict[str, Any] = {}
    cand = next((c for c in cfg.candidates if c.name == name), None)
    statuses = Counter(r.status for r in rows if r.status is not None)
    if statuses:
        out["statuses"] = dict(statuses)
        out["unparsed"] = sum(statuses.get(st, 0) for st in INVALID)
        failed = {st: statuses[st] for st in FAILED if statuses.get(st)}
        out["failed"] = failed
        out["failed_examples"] = {
            st: [r.example_id for r in rows if r.status == st][:3] for st in failed
        }
        out["valid_rate"] = 1 - (out["unparsed"] + sum(failed.values())) / len(rows)
    cut = sum(r.finish_reason == "length" for r in rows)
    if cut:
        out["cut_off"] = cut
    if consistency:
        by_input: dict[int, list[Any]] = {}
        for idx, _sample, pred, _status in consistency:
            by_input.setdefault(idx, []).append(pred)
        agree = [Counter(v).most_common(1)[0][1] / len(v) for v in by_input.values()]
        valid = [st not in INVALID and st not in FAILED for *_, st in consistency]
        out["consistency_samples"] = max(len(v) for v in by_input.values())
        out["agreement"] = float(np.mean(agree))
        out["format_validity"] = float(np.mean(valid))
    if cand is None or cand.llm is None or cand.llm not in cfg.llms:
        return out

    llm = cfg.llms[cand.llm]
    out["llm"] = f"{llm.backend}:{llm.name}"
    # Refused inputs were not answered (nor billed): tokens and cost are per answer.
    used = [r for r in rows if r.input_tokens is not None and r.status not in FAILED]
    if used:
        out["input_tokens_per_request"] = float(np.mean([r.input_tokens or 0 for r in used]))
        out["output_tokens_per_request"] = float(np.mean([r.output_tokens or 0 for r in used]))
        out["usage_exact"] = not any(r.usage_exact is False for r in used)
    price, kind = answer_price(llm, info or {})
    out["price_kind"] = kind
    if price is not None and used:
        total = sum(
            cost_usd(Usage(r.input_tokens or 0, r.output_tokens or 0, r.cached_tokens or 0), price)
            for r in used
        )
        out["api_cost_per_1k_usd"] = total / len(used) * 1000
    return out


__all__ = [
    "TRAINING_BILL_KEYS",
    "answer_price",
    "generative_figures",
    "sane_row",
    "setup_cost_usd",
    "training_bill_usd",
]
