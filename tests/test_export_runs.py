"""``adaptlab export results`` and ``adaptlab runs [compare]`` on runs written straight
into the store (no model, no training): the figures equal the RunSummary's, unrounded."""

from __future__ import annotations

import csv
import io
import json
import random
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from adaptlab.engine import summarize_project
from adaptlab.engine.project import Project
from adaptlab.engine.summary import ProjectSummary
from adaptlab.evaluation.compare_runs import compare_runs
from adaptlab.evaluation.stats import holm, mcnemar
from adaptlab.report.results import candidate_records
from adaptlab.store import PredictionRow, ResultRow, RunStore
from tests.hostile.conftest import write_project
from tests.hostile.projects import stored_project

LABELS = ["a", "b", "c"]


def _add_run(
    store: RunStore,
    run_id: str,
    config: dict[str, Any],
    candidates: dict[str, tuple[str, list[PredictionRow], list[PredictionRow]]],
    created_at: str,
    status: str = "finished",
) -> None:
    """A run linking ``name -> (result key, test rows, val rows)``; an existing key is reused."""
    store.start_run(
        run_id,
        project="stored",
        config=config,
        data_fingerprint="f",
        seed=0,
        model=config["model"],
        split={"train": 40, "val": 12, "test": 40},
    )
    for pos, (name, (key, test, val)) in enumerate(candidates.items()):
        if not store.has_result(key):
            result = ResultRow(
                key, name, "zero-shot", {"k": pos}, 2.5, 2.0, 0.4, 0.3, 40, False, {}
            )
            store.save_result(result, test, [], val_predictions=val)
        store.link(run_id, pos, name, key, reused=False)
    store.finish_run(run_id, status)
    store.conn.execute("UPDATE runs SET created_at = ? WHERE id = ?", (created_at, run_id))
    store.conn.commit()


def _answers(rows: list[PredictionRow], right: float, seed: int) -> list[PredictionRow]:
    """``rows`` answered again, each right with probability ``right``."""
    rnd = random.Random(seed)
    out = []
    for r in rows:
        pred = r.gold if rnd.random() < right else LABELS[(LABELS.index(r.gold) + 1) % 3]
        out.append(PredictionRow(r.example_id, r.input, r.gold, pred, None, 5.0 + rnd.random()))
    return out


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """run1 (oldest): zero-shot, rag, legacy; no val answers, so chosen on test.
    run2: zero-shot (the same answers, stored again), rag (answered again, stored in
    another order), tuned (new); with val answers, so chosen on val.
    run3 (newest): failed, nothing linked."""
    root = stored_project(tmp_path / "p", LABELS, 40, names=("zero-shot", "rag", "legacy"))
    with RunStore(root / ".adaptlab" / "runs.db") as store:
        config = json.loads(store.run("run1")["config_json"])  # type: ignore[index]
        config["candidates"] = [
            {"name": n, "strategy": "zero-shot"} for n in ("zero-shot", "rag", "tuned")
        ]
        zero, rag = store.predictions("key0"), store.predictions("key1")
        val = [
            PredictionRow(f"v:{i}", f"val {i}", LABELS[i % 3], None, None, 1.0) for i in range(12)
        ]
        rag2 = _answers(rag, 0.95, seed=1)
        random.Random(2).shuffle(rag2)  # the same examples, paired by id, not by position
        _add_run(
            store,
            "run2",
            config,
            {
                "zero-shot": ("key0-v2", zero, _answers(val, 0.5, 3)),
                "rag": ("key1-v2", rag2, _answers(val, 0.9, 4)),
                "tuned": ("key3", _answers(rag, 0.7, 5), _answers(val, 0.6, 6)),
            },
            "2030-01-02T00:00:00+00:00",
        )
        _add_run(store, "run3", config, {}, "2030-01-03T00:00:00+00:00", status="failed")
        store.conn.execute(
            "UPDATE runs SET created_at = '2030-01-01T00:00:00+00:00' WHERE id = 'run1'"
        )
        store.conn.commit()
    return root


def _summary(root: Path, run_id: str | None = None) -> ProjectSummary:
    return summarize_project(Project.load(root), run_id)


# ---------------------------------------------------------------- export results


