"""Kinds 3 and 4 of issue 23, in-process: one request never harms another, and the
server degrades without falling.

The app runs on the ASGI interface directly (no socket) around a scripted model, so
each hostile input costs milliseconds; ``tests/serve/test_hardening.py`` repeats the
decisive ones against a real ``adaptlab serve`` process. Every hostile request is sent
together with good ones: the good ones must be answered as they are alone and logged,
the bad one refused in OpenAI's error shape naming the field.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest

from adaptlab.core.errors import AdaptlabError, DataError
from adaptlab.core.types import Prediction
from adaptlab.engine.artifact import ServedModel
from adaptlab.engine.manifest import Manifest
from adaptlab.serve.answers import read_inputs
from adaptlab.serve.app import ServeConfig, create_app
from adaptlab.serve.batching import Batcher
from adaptlab.serve.log import RequestLog, RequestRecord, now
from adaptlab.serve.routing import Route, parse_route
from adaptlab.store import RunStore

pytestmark = pytest.mark.timeout(60)

LABELS = ["billing", "refund", "shipping"]
ERROR_KEYS = {"message", "type", "param", "code"}


def model_answer(text: str) -> Prediction:
    """The scripted model: a label from the text's length, a score from its characters."""
    return Prediction(LABELS[len(text) % 3], (sum(map(ord, text)) % 97) / 97)


@dataclass
class Script:
    """A model's predict: answers with :func:`model_answer`; ``hook(texts)`` may raise
    or replace the answers of a batch. Records every batch it is given."""

    hook: Callable[[Sequence[str]], list[Prediction] | None] | None = None
    batches: list[list[str]] = field(default_factory=list)

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        self.batches.append(list(texts))
        if self.hook is not None:
            out = self.hook(texts)
            if out is not None:
                return out
        return [model_answer(t) for t in texts]


def served(script: Script, name: str = "m") -> ServedModel:
    fields: dict[str, Any] = dict(
        candidate=name, generative=False, task="classification", labels={x: x for x in LABELS},
        llm=None, figures={},
    )  # fmt: skip
    manifest = Manifest.model_construct(**fields)
    return ServedModel(name, Path("."), manifest, cast(Any, script))


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def error(self) -> dict[str, Any]:
        """The OpenAI-shaped error of this reply (asserting the shape)."""
        assert self.headers.get("content-type", "").startswith("application/json"), self
        obj = self.json()
        assert set(obj) >= {"error"} and set(obj["error"]) == ERROR_KEYS, obj
        return cast(dict[str, Any], obj["error"])


async def call(app: Any, method: str, path: str, body: bytes = b"", **headers: str) -> Reply:
    """One request through the ASGI interface, as uvicorn hands it to the app."""
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.replace("_", "-").encode(), v.encode("latin-1")) for k, v in headers.items()]
    scope = {
        "type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1", "method": method, "scheme": "http", "path": path,
        "raw_path": path.encode(), "query_string": b"", "root_path": "", "headers": raw,
        "client": ("127.0.0.1", 5000), "server": ("127.0.0.1", 8000), "state": {},
    }  # fmt: skip
    given = False
    messages: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client stays until the answer is sent
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        messages.append(message)

    try:
        await asyncio.wait_for(app(scope, receive, send), 30)
    except Exception:
        # Starlette re-raises what its 500 handler answered, for the server to log it
        # (uvicorn does); an exception before any answer is a failure of the test.
        if not messages:
            raise
    start = next(m for m in messages if m["type"] == "http.response.start")
    head = {k.decode(): v.decode() for k, v in start["headers"]}
    data = b"".join(m.get("body", b"") for m in messages if m["type"] == "http.response.body")
    return Reply(start["status"], head, data)


def config(tmp_path: Path, script: Script, **kw: Any) -> ServeConfig:
    store = tmp_path / ".adaptlab" / "runs.db"
    kw.setdefault("auth", False)
    kw.setdefault("max_wait_ms", 30.0)
    return ServeConfig(
        models={"m": served(script)},
        routes={"default": Route("default", (("m", 1.0),))},
        store_path=store,
        **kw,
    )


