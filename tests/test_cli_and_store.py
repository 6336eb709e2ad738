"""The public surface: a light --help, the API's __all__, the run store's migrations."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import adaptlab
from adaptlab.store import MIGRATIONS, PredictionRow, ResultRow, RunStore


def test_help_does_not_import_torch() -> None:
    code = (
        "import sys; from adaptlab.cli import cli; "
        "sys.argv=['adaptlab','--help']\n"
        "try:\n    cli.main(standalone_mode=False)\nexcept SystemExit:\n    pass\n"
        "heavy = [m for m in ('torch', 'sentence_transformers', 'transformers', 'sklearn') "
        "if m in sys.modules]\n"
        "print('HEAVY', heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "HEAVY []" in out.stdout, out.stdout + out.stderr
    assert "demo" in out.stdout and "run" in out.stdout


def test_all_is_complete_and_sorted() -> None:
    assert adaptlab.__all__ == sorted(adaptlab.__all__)
    for name in adaptlab.__all__:
        assert getattr(adaptlab, name) is not None
    assert (Path(adaptlab.__file__).parent / "py.typed").exists()


def test_migrations_are_numbered_and_recorded(tmp_path: Path) -> None:
    db = tmp_path / "runs.db"
    with RunStore(db) as store:
        assert store.schema_version == len(MIGRATIONS)
    with RunStore(db) as store:  # reopening applies nothing twice
        rows = store.conn.execute("SELECT version FROM schema_migrations").fetchall()
        assert [r[0] for r in rows] == list(range(1, len(MIGRATIONS) + 1))


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    result = ResultRow("k1", "c", "zero-shot", {}, 0.0, 0.0, 0.0, 0.0, 1, False, {})
    rows = [PredictionRow("f:1", "x", "a", "a", 1.0, None)] * 2
    with RunStore(tmp_path / "runs.db") as store:
        try:
            # gold is NOT NULL: the third row fails after two were inserted
            bad = [*rows, PredictionRow("f:3", "y", None, "a", 1.0, None)]  # type: ignore[arg-type]
            store.save_result(result, bad, [])
        except sqlite3.IntegrityError:
            pass
        assert not store.has_result("k1")
        assert store.conn.execute("SELECT COUNT(*) FROM predictions").fetchone()[0] == 0
        store.save_result(result, rows, [(1, 0.5, "train", "loss", 0.3)])
        assert store.has_result("k1")
        assert len(store.predictions("k1")) == 2
        assert store.curves("k1") == [(1, 0.5, "train", "loss", 0.3)]
