"""Kind 8: two runs on one project, and runs that end without saying so.

Two ``adaptlab run`` at once must not pay for an answer twice: the second waits
for the project's run lock (and says so), then reuses what the first stored. A
fresh store opened by several processes at once migrates once. A run killed with
``kill -9`` leaves its lock free (the operating system releases it) and its row
marked ``interrupted`` by the next run; Ctrl-C prints how to resume, exit 130.
"""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from adaptlab.store import MIGRATIONS
from adaptlab.store.lock import RunLock
from tests.conftest import adaptlab_process
from tests.fakes.fake_llm import FakeLLMServer
from tests.hostile.projects import llm_project, oracle, run_statuses, stored_project

pytestmark = pytest.mark.timeout(180)


def _wait_for(predicate: Any, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("force", [False, True], ids=["plain", "force"])
def test_two_runs_at_once_pay_for_each_answer_once(tmp_path: Path, force: bool) -> None:
    with FakeLLMServer(oracle, latency_s=0.4) as server:
        root = llm_project(tmp_path / "p", server.base_url, ("zero", "again"), max_concurrency=1)
        args = ("run", "-p", str(root), *(("--force",) if force else ()))
        first, second = adaptlab_process(*args), adaptlab_process(*args)
        out1, _ = first.communicate(timeout=150)
        out2, _ = second.communicate(timeout=150)
    assert first.returncode == 0, out1
    assert second.returncode == 0, out2
    counts = server.counts()
    # the test and val splits: one prompt per input (both candidates ask it)
    assert len(counts) == 12
    assert set(counts.values()) == {1}, counts
    waited = [out for out in (out1, out2) if "another adaptlab run (pid" in out]
    assert len(waited) == 1, (out1, out2)
    assert "waiting" in waited[0]
    assert run_statuses(root) == ["finished", "finished"]


def test_a_fresh_store_opened_by_many_processes_migrates_once(tmp_path: Path) -> None:
    db = tmp_path / "fresh" / ".adaptlab" / "runs.db"
    start = time.time() + 3.0  # every process past its imports, then all at once
    code = (
        "import sys, time; from adaptlab.store import RunStore\n"
        f"t = {start!r}\n"
        "while time.time() < t: pass\n"
        "RunStore(sys.argv[1]).close()\n"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(db)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(6)
    ]
    for p in procs:
        out, _ = p.communicate(timeout=60)
        assert p.returncode == 0, out
    with sqlite3.connect(db) as conn:
        versions = [r[0] for r in conn.execute("SELECT version FROM schema_migrations")]
    assert versions == list(range(1, len(MIGRATIONS) + 1))


def test_report_while_a_run_holds_the_project(cli: Any, tmp_path: Path) -> None:
    root = stored_project(tmp_path / "p", ["billing", "refund"], 40)
    with RunLock(root / ".adaptlab" / "run.lock").acquire():
        cli("report", "-p", root).ok()


def test_kill_9_frees_the_project_and_the_next_run_marks_it(tmp_path: Path) -> None:
    with FakeLLMServer(oracle, latency_s=0.5) as server:
        root = llm_project(tmp_path / "p", server.base_url, max_concurrency=1)
        proc = adaptlab_process("run", "-p", str(root))
        _wait_for(lambda: len(server.calls) >= 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert run_statuses(root) == ["running"]  # what kill -9 leaves behind
        rerun = adaptlab_process("run", "-p", str(root))
        out, _ = rerun.communicate(timeout=150)
    assert rerun.returncode == 0, out
    assert "waiting" not in out  # the lock died with its process
    assert run_statuses(root) == ["interrupted", "finished"]


def test_ctrl_c_prints_how_to_resume(tmp_path: Path) -> None:
    with FakeLLMServer(oracle, latency_s=0.5) as server:
        root = llm_project(tmp_path / "p", server.base_url, max_concurrency=1)
        proc = adaptlab_process("run", "-p", str(root))
        _wait_for(lambda: len(server.calls) >= 2)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, out
    assert "Traceback" not in out
    assert "aborted" not in out.lower()
    assert f"'adaptlab run -p {root}' resumes from there" in " ".join(out.split())
    assert run_statuses(root) == ["interrupted"]


def test_ctrl_c_while_waiting_for_another_run(tmp_path: Path) -> None:
    with FakeLLMServer(oracle) as server:
        root = llm_project(tmp_path / "p", server.base_url)
        with RunLock(root / ".adaptlab" / "run.lock").acquire():
            proc = adaptlab_process("run", "-p", str(root))
            lines: list[str] = []
            assert proc.stdout is not None
            while not any("another adaptlab run (pid" in line for line in lines):
                line = proc.stdout.readline()
                assert line, "".join(lines)
                lines.append(line)
            proc.send_signal(signal.SIGINT)
            out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 130, out
        assert "resumes from there" in out
        assert not server.calls
    assert not (root / ".adaptlab" / "runs.db").exists() or run_statuses(root) == []
