"""What keeps the request path cheap, without loosening a rule: the rows of one model
batch reach the request log as one write, still committed before any answer; a write
that fails still fails each of its requests with 503; a store that cannot be written
is still found before the model is asked; and the batcher sends a full batch, or one
whose first request has waited its ``max_wait_ms``, at once."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from adaptlab.core.types import Prediction
from adaptlab.serve.batching import Batcher
from adaptlab.serve.log import RequestLog, RequestRecord
from adaptlab.store.files import StoreError
from tests.hostile.test_serve_hostile import Script, call, chat, config, run_app

pytestmark = pytest.mark.timeout(60)


def _write_sizes(monkeypatch: pytest.MonkeyPatch, fail: int = 0) -> list[int]:
    """Request rows per transaction of the log's writer, in order; the first ``fail``
    transactions raise a StoreError (a full disk) instead of committing."""
    sizes: list[int] = []
    original = RequestLog._write.__func__  # type: ignore[attr-defined]

    def counted(cls: type[RequestLog], store: Any, items: list[object], marks: str) -> None:
        rows = sum(isinstance(i, tuple) and isinstance(i[0], RequestRecord) for i in items)
        sizes.append(rows)
        if len(sizes) <= fail:
            raise StoreError("disk I/O error: the disk is full", code="io")
        original(cls, store, items, marks)

    monkeypatch.setattr(RequestLog, "_write", classmethod(counted))
    return sizes


def _committed(store: Path, request_id: str) -> bool:
    with sqlite3.connect(store) as conn:
        found = conn.execute("SELECT 1 FROM requests WHERE id = ?", (request_id,)).fetchone()
    return found is not None


def test_a_batchs_rows_are_one_write_committed_before_any_answer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _write_sizes(monkeypatch)
    script = Script()
    cfg = config(tmp_path, script, max_batch=8, max_wait_ms=2000.0)
    texts = [f"ticket number {i}" for i in range(8)]

    async def scenario(app: Any) -> list[bool]:
        seen: list[bool] = []
        for reply in asyncio.as_completed(
            [call(app, "POST", "/v1/chat/completions", chat(t)) for t in texts]
        ):
            got = await reply
            assert got.status == 200, got
            # read by another connection the moment the answer is there
            seen.append(_committed(cfg.store_path, got.json()["id"]))
        return seen

    assert run_app(cfg, scenario) == [True] * 8
    assert [len(b) for b in script.batches] == [8]  # one forward pass ...
    assert sizes == [8]  # ... and one transaction of the request log


def test_a_failed_write_fails_each_request_of_its_batch_with_503_and_the_next_is_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sizes = _write_sizes(monkeypatch, fail=1)
    script = Script()
    cfg = config(tmp_path, script, max_batch=4, max_wait_ms=300.0)

    async def scenario(app: Any) -> tuple[list[Any], Any]:
        first = await asyncio.gather(
            *(call(app, "POST", "/v1/predict", f'{{"input": "t{i}"}}'.encode()) for i in range(4))
        )
        return first, await call(app, "POST", "/v1/predict", b'{"input": "again"}')

    failed, again = run_app(cfg, scenario)
    for reply in failed:
        assert reply.status == 503, reply
        error = reply.error()
        assert error["code"] == "store_unavailable" and "disk is full" in error["message"]
        assert reply.headers.get("retry-after") == "5"
        assert "label" not in reply.json()  # the answer is not returned unlogged
    assert again.status == 200 and _committed(cfg.store_path, again.json()["id"])
    assert sizes == [4, 1]


def test_a_store_that_cannot_be_written_is_found_before_the_model_is_asked(
    tmp_path: Path,
) -> None:
    script = Script()
    cfg = config(tmp_path, script, max_batch=4, max_wait_ms=50.0)

    async def scenario(app: Any) -> list[Any]:
        cfg.store_path.unlink()  # deleted while the server runs
        return list(
            await asyncio.gather(
                *(call(app, "POST", "/v1/predict", b'{"input": "x"}') for _ in range(3))
            )
        )

    for reply in run_app(cfg, scenario):
        assert reply.status == 503 and "deleted" in reply.error()["message"], reply
    assert script.batches == []


def _timed_batcher(
    first_call_s: float, max_batch: int, max_wait_ms: float
) -> tuple[Batcher, list[list[str]]]:
    batches: list[list[str]] = []

    def predict(texts: Sequence[str]) -> list[Prediction]:
        batches.append(list(texts))
        if len(batches) == 1:
            time.sleep(first_call_s)  # a forward pass the next requests arrive during
        return [Prediction(t.upper(), 1.0) for t in texts]

    return Batcher(predict, name="m", max_batch=max_batch, max_wait_ms=max_wait_ms), batches


def test_a_full_batch_goes_at_once_without_waiting_out_max_wait() -> None:
    batcher, batches = _timed_batcher(0.0, max_batch=4, max_wait_ms=30_000)

    async def main() -> float:
        start = time.perf_counter()
        try:
            await asyncio.gather(*(batcher.predict(f"t{i}") for i in range(4)))
        finally:
            await batcher.aclose()
        return time.perf_counter() - start

    assert asyncio.run(main()) < 10  # far below the 30 s it would otherwise wait
    assert batches == [["t0", "t1", "t2", "t3"]]


def test_requests_that_waited_during_a_forward_pass_go_next_without_waiting_again() -> None:
    # max_wait 1 s, counted from each batch's first arrival: the request that arrived
    # during the first (1.5 s) forward pass has waited longer than that when it ends,
    # so it goes at once (waiting 1 s more, from when the batcher took it, it would not)
    batcher, batches = _timed_batcher(1.5, max_batch=4, max_wait_ms=1000)

    async def main() -> float:
        try:
            first = [asyncio.ensure_future(batcher.predict(f"a{i}")) for i in range(4)]
            await asyncio.sleep(0.2)  # the first batch (full) is on the model now
            late = asyncio.ensure_future(batcher.predict("late"))
            await asyncio.gather(*first)
            done_first = time.perf_counter()
            await late
            return time.perf_counter() - done_first
        finally:
            await batcher.aclose()

    waited = asyncio.run(main())
    assert batches == [["a0", "a1", "a2", "a3"], ["late"]]
    assert waited < 0.7, f"the late request waited {waited:.2f} s more"
