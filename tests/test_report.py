from __future__ import annotations

import html
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adaptlab.config import ProjectConfig
from adaptlab.engine.summary import ProjectSummary, summarize_run
from adaptlab.report import render_report, write_report
from adaptlab.store import PredictionRow, ResultRow, RunStore

RUN = "run-1"
LABELS = ["a", "b", "c"]
CONFIG: dict[str, Any] = {
    "name": "demo",
    "data": {"path": "data.jsonl"},
    "labels": {"a": "first", "b": "second", "c": "third"},
    "candidates": [
        {"name": "zero", "strategy": "zero-shot"},
        {"name": "rag <k=2>", "strategy": "rag"},  # a name that needs escaping
        {"name": "tuned", "strategy": "finetune"},
    ],
    "evaluation": {"bootstrap_resamples": 200},
    # these fractions of a cent should decide a tie here: no amount is negligible
    "cost": {"negligible_usd": 0.0},
}
N = 30
GOLD = [LABELS[i % 3] for i in range(N)]


def _wrong(label: str) -> str:
    return LABELS[(LABELS.index(label) + 1) % 3]


def _predictions(n_correct: int, unparsed: int = 0) -> list[str | None]:
    """The first n_correct rows right, then `unparsed` None, the rest a wrong label."""
    out: list[str | None] = list(GOLD[:n_correct])
    out += [None] * unparsed
    out += [_wrong(g) for g in GOLD[len(out) :]]
    return out


# Correct rows are nested (zero ⊂ rag ⊂ tuned), so McNemar's discordant pairs are one-sided:
# tuned vs rag is 3-0 (p = 0.25: not significant, but 3 examples ahead is more than half
# a standard error of the difference, 1.7 examples: no tie, the best estimate wins) and
# tuned vs zero 9-0 (p < 0.01).
PREDICTIONS = {
    "zero": _predictions(18),
    "rag <k=2>": _predictions(24),
    "tuned": _predictions(27, unparsed=1),
}
CURVES = [
    (1, 1.0, "train", "loss", 0.9),
    (1, 1.0, "val", "loss", 1.0),
    (1, 1.0, "val", "accuracy", 0.6),
    (2, 2.0, "train", "loss", 0.4),
    (2, 2.0, "val", "loss", 0.7),
    (2, 2.0, "val", "accuracy", 0.8),
    (3, 3.0, "train", "loss", 0.1),
    (3, 3.0, "val", "loss", 0.9),
    (3, 3.0, "val", "accuracy", 0.7),
]


@pytest.fixture()
def store(tmp_path: Path) -> Iterator[RunStore]:
    ProjectConfig.model_validate(CONFIG)  # the fixture itself must be a valid project
    s = RunStore(tmp_path / "runs.db")
    s.start_run(
        RUN,
        project="demo",
        config=CONFIG,
        data_fingerprint="x",
        seed=42,
        model={"backend": "sentence-transformers", "name": "tiny"},
        split={"train": 60, "val": 10, "test": N},
    )
    for pos, (name, preds) in enumerate(PREDICTIONS.items()):
        trains = name == "tuned"
        result = ResultRow(
            key=f"k{pos}",
            candidate=name,
            strategy=CONFIG["candidates"][pos]["strategy"],
            params={},
            fit_seconds=30.0 if trains else 0.1,
            fit_cpu_seconds=60.0 if trains else 0.1,
            predict_seconds=1.0,
            predict_cpu_seconds=1.0 + pos,
            n_predictions=N,
            trains_weights=trains,
            info={"best_epoch": 2, "epochs_run": 3} if trains else {},
        )
        rows = [
            PredictionRow(f"e{i}", f"text {i}", g, p, None, 10.0 + i)
            for i, (g, p) in enumerate(zip(GOLD, preds, strict=True))
        ]
        s.save_result(result, rows, CURVES if trains else [])
        s.link(RUN, pos, name, result.key, reused=name == "zero")
    s.finish_run(RUN)
    yield s
    s.close()


def _shown_accuracy(page: str, name: str) -> str:
    row = re.search(rf'<tr data-candidate="{re.escape(html.escape(name))}".*?</tr>', page, re.S)
    assert row is not None, name
    acc = re.search(r'<span class="acc">([^<]*)</span>', row.group(0))
    assert acc is not None
    return acc.group(1)


def _expected_accuracy(store: RunStore, key: str) -> str:
    rows = store.predictions(key)
    return f"{100 * sum(r.predicted == r.gold for r in rows) / len(rows):.1f}%"


def _render(store: RunStore) -> tuple[ProjectSummary, str]:
    summary = summarize_run(store)
    return summary, render_report(summary)


def test_report_shows_the_stored_numbers(store: RunStore) -> None:
    summary, page = _render(store)
    for pos, name in enumerate(PREDICTIONS):
        assert _shown_accuracy(page, name) == _expected_accuracy(store, f"k{pos}")
    assert _shown_accuracy(page, "zero") == "60.0%"

    winner = summary.recommendation.winner
    assert winner == "tuned"  # ahead by more than the tie margin, though not significantly
    box = re.search(r'<section class="rec".*?</section>', page, re.S)
    assert box is not None
    assert f'<p class="winner">{html.escape(winner)} ' in box.group(0)
    assert "best estimate" in box.group(0)
    assert "<k=2>" not in page  # user text is escaped, in the HTML and in the SVGs
    assert "could not be parsed" in page  # "tuned", the winner, has an unparsed row
    assert "reused" in page


