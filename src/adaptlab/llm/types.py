"""What flows between a generative strategy, the runner and a backend.

A :class:`ChatRequest` is fully rendered (messages plus sampling parameters), so
its hash is the response-cache key; a :class:`ChatResponse` carries the exact
token usage the provider reported and the latency of the call that produced it.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant"
    content: str


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters; part of the cache key."""

    temperature: float = 0.0
    max_tokens: int = 256
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # A JSON schema the answer must follow (structured output); backends that
    # support it pass it to the provider, the strategy validates it either way.
    json_schema: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[Message, ...]
    params: GenerationParams = field(default_factory=GenerationParams)
    # Index of a repeated sample of the same prompt (consistency runs): sample 1
    # must not be answered from sample 0's cache entry.
    sample: int = 0

    def prompt_text(self) -> str:
        """The request as one string, for token estimates and display."""
        return "\n\n".join(f"[{m.role}]\n{m.content}" for m in self.messages)

    def cache_key(self, identity: dict[str, Any]) -> str:
        """Hash of the model identity, the parameters, the messages and the sample."""
        payload = {
            "model": identity,
            "params": self.params.as_dict(),
            "messages": [[m.role, m.content] for m in self.messages],
            "sample": self.sample,
        }
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False).encode()
        return hashlib.sha256(blob).hexdigest()


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cached_input_tokens: int = 0  # part of input_tokens (OpenAI's convention)
    exact: bool = True  # False when the provider reported none and these are estimates


@dataclass(frozen=True)
class ChatResponse:
    text: str
    usage: Usage
    latency_ms: float
    finish_reason: str | None = None
    attempts: int = 1  # 1 + retries it took
    from_cache: bool = False


class LLMCallError(Exception):
    """A failed call. ``transient`` ones are retried; the rest stop the candidate."""

    transient: bool = False

    def __init__(self, message: str, *, kind: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.kind = kind  # "rate_limit", "server", "timeout", "connection", "malformed", ...
        self.retry_after = retry_after


class TransientError(LLMCallError):
    """Worth retrying: 408/409/429/5xx, timeouts, dropped connections, broken bodies."""

    transient = True


class PermanentError(LLMCallError):
    """Retrying cannot help: a bad key, an unknown model, a request the API refuses."""


def retry_after_seconds(headers: Mapping[str, str] | Any) -> float | None:
    """Seconds to wait from ``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date)."""
    if headers is None:
        return None
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())
