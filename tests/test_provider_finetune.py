"""Provider fine-tuning (``openai-finetune``) against a local HTTP server.

:class:`~tests.fakes.fake_finetune.FakeFinetuneServer` serves the files and
fine-tuning-jobs endpoints and the chat endpoint for the tuned model; the official
``openai`` client talks to it. Covered: a job that succeeds, one that fails, one that
is cancelled (Ctrl-C, then ``adaptlab jobs cancel``; and cancelled at the provider
while a run follows it), ``kill -9`` after the job was created, a create whose answer
is lost, and the cost estimate shown before anything is uploaded.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import threading
import time
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab import Project, run_project, summarize_project
from adaptlab.cli.jobs import jobs
from adaptlab.core.errors import AdaptlabError
from adaptlab.core.progress import ProgressSink
from tests.conftest import adaptlab_process, run_cli, small_project
from tests.fakes.fake_finetune import FakeFinetuneServer

BASE = "gpt-4o-mini-2024-07-18"
# A "hang" job runs until cancelled: a regression that starts a second one would wait
# for ever instead of failing.
pytestmark = pytest.mark.timeout(120)


def ft_project(
    tmp_path: Path, example_project: Path, server: FakeFinetuneServer, **params: Any
) -> Path:
    """4 tickets a label (2 train, 1 val, 1 test); one openai-finetune candidate."""
    cand = {
        "name": "ft",
        "strategy": "openai-finetune",
        "llm": "chat",
        "params": {"poll_interval_s": 0.05, "n_epochs": 2, **params},
    }
    project = small_project(tmp_path / "p", example_project, 4, [cand])
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["llms"] = {"chat": {"backend": "openai", "name": BASE, "base_url": server.base_url}}
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return project


def job_file(project: Path) -> Path:
    (path,) = (project / ".adaptlab/checkpoints").glob("*/job.json")
    return path


def stored(project: Path) -> tuple[dict[str, Any], list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """(info of the result, prediction rows (predicted, raw), curve rows) of the one result."""
    with sqlite3.connect(project / ".adaptlab/runs.db") as conn:
        (info,) = conn.execute("SELECT info_json FROM results").fetchone()
        preds = conn.execute(
            "SELECT predicted, raw FROM predictions WHERE split = 'test'"
        ).fetchall()
        curves = conn.execute("SELECT step, split, metric, value FROM curves").fetchall()
    return json.loads(info), preds, curves


def test_a_job_that_succeeds_is_evaluated_through_its_fine_tuned_model(
    tmp_path: Path, example_project: Path
) -> None:
    with FakeFinetuneServer() as server:
        project = ft_project(tmp_path, example_project, server)
        result = run_cli("run", "-p", str(project))
        assert result.exit_code == 0, result.output
        job = server.job()
        assert job.status == "succeeded" and server.jobs_created == 1
        model = job.fine_tuned_model
        assert model is not None and model.startswith(f"ft:{BASE}:adaptlab:")
        # Every answer came from the tuned model, none from the base model.
        assert {c.model for c in server.calls} == {model}
        body = job.body
        cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
        assert len(body["metadata"]["adaptlab_key"]) == 32 and body["seed"] == cfg["seed"]
        hyper = body["method"]["supervised"]["hyperparameters"]
        assert hyper == {"n_epochs": 2, "batch_size": "auto", "learning_rate_multiplier": "auto"}
        assert body["validation_file"] in server.files

        info, preds, curves = stored(project)
        train_records = server.files[body["training_file"]].records
        assert info["fine_tuned_model"] == model
        assert info["provider_job"]["id"] == job.id
        assert info["trained_tokens"] == job.trained_tokens
        assert job.trained_tokens is not None
        assert info["estimated_epochs"] == 2 and info["train_examples"] == len(train_records)
        assert info["actual_cost_usd"] == pytest.approx(job.trained_tokens * 3 / 1e6)
        assert info["estimated_cost_usd"] > 0
        assert len(info["provider_job"]["checkpoints"]) == 2  # one per epoch
        # One train and one validation loss per step, as the provider's events gave them.
        steps = job.total_steps
        assert sorted(s for s, split, *_ in curves if split == "train") == list(range(1, steps + 1))
        assert len([c for c in curves if c[1] == "val"]) == steps
        # The fake tuned model answers a label of its training file (the most frequent).
        assert preds and all(p == raw and p in cfg["labels"] for p, raw in preds)
        out = result.output
        assert out.index("billed tokens") < out.index(f"fine-tuning job {job.id} created")
        _assert_priced_as_the_fine_tuned_model(project, job.trained_tokens)

        # A rerun reuses the stored result; --force (a fresh folder) finds the job by its
        # metadata and pays for none.
        assert run_cli("run", "-p", str(project)).exit_code == 0
        again = run_cli("run", "-p", str(project), "--force")
        assert again.exit_code == 0, again.output
        assert f"re-attached to fine-tuning job {job.id}" in again.output
        assert server.jobs_created == 1


def _table_entry(model: str) -> dict[str, Any]:
    """The shipped price table's entry of ``model``, read from the YAML file itself."""
    text = resources.files("adaptlab.llm").joinpath("prices.yaml").read_text(encoding="utf-8")
    entry: dict[str, Any] = yaml.safe_load(text)["models"][model]
    return entry


