"""``adaptlab jobs``: the provider fine-tuning jobs of a project (list, cancel).

Every ``openai-finetune`` candidate keeps its job's id in ``job.json`` in its folder
under ``.adaptlab/checkpoints/``; these commands read those files and ask the
provider for the job's current state.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.text import Text

from adaptlab.cli.common import console, project_option

if TYPE_CHECKING:
    from adaptlab.config import CandidateConfig, LLMConfig
    from adaptlab.engine.project import Project


@dataclass
class StoredJob:
    """A ``job.json`` of this project: its path, contents and the candidate it belongs to
    (None when no candidate of ``adaptlab.yaml`` has that folder any more)."""

    path: Path
    state: dict[str, Any]
    candidate: CandidateConfig | None

    @property
    def job_id(self) -> str | None:
        value = self.state.get("job_id")
        return value if isinstance(value, str) else None


def stored_jobs(project: Project) -> list[StoredJob]:
    """Every job file under the project's checkpoints folder, current candidates first."""
    from adaptlab.cli.clean import checkpoints_folder
    from adaptlab.engine.runner import result_key
    from adaptlab.train.provider import load_state

    folder = checkpoints_folder(project)
    if folder is None:
        return []
    cands = [c for c in project.config.candidates if c.strategy == "openai-finetune"]
    by_key: dict[str, CandidateConfig] = {}
    if cands:
        split = project.split()
        by_key = {result_key(project, c, split): c for c in cands}
    out = []
    for path in sorted(folder.glob("*/job.json")):
        if path.is_symlink() or path.parent.is_symlink():
            continue  # never follow a link out of the project
        out.append(StoredJob(path, load_state(path), by_key.get(path.parent.name)))
    out.sort(key=lambda j: (j.candidate is None, j.candidate.name if j.candidate else ""))
    return out


def _llm_of(project: Project, job: StoredJob) -> LLMConfig | None:
    cand = job.candidate
    if cand is None:
        # A folder left by an edited candidate: the model of any openai-finetune one.
        cand = next((c for c in project.config.candidates if c.strategy == "openai-finetune"), None)
    if cand is None or cand.llm is None:
        return None
    return project.config.llms[cand.llm]


@click.group()
def jobs() -> None:
    """Provider fine-tuning jobs of this project's openai-finetune candidates."""


@jobs.command("list")
@project_option
@click.option("--offline", is_flag=True, help="Show what is stored; ask the provider nothing.")
def list_jobs(project_dir: str, offline: bool) -> None:
    """Each candidate's job: id, status (asked from the provider) and fine-tuned model."""
    from rich import box
    from rich.table import Table

    from adaptlab.core.errors import AdaptlabError
    from adaptlab.engine.project import Project
    from adaptlab.train.provider import OpenAIJobs

    project = Project.load(project_dir)
    found = stored_jobs(project)
    if not found:
        console.print("no provider fine-tuning jobs recorded in this project")
        return
    table = Table(box=box.SIMPLE_HEAD)
    for col in ("candidate", "job", "status", "fine-tuned model"):
        table.add_column(col, overflow="fold")
    for job in found:
        status = str(job.state.get("status") or "not created")
        model = job.state.get("fine_tuned_model")
        llm = _llm_of(project, job)
        if job.job_id and not offline and llm is not None:
            try:
                live = OpenAIJobs.for_llm(llm).retrieve(job.job_id)
                status, model = live.status, live.fine_tuned_model
            except AdaptlabError as exc:
                status = f"{status} (stored; the provider did not answer: {exc.issue.message})"
        name = job.candidate.name if job.candidate else "(no current candidate)"
        table.add_row(Text(name), Text(job.job_id or "–"), Text(status), Text(str(model or "–")))
    console.print(table)


@jobs.command("cancel")
@project_option
@click.argument("target")
def cancel(project_dir: str, target: str) -> None:
    """Cancel the job of candidate TARGET (or the job with id TARGET) at the provider.

    A cancelled job trains nothing more and makes no model; a run following it stops
    with a message, and 'adaptlab run --force -c NAME' starts a new one.
    """
    from adaptlab.core.errors import AdaptlabError
    from adaptlab.engine.project import Project
    from adaptlab.train.provider import OpenAIJobs, save_state

    project = Project.load(project_dir)
    found = stored_jobs(project)
    match = [j for j in found if j.job_id == target] or [
        j for j in found if j.candidate is not None and j.candidate.name == target
    ]
    if not match or match[0].job_id is None:
        names = sorted({j.candidate.name for j in found if j.candidate and j.job_id})
        raise AdaptlabError(
            f"no fine-tuning job recorded for '{target}' in this project",
            file=project.root / "adaptlab.yaml",
            fix=(
                f"name a candidate with a job ({', '.join(names)}) or a job id from "
                "'adaptlab jobs list'"
                if names
                else "no job was created here yet; 'adaptlab jobs list' shows what is stored"
            ),
            code="no-job",
        )
    job = match[0]
    llm = _llm_of(project, job)
    if llm is None:
        raise AdaptlabError(
            f"no openai-finetune candidate names the model of job {job.job_id}",
            file=project.root / "adaptlab.yaml",
            fix="cancel it in the provider's dashboard",
            code="no-job",
        )
    assert job.job_id is not None
    ended = OpenAIJobs.for_llm(llm).cancel(job.job_id)
    save_state(job.path, {**job.state, "status": ended.status})
    if ended.status == "cancelled":
        console.print(f"cancelled fine-tuning job {ended.id}", markup=False)
    else:
        console.print(
            f"fine-tuning job {ended.id} had already ended ({ended.status}); nothing to cancel",
            markup=False,
        )
