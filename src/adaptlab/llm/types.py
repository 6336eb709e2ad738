"""What flows between a generative strategy, the runner and a backend.

A :class:`ChatRequest` is fully rendered (messages plus sampling parameters), so
its hash is the response-cache key; a :class:`ChatResponse` carries the exact
token usage the provider reported and the latency of the call that produced it.
"""

from __future__ import annotations

import email.utils
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Message:
    role: str  # "system", "user" or "assistant"
    content: str


@dataclass(frozen=True)
class GenerationParams:
    """Sampling parameters; part of the cache key."""

    # None: send no temperature at all (models that refuse the parameter).
    temperature: float | None = 0.0
    max_tokens: int = 256
    top_p: float | None = None
    seed: int | None = None
    stop: tuple[str, ...] = ()
    # A JSON schema the answer must follow (structured output); backends that
    # support it pass it to the provider, the strategy validates it either way.
    json_schema: dict[str, Any] | None = None
    # A closed question: the answer must be one of these strings (constrained answers).
    # A backend with ``constrained = True`` answers :func:`choice_answer` JSON: a local
    # model scores each choice's likelihood, an API constrains its output to the enum
    # of :func:`choice_schema`. Empty: a free answer.
    choices: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        # Left out when unset, so the cache keys of free requests made before the field
        # existed still hold (a paid answer is never asked for twice).
        if not self.choices:
            del out["choices"]
        else:
            out["choices"] = list(self.choices)
        return out


def choice_schema(choices: Sequence[str]) -> dict[str, Any]:
    """The JSON schema of a constrained answer: ``{"label": one of choices}``.

    Strict-mode compatible (OpenAI structured outputs: every property required,
    ``additionalProperties: false``); also the input schema of Anthropic's answer tool.
    """
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(choices)}},
        "required": ["label"],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class ChoiceScores:
    """A local model's scores of each choice as the answer (see :func:`choice_answer`).

    ``logprobs[i]``: the summed natural-log probability of choice ``i``'s tokens (the
    answer's text and the chat template's end-of-turn token) after the prompt;
    ``tokens[i]``: how many tokens that sum covers.
    """

    logprobs: tuple[float, ...]
    tokens: tuple[int, ...]


def choice_answer(label: str, scores: ChoiceScores | None = None) -> str:
    """The text of a constrained answer: ``{"label": …}``, and for a scored answer the
    per-choice ``logprobs`` and ``tokens`` (in the order of ``params.choices``), so the
    response cache keeps them and the strategy can normalise and calibrate them."""
    body: dict[str, Any] = {"label": label}
    if scores is not None:
        body["logprobs"] = [round(x, 6) for x in scores.logprobs]
        body["tokens"] = list(scores.tokens)
    return json.dumps(body, ensure_ascii=False)


def read_choice_answer(text: str, choices: Sequence[str]) -> tuple[str | None, ChoiceScores | None]:
    """(label, scores) of a :func:`choice_answer` text; (None, None) when the text is not
    one (a free-text answer of a model that refused the schema), and scores None when it
    carries none (an API's answer) or they do not fit ``choices``."""
    try:
        body = json.loads(text)
    except ValueError:
        return None, None
    if not isinstance(body, dict) or body.get("label") not in choices:
        return None, None
    label = str(body["label"])
    lps, toks = body.get("logprobs"), body.get("tokens")
    if (
        isinstance(lps, list)
        and isinstance(toks, list)
        and len(lps) == len(toks) == len(choices)
        and all(isinstance(x, int | float) and not isinstance(x, bool) for x in lps)
        and all(isinstance(n, int) and n > 0 for n in toks)
    ):
        return label, ChoiceScores(tuple(float(x) for x in lps), tuple(toks))
    return label, None


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
    # False when the provider reported none, or figures that cannot be true, and these
    # are (partly) estimates.
    exact: bool = True