def _assert_priced_as_the_fine_tuned_model(project: Path, trained_tokens: int) -> None:
    """Setup = the job's training bill + CPU; answers at the fine-tuned model's prices."""
    summary = summarize_project(Project.load(project))
    (c,) = summary.candidates
    entry = _table_entry("gpt-4o-mini")
    tuned = entry["finetuned"]
    cpu = c.fit_cpu_seconds * summary.config["cost"]["cpu_hour_usd"] / 3600
    bill = trained_tokens * tuned["training"] / 1e6
    assert bill > 0 and c.setup_cost_usd == pytest.approx(bill + cpu)
    with sqlite3.connect(project / ".adaptlab/runs.db") as conn:
        usage = conn.execute(
            "SELECT input_tokens, output_tokens FROM predictions WHERE split = 'test'"
        ).fetchall()
    assert usage and all(i and o for i, o in usage)

    def per_1k(price: dict[str, float]) -> float:
        total: float = sum(i * price["input"] + o * price["output"] for i, o in usage)
        return total / len(usage) / 1e3

    assert c.api_cost_per_1k_usd == pytest.approx(per_1k(tuned))
    assert c.cost_per_1k_usd == pytest.approx(per_1k(tuned)) and c.price_kind == "table"
    # The tuned model costs more per token than its base: priced as the base, it would not.
    assert per_1k(tuned) > per_1k(entry) * 1.5


class Recorder(ProgressSink):
    def __init__(self) -> None:
        self.messages: list[tuple[float, str]] = []

    def note(self, message: str) -> None:
        self.messages.append((time.time(), message))

    def info(self, message: str) -> None:
        self.messages.append((time.time(), message))


