"""The TF-IDF baseline, the language check, the task profile and ``adaptlab decide``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import yaml

from adaptlab import Project, run_project, summarize_project
from adaptlab.cli.decide import replace_block
from adaptlab.config import ProjectConfig
from adaptlab.core.progress import ProgressSink
from adaptlab.data.language import detect_language, language_warning, model_languages
from tests.conftest import run_cli

GERMAN = [
    ("Meine Rechnung ist doppelt abgebucht worden, bitte korrigieren.", "billing"),
    ("Warum wurde meine Kreditkarte zweimal belastet?", "billing"),
    ("Die Mehrwertsteuer auf der Rechnung stimmt nicht.", "billing"),
    ("Wo bleibt mein Paket? Die Sendungsverfolgung zeigt nichts an.", "shipping"),
    ("Das Paket kam beschädigt an und der Karton war nass.", "shipping"),
    ("Können Sie die Lieferadresse noch ändern?", "shipping"),
    ("Ich möchte mein Geld für die Rücksendung zurück.", "refund"),
    ("Die Erstattung für die stornierte Bestellung fehlt noch.", "refund"),
    ("Wann bekomme ich die Gutschrift für den Umtausch?", "refund"),
]


def test_tfidf_baseline_runs_by_default_and_chooses_c_on_val(
    tmp_path: Path, example_project: Path
) -> None:
    root = tmp_path / "p"
    shutil.copytree(example_project, root)
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
    cfg["candidates"] = [{"name": "zero-shot", "strategy": "zero-shot"}]
    cfg["evaluation"]["latency_samples"] = 5
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    project = Project.load(root)
    assert [c.name for c in project.config.candidates] == ["zero-shot", "tfidf-baseline"]
    run_project(project, progress=ProgressSink())
    s = summarize_project(project)
    base = s.candidate("tfidf-baseline")
    assert base.route == "classical" and not base.hosted
    assert base.info["C"] in (0.1, 1.0, 10.0)
    scores = base.info["val_accuracy_by_C"]
    assert scores[str(base.info["C"])] == max(scores.values())
    # on the support tickets a bag of n-grams is far above chance (1/6)
    assert base.quality > 0.6
    assert base.cpu_ms_range is not None and base.cpu_ms_range[0] <= base.cpu_ms_per_request
    # an explicit tfidf-lr candidate, or baseline: false, means no second one
    cfg["evaluation"]["baseline"] = False
    assert ProjectConfig.model_validate(cfg).candidates[-1].name == "zero-shot"


def test_the_language_check_warns_for_german_data_and_an_english_encoder(
    tmp_path: Path, example_project: Path
) -> None:
    from adaptlab.backends.sentence_transformers import resolve_model_path

    path, _ = resolve_model_path("all-MiniLM-L6-v2")
    assert model_languages(path) == {"en"}
    texts = [t for t, _ in GERMAN]
    guess = detect_language(texts)
    assert guess is not None and guess.code == "de" and guess.share > 0.5
    warning = language_warning(texts, path, "all-MiniLM-L6-v2")
    assert warning is not None
    message, fix = warning
    assert "'de'" in message and "multilingual" in fix
    # the fix is a whole sentence a user can follow offline, never an empty 'set '
    assert fix.startswith("set model.name") and fix.endswith(".") and "save(" in fix
    english = [json.loads(x)["text"] for x in (example_project / "data/tickets.jsonl").open()]
    assert language_warning(english[:100], path, "all-MiniLM-L6-v2") is None
    # a card that declares nothing, or several languages, raises no warning
    (tmp_path / "m").mkdir()
    assert model_languages(tmp_path / "m") is None
    (tmp_path / "m/README.md").write_text("---\nlanguage:\n- multilingual\n---\n")
    assert language_warning(texts, tmp_path / "m", "m") is None

    root = tmp_path / "de"
    shutil.copytree(example_project, root)
    (root / "data/tickets.jsonl").write_text(
        "".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in GERMAN * 3)
    )
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
    cfg["labels"] = {k: cfg["labels"][k] for k in ("billing", "shipping", "refund")}
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = run_cli("data", "check", "-p", str(root))
    assert "'de'" in out.output and "model.name" in out.output


def test_the_old_cost_volume_keys_move_to_the_profile() -> None:
    cfg = ProjectConfig.model_validate(
        {
            "name": "t",
            "data": {"path": "d.jsonl"},
            "labels": {"a": "x", "b": "y"},
            "candidates": [{"name": "z", "strategy": "zero-shot"}],
            "cost": {"monthly_requests": 7, "horizon_months": 3, "cpu_hour_usd": 1.0},
        }
    )
    assert cfg.profile.monthly_requests == 7 and cfg.profile.horizon_months == 3
    assert cfg.cost.cpu_hour_usd == 1.0


HEAD = "name: x  # mine\n\n# about cost\ncost:\n  cpu_hour_usd: 1\n\n"
TAIL = "\n# tail\nz: 3\n"


def test_replace_block_keeps_everything_else_byte_for_byte() -> None:
    text = HEAD + "profile:\n  a: 1\n  b: 2\n" + TAIL
    assert (
        replace_block(text, "profile", "profile:\n  a: 9\n") == HEAD + "profile:\n  a: 9\n" + TAIL
    )
    appended = replace_block("name: x", "profile", "profile:\n  a: 1\n")
    assert appended == "name: x\n\nprofile:\n  a: 1\n"


def test_decide_writes_the_profile_and_refuses_bad_answers(
    tmp_path: Path, example_project: Path
) -> None:
    root = tmp_path / "p"
    shutil.copytree(example_project, root)
    before = (root / "adaptlab.yaml").read_text()
    out = run_cli(
        "decide",
        "-p",
        str(root),
        "--monthly-requests",
        "250000",
        "--no-data-may-leave",
        "--latency-budget-ms",
        "300",
        "--knowledge-change",
        "weekly",
        "--no-input",
    )
    assert out.exit_code == 0, out.output
    assert "no run yet" in out.output
    p = Project.load(root).config.profile
    assert (p.monthly_requests, p.data_may_leave, p.latency_budget_ms) == (250_000, False, 300)
    assert p.knowledge_change == "weekly" and p.horizon_months == 12  # the rest kept
    after = (root / "adaptlab.yaml").read_text()
    # only the profile block changed: every candidate line and comment is still there
    assert before.split("profile:")[0] == after.split("profile:")[0]
    bad = run_cli("decide", "-p", str(root), "--monthly-growth", "-2", "--no-input")
    assert bad.exit_code == 2 and "monthly-growth" in bad.output
    assert (root / "adaptlab.yaml").read_text() == after
