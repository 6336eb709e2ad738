"""The prompt search's hard caps on calls, USD and minutes, enforced where requests leave.

:func:`capped` puts a :class:`Budget` between the candidate's runner and its backend
while the search runs: every attempt the runner makes (a retry after a 429 or a 5xx
is a second attempt, and counts) passes :meth:`Budget.admit` first, which refuses it
(a :class:`BudgetSpent`, which the runner does not retry) when it would go past a cap.
So a cap holds whatever the concurrency and the retries; answers from the response
cache never reach the backend and cost nothing.

USD: an attempt is admitted only if its worst case (its prompt tokens, counted with
the model's tokenizer where there is one (else estimated, with a 50 % margin), plus
``max_tokens`` of output) fits what is left; once answered, the reservation becomes
the usage the provider reported. A failed attempt (429, 5xx, a dropped connection)
is counted as a call but costs nothing, as providers bill answers, not refusals.
Several runners may share one budget (the candidate's model and the proposer that
writes instructions for it), each wrapped with its own price.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from adaptlab.llm.prices import cost_usd
from adaptlab.llm.types import PermanentError

if TYPE_CHECKING:
    from adaptlab.backends.runner import LLMRunner
    from adaptlab.llm.prices import Price
    from adaptlab.llm.types import ChatRequest, ChatResponse

#: Prompt tokens that are only estimated (no tokenizer offline) are reserved with this
#: margin, so that a cap in USD holds when the estimate is low.
ESTIMATE_MARGIN = 1.5


class BudgetSpent(PermanentError):
    """An attempt the budget refused; ``cap`` is "max_calls", "max_usd" or "max_minutes"."""

    def __init__(self, cap: str, detail: str) -> None:
        super().__init__(f"the prompt search reached {cap} ({detail})", kind="budget")
        self.cap = cap


@dataclass
class Budget:
    """Caps (None: no cap) and what was spent; ``deadline`` is a ``time.monotonic()``.

    ``calls`` counts attempts sent (retries included); ``usd`` the reported cost of the
    answers plus the worst case of the attempts in flight. Prices are per model, so
    each method that prices takes the model's (None: no price, costs nothing).
    """

    max_calls: int | None
    max_usd: float | None
    deadline: float | None
    calls: int = 0
    usd: float = 0.0
    stopped_by: str | None = None
    seconds_per_call: list[float] = field(default_factory=list)

    @staticmethod
    def worst_usd(backend: object, request: ChatRequest, price: Price | None) -> float:
        """The most ``request`` can cost: its prompt plus ``max_tokens`` of output."""
        if price is None:
            return 0.0
        count = getattr(backend, "count_tokens", None)
        tokens, exact = count(request) if count is not None else (0, False)
        prompt = tokens if exact else int(tokens * ESTIMATE_MARGIN) + 1
        return (prompt * price.input + request.params.max_tokens * price.output) / 1e6

    def expected_seconds(self) -> float:
        """Median seconds one call took so far (0 before the first)."""
        if not self.seconds_per_call:
            return 0.0
        return sorted(self.seconds_per_call)[len(self.seconds_per_call) // 2]

    def refuse(self, cap: str, detail: str) -> BudgetSpent:
        self.stopped_by = self.stopped_by or cap
        return BudgetSpent(cap, detail)

    def admit(self, n: int, usd: float) -> None:
        """Count ``n`` calls of worst-case cost ``usd`` about to be sent, or raise
        :class:`BudgetSpent` (nothing counted) where a cap would be passed."""
        if self.max_calls is not None and self.calls + n > self.max_calls:
            raise self.refuse("max_calls", f"{self.calls} of {self.max_calls} calls sent")
        if self.max_usd is not None and self.usd + usd > self.max_usd:
            raise self.refuse("max_usd", f"USD {self.usd:.6f} of {self.max_usd} spent or held")
        if self.deadline is not None:
            left = self.deadline - time.monotonic()
            if left <= 0 or n * self.expected_seconds() > left:
                raise self.refuse("max_minutes", f"{max(left, 0):.0f} s left")
        self.calls += n
        self.usd += usd

    def settle(self, held: float, response: ChatResponse | None, price: Price | None) -> None:
        """Replace a reservation by the answer's reported cost (nothing for a failure)."""
        self.usd -= held
        if response is not None and price is not None:
            self.usd += cost_usd(response.usage, price)


@contextlib.contextmanager
def capped(runner: LLMRunner, budget: Budget, price: Price | None) -> Iterator[None]:
    """Route every attempt ``runner`` makes through ``budget`` while the block runs;
    ``price`` is the runner's model's (None: it bills nothing).

    The runner owns retries, concurrency and the cache and calls its backend's
    ``execute`` (remote, once per attempt) or ``generate_batch`` (local); those two are
    wrapped on the backend object for the block and restored after it.
    """
    backend = runner.backend
    execute, generate_batch = backend.execute, backend.generate_batch

    async def capped_execute(request: ChatRequest) -> ChatResponse:
        held = budget.worst_usd(backend, request, price)
        budget.admit(1, held)
        t0 = time.monotonic()
        try:
            response = await execute(request)
        except BaseException:
            budget.settle(held, None, price)
            raise
        budget.seconds_per_call.append(time.monotonic() - t0)
        budget.settle(held, response, price)
        return response

    def capped_generate(requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        budget.admit(len(requests), 0.0)  # a local model bills nothing
        t0 = time.monotonic()
        out = generate_batch(requests)
        per = (time.monotonic() - t0) / max(len(requests), 1)
        budget.seconds_per_call.extend([per] * len(requests))
        return out

    # Instance attributes shadow the class's methods for this block only: the runner is
    # shared by the project's candidates, and only the search's own calls are capped.
    vars(backend)["execute"] = capped_execute
    vars(backend)["generate_batch"] = capped_generate
    try:
        yield
    finally:
        vars(backend).pop("execute", None)
        vars(backend).pop("generate_batch", None)
