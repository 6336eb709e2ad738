"""Anthropic's Messages API through the official ``anthropic`` client.

The client's own retries are off: one :meth:`AnthropicBackend.execute` is one
HTTP attempt, and the runner retries (so it can count retries, honour
Retry-After across all workers and never pay twice).

Conventions shared with the OpenAI backend, so runs compare across providers:

* ``Usage.input_tokens`` counts *all* prompt tokens, cached ones included (OpenAI
  semantics). Anthropic reports ``input_tokens`` *excluding* cache reads and
  writes, so the total is ``input_tokens + cache_read_input_tokens +
  cache_creation_input_tokens``; ``Usage.cached_input_tokens`` is the cache reads.
* ``finish_reason`` uses OpenAI's words: ``end_turn``/``stop_sequence`` become
  ``"stop"``, ``max_tokens`` becomes ``"length"``, ``refusal`` becomes
  ``"content_filter"``, ``tool_use`` becomes ``"tool_calls"``.
* System messages go to the ``system`` parameter (joined by blank lines when
  there are several). ``max_tokens`` and ``stop`` (as ``stop_sequences``) are sent.
* ``temperature`` and ``top_p`` are *not* sent. The client (anthropic>=1) dropped
  them from its methods because current Claude models do not take sampling
  parameters (some answer 400 to any value), and API version 2026-10-21, which
  anthropic 2.x sends, removed them. They stay in the cache key all the same.
* Errors are read by their type and message too (:mod:`adaptlab.llm.errors`): a
  billing error is "no quota left", "prompt is too long" concerns one input, and a
  400 that names a field says which. The usage block is checked where it is read.
* ``seed`` has no Anthropic equivalent. A constrained answer (``choices``, the enum of
  :func:`~adaptlab.llm.types.choice_schema`) or a ``json_schema`` is asked for as a tool
  call: one tool, ``answer``, whose input schema is that schema, and ``tool_choice``
  naming it; the tool's input, as JSON, is the answer's text (the strategy still
  validates it against the schema).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.backends import withheld_key_fix
from adaptlab.backends.base import GenerativeBackend
from adaptlab.llm.errors import classify
from adaptlab.llm.keys import redact
from adaptlab.llm.tokens import estimate_tokens
from adaptlab.llm.types import (
    ChatRequest,
    ChatResponse,
    LLMCallError,
    PermanentError,
    TransientError,
    Usage,
    checked_usage,
    choice_schema,
    retry_after_seconds,
    token_count,
)

if TYPE_CHECKING:
    import anthropic
    from anthropic.types import Message, MessageParam

    from adaptlab.config import LLMConfig

# The client refuses to start without a key; a server of the user's own (base_url
# set) may need none, and load_llm gives a key only to an endpoint allowed to have it.
_NO_KEY = "not-needed"
_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "refusal": "content_filter",
    "tool_use": "tool_calls",
}
#: The tool a constrained answer is asked for through.
ANSWER_TOOL = "answer"
# Error types the API sends inside a 200 stream (``event: error``) that a retry may fix.
_TRANSIENT_TYPES = {"overloaded_error", "api_error", "rate_limit_error", "timeout_error"}


class AnthropicBackend(GenerativeBackend):
    name: ClassVar[str] = "anthropic"
    needs_key: ClassVar[bool] = True
    key_env_var: ClassVar[str | None] = "ANTHROPIC_API_KEY"
    key_url: ClassVar[str | None] = "https://api.anthropic.com"
    key_url_env_var: ClassVar[str | None] = "ANTHROPIC_BASE_URL"
    constrained: ClassVar[frozenset[str]] = frozenset({"choices", "schema"})

    def __init__(self, config: LLMConfig, api_key: str | None = None) -> None:
        super().__init__(config, api_key)
        self._client: anthropic.AsyncAnthropic | None = None

    def _get_client(self) -> anthropic.AsyncAnthropic:
        # Created on first use, inside the running event loop its connections bind to.
        if self._client is None:
            import anthropic

            base_url = self.config.base_url
            if base_url is not None:
                # The client appends /v1/messages itself; an OpenAI-style ".../v1"
                # would otherwise become ".../v1/v1/messages".
                base_url = base_url.rstrip("/").removesuffix("/v1")
            self._client = anthropic.AsyncAnthropic(
                # Always explicit: the client would otherwise look for credentials
                # in the environment and in profile files of its own.
                api_key=self._api_key or _NO_KEY,
                base_url=base_url,
                max_retries=0,
                timeout=self.config.timeout_s,
            )
        return self._client

    async def execute(self, request: ChatRequest) -> ChatResponse:
        client = self._get_client()
        kwargs = self.arguments(request)
        t0 = time.perf_counter()
        opened = False  # the stream's response began: a transport error now cuts it off
        try:
            if self.config.stream:
                async with client.messages.stream(**kwargs) as stream:
                    opened = True
                    try:
                        message: Message = await stream.get_final_message()
                    except AssertionError:
                        # The client asserts that a message_start event arrived.
                        raise TransientError(
                            f"the stream from {self.model_id} carried no message",
                            kind="malformed",
                        ) from None
                if message.stop_reason is None:
                    # The stream ended before message_delta/message_stop: cut off.
                    raise TransientError(
                        f"the stream from {self.model_id} ended before its last event",
                        kind="truncated",
                    )
            else:
                message = await client.messages.create(**kwargs)
            text, usage, finish = read_message(message, request)
        except LLMCallError:
            raise
        except Exception as exc:
            raise self._map_error(exc, mid_stream=opened) from None
        return ChatResponse(
            text=text,
            usage=usage,
            latency_ms=(time.perf_counter() - t0) * 1000,
            finish_reason=finish,
        )

    def arguments(self, request: ChatRequest) -> dict[str, Any]:
        """The ``messages.create`` keyword arguments this backend sends for ``request``
        (also a Message Batches request's ``params``)."""
        import anthropic
        from anthropic.types import AssistantMessageParam, UserMessageParam

        system: list[str] = []
        messages: list[MessageParam] = []
        for m in request.messages:
            if m.role == "system":
                system.append(m.content)
            elif m.role == "user":
                messages.append(UserMessageParam(role="user", content=m.content))
            elif m.role == "assistant":
                messages.append(AssistantMessageParam(role="assistant", content=m.content))
            else:
                raise PermanentError(
                    f"message role '{m.role}' is not one Anthropic accepts "
                    "(use 'system', 'user' or 'assistant')",
                    kind="refused",
                )
        p = request.params
        args: dict[str, Any] = {
            "model": self.model_id,
            "max_tokens": p.max_tokens,
            "messages": messages,
            "system": "\n\n".join(system) if system else anthropic.omit,
            "stop_sequences": list(p.stop) if p.stop else anthropic.omit,
        }
        schema = choice_schema(p.choices) if p.choices else p.json_schema
        if schema is not None:
            args["tools"] = [
                {
                    "name": ANSWER_TOOL,
                    "description": "Give your answer: its input is the whole answer.",
                    "input_schema": schema,
                }
            ]
            args["tool_choice"] = {"type": "tool", "name": ANSWER_TOOL}
        return args

    def _map_error(self, exc: Exception, *, mid_stream: bool = False) -> Exception:
        """The adaptlab error for an exception of the client; ``mid_stream``: raised
        while reading a stream whose response had begun."""
        import anthropic
        import httpx2

        name = exc.__class__.__name__
        where = f"{self.model_id} at {self.config.base_url or 'api.anthropic.com'}"
        msg = redact(f"{name} from {where}: {exc}")
        if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
            return TransientError(
                redact(f"{where} did not answer within {self.config.timeout_s:g} s ({name})"),
                kind="timeout",
            )
        if isinstance(exc, anthropic.APIConnectionError):
            # anthropic 2 wraps a transport error raised while reading an opened stream
            # as APIConnectionError; earlier clients let it through (below).
            return TransientError(msg, kind="truncated" if mid_stream else "connection")
        if isinstance(exc, httpx2.TransportError):
            # The client lets transport errors raised while reading a stream through.
            return TransientError(msg, kind="truncated" if self.config.stream else "connection")
        if isinstance(exc, anthropic.APIStatusError):
            return self._map_status(exc, where, msg)
        if isinstance(exc, anthropic.APIResponseValidationError | ValueError):
            # A body that is not the JSON it claims to be (JSONDecodeError is a ValueError).
            return TransientError(msg, kind="malformed")
        return exc

    def _map_status(self, exc: anthropic.APIStatusError, where: str, msg: str) -> LLMCallError:
        status = exc.status_code
        retry_after = retry_after_seconds(exc.response.headers)
        known = classify(
            provider="anthropic",
            model=self.model_id,
            status=status if status >= 400 else None,
            code=exc.error_code,
            param=None,
            etype=exc.type,
            message=redact(exc.api_message or str(exc)),
        )
        if known is not None:
            return known
        if status < 400:
            # An ``event: error`` inside a 200 stream, e.g. overloaded mid-answer.
            if exc.type in _TRANSIENT_TYPES:
                kind = "rate_limit" if exc.type == "rate_limit_error" else "server"
                return TransientError(msg, kind=kind, retry_after=retry_after)
            return PermanentError(msg, kind="refused")
        if status == 429:
            return TransientError(msg, kind="rate_limit", retry_after=retry_after)
        if status in (408, 409) or status >= 500:
            # 529 is Anthropic's "overloaded": the service, not the request.
            return TransientError(msg, kind="server", retry_after=retry_after)
        detail = redact(exc.api_message or str(exc))
        var = self.config.api_key_env or self.key_env_var
        withheld = withheld_key_fix(self.config, sent=self._api_key is not None)
        if status == 401:
            text = f"Anthropic refused the API key (HTTP 401) for {where}: {detail}"
            fix = withheld or f"check {var} (environment or keys file)"
        elif status == 403:
            text = f"the API key has no access to {where} (HTTP 403): {detail}"
            fix = withheld or "check the key's workspace and permissions"
        elif status == 404:
            text = (
                f"model '{self.model_id}' was not found (HTTP 404) at "
                f"{self.config.base_url or 'api.anthropic.com'}: {detail}"
            )
            fix = "check 'name' under llms: in adaptlab.yaml"
        else:
            text = f"Anthropic refused the request (HTTP {status}) for {where}: {detail}"
            fix = (
                "the provider refused the request as sent (its message says why); "
                "'adaptlab prompt render -c NAME' shows what is sent"
            )
        return PermanentError(text, kind="refused", fix=f"{fix}; answers so far are cached")

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()


def read_message(message: Message, request: ChatRequest) -> tuple[str, Usage, str | None]:
    """(answer text, usage, stop reason) of an Anthropic message answering ``request``."""
    content = getattr(message, "content", None)
    usage = getattr(message, "usage", None)
    if not isinstance(content, list) or usage is None:
        raise TransientError("the response is not a Messages API message", kind="malformed")
    text = "".join(
        str(getattr(block, "text", "")) for block in content if getattr(block, "type", "") == "text"
    )
    for block in content:
        if getattr(block, "type", "") == "tool_use" and getattr(block, "name", "") == ANSWER_TOOL:
            # A constrained answer: the tool's input is the answer.
            text = json.dumps(getattr(block, "input", None), ensure_ascii=False)
    tokens = _usage(usage, request, text)
    stop = message.stop_reason
    return text, tokens, _FINISH.get(stop, stop) if stop is not None else None


def _usage(usage: Any, request: ChatRequest, text: str) -> Usage:
    """All prompt tokens (fresh + cache reads + cache writes) and the answer's, checked:
    the client does not validate the block, and a proxy may send anything in it."""

    fresh = token_count(getattr(usage, "input_tokens", None))
    read_raw = getattr(usage, "cache_read_input_tokens", None)
    write_raw = getattr(usage, "cache_creation_input_tokens", None)
    read, write = token_count(read_raw), token_count(write_raw)
    odd = (read_raw is not None and read is None) or (write_raw is not None and write is None)
    total = None if fresh is None else fresh + (read or 0) + (write or 0)
    tokens = checked_usage(
        total,
        getattr(usage, "output_tokens", None),
        read or 0,
        estimate_input=lambda: estimate_tokens(request.prompt_text()),
        estimate_output=lambda: estimate_tokens(text),
    )
    if odd and tokens.exact:
        return Usage(tokens.input_tokens, tokens.output_tokens, tokens.cached_input_tokens, False)
    return tokens
