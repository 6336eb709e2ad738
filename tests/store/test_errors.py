"""A store URL that cannot work gets a clear error naming it (never its password) and
the fix; a password given through the environment is never shown, logged or stored."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab.store import RunStore
from tests.fakes.fake_llm import FakeLLMServer
from tests.hostile.projects import llm_project, oracle

SECRET = "Hunter2pw"


def _project(root: Path, store: str | None = None) -> Path:
    llm_project(root, "http://127.0.0.1:9/v1")
    if store is not None:
        cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
        cfg["store"] = store
        (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


@pytest.mark.parametrize(
    ("store", "says"),
    [
        (f"postgresql://bob:{SECRET}@db.example/x", "holds a password"),
        (f"postgresql://db.example/x?password={SECRET}", "holds a password"),
        (f"postgres://bob:{SECRET}@db.example/x", "holds a password"),
        ("mysql://db.example/x", "must be a PostgreSQL URL"),
        ("sqlite:///runs.db", "must be a PostgreSQL URL"),
        ("db.example/x", "must be a PostgreSQL URL"),
        ("", "is empty"),
        ("postgresql://db.example /x", "whitespace"),
    ],
)
def test_a_bad_store_in_adaptlab_yaml(cli: Any, tmp_path: Path, store: str, says: str) -> None:
    root = _project(tmp_path / "p", store)
    text = cli("runs", "-p", root).error(says, "adaptlab.yaml", "store")
    assert SECRET not in text


def _bad_env_urls(pg_url: str) -> list[tuple[str, str, str]]:
    """(ADAPTLAB_STORE_URL, what the error says, what the fix says)."""
    user_at, rest = pg_url.split("@", 1)
    with_secret = f"{user_at}:{SECRET}@{rest}"
    return [
        (f"mysql://u:{SECRET}@h/x", "ADAPTLAB_STORE_URL must be a PostgreSQL URL", "unset"),
        (f"postgresql://u:{SECRET}@127.0.0.1:1/x", "cannot reach PostgreSQL", "pg_isready"),
        (f"postgresql://u:{SECRET}@[::1/x", "not a valid connection URL", "postgresql://USER@"),
        (f"postgresql://u@h/x?sslpassword={SECRET}&bogus=1", "not a valid connection URL", "USER@"),
        (with_secret.replace("/adaptlab_test_", "/nodb_"), "database does not exist", "createdb"),
        (
            with_secret.replace("postgresql://", "postgresql://nobody_here"),
            "no such user",
            "createuser",
        ),
    ]


def test_bad_store_urls_in_the_environment(
    cli: Any, tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _project(tmp_path / "p")
    for url, says, fix in _bad_env_urls(pg_url):
        monkeypatch.setenv("ADAPTLAB_STORE_URL", url)
        text = cli("runs", "-p", root).error(says, fix)
        assert SECRET not in text, url
    assert not (root / ".adaptlab").exists()  # no SQLite store made instead


def test_a_password_on_the_command_line_is_refused(cli: Any, tmp_path: Path) -> None:
    root = _project(tmp_path / "p")
    text = cli("store", "migrate", "-p", root, "--to", f"postgresql://u:{SECRET}@h/x").error(
        "--to", "holds a password", "PGPASSWORD"
    )
    assert SECRET not in text


def test_a_password_from_the_environment_is_never_shown_logged_or_stored(
    cli: Any,
    tmp_path: Path,
    pg_url: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The test server trusts local connections, so a password in the URL is accepted
    and ignored: a whole run goes through the store it names."""
    user_at, rest = pg_url.split("@", 1)
    monkeypatch.setenv("ADAPTLAB_STORE_URL", f"{user_at}:{SECRET}@{rest}")
    caplog.set_level(logging.DEBUG)
    with FakeLLMServer(oracle) as server:
        root = llm_project(tmp_path / "p", server.base_url)
        shown = [cli("run", "-p", root).ok(), cli("runs", "-p", root).ok()]
    shown.append(cli("export", "results", "-p", root).ok())
    assert all(SECRET not in text for text in shown), shown
    assert "stored in postgresql://" in shown[0] and ":***@" in shown[0]
    assert SECRET not in caplog.text
    assert not (root / ".adaptlab" / "runs.db").exists()
    with RunStore(pg_url) as store:
        tables = [
            r[0]
            for r in store.conn.execute(
                "SELECT table_name FROM information_schema.tables "
                "WHERE table_schema = current_schema()"
            ).fetchall()
        ]
        assert "runs" in tables
        for table in tables:
            for row in store.conn.execute(f'SELECT * FROM "{table}"').fetchall():
                assert SECRET not in repr(tuple(row)), table
        assert len(store.runs()) == 1