def run_app(cfg: ServeConfig, scenario: Callable[[Any], Any]) -> Any:
    """``scenario(app)`` (a coroutine function) in a fresh loop; the server drained after."""

    async def main() -> Any:
        app = create_app(cfg)
        try:
            return await scenario(app)
        finally:
            await app.state.server.aclose()

    return asyncio.run(main())


def chat(text: str) -> bytes:
    return json.dumps(
        {"model": "default", "messages": [{"role": "user", "content": text}]}
    ).encode()


def logged(store: Path) -> dict[str, tuple[Any, ...]]:
    with sqlite3.connect(store) as conn:
        rows = conn.execute("SELECT id, input, output, http_status, error FROM requests")
        return {r[0]: r[1:] for r in rows}


GOOD = ["where is my parcel", "refund me please", "charged twice this month"]


# ------------------------------------------------ kind 3: text that is not text

S, N = "@S@", "@N@"  # become a lone surrogate and a NUL, as JSON escapes spell them


def body(obj: dict[str, Any]) -> str:
    """``obj`` as JSON, with ``S`` written as ``\\ud800`` and ``N`` as ``\\u0000``."""
    return json.dumps(obj).replace(S, "\\ud800").replace(N, "\\u0000")


def msgs(*contents: Any, role: str = "user", **more: Any) -> dict[str, Any]:
    """A chat body whose messages have these contents (the last one the user's)."""
    messages = [{"role": "user", "content": c} for c in contents]
    messages[0]["role"] = role
    return {"model": "default", "messages": messages, **more}


HI = [{"role": "user", "content": "hi"}]
CHAT_BODIES: dict[str, tuple[str, str]] = {
    # id: (raw JSON body, the param the error must name)
    "content-high": (body(msgs(f"a{S}b")), "messages.0.content"),
    "content-low": (body(msgs("x")).replace('"x"', '"\\udfff"'), "messages.0.content"),
    "content-reversed-pair": (
        body(msgs("x")).replace('"x"', '"\\ude00\\ud83d"'),
        "messages.0.content",
    ),
    "content-half-pair-at-end": (
        body(msgs("x")).replace('"x"', '"ok \\ud83d"'),
        "messages.0.content",
    ),
    "content-part": (
        body(msgs([{"type": "text", "text": f"x{S}"}])),
        "messages.0.content.0.text",
    ),
    "content-part-type": (
        body(msgs([{"type": f"t{S}", "text": "x"}, {"type": "text", "text": "y"}])),
        "messages.0.content.0.type",
    ),
    "earlier-message": (body(msgs(S, "hi", role="assistant")), "messages.0.content"),
    "role": (body(msgs("hi", "hi", role=f"user{S}")), "messages.0.role"),
    "message-name": (
        body({"model": "default", "messages": [{"role": "user", "name": S, "content": "hi"}]}),
        "messages.0.name",
    ),
    "model": (body({"model": f"default{S}", "messages": HI}), "model"),
    "user": (body(msgs("hi", user=S)), "user"),
    "stop-list": (body(msgs("hi", stop=["ok", S])), "stop.1"),
    "stop-string": (body(msgs("hi", stop=S)), "stop"),
    "nested-extra": (body(msgs("hi", metadata={"a": {"b": [S]}})), "metadata.a.b.0"),
    "field-name": (body({**msgs("hi"), f"x{S}": 1}), "x\\ud800"),
    "nul-content": (body(msgs(f"a{N}b")), "messages.0.content"),
    "nul-model": (body({"model": f"default{N}", "messages": HI}), "model"),
    "nul-user": (body(msgs("hi", user=N)), "user"),
    "nul-stop": (body(msgs("hi", stop=[N])), "stop.0"),
}
PREDICT_BODIES: dict[str, tuple[str, str]] = {
    "predict-input": (body({"input": f"ticket {S}"}), "input"),
    "predict-input-nul": (body({"input": f"ticket{N}"}), "input"),
    "predict-model": (body({"input": "ticket", "model": S}), "model"),
    "predict-user": (body({"input": "ticket", "user": f"u{S}"}), "user"),
}
# Bytes that are not UTF-8 at all (RFC 8259: JSON between systems is UTF-8).
RAW_BODIES: dict[str, bytes] = {
    "byte-ff": b'{"input":"a \xff b"}',
    "latin-1": '{"input":"caf\xe9"}'.encode("latin-1"),
    "cut-sequence": b'{"input":"euro \xe2\x82"}',
    "overlong-slash": b'{"input":"\xc0\xaf"}',
    "encoded-surrogate": b'{"input":"\xed\xa0\x80"}',
    "utf-16": '{"input":"hello"}'.encode("utf-16"),
}


