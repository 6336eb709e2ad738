"""``adaptlab export``: what a project made, in a form other tools read.

``export --candidate NAME DIR`` (``export candidate``) writes a candidate as a
self-contained model folder (:mod:`adaptlab.engine.artifact`); ``export results``
writes a run's figures as JSON or CSV (see :mod:`adaptlab.report.results`).
"""

from __future__ import annotations

from pathlib import Path

import click

from adaptlab.cli.common import console, project_option


class _ExportGroup(click.Group):
    """``adaptlab export --candidate NAME DIR`` is ``adaptlab export candidate …``."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["candidate", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ExportGroup)
def export() -> None:
    """Export a candidate as a model folder, or a run's results (JSON, CSV).

    \b
    adaptlab export -p my-task --candidate best ./model
    adaptlab export results -p my-task -o results.csv
    """


@export.command("candidate")
@project_option
@click.option(
    "-c", "--candidate", "name", required=True, help="Candidate to export; 'best': the winner."
)
@click.option("--run-id", default=None, help="From this run (default: the latest finished).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["adaptlab", "vllm"]),
    default="adaptlab",
    show_default=True,
    help="vllm: also write the 'vllm serve --enable-lora' command (LoRA candidates).",
)
@click.argument("folder", type=click.Path(path_type=Path))
def candidate(project_dir: str, name: str, run_id: str | None, fmt: str, folder: Path) -> None:
    """A candidate as a self-contained folder that 'adaptlab predict --model' and
    'adaptlab serve --model' load without the project: its state (arrays, skops,
    safetensors; no pickle), prompt template, shots, label map, model references,
    adapter, and a model card with its measured figures.

    \b
    adaptlab export -p my-task --candidate best ./model
    adaptlab predict --model ./model inputs.txt
    """
    from adaptlab.cli.common import require_runs
    from adaptlab.cli.progress import RichProgress
    from adaptlab.core.format import plural
    from adaptlab.engine.artifact import export_candidate
    from adaptlab.engine.project import Project

    project = Project.load(project_dir)
    require_runs(project)
    if name == "best":
        from adaptlab.cli.rejudge import best_note

        note = best_note(project, run_id)
        if note is not None:
            console.print(note, markup=False, soft_wrap=True)
    with RichProgress(console) as progress:
        outcome = export_candidate(
            project, name, folder, run_id=run_id, progress=progress, vllm=fmt == "vllm"
        )
    size = outcome.bytes / 1e6
    files = plural(outcome.files, "file")
    console.print(
        f"exported {outcome.candidate}: {outcome.folder} ({files}, {size:,.1f} MB)",
        markup=False,
        soft_wrap=True,
    )
    if outcome.reproduced is not None:
        same, n = outcome.reproduced
        console.print(
            f"it gives the run's answer for {same} of {plural(n, 'test input')}", markup=False
        )
    if fmt == "vllm":
        import json

        spec = json.loads((folder / "vllm.json").read_text(encoding="utf-8"))
        console.print("vLLM: " + " ".join(spec["command"]), markup=False, soft_wrap=True)
        console.print(
            f"clients ask for model '{spec['model_name']}'; see {folder / 'VLLM.md'}",
            markup=False,
            soft_wrap=True,
        )


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
    from adaptlab.cli.common import require_runs
    from adaptlab.engine import summarize_project
    from adaptlab.engine.project import Project
    from adaptlab.report.results import results_csv, results_json

    project = Project.load(project_dir)
    require_runs(project)
    summary = summarize_project(project, run_id)
    if fmt is None:
        fmt = "csv" if output is not None and output.lower().endswith(".csv") else "json"
    text = results_csv(summary) if fmt == "csv" else results_json(summary)
    if output is None:
        click.echo(text, nl=False)
        return
    from adaptlab.core.files import printable_name, write_text_atomically

    path = Path(output)
    # newline="": the CSV text already ends its lines in CRLF, as RFC 4180 has them.
    write_text_atomically(path, text, newline="", what="the results file")
    console.print(f"results: {printable_name(str(path))}", markup=False, soft_wrap=True)
