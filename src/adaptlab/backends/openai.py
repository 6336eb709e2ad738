"""OpenAI and every OpenAI-compatible server (vLLM, Ollama, llama.cpp, LM Studio, Azure).

Talks through the official ``openai`` client with its own retries switched off:
the runner retries (so it can count retries, honour Retry-After across all
workers and never pay twice). One :meth:`execute` is one HTTP attempt.

What is sent follows the model's :class:`~adaptlab.llm.prices.Capabilities`: a
reasoning model (o-series, gpt-5) gets ``max_completion_tokens`` with room for its
hidden reasoning and no ``temperature``/``top_p``. Errors are classified by their
code and param (:mod:`adaptlab.llm.errors`), and the usage block is checked where it
is read (:func:`~adaptlab.llm.types.checked_usage`).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.backends import withheld_key_fix
from adaptlab.backends.base import GenerativeBackend
from adaptlab.core.errors import MissingDependencyError
from adaptlab.llm.errors import classify
from adaptlab.llm.keys import redact
from adaptlab.llm.prices import lookup_capabilities
from adaptlab.llm.tokens import estimate_tokens, openai_token_count
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
)

if TYPE_CHECKING:
    from adaptlab.config import LLMConfig

_TRANSIENT_STATUS = {408, 409, 429}
# Models that take max_completion_tokens and refuse max_tokens (reasoning models).
_COMPLETION_TOKENS_PREFIXES = ("o1", "o3", "o4", "gpt-5")
# Statuses of errors a provider sends about the request, not about the key or the model.
_HINTS = {
    400: "the provider refused the request as sent (its message says why); "
    "'adaptlab prompt render -c NAME' shows what is sent",
    422: "the provider refused the request as sent (its message says why); "
    "'adaptlab prompt render -c NAME' shows what is sent",
    401: "check the key (OPENAI_API_KEY or api_key_env) and base_url",
    403: "the key has no access to this model: check its project and permissions",
    404: "check 'name' under llms: in adaptlab.yaml (and base_url)",
}


class OpenAIBackend(GenerativeBackend):
    name: ClassVar[str] = "openai"
    needs_key: ClassVar[bool] = True
    key_env_var: ClassVar[str | None] = "OPENAI_API_KEY"
    key_url: ClassVar[str | None] = "https://api.openai.com/v1"
    key_url_env_var: ClassVar[str | None] = "OPENAI_BASE_URL"
    constrained: ClassVar[frozenset[str]] = frozenset({"choices", "schema"})

    def __init__(self, config: LLMConfig, api_key: str | None = None) -> None:
        super().__init__(config, api_key)
        # False once the server refused response_format: later requests go without it.
        self._structured = True
        try:
            import openai
        except ImportError:
            raise MissingDependencyError("openai", "local") from None
        self._openai = openai
        self._client: Any = None
        self.capabilities = lookup_capabilities(config.name)

    def _get_client(self) -> Any:
        # Created lazily inside the running event loop (httpx binds to it).
        if self._client is None:
            self._client = self._openai.AsyncOpenAI(
                # Never empty (the client refuses that), never read by the client itself
                # from the environment: a key goes only where load_llm allowed it.
                api_key=self._api_key or "not-needed",
                base_url=self.config.base_url,
                max_retries=0,
                timeout=self.config.timeout_s,
                http_client=_aiohttp_client(self._openai),
            )
        return self._client

    async def aclose(self) -> None:
        # The client's connections belong to the event loop that made them.
        if self._client is not None:
            client, self._client = self._client, None
            await client.close()

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        """The ``/v1/chat/completions`` body this backend sends for ``request`` (also a
        batch file's line body)."""
        p = request.params
        caps = self.capabilities
        body: dict[str, Any] = {
            "model": self.config.name,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
        }
        sampling = caps.accepts_temperature and p.temperature is not None
        if sampling:
            body["temperature"] = p.temperature
        if caps.reasoning or self.config.name.startswith(_COMPLETION_TOKENS_PREFIXES):
            body["max_completion_tokens"] = caps.output_room(p.max_tokens)
        else:
            body["max_tokens"] = p.max_tokens
        if p.top_p is not None and sampling:
            body["top_p"] = p.top_p
        if p.seed is not None:
            body["seed"] = p.seed
        if p.stop:
            body["stop"] = list(p.stop)
        schema = choice_schema(p.choices) if p.choices else p.json_schema
        if schema is not None and self._structured:
            spec: dict[str, Any] = {"name": "answer", "schema": schema}
            if p.choices or strict_schema(schema):
                # Strict structured outputs: the server decodes within the schema.
                spec["strict"] = True
            body["response_format"] = {"type": "json_schema", "json_schema": spec}
        return body

    def count_tokens(self, request: ChatRequest) -> tuple[int, bool]:
        n, exact = openai_token_count(
            self.config.name, [(m.role, m.content) for m in request.messages]
        )
        return int(n), bool(exact)

    async def execute(self, request: ChatRequest) -> ChatResponse:
        client = self._get_client()
        body = self.payload(request)
        t0 = time.perf_counter()
        try:
            if self.config.stream:
                text, usage, finish = await self._stream(client, body)
            else:
                # client.post skips the SDK's walk of the body through its TypedDict
                # annotations (about 1 ms of CPU a request); payload already sends the
                # API's own field names, so that walk has nothing to change.
                resp = await client.post(
                    "/chat/completions", body=body, cast_to=self._openai.types.chat.ChatCompletion
                )
                text, usage, finish = read_completion(resp, body)
        except LLMCallError:
            raise
        except Exception as exc:  # mapped below; anything unknown is re-raised
            if "response_format" in body and self._refuses_structured(exc):
                # The model has no structured outputs: ask again in free text (a 400 is
                # not billed), and send none from now on; the strategy parses the text.
                self._structured = False
                self.notes.append(
                    f"'{self.config.name}' refused structured outputs (response_format; "
                    f"{redact(str(exc))[:200]}); its answers are free text, read by the "
                    "free-text parser"
                )
                return await self.execute(request)
            raise self._map_error(exc) from None
        return ChatResponse(
            text=text,
            usage=usage,
            latency_ms=(time.perf_counter() - t0) * 1000,
            finish_reason=finish,
        )

    async def _stream(self, client: Any, body: dict[str, Any]) -> tuple[str, Usage, str | None]:
        stream = await client.chat.completions.create(
            **body, stream=True, stream_options={"include_usage": True}
        )
        parts: list[str] = []
        finish: str | None = None
        usage: Any = None
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage
            for choice in chunk.choices or []:
                if choice.delta is not None and choice.delta.content:
                    parts.append(choice.delta.content)
                if choice.finish_reason:
                    finish = choice.finish_reason
        if finish is None:
            # The stream ended before its last chunk: the answer may be cut off.
            raise TransientError("the stream ended without a finish_reason", kind="truncated")
        text = "".join(parts)
        return text, _usage(usage, body, text), finish

    def _map_error(self, exc: Exception) -> LLMCallError | Exception:
        oa = self._openai
        msg = redact(f"{exc.__class__.__name__}: {exc}")
        if isinstance(exc, oa.APITimeoutError):
            return TransientError(msg, kind="timeout")
        if isinstance(exc, oa.APIConnectionError):
            return TransientError(msg, kind="connection")
        if isinstance(exc, oa.APIStatusError):
            status = exc.status_code
            retry_after = retry_after_seconds(exc.response.headers)
            known = self._classify(exc, status)
            if known is not None:
                return known
            if status == 429:
                return TransientError(msg, kind="rate_limit", retry_after=retry_after)
            if status in _TRANSIENT_STATUS or status >= 500:
                return TransientError(msg, kind="server", retry_after=retry_after)
            hint = _HINTS.get(status)
            if status in (401, 403):
                # The user's key was withheld from this server: say how to bind it here.
                hint = withheld_key_fix(self.config, sent=self._api_key is not None) or hint
            return PermanentError(
                f"HTTP {status} from {self.config.name}: {msg}",
                kind="refused",
                fix=f"{hint}; answers so far are cached" if hint else None,
            )
        if isinstance(exc, oa.APIResponseValidationError):
            return TransientError(msg, kind="malformed")
        if isinstance(exc, oa.APIError):
            # An error event inside a 200 stream (``data: {"error": …}``): the server
            # failed mid-answer, which a retry may fix, unless its code says otherwise.
            known = self._classify(exc, None)
            return known or TransientError(msg, kind="server")
        if isinstance(exc, ValueError):
            # A body that is not the JSON it claims to be (JSONDecodeError is a ValueError).
            return TransientError(msg, kind="malformed")
        # The HTTP layer's own errors (a connection cut mid-stream) surface unwrapped
        # while a stream is read: httpx (or its fork) by default, aiohttp with the extra.
        if type(exc).__module__.split(".")[0].startswith(("httpx", "httpcore", "aiohttp")):
            return TransientError(msg, kind="truncated")
        return exc

    def _refuses_structured(self, exc: Exception) -> bool:
        """A 400/422 whose param or message names response_format or json_schema."""
        if not isinstance(exc, self._openai.APIStatusError) or exc.status_code not in (400, 422):
            return False
        said = f"{getattr(exc, 'param', '') or ''} {exc.message}".lower()
        return "response_format" in said or "json_schema" in said

    def _classify(self, exc: Any, status: int | None) -> LLMCallError | None:
        body = exc.body if isinstance(exc.body, dict) else {}
        message = body.get("message") if isinstance(body.get("message"), str) else exc.message
        return classify(
            provider="openai",
            model=self.config.name,
            status=status,
            code=getattr(exc, "code", None),
            param=getattr(exc, "param", None),
            etype=getattr(exc, "type", None),
            message=redact(str(message)),
        )


def strict_schema(schema: dict[str, Any]) -> bool:
    """Whether OpenAI's strict mode takes ``schema`` as it is: every object lists all its
    properties as required and sets ``additionalProperties: false`` (OpenAI, "Structured
    Outputs", supported schemas). A schema that does not is sent without ``strict``."""
    if not isinstance(schema, dict):
        return True
    if schema.get("type") == "object" or "properties" in schema:
        props = schema.get("properties") or {}
        if schema.get("additionalProperties") is not False:
            return False
        if set(schema.get("required") or []) != set(props):
            return False
    children: list[Any] = list((schema.get("properties") or {}).values())
    for key in ("items", "anyOf", "$defs", "definitions"):
        value = schema.get(key)
        if isinstance(value, dict):
            children += list(value.values()) if key in ("$defs", "definitions") else [value]
        elif isinstance(value, list):
            children += value
    return all(strict_schema(c) for c in children if isinstance(c, dict))


def _aiohttp_client(openai: Any) -> Any:
    """The SDK's aiohttp transport where ``openai[aiohttp]`` is installed, else None (httpx).

    Measured with bench/llm_throughput.py: httpx's connection pool spends about 1 ms of
    CPU a request scanning its connections, which a 32-way run cannot afford.
    """
    factory = getattr(openai, "DefaultAioHttpClient", None)
    if factory is None:
        return None
    try:
        return factory()
    except RuntimeError:  # the aiohttp extra is not installed
        return None


def _usage(u: Any, body: dict[str, Any], text: str) -> Usage:
    """The usage block as reported, repaired (and marked not exact) where it cannot be true;
    estimated for servers that report none."""

    def prompt() -> int:
        return estimate_tokens("\n".join(m["content"] for m in body["messages"]))

    def answer() -> int:
        return estimate_tokens(text)

    if u is None:
        return Usage(prompt(), answer(), exact=False)
    details = _field(u, "prompt_tokens_details")
    cached = _field(details, "cached_tokens") if details is not None else None
    return checked_usage(
        _field(u, "prompt_tokens"),
        _field(u, "completion_tokens"),
        cached,
        estimate_input=prompt,
        estimate_output=answer,
    )


def _field(obj: Any, name: str) -> Any:
    # The client builds usage without validating it: a field may hold anything.
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)


def read_completion(resp: Any, body: dict[str, Any]) -> tuple[str, Usage, str | None]:
    """(answer text, usage, finish reason) of a chat completion sent as ``body``; raises
    :class:`~adaptlab.llm.types.TransientError` for a response without choices."""
    if isinstance(resp, str) or not getattr(resp, "choices", None):
        raise TransientError("the response has no choices", kind="malformed")
    choice = resp.choices[0]
    text = (choice.message.content if choice.message is not None else None) or ""
    return text, _usage(resp.usage, body, text), choice.finish_reason
