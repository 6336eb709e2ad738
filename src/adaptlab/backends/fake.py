"""``backend: fake``: a chat model that answers from a script, in this process.

For trying a project end to end, and for tests of generative strategies that do not
test HTTP (modelled on inspect_ai's ``mockllm`` and dspy's ``DummyLM``). It opens no
socket, needs no key and has no price: like ``hf`` it counts as self-hosted
(:data:`~adaptlab.llm.prices.SELF_HOSTED_BACKENDS`), so a candidate's cost is the
machine's time. The script is one of

* a list of answers (``answers: [billing, refund]``): the n-th request the model is
  sent gets ``answers[n % len(answers)]``, cycling back to the first after the last
  (counted from 0 per backend; a run builds one per llm for all its candidates, and
  cached or repeated requests are not sent);
* a mapping (``answers: {"parcel never arrived": refund, "*": billing}``): the answer
  of the key equal to the last user message, else of the first key (in file order)
  found inside it (a prompt wraps the input in its template), else of ``"*"``; with
  no match and no ``"*"`` the request fails with a :class:`PermanentError`;
* from Python only, a callable ``respond(request: ChatRequest) -> str``, given to
  :class:`FakeBackend` or, for a whole run, registered by model name with
  :func:`respond_with`. It may raise a :class:`~adaptlab.llm.types.LLMCallError` (an
  :class:`~adaptlab.llm.types.InputError`, a ``TransientError``) to script a failure.

Usage is deterministic: input tokens are :func:`~adaptlab.llm.tokens.estimate_tokens`
of the prompt text, output tokens the same of the answer, and the finish reason is
always ``"stop"``. Sampling parameters (temperature, ``max_tokens``, stop sequences,
a JSON schema) are ignored. The runner's cache, concurrency and retries apply as for
any remote model; the script is part of the cache identity, so a new script is asked
again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.backends.base import GenerativeBackend
from adaptlab.core.errors import ConfigError
from adaptlab.llm.tokens import estimate_tokens
from adaptlab.llm.types import ChatRequest, ChatResponse, PermanentError, Usage

if TYPE_CHECKING:
    from adaptlab.config import LLMConfig

Responder = Callable[[ChatRequest], str]
#: The key of a mapping script's answer to every input no other key matches.
DEFAULT_KEY = "*"

_RESPONDERS: dict[str, Responder] = {}
_RESPONDERS_LOCK = threading.Lock()


@contextlib.contextmanager
def respond_with(model: str, respond: Responder) -> Iterator[None]:
    """Inside the block, every ``backend: fake`` llm named ``model`` (its ``name:``) that
    has no ``answers:`` answers with ``respond(request)``: the Python-only script kind
    for whole runs (``run_project``). Raises ValueError if ``model`` is taken already."""
    with _RESPONDERS_LOCK:
        if model in _RESPONDERS:
            raise ValueError(f"a responder for fake model '{model}' is registered already")
        _RESPONDERS[model] = respond
    try:
        yield
    finally:
        with _RESPONDERS_LOCK:
            _RESPONDERS.pop(model, None)


def _last_user(request: ChatRequest) -> str:
    return next((m.content for m in reversed(request.messages) if m.role == "user"), "")


def _fingerprint(script: Sequence[str] | Mapping[str, str] | Responder) -> str:
    if callable(script):
        module = getattr(script, "__module__", "?")
        return f"callable:{module}.{getattr(script, '__qualname__', '?')}"
    data = list(script.items()) if isinstance(script, Mapping) else list(script)
    return hashlib.sha256(json.dumps(data, ensure_ascii=False).encode()).hexdigest()[:16]


class FakeBackend(GenerativeBackend):
    """Answers from ``config.answers``, or from ``respond`` (see the module docstring).

    Raises :class:`ConfigError` when it has no script at all, or an empty one.
    """

    name: ClassVar[str] = "fake"
    needs_key: ClassVar[bool] = False

    def __init__(
        self,
        config: LLMConfig,
        api_key: str | None = None,
        *,
        respond: Responder | None = None,
    ) -> None:
        super().__init__(config, api_key)
        script: Sequence[str] | Mapping[str, str] | Responder | None = respond
        if script is None:
            script = config.answers
        if script is None:
            with _RESPONDERS_LOCK:
                script = _RESPONDERS.get(config.name)
        if script is None or (not callable(script) and len(script) == 0):
            raise ConfigError(
                f"fake model '{config.name}' has no script to answer from",
                fix="add 'answers:' to it under llms: (a list of answers, or a mapping "
                "from input text to answer with '*' as the default)",
            )
        self.script = script
        self.sent = 0  # requests answered so far: a list script's position
        self._lock = threading.Lock()

    def answer(self, request: ChatRequest) -> str:
        """The scripted answer to one request (advances a list script by one)."""
        script = self.script
        if callable(script):
            return str(script(request))
        if isinstance(script, Mapping):
            last = _last_user(request)
            if last in script:
                return script[last]
            found = next((v for k, v in script.items() if k and k in last), None)
            if found is not None:
                return found
            if DEFAULT_KEY in script:
                return script[DEFAULT_KEY]
            raise PermanentError(
                f"fake model '{self.model_id}' has no answer for the input {last[:80]!r}",
                kind="script",
                fix=f"add a key for it under answers:, or a '{DEFAULT_KEY}' default",
            )
        with self._lock:
            n, self.sent = self.sent, self.sent + 1
        return script[n % len(script)]

    def _respond(self, request: ChatRequest) -> ChatResponse:
        t0 = time.perf_counter()
        text = self.answer(request)
        return ChatResponse(
            text=text,
            usage=Usage(self.count_tokens(request)[0], estimate_tokens(text), 0, exact=True),
            latency_ms=(time.perf_counter() - t0) * 1000,
            finish_reason="stop",
        )

    async def execute(self, request: ChatRequest) -> ChatResponse:
        return self._respond(request)

    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        return [self._respond(r) for r in requests]

    def count_tokens(self, request: ChatRequest) -> tuple[int, bool]:
        # Exact by definition: the usage reported is this same count.
        return estimate_tokens(request.prompt_text()), True

    def identity(self) -> dict[str, Any]:
        return {**super().identity(), "script": _fingerprint(self.script)}