async def _with_good_ones(app: Any, path: str, bad: bytes) -> tuple[Reply, list[Reply]]:
    """The bad request and three good ones at once (one batch), alone answers first."""
    good = [
        chat(t) if path.endswith("completions") else json.dumps({"input": t}).encode() for t in GOOD
    ]
    together = await asyncio.gather(
        call(app, "POST", path, bad), *(call(app, "POST", path, g) for g in good)
    )
    return together[0], list(together[1:])


def _check_good(script: Script, replies: list[Reply], store: Path) -> None:
    rows = logged(store)
    for text, reply in zip(GOOD, replies, strict=True):
        assert reply.status == 200, reply
        obj = reply.json()
        label = obj["choices"][0]["message"]["content"] if "choices" in obj else obj["label"]
        assert label == model_answer(text).label  # as the model answers it alone
        assert rows[obj["id"]][:3] == (text, label, 200)  # logged before it was answered
    assert any(len(b) > 1 for b in script.batches), script.batches  # they did share a batch


@pytest.mark.parametrize("case", sorted(CHAT_BODIES) + sorted(PREDICT_BODIES))
def test_text_that_is_not_text_is_refused_alone_and_its_batch_is_answered(
    tmp_path: Path, case: str
) -> None:
    body, param = {**CHAT_BODIES, **PREDICT_BODIES}[case]
    path = "/v1/chat/completions" if case in CHAT_BODIES else "/v1/predict"
    script = Script()
    cfg = config(tmp_path, script)
    bad, good = run_app(cfg, lambda app: _with_good_ones(app, path, body.encode()))
    assert bad.status == 400, bad
    error = bad.error()
    assert error["param"] == param and error["code"] == "invalid_text", error
    assert "Unicode" in error["message"] or "NUL" in error["message"]
    assert all("\ud800" not in t and "\0" not in t for b in script.batches for t in b)
    _check_good(script, good, cfg.store_path)
    assert len(logged(cfg.store_path)) == len(GOOD)  # the refused one is no row


@pytest.mark.parametrize("case", sorted(RAW_BODIES))
def test_a_body_that_is_not_utf8_is_refused_with_the_byte(tmp_path: Path, case: str) -> None:
    script = Script()
    cfg = config(tmp_path, script)
    bad, good = run_app(cfg, lambda app: _with_good_ones(app, "/v1/predict", RAW_BODIES[case]))
    assert bad.status == 400, bad
    error = bad.error()
    assert error["code"] == "invalid_encoding" and "not UTF-8: byte" in error["message"]
    _check_good(script, good, cfg.store_path)


FEEDBACK_BODIES: dict[str, tuple[dict[str, Any], str]] = {
    # id: (the feedback, "ID" standing for the answered request's id; the param named)
    "label": ({"request_id": "ID", "label": f"bill{S}"}, "label"),
    "request-id": ({"request_id": f"ID{S}", "rating": 1}, "request_id"),
    "comment": ({"request_id": "ID", "rating": 1, "comment": S}, "comment"),
    "label-nul": ({"request_id": "ID", "label": f"billing{N}"}, "label"),
    "comment-nul": ({"request_id": "ID", "rating": 1, "comment": f"a{N}"}, "comment"),
}


