"""``adaptlab serve``, ``keys`` and ``logs`` on a PostgreSQL store, quick cases: a server
that stops while serving gives 503 naming its URL (never the password) and is used
again once it is back; a store that cannot be used is refused at start, by every
command, with the reason and the fix. Three replicas on one store: test_replicas.py."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adaptlab.serve.keys import add_key
from adaptlab.store import RunStore
from tests.hostile.test_serve_hostile import Reply, Script, call, chat, config, run_app

PASSWORD = "s3cret-pw-91"


@pytest.fixture
def own_pg() -> Iterator[tuple[Path, str]]:
    """A PostgreSQL of this test alone, to stop and start: (data folder, URL with a
    password in it; the server trusts local connections, so it is not checked, but it
    is there to leak). The folder is outside pytest's own (which a pytest starting
    elsewhere makes private again, and the server runs as another user when root)."""
    pytest.importorskip("pgserver")
    import shutil
    import tempfile

    from adaptlab.rag.pgvector import local_server, stop_local_server

    datadir = Path(tempfile.mkdtemp(prefix="adaptlab-pg-")) / "d"
    url = local_server(datadir, cleanup_mode="stop")  # stopped, its data kept
    try:
        yield datadir, url.replace("postgres:@", f"postgres:{PASSWORD}@", 1)
    finally:
        stop_local_server(datadir)
        shutil.rmtree(datadir.parent, ignore_errors=True)


def _refused(reply: Reply, shown: str) -> str:
    """Assert a 503 naming the store as ``shown`` (its URL without password) with a fix."""
    assert reply.status == 503, reply
    error = reply.error()
    message = str(error["message"])
    assert error["code"] == "store_unavailable", error
    assert shown in message and "fix:" in message, message
    assert PASSWORD not in reply.body.decode(), message
    assert reply.headers["retry-after"]
    return message


def test_a_postgresql_server_that_stops_gives_503_naming_it_and_is_used_again(
    tmp_path: Path, own_pg: tuple[Path, str], caplog: pytest.LogCaptureFixture
) -> None:
    from adaptlab.rag.pgvector import local_server, stop_local_server
    from adaptlab.serve.keys import RELOAD_S
    from adaptlab.store.db import display

    datadir, url = own_pg
    shown = display(url)
    assert PASSWORD not in shown and "***" in shown
    with RunStore(url) as store:
        free = add_key(store.conn, "free", None)[1]
        limited = add_key(store.conn, "limited", 1000)[1]
    script = Script()
    cfg = config(tmp_path, script, auth=True, store_timeout_s=2.0)
    cfg.store_url = url
    free_h = {"authorization": f"Bearer {free}"}
    limited_h = {"authorization": f"Bearer {limited}"}
    predict = b'{"input":"my bill"}'

    async def scenario(app: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        keys = app.state.server.keys
        keys.max_age_s = 3600  # the keys' copy stays while the log and limits are tried
        ok = await call(app, "POST", "/v1/predict", predict, **free_h)
        assert ok.status == 200, ok
        fb = json.dumps({"request_id": ok.json()["id"], "label": "billing"}).encode()
        assert (await call(app, "POST", "/v1/feedback", fb, **free_h)).status == 200
        assert (await call(app, "POST", "/v1/predict", predict, **limited_h)).status == 200
        stop_local_server(datadir)  # the server goes away, its connections with it
        asked = len(script.batches)
        out["logged"] = await call(app, "POST", "/v1/predict", predict, **free_h)
        out["asked_once"] = len(script.batches) - asked
        # known down now: refused before the model is asked (and, for an API, paid)
        out["known"] = await call(app, "POST", "/v1/chat/completions", chat("hi"), **free_h)
        out["asked_again"] = len(script.batches) - asked
        out["feedback"] = await call(app, "POST", "/v1/feedback", fb, **free_h)
        out["limit"] = await call(app, "POST", "/v1/predict", predict, **limited_h)
        out["health"] = await call(app, "GET", "/health")
        keys.max_age_s = RELOAD_S
        await asyncio.sleep(RELOAD_S + 0.1)  # past the keys' copy
        out["keys"] = await call(app, "POST", "/v1/predict", predict, **free_h)
        local_server(datadir, cleanup_mode="stop")  # back, same data
        await asyncio.sleep(1.1)  # past DOWN_S: the writer connects again
        started = time.monotonic()
        back = await call(app, "POST", "/v1/predict", predict, **free_h)
        out["back_s"] = time.monotonic() - started
        assert back.status == 200, back
        fb2 = json.dumps({"request_id": back.json()["id"], "label": "refund"}).encode()
        out["back"] = [
            back,
            await call(app, "POST", "/v1/feedback", fb2, **free_h),
            await call(app, "POST", "/v1/predict", predict, **limited_h),
            await call(app, "GET", "/health"),
        ]
        out["ids"] = [ok.json()["id"], back.json()["id"]]
        return out

    out = run_app(cfg, scenario)
    assert out["asked_once"] == 1 and out["asked_again"] == 1
    assert "not logged, so not answered" in _refused(out["logged"], shown)
    assert "cannot reach" in _refused(out["known"], shown).lower()
    _refused(out["feedback"], shown)
    assert "rate limit" in _refused(out["limit"], shown)
    assert "API keys cannot be read" in _refused(out["keys"], shown)
    health = out["health"]
    assert health.status == 503 and shown in health.error()["message"]
    assert PASSWORD not in health.body.decode() and health.json()["store"] == shown
    assert [r.status for r in out["back"]] == [200, 200, 200, 200], out["back"]
    assert out["back_s"] < 5
    with RunStore(url) as store:
        rows = store.conn.execute("SELECT id, http_status FROM requests ORDER BY id").fetchall()
        labels = store.conn.execute("SELECT label FROM feedback ORDER BY id").fetchall()
    answered = {i for i in out["ids"]}
    assert answered <= {r[0] for r in rows}
    assert [tuple(r) for r in labels] == [("billing",), ("refund",)]
    assert PASSWORD not in caplog.text


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory, example_project: Path) -> Path:
    """A project folder (never run: a store is checked before anything else)."""
    import shutil

    root = tmp_path_factory.mktemp("pgcli") / "p"
    shutil.copytree(example_project, root)
    return root


def _bad_urls(pg_url: str) -> dict[str, tuple[str, str]]:
    """id: (--store value, words of the refusal); one of each kind of unusable store."""
    from psycopg.conninfo import conninfo_to_dict

    params = conninfo_to_dict(pg_url)
    user, db = str(params["user"]), str(params["dbname"])
    return {
        "no-server": ("postgresql://adaptlab@/adaptlab?host=/nonexistent/run", "cannot reach"),
        "no-database": (pg_url.replace(f"/{db}?", "/no_such_db?"), "does not exist"),
        "no-user": (pg_url.replace(f"{user}@", "nobody_here@"), "no such user"),
        "bad-port": ("postgresql://adaptlab@localhost:notaport/x", "postgresql://"),
        "other-database": ("mysql://root@localhost/adaptlab", "postgresql://"),
        "password": (f"postgresql://bob:{PASSWORD}@/x?host=/tmp", "password"),
        "space": ("postgresql://bob@localhost/my db", "whitespace"),
    }


COMMANDS = {
    "serve": ("serve", "--model", "m=exported-model", "--port", "1"),
    "keys-add": ("keys", "add", "app"),
    "keys-list": ("keys", "list"),
    "keys-revoke": ("keys", "revoke", "app"),
    "logs-export": ("logs", "export"),
    "logs-stats": ("logs", "stats"),
}


@pytest.mark.parametrize(
    "kind",
    ["no-server", "no-database", "no-user", "bad-port", "other-database", "password", "space"],
)
def test_a_store_that_cannot_be_used_is_refused_by_every_command_with_the_fix(
    cli: Any, pg_url: str, project: Path, kind: str
) -> None:
    from adaptlab.store.db import display

    value, words = _bad_urls(pg_url)[kind]
    for name, args in COMMANDS.items():
        result = cli(*args, "-p", str(project), "--store", value)
        assert result.code == 2, (name, result.text)
        text = result.text
        assert words.lower() in text.lower(), (name, text)
        assert display(value) in text or "'" + display(value) + "'" in text, (name, text)
        assert PASSWORD not in text, (name, text)
        if kind not in ("bad-port", "other-database", "password", "space"):
            assert "fix:" in text.lower(), (name, text)


def test_keys_and_logs_read_and_write_the_store_named_by_the_environment(
    cli: Any, pg_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, project: Path
) -> None:
    # a password is allowed in ADAPTLAB_STORE_URL (a secret manager sets it) and shown nowhere
    with_password = pg_url.replace("@/", f":{PASSWORD}@/", 1)
    assert with_password != pg_url
    monkeypatch.setenv("ADAPTLAB_STORE_URL", with_password)
    monkeypatch.chdir(tmp_path)  # no project folder: keys need none
    added = cli("keys", "add", "shared-app", "--rpm", "60")
    secret = added.stdout.strip()
    assert added.code == 0 and secret.startswith("al-"), added.text
    listed = cli("keys", "list").ok()
    assert "shared-app" in listed and "60" in listed and secret not in listed
    assert cli("keys", "revoke", "shared-app").ok()
    assert "shared-app" in cli("keys", "list").ok()
    again = cli("keys", "revoke", "shared-app")
    assert again.code == 2 and "no active key" in again.text
    stats = cli("logs", "stats", "-p", str(project)).ok()
    assert "no served requests yet" in stats
    for result in (added, listed, stats):
        assert PASSWORD not in str(result)
    monkeypatch.setenv("ADAPTLAB_STORE_URL", "mysql://root:pw-in-env@db/x")
    bad = cli("keys", "list")
    assert bad.code == 2 and "ADAPTLAB_STORE_URL" in bad.text and "pw-in-env" not in bad.text


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_keys_rate_limit_gives_429_with_retry_after_on_either_store(
    tmp_path: Path, request: pytest.FixtureRequest, engine: str
) -> None:
    # the same contract from both keepers: the limits library's moving window in memory
    # (SQLite, one server) and the per-second counts in PostgreSQL (any number of them)
    cfg = config(tmp_path, Script(), auth=True)
    if engine == "postgresql":
        cfg.store_url = request.getfixturevalue("pg_url")
    with RunStore(cfg.store) as store:
        three = {"authorization": f"Bearer {add_key(store.conn, 'three', 3)[1]}"}
        free = {"authorization": f"Bearer {add_key(store.conn, 'free', None)[1]}"}
    predict = b'{"input":"my bill"}'

    async def scenario(app: Any) -> list[Reply]:
        replies = [await call(app, "POST", "/v1/predict", predict, **three) for _ in range(5)]
        return [*replies, await call(app, "POST", "/v1/predict", predict, **free)]

    replies = run_app(cfg, scenario)
    assert [r.status for r in replies] == [200, 200, 200, 429, 429, 200]
    for r in replies[3:5]:
        assert r.error()["code"] == "rate_limit_exceeded" and "3 requests per minute" in str(
            r.error()["message"]
        )
        assert 58 <= int(r.headers["retry-after"]) <= 61, r.headers
    if engine == "postgresql":  # the server closed every connection it opened
        with RunStore(cfg.store) as store:
            others = store.conn.execute(
                "SELECT COUNT(*) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid()"
            ).fetchone()[0]
        assert others == 0
