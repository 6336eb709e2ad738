"""Two candidates' costs weighed against each other: break-even volumes and ROI.

Every candidate is priced as a :class:`~adaptlab.evaluation.cost_model.CostModel`
when its run is summarised (re-exported here with :func:`growth_factor` and
:func:`compute_per_request_usd`): a one-off ``setup_usd`` (training compute, a
provider's training bill, labelling and engineering time) and a cost per request
(API tokens at the provider's price, or measured compute at the configured $/hour),
plus an optional ``fixed_monthly_usd`` (an always-on server). Volume may grow by
``growth`` per month, compounding:

    volume(m) = V * (1 + g)^m,   m = 0 .. H-1
    total(V)  = setup + H * fixed + V * c * G,   G = sum_m (1 + g)^m

so the break-even starting volume of a pair (a, b) over a horizon of H months is

    V* = ((setup_b - setup_a) + H * (fixed_b - fixed_a)) / (G * (c_a - c_b))

the usual "one-off cost difference over per-request saving" (with g = 0, G = H and
the cumulative break-even is ``(setup_b - setup_a) / (c_a - c_b)`` requests). ROI is
the textbook (gain - investment) / investment of the extra one-off spend over the
horizon (e.g. Brealey, Myers & Allen, *Principles of Corporate Finance*, on book
return measures). All money is USD, volumes are requests per month.
"""

from __future__ import annotations

from dataclasses import dataclass

from adaptlab.evaluation.cost_model import (
    SECONDS_PER_HOUR,
    CostModel,
    compute_per_request_usd,
    growth_factor,
)

__all__ = [
    "SECONDS_PER_HOUR",
    "CostModel",
    "Roi",
    "break_even_requests",
    "break_even_volume",
    "cheapest",
    "compute_per_request_usd",
    "growth_factor",
    "roi",
]


def break_even_volume(a: CostModel, b: CostModel, months: int, growth: float = 0.0) -> float | None:
    """Starting monthly volume above which the dearer-per-request one stops being cheaper.

    Returns V* where ``a.total_usd(V*) == b.total_usd(V*)`` over ``months``; None when
    the two never cross at a positive volume (one is cheaper at every volume, or their
    per-request costs are equal). Which side wins above V*: the one with the lower
    ``per_request_usd``.
    """
    slope = (a.per_request_usd - b.per_request_usd) * growth_factor(months, growth)
    if slope == 0:
        return None
    volume = (
        (b.setup_usd - a.setup_usd) + months * (b.fixed_monthly_usd - a.fixed_monthly_usd)
    ) / slope
    return volume if volume > 0 else None


def break_even_requests(cheap_setup: CostModel, cheap_requests: CostModel) -> float | None:
    """Cumulative requests until ``cheap_requests`` has paid back its extra one-off cost.

    ``(setup_b - setup_a) / (c_a - c_b)`` with a = ``cheap_setup``, b = ``cheap_requests``;
    None when b saves nothing per request. Fixed monthly costs are left out: this is the
    count of requests, not a volume per month.
    """
    saving = cheap_setup.per_request_usd - cheap_requests.per_request_usd
    if saving <= 0:
        return None
    return max(cheap_requests.setup_usd - cheap_setup.setup_usd, 0.0) / saving


@dataclass(frozen=True)
class Roi:
    """Return on the extra one-off spend of ``candidate`` over ``baseline``.

    ``roi`` = (saving - investment) / investment over the horizon, None when nothing
    extra was invested (the candidate is no dearer to set up); ``payback_months`` is the
    first month whose cumulative saving covers the investment, None when it never does
    within the horizon.
    """

    candidate: str
    baseline: str
    investment_usd: float
    saving_usd: float
    roi: float | None
    payback_months: int | None


def roi(
    candidate: CostModel,
    baseline: CostModel,
    volume: float,
    months: int,
    growth: float = 0.0,
) -> Roi:
    """ROI of choosing ``candidate`` over ``baseline`` at ``volume`` requests/month."""
    growth_factor(months, growth)  # validates
    investment = candidate.setup_usd - baseline.setup_usd
    saving = 0.0
    payback = None
    for m in range(months):
        v = volume * (1 + growth) ** m
        saving += baseline.monthly_usd(v) - candidate.monthly_usd(v)
        if payback is None and investment > 0 and saving >= investment:
            payback = m + 1
    value = (saving - investment) / investment if investment > 0 else None
    return Roi(candidate.name, baseline.name, investment, saving, value, payback)


def cheapest(models: list[CostModel], volume: float, months: int, growth: float = 0.0) -> CostModel:
    """The model with the lowest total cost over the horizon at ``volume``.

    Raises ValueError for an empty list.
    """
    if not models:
        raise ValueError("no cost models to compare")
    return min(models, key=lambda m: m.total_usd(volume, months, growth))
