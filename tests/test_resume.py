"""Killing `adaptlab run` mid-way and running it again resumes where it stopped."""

from __future__ import annotations

import signal
import sqlite3
import time
from pathlib import Path

from tests.conftest import adaptlab_process, small_project


def _results(db: Path) -> dict[str, str]:
    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn:
        try:
            return dict(conn.execute("SELECT candidate, created_at FROM results"))
        except sqlite3.OperationalError:  # schema not created yet
            return {}


def test_kill_and_rerun_resumes(tmp_path: Path, example_project: Path) -> None:
    project = small_project(
        tmp_path / "p",
        example_project,
        per_label=25,
        candidates=[
            {"name": "zero-shot", "strategy": "zero-shot"},
            {"name": "few-shot", "strategy": "few-shot", "params": {"k": 4}},
            {"name": "finetune", "strategy": "finetune", "params": {"epochs": 6, "patience": 6}},
        ],
    )
    db = project / ".adaptlab" / "runs.db"
    proc = adaptlab_process("run", "-p", str(project))
    deadline = time.monotonic() + 300
    checkpoint = None
    # Kill -9 once the two quick candidates are stored and fine-tuning has finished an
    # epoch (its resume checkpoint exists) but not the whole training.
    while time.monotonic() < deadline and proc.poll() is None:
        done = _results(db)
        ckpts = list((project / ".adaptlab" / "checkpoints").glob("*/last.pt"))
        if len(done) == 2 and ckpts:
            checkpoint = ckpts[0]
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    proc.wait(timeout=60)
    assert checkpoint is not None, "run ended before it could be killed:\n" + proc.stdout.read()  # type: ignore[union-attr]
    first = _results(db)
    assert set(first) == {"zero-shot", "few-shot"}

    rerun = adaptlab_process("run", "-p", str(project))
    out, _ = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, out
    second = _results(db)
    # finished candidates were not recomputed: same rows, same timestamps
    assert second["zero-shot"] == first["zero-shot"]
    assert second["few-shot"] == first["few-shot"]
    assert "finetune" in second
    assert out.count("reusing stored predictions") == 2
    with sqlite3.connect(db) as conn:
        info = conn.execute("SELECT info_json FROM results WHERE candidate='finetune'").fetchone()[
            0
        ]
    assert '"resumed_from_epoch"' in info, "fine-tuning restarted instead of resuming"
    assert not checkpoint.exists(), "resume checkpoint should be removed once the result is stored"

    # A third run with nothing changed recomputes nothing.
    third = adaptlab_process("run", "-p", str(project))
    out3, _ = third.communicate(timeout=300)
    assert third.returncode == 0, out3
    assert out3.count("reusing stored predictions") == 3
    assert _results(db) == second
