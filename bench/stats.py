"""What the benchmarks share for their intervals."""

from __future__ import annotations


def wilson(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """The Wilson score interval of ``k`` successes in ``n`` (Wilson 1927), through
    scipy's ``binomtest``; ``(0, 1)`` when ``n`` is 0. Bounds lie in [0, 1]."""
    if n == 0:
        return (0.0, 1.0)
    from scipy.stats import binomtest  # type: ignore[import-untyped]  # via scikit-learn

    ci = binomtest(k, n).proportion_ci(confidence_level=confidence, method="wilson")
    return (max(0.0, float(ci.low)), min(1.0, float(ci.high)))
