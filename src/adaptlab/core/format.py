"""The one number formatter of terminal, report and server.

A figure is shown no more precisely than it was measured: percentages to one
decimal, costs to two significant digits (a cost comes from seconds of timing),
volumes to two significant figures (break-evens are estimates). No figure is ever
written with an exponent ("2.2e+04 ms" is 22,000 ms to a reader), and none ends in a
run of zeros it did not measure ("0.000000 USD"): an amount too small to show is
"< 0.000001 USD", a count carries its noun in the right number ("1 request").
"""

from __future__ import annotations

import math

#: Money below this (in USD) is shown as "< 0.000001": a millionth of a dollar is the
#: finest amount any figure here is measured to (a per-request cost of a local model
#: is ~1e-8 USD, and nobody budgets with it; per 1,000 requests it is visible).
TINY_USD = 1e-6
#: Plain numbers (seconds, ms, losses) below this in size are shown as "< 0.001".
TINY = 1e-3


def pct(x: float) -> str:
    """Percent with one decimal: the one format of reasons, report and plots."""
    return f"{100 * x:.1f}%"


def _round_sig(x: float, digits: int) -> float:
    """``x`` rounded to ``digits`` significant digits (0 stays 0)."""
    if x == 0 or not math.isfinite(x):
        return x
    return round(x, digits - 1 - math.floor(math.log10(abs(x))))


def sig(x: float, digits: int = 2) -> str:
    """``x`` to ``digits`` significant digits, never in exponent form, with thousands
    separators: a cost from a few seconds of timing supports two digits, not ten
    (0.000022, 1,300, 22,000). "–" for a value that is not finite."""
    if not math.isfinite(x):
        return "–"
    r = _round_sig(x, digits)
    if r == 0:
        return "0"
    # Decimals needed to show the significant digits, and no more (trailing zeros cut).
    decimals = max(0, digits - 1 - math.floor(math.log10(abs(r))))
    text = f"{r:,.{decimals}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def number(x: float, digits: int = 3, tiny: float = TINY) -> str:
    """A measured number in prose or a table cell: ``digits`` significant digits below
    100, whole numbers with thousands separators above (22,431), and a size under
    ``tiny`` as "< 0.001" (a fit of 0.0000137 s took no time worth a digit). Never an
    exponent; "–" for a value that is not finite."""
    if not math.isfinite(x):
        return "–"
    if x == 0:
        return "0"
    if abs(x) < tiny:
        bound = sig(tiny, 1)
        return f"< {bound}" if x > 0 else f"> -{bound}"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    return sig(x, digits)


def ms(x: float) -> str:
    """A latency in milliseconds with its unit: "22,000 ms", "8.7 ms"; "–" when unmeasured."""
    if not math.isfinite(x):
        return "–"
    return f"{number(x)} ms"


def dollars(x: float) -> str:
    """Dollars without the unit, for axis ticks and table cells under a "USD" heading:
    two significant digits below one dollar (:func:`sig`, what seconds of timing
    support; never rounded to 0), cents above, "< 0.000001" below :data:`TINY_USD`;
    "—" for a value that is not finite."""
    if not math.isfinite(x):
        return "—"
    if x == 0:
        return "0"
    if abs(x) < TINY_USD:
        return f"< {sig(TINY_USD, 1)}" if x > 0 else f"> -{sig(TINY_USD, 1)}"
    if abs(x) >= 1:
        return f"{x:,.2f}"
    return sig(x)


def usd(x: float) -> str:
    """Money in prose, to two significant digits (:func:`sig`: what a timing of seconds
    supports) with its unit: "1,300 USD", "0.000014 USD", "< 0.000001 USD"."""
    if not math.isfinite(x):
        return "– USD"
    if x != 0 and abs(x) < TINY_USD:
        return dollars(x) + " USD"
    return f"{sig(x)} USD"


def p_value(p: float) -> str:
    """A p-value as tables and prose show it: "< 0.001", else three decimals (0.037)."""
    if not math.isfinite(p):
        return "–"
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


def volume_text(v: float) -> str:
    """A volume rounded to two significant figures ("240K", "1.5M"): break-evens are
    estimates. Never an exponent, however large (a 150,000 volume is "150K")."""
    if not math.isfinite(v):
        return "–"
    r = _round_sig(v, 2)
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(r) >= size:
            return f"{sig(r / size, 3)}{unit}"
    return sig(r)


def plural(n: float, noun: str, many: str | None = None) -> str:
    """``n`` with ``noun`` in the right number: "1 request", "2 requests", "1,500
    requests", "0 examples". ``many`` is the plural where adding "s" is wrong
    ("query" → "queries" is handled; pass "analyses" for "analysis")."""
    count = f"{n:,}" if isinstance(n, int) else number(n)
    if n == 1:
        return f"{count} {noun}"
    if many is None:
        if noun.endswith("y") and noun[-2:-1] not in tuple("aeiou"):
            many = noun[:-1] + "ies"
        elif noun.endswith(("s", "x", "ch", "sh")):
            many = noun + "es"
        else:
            many = noun + "s"
    return f"{count} {many}"


def and_list(items: list[str] | tuple[str, ...]) -> str:
    """Names in a sentence: "a", "a and b", "a, b and c"."""
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def duration(seconds: float) -> str:
    """A wall time as a person reads it: "4.2 s", "42 s", "7 min", "2.5 h"."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
