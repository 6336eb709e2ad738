"""The server: OpenAI-compatible ``/v1/chat/completions`` and ``/v1/models``, plus
``/v1/predict``, ``/v1/feedback``, ``/health`` and ``/metrics`` (Prometheus), on FastAPI.

A client sends only the raw input (the last user message, or ``input``); the served
candidate applies its own template, shots, retrieval and adapter. Every response says
which candidate answered (``X-Adaptlab-Candidate``) and carries the request's id
(``X-Request-Id``, also the completion's ``id``), which ``/v1/feedback`` takes.

Errors are always OpenAI's shape (``{"error": {"message", "type", "param", "code"}}``),
never plain text, whatever raised them: 401 without a valid key, 429 with
``Retry-After`` past a key's requests per minute, 413 for a body or input over the
limits, 404 for an unknown model, 400 for text that is not Unicode or holds a NUL (the
field in ``param``; :mod:`adaptlab.serve.checks`), 503 while the run store cannot log
the request (the file and the fix in the message). A request is answered only once
its row is in the request log, so no answered request goes unlogged. ``/health`` tests
the store and the batchers and answers 503 with the reason when one is not usable.

The run store is the project's SQLite file or a PostgreSQL database that several
replicas share (``adaptlab serve --store postgresql://…``): the request log, the
feedback, the keys (a revoked key is refused by every replica within
:data:`~adaptlab.serve.keys.RELOAD_S`, 1 s) and the per-key rate limits (never more
than ``rpm`` requests a minute across replicas; :mod:`adaptlab.serve.ratelimit`).
The server's own log lines hold ids, candidates, statuses and times; never a key, and
an input only with ``log_bodies``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from adaptlab.core.errors import AdaptlabError
from adaptlab.core.types import Prediction
from adaptlab.engine.artifact import ServedModel
from adaptlab.evaluation.hosting import model_location
from adaptlab.llm.keys import redact
from adaptlab.llm.prices import SELF_HOSTED_BACKENDS, lookup_price
from adaptlab.serve.answers import answer_json, answer_text
from adaptlab.serve.batching import Batcher
from adaptlab.serve.checks import find_bad_text, json_bytes, text_problem, utf8_problem
from adaptlab.serve.keys import ApiKey, KeyRing
from adaptlab.serve.log import LOCK_WAIT_S, Feedback, RequestLog, RequestRecord, now, user_hash
from adaptlab.serve.ratelimit import MemoryLimiter, StoreLimiter, retry_after
from adaptlab.serve.routing import DEFAULT_ROUTE, Route
from adaptlab.store.db import display, is_url, open_connection
from adaptlab.store.files import StoreError, connect

log = logging.getLogger("adaptlab.serve")
USER_HEADERS = ("x-user-id", "x-session-id")


@dataclass
class ServeConfig:
    """What ``adaptlab serve`` serves and under which limits."""

    models: dict[str, ServedModel]
    routes: dict[str, Route]
    store_path: Path  # the run store's SQLite file (unless store_url)
    shadow: list[str] = field(default_factory=list)
    auth: bool = True
    max_body_bytes: int = 1 << 20
    max_input_chars: int = 20_000
    max_batch: int = 32
    max_wait_ms: float = 5.0
    cors_origins: list[str] = field(default_factory=list)
    log_bodies: bool = False
    store_timeout_s: float = LOCK_WAIT_S  # how long a log write waits out a locked store
    #: A PostgreSQL run store (``postgresql://…``) for the request log, feedback, keys
    #: and limits, shared by every server on it; None: ``store_path``.
    store_url: str | None = None

    @property
    def store(self) -> Path | str:
        """The run store the server uses: ``store_url``, else ``store_path``."""
        return self.store_url if self.store_url is not None else self.store_path


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str,
        kind: str = "invalid_request_error",
        headers: dict[str, str] | None = None,
        param: str | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.kind = status, message, code, kind
        self.headers = headers or {}
        self.param = param


class JSON(JSONResponse):
    """A JSON response that always encodes (:func:`~adaptlab.serve.checks.json_bytes`)."""

    def render(self, content: Any) -> bytes:
        return json_bytes(content)


def _error(
    status: int,
    message: str,
    code: str,
    kind: str,
    headers: dict[str, str],
    param: str | None = None,
) -> Response:
    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSON(body, status_code=status, headers=headers)


def _store_unavailable(exc: AdaptlabError, what: str) -> ApiError:
    """503 for a run store that cannot be used: the file, what failed and the fix."""
    issue = exc.issue
    where = f"{issue.file}: " if issue.file else ""
    fix = f"; fix: {issue.fix}" if issue.fix else ""
    return _unavailable(f"{what}: the run store {where}{issue.message}{fix}")


def _unavailable(message: str) -> ApiError:
    """503 with ``Retry-After``: the store could not take what a request needs."""
    return ApiError(
        503, message, code="store_unavailable", kind="server_error", headers={"Retry-After": "5"}
    )


def check_body(body: BaseModel) -> None:
    """400 naming the field when any string of ``body`` (extra fields and names of
    fields included) is not Unicode or holds a NUL; see :mod:`adaptlab.serve.checks`."""
    found = find_bad_text(body.model_dump())
    if found is not None:
        param, problem = found
        raise ApiError(
            400,
            f"invalid request: {param} {problem}; send UTF-8 text without NUL characters",
            code="invalid_text",
            param=param,
        )


# ---------------------------------------------------------------- request bodies


class _Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: str
    content: str | list[dict[str, Any]] | None = None


class ChatBody(BaseModel):
    """The fields of OpenAI's chat completion request adaptlab reads; others are accepted
    and ignored (the candidate's own settings decide temperature, tokens, format)."""

    model_config = ConfigDict(extra="allow")
    model: str
    messages: list[_Message] = Field(min_length=1)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    user: str | None = None
    n: int = Field(default=1, ge=1, le=1)  # one answer per input: the candidate's own


class PredictBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    input: str
    model: str | None = None
    user: str | None = None


class FeedbackBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    request_id: str = Field(max_length=200)
    label: str | None = Field(default=None, max_length=100_000)
    rating: float | None = None
    comment: str | None = Field(default=None, max_length=10_000)


def _input_of(body: ChatBody) -> str:
    """The raw input: the last user message's text."""
    for message in reversed(body.messages):
        if message.role != "user":
            continue
        content = message.content
        if isinstance(content, str):
            return content
        if isinstance(content, list):
            return "\n".join(
                str(part.get("text", "")) for part in content if part.get("type") == "text"
            )
    raise ApiError(400, "the request has no user message to answer", code="no_user_message")


# ---------------------------------------------------------------- the server


class Server:
    """Routes, batchers, keys, limits, the request log and metrics of one app."""

    def __init__(self, config: ServeConfig) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.config = config
        self.log = RequestLog(config.store, lock_wait_s=config.store_timeout_s)
        shared = is_url(config.store)
        self.keys: KeyRing | None = None
        # key reloads off the event loop: a store that does not answer stalls no request
        self._keys_pool = ThreadPoolExecutor(1, thread_name_prefix="adaptlab-keys")
        self._keys_lock = asyncio.Lock()
        if config.auth:
            self.keys = KeyRing(self._keys_connection, keep=shared)
        self.limiter: MemoryLimiter | StoreLimiter = (
            StoreLimiter(self._keys_connection) if shared else MemoryLimiter()
        )
        self.registry = CollectorRegistry()
        self.m_requests = Counter(
            "adaptlab_requests",
            "Requests answered, by endpoint, candidate and HTTP status.",
            ["endpoint", "candidate", "status"],
            registry=self.registry,
        )
        self.m_latency = Histogram(
            "adaptlab_request_latency_seconds",
            "Time from request to answer, queueing and batching included.",
            ["candidate"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
            registry=self.registry,
        )
        self.m_batch = Histogram(
            "adaptlab_batch_size",
            "Inputs per forward pass.",
            ["candidate"],
            buckets=(1, 2, 4, 8, 16, 32, 64, 128),
            registry=self.registry,
        )
        self.m_inflight = Gauge(
            "adaptlab_requests_in_flight", "Requests being answered.", registry=self.registry
        )
        self.m_shadow = Counter(
            "adaptlab_shadow_requests",
            "Shadow answers logged (never returned), by candidate and outcome.",
            ["candidate", "outcome"],
            registry=self.registry,
        )
        self.batchers = {
            name: Batcher(
                model.predict,
                name=name,
                max_batch=config.max_batch,
                max_wait_ms=config.max_wait_ms,
                on_batch=self.m_batch.labels(candidate=name).observe,
            )
            for name, model in config.models.items()
        }
        self._shadow_tasks: set[asyncio.Task[None]] = set()
        # request-log rows gathered in this loop iteration, and the future they wait on
        self._rows: list[RequestRecord] = []
        self._rows_done: asyncio.Future[list[BaseException | None]] | None = None

    # ------------------------------------------------------------ keys and limits

    def _keys_connection(self) -> Any:
        """A connection to the store for the keys and limits; never creates a store where
        the file was deleted (a new, empty one would refuse every key)."""
        target = self.config.store
        if is_url(target):
            wait = max(1, round(self.config.store_timeout_s))
            return open_connection(target, damaged_fix="", connect_timeout_s=wait)
        problem = self.log.problem()
        if problem is not None:
            raise problem
        return connect(Path(target), damaged_fix="see adaptlab keys list")

    async def _find_key(self, keys: KeyRing, secret: str) -> ApiKey | None:
        """The key with ``secret``, from a copy of the keys at most ``RELOAD_S`` old."""
        if keys.due():
            async with self._keys_lock:  # one reload at a time; the others wait for it
                if keys.due():
                    loop = asyncio.get_running_loop()
                    await loop.run_in_executor(self._keys_pool, keys.reload)
        return keys.lookup(secret)

    async def authenticate(self, request: Request) -> ApiKey | None:
        """The caller's key, counted against its limit; raises :class:`ApiError` 401
        (no valid key), 429 (past its requests per minute, with ``Retry-After``) or 503
        (the store cannot be read)."""
        if self.keys is None:
            return None
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        try:
            key = (
                await self._find_key(self.keys, secret.strip())
                if scheme.lower() == "bearer" and secret
                else None
            )
        except AdaptlabError as exc:
            raise _store_unavailable(exc, "the API keys cannot be read") from None
        if key is None:
            raise ApiError(
                401,
                "the API key is missing, wrong or revoked: send 'Authorization: Bearer <key>' "
                "with a key from 'adaptlab keys add NAME'",
                code="invalid_api_key",
                headers={"WWW-Authenticate": "Bearer"},
            )
        if key.rpm is not None:
            try:
                waited = await self.limiter.hit(key.id, key.rpm)
            except AdaptlabError as exc:
                raise _store_unavailable(exc, "the key's rate limit cannot be counted") from None
            if waited is not None:
                wait = retry_after(waited)
                raise ApiError(
                    429,
                    f"rate limit of {key.rpm} requests per minute reached for this key; "
                    f"retry in {wait} s",
                    code="rate_limit_exceeded",
                    kind="rate_limit_error",
                    headers={"Retry-After": str(wait)},
                )
        return key

    # ------------------------------------------------------------ answering

    def resolve(self, requested: str | None, user: str | None) -> tuple[str | None, str]:
        """(route or None, candidate) for the ``model`` a client asked for."""

        requested = requested or DEFAULT_ROUTE
        route = self.config.routes.get(requested)
        if route is not None:
            return route.name, route.pick(user)
        if requested in self.config.models:
            return None, requested
        known = sorted({*self.config.routes, *self.config.models})
        raise ApiError(
            404,
            f"the model '{requested}' does not exist here; served: {', '.join(known)}",
            code="model_not_found",
        )

    async def answer(
        self, endpoint: str, requested: str | None, text: str, user: str | None, key: ApiKey | None
    ) -> tuple[str, str, Prediction, float]:
        """(request id, candidate, prediction, latency ms); logs it and starts shadows.

        Raises :class:`ApiError`: 400 for an empty input or one that is not text, 413 for
        a long one, 404 for an unknown model, 500/502 when the model fails on it, 503
        when the request log cannot take its row (the answer is then not returned).
        """
        problem = text_problem(text)
        if problem is not None:
            raise ApiError(400, f"the input {problem}", code="invalid_text", param="input")
        if not text.strip():
            raise ApiError(400, "the input is empty", code="empty_input")
        if len(text) > self.config.max_input_chars:
            raise ApiError(
                413,
                f"the input has {len(text):,} characters; this server takes at most "
                f"{self.config.max_input_chars:,}",
                code="input_too_long",
            )
        route, cand = self.resolve(requested, user)
        store = self.log.problem()  # known before the model is asked
        if store is not None:
            self.m_requests.labels(endpoint=endpoint, candidate=cand, status="503").inc()
            raise _store_unavailable(store, "this request cannot be logged")
        request_id = f"chatcmpl-{uuid.uuid4().hex}"
        self.m_inflight.inc()
        try:
            pred, ms, error, unlogged = await self._call(
                request_id, endpoint, route, cand, None, user, key, text
            )
        finally:
            self.m_inflight.dec()
        if unlogged is not None:
            self.m_requests.labels(endpoint=endpoint, candidate=cand, status="503").inc()
            log.error("%s %s -> %s not logged: %s", request_id, endpoint, cand, unlogged)
            if isinstance(unlogged, AdaptlabError):
                raise _store_unavailable(unlogged, "the request was not logged, so not answered")
            raise _unavailable(f"the request was not logged, so not answered: {_safe(unlogged)}")
        self.m_requests.labels(
            endpoint=endpoint, candidate=cand, status="200" if pred is not None else "500"
        ).inc()
        if pred is None:
            log.warning("%s %s -> %s failed: %s", request_id, endpoint, cand, _safe(error))
            if _hosted(self.config.models[cand]):  # the provider or remote server failed
                message = f"the model behind '{cand}' did not answer: {_safe(error)}"
                raise ApiError(502, message, code="upstream_error", kind="server_error")
            message = f"candidate '{cand}' failed: {_safe(error)}"
            raise ApiError(500, message, code="model_error", kind="server_error")
        self.m_latency.labels(candidate=cand).observe(ms / 1000)
        for shadow in self.config.shadow:
            if shadow != cand:
                task = asyncio.create_task(
                    self._shadow(shadow, request_id, endpoint, route, text, user, key)
                )
                self._shadow_tasks.add(task)
                task.add_done_callback(self._shadow_tasks.discard)
        if self.config.log_bodies:
            log.info("%s %s -> %s %.0f ms input=%r", request_id, endpoint, cand, ms, text)
        else:
            log.info("%s %s -> %s %.0f ms", request_id, endpoint, cand, ms)
        return request_id, cand, pred, ms

    async def _shadow(
        self,
        cand: str,
        primary: str,
        endpoint: str,
        route: str | None,
        text: str,
        user: str | None,
        key: ApiKey | None,
    ) -> None:
        shadow_id = f"shadow-{uuid.uuid4().hex}"
        pred, _, _, unlogged = await self._call(
            shadow_id, endpoint, route, cand, primary, user, key, text
        )
        if unlogged is not None:  # never returned to a client: the server's log says it
            log.error("%s (shadow of %s) not logged: %s", shadow_id, primary, unlogged)
        outcome = "ok" if pred is not None and unlogged is None else "error"
        self.m_shadow.labels(candidate=cand, outcome=outcome).inc()

    async def _call(
        self,
        request_id: str,
        endpoint: str,
        route: str | None,
        cand: str,
        shadow_of: str | None,
        user: str | None,
        key: ApiKey | None,
        text: str,
    ) -> tuple[Prediction | None, float, Exception | None, BaseException | None]:
        """One answer from ``cand``'s batcher, timed and logged (an error as status 500;
        ``shadow_of``: the primary request a shadow answer belongs to): (prediction or
        None, ms, the model's error, why the row could not be logged or None)."""
        start = time.perf_counter()
        pred: Prediction | None = None
        error: Exception | None = None
        try:
            pred = _checked(await self.batchers[cand].predict(text))
        except Exception as exc:
            pred, error = None, exc
        ms = (time.perf_counter() - start) * 1000
        model = self.config.models[cand]
        unlogged = await self._logged(
            RequestRecord(
                id=request_id,
                created_at=now(),
                endpoint=endpoint,
                route=route,
                candidate=cand,
                shadow_of=shadow_of,
                user_hash=user_hash(user),
                key_id=None if key is None else key.id,
                input=text,
                output=None if pred is None else pred.label,
                score=None if pred is None else pred.score,
                answer_status=None if pred is None else pred.status,
                http_status=200 if pred is not None else 500,
                latency_ms=ms,
                input_tokens=None if pred is None else pred.input_tokens,
                output_tokens=None if pred is None else pred.output_tokens,
                cost_usd=None if pred is None else request_cost(model, pred),
                error=None if error is None else _safe(error),
            )
        )
        return pred, ms, error, unlogged

    async def _logged(self, row: RequestRecord) -> BaseException | None:
        """None once ``row`` is committed to the request log, else why it is not.

        The rows of one loop iteration (a model batch's answers all resume in the same
        one) go to the writer as one item (:meth:`RequestLog.record_many`): one
        transaction and one wake-up of the loop for the batch, not one per row.
        """
        done = self._rows_done
        if done is None:
            loop = asyncio.get_running_loop()
            done = self._rows_done = loop.create_future()
            loop.call_soon(self._flush_rows)
        index = len(self._rows)
        self._rows.append(row)
        try:
            # shielded: a client that goes away must not cancel the batch's future
            outcomes = await asyncio.shield(done)
        except Exception as exc:
            return exc
        return outcomes[index]

    def _flush_rows(self) -> None:
        """Hand the rows gathered in this loop iteration to the writer, one item."""
        rows, done = self._rows, self._rows_done
        self._rows, self._rows_done = [], None
        if done is None:
            return
        try:
            written = self.log.record_many(rows)
        except Exception as exc:  # never: the queue takes anything
            done.set_result([exc] * len(rows))
            return
        loop = done.get_loop()

        def landed(result: concurrent.futures.Future[list[BaseException | None]]) -> None:
            with contextlib.suppress(RuntimeError):  # the loop closed: no one waits
                loop.call_soon_threadsafe(_settle, done, result)

        written.add_done_callback(landed)

    async def feedback(self, body: FeedbackBody, key: ApiKey | None) -> bool:
        if body.label is None and body.rating is None:
            raise ApiError(
                400, "give a 'label' (the right answer) or a 'rating'", code="empty_feedback"
            )
        if body.label is not None:
            self.check_label(body.label)
        store = self.log.problem()
        if store is not None:
            raise _store_unavailable(store, "the feedback cannot be stored")
        done = self.log.feedback(
            Feedback(
                body.request_id,
                body.label,
                body.rating,
                body.comment,
                None if key is None else key.id,
            )
        )
        try:
            return await asyncio.wrap_future(done)
        except AdaptlabError as exc:
            raise _store_unavailable(exc, "the feedback was not stored; send it again") from None
        except Exception as exc:
            raise ApiError(
                503,
                f"the feedback could not be stored ({_safe(exc)}); send it again later",
                code="log_unavailable",
                kind="server_error",
            ) from None

    def check_label(self, label: str) -> None:
        """A feedback label must be one the served candidates answer with (classification:
        a label of the project; extraction: a JSON object); it becomes training data."""
        if not label.strip():
            raise ApiError(400, "the label is empty", code="bad_label")
        tasks = {m.task for m in self.config.models.values()}
        if tasks == {"classification"}:
            labels = sorted({lab for m in self.config.models.values() for lab in m.manifest.labels})
            if label not in labels:
                raise ApiError(
                    400,
                    f"unknown label '{label[:100]}'; the labels are: {', '.join(labels)}",
                    code="unknown_label",
                )
        elif tasks == {"extraction"}:
            try:
                ok = isinstance(json.loads(label), dict)
            except ValueError:
                ok = False
            if not ok:
                raise ApiError(400, "an extraction label must be a JSON object", code="bad_label")

    async def aclose(self) -> None:
        for task in list(self._shadow_tasks):  # a shadow answer in flight is still logged
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(task, 30)
        for batcher in self.batchers.values():
            await batcher.aclose()
        self.log.close()
        self.limiter.close()
        self._keys_pool.shutdown(wait=True)
        if self.keys is not None:
            self.keys.close()


def _settle(
    done: asyncio.Future[list[BaseException | None]],
    result: concurrent.futures.Future[list[BaseException | None]],
) -> None:
    """``done`` gets the outcome of the writer's ``result`` (on the loop's thread)."""
    if done.done():
        return
    exc = result.exception()
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(result.result())


def _checked(pred: Prediction) -> Prediction:
    """``pred``, or ValueError when its text is not Unicode (a remote model can answer a
    lone surrogate in JSON): that answer fails alone, instead of the response and the
    log row that would carry it."""
    for name in ("label", "raw"):
        value = getattr(pred, name, None)
        if isinstance(value, str):
            problem = text_problem(value)
            if problem is not None and "NUL" not in problem:
                raise ValueError(f"the model's answer ({name}) {problem}")
    return pred


def _safe(exc: BaseException | None) -> str:
    """The error for a client and the log: its message without a command-line fix, keys
    redacted, text that is not Unicode (lone surrogates) escaped as ``\\udcff``."""

    plain = isinstance(exc, AdaptlabError)
    text = exc.issue.message if plain else f"{type(exc).__name__}: {exc}"  # type: ignore[union-attr]
    return redact(text)[:500].encode("utf-8", "backslashreplace").decode("utf-8")


def _api_backend(backend: object) -> bool:
    """A served model's backend bills per token elsewhere (not hf, not fake)."""
    return isinstance(backend, str) and backend not in SELF_HOSTED_BACKENDS


def _hosted(model: ServedModel) -> bool:
    """Whether a served model is answered by another server (its provider's API, or a
    server on this machine or elsewhere), so that its failure is upstream (502): any
    place :func:`~adaptlab.evaluation.hosting.model_location` gives but "in-process"."""
    llm = model.manifest.llm or {}
    backend, url = llm.get("backend"), llm.get("base_url")
    if not model.generative or not isinstance(backend, str):
        return False
    return model_location(backend, url if isinstance(url, str) else None) != "in-process"


def request_cost(model: ServedModel, pred: Prediction) -> float | None:
    """USD of one answer: the tokens at the model's price for a hosted model with usage,
    else the run's measured cost per request (``cost_per_1k_usd`` / 1,000)."""
    llm = model.manifest.llm or {}
    if pred.input_tokens is not None and _api_backend(llm.get("backend")):
        prices = llm.get("prices")
        if prices:
            unit_in, unit_out = float(prices["input"]), float(prices["output"])
        else:
            price = lookup_price(str(llm.get("name", "")))
            if price is None:
                return None
            unit_in, unit_out = price.input, price.output
        return (pred.input_tokens * unit_in + (pred.output_tokens or 0) * unit_out) / 1e6
    per_1k = model.manifest.figures.get("cost_per_1k_usd")
    return None if per_1k is None else float(per_1k) / 1000


# ---------------------------------------------------------------- the app


async def _auth(request: Request) -> ApiKey | None:
    server: Server = request.app.state.server
    return await server.authenticate(request)


#: The caller's key (None without auth); resolved before the body is validated, so a
#: request without a key gets 401 whatever its body.
Key = Annotated[ApiKey | None, Depends(_auth)]


def create_app(config: ServeConfig) -> FastAPI:
    """The FastAPI app; its lifespan starts and drains the request log and batchers."""
    import contextlib

    server = Server(config)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await server.aclose()

    app = FastAPI(
        title="adaptlab",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=lifespan,
        default_response_class=JSON,
    )
    app.state.server = server
    app.add_middleware(BodyLimit, max_bytes=config.max_body_bytes)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(
            CORSMiddleware,
            allow_origins=config.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-User-Id", "X-Session-Id"],
            expose_headers=["X-Adaptlab-Candidate", "X-Request-Id"],
        )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.message, exc.code, exc.kind, exc.headers, exc.param)

    @app.exception_handler(AdaptlabError)
    async def adaptlab_error(request: Request, exc: AdaptlabError) -> Response:
        if isinstance(exc, StoreError):
            e = _store_unavailable(exc, f"{request.method} {request.url.path}")
            return _error(e.status, e.message, e.code, e.kind, e.headers)
        log.error("%s %s: %s", request.method, request.url.path, _safe(exc))
        message = f"{request.method} {request.url.path} failed: {_safe(exc)}"
        return _error(500, message, "server_error", "server_error", {})

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> Response:
        # Starlette's outermost middleware: the traceback still reaches the server's log.
        message = (
            f"{request.method} {request.url.path}: internal error ({type(exc).__name__}); "
            "the server's log has the details"
        )
        return _error(500, message, "internal_error", "server_error", {})

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> Response:
        first = exc.errors()[0] if exc.errors() else {}
        loc = [str(p) for p in first.get("loc", ()) if p != "body"]
        where = ".".join(_shown(p) for p in loc)
        if first.get("type") == "json_invalid":
            message = "invalid request: the body is not valid JSON"
        elif first.get("type") == "string_unicode":
            if not where:  # pydantic gives no place for a field *name* it cannot read
                where = _shown(str(first.get("input", "")))
                what = f"the field name {where}"
            else:
                what = where
            message = (
                f"invalid request: {what} is not valid Unicode (a lone surrogate such as "
                "\\ud800); send UTF-8 text"
            )
        elif where == "" or where.isdigit():
            message = (
                "invalid request: the body must be a JSON object "
                "(and Content-Type: application/json)"
            )
        else:
            message = f"invalid request: {where}: {first.get('msg', 'malformed')}"
        code = "invalid_text" if first.get("type") == "string_unicode" else "invalid_request"
        return _error(400, message, code, "invalid_request_error", {}, where or None)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = f"{request.method} {request.url.path}: {exc.detail}"
        return _error(exc.status_code, message, code, "invalid_request_error", {})

    def user_of(request: Request, body_user: str | None) -> str | None:
        return body_user or next(
            (request.headers[h] for h in USER_HEADERS if request.headers.get(h)), None
        )

    def headers(request_id: str, cand: str) -> dict[str, str]:
        return {"X-Adaptlab-Candidate": cand, "X-Request-Id": request_id}

    @app.get("/health")
    async def health() -> Response:
        """200 when the store takes writes and every candidate's batcher runs; else 503
        with each problem (``checks``) and the first as an OpenAI-shaped ``error``."""
        store = await asyncio.to_thread(server.log.check, 1.0)
        checks: dict[str, str] = {"store": "ok" if store is None else str(store)}
        for name, batcher in server.batchers.items():
            checks[f"candidate {name}"] = batcher.problem() or "ok"
        bad = [f"{what}: {said}" for what, said in checks.items() if said != "ok"]
        body: dict[str, Any] = {
            "status": "ok" if not bad else "unavailable",
            "checks": checks,
            "store": display(config.store),
            "candidates": sorted(config.models),
            "routes": {n: dict(r.weights) for n, r in config.routes.items()},
            "shadow": config.shadow,
        }
        if not bad:
            return JSON(body)
        body["error"] = {
            "message": "; ".join(bad),
            "type": "server_error",
            "param": None,
            "code": "unhealthy",
        }
        return JSON(body, status_code=503, headers={"Retry-After": "5"})

    @app.get("/metrics")
    async def metrics() -> Response:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return PlainTextResponse(generate_latest(server.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models")
    async def models(key: Key) -> dict[str, Any]:
        created = int(time.time())
        names = [*config.routes, *(m for m in config.models if m not in config.routes)]
        return {
            "object": "list",
            "data": [
                {"id": n, "object": "model", "created": created, "owned_by": "adaptlab"}
                for n in names
            ],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: Request, body: ChatBody, key: Key) -> Response:
        check_body(body)
        text = _input_of(body)
        user = user_of(request, body.user)
        request_id, cand, pred, _ = await server.answer("chat", body.model, text, user, key)
        model = config.models[cand]
        content = answer_text(pred, model.task)
        created = int(time.time())
        usage = {
            "prompt_tokens": pred.input_tokens or 0,
            "completion_tokens": pred.output_tokens or 0,
            "total_tokens": (pred.input_tokens or 0) + (pred.output_tokens or 0),
        }
        extra = answer_json(pred, model.task, cand)
        if not body.stream:
            return JSON(
                {
                    "id": request_id,
                    "object": "chat.completion",
                    "created": created,
                    "model": cand,
                    "choices": [
                        {
                            "index": 0,
                            "message": {"role": "assistant", "content": content},
                            "finish_reason": "stop",
                            "logprobs": None,
                        }
                    ],
                    "usage": usage,
                    "adaptlab": extra,
                },
                headers=headers(request_id, cand),
            )
        include_usage = bool((body.stream_options or {}).get("include_usage"))

        def chunk(delta: dict[str, Any], finish: str | None, **more: Any) -> str:
            obj = {
                "id": request_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": cand,
                "choices": [
                    {"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}
                ],
                **more,
            }
            return f"data: {json_bytes(obj).decode('utf-8')}\n\n"

        async def events() -> AsyncIterator[str]:
            # The answer is parsed from the whole generation (a label, JSON), so it is
            # complete before the first chunk; the stream carries it in OpenAI's format.
            yield chunk({"role": "assistant", "content": ""}, None)
            yield chunk({"content": content}, None)
            yield chunk({}, "stop", adaptlab=extra)
            if include_usage:
                obj = {
                    "id": request_id,
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": cand,
                    "choices": [],
                    "usage": usage,
                }
                yield f"data: {json_bytes(obj).decode('utf-8')}\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(
            events(), media_type="text/event-stream", headers=headers(request_id, cand)
        )

    @app.post("/v1/predict")
    async def predict(request: Request, body: PredictBody, key: Key) -> Response:
        check_body(body)
        user = user_of(request, body.user)
        request_id, cand, pred, ms = await server.answer(
            "predict", body.model, body.input, user, key
        )
        model = config.models[cand]
        obj = {"id": request_id, **answer_json(pred, model.task, cand), "latency_ms": ms}
        return JSON(obj, headers=headers(request_id, cand))

    @app.post("/v1/feedback")
    async def feedback(body: FeedbackBody, key: Key) -> Response:
        check_body(body)
        if not await server.feedback(body, key):
            raise ApiError(
                404, f"no answered request has the id '{body.request_id}'", code="unknown_request"
            )
        return JSON({"ok": True, "request_id": body.request_id})

    return app


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413 before the app sees it: by its
    Content-Length, or while a chunked body streams in (it is buffered up to the limit,
    never beyond, then handed to the app)."""

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = dict(scope.get("headers") or []).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            await self._refuse(send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        problem = utf8_problem(b"".join(chunks))
        if problem is not None:
            await _send_error(send, 400, f"invalid request: {problem}", "invalid_encoding")
            return
        replayed = False

        async def replay() -> Any:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()  # after the body: wait for a disconnect, as usual

        await self.app(scope, replay, send)

    async def _refuse(self, send: Any) -> None:
        message = f"request body over {self.max_bytes:,} bytes"
        await _send_error(send, 413, message, "request_too_large")


async def _send_error(send: Any, status: int, message: str, code: str) -> None:
    """An OpenAI-shaped error sent below FastAPI (from a middleware), closing."""
    error = {"message": message, "type": "invalid_request_error", "param": None, "code": code}
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
        }
    )
    await send({"type": "http.response.body", "body": json_bytes({"error": error})})


def _shown(name: str) -> str:
    """A name from a request as it can be printed (escaped when it is not text)."""
    return name if text_problem(name) is None else ascii(name)[1:-1]