def test_json_holds_the_summarys_unrounded_figures(cli: Any, project: Path) -> None:
    doc = json.loads(cli("export", "results", "-p", project).stdout)  # latest finished: run2
    s = _summary(project)
    assert (doc["run_id"], doc["project"], doc["created_at"]) == (s.run_id, "stored", s.created_at)
    assert doc["run_id"] == "run2" and doc["selected_on"] == "val" == s.selected_on
    assert (doc["task"], doc["metric"]) == ("classification", "accuracy")
    assert doc["recommendation"] == {
        "winner": s.recommendation.winner,
        "kind": s.recommendation.kind,
    }
    assert [c["name"] for c in doc["candidates"]] == ["zero-shot", "rag", "tuned"]
    for rec, c in zip(doc["candidates"], s.candidates, strict=True):
        assert rec["strategy"] == "zero-shot" and rec["params"] == c.params
        assert (rec["n_test"], rec["n_selection"]) == (40, 12)
        assert (rec["test"], rec["test_ci_low"], rec["test_ci_high"]) == (
            c.quality_ci.estimate,
            c.quality_ci.low,
            c.quality_ci.high,
        )
        assert c.val_quality_ci is not None
        assert (rec["selection"], rec["selection_ci_low"], rec["selection_ci_high"]) == (
            c.val_quality_ci.estimate,
            c.val_quality_ci.low,
            c.val_quality_ci.high,
        )
        assert c.metrics is not None and c.macro_f1_ci is not None
        assert rec["macro_f1"] == c.macro_f1_ci.estimate == c.metrics.macro_f1
        assert (rec["macro_f1_ci_low"], rec["macro_f1_ci_high"]) == (
            c.macro_f1_ci.low,
            c.macro_f1_ci.high,
        )
        assert rec["winner"] is (c.name == s.recommendation.winner)
        if c.vs_best is None:
            assert rec["p_vs_winner"] is None and rec["gap_to_winner"] is None
        else:
            assert rec["p_vs_winner"] == c.vs_best.p_value
            assert rec["p_vs_winner_holm"] == c.p_holm_test
            assert rec["gap_to_winner"] == c.vs_best.diff
        for key, value in (
            ("latency_p50_ms", c.latency_p50_ms),
            ("latency_p95_ms", c.latency_p95_ms),
            ("throughput_per_s", c.throughput_per_s),
            ("fit_seconds", c.fit_seconds),
            ("cost_per_1k_usd", c.cost_per_1k_usd),
            ("setup_usd", c.setup_cost_usd),
            ("monthly_usd", c.monthly_cost_usd),
        ):
            assert rec[key] == value, key
        assert rec["reused"] is False and rec["input_tokens_per_request"] is None
    # one p-value per loser, none for the winner
    assert sum(r["p_vs_winner"] is None for r in doc["candidates"]) == 1


def test_csv_round_trips_through_dictreader(cli: Any, project: Path, tmp_path: Path) -> None:
    out = tmp_path / "out" / "results.csv"  # the folder is made; .csv chooses the format
    result = cli("export", "results", "-p", project, "--run-id", "run1", "-o", out)
    assert f"results: {out}" in result.ok()
    assert [p.name for p in out.parent.iterdir()] == ["results.csv"]  # no temporary left
    with out.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    s = _summary(project, "run1")
    records = candidate_records(s)
    assert len(rows) == len(records) == 3
    for row, rec in zip(rows, records, strict=True):
        assert (row["run_id"], row["metric"], row["selected_on"]) == ("run1", "accuracy", "test")
        assert list(row)[3:] == list(rec)
        for key, value in rec.items():
            cell = row[key]
            if value is None:
                assert cell == "", key
            elif isinstance(value, bool):
                assert cell == str(value).lower(), key
            elif isinstance(value, dict):
                assert json.loads(cell) == value, key
            elif isinstance(value, float):
                assert float(cell) == value, key  # repr: exactly the float, not a rounding
            else:
                assert cell == str(value), key
    # run1 has no val answers: its selection figures are its test figures
    assert all(r["selection"] == r["test"] for r in rows)


def test_csv_to_stdout_and_json_to_a_file(cli: Any, project: Path, tmp_path: Path) -> None:
    text = cli("export", "results", "-p", project, "--format", "csv").stdout
    assert [r["name"] for r in csv.DictReader(io.StringIO(text))] == ["zero-shot", "rag", "tuned"]
    out = tmp_path / "r.csv"  # an explicit --format wins over the suffix
    cli("export", "results", "-p", project, "--format", "json", "-o", out).ok()
    assert json.loads(out.read_text())["run_id"] == "run2"


def test_unknown_run_id_names_the_known_ones(cli: Any, project: Path) -> None:
    result = cli("export", "results", "-p", project, "--run-id", "nope")
    text = result.error("no run 'nope'", "run3, run2, run1", "adaptlab runs")
    assert result.stdout == "" and "Traceback" not in text
    # a unique start names a run; one shared by several is refused with the candidates
    assert json.loads(cli("export", "results", "-p", project, "--run-id", "run1").stdout)
    cli("export", "results", "-p", project, "--run-id", "run").error("ambiguous", "run3")


def test_output_that_is_a_folder(cli: Any, project: Path, tmp_path: Path) -> None:
    (tmp_path / "taken.json").mkdir()
    cli("export", "results", "-p", project, "-o", tmp_path / "taken.json").error("taken.json")


# ---------------------------------------------------------------- runs


def test_runs_lists_newest_first_with_winners(cli: Any, project: Path) -> None:
    text = cli("runs", "-p", project).ok()
    assert text.index("run3") < text.index("run2") < text.index("run1")
    winner = _summary(project, "run2")
    w = winner.candidate(winner.recommendation.winner)
    assert "run2 2030-01-0" in text and f"finished 3 {w.name} {100 * w.quality:.1f}%" in text
    assert "failed 0 – –" in text
    limited = cli("runs", "-p", project, "--limit", "1").ok()
    assert "run3" in limited and "run2" not in limited and "2 older runs not shown" in limited


