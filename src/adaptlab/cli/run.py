"""``adaptlab run``: every candidate on the holdout, with progress bars."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from adaptlab.cli.common import console, print_summary, project_option

if TYPE_CHECKING:
    from adaptlab.evaluation.summary import RunSummary
    from adaptlab.project import Project


def run_and_summarize(
    project_dir: str | Path, only: tuple[str, ...] = (), force: bool = False
) -> tuple[Project, RunSummary]:
    """Run the project with rich progress and print the results."""
    from adaptlab import summarize_project
    from adaptlab.cli.progress import RichProgress
    from adaptlab.project import Project
    from adaptlab.runner import RunEvents, run_project

    project = Project.load(project_dir)
    with RichProgress(console) as progress:

        def start(name: str) -> None:
            progress.prefix = f"[cyan]{name}[/]: "
            progress.progress.console.print(f"[bold]▶ {name}[/]")

        events = RunEvents(
            on_skip=lambda n: progress.progress.console.print(
                f"[dim]✓ {n}: unchanged since the last run, reusing stored predictions[/]"
            ),
            on_start=start,
            on_done=lambda n, s: progress.progress.console.print(f"[green]✓ {n}[/] ({s:.1f} s)"),
        )
        outcome = run_project(
            project, only=only or None, force=force, progress=progress, events=events
        )
    summary = summarize_project(project, outcome.run_id)
    print_summary(summary)
    console.print(f"run {outcome.run_id} stored in {project.store_path}")
    return project, summary


@click.command()
@project_option
@click.option("-c", "--candidate", "only", multiple=True, help="Run only this candidate (repeat).")
@click.option("--force", is_flag=True, help="Recompute candidates even if their result is stored.")
def run(project_dir: str, only: tuple[str, ...], force: bool) -> None:
    """Run every candidate on the same holdout and store each prediction.

    Candidates whose options, model, labels and data are unchanged since a stored
    result are not recomputed, so an interrupted run resumes where it stopped.
    """
    run_and_summarize(project_dir, only, force)
