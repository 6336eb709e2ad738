"""``adaptlab init`` and ``adaptlab demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.text import Text

from adaptlab.cli.common import console


@click.command()
@click.argument("directory", type=click.Path(file_okay=False))
@click.option("--example", default=None, help="Start from a bundled example: support-tickets.")
@click.option(
    "--data",
    "data_file",
    default=None,
    help="Start from your own labelled JSONL/CSV file.",
)
@click.option("--input-field", default="text", show_default=True, help="data.input_field")
@click.option("--label-field", default="label", show_default=True, help="data.label_field")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "jsonl", "csv"]),
    default="auto",
    show_default=True,
    help="data.format: 'auto' goes by the file extension.",
)
@click.option(
    "--encoding",
    default="utf-8",
    show_default=True,
    help="data.encoding, e.g. cp1252 for a CSV from Excel on Windows.",
)
@click.option(
    "--delimiter",
    default="auto",
    show_default=True,
    help="data.delimiter: CSV column separator, e.g. ';' (German Excel) or tab.",
)
def init(
    directory: str,
    example: str | None,
    data_file: str | None,
    input_field: str,
    label_field: str,
    fmt: str,
    encoding: str,
    delimiter: str,
) -> None:
    """Create a project folder with adaptlab.yaml and its data."""
    from adaptlab.engine.scaffold import init_project

    path = init_project(
        directory,
        example=example,
        data=data_file,
        input_field=input_field,
        label_field=label_field,
        fmt=fmt,
        encoding=encoding,
        delimiter=delimiter,
    )
    console.print(
        f"[green]created[/] {escape(str(path))}\n  next: adaptlab data check -p {escape(directory)}"
    )


@click.command()
@click.argument("directory", default="adaptlab-demo", type=click.Path(file_okay=False))
@click.option(
    "--full",
    is_flag=True,
    help="Also fine-tune the generative model (LoRA on SmolLM2; minutes on a CPU).",
)
def demo(directory: str, full: bool) -> None:
    """Init the support-tickets example, run its candidates, write the report. Offline.

    Without --full, candidates that fine-tune a generative model are left out.
    """
    from adaptlab.cli.run import run_and_summarize
    from adaptlab.config import CONFIG_FILE
    from adaptlab.engine.scaffold import init_project
    from adaptlab.report import write_report

    if not (Path(directory) / CONFIG_FILE).exists():
        init_project(directory, example="support-tickets")
        console.print(f"[green]created[/] {escape(directory)} from the support-tickets example")
    else:
        console.print(f"reusing {directory} (stored results are not recomputed)", markup=False)
    leave_out = None if full else _llm_finetunes(directory)
    # The demo's candidates are chosen and its time is stated: it asks nothing, even where
    # a slow machine estimates one past evaluation.max_minutes (the estimates are shown).
    project, summary = run_and_summarize(directory, leave_out=leave_out, long_runs="yes")
    _print_generated_answers(project, summary)
    path = write_report(summary, project.report_path)
    console.print(f"[bold]report:[/] {escape(str(path))} (open it in a browser)")


def _print_generated_answers(project: Any, summary: Any, width: int = 110) -> None:
    """One stored answer per generative candidate (the first test example), as the model
    wrote it and as it was read, so the demo shows what a generative model said."""
    from adaptlab.store import RunStore

    llms = [c.name for c in summary.candidates if c.llm is not None]
    if not llms:
        return
    with RunStore(project.store) as store:
        keys = {r["name"]: r["result_key"] for r in store.run_candidates(summary.run_id)}
        for name in llms:
            rows = store.predictions(keys[name]) if name in keys else []
            if not rows:
                continue
            row = rows[0]
            raw = " ".join((row.raw or "").split())
            raw = raw if len(raw) <= width else raw[: width - 1] + "…"
            console.print(
                Text.assemble(
                    (f"{name}", "bold"),
                    f" on test example {row.example_id} (gold {row.gold}): ",
                    (f"{raw!r}", "italic"),
                    f" → read as {row.predicted or 'nothing (unparsed)'}",
                )
            )


#: Strategies that train a generative model: minutes to hours, so `demo` asks for --full.
LLM_TRAINING = ("llm-finetune", "openai-finetune")


def _llm_finetunes(directory: str) -> dict[str, str]:
    from adaptlab.engine.project import Project

    config = Project.load(directory).config
    return {
        c.name: "fine-tunes a generative model; run it with 'adaptlab demo --full' or "
        f"'adaptlab run -p {directory} -c {c.name}'"
        for c in config.candidates
        if c.strategy in LLM_TRAINING
    }
