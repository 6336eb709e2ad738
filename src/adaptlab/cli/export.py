"""``adaptlab export``: what a project made, in a form other tools read.

``export results`` writes a run's figures as JSON or CSV (see
:mod:`adaptlab.evaluation.export` for the fields). A group, so that exporting a
trained candidate can join it as a subcommand of its own.
"""

from __future__ import annotations

from pathlib import Path

import click

from adaptlab.cli.common import console, project_option


@click.group()
def export() -> None:
    """Export a run's results for other tools (JSON, CSV)."""


@export.command("results")
@project_option
@click.option("--run-id", default=None, help="Export this run (default: the latest finished).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["json", "csv"]),
    default=None,
    help="json: one document; csv: one row per candidate. Default: csv for an -o "
    "ending in .csv, else json.",
)
@click.option("-o", "--output", default=None, help="File to write (default: standard output).")
def results(project_dir: str, run_id: str | None, fmt: str | None, output: str | None) -> None:
    """A run's figures, unrounded, for machines: per candidate the metric on test and
    on the selection split with intervals, task metrics, p vs the winner, latency, costs.

    \b
    adaptlab export results -p my-task > results.json
    adaptlab export results -p my-task -o results.csv
    adaptlab export results -p my-task --run-id 3fa1 --format csv
    """
    from adaptlab import summarize_project
    from adaptlab.cli.common import require_runs
    from adaptlab.evaluation.export import results_csv, results_json
    from adaptlab.project import Project

    project = Project.load(project_dir)
    require_runs(project)
    summary = summarize_project(project, run_id)
    if fmt is None:
        fmt = "csv" if output is not None and output.lower().endswith(".csv") else "json"
    text = results_csv(summary) if fmt == "csv" else results_json(summary)
    if output is None:
        click.echo(text, nl=False)
        return
    from adaptlab.files import write_text_atomically
    from adaptlab.store.files import os_error

    path = Path(output)
    try:
        # newline="": the CSV text already ends its lines in CRLF, as RFC 4180 has them.
        write_text_atomically(path, text, newline="")
    except OSError as exc:
        raise os_error(exc, "the results file") from exc
    console.print(f"results: {path}", markup=False, soft_wrap=True)
