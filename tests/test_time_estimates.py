"""Time before work: every candidate's estimated wall time, from a probe run here.

``adaptlab run --dry-run`` prints an estimate per candidate (its stages, the range, what
was measured) and stores nothing; ``adaptlab run`` says them before it starts and asks
about a candidate past ``evaluation.max_minutes`` in a terminal, skips it without one
or with ``--no-input`` (saying how to run it), and runs it with ``--yes``. Whether an
estimate is *accurate* is a timing, checked by ``bench/time_estimates.py``, not here.
"""

from __future__ import annotations

from contextlib import closing
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from adaptlab import Project
from adaptlab.cli import cli
from adaptlab.engine.estimate import HIGH, LOW, estimate_times
from adaptlab.engine.runner import Models
from adaptlab.store import RunStore
from tests.conftest import small_project
from tests.train.conftest import tiny_base, tokenizer_dir  # noqa: F401 (fixtures)

CANDIDATES: list[dict[str, Any]] = [
    {"name": "zero-shot", "strategy": "zero-shot"},
    {"name": "finetune", "strategy": "finetune", "params": {"epochs": 3, "patience": 1}},
    {"name": "tfidf", "strategy": "tfidf-lr"},
    {"name": "prompted", "strategy": "llm-zero-shot", "llm": "fake"},
    {"name": "remote", "strategy": "llm-zero-shot", "llm": "api"},
]


def _project(tmp_path: Path, example_project: Path, extra: list[dict[str, Any]] = ()) -> Path:  # type: ignore[assignment]
    project = small_project(tmp_path / "p", example_project, 5, [*CANDIDATES, *extra])
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    labels = list(cfg["labels"])
    cfg["llms"]["fake"] = {"backend": "fake", "name": "scripted", "answers": [labels[0]]}
    cfg["llms"]["api"] = {"backend": "openai", "name": "gpt-4o-mini"}
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return project


