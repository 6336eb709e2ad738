"""Answers that came through a provider's batch API, and what answers cost by tier.

A batch answer enters the response cache like any other (:mod:`adaptlab.llm.cache`), so
nothing is paid twice, with ``attempts`` = :data:`BATCH_ATTEMPTS` (0): it was never
sent on its own. That marks it for good, in this run and in any later one that reads it
from the cache: its latency is not measured (a batch answers within 24 hours, not in the
time one request takes), and it was billed at the batch price (``prices.yaml``'s
``batch:`` block), half the standard one at OpenAI and Anthropic.

:class:`PaidTally` counts the answers a candidate used by the tier they were paid in,
with their tokens, so its evaluation cost is recomputed at the price actually paid
(:func:`evaluation_cost_usd`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from adaptlab.llm.prices import cost_usd
from adaptlab.llm.types import ChatResponse, Usage, failure_status

if TYPE_CHECKING:
    from adaptlab.llm.prices import Price

#: ``ChatResponse.attempts`` of an answer that came in a batch (a request sent on its own
#: takes 1 attempt or more).
BATCH_ATTEMPTS = 0

Tier = Literal["batch", "standard"]


def is_batch_answer(response: ChatResponse) -> bool:
    """Whether ``response`` came through a batch API (see :data:`BATCH_ATTEMPTS`)."""
    return response.attempts == BATCH_ATTEMPTS


def as_batch_answer(response: ChatResponse) -> ChatResponse:
    """``response`` as the cache stores a batch answer: 0 attempts, latency 0.0 (the
    cache needs a number; :func:`unmeasured` turns it back into NaN when read)."""
    return dataclasses.replace(response, attempts=BATCH_ATTEMPTS, latency_ms=0.0)


def unmeasured(response: ChatResponse) -> ChatResponse:
    """A batch answer read back with latency NaN: not measured, so no latency figure
    (the store keeps it as NULL) counts it; other answers unchanged."""
    if not is_batch_answer(response):
        return response
    return dataclasses.replace(response, latency_ms=math.nan)


@dataclass
class TierUsage:
    """Answers of one tier and their tokens (cached input tokens are part of ``input``)."""

    answers: int = 0
    input_tokens: int = 0
    cached_tokens: int = 0
    output_tokens: int = 0

    def usage(self) -> Usage:
        return Usage(self.input_tokens, self.output_tokens, self.cached_tokens)


@dataclass
class PaidTally:
    """The answers one candidate used (test, validation, consistency), by the tier they
    were billed in. Refused inputs (nothing billed) are not counted."""

    batch: TierUsage = field(default_factory=TierUsage)
    standard: TierUsage = field(default_factory=TierUsage)

    def add(self, response: ChatResponse) -> None:
        if failure_status(response.finish_reason) is not None:
            return
        tier = self.batch if is_batch_answer(response) else self.standard
        u = response.usage
        tier.answers += 1
        tier.input_tokens += u.input_tokens
        tier.cached_tokens += u.cached_input_tokens
        tier.output_tokens += u.output_tokens

    def as_json(self) -> dict[str, dict[str, int]]:
        return {
            "batch": dataclasses.asdict(self.batch),
            "standard": dataclasses.asdict(self.standard),
        }

    @classmethod
    def from_json(cls, data: Any) -> PaidTally | None:
        """The tally a result stored (``info["llm"]["paid"]``), or None when it holds none
        or something else (a row written by another version)."""
        if not isinstance(data, dict):
            return None
        tiers = []
        for name in ("batch", "standard"):
            raw = data.get(name)
            if not isinstance(raw, dict):
                return None
            values = {
                k: raw.get(k) for k in ("answers", "input_tokens", "cached_tokens", "output_tokens")
            }
            if not all(
                isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values.values()
            ):
                return None
            tiers.append(TierUsage(**values))  # type: ignore[arg-type]
        return cls(*tiers)


def evaluation_cost_usd(tally: PaidTally, standard: Price, batch: Price | None) -> float:
    """USD the tallied answers cost at the price actually paid: the standard tier's tokens
    at ``standard``, the batch tier's at ``batch`` (the standard price when the provider
    has no batch tier: never cheaper than what is known). Arithmetic of
    :func:`adaptlab.llm.prices.cost_usd`."""
    total = cost_usd(tally.standard.usage(), standard)
    return total + cost_usd(tally.batch.usage(), batch if batch is not None else standard)


__all__ = [
    "BATCH_ATTEMPTS",
    "PaidTally",
    "Tier",
    "TierUsage",
    "as_batch_answer",
    "evaluation_cost_usd",
    "is_batch_answer",
    "unmeasured",
]
