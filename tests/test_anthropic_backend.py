"""AnthropicBackend against the fake server: the official client over real HTTP."""

from __future__ import annotations

import asyncio
import email.utils
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import pytest

from adaptlab.backends import load_llm
from adaptlab.backends.anthropic import AnthropicBackend
from adaptlab.config import LLMConfig
from adaptlab.llm.types import (
    ChatRequest,
    ChatResponse,
    GenerationParams,
    LLMCallError,
    Message,
    PermanentError,
    TransientError,
    retry_after_seconds,
)
from tests.fakes import FakeLLMServer, FaultPlan
from tests.keyfile import bind_key

KEY = "sk-ant-test-SECRET-4242"
MODEL = "claude-haiku-4-5"
REQUEST = ChatRequest(
    messages=(
        Message("system", "You sort support tickets."),
        Message("user", "My parcel never arrived and tracking shows nothing"),
    ),
    params=GenerationParams(temperature=0.0, max_tokens=64),
)
# Words + 3 per message, the system prompt counting as one.
PROMPT_TOKENS = (4 + 3) + (8 + 3)
ANSWER = "ok: My parcel never arrived and"


@pytest.fixture
def server() -> Iterator[FakeLLMServer]:
    with FakeLLMServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def api_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ADAPTLAB_KEYS_FILE", str(tmp_path / "keys.yaml"))


def _backend(server: FakeLLMServer, **config: Any) -> AnthropicBackend:
    # The key goes to the fake server because the keys file binds it there.
    bind_key("ANTHROPIC_API_KEY", server.root_url)
    llm = load_llm(LLMConfig(backend="anthropic", name=MODEL, base_url=server.root_url, **config))
    assert isinstance(llm, AnthropicBackend)
    return llm


def _run(backend: AnthropicBackend, request: ChatRequest = REQUEST) -> ChatResponse:
    async def go() -> ChatResponse:
        try:
            return await backend.execute(request)
        finally:
            await backend.aclose()

    return asyncio.run(go())


def _fail(backend: AnthropicBackend, request: ChatRequest = REQUEST) -> LLMCallError:
    with pytest.raises(LLMCallError) as info:
        _run(backend, request)
    assert KEY not in str(info.value)
    return info.value


def test_registered_with_its_key_variable() -> None:
    assert AnthropicBackend.name == "anthropic"
    assert AnthropicBackend.needs_key
    assert AnthropicBackend.key_env_var == "ANTHROPIC_API_KEY"


@pytest.mark.parametrize("stream", [False, True])
def test_text_usage_and_system_prompt(server: FakeLLMServer, stream: bool) -> None:
    resp = _run(_backend(server, stream=stream))
    assert resp.text == ANSWER
    assert resp.usage.input_tokens == PROMPT_TOKENS
    assert resp.usage.output_tokens == len(ANSWER.split())
    assert resp.usage.cached_input_tokens == 0
    assert resp.finish_reason == "stop"
    assert resp.latency_ms > 0

    (call,) = server.calls
    assert call.api == "anthropic" and call.stream is stream
    assert call.model == MODEL
    assert call.system == "You sort support tickets."
    assert [m["role"] for m in call.messages] == ["user"]
    assert call.body["max_tokens"] == 64
    assert "stop_sequences" not in call.body
    assert call.key_present and KEY not in repr(call)
    assert call.headers["x-stainless-retry-count"] == "0"


def test_cached_tokens_count_in_the_prompt_total() -> None:
    # Anthropic reports input_tokens without cache reads; Usage counts all of them.
    with FakeLLMServer(cached_tokens=5) as srv:
        resp = _run(_backend(srv))
    assert resp.usage.input_tokens == PROMPT_TOKENS
    assert resp.usage.cached_input_tokens == 5


def test_sampling_params_stop_sequences_and_length(server: FakeLLMServer) -> None:
    params = GenerationParams(temperature=0.7, max_tokens=3, top_p=0.9, stop=("never",))
    request = ChatRequest(REQUEST.messages, params)
    resp = _run(_backend(server), request)
    body = server.calls[0].body
    assert body["stop_sequences"] == ["never"]
    # anthropic>=1 dropped sampling parameters: current models refuse them.
    assert not {"temperature", "top_p", "top_k"} & set(body)
    assert resp.text == "ok: My parcel "
    assert resp.finish_reason == "stop"
    request = ChatRequest(REQUEST.messages, GenerationParams(max_tokens=2))
    resp = _run(_backend(server, stream=True), request)
    assert resp.text == "ok: My"
    assert resp.finish_reason == "length"