def _set(project: Path, **evaluation: Any) -> None:
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["evaluation"].update(evaluation)
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_each_local_candidate_gets_a_measured_estimate_and_a_remote_one_says_why_not(
    tmp_path: Path,
    example_project: Path,
    tiny_base: Path,  # noqa: F811
) -> None:
    lora = {
        "name": "lora",
        "strategy": "llm-finetune",
        "llm": "tiny",
        "params": {"epochs": 2, "eval_steps": 2},
    }
    project_dir = _project(tmp_path, example_project, [lora])
    cfg = yaml.safe_load((project_dir / "adaptlab.yaml").read_text())
    cfg["llms"]["tiny"] = {"backend": "hf", "name": str(tiny_base)}
    (project_dir / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    project = Project.load(project_dir)
    with closing(Models(project)) as models:
        estimates = {
            e.candidate: e for e in estimate_times(project, project.config.candidates, models)
        }
    assert list(estimates) == [c.name for c in project.config.candidates]
    for name in ("zero-shot", "finetune", "tfidf", "prompted", "lora"):
        est = estimates[name]
        assert est.seconds is not None, (name, est.note)
        assert est.seconds == pytest.approx(sum(est.parts.values()))
        assert est.low <= est.seconds <= est.high
        if name != "finetune":
            assert est.high == pytest.approx(HIGH * est.seconds)
        assert all(v > 0 for v in est.parts.values())
        assert "timed" in est.basis or "embedded" in est.basis
        # a tiny project's estimate may be under a second, said so, not as "0.3 s"
        assert est.line().startswith((f"{name}: about ", f"{name}: under 1 s"))
    # What each was measured on: training steps for the fine-tunes, answers for a prompt.
    assert "training steps timed" in estimates["finetune"].basis
    assert "training steps timed" in estimates["lora"].basis
    assert "answers timed" in estimates["prompted"].basis
    assert {"fit", "answers"} <= set(estimates["lora"].parts)
    # Early stopping (patience 1 of 3 epochs) can end the fine-tune after 2: the range
    # reaches below the point estimate's LOW share.
    # Which epoch it ends at is not known before: the point expects the geometric mean of
    # 2 and 3 epochs, and the range reaches up to all 3 (above the point's HIGH share).
    finetune = estimates["finetune"].seconds
    assert finetune is not None and estimates["finetune"].low < LOW * finetune
    assert estimates["finetune"].high > HIGH * finetune
    remote = estimates["remote"]
    assert remote.seconds is None and "paid call" in remote.note
    assert "no time estimate" in remote.line()
    # The frozen encoder embeds test and validation once per run, shared by candidates.
    assert "answers" in estimates["zero-shot"].parts
    assert "answers" in estimates["finetune"].parts  # a tuned encoder embeds anew


def test_cached_answers_cost_nothing_in_the_estimate(tmp_path: Path, example_project: Path) -> None:
    project_dir = _project(tmp_path, example_project)
    result = CliRunner().invoke(cli, ["run", "-p", str(project_dir), "-c", "prompted", "--yes"])
    assert result.exit_code == 0, result.output
    project = Project.load(project_dir)
    prompted = [c for c in project.config.candidates if c.name == "prompted"]
    with closing(Models(project)) as models:
        (est,) = estimate_times(project, prompted, models)
    n = len(project.split().test) + len(project.split().val)
    assert f"{n} cached" in est.basis
    assert "answers" not in est.parts  # every answer is in the response cache


def test_dry_run_prints_every_estimate_and_stores_nothing(
    tmp_path: Path, example_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-sent")  # nothing is sent either way
    project = _project(tmp_path, example_project)
    result = CliRunner().invoke(cli, ["run", "--dry-run", "-p", str(project)])
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert "time on this machine" in text
    for name in ("zero-shot", "finetune", "tfidf", "prompted"):
        assert f"{name}: about " in text or f"{name}: under 1 s" in text, name
    assert "remote: no time estimate" in text
    assert "estimated time of this run: about" in text
    assert not Project.load(project).has_store  # nothing stored


def test_a_candidate_past_max_minutes_is_skipped_without_a_terminal_saying_how_to_run_it(
    tmp_path: Path, example_project: Path, cli: Any
) -> None:
    project = _project(tmp_path, example_project)
    _set(project, max_minutes=1e-6)  # every estimate is past it
    result = cli("run", "-p", project, "-c", "tfidf", "-c", "prompted")
    text = result.error("no candidate ran this time", "--yes")  # said, not a traceback
    assert "time: tfidf: " in text
    for name in ("tfidf", "prompted"):
        assert f"– {name}: skipped, estimated at " in text
        assert f"adaptlab run -p {project} -c {name} --yes" in text
    assert "(no terminal to ask in)" in text
    with RunStore(Project.load(project).store) as store:
        run = store.latest_run(finished_only=False)
        assert run is not None and not store.run_candidates(run["id"])


@pytest.mark.parametrize("flag", ["--yes", "-y"])
def test_yes_runs_it_anyway(tmp_path: Path, example_project: Path, flag: str) -> None:
    project = _project(tmp_path, example_project)
    _set(project, max_minutes=1e-6)
    result = CliRunner().invoke(cli, ["run", "-p", str(project), "-c", "tfidf", flag])
    assert result.exit_code == 0, result.output
    assert "✓ tfidf" in result.output and "skipped" not in result.output


def test_no_input_skips_without_the_no_terminal_remark_and_null_never_asks(
    tmp_path: Path, example_project: Path
) -> None:
    project = _project(tmp_path, example_project)
    _set(project, max_minutes=1e-6)
    result = CliRunner().invoke(cli, ["run", "-p", str(project), "-c", "tfidf", "--no-input"])
    assert "– tfidf: skipped" in result.output and "no terminal" not in result.output
    both = CliRunner().invoke(cli, ["run", "-p", str(project), "--yes", "--no-input"])
    assert both.exit_code == 2 and "give one" in both.output
    _set(project, max_minutes=None)
    result = CliRunner().invoke(cli, ["run", "-p", str(project), "-c", "tfidf", "--no-input"])
    assert "✓ tfidf" in result.output


@pytest.mark.parametrize(("answer", "runs"), [("y\n", True), ("n\n", False)])
def test_in_a_terminal_it_asks(
    tmp_path: Path, example_project: Path, monkeypatch: pytest.MonkeyPatch, answer: str, runs: bool
) -> None:
    import sys

    monkeypatch.setattr(sys.modules["adaptlab.cli.run"], "can_ask", lambda: True)
    project = _project(tmp_path, example_project)
    _set(project, max_minutes=1e-6)
    result = CliRunner().invoke(cli, ["run", "-p", str(project), "-c", "tfidf"], input=answer)
    assert result.exit_code == 0 if runs else result.exit_code != 0, result.output
    assert "tfidf is estimated at " in result.output and "Run it now?" in result.output
    assert ("✓ tfidf" in result.output) is runs
    assert ("– tfidf: skipped" in result.output) is not runs


def test_an_estimate_under_a_second_is_not_shown_finer_than_measured() -> None:
    from adaptlab.engine.estimate import TimeEstimate

    tiny = TimeEstimate(
        "few-shot", 0.04, low=0.03, high=0.05, parts={"fit": 0.04}, basis="64 texts embedded"
    )
    assert tiny.line() == "few-shot: under 1 s, from 64 texts embedded"
    shared = TimeEstimate("knn", 0.0, basis="64 texts embedded", note="shared")
    assert shared.line() == "knn: under 1 s, from 64 texts embedded; shared"
    longer = TimeEstimate("finetune", 67.0, low=21.0, high=90.0, parts={"fit": 62.0})
    assert longer.line() == "finetune: about 67 s (21 s–90 s; fit 62 s)"