def test_the_cost_estimate_comes_before_any_upload_and_max_usd_stops_it(
    tmp_path: Path, example_project: Path
) -> None:
    with FakeFinetuneServer() as server:
        project = ft_project(tmp_path, example_project, server, max_usd=0.000001)
        sink = Recorder()
        with pytest.raises(AdaptlabError, match="above max_usd") as err:
            run_project(Project.load(project), progress=sink)
        assert "nothing was uploaded" in str(err.value)
        assert server.uploads == [] and server.jobs_created == 0
        estimate = next(m for _, m in sink.messages if "billed tokens" in m)
        assert "USD" in estimate

        cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
        cfg["candidates"][0]["params"]["max_usd"] = 5.0
        (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        sink = Recorder()
        run_project(Project.load(project), progress=sink)
        said = next(t for t, m in sink.messages if "billed tokens" in m)
        assert server.uploads and said < min(t for _, t in server.uploads)
        # 2 epochs of the training file, as the estimate said.
        info, _, _ = stored(project)
        assert info["estimated_billed_tokens"] % 2 == 0


def test_a_failed_job_is_reported_and_a_rerun_starts_no_second_job(
    tmp_path: Path, example_project: Path
) -> None:
    with FakeFinetuneServer(scenario="fail") as server:
        project = ft_project(tmp_path, example_project, server)
        result = run_cli("run", "-p", str(project))
        assert result.exit_code == 2, result.output
        job = server.job()
        assert job.status == "failed"
        assert f"fine-tuning job {job.id} failed at the provider" in result.output
        assert "invalid_training_file" in result.output and "--force" in result.output
        assert "internal error" not in result.output
        with sqlite3.connect(project / ".adaptlab/runs.db") as conn:
            assert conn.execute("SELECT status FROM runs").fetchall() == [("failed",)]
            assert conn.execute("SELECT COUNT(*) FROM results").fetchone() == (0,)

        # The rerun re-attaches to the failed job and says so; it pays for nothing new.
        rerun = run_cli("run", "-p", str(project))
        assert rerun.exit_code == 2 and f"{job.id} failed" in rerun.output
        assert server.jobs_created == 1

        # --force starts over: a new job, which succeeds this time.
        server.scenario = "succeed"
        forced = run_cli("run", "-p", str(project), "--force")
        assert forced.exit_code == 0, forced.output
        assert server.jobs_created == 2 and server.job().status == "succeeded"


def test_a_lost_create_answer_is_found_by_metadata_not_created_twice(
    tmp_path: Path, example_project: Path
) -> None:
    with FakeFinetuneServer(lose_create_answers=1) as server:
        project = ft_project(tmp_path, example_project, server)
        result = run_cli("run", "-p", str(project))
        assert result.exit_code == 0, result.output
        assert server.jobs_created == 1
        assert json.loads(job_file(project).read_text())["job_id"] == server.job().id


def _wait(condition: Any, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_ctrl_c_leaves_the_job_running_and_jobs_cancel_cancels_it(
    tmp_path: Path, example_project: Path
) -> None:
    with FakeFinetuneServer(scenario="hang") as server:
        project = ft_project(tmp_path, example_project, server)
        proc = adaptlab_process("run", "-p", str(project))

        def job_id_stored() -> bool:
            files = list((project / ".adaptlab/checkpoints").glob("*/job.json"))
            return bool(files) and "job_id" in json.loads(files[0].read_text())

        _wait(job_id_stored, "the job id in job.json")
        time.sleep(0.5)  # the run is following the job now
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
        job = server.job()
        assert proc.returncode == 130, out
        assert f"fine-tuning job {job.id} keeps running at the provider" in out
        assert "jobs cancel" in out
        assert job.status == "running"

        listed = run_cli("list", "-p", str(project), command=jobs)
        assert listed.exit_code == 0 and job.id in listed.output and "running" in listed.output
        cancelled = run_cli("cancel", "-p", str(project), "ft", command=jobs)
        assert cancelled.exit_code == 0, cancelled.output
        assert f"cancelled fine-tuning job {job.id}" in cancelled.output
        assert server.job().status == "cancelled"

        rerun = run_cli("run", "-p", str(project))
        assert rerun.exit_code == 2
        assert f"fine-tuning job {job.id} was cancelled" in rerun.output
        assert server.jobs_created == 1


def test_a_job_cancelled_at_the_provider_stops_the_run_that_follows_it(
    tmp_path: Path, example_project: Path
) -> None:
    with FakeFinetuneServer(scenario="hang") as server:
        project = ft_project(tmp_path, example_project, server)
        errors: list[BaseException] = []

        def run() -> None:
            try:
                run_project(Project.load(project))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run)
        thread.start()
        _wait(lambda: server.jobs and server.job().step >= 1, "the job to run")
        server.cancel(server.job().id)
        thread.join(timeout=60)
        assert not thread.is_alive()
        (err,) = errors
        assert isinstance(err, AdaptlabError) and "was cancelled" in str(err)
        assert "adaptlab run --force" in str(err)


def test_kill_9_after_the_job_was_created_then_rerun_pays_for_one_job(
    tmp_path: Path, example_project: Path
) -> None:
    # About 24 steps of 0.1 s: the job outlives the killed run.
    with FakeFinetuneServer(step_s=0.1) as server:
        project = ft_project(tmp_path, example_project, server)
        proc = adaptlab_process("run", "-p", str(project))
        _wait(lambda: server.jobs_created >= 1, "the job to be created")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        assert server.job().status not in ("succeeded", "failed", "cancelled")

        rerun = adaptlab_process("run", "-p", str(project))
        out, _ = rerun.communicate(timeout=120)
        assert rerun.returncode == 0, out
        job = server.job()
        assert server.jobs_created == 1 and job.status == "succeeded"
        assert f"re-attached to fine-tuning job {job.id}" in out
        assert {c.model for c in server.calls} == {job.fine_tuned_model}
        info, preds, curves = stored(project)
        assert info["fine_tuned_model"] == job.fine_tuned_model and preds
        # The re-attached run read the whole event history: every step's loss.
        assert len([c for c in curves if c[1] == "train"]) == job.total_steps


def test_a_dry_run_starts_no_job(tmp_path: Path, example_project: Path) -> None:
    with FakeFinetuneServer() as server:
        project = ft_project(tmp_path, example_project, server)
        result = run_cli("run", "-p", str(project), "--dry-run")
        assert result.exit_code == 0, result.output
        assert "dry run: nothing was sent" in result.output
        assert server.uploads == [] and server.jobs_created == 0 and server.calls == []
        listed = run_cli("list", "-p", str(project), command=jobs)
        assert listed.exit_code == 0 and "no provider fine-tuning jobs" in listed.output
        unknown = run_cli("cancel", "-p", str(project), "ft", command=jobs)
        assert unknown.exit_code == 2
        assert "no fine-tuning job recorded for 'ft'" in unknown.output


def test_setup_cost_is_the_actual_bill_else_the_estimate_and_cpu_time_locally() -> None:
    from adaptlab.evaluation.llm_costs import setup_cost_usd

    cpu = 1800 * 0.5 / 3600  # 30 CPU minutes at 0.50 USD an hour
    both = {"actual_cost_usd": 0.2, "estimated_cost_usd": 0.3}
    assert setup_cost_usd(1800, 0.5, both) == pytest.approx(cpu + 0.2)
    # No trained_tokens (or no training price): the estimate shown before the upload.
    estimate = {"actual_cost_usd": None, "estimated_cost_usd": 0.3}
    assert setup_cost_usd(1800, 0.5, estimate) == pytest.approx(cpu + 0.3)
    # A local fine-tune (llm-finetune) pays no provider: its CPU time alone.
    assert setup_cost_usd(1800, 0.5, {"training": {"train_tokens": 9000}}) == pytest.approx(cpu)
    # The bill is recomputed from the trained tokens the job reported, at the table's price.
    job = {"provider_job": {"base_model": BASE}, "trained_tokens": 2_000_000, **both}
    training = _table_entry("gpt-4o-mini")["finetuned"]["training"]
    assert setup_cost_usd(1800, 0.5, job) == pytest.approx(cpu + 2 * training)
