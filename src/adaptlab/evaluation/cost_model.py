"""What a candidate costs to run: a one-off setup, a cost per request, a fixed monthly cost.

Every candidate is priced as a :class:`CostModel` when its run is summarised
(:mod:`adaptlab.evaluation.summary`): a one-off ``setup_usd`` (training compute, a
provider's training bill, labelling and engineering time) and a cost per request
(API tokens at the provider's price, or measured compute at the configured $/hour,
:func:`compute_per_request_usd`), plus an optional ``fixed_monthly_usd`` (an
always-on server). Volume may grow by ``growth`` per month, compounding:

    volume(m) = V * (1 + g)^m,   m = 0 .. H-1
    total(V)  = setup + H * fixed + V * c * G,   G = sum_m (1 + g)^m

(:func:`growth_factor` is G, a geometric series). Weighing two models against each
other (break-even volumes, ROI) is the decision's work: :mod:`adaptlab.decide.economics`.
All money is USD, volumes are requests per month.
"""

from __future__ import annotations

from dataclasses import dataclass

SECONDS_PER_HOUR = 3600.0


@dataclass(frozen=True)
class CostModel:
    """A candidate's costs in USD.

    ``kind`` is "api" (billed per token by a provider) or "self-hosted" (compute
    this team pays for by the hour).
    """

    name: str
    kind: str
    setup_usd: float
    per_request_usd: float
    fixed_monthly_usd: float = 0.0

    def monthly_usd(self, volume: float) -> float:
        """Cost of one month at ``volume`` requests."""
        return self.fixed_monthly_usd + volume * self.per_request_usd

    def total_usd(self, volume: float, months: int, growth: float = 0.0) -> float:
        """Setup plus ``months`` of running cost, starting at ``volume`` and growing."""
        return (
            self.setup_usd
            + months * self.fixed_monthly_usd
            + volume * self.per_request_usd * growth_factor(months, growth)
        )


def growth_factor(months: int, growth: float) -> float:
    """``sum_{m=0}^{months-1} (1 + growth)^m``: months of volume a starting month is worth.

    Raises ValueError for months < 1 or growth <= -1.
    """
    if months < 1:
        raise ValueError(f"the horizon must be at least one month, not {months}")
    if growth <= -1:
        raise ValueError(f"monthly growth must be above -100%, not {growth:.0%}")
    if growth == 0:
        return float(months)
    return float(((1 + growth) ** months - 1) / growth)


def compute_per_request_usd(seconds_per_request: float, hour_usd: float) -> float:
    """Self-hosted cost of one request: machine seconds per request at ``hour_usd``/hour.

    ``seconds_per_request`` is measured at the batch size the candidate is served with:
    CPU core-seconds per request times a core-hour price, or GPU wall seconds per request
    (1 / throughput) times a GPU-hour price.
    """
    if seconds_per_request < 0 or hour_usd < 0:
        raise ValueError("seconds and prices cannot be negative")
    return seconds_per_request * hour_usd / SECONDS_PER_HOUR