def test_a_run_that_no_longer_summarises_does_not_hide_the_others(cli: Any, project: Path) -> None:
    with RunStore(project / ".adaptlab" / "runs.db") as store:
        config = json.loads(store.run("run2")["config_json"])  # type: ignore[index]
        _add_run(
            store, "run4", config, {"empty": ("key-empty", [], [])}, "2030-01-04T00:00:00+00:00"
        )
    text = cli("runs", "-p", project).ok()
    assert "run4" in text and "finished 1 ? –" in text
    assert "run run4 could not be summarised: candidate 'empty' has no stored predictions" in text
    assert "run2" in text and "finished 3 rag" in text


def test_compare_pairs_the_same_examples(cli: Any, project: Path) -> None:
    a, b = _summary(project, "run1"), _summary(project, "run2")
    with RunStore(project / ".adaptlab" / "runs.db") as store:
        cmp = compare_runs(a, b, store)
        rag_a = {r.example_id: r for r in store.predictions(a.candidate("rag").key)}
        rag_b = {r.example_id: r for r in store.predictions(b.candidate("rag").key)}
    assert [c.name for c in cmp.changes] == ["zero-shot", "rag", "legacy", "tuned"]
    assert (cmp.only_a, cmp.only_b) == (["legacy"], ["tuned"])
    # Expected by hand: B's answers matched to A's by example id, then McNemar's test.
    ids = list(rag_a)
    right_a = [rag_a[i].predicted == rag_a[i].gold for i in ids]
    right_b = [rag_b[i].predicted == rag_b[i].gold for i in ids]
    import numpy as np

    expected = mcnemar(np.array(right_b), np.array(right_a))
    same = mcnemar(np.ones(40, bool), np.ones(40, bool))  # zero-shot: equal answers
    zero, rag = cmp.changes[0], cmp.changes[1]
    assert rag.test == expected and rag.diff == pytest.approx(expected.diff)
    assert rag.diff == b.candidate("rag").quality - a.candidate("rag").quality > 0
    assert zero.test is not None and zero.test.p_value == same.p_value == 1.0
    assert [zero.p_holm, rag.p_holm] == holm([1.0, expected.p_value])

    text = cli("runs", "compare", "-p", project, "run1", "run2").ok()
    figures = [100 * s.candidate("rag").quality for s in (a, b)]
    assert f"rag {figures[0]:.1f} {figures[1]:.1f} +{100 * rag.diff:.1f}" in text
    p = f"{rag.p_holm:.3f}" if rag.p_holm >= 0.001 else "<0.001"  # type: ignore[operator]
    assert f"+{100 * rag.diff:.1f} {p} McNemar" in text
    assert "legacy" in text and "only in A" in text and "only in B" in text
    assert "only in run A (run1): legacy" in text and "only in run B (run2): tuned" in text
    # -p given to the group reaches the subcommand
    assert cli("runs", "-p", project, "compare", "run1", "run2").ok() == text


def test_compare_a_run_with_itself_says_same_answers(cli: Any, project: Path) -> None:
    text = cli("runs", "compare", "-p", project, "run2", "run2").ok()
    assert "same answers: both runs link one stored result" in text


def test_compare_unknown_ids(cli: Any, project: Path) -> None:
    result = cli("runs", "compare", "-p", project, "run1", "nope")
    result.error("no run 'nope'", "run3, run2, run1")
    assert result.stdout == ""  # nothing summarised before the second id was checked


def test_a_project_without_runs(cli: Any, tmp_path: Path) -> None:
    root = write_project(tmp_path / "p")
    assert "no runs yet" in cli("runs", "-p", root).ok()
    cli("export", "results", "-p", root).error("no run in this project yet", "adaptlab run")
    cli("runs", "compare", "-p", root, "a", "b").error("no run in this project yet")
    assert not (root / ".adaptlab").exists()  # reading made nothing
    # a store that holds no run: the same, from the store
    (root / ".adaptlab").mkdir()
    with RunStore(root / ".adaptlab" / "runs.db"):
        pass
    assert "no runs yet" in cli("runs", "-p", root).ok()
    cli("export", "results", "-p", root).error("no finished run", "adaptlab run")
    cli("runs", "compare", "-p", root, "a", "b").error("no run 'a'", "no runs yet")


def test_export_is_a_group(cli: Any) -> None:
    assert "results" in cli("export", "--help").ok()
    assert "compare" in cli("runs", "--help").ok()


def test_store_runs_orders_newest_first(tmp_path: Path, project: Path) -> None:
    with RunStore(project / ".adaptlab" / "runs.db") as store:
        assert [r["id"] for r in store.runs()] == ["run3", "run2", "run1"]
    with sqlite3.connect(project / ".adaptlab" / "runs.db") as conn:
        statuses = dict(conn.execute("SELECT id, status FROM runs").fetchall())
    assert statuses == {"run1": "finished", "run2": "finished", "run3": "failed"}
