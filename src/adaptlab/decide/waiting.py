"""What answers that may wait buy: API candidates at their batch APIs' price.

A use case whose answers may arrive within 24 hours (nightly ticket classification,
back-office extraction) can be served through the providers' batch APIs (OpenAI Batch
API, Anthropic Message Batches) at ``share`` of the standard token prices (0.5: the
``batch:`` block of ``prices.yaml``). With ``profile.answers_may_wait`` the summary
prices those candidates' requests so (:func:`adaptlab.evaluation.summary.summarize`);
this module says what that changes: each break-even at both prices.

With every compared candidate on such a model, each per-request cost halves, so a
break-even volume V* = setup difference / (G x saving per request) doubles: "answers
that may wait cost half: the break-even moves from V* to 2 V*". A self-hosted rival
keeps its cost, so the move can be larger or the crossing can vanish.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from adaptlab.config import ProfileConfig, ProjectConfig
from adaptlab.decide.economics import break_even_volume
from adaptlab.evaluation.cost_model import CostModel
from adaptlab.evaluation.summary import CandidateSummary
from adaptlab.llm.prices import batch_terms

__all__ = ["WaitBreakEven", "Waiting", "batch_shares", "tier_costs", "waiting"]


@dataclass(frozen=True)
class WaitBreakEven:
    """The break-even of ``candidate`` against ``baseline`` at both prices: starting
    requests per month at which both cost the same over the horizon, served at the
    standard price (``standard``) and through the batch APIs (``batch``); None where
    they do not cross."""

    candidate: str
    baseline: str
    standard: float | None
    batch: float | None


@dataclass(frozen=True)
class Waiting:
    """What ``profile.answers_may_wait`` changes.

    ``may_wait``: the profile's answer (True: the verdict's costs are at batch prices);
    ``shares``: each API candidate whose provider has a batch API, with the share of the
    standard price it bills there (0.5); ``break_evens``: the verdict's break-evens and
    volume flips at both prices, where a candidate of the pair has a share.
    """

    may_wait: bool
    shares: Mapping[str, float]
    break_evens: tuple[WaitBreakEven, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "shares", MappingProxyType(dict(self.shares)))


def batch_shares(cands: Iterable[CandidateSummary], cfg: ProjectConfig) -> dict[str, float]:
    """Candidate -> the share of the standard price its batch API bills, for candidates
    billed per token ("api" cost models) on a model whose backend has a batch tier."""
    out: dict[str, float] = {}
    by_name = {c.name: c for c in cfg.candidates}
    for c in cands:
        cand = by_name.get(c.name)
        llm = cfg.llms.get(cand.llm) if cand is not None and cand.llm is not None else None
        terms = batch_terms(llm.backend) if llm is not None else None
        if c.cost.kind == "api" and terms is not None:
            out[c.name] = terms.share
    return out


def tier_costs(
    c: CandidateSummary, share: float | None, may_wait: bool
) -> tuple[CostModel, CostModel]:
    """``c``'s cost model served at the standard price and through the batch API.

    The summary's model is at batch prices when ``may_wait`` (the standard one is its
    per-request cost / ``share``), else at the standard price (the batch one x
    ``share``); both are the summary's when ``share`` is None (no batch tier).
    """
    if share is None:
        return c.cost, c.cost
    other = c.cost.per_request_usd / share if may_wait else c.cost.per_request_usd * share
    changed = dataclasses.replace(c.cost, per_request_usd=other)
    return (changed, c.cost) if may_wait else (c.cost, changed)


def waiting(
    pairs: Iterable[tuple[CandidateSummary, CandidateSummary]],
    cands: Iterable[CandidateSummary],
    cfg: ProjectConfig,
    profile: ProfileConfig,
) -> Waiting:
    """The :class:`Waiting` of a verdict: ``pairs`` are its (candidate, baseline) pairs
    (break-evens, then volume flips as (rival, winner)); ``cands`` its candidates, priced
    under ``cfg.profile`` (at batch prices when its ``answers_may_wait``); ``profile``
    gives the horizon and growth."""
    may_wait = cfg.profile.answers_may_wait
    shares = batch_shares(cands, cfg)
    months, growth = profile.horizon_months, profile.monthly_growth
    out: list[WaitBreakEven] = []
    seen: set[frozenset[str]] = set()
    for cand, base in pairs:
        key = frozenset((cand.name, base.name))  # a flip may repeat a break-even's pair
        if key in seen or (cand.name not in shares and base.name not in shares):
            continue
        seen.add(key)
        c_std, c_batch = tier_costs(cand, shares.get(cand.name), may_wait)
        b_std, b_batch = tier_costs(base, shares.get(base.name), may_wait)
        out.append(
            WaitBreakEven(
                cand.name,
                base.name,
                break_even_volume(b_std, c_std, months, growth),
                break_even_volume(b_batch, c_batch, months, growth),
            )
        )
    return Waiting(may_wait, shares, tuple(out))
