"""The one number formatter of terminal, report and server.

A figure is shown no more precisely than it was measured: percentages to one
decimal, costs to two significant digits (a cost comes from seconds of timing),
volumes to two significant figures (break-evens are estimates).
"""

from __future__ import annotations

import math

import numpy as np


def pct(x: float) -> str:
    """Percent with one decimal: the one format of reasons, report and plots."""
    return f"{100 * x:.1f}%"


def sig(x: float, digits: int = 2) -> str:
    """``x`` to ``digits`` significant digits, never in exponent form: a cost from a few
    seconds of timing supports two digits, not ten (0.000022, 1,300)."""
    if x != x or x in (float("inf"), float("-inf")):
        return "–"
    if abs(x) >= 10**digits:
        return f"{round(x, digits - len(str(int(abs(x))))):,.0f}"
    return str(
        np.format_float_positional(x, precision=digits, unique=False, fractional=False, trim="-")
    )


def usd(x: float) -> str:
    """Money to two significant digits (:func:`sig`): what a timing of seconds supports."""
    return f"{sig(x)} USD"


def volume_text(v: float) -> str:
    """A volume rounded to two significant figures ("240K"): break-evens are estimates."""
    if v >= 1e6:
        return f"{v / 1e6:.2g}M"
    if v >= 1e3:
        return f"{v / 1e3:.2g}K"
    return f"{v:.2g}"


def dollars(x: float) -> str:
    """Dollars without the unit, for axis ticks and table cells under a "USD" heading:
    two significant digits below one dollar (:func:`sig`, what seconds of timing
    support; never rounded to 0), cents above; "—" for a value that is not finite."""
    if not math.isfinite(x):
        return "—"
    if x == 0:
        return "0"
    if abs(x) >= 1:
        return f"{x:,.2f}"
    return sig(x)
