"""Evaluation through the providers' batch APIs, against real localhost servers.

The fake server (:mod:`tests.fakes.fake_batch`) serves OpenAI's files + ``/v1/batches``
and Anthropic's ``/v1/messages/batches`` with their documented shapes, and the official
clients talk to it. It answers from the data's own labels, so a run must score 100 %;
it counts the batches made and the files uploaded, and can hold a batch in progress,
expire or fail chosen lines.
"""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab import Project, run_project, summarize_project
from adaptlab.backends import load_llm
from adaptlab.backends.batching import BatchError, BatchStore, batch_api, batch_key, run_batches
from adaptlab.config import LLMConfig
from adaptlab.core.progress import ProgressSink
from adaptlab.evaluation.batch_notes import batch_note, batch_record
from adaptlab.llm.batch import PaidTally, evaluation_cost_usd
from adaptlab.llm.cache import ResponseCache
from adaptlab.llm.prices import (
    _parse_table,
    batch_price,
    batch_price_for,
    batch_terms,
    cost_usd,
    lookup_price,
)
from adaptlab.llm.types import ChatRequest, Message
from tests.conftest import adaptlab_process, run_cli, small_project
from tests.fakes.fake_batch import FakeBatchServer
from tests.fakes.fake_llm import ChatCall
from tests.test_llm_runs import Oracle

pytestmark = pytest.mark.timeout(120)

ZERO = [{"name": "zero", "strategy": "llm-zero-shot", "llm": "chat"}]
TWO = [*ZERO, {"name": "cot", "strategy": "llm-cot", "llm": "chat"}]
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-3-5-haiku"}


def _project(
    tmp_path: Path,
    example_project: Path,
    server: FakeBatchServer,
    candidates: list[dict[str, Any]],
    backend: str = "openai",
    **evaluation: Any,
) -> Path:
    root = small_project(tmp_path / "p", example_project, 3, candidates)
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
    url = server.base_url if backend == "openai" else server.root_url
    cfg["llms"] = {"chat": {"backend": backend, "name": MODELS[backend], "base_url": url}}
    cfg["evaluation"].update(
        {"batch": True, "batch_poll_s": 0.01, "latency_samples": 0, "cv_folds": 0, **evaluation}
    )
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


def _oracle(example_project: Path) -> Oracle:
    return Oracle(example_project)


def _sync_calls(server: FakeBatchServer) -> list[ChatCall]:
    """Chat requests that came one by one (the batch's lines carry x-batch-id)."""
    return [c for c in server.calls if "x-batch-id" not in c.headers]


def _paid(info: dict[str, Any]) -> PaidTally:
    tally = PaidTally.from_json(info["llm"]["paid"])
    assert tally is not None
    return tally


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_one_batch_per_candidate_answers_all_at_the_batch_price(
    tmp_path: Path, example_project: Path, backend: str
) -> None:
    with FakeBatchServer(_oracle(example_project), complete_after=2) as server:
        root = _project(
            tmp_path,
            example_project,
            server,
            TWO,
            backend,
            consistency_samples=2,
            consistency_inputs=3,
        )
        run_project(Project.load(root), progress=ProgressSink())
        summary = summarize_project(Project.load(root))
        split = summary.split
        assert server.batches_created == 2  # one per candidate: test, val and samples in it
        assert len(server.batch_uploads()) == (2 if backend == "openai" else 0)
        assert _sync_calls(server) == []  # latency_samples 0: nothing went one by one
        # Each distinct request was answered once: test + val + the 3 second samples.
        per_candidate = split["test"] + split["val"] + 3
        assert len(server.calls) == 2 * per_candidate
        price = lookup_price(MODELS[backend])
        terms = batch_terms(backend)
        assert price is not None and terms is not None
        for cand in summary.candidates:
            assert cand.quality == 1.0
            assert cand.info["batch"]["lines"] == {
                "sent": per_candidate,
                "succeeded": per_candidate,
            }
            assert cand.latency_p50_ms != cand.latency_p50_ms  # NaN: a batch answer has none
            tally = _paid(cand.info)
            assert tally.standard.answers == 0
            assert tally.batch.answers == split["test"] + split["val"] + 6
            # Every batch answer is billed at half the standard price.
            paid = evaluation_cost_usd(tally, price, batch_price(price, terms))
            assert paid == pytest.approx(cost_usd(tally.batch.usage(), price) / 2)
            assert paid > 0
        # A rerun, even a forced one, finds every answer in the cache: no new batch.
        run_project(Project.load(root), progress=ProgressSink(), force=True)
        assert server.batches_created == 2 and _sync_calls(server) == []


