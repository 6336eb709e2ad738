"""``adaptlab curve``: learning curves, and where one route overtakes another."""

from __future__ import annotations

from typing import Any

import click

from adaptlab.cli.common import console, project_option


def _sizes(value: str) -> list[int]:
    try:
        sizes = sorted({int(x) for x in value.split(",") if x.strip()})
    except ValueError:
        raise click.BadParameter("give sizes as numbers separated by commas: 25,50,100") from None
    if not sizes or sizes[0] < 2:
        raise click.BadParameter("every size must be at least 2")
    return sizes


def curve_summary(points: list[Any], flat: dict[str, float]) -> tuple[Any, list[str]]:
    """A rich table of the points and sentences on where curves cross."""
    from collections import defaultdict

    from rich.table import Table
    from rich.text import Text

    from adaptlab.decide.curves import fit_power_law, overtakes

    by_cand: dict[str, list[Any]] = defaultdict(list)
    for p in points:
        by_cand[p.candidate].append(p)
    sizes = sorted({p.size for p in points})
    table = Table(
        title=Text("learning curves: test quality (%) by training examples, mean [min–max]")
    )
    table.add_column("candidate", no_wrap=True)
    for n in sizes:
        table.add_column(f"{n:,}", justify="right")
    table.add_column("levels off at", justify="right")
    for name, pts in by_cand.items():
        cells = []
        for n in sizes:
            vals = [p.quality for p in pts if p.size == n]
            if not vals:
                cells.append("–")
            elif len(vals) == 1:
                cells.append(f"{100 * vals[0]:.1f}")
            else:
                mean = sum(vals) / len(vals)
                cells.append(f"{100 * mean:.1f} [{100 * min(vals):.0f}–{100 * max(vals):.0f}]")
        fit = fit_power_law([p.size for p in pts], [p.quality for p in pts])
        table.add_row(
            Text(name), *(Text(c) for c in cells), "–" if fit is None else f"{100 * fit.a:.0f}%"
        )
    lines = [x.text() for x in overtakes(points, flat)]
    return table, lines


@click.command()
@project_option
@click.option("-c", "--candidate", "candidates", multiple=True, help="Only this candidate.")
@click.option(
    "--sizes",
    default="25,50,100,200,500,1000",
    show_default=True,
    help="Training-subset sizes; the full train split is always the last point.",
)
@click.option("--draws", default=3, show_default=True, type=click.IntRange(1, 20))
def curve(project_dir: str, candidates: tuple[str, ...], sizes: str, draws: int) -> None:
    """Train candidates on growing subsets and show where one overtakes another.

    \b
    Points are stored like any result: a second call trains nothing already trained.
    adaptlab curve -p my-task
    adaptlab curve -p my-task -c finetune -c few-shot-8 --sizes 25,100,400 --draws 5
    """
    from adaptlab.cli.progress import RichProgress
    from adaptlab.core.errors import AdaptlabError
    from adaptlab.engine import summarize_project
    from adaptlab.engine.curves import run_curves
    from adaptlab.engine.project import Project
    from adaptlab.evaluation.learning import learns_from_train

    project = Project.load(project_dir)
    with RichProgress(console) as progress:
        points = run_curves(
            project,
            candidates=list(candidates) or None,
            sizes=_sizes(sizes),
            draws=draws,
            progress=progress,
        )
    # Rivals drawn flat are those whose quality does not depend on the train split's size
    # (zero-shot prompts); a fine-tune left out of the curves is not flat, so not drawn.
    static = {c.name for c in project.config.candidates if not learns_from_train(c)}
    flat: dict[str, float] = {}
    try:
        summary = summarize_project(project)
        flat = {c.name: c.quality for c in summary.candidates if c.name in static}
    except AdaptlabError:  # no run yet: only the curves themselves
        pass
    table, lines = curve_summary(points, flat)
    console.print(table)
    for line in lines:
        console.print(line, markup=False)
