"""The recommendation follows the money across the break-even volume.

Two candidates answer alike (so quality ties) but cost differently: a few-shot prompt
with many examples (no setup, a long prompt on every request) and a provider
fine-tune with a short prompt (a training bill, then short requests at the tuned
model's higher token price), both served by the local OpenAI-compatible test server,
which reports token usage. Below the break-even volume the prompt must win, above it
the fine-tune; ``adaptlab decide`` moves the volume without a rerun.
"""

from __future__ import annotations

import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab import Project, run_project, summarize_project
from adaptlab.core.progress import ProgressSink
from adaptlab.decide.economics import break_even_volume
from tests.conftest import run_cli
from tests.fakes.fake_finetune import FakeFinetuneServer

pytestmark = pytest.mark.timeout(180)
BASE = "gpt-4o-mini-2024-07-18"
WORDS = ("parcel", "invoice", "login", "refund", "router", "printer", "voucher", "screen")


def _project(root: Path, base_url: str) -> Path:
    # "billing" is the most frequent label: the tuned model answers it for every input it
    # was not trained on, and the base model (the responder below) always answers it.
    rng = random.Random(0)
    rows = [
        {"text": " ".join(rng.choice(WORDS) for _ in range(8)) + f" #{i}", "label": label}
        for i, label in enumerate(["billing"] * 30 + ["shipping"] * 15 + ["refund"] * 15)
    ]
    (root / "data").mkdir(parents=True)
    (root / "data/t.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg: dict[str, Any] = {
        "name": "flip",
        "data": {"path": "data/t.jsonl", "test_size": 0.25, "val_size": 0.25},
        "labels": {
            "billing": "Charges and invoices.",
            "shipping": "Parcels and delivery.",
            "refund": "Money back.",
        },
        "llms": {"chat": {"backend": "openai", "name": BASE, "base_url": base_url}},
        "candidates": [
            {
                "name": "few-shot",
                "strategy": "llm-few-shot",
                "llm": "chat",
                "params": {"shots": 24},
            },
            {
                "name": "tuned",
                "strategy": "openai-finetune",
                "llm": "chat",
                "params": {"poll_interval_s": 0.05, "n_epochs": 1},
            },
        ],
        "evaluation": {"bootstrap_resamples": 200, "latency_samples": 0, "baseline": False},
        "cost": {"cpu_hour_usd": 0.0},  # only token prices: the arithmetic stays exact
        "profile": {"monthly_requests": 10, "horizon_months": 12},
    }
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


def test_recommendation_flips_at_the_break_even_volume(tmp_path: Path) -> None:
    with FakeFinetuneServer(lambda call: "billing") as server:
        root = _project(tmp_path / "p", server.base_url)
        run_project(Project.load(root), progress=ProgressSink())
        # Both answer from one local fake server: their latencies differ only by how busy
        # this machine is (2.3x once under load), which must not decide here.
        with sqlite3.connect(root / ".adaptlab/runs.db") as conn:
            conn.execute("UPDATE predictions SET latency_ms = 5.0")
        low = summarize_project(Project.load(root))
        few, tuned = low.candidate("few-shot"), low.candidate("tuned")
        # equal answers: a tie on val and test, so cost decides
        assert np_equal(few.sel_columns, tuned.sel_columns)
        assert few.input_tokens_per_request > 3 * tuned.input_tokens_per_request  # type: ignore[operator]
        assert tuned.cost.setup_usd > 0 and few.cost.setup_usd == 0
        assert tuned.cost.per_request_usd < few.cost.per_request_usd
        v = break_even_volume(few.cost, tuned.cost, 12)
        assert v is not None
        # the break-even by hand from the measured figures: setup / (12 * saving per request)
        assert v == pytest.approx(
            tuned.cost.setup_usd / (12 * (few.cost.per_request_usd - tuned.cost.per_request_usd))
        )
        assert low.recommendation.kind == "cheapest-within-noise"
        assert low.recommendation.winner == "few-shot"
        assert any("above" in c and "tuned is cheaper" in c for c in low.recommendation.changes)

        # well above the break-even (and outside the 25% cost tolerance), without a rerun
        high_volume = int(v * 20)
        out = run_cli(
            "decide", "-p", str(root), "--monthly-requests", str(high_volume), "--no-input"
        )
        assert out.exit_code == 0, out.output
        assert "recommendation: tuned" in out.output
        high = summarize_project(Project.load(root))
        assert high.recommendation.winner == "tuned"
        assert any("below" in c and "few-shot is cheaper" in c for c in high.recommendation.changes)
        # just below the crossing the prompt is back
        out = run_cli(
            "decide", "-p", str(root), "--monthly-requests", str(int(v / 20)), "--no-input"
        )
        assert "recommendation: few-shot" in out.output
        assert server.jobs_created == 1  # deciding never trains or calls again


def np_equal(a: Any, b: Any) -> bool:
    import numpy as np

    return bool(np.array_equal(np.asarray(a), np.asarray(b)))
