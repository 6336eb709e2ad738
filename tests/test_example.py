"""The bundled example end to end, as `adaptlab demo` runs it (offline, CPU)."""

from __future__ import annotations

import json
import re
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pytest

from adaptlab import Project
from adaptlab.cli import main
from adaptlab.evaluation import mcnemar

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("demo") / "demo"
    mp = pytest.MonkeyPatch()
    mp.setattr(sys, "argv", ["adaptlab", "demo", str(target)])
    mp.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit) as exc:
        main()
    mp.undo()
    assert exc.value.code == 0
    return target


def _stored(demo_dir: Path) -> dict[str, list[tuple[str, str | None]]]:
    """(gold, predicted) per candidate of the latest run, read straight from SQLite."""
    with sqlite3.connect(demo_dir / ".adaptlab" / "runs.db") as conn:
        run_id = conn.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()[0]
        links = conn.execute(
            "SELECT name, result_key FROM run_candidates WHERE run_id = ? ORDER BY position",
            (run_id,),
        ).fetchall()
        return {
            name: conn.execute(
                "SELECT gold, predicted FROM predictions WHERE result_key = ? AND split = 'test' "
                "ORDER BY idx",
                (key,),
            ).fetchall()
            for name, key in links
        }


DEMO = {
    "zero-shot",
    "few-shot-8",
    "rag-knn",
    "finetune",
    "smollm2-zero-shot",
    "smollm2-few-shot",
    "tfidf-baseline",  # evaluation.baseline: the cheapest thing that could work
}


def test_finetune_beats_zero_shot_significantly(demo_dir: Path) -> None:
    rows = _stored(demo_dir)
    assert set(rows) == DEMO  # the LoRA fine-tune waits for --full; gpt-4o-mini for a key
    assert len(rows["finetune"]) >= 120  # 20% of 690
    correct = {k: np.array([g == p for g, p in v]) for k, v in rows.items()}
    assert correct["finetune"].mean() > correct["zero-shot"].mean()
    assert mcnemar(correct["finetune"], correct["zero-shot"]).p_value < 0.05


def test_report_numbers_come_from_stored_predictions(demo_dir: Path) -> None:
    html = (demo_dir / "reports" / "report.html").read_text()
    for name, pairs in _stored(demo_dir).items():
        acc = sum(g == p for g, p in pairs) / len(pairs)
        assert f"{100 * acc:.1f}%" in html, f"{name}: {100 * acc:.1f}% not in the report"
    assert html.count("<svg") >= 4


def test_the_demo_shows_a_generative_model_answering(demo_dir: Path) -> None:
    with sqlite3.connect(demo_dir / ".adaptlab" / "runs.db") as conn:
        answers = conn.execute(
            "SELECT p.raw, p.input_tokens, p.status, p.predicted FROM predictions p "
            "JOIN run_candidates r ON p.result_key = r.result_key "
            "WHERE r.name = 'smollm2-zero-shot' AND p.split = 'test'"
        ).fetchall()
    assert len(answers) >= 120
    labels = set(Project.load(demo_dir).config.labels)
    # Constrained answers (the default): the model scored every label after the prompt,
    # tokens counted by its own tokenizer; every answer is a label.
    for raw, tokens, status, predicted in answers:
        scored = json.loads(raw)
        # (the raw label is the plain argmax; the prediction may be the calibrated one)
        assert status == "constrained" and predicted in labels and scored["label"] in labels
        assert len(scored["logprobs"]) == len(labels) and all(lp < 0 for lp in scored["logprobs"])
        assert isinstance(tokens, int) and tokens >= 1
    # Real likelihoods of real inputs: they differ from input to input.
    assert len({json.dumps(json.loads(raw)["logprobs"]) for raw, *_ in answers}) > 10


def test_report_makes_no_external_requests(demo_dir: Path) -> None:
    html = (demo_dir / "reports" / "report.html").read_text()
    for needle in ("<script", "<link", "@import", "url(", "src="):
        assert needle not in html
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}, urls


def test_demo_again_reuses_everything(
    demo_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    monkeypatch.setattr(sys, "argv", ["adaptlab", "demo", str(demo_dir)])
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 0
    out = " ".join(capsys.readouterr().out.split())
    assert out.count("reusing stored predictions") == len(DEMO)
    assert "smollm2-lora: skipped, fine-tunes a generative model" in out
    assert "adaptlab demo --full" in out
    # what the generative model wrote, and how it was read
    assert re.search(r"smollm2-zero-shot on test example \S+ \(gold \w+\): '.+' → read as", out)
    assert "recommendation:" in out
