"""The fake LLM server, driven by the official openai client over real HTTP.

Each fault is checked against what the SDK actually raises, because the OpenAI
backend's error mapping is written against exactly these behaviours.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import openai
import pytest

from tests.fakes import FakeLLMServer, FaultPlan, fail_first, prompt_tokens

MESSAGES: list[Any] = [
    {"role": "system", "content": "You sort support tickets."},
    {"role": "user", "content": "My parcel never arrived and tracking shows nothing"},
]
# 4 system words + 3, 8 user words + 3.
PROMPT_TOKENS = 18
ANSWER = "ok: My parcel never arrived and"


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


def _client(server: FakeLLMServer, timeout: float = 5.0) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(
        base_url=server.base_url, api_key="test-key-123", max_retries=0, timeout=timeout
    )


async def _complete(server: FakeLLMServer, *, timeout: float = 5.0, **kw: Any) -> Any:
    client = _client(server, timeout)
    try:
        return await client.chat.completions.create(
            model="fake-model", messages=kw.pop("messages", MESSAGES), **kw
        )
    finally:
        await client.close()


async def _stream(server: FakeLLMServer, chunks: list[Any], **kw: Any) -> None:
    """Collect chunks into ``chunks`` (so a test sees what came before an error)."""
    client = _client(server)
    try:
        stream = await client.chat.completions.create(
            model="fake-model", messages=MESSAGES, stream=True, **kw
        )
        async for chunk in stream:
            chunks.append(chunk)
    finally:
        await client.close()


def test_completion_text_usage_and_record(server: FakeLLMServer) -> None:
    resp = asyncio.run(_complete(server, temperature=0, max_tokens=50))
    assert resp.object == "chat.completion"
    assert resp.choices[0].message.content == ANSWER
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage.prompt_tokens == PROMPT_TOKENS
    assert resp.usage.completion_tokens == len(ANSWER.split())
    assert resp.usage.total_tokens == PROMPT_TOKENS + len(ANSWER.split())
    assert resp.usage.prompt_tokens_details.cached_tokens == 0

    (call,) = server.calls
    assert (call.index, call.api, call.model, call.stream) == (0, "openai", "fake-model", False)
    assert call.user_text == MESSAGES[1]["content"]
    assert call.system == MESSAGES[0]["content"]
    assert call.body["max_tokens"] == 50
    assert prompt_tokens(call) == PROMPT_TOKENS
    assert call.key_present and call.fault is None
    # The key is noted as sent, never kept.
    assert "test-key-123" not in repr(server.calls)
    assert "authorization" not in call.headers


def test_stream_with_usage_matches_the_completion(server: FakeLLMServer) -> None:
    chunks: list[Any] = []
    asyncio.run(_stream(server, chunks, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta]
    assert len([d for d in deltas if d]) >= 3  # split into several deltas
    assert "".join(d or "" for d in deltas) == ANSWER
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and finishes.count("stop") == 1
    last = chunks[-1]
    assert last.choices == []
    assert last.usage.prompt_tokens == PROMPT_TOKENS
    assert last.usage.completion_tokens == len(ANSWER.split())
    # Streaming and not, the same prompt has the same key.
    asyncio.run(_complete(server))
    assert server.calls[0].prompt_key == server.calls[1].prompt_key
    assert server.count(server.calls[0].prompt_key) == 2
    assert server.calls[0].stream and not server.calls[1].stream


def test_stream_without_include_usage_sends_no_usage(server: FakeLLMServer) -> None:
    chunks: list[Any] = []
    asyncio.run(_stream(server, chunks))
    assert all(c.usage is None for c in chunks)
    assert chunks[-1].choices[0].finish_reason == "stop"


def test_max_tokens_stop_and_custom_responder() -> None:
    with FakeLLMServer(lambda call: f"label: shipping. Because {call.model}") as srv:
        resp = asyncio.run(_complete(srv, max_tokens=2))
        assert resp.choices[0].message.content == "label: shipping."
        assert resp.choices[0].finish_reason == "length"
        resp = asyncio.run(_complete(srv, stop=["."]))
        assert resp.choices[0].message.content == "label: shipping"
        assert resp.choices[0].finish_reason == "stop"


def test_cached_tokens_are_reported() -> None:
    with FakeLLMServer(cached_tokens=10) as srv:
        resp = asyncio.run(_complete(srv))
    assert resp.usage.prompt_tokens == PROMPT_TOKENS
    assert resp.usage.prompt_tokens_details.cached_tokens == 10


def test_models_endpoint(server: FakeLLMServer) -> None:
    async def go() -> list[str]:
        client = _client(server)
        try:
            return [m.id async for m in client.models.list()]
        finally:
            await client.close()

    assert asyncio.run(go()) == ["fake-model"]


@pytest.mark.parametrize(
    ("fault", "error", "status", "retry_after"),
    [
        ("429", openai.RateLimitError, 429, "0.05"),
        ("429:0.2", openai.RateLimitError, 429, "0.2"),
        ("500", openai.InternalServerError, 500, None),
        ("503:1", openai.InternalServerError, 503, "1"),
        ("401", openai.AuthenticationError, 401, None),
        ("400", openai.BadRequestError, 400, None),
        ("404", openai.NotFoundError, 404, None),
    ],
)
def test_status_faults_raise_the_sdk_errors(
    fault: str, error: type[openai.APIStatusError], status: int, retry_after: str | None
) -> None:
    with FakeLLMServer(faults=lambda call: fault) as srv:
        with pytest.raises(error) as info:
            asyncio.run(_complete(srv))
        assert srv.calls[0].fault == fault
    assert info.value.status_code == status
    assert info.value.response.headers.get("retry-after") == retry_after
    assert isinstance(info.value.body, dict) and info.value.body["message"]


def test_malformed_body_raises_a_bare_json_decode_error() -> None:
    # openai 3.x does not wrap it: a JSONDecodeError (a ValueError) escapes create(),
    # and the same from the stream iterator.
    with FakeLLMServer(faults=lambda call: "malformed") as srv:
        with pytest.raises(json.JSONDecodeError):
            asyncio.run(_complete(srv))
        chunks: list[Any] = []
        with pytest.raises(json.JSONDecodeError):
            asyncio.run(_stream(srv, chunks))
    assert not isinstance(json.JSONDecodeError("x", "", 0), openai.OpenAIError)


def test_truncated_stream_raises_connection_error_after_some_chunks() -> None:
    with FakeLLMServer(faults=lambda call: "truncated") as srv:
        chunks: list[Any] = []
        with pytest.raises(openai.APIConnectionError) as info:
            asyncio.run(_stream(srv, chunks, stream_options={"include_usage": True}))
        assert chunks  # some text arrived first
        assert not isinstance(info.value, openai.APITimeoutError)
        assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)
        # Non-streaming: Content-Length promised more than was sent.
        with pytest.raises(openai.APIConnectionError) as info:
            asyncio.run(_complete(srv))
        assert isinstance(info.value.__cause__, httpx2.RemoteProtocolError)


def test_incomplete_stream_ends_silently_without_finish_reason() -> None:
    with FakeLLMServer(faults=lambda call: "incomplete") as srv:
        chunks: list[Any] = []
        asyncio.run(_stream(srv, chunks, stream_options={"include_usage": True}))
    assert chunks
    assert all(c.choices[0].finish_reason is None for c in chunks)
    assert all(c.usage is None for c in chunks)


def test_error_event_mid_stream_raises_bare_api_error() -> None:
    with FakeLLMServer(faults=lambda call: "stream-error") as srv:
        chunks: list[Any] = []
        with pytest.raises(openai.APIError) as info:
            asyncio.run(_stream(srv, chunks))
    assert chunks
    # Not a status error: there is no status code to map on.
    assert not isinstance(info.value, openai.APIStatusError | openai.APIConnectionError)


def test_timeout_and_drop() -> None:
    with FakeLLMServer(faults=FaultPlan({0: "timeout:5", 1: "drop"})) as srv:
        t0 = time.perf_counter()
        with pytest.raises(openai.APITimeoutError):
            asyncio.run(_complete(srv, timeout=0.3))
        assert time.perf_counter() - t0 < 2
        with pytest.raises(openai.APIConnectionError) as info:
            asyncio.run(_complete(srv))
        assert not isinstance(info.value, openai.APITimeoutError)
        t0 = time.perf_counter()
    # stop() wakes the request still held by the timeout fault.
    assert time.perf_counter() - t0 < 2


def test_fault_plan_by_arrival_index() -> None:
    with FakeLLMServer(faults=FaultPlan({1: "500"})) as srv:
        asyncio.run(_complete(srv))
        with pytest.raises(openai.InternalServerError):
            asyncio.run(_complete(srv))
        asyncio.run(_complete(srv))
        assert [c.fault for c in srv.calls] == [None, "500", None]
        assert [c.index for c in srv.calls] == [0, 1, 2]
        srv.reset()
        assert srv.calls == []
    # A typo in a plan is a 400 (not retried), naming the fault.
    with (
        FakeLLMServer(faults=lambda call: "429x") as srv,
        pytest.raises(openai.BadRequestError, match="unknown fault '429x'"),
    ):
        asyncio.run(_complete(srv))


def test_fail_first_makes_retry_counts_exact() -> None:
    """Three prompts, each failing twice: a client retrying 429s makes 3 calls each."""

    async def go(srv: FakeLLMServer) -> list[str]:
        client = openai.AsyncOpenAI(base_url=srv.base_url, api_key="k", max_retries=3)
        try:
            out = []
            for word in ("alpha", "beta", "gamma"):
                resp = await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": word}]
                )
                out.append(resp.choices[0].message.content or "")
            return out
        finally:
            await client.close()

    with FakeLLMServer(faults=fail_first(2, "429:0.01")) as srv:
        assert asyncio.run(go(srv)) == ["ok: alpha", "ok: beta", "ok: gamma"]
        counts = srv.counts()
    assert sorted(counts.values()) == [3, 3, 3]
    assert [c.fault for c in srv.calls[:3]] == ["429:0.01", "429:0.01", None]


def test_require_key_answers_401_without_one() -> None:
    with FakeLLMServer(require_key=True) as srv:
        req = urllib.request.Request(
            srv.base_url + "/chat/completions",
            data=json.dumps({"model": "m", "messages": MESSAGES}).encode(),
            headers={"Content-Type": "application/json"},
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(req, timeout=5)
        assert info.value.code == 401
        info.value.close()
        assert not srv.calls[0].key_present
        asyncio.run(_complete(srv))  # the client sends one


def test_concurrent_requests_overlap() -> None:
    """64 requests at 200 ms, 32 at a time: two rounds, not 64 sleeps in a row."""

    async def go(srv: FakeLLMServer) -> float:
        client = _client(srv)
        sem = asyncio.Semaphore(32)

        async def one(i: int) -> None:
            async with sem:
                await client.chat.completions.create(
                    model="m", messages=[{"role": "user", "content": f"q{i}"}]
                )

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(64)))
        elapsed = time.perf_counter() - t0
        await client.close()
        return elapsed

    with FakeLLMServer(latency_s=0.2) as srv:
        elapsed = asyncio.run(go(srv))
        assert len(srv.calls) == 64
    assert 0.4 <= elapsed < 2.0  # one after another would take 12.8 s


def test_command_line_prints_base_url_and_serves() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.fakes.fake_llm", "--port", "0", "--latency-ms", "10"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[1],  # tests.fakes imports from the repo root
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("http://127.0.0.1:") and url.endswith("/v1")
        with urllib.request.urlopen(url + "/models", timeout=5) as resp:
            assert json.load(resp)["data"][0]["id"] == "fake-model"
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "Warning" not in err
