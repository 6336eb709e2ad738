"""Progress without a terminal: plain lines during long work, never a dump of bars."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from adaptlab.cli.progress import RichProgress
from tests.hostile.conftest import base_config, write_project

BAR = "━"


def _run(console: Console, steps: int, pause: float) -> None:
    with RichProgress(console) as progress:
        progress.set_candidate("ft")
        with progress.task("fine-tuning", steps) as advance:
            for _ in range(steps):
                time.sleep(pause)
                advance(1)
        with progress.task("predicting", None) as advance:
            advance(3)


def test_a_log_gets_lines_at_the_interval_and_no_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTLAB_PROGRESS_EVERY_S", "0.05")
    out = io.StringIO()
    _run(Console(file=out, width=80), steps=6, pause=0.06)
    lines = out.getvalue().splitlines()
    running = [
        line for line in lines if re.fullmatch(r"ft: fine-tuning: \d/6 \(\d+%\), .+ left", line)
    ]
    assert len(running) >= 3, lines  # a line while it runs, not only at the end
    assert [int(line.split(": ")[2][0]) for line in running] == sorted(
        int(line.split(": ")[2][0]) for line in running
    )
    assert re.fullmatch(r"ft: fine-tuning: 6/6 in \d.*s", lines[-2]), lines
    assert re.fullmatch(r"ft: predicting: 3 in \d.*s", lines[-1]), lines
    assert BAR not in out.getvalue()


def test_a_short_task_in_a_log_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ADAPTLAB_PROGRESS_EVERY_S", raising=False)  # 30 s
    out = io.StringIO()
    _run(Console(file=out, width=80), steps=3, pause=0)
    assert out.getvalue().splitlines() == [
        line for line in out.getvalue().splitlines() if " in " in line
    ]
    assert len(out.getvalue().splitlines()) == 2


def test_a_terminal_gets_bars_and_no_plain_lines(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ADAPTLAB_PROGRESS_EVERY_S", "0")
    out = io.StringIO()
    _run(Console(file=out, width=80, force_terminal=True), steps=3, pause=0)
    assert BAR in out.getvalue() and " in 0" not in out.getvalue()


@pytest.mark.timeout(600)
def test_run_with_stdout_to_a_file_prints_progress_during_the_fit(tmp_path: Path) -> None:
    cfg = base_config(
        candidates=[
            {"name": "ft", "strategy": "finetune", "params": {"epochs": 3, "batch_size": 4}}
        ],
    )
    cfg["evaluation"].update(latency_samples=0, cv_folds=0)
    root = write_project(tmp_path / "p", config=cfg)
    log = tmp_path / "run.log"
    env = {**os.environ, "ADAPTLAB_PROGRESS_EVERY_S": "0", "COLUMNS": "80"}
    with log.open("w") as out:
        done = subprocess.run(
            [sys.executable, "-m", "adaptlab", "run", "-p", str(root)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            timeout=540,
        )
    text = log.read_text(encoding="utf-8")
    assert done.returncode == 0, text
    assert BAR not in text and "…" not in text.split("▶ ft")[1].split("✓ ft")[0], text
    fit = [
        line
        for line in text.splitlines()
        if re.match(r"ft: fine-tuning.*: \d+/\d+ \(\d+%\), .* elapsed, about .* left$", line)
    ]
    assert len(fit) >= 2, text  # lines while the fit runs, before it is done
    assert text.index(fit[0]) < text.index("✓ ft")