@pytest.mark.parametrize("case", sorted(FEEDBACK_BODIES))
def test_feedback_text_that_is_not_text_is_refused_naming_the_field(
    tmp_path: Path, case: str
) -> None:
    feedback, param = FEEDBACK_BODIES[case]
    cfg = config(tmp_path, Script())

    async def scenario(app: Any) -> tuple[Reply, Reply]:
        answered = (await call(app, "POST", "/v1/predict", b'{"input":"my bill"}')).json()["id"]
        bad_body = body(feedback).replace('"ID', f'"{answered}')
        bad = await call(app, "POST", "/v1/feedback", bad_body.encode())
        good = {"request_id": answered, "label": "refund"}
        return bad, await call(app, "POST", "/v1/feedback", json.dumps(good).encode())

    bad, good = run_app(cfg, scenario)
    assert bad.status == 400, bad
    assert bad.error()["param"] == param
    assert good.status == 200 and good.json()["ok"] is True
    with sqlite3.connect(cfg.store_path) as conn:
        assert conn.execute("SELECT label FROM feedback").fetchall() == [("refund",)]


# ------------------------------------------------ kind 3: the model fails on one input


def _raises(exc: BaseException) -> Callable[[Sequence[str]], None]:
    def hook(texts: Sequence[str]) -> None:
        if "poison" in texts:
            raise exc

    return hook


def _short(texts: Sequence[str]) -> list[Prediction] | None:
    return [model_answer(t) for t in texts if t != "poison"] if "poison" in texts else None


def _surrogate_answer(texts: Sequence[str]) -> list[Prediction]:
    return [
        Prediction("bill\ud800" if t == "poison" else model_answer(t).label, 0.5) for t in texts
    ]


def _nan_score(texts: Sequence[str]) -> list[Prediction]:
    return [Prediction(model_answer(t).label, math.nan if t == "poison" else 0.5) for t in texts]


MODEL_FAULTS: dict[str, tuple[Callable[[Sequence[str]], Any], int]] = {
    # id: (hook, the status of the poisoned request)
    "value-error": (_raises(ValueError("cannot tokenize")), 500),
    "type-error": (_raises(TypeError("TextEncodeInput must be Union[...]")), 500),
    "memory-error": (_raises(MemoryError()), 500),
    "system-exit": (_raises(SystemExit(3)), 500),
    "keyboard-interrupt": (_raises(KeyboardInterrupt()), 500),
    "message-not-unicode": (_raises(RuntimeError("bad input \udcff")), 500),
    "too-few-answers": (_short, 500),
    "answer-not-unicode": (_surrogate_answer, 500),
    "nan-score": (_nan_score, 200),
}


@pytest.mark.parametrize("case", sorted(MODEL_FAULTS))
def test_a_model_failing_on_one_input_fails_only_that_request(tmp_path: Path, case: str) -> None:
    hook, status = MODEL_FAULTS[case]
    script = Script(hook)
    cfg = config(tmp_path, script, max_wait_ms=50.0)

    async def scenario(app: Any) -> list[Reply]:
        bodies = [json.dumps({"input": t}).encode() for t in ("poison", *GOOD)]
        return list(await asyncio.gather(*(call(app, "POST", "/v1/predict", b) for b in bodies)))

    poisoned, *good = run_app(cfg, scenario)
    assert poisoned.status == status, poisoned
    if status == 500:
        assert poisoned.error()["code"] == "model_error"
        assert "\udcff" not in poisoned.body.decode()  # escaped, never un-encodable
    else:
        assert poisoned.json()["score"] is None  # JSON has no NaN
    _check_good(script, good, cfg.store_path)
    rows = logged(cfg.store_path)
    assert len(rows) == 4  # the failed one is logged too, with its status
    assert sorted(r[2] for r in rows.values()) == sorted([200, 200, 200, status])


