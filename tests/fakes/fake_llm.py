"""A real HTTP server that speaks the OpenAI and Anthropic chat protocols, with faults.

Tests start it in a thread and point the official clients at it; the benchmark
starts it as a process, from the repository root (it is a test helper, not part of
the installed package)::

    python -m tests.fakes.fake_llm --port 0 --latency-ms 200

which prints its OpenAI base URL (``http://127.0.0.1:PORT/v1``) on the first line
of stdout and serves until killed. Faking the network rather than the SDK means
the clients' own parsing, streaming and error classes are what the tests see.

Endpoints: ``POST /v1/chat/completions`` (OpenAI, streaming included), ``POST
/v1/embeddings`` (:func:`hashed_embedding` vectors),
``POST /v1/messages`` (Anthropic, streaming included) and ``GET /v1/models``.
Anthropic clients take the root URL (:attr:`FakeLLMServer.root_url`).

Token counts are deterministic so tests can predict them:

* a message costs ``len(content.split()) + 3`` tokens; the prompt is the sum over
  all messages, an Anthropic ``system`` parameter counting as one message;
* the answer costs ``len(answer.split())`` tokens;
* ``cached_tokens`` (default 0) of the prompt are reported as cached: OpenAI's
  ``prompt_tokens`` includes them (``prompt_tokens_details.cached_tokens``),
  Anthropic's ``input_tokens`` excludes them (``cache_read_input_tokens``), as the
  real APIs do.

Answers obey ``max_tokens`` (cut to that many words, ``finish_reason: "length"`` /
``stop_reason: "max_tokens"``) and stop sequences (cut before the first one).

Faults are strings that ``faults(call)`` returns for a request:

``"429"`` / ``"429:0.2"``
    that status with ``Retry-After`` seconds (default 0.05 for 429, none for
    others). Any status works the same way: ``"500"``, ``"503"``, ``"529"``
    (Anthropic's "overloaded"), ``"401"``, ``"400"``, ``"404"``, ``"408"`` …; the
    body is the provider's error JSON.
``"400@content_filter@prompt"`` / ``"429@insufficient_quota"`` / ``"429@rate_limit_exceeded:120"``
    a status with an error ``code`` and optionally a ``param`` (then ``:`` and a
    Retry-After as above): the body carries them with the provider's own wording for
    the codes in :data:`ERROR_MESSAGES` (Azure's content filter, a context-length
    error, ``invalid_prompt``, ``insufficient_quota``, ``unsupported_parameter`` …).
    For Anthropic the code is the error ``type`` (``billing_error``), except
    ``prompt_too_long`` and ``credit_balance`` (an ``invalid_request_error`` with
    Anthropic's message), and a param leads the message (``"temperature: Extra
    inputs are not permitted"``).
``"refusal"``
    a 200 answer that was blocked: empty, with ``finish_reason: "content_filter"``
    (OpenAI; Azure's output filter) or ``stop_reason: "refusal"`` (Anthropic).
``"timeout"`` / ``"timeout:5"``
    hold the request that many seconds (default 30; :meth:`FakeLLMServer.stop`
    cuts it short), then drop the connection without an answer.
``"drop"``
    close the connection without any answer.
``"malformed"``
    200 with ``Content-Type: application/json`` and a body that is not JSON (a
    streaming request gets one event whose data is not JSON).
``"truncated"``
    a streaming request gets some events, then the connection closes mid-body
    (no final chunk, no ``[DONE]``, no terminating HTTP chunk); a non-streaming
    one gets a ``Content-Length`` larger than the body it sends before closing.
``"incomplete"``
    a stream that ends cleanly at the HTTP level but without its finish chunk,
    usage or ``[DONE]`` (Anthropic: without ``message_delta``/``message_stop``).
``"stream-error"``
    a stream that stops after some text with an error event: Anthropic's
    ``event: error`` (``overloaded_error``), as the real API sends when it is
    overloaded mid-answer, or OpenAI's ``data: {"error": …}``.
    ``"stream-error@content_filter"`` (any code of :data:`ERROR_MESSAGES`) puts that
    code in the event instead (Azure filters a streamed answer this way).

The usage block is the server's own count unless ``usage`` overrides it (a proxy's
odd figures): a mapping replaces the block, ``None`` sends ``"usage": null`` (OpenAI)
or an empty block (Anthropic), and a callable ``usage(call, block)`` returns the
block to send. :func:`with_reasoning` wraps a responder so every answer starts with a
``<think>…</think>`` block (or an unterminated one), as R1-style models served
without a reasoning parser answer.

:class:`FaultPlan` picks faults by arrival index and :func:`fail_first` gives the
first *n* requests of every distinct prompt a fault, so a retrying client makes
exactly ``n + 1`` requests per prompt.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self

__all__ = [
    "ERROR_MESSAGES",
    "ChatCall",
    "FakeLLMServer",
    "FaultPicker",
    "FaultPlan",
    "Responder",
    "default_responder",
    "fail_first",
    "honour_schema",
    "prompt_tokens",
    "request_schema",
    "with_reasoning",
]

# Headers whose values are secrets: recorded as present or absent, never kept.
_SECRET_HEADERS = frozenset(
    {"authorization", "x-api-key", "api-key", "cookie", "proxy-authorization"}
)
_DEFAULT_RETRY_AFTER = {429: "0.05"}
_OWN_USAGE: Any = object()  # FakeLLMServer(usage=...) not given: the server's own counts
_REASONS = {
    400: ("invalid_request_error", "Bad request (injected fault)."),
    401: ("authentication_error", "Incorrect API key provided (injected fault)."),
    403: ("permission_error", "Permission denied (injected fault)."),
    404: ("not_found_error", "The model does not exist (injected fault)."),
    408: ("timeout_error", "Request timed out (injected fault)."),
    409: ("conflict_error", "Conflict (injected fault)."),
    429: ("rate_limit_error", "Rate limit reached (injected fault)."),
    500: ("api_error", "Internal server error (injected fault)."),
    503: ("api_error", "Service unavailable (injected fault)."),
    529: ("overloaded_error", "Overloaded (injected fault)."),
}


#: Error codes with the wording (and OpenAI ``type``) the real APIs use for them.
ERROR_MESSAGES: dict[str, tuple[str, str]] = {
    "content_filter": (
        "invalid_request_error",
        "The response was filtered due to the prompt triggering Azure OpenAI's content "
        "management policy. Please modify your prompt and retry. (injected fault)",
    ),
    "content_policy_violation": (
        "invalid_request_error",
        "Your request was rejected as a result of our safety system. (injected fault)",
    ),
    "context_length_exceeded": (
        "invalid_request_error",
        "This model's maximum context length is 128000 tokens. However, your messages "
        "resulted in 131072 tokens. Please reduce the length of the messages. (injected fault)",
    ),
    "invalid_prompt": (
        "invalid_request_error",
        "Invalid prompt: your prompt was flagged as potentially violating our usage "
        "policy. (injected fault)",
    ),
    "insufficient_quota": (
        "insufficient_quota",
        "You exceeded your current quota, please check your plan and billing details. "
        "(injected fault)",
    ),
    "unsupported_parameter": (
        "invalid_request_error",
        "Unsupported parameter: '{param}' is not supported with this model. (injected fault)",
    ),
    "unsupported_value": (
        "invalid_request_error",
        "Unsupported value: '{param}' does not support 0 with this model. Only the default "
        "(1) value is supported. (injected fault)",
    ),
    "string_above_max_length": (
        "invalid_request_error",
        "Invalid '{param}': string too long. Expected a string with maximum length 10485760, "
        "but got a string with length 12000000 instead. (injected fault)",
    ),
    "invalid_value": (
        "invalid_request_error",
        "Invalid value for '{param}': the content holds an unpaired surrogate. (injected fault)",
    ),
    "rate_limit_exceeded": ("requests", "Rate limit reached for requests. (injected fault)"),
    "prompt_too_long": (
        "invalid_request_error",
        "prompt is too long: 210000 tokens > 200000 maximum (injected fault)",
    ),
    "credit_balance": (
        "invalid_request_error",
        "Your credit balance is too low to access the Anthropic API. Please go to Plans & "
        "Billing to upgrade or purchase credits. (injected fault)",
    ),
    "billing_error": ("billing_error", "Your account has a billing issue. (injected fault)"),
}


@dataclass(frozen=True)
class ChatCall:
    """One request the server received (faulted ones included)."""

    index: int  # 0-based arrival order
    api: str  # "openai" or "anthropic"
    path: str
    body: dict[str, Any]
    model: str
    messages: list[dict[str, Any]]
    stream: bool
    prompt_key: str  # sha256 of the request minus its streaming flags
    user_text: str  # content of the last user message
    system: str | None  # Anthropic's system parameter, or OpenAI's system messages
    key_present: bool  # an Authorization: Bearer / x-api-key header was sent
    headers: dict[str, str] = field(default_factory=dict)  # lower-cased, secrets removed
    fault: str | None = None
    key_sha256: str | None = None  # the key's hash, so a test can tell which key came


Responder = Callable[[ChatCall], str]


def hashed_embedding(text: str, dim: int = 64) -> list[float]:
    """The fake server's embedding of ``text``: lower-cased words hashed (sha256) into
    ``dim`` buckets, L2-normalised; texts sharing words are near."""
    import hashlib
    import math

    vec = [0.0] * dim
    for word in text.lower().split():
        vec[int.from_bytes(hashlib.sha256(word.encode()).digest()[:4], "big") % dim] += 1.0
    norm = math.sqrt(sum(v * v for v in vec)) or 1.0
    return [v / norm for v in vec]


FaultPicker = Callable[[ChatCall], str | None]


def default_responder(call: ChatCall) -> str:
    """``"ok: "`` and the first five words of the last user message."""
    return " ".join(["ok:", *call.user_text.split()[:5]])


def with_reasoning(
    responder: Responder,
    thoughts: str = "The customer could mean billing, shipping or refund; let me weigh them.",
    *,
    closed: bool = True,
) -> Responder:
    """Answers of ``responder`` after a ``<think>`` block (left open when not ``closed``:
    then the reasoning is all there is, as when the output limit cut it off)."""

    def answer(call: ChatCall) -> str:
        if not closed:
            return f"<think>{thoughts}"
        return f"<think>{thoughts}</think>\n\n{responder(call)}"

    return answer


def _text_of(content: Any) -> str:
    """A message content as text: a string, or the text parts of a list of blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _message_contents(call: ChatCall) -> list[str]:
    contents = [_text_of(m.get("content")) for m in call.messages]
    if call.api == "anthropic" and call.system is not None:
        contents.insert(0, call.system)
    return contents