def test_latency_samples_go_one_by_one_and_are_billed_at_the_standard_price(
    tmp_path: Path, example_project: Path
) -> None:
    with FakeBatchServer(_oracle(example_project)) as server:
        root = _project(tmp_path, example_project, server, ZERO, latency_samples=3)
        run_project(Project.load(root), progress=ProgressSink())
        cand = summarize_project(Project.load(root)).candidates[0]
        assert len(_sync_calls(server)) == 3
        assert cand.latency_p50_ms > 0  # measured on the three sent alone
        assert sum(r.latency_ms is not None for r in cand.rows) == 3
        tally = _paid(cand.info)
        assert (tally.standard.answers, cand.info["batch"]["latency_one_by_one"]) == (3, 3)


def _expire_two(server_lines: list[str]) -> Any:
    def fault(custom_id: str, body: dict[str, Any]) -> str | None:
        if len(server_lines) < 2:
            server_lines.append(custom_id)
        return "expired" if custom_id in server_lines else None

    return fault


def test_expired_lines_are_asked_once_more_one_by_one(
    tmp_path: Path, example_project: Path
) -> None:
    expired: list[str] = []
    with FakeBatchServer(_oracle(example_project), line_fault=_expire_two(expired)) as server:
        root = _project(tmp_path, example_project, server, ZERO)
        run_project(Project.load(root), progress=ProgressSink())
        cand = summarize_project(Project.load(root)).candidates[0]
        assert cand.quality == 1.0  # nothing dropped
        info = cand.info["batch"]
        assert info["lines"]["expired"] == 2 and info["retried_one_by_one"] == 2
        assert len(_sync_calls(server)) == 2 and server.batches_created == 1
        tally = _paid(cand.info)
        assert tally.standard.answers == 2  # the retries: at the standard price
        # What the report and 'export results' say: the lines by outcome, the cost paid.
        summary = summarize_project(Project.load(root))
        record = batch_record(summary.cfg, cand)
        assert (record["batch_lines_expired"], record["batch_retried_one_by_one"]) == (2, 2)
        assert record["answers_at_standard_price"] == 2
        price = lookup_price("gpt-4o-mini")
        terms = batch_terms("openai")
        assert price is not None and terms is not None
        assert record["evaluation_cost_usd"] == pytest.approx(
            cost_usd(tally.standard.usage(), price)
            + cost_usd(tally.batch.usage(), batch_price(price, terms))
        )
        note = batch_note(summary.cfg, cand)
        assert note is not None and "2 expired" in note and "asked once more one by one" in note
        with sqlite3.connect(root / ".adaptlab/batches.db") as conn:
            rows = conn.execute("SELECT custom_id, status FROM lines WHERE status != 'succeeded'")
            assert sorted(rows) == sorted((cid, "expired") for cid in expired)


def test_batch_retry_none_stops_and_a_rerun_batches_only_the_missing_lines(
    tmp_path: Path, example_project: Path
) -> None:
    expired: list[str] = []
    with FakeBatchServer(_oracle(example_project), line_fault=_expire_two(expired)) as server:
        root = _project(tmp_path, example_project, server, ZERO, batch_retry="none")
        with pytest.raises(BatchError, match="2 batch lines got no answer") as err:
            run_project(Project.load(root), progress=ProgressSink())
        assert "batch_retry: sync" in str(err.value)
        server.line_fault = None
        run_project(Project.load(root), progress=ProgressSink())
        assert server.batches_created == 2 and _sync_calls(server) == []
        second = max(server.batches.values(), key=lambda b: b.created)
        assert sorted(cid for cid, _ in second.lines) == sorted(expired)
        assert summarize_project(Project.load(root)).candidates[0].quality == 1.0