@pytest.mark.parametrize("position", [0, 3, 7])
def test_the_batcher_answers_the_rest_of_a_batch_its_model_fails_on(position: int) -> None:
    texts = [f"t{i}" for i in range(8)]
    bad = texts[position]

    def predict(batch: Sequence[str]) -> list[Prediction]:
        if bad in batch:
            raise ValueError(f"cannot read {bad}")
        return [Prediction(t.upper(), 1.0) for t in batch]

    async def main() -> list[Any]:
        batcher = Batcher(predict, name="m", max_batch=8, max_wait_ms=50)
        try:
            out = await asyncio.gather(*(batcher.predict(t) for t in texts), return_exceptions=True)
            assert batcher.problem() is None
            return out
        finally:
            await batcher.aclose()

    out = asyncio.run(main())
    for text, got in zip(texts, out, strict=True):
        if text == bad:
            assert isinstance(got, ValueError) and bad in str(got)
        else:
            assert isinstance(got, Prediction) and got.label == text.upper()


# ------------------------------------------------ kind 3: the log never drops a batch


@pytest.mark.parametrize("column", ["input", "output", "error", "route", "candidate"])
def test_a_log_row_with_text_sqlite_cannot_hold_is_stored_escaped_with_its_batch(
    tmp_path: Path, column: str
) -> None:
    log = RequestLog(tmp_path / "runs.db")
    base: dict[str, Any] = dict(
        created_at=now(), endpoint="predict", route="default", candidate="m", shadow_of=None,
        user_hash=None, key_id=None, input="x", output="billing", score=1.0, answer_status=None,
        http_status=200, latency_ms=1.0, input_tokens=None, output_tokens=None, cost_usd=None,
        error=None,
    )  # fmt: skip
    futures = [log.record(RequestRecord(id=f"r{i}", **base)) for i in range(5)]
    odd = RequestRecord(id="odd", **{**base, column: "a\ud800b"})
    futures.insert(2, log.record(odd))
    futures += [log.record(RequestRecord(id=f"s{i}", **base)) for i in range(5)]
    for f in futures:
        assert f.result(10) is None
    log.close()
    with sqlite3.connect(tmp_path / "runs.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 11
        value = conn.execute(f"SELECT {column} FROM requests WHERE id = 'odd'").fetchone()[0]
    assert value == "a\\ud800b"  # visible, not lost and not silently changed to another text


def test_a_row_sqlite_refuses_fails_alone(tmp_path: Path) -> None:
    log = RequestLog(tmp_path / "runs.db")
    base: dict[str, Any] = dict(
        created_at=now(), endpoint="predict", route="default", candidate="m", shadow_of=None,
        user_hash=None, key_id=None, input="x", output="billing", score=1.0, answer_status=None,
        http_status=200, latency_ms=1.0, input_tokens=None, output_tokens=None, cost_usd=None,
        error=None,
    )  # fmt: skip
    bad = RequestRecord(id="bad", **{**base, "score": cast(Any, {"not": "bindable"})})
    futures = [log.record(RequestRecord(id=f"r{i}", **base)) for i in range(3)]
    failed = log.record(bad)
    futures += [log.record(RequestRecord(id=f"s{i}", **base)) for i in range(3)]
    for f in futures:
        assert f.result(10) is None
    with pytest.raises(AdaptlabError, match="request bad"):
        failed.result(10)
    log.close()
    with sqlite3.connect(tmp_path / "runs.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM requests").fetchone()[0] == 6


# ------------------------------------------------ kind 4: the store changes under the server


def _replace_with_folder(db: Path) -> None:
    _remove(db)
    db.mkdir()


def _remove(db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)


def _garbage(db: Path) -> None:
    _remove(db)
    db.write_bytes(b"this is not a database at all, but it is long enough. " * 200)


def _read_only(db: Path) -> None:
    db.chmod(0o444)
    db.parent.chmod(0o555)


STORE_FAULTS: dict[str, tuple[Callable[[Path], None], str]] = {
    # id: (what happens to runs.db while serving, words the 503 must hold)
    "deleted": (_remove, "was deleted"),
    "a-folder-now": (_replace_with_folder, "regular file"),
    "not-a-database": (_garbage, "damaged"),
    "read-only": (_read_only, "permission"),
}


@pytest.mark.parametrize("auth", [False, True], ids=["no-auth", "auth"])
@pytest.mark.parametrize("case", sorted(STORE_FAULTS))
def test_a_store_gone_bad_gives_503_naming_it_and_health_says_so(
    tmp_path: Path, case: str, auth: bool
) -> None:
    if case == "read-only" and os.geteuid() == 0:
        pytest.skip("root may write a read-only file")
    damage, words = STORE_FAULTS[case]
    cfg = config(tmp_path, Script(), auth=auth)
    secret = ""
    if auth:
        from adaptlab.serve.keys import add_key

        with RunStore(cfg.store_path) as store:
            secret = add_key(store.conn, "app", None)[1]
    headers = {"authorization": f"Bearer {secret}"} if auth else {}

    async def scenario(app: Any) -> list[Reply]:
        before = await call(app, "POST", "/v1/predict", b'{"input":"my bill"}', **headers)
        assert before.status == 200, before
        if auth:
            await asyncio.sleep(1.1)  # past the key ring's one-second cache
        damage(cfg.store_path)
        try:
            return [
                await call(app, "GET", "/health"),
                await call(app, "POST", "/v1/predict", b'{"input":"my bill"}', **headers),
                await call(app, "POST", "/v1/chat/completions", chat("my bill"), **headers),
                await call(
                    app, "POST", "/v1/feedback", b'{"request_id":"x","rating":1}', **headers
                ),
            ]
        finally:
            cfg.store_path.parent.chmod(0o755)

    health, *refused = run_app(cfg, scenario)
    assert health.status == 503 and health.json()["status"] == "unavailable"
    assert str(cfg.store_path) in health.error()["message"]
    for reply in refused:
        assert reply.status == 503, reply
        error = reply.error()
        assert error["code"] == "store_unavailable" and str(cfg.store_path) in error["message"]
        assert words in error["message"].lower() and "fix:" in error["message"]
        assert reply.headers["retry-after"]


def test_a_locked_store_gives_503_after_the_wait_and_works_once_released(tmp_path: Path) -> None:
    cfg = config(tmp_path, Script(), store_timeout_s=0.5)

    async def scenario(app: Any) -> list[Reply]:
        assert (await call(app, "POST", "/v1/predict", b'{"input":"a"}')).status == 200
        other = sqlite3.connect(cfg.store_path, isolation_level=None)  # another program
        other.execute("BEGIN EXCLUSIVE")
        try:
            locked = [
                await call(app, "GET", "/health"),
                await call(app, "POST", "/v1/predict", b'{"input":"my bill"}'),
            ]
        finally:
            other.execute("ROLLBACK")
            other.close()
        after = [
            await call(app, "GET", "/health"),
            await call(app, "POST", "/v1/predict", b'{"input":"my bill"}'),
        ]
        return locked + after

    health, refused, health_after, answered = run_app(cfg, scenario)
    assert health.status == 503 and "locked" in health.error()["message"]
    assert refused.status == 503 and "locked" in refused.error()["message"]
    assert str(cfg.store_path) in refused.error()["message"]
    assert health_after.status == 200 and answered.status == 200
    ids = set(logged(cfg.store_path))
    assert answered.json()["id"] in ids and len(ids) == 2  # the refused one is not a row


def test_a_store_put_back_is_written_to(tmp_path: Path) -> None:
    cfg = config(tmp_path, Script())
    db = cfg.store_path
    backup = tmp_path / "backup.db"

    async def scenario(app: Any) -> list[Reply]:
        first = await call(app, "POST", "/v1/predict", b'{"input":"first"}')
        with sqlite3.connect(db) as src, sqlite3.connect(backup) as dst:
            src.backup(dst)
        _remove(db)
        gone = await call(app, "POST", "/v1/predict", b'{"input":"gone"}')
        os.replace(backup, db)  # a new file (another inode) at the path
        back = await call(app, "POST", "/v1/predict", b'{"input":"back"}')
        return [first, gone, back]

    first, gone, back = run_app(cfg, scenario)
    assert (first.status, gone.status, back.status) == (200, 503, 200)
    rows = logged(db)
    assert {first.json()["id"], back.json()["id"]} == set(rows)


def test_an_unexpected_exception_is_a_json_500(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import adaptlab.serve.app as app_module

    def broken(*args: Any) -> Any:
        raise KeyError("a bug")

    monkeypatch.setattr(app_module, "answer_json", broken)
    cfg = config(tmp_path, Script())

    async def scenario(app: Any) -> Reply:
        return await call(app, "POST", "/v1/predict", b'{"input":"my bill"}')

    reply = run_app(cfg, scenario)
    assert reply.status == 500
    assert reply.error()["code"] == "internal_error" and "KeyError" in reply.error()["message"]


# ------------------------------------------------ names: keys, routes, served names

BAD_NAMES = {
    "surrogate": "app\udcff",  # a command-line argument that is not UTF-8
    "nul": "a\x00b",
    "newline": "a\nb",
    "escape": "\x1b[31mred",
    "tab": "a\tb",
    "bidi-override": "\u202eppa",
}


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_a_key_name_that_is_not_printable_text_is_refused(tmp_path: Path, case: str) -> None:
    from adaptlab.serve.keys import add_key, list_keys

    with RunStore(tmp_path / "runs.db") as store:
        with pytest.raises(AdaptlabError) as exc:
            add_key(store.conn, BAD_NAMES[case], None)
        assert exc.value.issue.code == "bad-key-name" and exc.value.fix
        str(exc.value).encode("utf-8")  # the message itself can be printed
        assert list_keys(store.conn) == []
        assert add_key(store.conn, "café-app", None)[0].name == "café-app"


@pytest.mark.parametrize("spec", ["a\udcff=1", "canary\x00:a=1", "a=0.5,b\x07c=0.5"])
def test_a_route_naming_what_is_not_text_is_refused(spec: str) -> None:
    with pytest.raises(AdaptlabError, match="not printable"):
        parse_route(spec)


@pytest.mark.parametrize(
    "line",
    ['{"text": "a \\ud800 b"}', '{"text": "ok", "id": "\\udfff"}', '{"text": "\\ude00\\ud83d"}'],
)
def test_predict_input_that_is_not_unicode_is_refused_with_its_line(line: str) -> None:
    data = f'{{"text": "fine"}}\n{line}\n'.encode()
    with pytest.raises(DataError) as exc:
        list(read_inputs(data, "in.jsonl", "text"))
    assert exc.value.line == 2 and "surrogate" in str(exc.value)
    pair = list(read_inputs(b'{"text": "\\ud83d\\ude00"}\n', "in.jsonl", "text"))
    assert pair[0].text == "\U0001f600"  # a whole pair is a character, read as such


CLI_NAMES = {
    "keys-add": ("keys", "add", "app\udcff"),
    "keys-revoke": ("keys", "revoke", "app\udcff"),
    "keys-add-escape": ("keys", "add", "\x1b[2Jgone"),
    "serve-candidate": ("serve", "--candidate", "zs\udcff"),
    "serve-model": ("serve", "--model", "m\x00=folder"),
    "serve-route": ("serve", "--route", "zs\udcff=1"),
    "serve-shadow": ("serve", "--candidate", "zs", "--shadow", "s\udcff"),
}


@pytest.mark.parametrize("case", sorted(CLI_NAMES))
def test_names_from_a_command_line_that_is_not_utf8_are_refused_before_anything_runs(
    tmp_path: Path, cli: Any, case: str
) -> None:
    from tests.hostile.conftest import write_project

    root = write_project(tmp_path / "p")
    result = cli(*CLI_NAMES[case], "-p", str(root))
    assert result.code == 2, result.text
    assert "\\udcff" in result.text or "\\x00" in result.text or "\\x1b" in result.text
    assert not (root / ".adaptlab" / "runs.db").exists() or case.startswith("keys")