def test_report_is_self_contained(store: RunStore) -> None:
    _, page = _render(store)
    assert page.count("<svg") >= 4
    for banned in ("<script", "<link", "@import", "url(", "src=", "<iframe", "<img"):
        assert banned not in page, banned
    namespaces = {"http://www.w3.org/2000/svg", "http://www.w3.org/1999/xlink"}
    for m in re.finditer(r"https?://", page):
        attr = re.match(r'xmlns(?::\w+)?="([^"]*)"', page[page.rfind(" ", 0, m.start()) + 1 :])
        assert attr is not None and attr.group(1) in namespaces, page[m.start() - 40 : m.end() + 40]


def test_changing_a_stored_prediction_changes_the_report(store: RunStore) -> None:
    _, before = _render(store)
    assert _shown_accuracy(before, "zero") == "60.0%"
    # Row 20 of zero is wrong; make it right directly in the table, bypassing every API.
    with store.transaction() as c:
        c.execute("UPDATE predictions SET predicted = gold WHERE result_key = 'k0' AND idx = 20")
    _, after = _render(store)
    assert _shown_accuracy(after, "zero") == _expected_accuracy(store, "k0") == "63.3%"


def test_write_report_is_atomic_and_creates_folders(store: RunStore, tmp_path: Path) -> None:
    target = tmp_path / "deep" / "er" / "report.html"
    out = write_report(summarize_run(store), target)
    assert out == target
    assert out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert [p.name for p in target.parent.iterdir()] == ["report.html"]  # no temp file left


def test_disagreement_browser_lists_the_examples_the_candidates_answer_differently(
    store: RunStore,
) -> None:
    from adaptlab.report.html import disagreements

    summary, page = _render(store)
    rows, total = disagreements(summary)
    # zero is right on e0..e17, rag on e0..e23, tuned on e0..e26 (e27 unread); on e28 and
    # e29 all three give the same wrong label, so they agree.
    assert total == 10
    assert sorted(int(r["id"][1:]) for r in rows) == list(range(18, 28))
    # The winner's (tuned's) mistakes first: e27, which it answered with no label.
    assert rows[0]["id"] == "e27"
    assert not rows[0]["winner_right"]
    assert all(r["winner_right"] for r in rows[1:])
    e27 = next(r for r in rows if r["id"] == "e27")
    assert [a["answer"] for a in e27["answers"]] == [_wrong(GOLD[27])] * 2 + [""]
    for i in range(30):
        assert (f'data-example="e{i}"' in page) == (18 <= i <= 27), i
    assert "2 of 3 right" in page  # e18..e23: zero is wrong, rag and tuned right
    rows_small, total_small = disagreements(summary, limit=3)
    assert total_small == 10 and len(rows_small) == 3


def test_prompts_section_shows_the_template_version_and_the_prompt_escaped(
    store: RunStore,
) -> None:
    summary = summarize_run(store)
    _, page = _render(store)
    assert "No candidate prompts a language model" in page
    summary.candidates[0].info.update(
        template="classify",
        template_version="3f2a9c1d",
        prompt_example=[{"role": "user", "content": "<input>my card </input><script>"}],
    )
    page = render_report(summary)
    section = page[page.index('id="prompts"') :]
    assert "3f2a9c1d" in section
    assert "&lt;input&gt;my card &lt;/input&gt;&lt;script&gt;" in section
    assert "<script>" not in page


def test_learning_curves_render_with_their_crossing(store: RunStore) -> None:
    """Stored curve points of the run's split reach the summary, the plot and the text."""
    tuned = [9, 15, 20, 23]  # correct answers of 30 at 5, 10, 20, 40 examples
    for d, offset in enumerate((0, 1)):
        for size, correct in zip((5, 10, 20, 40), tuned, strict=True):
            key = f"curve-{size}-{d}"
            preds = _predictions(min(N, correct + offset))
            result = ResultRow(key, "tuned", "finetune", {}, 1.0, 1.0, 1.0, 1.0, N, True, {})
            rows = [
                PredictionRow(f"e{i}", f"text {i}", g, p, None, None)
                for i, (g, p) in enumerate(zip(GOLD, preds, strict=True))
            ]
            store.save_result(result, rows, [])
            store.add_curve_point("x", "tuned", size, d, key)
    summary, page = _render(store)
    lc = summary.learning
    assert lc is not None and lc.n_train == 60
    assert {p.size for p in lc.points} == {5, 10, 20, 40}
    assert lc.flat == {"zero": pytest.approx(0.6)}  # zero-shot does not learn from train
    over = [x for x in lc.crossings if x.candidate == "tuned" and x.rival == "zero"]
    assert over and over[0].n is not None and 10 < over[0].n < 20
    section = page[page.index('id="learning"') : page.index('id="disagreements"')]
    assert "<svg" in section and "tuned overtakes zero at ~" in section
    assert "No learning curve stored" not in page


def test_report_open_says_so_when_no_browser_is_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import webbrowser

    from adaptlab.cli.report import open_in_browser

    page = tmp_path / "report.html"
    page.write_text("<!DOCTYPE html>")
    asked: list[str] = []

    def no_browser(url: str) -> bool:
        asked.append(url)
        return False

    monkeypatch.setattr(webbrowser, "open", no_browser)
    assert open_in_browser(page) is False
    assert asked == [page.resolve().as_uri()]
    out = capsys.readouterr().out
    assert "no browser is available here" in out
    assert page.resolve().as_uri() in out.splitlines()  # whole, on its own line

    def broken(url: str) -> bool:
        raise webbrowser.Error("could not locate runnable browser")

    monkeypatch.setattr(webbrowser, "open", broken)
    assert open_in_browser(page) is False
    assert "no browser is available here" in capsys.readouterr().out