def prompt_tokens(call: ChatCall) -> int:
    """The prompt tokens the server reports: words + 3 per message (system included)."""
    return sum(len(text.split()) + 3 for text in _message_contents(call))


class FaultPlan:
    """Faults by arrival index: ``FaultPlan({0: "429:0.1", 3: "500"})``."""

    def __init__(self, plan: Mapping[int, str]) -> None:
        self.plan = dict(plan)

    def __call__(self, call: ChatCall) -> str | None:
        return self.plan.get(call.index)


class _FailFirst:
    def __init__(self, n: int, fault: str) -> None:
        self.n = n
        self.fault = fault
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def __call__(self, call: ChatCall) -> str | None:
        with self._lock:
            seen = self._seen.get(call.prompt_key, 0)
            self._seen[call.prompt_key] = seen + 1
        return self.fault if seen < self.n else None


def fail_first(n: int, fault: str) -> FaultPicker:
    """The first ``n`` requests of each distinct prompt get ``fault``; later ones succeed."""
    return _FailFirst(n, fault)


def _prompt_key(body: Mapping[str, Any]) -> str:
    # Streaming or not, the same prompt is the same prompt.
    kept = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    blob = json.dumps(kept, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


def request_schema(call: ChatCall) -> dict[str, Any] | None:
    """The JSON schema the request asks the answer to follow: OpenAI's
    ``response_format.json_schema.schema``, or the input schema of the tool Anthropic's
    ``tool_choice`` forces; None when it asks for none."""
    if call.api == "openai":
        fmt = call.body.get("response_format")
        spec = fmt.get("json_schema") if isinstance(fmt, dict) else None
        schema = spec.get("schema") if isinstance(spec, dict) else None
        return schema if isinstance(schema, dict) else None
    name = _forced_tool(call)
    for tool in call.body.get("tools") or []:
        if isinstance(tool, dict) and tool.get("name") == name:
            schema = tool.get("input_schema")
            return schema if isinstance(schema, dict) else None
    return None


def _forced_tool(call: ChatCall) -> str | None:
    choice = call.body.get("tool_choice") if call.api == "anthropic" else None
    if isinstance(choice, dict) and choice.get("type") == "tool":
        return str(choice.get("name"))
    return None


#: A reasoning block as R1-style models write it (what a reasoning parser separates).
_REASONING = re.compile(r"<(think|thinking|reasoning)>.*?(?:</\1>|\Z)", re.S | re.I)


def honour_schema(call: ChatCall, text: str) -> str:
    """The responder's ``text`` as a server decoding within the request's schema would
    answer it: for a ``{"label": enum}`` schema, JSON with the label the text names
    (exactly, else the first label it contains, else the first label: an answer is
    always one of them); for another schema, the text when it is JSON, else ``{}``.
    Unchanged when the request asks for no schema."""
    schema = request_schema(call)
    if schema is None:
        return text
    # A server decoding within a schema keeps a model's reasoning apart from the answer.
    text = _REASONING.sub("", text).strip()
    enum = (schema.get("properties") or {}).get("label", {}).get("enum")
    if isinstance(enum, list) and enum:
        low = text.strip().lower()
        named = [e for e in enum if str(e).lower() == low] or [
            e for e in enum if str(e).lower() in low
        ]
        return json.dumps({"label": (named or enum)[0]})
    try:
        json.loads(text)
    except ValueError:
        return "{}"
    return text


def _anthropic_content(call: ChatCall, text: str) -> list[dict[str, Any]]:
    name = _forced_tool(call)
    if name is None:
        return [{"type": "text", "text": text}]
    try:
        given = json.loads(text or "{}")
    except ValueError:  # an injected fault's text (a refusal): the tool gets no input
        given = {}
    return [
        {"type": "tool_use", "id": f"toolu_fake_{call.index}", "name": name,
         "input": given if isinstance(given, dict) else {}}
    ]  # fmt: skip


def _parse_fault(fault: str) -> tuple[str, str | None]:
    name, _, arg = fault.partition(":")
    return name.strip().lower(), (arg.strip() or None)


@dataclass(frozen=True)
class _Answer:
    text: str
    reason: str  # "stop", "stop_sequence", "length" or "content_filter"
    stop_sequence: str | None = None


def _answer(call: ChatCall, text: str) -> _Answer:
    """Apply the request's stop sequences, then its max_tokens (in words)."""
    stops = call.body.get("stop_sequences") if call.api == "anthropic" else call.body.get("stop")
    if isinstance(stops, str):
        stops = [stops]
    hits = [(text.index(s), s) for s in stops or [] if isinstance(s, str) and s and s in text]
    if hits:
        at, stop = min(hits)
        text = text[:at]
    limit = call.body.get("max_tokens") or call.body.get("max_completion_tokens")
    if isinstance(limit, int) and len(text.split()) > limit:
        return _Answer(" ".join(text.split()[:limit]), "length")
    if hits:
        return _Answer(text, "stop_sequence", stop)
    return _Answer(text, "stop")


def _openai_finish(answer: _Answer) -> str:
    return answer.reason if answer.reason in ("length", "content_filter") else "stop"


def _pieces(text: str, words_per_piece: int = 2) -> list[str]:
    """The answer split into several stream deltas that join back to it exactly."""
    tokens = re.findall(r"\S+\s*|\s+", text)
    return [
        "".join(tokens[i : i + words_per_piece]) for i in range(0, len(tokens), words_per_piece)
    ]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's
    # algorithm and the client's delayed ACK add ~40 ms to every response.
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: logging every request would cost more than serving it."""

    # ------------------------------------------------------------ plumbing

    def _send_json(
        self, status: int, payload: Any, headers: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self._send_bytes(status, data, "application/json", headers)

    def _send_bytes(
        self,
        status: int,
        data: bytes,
        content_type: str,
        headers: Mapping[str, str] | None = None,
        *,
        content_length: int | None = None,
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header(
            "Content-Length", str(len(data) if content_length is None else content_length)
        )
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        delay = self.server.owner.chunk_delay_s
        if delay:
            time.sleep(delay)

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _drop(self) -> None:
        """Close the connection now, whatever has been sent."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ------------------------------------------------------------ routing

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        if not path.endswith("/models"):
            self._send_json(
                404, {"error": {"message": f"no route {self.path}", "type": "not_found"}}
            )
            return
        if "anthropic-version" in self.headers:
            model: dict[str, Any] = {
                "type": "model",
                "id": "fake-model",
                "display_name": "Fake",
                "created_at": "2025-01-01T00:00:00Z",
            }
            self._send_json(
                200,
                {
                    "data": [model],
                    "has_more": False,
                    "first_id": "fake-model",
                    "last_id": "fake-model",
                },
            )
        else:
            model = {"id": "fake-model", "object": "model", "created": 0, "owned_by": "adaptlab"}
            self._send_json(200, {"object": "list", "data": [model]})

    def do_POST(self) -> None:
        path = self.path.split("?", 1)[0].rstrip("/")
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path.endswith("/chat/completions"):
            api = "openai"
        elif path.endswith("/embeddings"):
            self._embeddings(raw)
            return
        elif path.endswith("/messages"):
            api = "anthropic"
        else:
            self._send_json(
                404, {"error": {"message": f"no route {self.path}", "type": "not_found"}}
            )
            return
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict):
            self._error(api, 400, "the request body is not a JSON object")
            return
        owner = self.server.owner
        headers = {name.lower(): value for name, value in self.headers.items()}
        call = owner._record(api, path, body, headers)
        if owner.require_key and not call.key_present:
            self._error(api, 401, "no API key was sent")
            return
        if owner.latency_s:
            time.sleep(owner.latency_s)
        if call.fault is not None:
            self._fault(call, call.fault)
            return
        if not owner.structured_outputs and ("response_format" in body or "tools" in body):
            self._error(
                api, 400, code="unsupported_parameter",
                param="response_format" if api == "openai" else "tools",
            )  # fmt: skip
            return
        answer = _answer(call, honour_schema(call, owner.responder(call)))
        if api == "openai":
            self._openai(call, answer)
        else:
            self._anthropic(call, answer)

    def _embeddings(self, raw: bytes) -> None:
        """OpenAI's ``POST /v1/embeddings``: each input's words hashed into 64 dimensions."""
        try:
            body = json.loads(raw or b"null")
            texts = body["input"]
            texts = [texts] if isinstance(texts, str) else list(texts)
            if not all(isinstance(t, str) for t in texts):
                raise TypeError("input must be text")
        except (ValueError, KeyError, TypeError) as exc:
            self._error("openai", 400, f"bad embeddings request: {exc}")
            return
        self.server.owner.embedded.extend(texts)
        data = [
            {"object": "embedding", "index": i, "embedding": hashed_embedding(t)}
            for i, t in enumerate(texts)
        ]
        tokens = sum(len(t.split()) for t in texts)
        self._send_json(
            200,
            {
                "object": "list",
                "data": data,
                "model": body.get("model", "fake-embedding"),
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            },
        )

    def _error(
        self,
        api: str,
        status: int,
        message: str | None = None,
        retry_after: str | None = None,
        code: str | None = None,
        param: str | None = None,
    ) -> None:
        kind, default = _REASONS.get(status, ("api_error", f"HTTP {status} (injected fault)."))
        text = message or default
        if code is not None:
            kind, text = ERROR_MESSAGES.get(code, (kind, f"{code} (injected fault)"))
            text = text.replace("{param}", param or "")
        if api == "openai":
            payload: dict[str, Any] = {
                "error": {
                    "message": text,
                    "type": kind,
                    "param": param,
                    "code": code if code is not None else kind,
                }
            }
        else:
            if code is not None and code not in ERROR_MESSAGES:
                kind = code
            if param:
                text = f"{param}: Extra inputs are not permitted (injected fault)"
            payload = {"type": "error", "error": {"type": kind, "message": text}}
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        self._send_json(status, payload, headers)

    def _fault(self, call: ChatCall, fault: str) -> None:
        name, arg = _parse_fault(fault)
        head, *extra = name.split("@")
        if head.isdigit():
            status = int(head)
            code = extra[0] if extra else None
            param = extra[1] if len(extra) > 1 else None
            retry = arg or _DEFAULT_RETRY_AFTER.get(status)
            self._error(call.api, status, None, retry, code, param)
        elif name == "timeout":
            self.server.owner._stopping.wait(float(arg or 30))
            self._drop()
        elif name == "drop":
            self._drop()
        elif name == "malformed":
            if call.stream:
                self._start_stream()
                if call.api == "anthropic":
                    self._chunk(b'event: message_start\ndata: {"type": "message_start", \n\n')
                else:
                    self._chunk(b'data: {"id": "broken", "choices": [\n\n')
                self._end_stream()
            else:
                self._send_bytes(
                    200, b'{"id": "broken", "choices": [{"index": 0, ', "application/json"
                )
        elif name == "refusal":
            # Answered, but blocked: an empty answer with OpenAI's (Azure's output filter)
            # finish_reason "content_filter", or Anthropic's stop_reason "refusal".
            refused = _Answer("", "content_filter")
            if call.api == "openai":
                self._openai(call, refused)
            else:
                self._anthropic(call, refused)
        elif head in ("truncated", "incomplete", "stream-error"):
            name = head
            answer = _answer(call, self.server.owner.responder(call))
            code = extra[0] if extra else None
            if call.stream and call.api == "openai":
                self._openai_stream(call, answer, fault=name, error_code=code)
            elif call.stream:
                self._anthropic_stream(call, answer, fault=name, error_code=code)
            elif name == "truncated":
                full = (
                    self._openai_body(call, answer)
                    if call.api == "openai"
                    else self._anthropic_body(call, answer)
                )
                data = json.dumps(full).encode()
                # Promise the whole body, send half, hang up.
                self._send_bytes(
                    200, data[: len(data) // 2], "application/json", content_length=len(data)
                )
                self._drop()
            else:
                self._error(call.api, 400, f"fault '{name}' needs a streaming request")
        else:
            # A 400, not a 500: a typo in a fault plan must fail loudly, not be retried.
            self._error(call.api, 400, f"unknown fault '{fault}' in the fake server's plan")

    # ------------------------------------------------------------ OpenAI

    def _openai_usage(self, call: ChatCall, answer: _Answer) -> Any:
        prompt = prompt_tokens(call)
        completion = len(answer.text.split())
        block = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": self.server.owner._cached(call, prompt)},
        }
        return self.server.owner._usage(call, block)

    def _openai_body(self, call: ChatCall, answer: _Answer) -> dict[str, Any]:
        return {
            "id": f"chatcmpl-fake-{call.index}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.model,
            "system_fingerprint": None,
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": answer.text, "refusal": None},
                    "logprobs": None,
                    "finish_reason": _openai_finish(answer),
                }
            ],
            "usage": self._openai_usage(call, answer),
        }

    def _openai(self, call: ChatCall, answer: _Answer) -> None:
        if call.stream:
            self._openai_stream(call, answer, fault=None)
        else:
            self._send_json(200, self._openai_body(call, answer))

    def _openai_stream(
        self, call: ChatCall, answer: _Answer, *, fault: str | None, error_code: str | None = None
    ) -> None:
        base = {
            "id": f"chatcmpl-fake-{call.index}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": call.model,
            "system_fingerprint": None,
        }
        options = call.body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and bool(options.get("include_usage"))

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            chunk: dict[str, Any] = {
                **base,
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                chunk["usage"] = None
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        pieces = _pieces(answer.text)
        if fault in ("truncated", "stream-error"):
            pieces = pieces[: max(1, len(pieces) // 2)]
        self._start_stream()
        self._chunk(event({"role": "assistant", "content": "", "refusal": None}))
        for piece in pieces:
            self._chunk(event({"content": piece}))
        if fault == "truncated":
            self._drop()
            return
        if fault == "stream-error":
            error: dict[str, Any] = {
                "message": "The server had an error (injected fault).",
                "type": "server_error",
            }
            if error_code is not None:
                kind, text = ERROR_MESSAGES.get(error_code, ("server_error", error["message"]))
                error = {"message": text, "type": kind, "code": error_code, "param": None}
            self._chunk(b"data: " + json.dumps({"error": error}).encode() + b"\n\n")
        elif fault != "incomplete":
            self._chunk(event({}, _openai_finish(answer)))
            if include_usage:
                usage = {**base, "choices": [], "usage": self._openai_usage(call, answer)}
                self._chunk(b"data: " + json.dumps(usage).encode() + b"\n\n")
            self._chunk(b"data: [DONE]\n\n")
        self._end_stream()

    # ------------------------------------------------------------ Anthropic

    def _anthropic_usage(self, call: ChatCall, answer: _Answer) -> dict[str, Any]:
        prompt = prompt_tokens(call)
        cached = self.server.owner._cached(call, prompt)
        block = {
            "input_tokens": prompt - cached,
            "output_tokens": len(answer.text.split()),
            "cache_read_input_tokens": cached,
            "cache_creation_input_tokens": 0,
        }
        sent = self.server.owner._usage(call, block)
        return sent if isinstance(sent, dict) else {}

    def _anthropic_body(self, call: ChatCall, answer: _Answer) -> dict[str, Any]:
        stop_reason = {
            "length": "max_tokens",
            "stop_sequence": "stop_sequence",
            "content_filter": "refusal",
        }
        return {
            "id": f"msg_fake_{call.index}",
            "type": "message",
            "role": "assistant",
            "model": call.model,
            "content": _anthropic_content(call, answer.text),
            # A refusal or a cut-off says so even when a tool was forced.
            "stop_reason": "tool_use"
            if _forced_tool(call) and answer.reason == "stop"
            else stop_reason.get(answer.reason, "end_turn"),
            "stop_sequence": answer.stop_sequence,
            "usage": self._anthropic_usage(call, answer),
        }

    def _anthropic(self, call: ChatCall, answer: _Answer) -> None:
        if call.stream:
            self._anthropic_stream(call, answer, fault=None)
        else:
            self._send_json(200, self._anthropic_body(call, answer))

    def _anthropic_stream(
        self, call: ChatCall, answer: _Answer, *, fault: str | None, error_code: str | None = None
    ) -> None:
        final = self._anthropic_body(call, answer)
        usage = final["usage"]
        start = {
            **final,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {**usage, "output_tokens": 1} if "output_tokens" in usage else usage,
        }

        def event(name: str, data: dict[str, Any]) -> bytes:
            return b"event: %s\ndata: %s\n\n" % (
                name.encode(),
                json.dumps({"type": name, **data}).encode(),
            )

        # A forced tool streams its input as JSON pieces (input_json_delta), as the API does.
        tool = final["content"][0] if final["content"][0]["type"] == "tool_use" else None
        pieces = _pieces(json.dumps(tool["input"]) if tool else answer.text)
        if fault in ("truncated", "stream-error"):
            pieces = pieces[: max(1, len(pieces) // 2)]
        self._start_stream()
        self._chunk(event("message_start", {"message": start}))
        block = {**tool, "input": {}} if tool else {"type": "text", "text": ""}
        self._chunk(event("content_block_start", {"index": 0, "content_block": block}))
        self._chunk(event("ping", {}))
        for piece in pieces:
            json_part = {"type": "input_json_delta", "partial_json": piece}
            text_part = {"type": "text_delta", "text": piece}
            delta = {"index": 0, "delta": json_part if tool else text_part}
            self._chunk(event("content_block_delta", delta))
        if fault == "truncated":
            self._drop()
            return
        if fault == "stream-error":
            kind, text = "overloaded_error", "Overloaded (injected fault)."
            if error_code is not None:
                default = (error_code, f"{error_code} (injected fault)")
                kind, text = ERROR_MESSAGES.get(error_code, default)
            self._chunk(event("error", {"error": {"type": kind, "message": text}}))
        elif fault != "incomplete":
            self._chunk(event("content_block_stop", {"index": 0}))
            delta = {
                "delta": {
                    "stop_reason": final["stop_reason"],
                    "stop_sequence": final["stop_sequence"],
                },
                "usage": {"output_tokens": usage.get("output_tokens")},
            }
            self._chunk(event("message_delta", delta))
            self._chunk(event("message_stop", {}))
        self._end_stream()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], owner: FakeLLMServer) -> None:
        self.owner = owner
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()
        super().__init__(address, owner.handler_class)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._open_lock:
            self._open.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._open_lock:
            self._open.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Quiet about clients that hang up (timeouts, faults); loud about bugs here."""
        if not isinstance(sys.exc_info()[1], OSError):
            super().handle_error(request, client_address)

    def close_connections(self) -> None:
        # Keep-alive connections would otherwise outlive the server, and a client
        # reusing one would wait on a socket nobody reads.
        with self._open_lock:
            conns = list(self._open)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class FakeLLMServer:
    """A localhost chat-completions / messages server for tests and benchmarks.

    ``responder(call)`` writes the answer (default :func:`default_responder`),
    ``faults(call)`` returns a fault string or None (see the module docstring),
    ``latency_s`` is slept before every answer, ``chunk_delay_s`` after every
    streamed chunk, ``cached_tokens`` of each prompt are reported as cached,
    ``usage`` overrides the usage block (see the module docstring), and
    ``require_key`` answers 401 to a request that sends no key. Structured outputs are
    honoured (:func:`honour_schema`); ``structured_outputs=False`` answers a request
    that asks for them (``response_format``, Anthropic ``tools``) with a 400
    ``unsupported_parameter``, as a model without them does.

    A subclass serves more endpoints by setting ``handler_class`` to a subclass of
    the request handler (:mod:`tests.fakes.fake_finetune` adds files and
    fine-tuning jobs this way, so one server answers both).
    """

    handler_class: type[BaseHTTPRequestHandler] = _Handler

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        latency_s: float = 0.0,
        faults: FaultPicker | None = None,
        chunk_delay_s: float = 0.0,
        cached_tokens: int | Callable[[ChatCall], int] = 0,
        usage: Any = _OWN_USAGE,
        require_key: bool = False,
        structured_outputs: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.responder: Responder = responder or default_responder
        self.faults = faults
        self.latency_s = latency_s
        self.chunk_delay_s = chunk_delay_s
        self.cached_tokens = cached_tokens
        self.usage = usage
        self.require_key = require_key
        self.structured_outputs = structured_outputs
        self.host = host
        self.port = port
        self.calls: list[ChatCall] = []
        self.embedded: list[str] = []  # every text sent to /v1/embeddings, in order
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        if self._httpd is not None:
            return self
        self._stopping.clear()
        self._httpd = _Server((self.host, self.port), self)
        self.port = int(self._httpd.server_address[1])
        # A short poll interval: stop() waits up to one interval for the loop.
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"fake-llm-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes requests held by a "timeout" fault
        httpd.shutdown()
        httpd.close_connections()
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def serve_forever(self) -> None:
        """Serve in this thread until interrupted (the command-line entry point)."""
        self.start()
        try:
            while self._thread is not None and self._thread.is_alive():
                self._thread.join(timeout=1)
        finally:
            self.stop()

    @property
    def root_url(self) -> str:
        """``http://HOST:PORT``: the base URL for Anthropic clients."""
        return f"http://{self.host}:{self.port}"

    @property
    def base_url(self) -> str:
        """``http://HOST:PORT/v1``: the base URL for OpenAI clients."""
        return self.root_url + "/v1"

    # ------------------------------------------------------------ inspection

    def count(self, prompt_key: str) -> int:
        """Requests received for one prompt (faulted ones included)."""
        with self._lock:
            return sum(1 for c in self.calls if c.prompt_key == prompt_key)

    def counts(self) -> dict[str, int]:
        """Requests received per prompt_key."""
        with self._lock:
            out: dict[str, int] = {}
            for c in self.calls:
                out[c.prompt_key] = out.get(c.prompt_key, 0) + 1
            return out

    def reset(self) -> None:
        """Forget the calls received (arrival indices restart at 0)."""
        with self._lock:
            self.calls.clear()

    # ------------------------------------------------------------ used by the handler

    def _record(
        self, api: str, path: str, body: dict[str, Any], headers: Mapping[str, str]
    ) -> ChatCall:
        """Number and keep one request (``headers`` with lower-case names)."""
        raw_messages = body.get("messages")
        messages = (
            [m for m in raw_messages if isinstance(m, dict)]
            if isinstance(raw_messages, list)
            else []
        )
        users = [m for m in messages if m.get("role") == "user"]
        bearer = headers.get("authorization", "").removeprefix("Bearer").strip()
        if api == "anthropic":
            system = _text_of(body["system"]) if "system" in body else None
            # anthropic>=2 sends Authorization: Bearer; older clients x-api-key.
            auth = headers.get("x-api-key") or bearer
        else:
            parts = [
                _text_of(m.get("content"))
                for m in messages
                if m.get("role") in ("system", "developer")
            ]
            system = "\n\n".join(parts) if parts else None
            auth = bearer
        kept = {k: v for k, v in headers.items() if k not in _SECRET_HEADERS}
        with self._lock:
            call = ChatCall(
                index=len(self.calls),
                api=api,
                path=path,
                body=body,
                model=str(body.get("model", "")),
                messages=messages,
                stream=bool(body.get("stream")),
                prompt_key=_prompt_key(body),
                user_text=_text_of(users[-1].get("content")) if users else "",
                system=system,
                key_present=bool(auth),
                headers=kept,
                key_sha256=hashlib.sha256(auth.encode()).hexdigest() if auth else None,
            )
            # Decided under the lock so plans that count (fail_first) see arrival order.
            fault = self.faults(call) if self.faults is not None else None
            if fault is not None:
                call = replace(call, fault=fault)
            self.calls.append(call)
        return call

    def _usage(self, call: ChatCall, block: dict[str, Any]) -> Any:
        """The usage block to send: the server's own, or the test's override."""
        if self.usage is _OWN_USAGE:
            return block
        if callable(self.usage):
            return self.usage(call, block)
        return self.usage

    def _cached(self, call: ChatCall, prompt: int) -> int:
        n = self.cached_tokens(call) if callable(self.cached_tokens) else self.cached_tokens
        return max(0, min(int(n), prompt))


def _main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fakes.fake_llm",
        description="A fake OpenAI/Anthropic chat server; prints its OpenAI base URL, "
        "then serves until killed.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay before each answer")
    parser.add_argument("--chunk-delay-ms", type=float, default=0.0, help="delay per stream chunk")
    parser.add_argument(
        "--fail-first",
        type=int,
        default=0,
        metavar="N",
        help="give the first N requests of every distinct prompt the --fault",
    )
    parser.add_argument("--fault", default="429", help="fault for --fail-first (default 429)")
    args = parser.parse_args(argv)
    server = FakeLLMServer(
        latency_s=args.latency_ms / 1000,
        chunk_delay_s=args.chunk_delay_ms / 1000,
        faults=fail_first(args.fail_first, args.fault) if args.fail_first else None,
        host=args.host,
        port=args.port,
    ).start()
    print(server.base_url, flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        server.serve_forever()


if __name__ == "__main__":
    _main()
