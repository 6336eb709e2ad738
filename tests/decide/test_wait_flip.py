"""Answers that may wait are served at the batch APIs' price, which moves the break-even.

The project of :mod:`tests.decide.test_volume_flip`: a long few-shot prompt (no setup)
against a provider fine-tune (a training bill, then short requests), both on an OpenAI
model, answering alike. Served at once, the fine-tune pays back above a volume V*; when
answers may wait, both are priced at the batch rate (half), the saving per request
halves and the break-even moves to 2 V*. At a volume between the two, ``adaptlab decide
--answers-may-wait`` flips the recommendation from the fine-tune back to the prompt,
without a rerun.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
import yaml

from adaptlab import Project, run_project, summarize_project
from adaptlab.core.progress import ProgressSink
from adaptlab.decide.economics import break_even_volume
from tests.conftest import run_cli
from tests.decide.test_volume_flip import _project
from tests.fakes.fake_finetune import FakeFinetuneServer

pytestmark = pytest.mark.timeout(180)


def test_answers_that_may_wait_flip_a_break_even_within_a_factor_of_two(tmp_path: Path) -> None:
    with FakeFinetuneServer(lambda call: "billing") as server:
        root = _project(tmp_path / "p", server.base_url)
        cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
        # Costs this far apart are not noise: only the volume and the price tier decide.
        cfg["cost"]["tie_tolerance"] = 0.02
        (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        run_project(Project.load(root), progress=ProgressSink())
        with sqlite3.connect(root / ".adaptlab/runs.db") as conn:
            conn.execute("UPDATE predictions SET latency_ms = 5.0")  # latency must not decide
        now = summarize_project(Project.load(root))
        few, tuned = now.candidate("few-shot"), now.candidate("tuned")
        v = break_even_volume(few.cost, tuned.cost, 12)
        assert v is not None
        w = now.verdict.waiting
        assert w is not None and not w.may_wait
        assert dict(w.shares) == {"few-shot": 0.5, "tuned": 0.5}
        (moved,) = [b for b in w.break_evens if (b.candidate, b.baseline) == ("tuned", "few-shot")]
        # Both per-request costs halve, the setup does not: the break-even doubles.
        assert moved.standard == pytest.approx(v)
        assert moved.batch == pytest.approx(2 * v)

        volume = int(1.4 * v)  # above V*, below 2 V*
        out = run_cli("decide", "-p", str(root), "--monthly-requests", str(volume), "--no-input")
        assert out.exit_code == 0, out.output
        assert "recommendation: tuned" in out.output
        at_once = summarize_project(Project.load(root))
        assert any(
            "if answers may wait" in c and "moves from" in c for c in at_once.recommendation.changes
        )

        out = run_cli("decide", "-p", str(root), "--answers-may-wait", "--no-input")
        assert out.exit_code == 0, out.output
        assert "recommendation: few-shot" in out.output
        waited = summarize_project(Project.load(root))
        assert waited.verdict.waiting is not None and waited.verdict.waiting.may_wait
        few_w, tuned_w = waited.candidate("few-shot"), waited.candidate("tuned")
        # Priced at the batch rate: half of each per-request cost, the same setup.
        assert few_w.cost.per_request_usd == pytest.approx(few.cost.per_request_usd / 2)
        assert tuned_w.cost.per_request_usd == pytest.approx(tuned.cost.per_request_usd / 2)
        assert tuned_w.cost.setup_usd == pytest.approx(tuned.cost.setup_usd)
        assert any("cost half the price" in c for c in waited.recommendation.changes)
        assert any("Answers may wait" in r for r in waited.recommendation.reasons)

        # Back to answers at once: the fine-tune again.
        out = run_cli("decide", "-p", str(root), "--no-answers-may-wait", "--no-input")
        assert "recommendation: tuned" in out.output
        assert server.jobs_created == 1  # deciding never trains or calls again
