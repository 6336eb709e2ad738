"""``tune:`` on the LoRA fine-tune (tiny Llama, real trainer and backend) and the search
driver itself (pure Python, a fake clock): the record, the cap, never reading test,
reuse of stored trials."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab.engine import summarize_project
from adaptlab.engine.project import Project
from adaptlab.engine.runner import run_project
from adaptlab.strategies.tuning import (
    Outcome,
    TrialStore,
    plan_line,
    planned_trials,
    successive_halving,
)
from tests.conftest import small_project
from tests.train import test_llm_finetune_strategy

pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")

PARAMS = {**test_llm_finetune_strategy.PARAMS, "epochs": 2, "evaluate": "best"}
TUNE = {"max_minutes": 30, "learning_rate": [2e-3], "lora_r": [2, 8]}


def _project(tmp_path: Path, example_project: Path, tiny_base: Path, tune: Any) -> Project:
    root = small_project(
        tmp_path / "p",
        example_project,
        per_label=4,
        candidates=[
            {
                "name": "lora",
                "strategy": "llm-finetune",
                "llm": "tiny",
                "params": PARAMS | ({"tune": tune} if tune is not None else {}),
            }
        ],
    )
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
    cfg["llms"] = {"tiny": {"backend": "hf", "name": str(tiny_base), "batch_size": 8}}
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return Project.load(root)


@pytest.mark.slow
def test_lora_tuning_records_trials_never_reads_test_and_reuses_them(
    tmp_path: Path, example_project: Path, tiny_base: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adaptlab.strategies.llm_finetune.strategy import LLMFinetune
    from adaptlab.strategies.prompting.strategy import PromptStrategy
    from adaptlab.train import trainer as trainer_mod

    project = _project(tmp_path, example_project, tiny_base, TUNE)
    split = project.split()
    phase = ["none"]
    asked: list[tuple[str, str]] = []
    trainings: list[float] = []
    real_fit, real_requests, real_load = (
        LLMFinetune.fit,
        PromptStrategy.requests,
        trainer_mod._load_model,
    )

    def fit(self: Any, train: Any, val: Any) -> None:
        phase[0] = "fit"
        real_fit(self, train, val)
        phase[0] = "after"

    def requests(self: Any, texts: Any, *a: Any, **kw: Any) -> Any:
        asked.extend((phase[0], t) for t in texts)
        return real_requests(self, texts, *a, **kw)

    def load(base: Any, options: Any, device: Any) -> Any:  # only where training starts
        trainings.append(options.epochs)
        return real_load(base, options, device)

    monkeypatch.setattr(LLMFinetune, "fit", fit)
    monkeypatch.setattr(PromptStrategy, "requests", requests)
    monkeypatch.setattr(trainer_mod, "_load_model", load)
    run_project(project)

    # Fitting (training chats and the trials' answers) never saw a test input; the test
    # inputs were asked after it, by the tuned model only.
    test_texts = {ex.text for ex in split.test}
    in_fit = {t for p, t in asked if p == "fit"}
    assert {ex.text for ex in split.val} <= in_fit and not in_fit & test_texts
    assert test_texts <= {t for p, t in asked if p == "after"}

    summary = summarize_project(project, run_project(project).run_id)
    tuning = summary.candidate("lora").info["tuning"]
    # Two settings besides the default (eta 3): one rung at full epochs, i.e. a grid.
    assert tuning["method"] == "grid" and tuning["metric"] == "accuracy"
    assert tuning["space"] == {"learning_rate": [2e-3], "lora_r": [2, 8]}
    default = tuning["default"]
    assert default["params"] == {"learning_rate": 2e-2, "epochs": 2.0, "lora_r": 4}
    for entry in (default, tuning["tuned"]):
        assert len(entry["val_per_example"]) == len(split.val)
        assert set(entry["val_per_example"]) <= {0.0, 1.0}
        assert entry["val_score"] == pytest.approx(sum(entry["val_per_example"]) / len(split.val))
    # Two other settings (lr 2e-3 with rank 2 and 8; eta 3): one rung at full epochs.
    trials = tuning["trials"]
    assert trials[0]["params"] == default["params"] and trials[0]["n_val"] == len(split.val)
    assert [t["params"]["lora_r"] for t in trials] == [4, 2, 8]
    assert {tuple(sorted(t)) for t in trials} == {
        ("calls", "fraction", "n_val", "params", "reused", "rung", "seconds", "usd", "val_score")
    }
    best = max(t["val_score"] for t in trials)
    assert tuning["tuned"]["val_score"] == best
    budget = tuning["budget"]
    assert budget["max_minutes"] == 30 and budget["stopped_by"] is None
    assert 0 < budget["minutes"] < 30 and budget["calls"] == 0
    # Three trainings for three trials; the second run reused the stored result.
    assert trainings == [2.0, 2.0, 2.0]

    # Interrupted after the search (the stored result lost): no trial trains again.
    project.store_path.unlink()
    trainings.clear()
    again = run_project(project)
    assert again.computed == ["lora"] and trainings == []
    info = summarize_project(project, again.run_id).candidate("lora").info["tuning"]
    assert all(t["reused"] for t in info["trials"])
    assert info["tuned"] == tuning["tuned"]


def test_an_untuned_candidate_keeps_its_result_key(
    tmp_path: Path, example_project: Path, tiny_base: Path
) -> None:
    from adaptlab.engine.runner import result_key
    from adaptlab.strategies.llm_finetune.config import LLMFinetuneOptions

    assert "tune" not in LLMFinetuneOptions().model_dump(mode="json")
    project = _project(tmp_path, example_project, tiny_base, None)
    cand = project.config.candidates[0]
    plain = result_key(project, cand, project.split())
    tuned = cand.model_copy(update={"params": {**cand.params, "tune": {"max_minutes": 1}}})
    assert result_key(project, tuned, project.split()) != plain


# ---------------------------------------------------------------- the driver


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _search(
    tmp_path: Path,
    clock: FakeClock,
    started: list[tuple[dict[str, Any], float, float]],
    *,
    max_minutes: float,
    fail_at: int | None = None,
) -> Any:
    """A search over 9 learning rates where a trial takes ``60 x fraction`` seconds and
    scores higher the larger its learning rate."""

    def evaluate(params: dict[str, Any], fraction: float, folder: Path) -> Outcome:
        if fail_at is not None and len(started) == fail_at:
            raise KeyboardInterrupt
        started.append((params, fraction, clock.now))
        clock.now += 60 * fraction
        lr = params["learning_rate"]
        return Outcome([1.0 if i < round(lr * 10) else 0.0 for i in range(10)])

    return successive_halving(
        {"learning_rate": 0.05},
        {"learning_rate": [0.1 * i for i in range(1, 10)]},
        evaluate,
        TrialStore(tmp_path / "trials"),
        max_minutes=max_minutes,
        eta=3,
        units=lambda p, f: f,
        n_val=10,
        clock=clock,
    )


def test_successive_halving_promotes_the_best_and_keeps_the_default(tmp_path: Path) -> None:
    started: list[tuple[dict[str, Any], float, float]] = []
    search = _search(tmp_path, FakeClock(), started, max_minutes=60)
    fractions = [f for _, f, _ in started]
    # 9 settings, eta 3: the default at full epochs, 9 at 1/3, the best 3 at full.
    assert fractions == [1.0] + [1 / 3] * 9 + [1.0] * 3
    assert [p["learning_rate"] for p, f, _ in started if f == 1.0][1:] == pytest.approx(
        [0.9, 0.8, 0.7]
    )
    assert planned_trials(9, 3) == [9, 3] and planned_trials(27, 3) == [27, 9, 3]
    assert search.tuned == {"learning_rate": pytest.approx(0.9)}
    assert search.record["default"]["params"] == {"learning_rate": 0.05}
    assert search.record["default"]["val_score"] == 0.0
    assert search.record["method"] == "successive halving" and search.record["rungs"] == 2
    assert search.record["budget"]["stopped_by"] is None and not search.record["left_out"]
    assert "at most 13 trials" in plan_line(9, 3, 20)


@pytest.mark.parametrize("max_minutes", [0.5, 1.5, 2.0, 2.4])
def test_no_trial_starts_that_would_end_past_the_cap(tmp_path: Path, max_minutes: float) -> None:
    clock = FakeClock()
    started: list[tuple[dict[str, Any], float, float]] = []
    search = _search(tmp_path, clock, started, max_minutes=max_minutes)
    cap = max_minutes * 60
    ends = [t0 + 60 * f for _, f, t0 in started[1:]]  # the default always runs
    assert all(end <= cap for end in ends)
    record = search.record
    assert record["budget"]["stopped_by"] == "max_minutes" and record["left_out"]
    assert len(record["trials"]) + len(record["left_out"]) >= 1 + 9
    assert record["budget"]["minutes"] == pytest.approx(clock.now / 60, abs=1e-3)


def test_an_interrupted_search_resumes_without_running_finished_trials(tmp_path: Path) -> None:
    clock = FakeClock()
    started: list[tuple[dict[str, Any], float, float]] = []
    with pytest.raises(KeyboardInterrupt):
        _search(tmp_path, clock, started, max_minutes=60, fail_at=5)
    done = [(p, f) for p, f, _ in started]
    started.clear()
    search = _search(tmp_path, clock, started, max_minutes=60)
    assert len(started) == 13 - 5 and not [(p, f) for p, f, _ in started if (p, f) in done]
    reused = [t for t in search.record["trials"] if t["reused"]]
    assert len(reused) == 5
    assert search.tuned == {"learning_rate": pytest.approx(0.9)}
