"""Kind 7 and 12: the project folder's state, and the scale of labels.

Whatever state ``.adaptlab`` is in — a store of random bytes, empty or truncated, a
file where a folder belongs, a read-only or full disk, a store locked by another
process or written by a newer adaptlab, a damaged response cache — a command stops
with the file and the fix, never a ``sqlite3``/``OSError`` traceback; and no run is
left ``running`` once its process is gone.
"""

from __future__ import annotations

import errno
import hashlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from adaptlab.store import RunStore
from tests.fakes.fake_llm import FakeLLMServer
from tests.hostile.conftest import GOOD, jsonl, write_project
from tests.hostile.projects import llm_project, oracle, run_statuses, stored_project


@pytest.fixture
def server() -> Any:
    with FakeLLMServer(oracle) as s:
        yield s


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# ---------------------------------------------------------------- a damaged runs.db


def _random_bytes(db: Path) -> None:
    db.write_bytes(os.urandom(8192))


def _text_file(db: Path) -> None:
    db.write_text("this is not a database\n" * 50)


def _truncated(db: Path) -> None:
    data = db.read_bytes()
    db.write_bytes(data[: len(data) // 3])


def _torn_pages(db: Path) -> None:
    data = bytearray(db.read_bytes())
    data[4096 : len(data) - 4096] = os.urandom(len(data) - 8192)  # header kept, pages garbage
    db.write_bytes(bytes(data))


def _folded(db: Path) -> None:
    db.unlink()
    db.mkdir()


DAMAGE: dict[str, Callable[[Path], None]] = {
    "random-bytes": _random_bytes,
    "text-file": _text_file,
    "truncated": _truncated,
    "torn-pages": _torn_pages,
    "a-folder": _folded,
}


def _checkpointed(root: Path) -> Path:
    """A stored project whose runs.db holds everything in the main file (no -wal beside it)."""
    stored_project(root, ["billing", "shipping", "refund"], 400)
    db = root / ".adaptlab" / "runs.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
    return db


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.parametrize("command", ["report", "run"])
def test_a_damaged_store_names_the_file_and_the_fix(
    cli: Any, tmp_path: Path, server: FakeLLMServer, damage: str, command: str
) -> None:
    db = _checkpointed(tmp_path / "p")
    if command == "run":
        llm_project(tmp_path / "p", server.base_url)
    DAMAGE[damage](db)
    text = cli(command, "-p", tmp_path / "p").error("runs.db")
    assert ("move" in text and ("runs.db.broken" in text or ".bak" in text)) or "damaged" in text
    assert not server.calls  # nothing was paid for before the store was found unusable


def test_an_empty_store_is_a_new_store(cli: Any, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    (root / ".adaptlab").mkdir()
    (root / ".adaptlab" / "runs.db").write_bytes(b"")
    cli("report", "-p", root).error("no finished run", "adaptlab run")


def test_an_empty_store_runs(cli: Any, tmp_path: Path, server: FakeLLMServer) -> None:
    root = llm_project(tmp_path / "p", server.base_url)
    (root / ".adaptlab").mkdir()
    (root / ".adaptlab" / "runs.db").write_bytes(b"")
    cli("run", "-p", root).ok()
    assert run_statuses(root) == ["finished"]


# ---------------------------------------------------------------- newer schema


@pytest.mark.parametrize("command", ["report", "run"])
def test_a_store_from_a_newer_adaptlab_is_refused_and_not_written(
    cli: Any, tmp_path: Path, server: FakeLLMServer, command: str
) -> None:
    db = _checkpointed(tmp_path / "p")
    llm_project(tmp_path / "p", server.base_url)
    with sqlite3.connect(db) as conn:
        conn.execute("INSERT INTO schema_migrations VALUES (99, 'from the future', 'x')")
    before = _digest(db)
    text = cli(command, "-p", tmp_path / "p").error("runs.db", "newer adaptlab", "upgrade")
    assert "99" in text
    assert _digest(db) == before
    assert not server.calls


# ---------------------------------------------------------------- folders and files


def _state_is_file(root: Path) -> Path:
    (root / ".adaptlab").write_text("not a folder")
    return root / ".adaptlab"


def _splits_is_file(root: Path) -> Path:
    (root / ".adaptlab").mkdir()
    (root / ".adaptlab" / "splits").write_text("not a folder")
    return root / ".adaptlab" / "splits"


def _lock_is_folder(root: Path) -> Path:
    (root / ".adaptlab" / "run.lock").mkdir(parents=True)
    return root / ".adaptlab" / "run.lock"


def _cache_is_folder(root: Path) -> Path:
    (root / ".adaptlab" / "llm_cache.db").mkdir(parents=True)
    return root / ".adaptlab" / "llm_cache.db"


@pytest.mark.parametrize(
    "make", [_state_is_file, _splits_is_file, _lock_is_folder, _cache_is_folder]
)
def test_a_file_where_a_folder_belongs_or_back(
    cli: Any, tmp_path: Path, server: FakeLLMServer, make: Callable[[Path], Path]
) -> None:
    root = llm_project(tmp_path / "p", server.base_url)
    blocker = make(root)
    cli("run", "-p", root).error(str(blocker), "mv")
    assert not server.calls


def test_state_folder_is_a_file_for_report(cli: Any, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    (root / ".adaptlab").write_text("not a folder")
    cli("report", "-p", root).error(".adaptlab", "mv")


def test_reports_is_a_file(cli: Any, tmp_path: Path) -> None:
    root = stored_project(tmp_path / "p", ["a", "b"], 40)
    (root / "reports").write_text("not a folder")
    cli("report", "-p", root).error("reports", "mv")


def test_report_output_is_a_folder(cli: Any, tmp_path: Path) -> None:
    root = stored_project(tmp_path / "p", ["a", "b"], 40)
    (tmp_path / "out.html").mkdir()
    cli("report", "-p", root, "-o", tmp_path / "out.html").error("out.html", "folder")


# ---------------------------------------------------------------- read-only folders
# Tests may run as root, where chmod stops nothing: the operating system's answer is
# injected where adaptlab first writes, with the errno a read-only folder gives.


@pytest.mark.parametrize(
    ("code", "needle"),
    [(errno.EACCES, "chmod"), (errno.EROFS, "read-only"), (errno.EPERM, "chmod")],
)
def test_a_read_only_project_folder(
    cli: Any,
    tmp_path: Path,
    server: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    needle: str,
) -> None:
    root = llm_project(tmp_path / "p", server.base_url)
    real_mkdir = Path.mkdir

    def mkdir(self: Path, *args: Any, **kw: Any) -> None:
        if root in [self, *self.parents]:
            raise OSError(code, os.strerror(code), str(self))
        real_mkdir(self, *args, **kw)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    cli("run", "-p", root).error(".adaptlab", needle)
    assert not server.calls


def test_a_read_only_store_file(
    cli: Any, tmp_path: Path, server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's own answer for a file it may read but not write ('readonly database')."""
    db = _checkpointed(tmp_path / "p")
    root = llm_project(tmp_path / "p", server.base_url)
    real = sqlite3.connect

    def read_only(path: Any, *args: Any, **kw: Any) -> sqlite3.Connection:
        if Path(path) == db:
            conn: sqlite3.Connection = real(f"file:{db}?mode=ro", *args, uri=True, **kw)
        else:
            conn = real(path, *args, **kw)
        return conn

    monkeypatch.setattr("adaptlab.store.files.sqlite3.connect", read_only)
    cli("run", "-p", root).error("runs.db", "writable")


def test_report_into_a_read_only_reports_folder(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = stored_project(tmp_path / "p", ["a", "b"], 40)

    def mkstemp(*args: Any, dir: Any = None, **kw: Any) -> Any:
        raise PermissionError(errno.EACCES, "Permission denied", str(dir))

    monkeypatch.setattr("adaptlab.core.files.tempfile.mkstemp", mkstemp)
    cli("report", "-p", root).error("reports", "chmod")


# ---------------------------------------------------------------- a full disk


def test_disk_full_while_storing_predictions(
    cli: Any, tmp_path: Path, server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SQLite's SQLITE_FULL, for real: the store may not grow past its current size."""
    rows = [{"text": f"{r['text']} " + "long words " * 300, "label": r["label"]} for r in GOOD]
    root = llm_project(tmp_path / "p", server.base_url, data=jsonl(rows))
    from adaptlab.store import sqlite as store_module

    real = store_module.RunStore.start_run

    def start_then_fill(self: RunStore, *args: Any, **kw: Any) -> None:
        real(self, *args, **kw)
        pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
        self.conn.execute(f"PRAGMA max_page_count = {pages}")

    monkeypatch.setattr(store_module.RunStore, "start_run", start_then_fill)
    cli("run", "-p", root).error("runs.db", "no space left", "df -h")
    assert run_statuses(root) == ["failed"]
    # The answers that were paid for are kept: the rerun asks for none of them again.
    sent = len(server.calls)
    monkeypatch.undo()
    cli("run", "-p", root).ok()
    assert len(server.calls) == sent


@pytest.mark.parametrize("where", ["split", "cache"])
def test_disk_full_writing_state_files(
    cli: Any,
    tmp_path: Path,
    server: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
) -> None:
    root = llm_project(tmp_path / "p", server.base_url)

    def full(*args: Any, **kw: Any) -> None:
        path = root / ".adaptlab" / ("splits/test.jsonl" if where == "split" else "llm_cache.db")
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    if where == "split":
        monkeypatch.setattr("adaptlab.data.split._atomic_write", full)
    else:
        monkeypatch.setattr("adaptlab.llm.cache.ResponseCache.put", full)
    cli("run", "-p", root).error("no space left", "df -h")
    if where == "cache":
        assert run_statuses(root) == ["failed"]


def test_disk_full_writing_the_report_leaves_no_half_file(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = stored_project(tmp_path / "p", ["a", "b"], 40)

    def fsync(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("adaptlab.core.files.os.fsync", fsync)
    cli("report", "-p", root).error("no space left", "df -h")
    assert list((root / "reports").iterdir()) == []


@pytest.mark.parametrize(
    ("code", "needles"),
    [
        (errno.ENOSPC, ("no space left", "df -h")),
        (errno.EDQUOT, ("no space left", "df -h")),
        (errno.EACCES, ("permission denied", "chmod")),
        (errno.EROFS, ("read-only", "writable folder")),
        (errno.ENOTDIR, ("a file is here", "mv")),
        (errno.EISDIR, ("a folder is here", "mv")),
        (errno.EMFILE, ("too many open files", "ulimit")),
        (errno.EIO, ("cannot be used", "check")),
    ],
)
def test_an_os_error_from_anywhere_names_the_file_and_the_fix(
    cli: Any,
    tmp_path: Path,
    server: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
    code: int,
    needles: tuple[str, ...],
) -> None:
    """The CLI's last line of defence: an OSError that no layer below turned into words."""
    root = llm_project(tmp_path / "p", server.base_url)
    where = root / ".adaptlab" / "checkpoints" / "k" / "model.bin"
    where.parent.mkdir(parents=True)
    where.write_text("x")

    def fail(*args: Any, **kw: Any) -> float:
        raise OSError(code, os.strerror(code), str(where))

    monkeypatch.setattr("adaptlab.engine.runner.run_candidate", fail)
    cli("run", "-p", root).error(str(where.parent if code == errno.ENOTDIR else where), *needles)
    assert run_statuses(root) == ["failed"]


# ---------------------------------------------------------------- a locked store


@pytest.mark.parametrize("how", ["wal-exclusive", "rollback-exclusive", "exclusive-locking-mode"])
@pytest.mark.parametrize("command", ["run", "report"])
def test_a_store_locked_by_another_process(
    cli: Any,
    tmp_path: Path,
    server: FakeLLMServer,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
    command: str,
) -> None:
    monkeypatch.setattr("adaptlab.store.files.BUSY_TIMEOUT_S", 0.3)
    if how == "wal-exclusive":
        stored_project(tmp_path / "p", ["billing", "shipping"], 40)
        db = tmp_path / "p" / ".adaptlab" / "runs.db"
    else:
        db = _checkpointed(tmp_path / "p")
    root = llm_project(tmp_path / "p", server.base_url)
    other = sqlite3.connect(db, isolation_level=None)
    try:
        if how == "exclusive-locking-mode":
            other.execute("PRAGMA locking_mode = EXCLUSIVE")
        other.execute("BEGIN EXCLUSIVE")
        other.execute("UPDATE runs SET project = project")
        result = cli(command, "-p", root)
    finally:
        other.close()
    if command == "report" and how == "wal-exclusive":
        result.ok()  # in WAL mode a writer does not block readers: the report is written
    else:
        result.error("runs.db", "locked", "wait")
    assert not server.calls


def test_a_store_busy_for_a_moment_is_waited_for(
    cli: Any, tmp_path: Path, server: FakeLLMServer
) -> None:
    """A lock held briefly (another command writing) is the busy timeout's job, not an error."""
    import threading

    db = _checkpointed(tmp_path / "p")
    root = llm_project(tmp_path / "p", server.base_url)
    other = sqlite3.connect(db, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN EXCLUSIVE")
    timer = threading.Timer(1.0, lambda: other.execute("COMMIT"))
    timer.start()
    try:
        cli("run", "-p", root).ok()
    finally:
        timer.join()
        other.close()
    assert run_statuses(root)[-1] == "finished"


def test_a_garbage_journal_beside_a_good_store_is_ignored(cli: Any, tmp_path: Path) -> None:
    db = _checkpointed(tmp_path / "p")
    Path(f"{db}-wal").write_bytes(os.urandom(4096))
    cli("report", "-p", tmp_path / "p").ok()


def _foreign_db(path: Path) -> None:
    """Another tool's SQLite file under our name: valid, but with tables of its own."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE runs (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, body BLOB)")
        conn.execute("INSERT INTO responses VALUES ('k', x'00')")


@pytest.mark.parametrize("name", ["runs.db", "llm_cache.db"])
def test_another_tools_database_under_our_name(
    cli: Any, tmp_path: Path, server: FakeLLMServer, name: str
) -> None:
    root = llm_project(tmp_path / "p", server.base_url)
    _foreign_db(root / ".adaptlab" / name)
    before = len(server.calls)
    cli("run", "-p", root).error(name)
    # The answers it could not store are not asked for again on a rerun once it is fixed.
    assert len(server.calls) <= before + 6


# ---------------------------------------------------------------- the response cache


@pytest.mark.parametrize("damage", ["random-bytes", "text-file", "torn-pages"])
@pytest.mark.parametrize("command", [("run",), ("run", "--dry-run")])
def test_a_damaged_response_cache(
    cli: Any, tmp_path: Path, server: FakeLLMServer, damage: str, command: tuple[str, ...]
) -> None:
    root = llm_project(tmp_path / "p", server.base_url)
    cli("run", "-p", root).ok()
    cache = root / ".adaptlab" / "llm_cache.db"
    with sqlite3.connect(cache) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        conn.execute("PRAGMA journal_mode = DELETE")
    DAMAGE[damage](cache)
    for side in ("-wal", "-shm"):
        Path(f"{cache}{side}").unlink(missing_ok=True)
    sent = len(server.calls)
    cli(*command, "--force", "-p", root).error("llm_cache.db", "rm")
    assert len(server.calls) == sent


# ---------------------------------------------------------------- runs left 'running'


def test_a_killed_run_is_marked_interrupted_on_the_next_run(
    cli: Any, tmp_path: Path, server: FakeLLMServer
) -> None:
    root = llm_project(tmp_path / "p", server.base_url)
    with RunStore(root / ".adaptlab" / "runs.db") as store:  # what kill -9 leaves behind
        store.start_run(
            "dead", project="x", config={}, data_fingerprint="f", seed=0, model={}, split={}
        )
    cli("run", "-p", root).ok()
    assert run_statuses(root) == ["interrupted", "finished"]


def test_a_failed_run_is_marked_failed(cli: Any, tmp_path: Path) -> None:
    with FakeLLMServer(oracle, faults=lambda call: "401") as server:
        root = llm_project(tmp_path / "p", server.base_url)
        cli("run", "-p", root).error("401")
    assert run_statuses(root) == ["failed"]


def test_ctrl_c_prints_the_resume_hint_and_marks_the_run(
    cli: Any, tmp_path: Path, server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = llm_project(tmp_path / "p", server.base_url)

    def interrupt(*args: Any, **kw: Any) -> float:
        raise KeyboardInterrupt

    monkeypatch.setattr("adaptlab.engine.runner.run_candidate", interrupt)
    result = cli("run", "-p", root)
    assert result.code == 130
    assert "aborted" not in result.text.lower()
    assert "interrupted" in result.text and f"adaptlab run -p {root}" in result.text
    assert "resumes" in result.text
    assert run_statuses(root) == ["interrupted"]


# ---------------------------------------------------------------- scale of labels


@pytest.mark.parametrize(("n_labels", "n_rows"), [(1_000, 3_000), (10_000, 20_000)])
def test_a_report_stays_bounded_however_many_labels(
    cli: Any, tmp_path: Path, n_labels: int, n_rows: int
) -> None:
    labels = [f"intent_{i:05d}" for i in range(n_labels)]
    root = stored_project(tmp_path / "p", labels, n_rows)
    text = cli("report", "-p", root, columns=80).ok()
    html = (root / "reports" / "report.html").read_text(encoding="utf-8")
    assert len(html.encode()) < 3_000_000, f"{len(html.encode()):,} bytes"
    assert f"of {n_labels:,}" in html  # the page says what it leaves out
    assert html.count("<tr><td>intent_") <= 100  # per-class table: the hardest 100
    assert "…" not in text
