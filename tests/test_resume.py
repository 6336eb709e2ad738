"""Killing `adaptlab run` mid-way and running it again resumes where it stopped, and the
resumed fine-tune ends with exactly the predictions of an uninterrupted one."""

from __future__ import annotations

import shutil
import signal
import sqlite3
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import adaptlab_process, small_project


def _results(db: Path) -> dict[str, str]:
    if not db.exists():
        return {}
    with sqlite3.connect(db) as conn:
        try:
            return dict(conn.execute("SELECT candidate, created_at FROM results"))
        except sqlite3.OperationalError:  # schema not created yet
            return {}


def _finetune_outcome(db: Path) -> tuple[list[Any], list[Any]]:
    """The stored fine-tune's predictions (label and score, in order) and its curves."""
    with sqlite3.connect(db) as conn:
        (key,) = conn.execute("SELECT key FROM results WHERE candidate='finetune'").fetchone()
        preds = conn.execute(
            "SELECT idx, predicted, score FROM predictions WHERE result_key=? AND split='test' "
            "ORDER BY idx",
            (key,),
        ).fetchall()
        curves = conn.execute(
            "SELECT step, epoch, split, metric, value FROM curves WHERE result_key=? "
            "ORDER BY step, split, metric",
            (key,),
        ).fetchall()
    return preds, curves


@pytest.mark.slow
def test_kill_and_rerun_resumes_exactly(tmp_path: Path, example_project: Path) -> None:
    # Small batches over three epochs: many dropout draws after the resume point, which
    # is where a random state that was not restored shows.
    finetune = {"epochs": 3, "patience": 3, "batch_size": 8, "save_model": False}
    project = small_project(
        tmp_path / "p",
        example_project,
        per_label=14,
        candidates=[
            {"name": "zero-shot", "strategy": "zero-shot"},
            {"name": "few-shot", "strategy": "few-shot", "params": {"k": 4}},
            {"name": "finetune", "strategy": "finetune", "params": finetune},
        ],
    )
    uninterrupted = tmp_path / "u"
    shutil.copytree(project, uninterrupted)
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

    # The same fine-tune without interruption, in a copy of the project: identical
    # predictions (label and score) and curves, not only a similar accuracy.
    whole = adaptlab_process("run", "-p", str(uninterrupted), "-c", "finetune")
    out_u, _ = whole.communicate(timeout=600)
    assert whole.returncode == 0, out_u
    resumed_preds, resumed_curves = _finetune_outcome(db)
    preds, curves = _finetune_outcome(uninterrupted / ".adaptlab" / "runs.db")
    assert len(preds) == len(resumed_preds) > 0
    differ = [(a, b) for a, b in zip(preds, resumed_preds, strict=True) if a != b]
    assert not differ, f"{len(differ)} of {len(preds)} predictions differ after resume: {differ}"
    assert resumed_curves == curves

    # A third run with nothing changed recomputes nothing.
    third = adaptlab_process("run", "-p", str(project))
    out3, _ = third.communicate(timeout=300)
    assert third.returncode == 0, out3
    assert out3.count("reusing stored predictions") == 3
    assert _results(db) == second
