"""Send many chat requests fast, within limits, without paying twice.

* bounded concurrency (``max_concurrency`` requests in flight);
* client-side requests- and tokens-per-minute buckets;
* retries with exponential backoff and full jitter; a Retry-After from the
  server wins, and pauses *every* worker, not only the one that was told;
* a timeout per call; and the :class:`ResponseCache`, consulted before and
  written after each call, so a rerun or a crash never repeats a paid request;
* an error about one input (a content filter, a prompt too long for the context)
  is that input's answer (:class:`~adaptlab.llm.types.InputError`), cached like one,
  so the candidate goes on and a rerun does not ask again; errors about the
  account, the key, the model or a parameter stop the candidate with a fix;
* a Retry-After longer than :data:`LONG_WAIT_S` is announced before it is waited
  out, and one longer than :data:`RETRY_AFTER_CAP_S` stops the run with the wait.

Local backends (``hf``) take the same path but in batches, in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from adaptlab.backends.batching.base import COLLECTOR
from adaptlab.core.errors import AdaptlabError
from adaptlab.core.format import duration
from adaptlab.core.progress import ProgressSink
from adaptlab.llm.batch import PaidTally, unmeasured
from adaptlab.llm.keys import redact
from adaptlab.llm.types import (
    ChatRequest,
    ChatResponse,
    InputError,
    LLMCallError,
    TransientError,
    failure_status,
)

if TYPE_CHECKING:
    from adaptlab.backends.base import GenerativeBackend
    from adaptlab.core.progress import Advance
    from adaptlab.llm.cache import ResponseCache

BACKOFF_BASE_S = 0.5
BACKOFF_CAP_S = 30.0
RETRY_AFTER_CAP_S = 300.0  # a longer Retry-After stops the run, saying how long to wait
LONG_WAIT_S = 60.0  # a longer Retry-After is announced before it is waited out
# This many inputs refused in a row, none answered: the setup is wrong, not the inputs.
ALL_REFUSED_AFTER = 8


def _stderr_notice(text: str) -> None:
    # rich's live progress redirects stderr above its bars while it runs.
    print(text, file=sys.stderr, flush=True)


class LLMRunError(AdaptlabError):
    """A request failed for good; every answer received before it is cached."""

    def __init__(self, message: str, *, kind: str, attempts: int, fix: str | None = None) -> None:
        fix = fix or {
            "refused": "check the key, the model name and base_url; answers so far are cached",
            "rate_limit": "lower max_concurrency or requests_per_minute; rerun to resume",
        }.get(kind, "rerun to resume: every answer received so far is cached")
        super().__init__(redact(message), fix=redact(fix), code=f"llm-{kind}")
        self.kind = kind
        self.attempts = attempts


@dataclass
class RunnerStats:
    requests: int = 0  # requests asked of the runner
    cache_hits: int = 0
    sent: int = 0  # HTTP attempts (or local generations) made
    retries: int = 0
    retries_by_kind: Counter[str] = field(default_factory=Counter)
    wall_seconds: float = 0.0
    # The answers returned, by the tier they were billed in (batch or standard).
    paid: PaidTally = field(default_factory=PaidTally)


class _Bucket:
    """A token bucket refilled continuously at ``per_minute / 60`` per second."""

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.level = float(per_minute)
        self.rate = per_minute / 60.0
        self.stamp = time.monotonic()

    def wait_time(self, amount: float) -> float:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now
        amount = min(amount, self.capacity)  # a request larger than a minute still goes
        if self.level >= amount:
            self.level -= amount
            return 0.0
        return (amount - self.level) / self.rate


class RateLimiter:
    def __init__(self, requests_per_minute: int | None, tokens_per_minute: int | None) -> None:
        self._requests = _Bucket(requests_per_minute) if requests_per_minute else None
        self._tokens = _Bucket(tokens_per_minute) if tokens_per_minute else None
        self._lock = asyncio.Lock()
        self.pause_until = 0.0  # set from a Retry-After; every worker honours it

    async def acquire(self, tokens: int) -> None:
        async with self._lock:  # first come, first served
            while True:
                pause = self.pause_until - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                    continue
                wait = 0.0
                if self._requests is not None:
                    wait = self._requests.wait_time(1)
                    if wait:
                        await asyncio.sleep(wait)
                        continue
                if self._tokens is not None:
                    wait = self._tokens.wait_time(tokens)
                    if wait:
                        # The request slot is taken already; give it back before waiting.
                        if self._requests is not None:
                            self._requests.level += 1
                        await asyncio.sleep(wait)
                        continue
                return


def backoff_delay(attempt: int, retry_after: float | None, base: float = BACKOFF_BASE_S) -> float:
    """Seconds before retry ``attempt`` (1-based): Retry-After if given, else full jitter."""
    if retry_after is not None:
        return min(retry_after, RETRY_AFTER_CAP_S)
    return random.uniform(0, min(BACKOFF_CAP_S, base * 2 ** (attempt - 1)))


class LLMRunner:
    """Answers requests through one backend with the project's limits and cache."""

    def __init__(
        self,
        backend: GenerativeBackend,
        *,
        cache: ResponseCache | None = None,
        progress: ProgressSink | None = None,
        backoff_base: float = BACKOFF_BASE_S,
    ) -> None:
        self.backend = backend
        self.config = backend.config
        self.cache = cache
        self.progress = progress or ProgressSink()
        self.backoff_base = backoff_base
        self.stats = RunnerStats()
        self.identity = backend.identity()
        # Where a long Retry-After is announced (the terminal by default).
        self.notice: Callable[[str], None] = _stderr_notice
        self._announced_until = 0.0  # one notice per pause, not one per worker told

    @contextlib.contextmanager
    def uncached(self) -> Iterator[None]:
        """Answer past the response cache (nothing read or written) with counts kept apart:
        what a timing needs, since a cached answer takes no time. Restores both after."""
        cache, stats = self.cache, self.stats
        self.cache, self.stats = None, RunnerStats()
        try:
            yield
        finally:
            self.cache, self.stats = cache, stats

    def run_sync(
        self, requests: Sequence[ChatRequest], *, description: str = "generating"
    ) -> list[ChatResponse]:
        return asyncio.run(self._run_and_close(requests, description))

    async def _run_and_close(
        self, requests: Sequence[ChatRequest], description: str
    ) -> list[ChatResponse]:
        try:
            return await self.run(requests, description=description)
        finally:
            await self.backend.aclose()

    async def run(
        self, requests: Sequence[ChatRequest], *, description: str = "generating"
    ) -> list[ChatResponse]:
        """One response per request, in order. Raises :class:`LLMRunError` on a failure
        that retries could not fix, after the requests in flight have finished.

        While a batch :class:`~adaptlab.backends.batching.Collector` is active, requests it
        takes are recorded for a batch and nothing is sent. An answer that came in a
        batch is returned with latency NaN (not measured, :func:`unmeasured`)."""
        collector = COLLECTOR.get()
        if collector is not None and collector.takes(self):
            return collector.collect(self, requests)
        t0 = time.perf_counter()
        self.stats.requests += len(requests)
        out: list[ChatResponse | None] = [None] * len(requests)
        keys = [r.cache_key(self.identity) for r in requests]
        todo: list[int] = []
        for i, key in enumerate(keys):
            hit = self.cache.get(key) if self.cache is not None else None
            if hit is not None:
                out[i] = unmeasured(hit)
                self.stats.cache_hits += 1
            else:
                todo.append(i)
        # Identical requests in one call are sent once.
        first: dict[str, int] = {}
        unique = [i for i in todo if first.setdefault(keys[i], i) == i]
        with self.progress.task(description, len(requests)) as advance:
            advance(len(requests) - len(todo))
            if self.backend.local:
                await self._run_local(requests, keys, unique, out, advance)
            else:
                await self._run_remote(requests, keys, unique, out, advance)
            for i in todo:
                if out[i] is None:
                    out[i] = out[first[keys[i]]]
                    advance(1)
        self.stats.wall_seconds += time.perf_counter() - t0
        answers = [r for r in out if r is not None]
        for r in answers:
            self.stats.paid.add(r)
        return answers

    def _store(self, key: str, request: ChatRequest, response: ChatResponse) -> None:
        if self.cache is not None:
            self.cache.put(key, self.identity, request, response)

    async def _run_remote(
        self,
        requests: Sequence[ChatRequest],
        keys: list[str],
        indices: list[int],
        out: list[ChatResponse | None],
        advance: Advance,
    ) -> None:
        limiter = RateLimiter(self.config.requests_per_minute, self.config.tokens_per_minute)
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in indices:
            queue.put_nowait(i)
        failure: list[LLMRunError] = []
        tally = {"answered": 0, "refused": 0}

        async def worker() -> None:
            while not failure:
                try:
                    i = queue.get_nowait()
                except asyncio.QueueEmpty:
                    return
                try:
                    resp = await self._call(requests[i], limiter)
                except LLMRunError as exc:
                    failure.append(exc)
                    return
                self._store(keys[i], requests[i], resp)
                out[i] = resp
                advance(1)
                refused = failure_status(resp.finish_reason) is not None
                tally["refused" if refused else "answered"] += 1
                if refused and not tally["answered"] and tally["refused"] >= ALL_REFUSED_AFTER:
                    failure.append(self._all_refused(resp))

        n = min(self.config.max_concurrency, len(indices))
        await asyncio.gather(*(worker() for _ in range(n)))
        if failure:
            raise failure[0]

    def _all_refused(self, last: ChatResponse) -> LLMRunError:
        return LLMRunError(
            f"{self.backend.name} model '{self.config.name}' refused each of the first "
            f"{ALL_REFUSED_AFTER} inputs and answered none; the last said: {last.text}",
            kind="all-refused",
            attempts=1,
            fix="this is the setup, not the inputs: check the model's context window against "
            "max_tokens and the template (adaptlab run --dry-run, adaptlab prompt render); "
            "the refusals are cached, delete .adaptlab/llm_cache.db to ask again",
        )

    def _wait(self, error: LLMCallError, attempt: int) -> float:
        """Seconds before the next attempt; a long Retry-After is announced, a longer one
        stops the run (raises) rather than sitting in silence."""
        delay = backoff_delay(attempt, error.retry_after, self.backoff_base)
        wait = error.retry_after
        if wait is None or wait <= LONG_WAIT_S:
            return delay
        where = f"{self.backend.name} model '{self.config.name}'"
        if wait > RETRY_AFTER_CAP_S:
            until = time.strftime("%H:%M", time.localtime(time.time() + wait))
            raise LLMRunError(
                f"{where} asks to wait {duration(wait)} before the next request "
                f"(Retry-After, {error.kind}): {error}",
                kind="wait",
                attempts=attempt,
                fix=f"rerun after {until}: every answer received so far is cached "
                "(or lower requests_per_minute / tokens_per_minute to stay under the limit)",
            )
        now = time.monotonic()
        if now + wait <= self._announced_until + 1:
            return delay
        self._announced_until = now + wait
        self.notice(
            f"note: {where} asks to wait {duration(wait)} (Retry-After); waiting, every "
            "answer so far is cached (Ctrl-C and rerun later to resume)"
        )
        return delay

    async def _call(self, request: ChatRequest, limiter: RateLimiter) -> ChatResponse:
        attempt = 0
        need = self.backend.count_tokens(request)[0] + request.params.max_tokens
        while True:
            attempt += 1
            await limiter.acquire(need)
            self.stats.sent += 1
            try:
                resp = await asyncio.wait_for(
                    self.backend.execute(request), timeout=self.config.timeout_s + 5
                )
                return ChatResponse(
                    text=resp.text,
                    usage=resp.usage,
                    latency_ms=resp.latency_ms,
                    finish_reason=resp.finish_reason,
                    attempts=attempt,
                )
            except asyncio.TimeoutError:
                error: LLMCallError = TransientError("no answer in time", kind="timeout")
            except InputError as exc:
                # About this input only: its answer, so the candidate goes on.
                return exc.response(latency_ms=0.0)
            except LLMCallError as exc:
                error = exc
            if not error.transient or attempt > self.config.max_retries:
                what = "gave up after" if error.transient else "refused on"
                raise LLMRunError(
                    f"{self.backend.name} model '{self.config.name}' {what} attempt "
                    f"{attempt}: {error}",
                    kind=error.kind,
                    attempts=attempt,
                    fix=error.fix,
                ) from None
            delay = self._wait(error, attempt)
            self.stats.retries += 1
            self.stats.retries_by_kind[error.kind] += 1
            if error.retry_after is not None:
                limiter.pause_until = max(limiter.pause_until, time.monotonic() + delay)
            await asyncio.sleep(delay)

    async def _run_local(
        self,
        requests: Sequence[ChatRequest],
        keys: list[str],
        indices: list[int],
        out: list[ChatResponse | None],
        advance: Advance,
    ) -> None:
        size = self.config.batch_size
        for start in range(0, len(indices), size):
            chunk = indices[start : start + size]
            batch = [requests[i] for i in chunk]
            self.stats.sent += len(batch)
            try:
                answers = await asyncio.to_thread(self.backend.generate_batch, batch)
            except LLMCallError as exc:
                raise LLMRunError(
                    f"{self.backend.name} model '{self.config.name}': {exc}",
                    kind=exc.kind,
                    attempts=1,
                    fix=exc.fix,
                ) from None
            for i, resp in zip(chunk, answers, strict=True):
                self._store(keys[i], requests[i], resp)
                out[i] = resp
            advance(len(chunk))
