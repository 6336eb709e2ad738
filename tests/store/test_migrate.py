"""``adaptlab store migrate``: a project's SQLite store copied to PostgreSQL, verified;
afterwards every command reads the same figures from either store."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab.store import RunStore
from tests.conftest import small_project

CANDIDATES = [
    {"name": "tfidf", "strategy": "tfidf-lr", "params": {"c_grid": [1.0]}},
    {"name": "tfidf-strong", "strategy": "tfidf-lr", "params": {"ngram_max": 1, "c_grid": [1.0]}},
]


def _serve_rows(target: Path | str) -> None:
    """Rows in the serving tables too (a key, two requests, feedback with its serial id)."""
    with RunStore(target) as store, store.transaction() as c:
        c.execute(
            "INSERT INTO api_keys (id, name, prefix, hash, rpm, created_at) VALUES (?,?,?,?,?,?)",
            ("k1", "app", "al_abc", "h" * 64, 60, "2026-01-01T00:00:00+00:00"),
        )
        for rid in ("r1", "r2"):
            c.execute(
                "INSERT INTO requests (id, created_at, endpoint, candidate, input, output, "
                "http_status, latency_ms) VALUES (?,?,?,?,?,?,?,?)",
                (
                    rid,
                    "2026-01-01T00:00:01+00:00",
                    "/v1/predict",
                    "tfidf",
                    "x",
                    "billing",
                    200,
                    1.5,
                ),
            )
        c.execute(
            "INSERT INTO feedback (request_id, created_at, label) VALUES (?,?,?)",
            ("r1", "2026-01-01T00:00:02+00:00", "billing"),
        )


def _configure(root: Path, **changes: Any) -> None:
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
    for key, value in changes.items():
        cfg[key] = {**cfg[key], **value} if isinstance(value, dict) else value
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _figures(cli: Any, root: Path) -> dict[str, str]:
    """What a user reads: the runs list, the exported results, the report's and decide's
    tables (their text, without the paths that name the report file)."""
    out = {
        "runs": cli("runs", "-p", root).ok(),
        "export": cli("export", "results", "-p", root).ok(),
        "export-csv": cli("export", "results", "-p", root, "--format", "csv").ok(),
        "report": cli("report", "-p", root, "-o", root / "r.html").ok(),
        "decide": cli("decide", "-p", root, "--no-input").ok(),
    }
    html = (root / "r.html").read_text()
    out["report.html"] = re.sub(r"\d{4}-\d\d-\d\d[ T][\d:]+", "<time>", html)
    return out


@pytest.mark.slow  # a real run of two TF-IDF candidates, then every reading command twice
def test_migrate_copies_everything_and_commands_read_the_same(
    cli: Any, tmp_path: Path, example_project: Path, pg_url: str
) -> None:
    root = small_project(tmp_path / "p", example_project, 8, CANDIDATES)
    _configure(root, evaluation={"cv_folds": 0})  # cross-validation has its own tests
    cli("run", "-p", root).ok()
    _serve_rows(root / ".adaptlab" / "runs.db")
    before = _figures(cli, root)

    copied = cli("store", "migrate", "-p", root, "--to", pg_url).ok()
    assert "copied" in copied
    for table, rows in (("runs", 1), ("results", 2), ("run_candidates", 2), ("feedback", 1)):
        found = re.search(rf"\b{table} (\d+) rows", copied)
        assert found is not None and found.group(1) == str(rows), copied
    again = cli("store", "migrate", "-p", root, "--to", pg_url).ok()
    assert "already there (identical), nothing copied" in again

    _configure(root, store=pg_url)
    (root / ".adaptlab" / "runs.db").rename(root / "runs.db.bak")  # nothing read from it
    after = _figures(cli, root)
    for name, text in before.items():
        assert after[name] == text, name
    assert not (root / ".adaptlab" / "runs.db").exists()

    rerun = cli("run", "-p", root).ok()  # the copied results are reused, not recomputed
    assert rerun.count("unchanged since the last run") == 2, rerun
    with RunStore(pg_url) as store:
        assert [r["status"] for r in store.runs()] == ["finished", "finished"]
        # the serial key goes on after the copied ids
        store.conn.execute(
            "INSERT INTO feedback (request_id, created_at) VALUES (?, ?)", ("r2", "t")
        )
        ids = [r[0] for r in store.conn.execute("SELECT id FROM feedback ORDER BY id").fetchall()]
        assert ids == [1, 2]


def test_migrate_refuses_a_target_with_other_rows(cli: Any, tmp_path: Path, pg_url: str) -> None:
    source = tmp_path / "runs.db"
    _serve_rows(source)
    root = tmp_path / "p"
    root.mkdir()
    (root / "adaptlab.yaml").write_text(
        "name: t\ndata: {path: d.jsonl}\ncandidates: [{name: z, strategy: zero-shot}]\n"
        "labels: {a: about a, b: about b}\nevaluation: {baseline: false}\n"
    )
    cli("store", "migrate", "-p", root, "--from", source, "--to", pg_url).ok()
    with RunStore(pg_url) as store:
        store.conn.execute("UPDATE requests SET output = 'refund' WHERE id = 'r2'")
    error = cli("store", "migrate", "-p", root, "--from", source, "--to", pg_url).error(
        "already holds other rows", "requests", "empty database"
    )
    assert "api_keys" not in error.split("differ:")[1].split(")")[0]
    missing = cli("store", "migrate", "-p", root, "--to", pg_url)
    missing.error("no run store here to copy")
