"""``adaptlab report``: one self-contained HTML file from the run store."""

from __future__ import annotations

from pathlib import Path

import click

from adaptlab.cli.common import console, print_summary, project_option


def build_report(
    project_dir: str | Path,
    run_id: str | None = None,
    output: str | None = None,
) -> Path:
    from adaptlab.engine import summarize_project
    from adaptlab.engine.project import Project
    from adaptlab.evaluation.served import live_traffic
    from adaptlab.report import write_report

    project = Project.load(project_dir)
    summary = summarize_project(project, run_id)
    ev = project.config.evaluation
    live = live_traffic(project.store, ev.confidence, ev.bootstrap_resamples)
    path = write_report(summary, Path(output) if output else project.report_path, live)
    print_summary(summary)
    console.print(f"report: {path}", markup=False)
    return path


@click.command()
@project_option
@click.option("--run-id", default=None, help="Report on this run (default: the latest).")
@click.option("-o", "--output", default=None, help="HTML file to write.")
@click.option("--open", "open_", is_flag=True, help="Open the report in a browser.")
def report(project_dir: str, run_id: str | None, output: str | None, open_: bool) -> None:
    """Write the HTML report (table, plots, recommendation) from stored predictions."""
    path = build_report(project_dir, run_id, output)
    if open_:
        open_in_browser(path)


def open_in_browser(path: Path) -> bool:
    """Open ``path`` in the user's browser; say so when there is none (a server, SSH).

    :mod:`webbrowser` finds no browser without a display unless a console one (lynx,
    w3m) or ``$BROWSER`` is set; then it returns False, and the user gets the path.
    """
    import webbrowser

    uri = path.resolve().as_uri()
    try:
        opened = webbrowser.open(uri)
    except webbrowser.Error:
        opened = False
    if not opened:
        # soft_wrap: a URL broken over two lines cannot be copied.
        console.print(
            "no browser is available here to open the report; open it on a machine with "
            f"one (the file is self-contained), or set $BROWSER:\n{uri}",
            markup=False,
            soft_wrap=True,
        )
    return opened