def test_base_url_with_v1_and_no_key_for_a_local_server(
    server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    llm = load_llm(LLMConfig(backend="anthropic", name=MODEL, base_url=server.base_url))
    assert isinstance(llm, AnthropicBackend)
    assert _run(llm).text == ANSWER
    assert server.calls[0].path == "/v1/messages"
    assert server.calls[0].key_present  # a placeholder: the client insists on one


def test_client_is_rebuilt_after_aclose(server: FakeLLMServer) -> None:
    backend = _backend(server)
    assert _run(backend).text == ANSWER
    assert _run(backend).text == ANSWER  # a second event loop, a fresh client
    assert len(server.calls) == 2


@pytest.mark.parametrize(
    ("fault", "kind", "retry_after"),
    [
        ("429", "rate_limit", 0.05),
        ("429:0.25", "rate_limit", 0.25),
        ("500", "server", None),
        ("503:2", "server", 2.0),
        ("529", "server", None),
        ("408", "server", None),
        ("malformed", "malformed", None),
        ("drop", "connection", None),
        ("truncated", "connection", None),
    ],
)
def test_transient_faults(fault: str, kind: str, retry_after: float | None) -> None:
    with FakeLLMServer(faults=lambda call: fault) as srv:
        err = _fail(_backend(srv))
        assert len(srv.calls) == 1  # the client itself never retries
    assert isinstance(err, TransientError)
    assert (err.kind, err.retry_after) == (kind, retry_after)


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        ("truncated", "truncated"),  # connection cut mid-stream
        ("incomplete", "truncated"),  # clean end, but no message_delta / message_stop
        ("stream-error", "server"),  # event: error, overloaded_error
        ("malformed", "malformed"),
        ("529:1", "server"),
    ],
)
def test_transient_stream_faults(fault: str, kind: str) -> None:
    with FakeLLMServer(faults=lambda call: fault) as srv:
        err = _fail(_backend(srv, stream=True))
    assert isinstance(err, TransientError)
    assert err.kind == kind


def test_timeout() -> None:
    with FakeLLMServer(faults=FaultPlan({0: "timeout:5"})) as srv:
        t0 = time.perf_counter()
        err = _fail(_backend(srv, timeout_s=0.3))
        assert time.perf_counter() - t0 < 2
    assert isinstance(err, TransientError)
    assert err.kind == "timeout"
    assert "0.3 s" in str(err)


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("401", "ANTHROPIC_API_KEY"),
        ("403", "permissions"),
        ("404", f"model '{MODEL}' was not found"),
        ("400", "HTTP 400"),
        ("422", "HTTP 422"),
    ],
)
def test_permanent_faults(fault: str, says: str) -> None:
    with FakeLLMServer(faults=lambda call: fault) as srv:
        err = _fail(_backend(srv))
    assert isinstance(err, PermanentError)
    assert not err.transient
    assert says in f"{err} {err.fix}"


def test_unknown_role_is_refused(server: FakeLLMServer) -> None:
    request = ChatRequest((Message("tool", "x"),))
    err = _fail(_backend(server), request)
    assert isinstance(err, PermanentError)
    assert "tool" in str(err)
    assert server.calls == []


def test_key_is_redacted_from_errors(server: FakeLLMServer) -> None:
    """Whatever a provider echoes back, the key does not reach the error."""
    backend = _backend(server)
    request = httpx2.Request("POST", server.root_url + "/v1/messages")
    body = {"type": "error", "error": {"type": "authentication_error", "message": f"bad {KEY}"}}
    response = httpx2.Response(401, json=body, request=request)
    exc = anthropic.AuthenticationError(f"Error code: 401 - {body}", response=response, body=body)
    err = backend._map_error(exc)
    assert isinstance(err, PermanentError)
    assert KEY not in str(err) and "[redacted]" in str(err)


def test_retry_after_forms() -> None:
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    assert retry_after_seconds({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert retry_after_seconds({}) is None
    assert retry_after_seconds({"retry-after": "soon"}) is None
    later = email.utils.formatdate(time.time() + 30, usegmt=True)
    assert 25 < (retry_after_seconds({"retry-after": later}) or 0) <= 30
