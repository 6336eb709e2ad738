"""Shared fixtures: an isolated environment, one model load per session, small projects."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner

# rich fixes a console's width at creation when COLUMNS is set (pytest-xdist's workers
# inherit one): unset, the CLI's consoles read the width each test's ``cli`` sets.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

from adaptlab.cli import cli as adaptlab_cli
from adaptlab.cli.common import handle_errors
from adaptlab.engine.scaffold import init_project

SHARED = Path(__file__).resolve().parents[2] / "shared"


@pytest.fixture(scope="session")
def model_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One converted-model cache per session: the bundled GGUF converts once (~20 s)."""
    return tmp_path_factory.mktemp("model-cache")


@pytest.fixture(autouse=True)
def env_setup(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory, model_cache: Path
) -> None:
    """No test reads the developer's home, keys, model cache or a model hub."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("ADAPTLAB_CACHE_DIR", str(model_cache))
    monkeypatch.setenv("HF_HOME", str(home / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    for key in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "HF_TOKEN"):
        monkeypatch.delenv(key, raising=False)


@pytest.fixture(scope="session")
def backend():  # type: ignore[no-untyped-def]
    """The bundled encoder, loaded once; strategies never mutate it."""
    from adaptlab.backends.sentence_transformers import (
        SentenceTransformerBackend,
        SentenceTransformerOptions,
    )

    return SentenceTransformerBackend(SentenceTransformerOptions())


@pytest.fixture(scope="session")
def example_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A pristine copy of the bundled example; copy it again before writing to it."""
    return init_project(tmp_path_factory.mktemp("ex") / "support", example="support-tickets")


def small_project(
    target: Path, example_project: Path, per_label: int, candidates: list[dict[str, Any]]
) -> Path:
    """A fast project: ``per_label`` tickets of each label and the given candidates."""
    import yaml

    shutil.copytree(example_project, target)
    rows = [json.loads(line) for line in (target / "data/tickets.jsonl").open()]
    random.Random(0).shuffle(rows)
    kept: dict[str, int] = {}
    with (target / "data/tickets.jsonl").open("w") as fh:
        for row in rows:
            if kept.get(row["label"], 0) < per_label:
                kept[row["label"]] = kept.get(row["label"], 0) + 1
                fh.write(json.dumps(row) + "\n")
    cfg = yaml.safe_load((target / "adaptlab.yaml").read_text())
    cfg["candidates"] = candidates
    cfg["evaluation"]["baseline"] = False  # tests/decide cover the TF-IDF baseline
    cfg["evaluation"]["latency_samples"] = 5
    cfg["evaluation"]["bootstrap_resamples"] = 200
    (target / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return target


def pytest_configure(config: pytest.Config) -> None:
    """Ctrl-C reaches the test's child processes as it reaches a user's terminal.

    A shell starts a background job (``bash .ci/run &``) with SIGINT ignored, and a child
    inherits that: the tests that press Ctrl-C on ``adaptlab run`` would then see it
    finish, or wait forever. Python's own handler is restored for the session.
    """
    import signal

    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


def adaptlab_process(*args: str) -> subprocess.Popen[str]:
    """``python -m adaptlab ARGS`` in the background, output unbuffered and unwrapped."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "adaptlab", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
    )


@dataclass
class Outcome:
    exit_code: int
    output: str  # whitespace runs made one space: rich wraps long lines


def run_cli(*args: str, command: click.Command = adaptlab_cli) -> Outcome:
    """``adaptlab ARGS`` as the entry point runs it: a user error prints and exits 2."""

    def entry() -> None:
        with handle_errors():
            command.main(list(args), standalone_mode=False)

    result = CliRunner().invoke(click.Command("adaptlab", callback=entry), [])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Outcome(result.exit_code, " ".join(result.output.split()))


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        """stdout and stderr with runs of whitespace folded (rich wraps long lines)."""
        return " ".join((self.stderr + "\n" + self.stdout).split())

    def error(self, *needles: str) -> str:
        """Assert a user error (exit 2) with a fix line naming every needle."""
        assert self.code == 2, f"exit {self.code}, expected 2:\n{self.stderr}{self.stdout}"
        low = self.text.lower()
        for needle in needles:
            assert needle.lower() in low, f"{needle!r} not in:\n{self.text}"
        assert "fix:" in low, f"no fix line:\n{self.text}"
        return self.text

    def ok(self) -> str:
        assert self.code == 0, f"exit {self.code}:\n{self.stderr}{self.stdout}"
        return self.text


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``cli("run", "-p", dir)`` -> :class:`CliResult`; a raw traceback fails the test."""
    from adaptlab.cli import main

    def call(*args: str, columns: int = 200) -> CliResult:
        monkeypatch.setenv("COLUMNS", str(columns))
        monkeypatch.setattr(sys, "argv", ["adaptlab", *map(str, args)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main()
        out = capsys.readouterr()
        code = exc.value.code if isinstance(exc.value.code, int) else 1
        result = CliResult(code, out.out, out.err)
        assert "Traceback (most recent call last)" not in out.out + out.err, result.text
        assert code != 3, f"internal error (a bug):\n{result.text}"
        return result

    return call


@pytest.fixture(scope="session")
def pg_server(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The bundled PostgreSQL (``pgserver``), started once per session in a temporary
    folder and deleted after it; its URL. Skips where ``pgserver`` is not installed."""
    import warnings

    try:
        with warnings.catch_warnings():  # platformdirs: "XDG_RUNTIME_DIR is not set"
            warnings.simplefilter("ignore")
            import pgserver  # noqa: F401
    except ImportError:
        pytest.skip('pgserver is not installed: pip install "adaptlab[pgvector]"')
    from adaptlab.rag.pgvector import local_server, stop_local_server

    datadir = tmp_path_factory.mktemp("pg-session") / "data"
    url = local_server(datadir, cleanup_mode="delete")
    yield url
    stop_local_server(datadir)


_pg_databases = iter(range(1, 1_000_000))


@pytest.fixture
def pg_url(pg_server: str) -> Any:
    """A fresh, empty database on the session's PostgreSQL, for one test; its
    ``postgresql://`` URL (Unix socket, no password)."""
    from urllib.parse import quote

    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    name = f"adaptlab_test_{os.getpid()}_{next(_pg_databases)}"
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    params = conninfo_to_dict(pg_server)
    yield f"postgresql://{params['user']}@/{name}?host={quote(str(params['host']), safe='')}"
    # Dropped at once: the server stops quicker at the session's end with few databases.
    with psycopg.connect(pg_server, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