def token_count(value: object) -> int | None:
    """A provider's token figure as a count, or None when it is none (missing, negative,
    fractional, not a number): a usage block is untrusted input."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, str):
        value = value.strip()
        if not value.isdigit():
            return None
        return int(value)
    if isinstance(value, int):
        return value if value >= 0 else None
    if isinstance(value, float) and math.isfinite(value) and value >= 0 and value.is_integer():
        return int(value)
    return None


def checked_usage(
    input_tokens: object,
    output_tokens: object,
    cached_input_tokens: object = 0,
    *,
    estimate_input: Callable[[], int],
    estimate_output: Callable[[], int],
) -> Usage:
    """Usage from the figures a provider reported, repaired where they cannot be true.

    A missing or impossible input or output count is replaced by an estimate; cached
    tokens that are not a count are taken as 0, and more cached tokens than input tokens
    (a proxy passing another provider's counts through) as all of them. A count that is
    a count but cannot be what was sent or received (:func:`implausible_count`) is kept
    as reported, since it is what the provider bills, but the usage is marked not exact;
    one above :data:`MAX_TOKENS_PER_REQUEST` (more than any context window) is replaced
    by the estimate. Anything repaired or doubted makes the usage not exact, which the
    terminal, the report and ``export results`` mark wherever tokens or cost are shown.
    """
    exact = True
    inp = token_count(input_tokens)
    if inp is None or inp > MAX_TOKENS_PER_REQUEST:
        inp, exact = estimate_input(), False
    elif implausible_count(inp, estimate_input()):
        exact = False
    out = token_count(output_tokens)
    if out is None or out > MAX_TOKENS_PER_REQUEST:
        out, exact = estimate_output(), False
    elif implausible_count(out, estimate_output(), hidden_tokens=True):
        exact = False
    cached = token_count(cached_input_tokens) if cached_input_tokens is not None else 0
    if cached is None:
        cached, exact = 0, False
    if cached > inp:
        cached, exact = inp, False
    return Usage(inp, out, cached, exact)


#: More tokens than any model's context window takes in one request (the largest in
#: 2026 hold 2M): a reported count above it is no count of this request.
MAX_TOKENS_PER_REQUEST = 10_000_000

#: How far a reported count may lie from :func:`~adaptlab.llm.tokens.estimate_tokens`'s
#: estimate (~4 characters a token) before it is doubted. Real tokenizers stay within
#: about 2x of it on prose in any language; 20x leaves room for odd texts.
PLAUSIBLE_RATIO = 20

#: Tokens a provider may add to a prompt beyond its messages (chat template, tool
#: definitions, a system preamble) without the count being doubted.
PROMPT_OVERHEAD_TOKENS = 4096


def implausible_count(reported: int, estimate: int, *, hidden_tokens: bool = False) -> bool:
    """True when a reported token count cannot be the count of a text of ``estimate``
    estimated tokens: 0 for a non-empty text, under 1/:data:`PLAUSIBLE_RATIO` of the
    estimate, or (unless ``hidden_tokens``: an answer may include reasoning tokens that
    are billed but not returned) over :data:`PLAUSIBLE_RATIO` times the estimate plus
    :data:`PROMPT_OVERHEAD_TOKENS`.
    """
    if estimate > 0 and reported == 0:
        return True
    if reported * PLAUSIBLE_RATIO < estimate:
        return True
    return not hidden_tokens and reported > PLAUSIBLE_RATIO * estimate + PROMPT_OVERHEAD_TOKENS


#: ``finish_reason`` of an answer that is an error about its own input (the provider
#: refused that one request); the runner caches it like an answer and the run goes on.
FAILED_FINISH = {"error:filtered": "filtered", "error:too_long": "too_long", "error:error": "error"}


def failure_status(finish_reason: str | None) -> str | None:
    """``filtered``, ``too_long`` or ``error`` for an answer that is no answer, else None.

    A provider's own ``content_filter`` finish (Azure's output filter, an Anthropic
    refusal) counts as filtered.
    """
    if finish_reason == "content_filter":
        return "filtered"
    return FAILED_FINISH.get(finish_reason or "")


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

    def __init__(
        self,
        message: str,
        *,
        kind: str,
        retry_after: float | None = None,
        fix: str | None = None,
    ) -> None:
        super().__init__(message)
        # "rate_limit", "server", "timeout", "connection", "malformed", "quota", "param", ...
        self.kind = kind
        self.retry_after = retry_after
        self.fix = fix  # what the user can do, when the error knows better than its kind


class TransientError(LLMCallError):
    """Worth retrying: 408/409/429/5xx, timeouts, dropped connections, broken bodies."""

    transient = True


class PermanentError(LLMCallError):
    """Retrying cannot help: a bad key, an unknown model, a request the API refuses."""


class InputError(PermanentError):
    """The provider refused this one request for its content (a content filter, a prompt
    longer than the context window, an invalid prompt): the candidate goes on, and this
    input gets a stored prediction with ``status`` (filtered, too_long or error)."""

    def __init__(self, message: str, *, status: str) -> None:
        super().__init__(message, kind=f"input-{status}")
        self.status = status

    def response(self, latency_ms: float = 0.0) -> ChatResponse:
        """The refusal as an answer: the message is its text, nothing was billed."""
        return ChatResponse(
            text=str(self),
            usage=Usage(0, 0, 0, exact=True),
            latency_ms=latency_ms,
            finish_reason=f"error:{self.status}",
        )


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
