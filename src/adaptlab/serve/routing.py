"""Routes: a name clients send as ``model`` that splits traffic between candidates.

``--route a=0.9,b=0.1`` (route ``default``) or ``--route canary:a=0.9,b=0.1``. A
request that names a user (the body's ``user`` field, as in OpenAI's API, or the
``X-User-Id`` / ``X-Session-Id`` header) is assigned by a hash of route and user, so
the same user always meets the same candidate while the weights stay; a request
without one is assigned at random.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

from adaptlab.core.errors import AdaptlabError
from adaptlab.serve.checks import text_problem

DEFAULT_ROUTE = "default"


@dataclass(frozen=True)
class Route:
    """A route name and its (candidate, weight) pairs, weights summing to 1."""

    name: str
    weights: tuple[tuple[str, float], ...]
    given_total: float | None = None  # the weights' sum as written (None: not parsed)

    def pick(self, user: str | None, rng: random.Random | None = None) -> str:
        """The candidate for this request: sticky by ``user``, random without one."""
        if len(self.weights) == 1:
            return self.weights[0][0]
        if user:
            digest = hashlib.sha256(f"{self.name}\0{user}".encode("utf-8", "surrogatepass"))
            u = int.from_bytes(digest.digest()[:8], "big") / 2**64
        else:
            u = (rng or random).random()
        total = 0.0
        for name, weight in self.weights:
            total += weight
            if u < total:
                return name
        return self.weights[-1][0]

    @property
    def candidates(self) -> list[str]:
        return [name for name, _ in self.weights]


def parse_route(text: str) -> Route:
    """``[name:]a=0.9,b=0.1`` (weights normalised; ``a`` alone is ``a=1``).

    Raises :class:`AdaptlabError` for a malformed entry, a negative or zero total weight,
    a candidate named twice, or a name that is not printable text (a lone surrogate from
    a command line that is not UTF-8, a control character).
    """
    fix = "write it as a=0.9,b=0.1 or canary:a=0.9,b=0.1 (candidate names and weights)"
    name, sep, spec = text.partition(":")
    if not sep:
        name, spec = DEFAULT_ROUTE, text
    name = name.strip()
    pairs: list[tuple[str, float]] = []
    for part in spec.split(","):
        cand, eq, weight = part.strip().partition("=")
        cand = cand.strip()
        try:
            value = float(weight) if eq else 1.0
        except ValueError:
            raise AdaptlabError(f"route '{text}': '{weight}' is not a weight", fix=fix) from None
        if not cand or not name or value < 0 or value != value:
            raise AdaptlabError(f"route '{text}': cannot read '{part}'", fix=fix)
        for label in (name, cand):
            if text_problem(label) is not None or not label.isprintable():
                raise AdaptlabError(
                    f"route {text!a}: the name {label!a} is not printable text", fix=fix
                )
        pairs.append((cand, value))
    names = [c for c, _ in pairs]
    if len(set(names)) != len(names):
        raise AdaptlabError(f"route '{text}' names a candidate twice", fix=fix)
    total = sum(w for _, w in pairs)
    if total <= 0 or total == float("inf"):
        raise AdaptlabError(f"route '{text}': the weights sum to {total:g}", fix=fix)
    return Route(name, tuple((c, w / total) for c, w in pairs), total)
