"""Cross-validation over train+val for candidates cheap to refit (engine/cv.py).

The runs here use the TF-IDF baseline and a spy strategy registered for the test (no
encoder, so nothing loads a model): the spy remembers what each fit saw and counts
every answer it gives to an input it was fitted on. The encoder candidates run on a
hashed bag of words registered as a backend, which counts what it embeds.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import yaml
from pydantic import ConfigDict

from adaptlab.backends import BACKENDS
from adaptlab.backends.base import BackendOptions, EncoderBackend
from adaptlab.config import ProjectConfig
from adaptlab.config.schema import EvaluationConfig
from adaptlab.core.progress import ProgressSink
from adaptlab.core.types import Prediction
from adaptlab.data import Example, Split
from adaptlab.engine import cv
from adaptlab.engine.project import Project
from adaptlab.engine.runner import RunEvents, RunOutcome, result_key, run_project
from adaptlab.evaluation.stats import Interval
from adaptlab.evaluation.summary import (
    CandidateSummary,
    compare,
    selection_pair,
    shared_selection_n,
    summarize,
)
from adaptlab.store import PredictionRow, ResultRow, RunStore
from adaptlab.strategies import STRATEGIES, Strategy, StrategyOptions, get_strategy
from tests.conftest import small_project

K = 5


class SpyOptions(StrategyOptions):
    sleep: float = 0.0  # seconds each fit takes
    fail_in_folds: bool = False  # raise in a fit that sees less than the whole train split


class Spy(Strategy):
    """Answers the label of an input it was fitted on, else the first label; counts the
    answers it gives to inputs it was fitted on (outside predict_val, where the protocol
    allows a model to have seen val through early stopping)."""

    name: ClassVar[str] = "cv-spy"
    Options = SpyOptions
    cv_refit: ClassVar[bool] = True
    reads: ClassVar[frozenset[str]] = frozenset({"label_names"})
    fits: ClassVar[list[tuple[frozenset[str], frozenset[str]]]] = []  # (train ids, val ids)
    leaks: ClassVar[int] = 0
    full_train: ClassVar[int] = 0

    @classmethod
    def needs_encoder(cls, options: Any) -> bool:
        return False

    def fit(self, train: Sequence[Example], val: Sequence[Example]) -> None:
        opts = self.options
        assert isinstance(opts, SpyOptions)
        time.sleep(opts.sleep)
        if opts.fail_in_folds and len(train) < Spy.full_train:
            raise ValueError("spy refuses a fold")
        Spy.fits.append((frozenset(ex.id for ex in train), frozenset(ex.id for ex in val)))
        self._seen = {ex.text: ex.label for ex in [*train, *val]}

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        Spy.leaks += sum(t in self._seen for t in texts)
        return self._answer(texts)

    def predict_val(self, texts: Sequence[str]) -> list[Prediction]:
        return self._answer(texts)

    def _answer(self, texts: Sequence[str]) -> list[Prediction]:
        first = self.label_names[0]
        return [Prediction(self._seen.get(t, first), 1.0) for t in texts]


class HashOptions(BackendOptions):
    model_config = ConfigDict(extra="allow")  # the model: section's name, device, …


class HashEncoder(EncoderBackend):
    """Words hashed into 64 dimensions, L2-normalised; counts the texts it embeds."""

    name: ClassVar[str] = "cv-hash"
    Options = HashOptions
    embedded: ClassVar[int] = 0

    def __init__(self, options: HashOptions) -> None:
        self.model_id = "hash"

    def embed_batch(self, texts: Sequence[str]) -> np.ndarray:
        import zlib

        HashEncoder.embedded += len(texts)
        out = np.zeros((len(texts), 64), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in text.lower().split():
                out[i, zlib.crc32(word.encode()) % 64] += 1
        out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
        return out


class Recorder(ProgressSink):
    def __init__(self) -> None:
        self.lines: list[str] = []
        self.notes: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    def note(self, message: str) -> None:
        self.notes.append(message)


@pytest.fixture(autouse=True)
def spy() -> Iterator[type[Spy]]:
    STRATEGIES.register(Spy.name, Spy, replace=True)
    BACKENDS.register(HashEncoder.name, HashEncoder, replace=True)
    Spy.fits, Spy.leaks, HashEncoder.embedded = [], 0, 0
    yield Spy
    STRATEGIES._items.pop(Spy.name, None)
    BACKENDS._items.pop(HashEncoder.name, None)


# Word n-grams and two C values: the default character n-grams take a second a fit here.
TFIDF = {
    "name": "tfidf",
    "strategy": "tfidf-lr",
    "params": {"c_grid": [1.0, 10.0], "char_ngrams": False},
}
SPY = {"name": "spy", "strategy": "cv-spy"}
LLM = {"name": "llm", "strategy": "llm-zero-shot", "llm": "fake"}


def _project(tmp_path: Path, example_project: Path, candidates: list[dict[str, Any]]) -> Path:
    root = small_project(tmp_path / "p", example_project, 10, candidates)
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
    cfg["llms"] = {"fake": {"backend": "fake", "name": "f", "answers": ["billing"]}}
    cfg["evaluation"].update(timing_repeats=1, latency_samples=0)
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    Spy.full_train = len(Project.load(root).split().train)
    return root


def _set(root: Path, **evaluation: Any) -> None:
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
    cfg["evaluation"].update(evaluation)
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def _run(root: Path, **kw: Any) -> tuple[RunOutcome, Recorder]:
    progress = Recorder()
    return run_project(Project.load(root), progress=progress, **kw), progress


def _stored(root: Path, name: str) -> tuple[ResultRow, list[PredictionRow]]:
    project = Project.load(root)
    cand = next(c for c in project.config.candidates if c.name == name)
    key = result_key(project, cand, project.split())
    with RunStore(project.store_path) as store:
        return store.result(key), store.predictions(key, "cv")


# ------------------------------------------------------------------ folds


def _examples(labels: Sequence[str], texts: Sequence[str] | None = None) -> list[Example]:
    texts = texts or [f"ticket number {i}" for i in range(len(labels))]
    pairs = zip(texts, labels, strict=True)
    return [Example(t, y, "d.jsonl", i + 1) for i, (t, y) in enumerate(pairs)]


def _split(examples: list[Example], n_val: int = 10) -> Split:
    return Split(examples[n_val:], examples[:n_val], [], "fp")


def test_folds_are_stratified_seeded_and_keep_duplicates_together() -> None:
    labels = ["a"] * 40 + ["b"] * 25 + ["c"] * 15
    texts = [f"ticket number {i}" for i in range(80)]
    texts[3] = texts[50] = "The same ticket!"  # equal after normalising...
    texts[60] = "the same TICKET"  # ...and this one too
    split = _split(_examples(labels, texts))
    folds = cv.make_folds(split, K, seed=7)
    assert folds.stratified and folds.k == K and len(folds.fold) == 80
    assert folds == cv.make_folds(split, K, seed=7)
    assert folds.fold != cv.make_folds(split, K, seed=8).fold
    ex = folds.examples
    assert list(ex) == [*split.train, *split.val]
    for label in Counter(labels):
        per_fold = Counter(f for f, e in zip(folds.fold, ex, strict=True) if e.label == label)
        assert set(per_fold) == set(range(K))
        assert max(per_fold.values()) - min(per_fold.values()) <= 2, (label, per_fold)
    same = {folds.fold[j] for j, e in enumerate(ex) if e.text.lower().startswith("the same")}
    assert len(same) == 1  # a duplicate never answers for itself


def test_every_example_is_held_out_once_and_never_fitted_on() -> None:
    split = _split(_examples(["a", "b"] * 30))
    folds = cv.make_folds(split, K, seed=0)
    held_all: list[int] = []
    for i in range(K):
        train, val, held = folds.part(i)
        fitted = {ex.id for ex in [*train, *val]}
        assert not fitted & {folds.examples[j].id for j in held}
        assert len(fitted) + len(held) == 60
        assert {ex.id for ex in val} <= {ex.id for ex in split.val}
        held_all += held
    assert sorted(held_all) == list(range(60))


def test_labels_smaller_than_k_are_spread_and_all_small_labels_still_fold() -> None:
    folds = cv.make_folds(_split(_examples(["a"] * 30 + ["b"] * 27 + ["rare"] * 3)), K, 0)
    assert folds.stratified
    rare = [f for f, e in zip(folds.fold, folds.examples, strict=True) if e.label == "rare"]
    assert len(set(rare)) == 3  # one per fold, in three of the five
    # Every label under k examples: seeded shuffled folds, not stratified, still k of them.
    tiny = cv.make_folds(_split(_examples([str(i % 15) for i in range(45)])), K, 0)
    assert not tiny.stratified
    assert sorted(Counter(tiny.fold).values()) == [9] * K


@pytest.mark.parametrize(
    ("strategy", "cross_validated"),
    [
        ("tfidf-lr", True),
        ("zero-shot", True),
        ("few-shot", True),
        ("rag", True),
        ("finetune", False),  # early-stops on val, minutes
        ("llm-zero-shot", False),  # every answer is a call
        ("llm-few-shot", False),
        ("llm-cot", False),
        ("llm-finetune", False),
        ("openai-finetune", False),
    ],
)
def test_which_strategies_are_cross_validated(strategy: str, cross_validated: bool) -> None:
    ev = EvaluationConfig()
    assert cv.applies(get_strategy(strategy), "classification", ev) is cross_validated
    assert not cv.applies(get_strategy(strategy), "generation", ev)
    assert not cv.applies(get_strategy(strategy), "classification", EvaluationConfig(cv_folds=0))


def test_cv_settings_are_checked() -> None:
    assert EvaluationConfig().cv_folds == 5 and EvaluationConfig().cv_max_fit_s == 60
    for bad in (1, 21, -1):
        with pytest.raises(ValueError, match="cv_folds"):
            EvaluationConfig(cv_folds=bad)
    assert "Kohavi" in (EvaluationConfig.model_fields["cv_folds"].description or "")


# ------------------------------------------------------------------ runs


def test_a_run_cross_validates_cheap_candidates_on_the_same_folds(
    tmp_path: Path, example_project: Path
) -> None:
    root = _project(tmp_path, example_project, [TFIDF, SPY, LLM])
    started: list[tuple[str, int, float]] = []
    outcome, progress = _run(root, events=RunEvents(on_cv=lambda *a: started.append(a)))
    split = outcome.split
    n = len(split.train) + len(split.val)
    assert [name for name, _, _ in started] == ["tfidf", "spy"]
    assert all(k == K and s >= 0 for _, k, s in started)
    assert any(line.startswith("cross-validating spy: 5 folds, about") for line in progress.lines)

    spy_result, spy_rows = _stored(root, "spy")
    tfidf_result, tfidf_rows = _stored(root, "tfidf")
    assert [r.example_id for r in spy_rows] == [ex.id for ex in [*split.train, *split.val]]
    assert [r.example_id for r in tfidf_rows] == [r.example_id for r in spy_rows]
    info = spy_result.info["cv"]
    assert info["fold"] == tfidf_result.info["cv"]["fold"]  # the same folds: pairs compare
    assert (info["folds"], info["seed"], len(info["fold"])) == (K, 42, n)
    assert len(info["fit_seconds"]) == K and info["seconds"] > 0
    # The main fit, then one per fold; no fold saw the examples it answered.
    assert len(Spy.fits) == 1 + K and Spy.leaks == 0
    ids = [ex.id for ex in [*split.train, *split.val]]
    for i, (train, val) in enumerate(Spy.fits[1:]):
        held = {ids[j] for j, f in enumerate(info["fold"]) if f == i}
        assert held and not held & (train | val)
        assert len(train | val) + len(held) == n
    # the spy answers first label for every input it never saw: all of them here
    assert {r.predicted for r in spy_rows} == {next(iter(Project.load(root).config.labels))}
    assert _stored(root, "llm")[1] == []  # a generative candidate is not cross-validated


def test_a_reused_result_gains_cv_without_a_refit_and_keeps_its_key(
    tmp_path: Path, example_project: Path
) -> None:
    root = _project(tmp_path, example_project, [SPY])
    _set(root, cv_folds=0)
    first, _ = _run(root)
    assert _stored(root, "spy")[1] == [] and "cv" not in _stored(root, "spy")[0].info
    key = _stored(root, "spy")[0].key
    assert len(Spy.fits) == 1
    summary = summarize_store(root, first.run_id)
    assert summary.selection_source == "val" and summary.cv_n == 0  # cv_folds 0: off

    _set(root, cv_folds=K)
    second, _ = _run(root)
    assert second.reused == ["spy"] and second.computed == []
    assert _stored(root, "spy")[0].key == key
    assert len(Spy.fits) == 1 + K  # the folds only: the stored model was not fitted again
    assert len(_stored(root, "spy")[1]) == len(second.split.train) + len(second.split.val)

    _run(root)  # the same folds stored: nothing to do
    assert len(Spy.fits) == 1 + K
    _set(root, cv_folds=3)  # other folds: cross-validated again, same result
    _run(root)
    assert len(Spy.fits) == 1 + K + 3 and _stored(root, "spy")[0].info["cv"]["folds"] == 3
    _run(root, force=True)  # --force: the result and its cross-validation afresh
    assert len(Spy.fits) == 1 + K + 3 + 1 + 3


def test_slow_and_failing_candidates_are_not_cross_validated(
    tmp_path: Path, example_project: Path
) -> None:
    slow = {"name": "slow", "strategy": "cv-spy", "params": {"sleep": 0.3}}
    failing = {"name": "failing", "strategy": "cv-spy", "params": {"fail_in_folds": True}}
    root = _project(tmp_path, example_project, [SPY, slow, failing])
    _set(root, cv_max_fit_s=0.2)
    outcome, progress = _run(root)
    assert outcome.computed == ["spy", "slow", "failing"]
    assert len(_stored(root, "spy")[1]) > 0
    assert _stored(root, "slow")[1] == [] and "cv" not in _stored(root, "slow")[0].info
    assert any("slow: not cross-validated" in s and "cv_max_fit_s" in s for s in progress.lines)
    # A fold that raises is a warning: the run finishes, the candidate keeps val only.
    assert _stored(root, "failing")[1] == []
    assert any("failing: cross-validation failed" in s for s in progress.notes)
    with RunStore(Project.load(root).store_path) as store:
        assert store.run(outcome.run_id)["status"] == "finished"  # type: ignore[index]
    project = Project.load(root)
    assert not (project.checkpoint_dir(_stored(root, "failing")[0].key) / "cv").exists()


def test_without_a_val_split_nothing_is_cross_validated(
    tmp_path: Path, example_project: Path
) -> None:
    root = _project(tmp_path, example_project, [SPY])
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
    cfg["data"]["val_size"] = 0  # the run chooses on test: out-of-fold answers go unused
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    _run(root)
    assert _stored(root, "spy")[1] == [] and len(Spy.fits) == 1


def test_encoder_candidates_look_train_val_vectors_up_once(
    tmp_path: Path, example_project: Path
) -> None:
    encoders: list[dict[str, Any]] = [
        {"name": "zs", "strategy": "zero-shot"},
        {"name": "fs", "strategy": "few-shot", "params": {"k": 2}},
        {"name": "knn", "strategy": "rag", "params": {"top_k": 1}},
    ]
    root = _project(tmp_path, example_project, encoders)
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
    cfg["model"] = {"backend": "cv-hash", "name": "hash"}
    cfg["evaluation"]["cv_folds"] = 0
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    _run(root)
    HashEncoder.embedded = 0
    _set(root, cv_folds=K)
    second, progress = _run(root)
    assert second.reused == ["zs", "fs", "knn"]
    n = len(second.split.train) + len(second.split.val)
    labels = len(Project.load(root).config.labels)
    # train+val once for all three, and the label prompts once (zero-shot's every fold)
    assert HashEncoder.embedded == n + labels
    for name in ("zs", "fs", "knn"):
        rows = _stored(root, name)[1]
        assert len(rows) == n, name
    # a 1-nearest-neighbour that found its own input would answer every example right
    knn = _stored(root, "knn")[1]
    assert sum(r.predicted == r.gold for r in knn) < n
    assert any(line.startswith("cross-validating knn: 5 folds") for line in progress.lines)


def test_the_vector_table_looks_known_texts_up_and_embeds_others_once() -> None:
    encoder = HashEncoder(HashOptions())
    table = cv.VectorTable.of(encoder, [["a b", "c d"], ["e"], []], ProgressSink())
    assert HashEncoder.embedded == 3
    got = table.embed(["e", "a b", "new words", "e"])
    assert np.array_equal(got[0], table.vectors["e"]) and np.array_equal(got[3], got[0])
    assert np.allclose(got[2], encoder.embed(["new words"])[0])
    HashEncoder.embedded = 0
    table.embed(["new words", "c d"])  # the same unknown list: memoised
    assert HashEncoder.embedded == 0
    assert table.embed([]).shape == (0, 0) and table.batch_size == encoder.batch_size


def summarize_store(root: Path, run_id: str, name: str = "spy") -> CandidateSummary:
    with RunStore(Project.load(root).store_path) as store:
        return summarize(store, run_id, learning=False).candidate(name)


def test_selection_rests_on_cv_and_compare_pairs_by_example(
    tmp_path: Path, example_project: Path
) -> None:
    root = _project(tmp_path, example_project, [TFIDF, SPY, LLM])
    outcome, _ = _run(root)
    n_val = len(outcome.split.val)
    n = len(outcome.split.train) + n_val
    with RunStore(Project.load(root).store_path) as store:  # reopened: the answers are stored
        summary = summarize(store, outcome.run_id, learning=False)
    spy, tfidf, llm = (summary.candidate(x) for x in ("spy", "tfidf", "llm"))
    assert (spy.selection_source, tfidf.selection_source, llm.selection_source) == (
        "cv",
        "cv",
        "val",
    )
    assert (spy.cv_n, spy.cv_folds, spy.selection_n, llm.selection_n) == (n, K, n, n_val)
    assert spy.selection_ci == spy.cv_quality_ci and llm.selection_ci == llm.val_quality_ci
    assert spy.sel_ids == spy.cv_ids and spy.val_ids == spy.cv_ids[-n_val:]
    assert spy.quality_ci != spy.cv_quality_ci or spy.n != spy.cv_n  # test figures stay test's
    # CV against CV: every train+val example; CV against val-only: the val examples.
    assert shared_selection_n(spy, tfidf) == n
    assert shared_selection_n(spy, llm) == shared_selection_n(llm, spy) == n_val
    a, b = selection_pair(tfidf, llm)
    assert a.shape[0] == b.shape[0] == n_val
    assert np.array_equal(a, tfidf.cv_columns[-n_val:])  # type: ignore[index]
    test = compare(tfidf, llm, summary.cfg, split="selection")
    right_a, right_b = a[:, 0] >= 1, b[:, 0] >= 1
    assert (test.a_only, test.b_only) == (
        int((right_a & ~right_b).sum()),
        int((right_b & ~right_a).sum()),
    )


def test_a_run_made_before_cv_ignores_cv_answers_its_results_gained_later(
    tmp_path: Path, example_project: Path
) -> None:
    root = _project(tmp_path, example_project, [SPY])
    _set(root, cv_folds=0)
    old, _ = _run(root)
    with RunStore(Project.load(root).store_path) as store:  # as an older adaptlab wrote it
        cfg = store.run(old.run_id)["config_json"]  # type: ignore[index]
        stripped = cfg.replace('"cv_folds": 0, ', "").replace('"cv_max_fit_s": 60.0, ', "")
        assert "cv_folds" not in stripped
        store.conn.execute("UPDATE runs SET config_json = ? WHERE id = ?", (stripped, old.run_id))
        store.conn.commit()
    _set(root, cv_folds=K)
    new, _ = _run(root)
    assert summarize_store(root, new.run_id).selection_source == "cv"
    assert summarize_store(root, old.run_id).selection_source == "val"


# ------------------------------------------------------------------ summaries by hand


OLD: dict[str, Any] = {  # a project as an adaptlab before cross-validation stored it
    "name": "old",
    "data": {"path": "d.jsonl"},
    "labels": {"a": "first", "b": "second"},
    "candidates": [{"name": "zs", "strategy": "zero-shot"}],
}


def _by_hand(correct: list[bool], ids: tuple[str, ...] = ()) -> CandidateSummary:
    cols = np.array(correct, dtype=float)[:, None]
    ci = Interval(float(cols.mean()), 0.0, 1.0)
    return CandidateSummary(
        name="c", strategy="s", params={}, key="k", reused=False, trains_weights=False,
        metric="accuracy", quality_ci=ci, columns=cols, n=len(correct), latency_p50_ms=1.0,
        latency_p95_ms=1.0, throughput_per_s=1.0, fit_seconds=0.0, fit_cpu_seconds=0.0,
        cpu_ms_per_request=0.0, cost_per_1k_usd=0.0, setup_cost_usd=0.0, monthly_cost_usd=0.0,
        curves=[], info={}, val_quality_ci=ci, val_columns=cols, val_n=len(correct),
        val_ids=ids,
    )  # fmt: skip


def test_summaries_without_ids_pair_by_position() -> None:
    cfg = ProjectConfig.model_validate(OLD)
    a, b = _by_hand([True] * 8 + [False] * 2), _by_hand([False] * 8 + [True] * 2)
    assert a.selection_source == "val" and a.sel_ids == ()
    assert shared_selection_n(a, b) == 10
    assert (compare(a, b, cfg, split="selection").a_only, compare(a, b, cfg).b_only) == (8, 2)
    # with ids, only the shared examples pair, whatever their order
    c = _by_hand([True, False, True], ("x:1", "x:2", "x:3"))
    d = _by_hand([False, True], ("x:3", "x:1"))
    ca, cd = selection_pair(c, d)
    assert ca[:, 0].tolist() == [1.0, 1.0] and cd[:, 0].tolist() == [1.0, 0.0]


def test_old_stores_without_cv_rows_summarise(tmp_path: Path) -> None:
    with RunStore(tmp_path / "runs.db") as store:
        store.start_run(
            "r", project="old", config=OLD, data_fingerprint="x", seed=42,
            model={}, split={"train": 8, "val": 4, "test": 4},
        )  # fmt: skip
        rows = [PredictionRow(f"e{i}", "t", "a", "ab"[i % 2], None, 1.0) for i in range(4)]
        result = ResultRow("k", "zs", "zero-shot", {}, 0.1, 0.1, 0.1, 0.1, 4, False, {})
        store.save_result(result, rows, [], val_predictions=rows)
        store.link("r", 0, "zs", "k", reused=False)
        store.finish_run("r")
        c = summarize(store, "r", learning=False).candidate("zs")
    assert (c.selection_source, c.cv_n, c.cv_folds, c.cv_quality_ci) == ("val", 0, 0, None)
    assert c.val_ids == ("e0", "e1", "e2", "e3") and c.selection_n == 4