def test_kill_9_after_the_batch_is_made_and_a_rerun_re_attach(
    tmp_path: Path, example_project: Path
) -> None:
    with FakeBatchServer(_oracle(example_project), hold=True) as server:
        root = _project(tmp_path, example_project, server, ZERO, batch=False, batch_poll_s=0.05)
        proc = adaptlab_process("run", "-p", str(root), "--batch")
        deadline = time.monotonic() + 90
        while server.batch_polls < 2 and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        out, _ = proc.communicate()
        assert proc.returncode == -signal.SIGKILL, out
        assert server.batches_created == 1
        with sqlite3.connect(root / ".adaptlab/batches.db") as conn:
            (batch_id,) = conn.execute("SELECT batch_id FROM batches").fetchone()
        assert batch_id in server.batches and "may take up to 24 h" in out

        server.hold = False
        rerun = run_cli("run", "-p", str(root), "--batch")
        assert rerun.exit_code == 0, rerun.output
        assert f"re-attached to openai batch {batch_id}" in rerun.output
        assert server.batches_created == 1 and len(server.batch_uploads()) == 1
        assert _sync_calls(server) == []
    assert summarize_project(Project.load(root)).candidates[0].quality == 1.0


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_lost_upload_or_create_answer_is_found_not_repeated(tmp_path: Path, backend: str) -> None:
    """The windows a kill can hit: after the upload, and after create was sent but before
    its answer was stored. The provider's records find them (OpenAI: the file's name and
    the batch's metadata; Anthropic: a batch of that size made since the send)."""
    with FakeBatchServer() as server:
        url = server.base_url if backend == "openai" else server.root_url
        config = LLMConfig(backend=backend, name=MODELS[backend], base_url=url)
        api = batch_api(load_llm(config))
        items = [(f"{i:064x}", ChatRequest((Message("user", f"ticket {i}"),))) for i in range(3)]
        identity = {"model": MODELS[backend]}
        key = batch_key(api.provider, identity, [k for k, _ in items])
        store = BatchStore(tmp_path / "batches.db")
        cache = ResponseCache(tmp_path / "cache.db")
        # What the killed run did: it stored that create was sent, never the answer.
        store.begin(key, api.provider, config.name, 3)
        store.update(key, create_sent_at=time.time())
        file_id = api.upload(f"adaptlab-batch-{key}.jsonl", items)
        made = api.create(key, items, file_id)
        outcome = run_batches(api, items, store=store, cache=cache, identity=identity, poll_s=0.0)
        assert server.batches_created == 1 and outcome.batches[0]["id"] == made.id
        assert outcome.batches[0]["reattached"] and len(outcome.answered) == 3
        assert len(server.batch_uploads()) == (1 if backend == "openai" else 0)
        api.close()
        store.close()
        cache.close()


# ---------------------------------------------------------------- prices


def test_batch_prices_are_half_the_standard_ones() -> None:
    for backend, model in MODELS.items():
        config = LLMConfig(backend=backend, name=model)
        std, half = lookup_price(model), batch_price_for(config)
        assert std is not None and half is not None
        assert (half.input, half.output, half.cached_input) == pytest.approx(
            (std.input / 2, std.output / 2, std.cached_input / 2)
        )
        assert "batch" in half.source
    assert batch_price_for(LLMConfig(backend="fake", name="x", answers=["a"])) is None


_GOOD = "checked: 2025-01-01\nmodels:\n  m:\n    input: 1\n    output: 2\n    source: https://x\n"


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ("batch: [0.5]\n", "'batch' must map providers"),
        ("batch:\n  openai: 0.5\n", "batch.openai must be a mapping"),
        ("batch:\n  openai: {source: https://x}\n", "lacks 'share'"),
        ("batch:\n  openai: {share: 0.5}\n", "lacks 'source'"),
        ("batch:\n  openai: {share: 0, source: https://x}\n", "above 0 and at most 1"),
        ("batch:\n  openai: {share: 1.5, source: https://x}\n", "above 0 and at most 1"),
        ("batch:\n  openai: {share: half, source: https://x}\n", "must be a number"),
        ("batch:\n  openai: {share: 0.5, source: http://x}\n", "https:// URL"),
        ("batch:\n  openai: {share: 0.5, source: https://x, tier: 2}\n", "unknown keys"),
    ],
)
def test_price_table_refuses_a_bad_batch_block(block: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _parse_table(_GOOD + block)


@pytest.mark.parametrize(
    ("key", "value"),
    [("batch_retry", "later"), ("batch_poll_s", -1), ("batch", "sometimes")],
)
def test_bad_batch_settings_are_refused_by_name(key: str, value: Any) -> None:
    from pydantic import ValidationError

    from adaptlab.config import EvaluationConfig

    with pytest.raises(ValidationError, match=key):
        EvaluationConfig.model_validate({key: value})
