"""Dynamic batching: concurrent requests to one model answered in one forward pass.

The first request of a batch waits at most ``max_wait_ms`` from its arrival for others
to join, up to ``max_batch`` inputs; the batch then runs on the model's own worker
thread (one per model: a forward pass already uses every core torch is given). While
it runs, the next batch gathers, so requests that arrived during a forward pass have
waited long enough and go into the next one at once. A batch the model fails on is
answered again one input at a time, so an input the model cannot take fails only its
own request. ``max_batch=1`` serves one request at a time, the baseline
``bench/serve_load.py`` compares against.

The pending requests are a plain deque, and the batcher sleeps on one future that is
woken only when it has something to do (the first request, a full batch, the deadline):
an ``asyncio.Queue`` with ``wait_for`` per request cost a task and a timer per request
on the event loop, which the model's forward pass then had to share the cores with.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from adaptlab.core.types import Prediction

log = logging.getLogger("adaptlab.serve")


@dataclass
class BatchStats:
    batches: int = 0
    inputs: int = 0
    sizes: list[int] = field(default_factory=list)  # the last 1,000 batch sizes


#: One waiting request: (its input, its answer, when it arrived on the loop's clock).
_Pending = tuple[str, "asyncio.Future[Prediction]", float]


class Batcher:
    """``await batcher.predict(text)`` → the :class:`Prediction` for that text.

    ``predict``: the model, ``(texts) -> one Prediction per text`` (run on a worker
    thread); ``max_batch``: most inputs per call; ``max_wait_ms``: how long the first
    input of a batch may wait (from its arrival) for others; ``on_batch(size)``: called
    after each answered batch.
    """

    def __init__(
        self,
        predict: Callable[[Sequence[str]], list[Prediction]],
        *,
        name: str,
        max_batch: int = 32,
        max_wait_ms: float = 5.0,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self._predict = predict
        self.name = name
        self.max_batch = max_batch
        self.max_wait = max_wait_ms / 1000
        self.on_batch = on_batch
        self.stats = BatchStats()
        self._pending: deque[_Pending] = deque()
        self._wake: asyncio.Future[None] | None = None  # the batcher sleeps on it
        self._wake_at = 1  # pending requests that wake it (1 while idle, else a full batch)
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"model-{name}")

    async def predict(self, text: str) -> Prediction:
        if self._task is None or self._task.done():  # first use, or after a crash
            if self._task is not None and not self._task.cancelled():
                log.error(
                    "%s: the batcher stopped (%r); starting it again",
                    self.name,
                    self._task.exception(),
                )
            self._task = asyncio.create_task(self._run(), name=f"batcher-{self.name}")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Prediction] = loop.create_future()
        self._pending.append((text, future, loop.time()))
        wake = self._wake
        if wake is not None and not wake.done() and len(self._pending) >= self._wake_at:
            wake.set_result(None)
        return await future

    async def _sleep(self, loop: asyncio.AbstractEventLoop, wake_at: int, until: float) -> None:
        """Until ``wake_at`` requests are pending or the loop's clock reaches ``until``
        (``inf``: no deadline)."""
        if len(self._pending) >= wake_at:
            return
        wake: asyncio.Future[None] = loop.create_future()
        self._wake, self._wake_at = wake, wake_at
        timer = None if until == float("inf") else loop.call_at(until, _wake_up, wake)
        try:
            await wake
        finally:
            self._wake = None
            if timer is not None:
                timer.cancel()

    def _take(self) -> list[tuple[str, asyncio.Future[Prediction]]]:
        """Up to ``max_batch`` pending requests whose clients still wait, oldest first."""
        batch: list[tuple[str, asyncio.Future[Prediction]]] = []
        pending = self._pending
        while pending and len(batch) < self.max_batch:
            text, future, _ = pending.popleft()
            if not future.cancelled():  # else the client went away
                batch.append((text, future))
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._sleep(loop, 1, float("inf"))
            # the oldest request waits at most max_wait from its arrival for a full batch
            await self._sleep(loop, self.max_batch, self._pending[0][2] + self.max_wait)
            batch = self._take()
            if not batch:
                continue
            texts = [t for t, _ in batch]
            try:
                preds = await self._answer(loop, texts)
            except Exception as exc:
                if len(batch) == 1:
                    if not batch[0][1].done():
                        batch[0][1].set_exception(exc)
                    continue
                # One input may be what the model cannot take: answer each alone, so
                # only its own request fails and the others get the answers they would
                # have had by themselves.
                log.warning(
                    "%s: a batch of %d failed (%s: %r); answering its inputs one by one",
                    self.name,
                    len(batch),
                    type(exc).__name__,
                    str(exc)[:200],
                )
                for text, future in batch:
                    try:
                        one = await self._answer(loop, [text])
                    except Exception as own:
                        if not future.done():
                            future.set_exception(own)
                    else:
                        self._count(1)
                        if not future.done():
                            future.set_result(one[0])
                continue
            self._count(len(texts))
            for (_, future), pred in zip(batch, preds, strict=True):
                if not future.done():
                    future.set_result(pred)

    async def _answer(self, loop: asyncio.AbstractEventLoop, texts: list[str]) -> list[Prediction]:
        """The model's answers to ``texts`` on its worker thread; one per text or raises."""
        try:
            preds: Any = await loop.run_in_executor(self._executor, self._predict, texts)
        except (Exception, asyncio.CancelledError):
            raise
        except BaseException as exc:  # SystemExit, KeyboardInterrupt from model code
            raise RuntimeError(f"the model raised {type(exc).__name__}: {exc}") from exc
        if not isinstance(preds, list) or len(preds) != len(texts):
            got = len(preds) if isinstance(preds, list) else type(preds).__name__
            raise RuntimeError(f"the model gave {got} answers for {len(texts)} inputs")
        return preds

    def _count(self, size: int) -> None:
        self.stats.batches += 1
        self.stats.inputs += size
        self.stats.sizes = [*self.stats.sizes[-999:], size]
        if self.on_batch is not None:
            self.on_batch(size)

    def problem(self) -> str | None:
        """Why this model cannot answer now, or None: its batcher crashed or was closed."""
        if self._closed:
            return "its batcher is closed (the server is stopping)"
        task = self._task
        if task is not None and task.done() and not task.cancelled():
            exc = task.exception()
            return (
                f"its batcher stopped ({type(exc).__name__}: {exc}); the next request restarts it"
            )
        return None

    async def aclose(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        self._executor.shutdown(wait=False, cancel_futures=True)


def _wake_up(wake: asyncio.Future[None]) -> None:
    if not wake.done():
        wake.set_result(None)
