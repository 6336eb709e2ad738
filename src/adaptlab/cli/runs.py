"""``adaptlab runs``: the project's runs, newest first; ``runs compare A B``: two of them.

``compare`` is a subcommand rather than a ``--compare A B`` option: its run ids are
arguments with a help text of their own, the listing's options (``--limit``) mean
nothing to it, and it sits beside ``data check`` and ``jobs cancel`` as one more verb.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import click
from rich.text import Text

from adaptlab.cli.common import console, fitted_table, fmt_p, project_option

if TYPE_CHECKING:
    from adaptlab.engine.summary import ProjectSummary
    from adaptlab.evaluation.compare_runs import CandidateChange, RunComparison
    from adaptlab.evaluation.summary import CandidateSummary, RunSummary


def _when(created_at: str) -> str:
    """A stored UTC timestamp in local time to the minute, as a person reads it."""
    from datetime import datetime

    try:
        return datetime.fromisoformat(created_at).astimezone().strftime("%Y-%m-%d %H:%M")
    except ValueError:
        return created_at


@click.group(invoke_without_command=True)
@project_option
@click.option(
    "-n",
    "--limit",
    default=20,
    show_default=True,
    type=click.IntRange(min=1),
    help="Show this many of the newest runs (each finished one is summarised to name its winner).",
)
@click.pass_context
def runs(ctx: click.Context, project_dir: str, limit: int) -> None:
    """The project's runs, newest first: when, status, candidates, winner and its test figure.

    \b
    adaptlab runs -p my-task
    adaptlab runs compare -p my-task 3fa1 9bc2     two runs, candidate by candidate
    """
    if ctx.invoked_subcommand is not None:
        return
    from adaptlab.engine.project import Project
    from adaptlab.store import RunStore

    project = Project.load(project_dir)
    rows: list[Any] = []
    if project.has_store:  # never create a store just to read it
        with RunStore(project.store) as store:
            rows = store.runs()
            counts = {r["id"]: len(store.run_candidates(r["id"])) for r in rows[:limit]}
    if not rows:
        # An empty list is an answer, not an error: exit 0, as ls does for an empty folder.
        console.print(
            f"no runs yet in {project.root}: 'adaptlab run' makes the first", markup=False
        )
        return
    shown = rows[:limit]
    table, notes = _runs_table(project, shown, counts)
    console.print(table)
    for note in notes:
        console.print(Text(note))
    if len(rows) > limit:
        from adaptlab.core.format import plural

        console.print(
            f"{plural(len(rows) - limit, 'older run')} not shown (--limit {len(rows)} shows all)"
        )


def _runs_table(project: Any, rows: list[Any], counts: dict[str, int]) -> tuple[Any, list[str]]:
    """The table of ``rows`` (runs, newest first), and a line per run that could not be
    summarised or whose winner was judged under a profile other than its own.

    Each finished run is summarised to name its winner, under the profile in
    ``adaptlab.yaml`` now; where that differs from the profile stored with the run, the
    winner carries a "*" and a line names the changes, and the winner under the run's
    own profile when it is another (:mod:`adaptlab.cli.rejudge`).
    """
    from rich import box
    from rich.table import Table

    from adaptlab.cli.rejudge import rejudged, run_profile
    from adaptlab.core.errors import AdaptlabError
    from adaptlab.engine import summarize_project

    winners: dict[str, tuple[str, str]] = {}
    metrics: set[str] = set()
    notes: list[str] = []
    judged: list[str] = []
    for r in rows:
        if r["status"] != "finished":
            continue  # a failed or interrupted run has no verdict to show
        try:
            # The winner never depends on the learning curves: leave their fits out.
            summary = summarize_project(project, r["id"], learning=False)
        except (AdaptlabError, ValueError) as exc:
            # One old run that no longer summarises (a config this adaptlab refuses, a
            # result without answers) must not hide the others: say so and go on.
            winners[r["id"]] = ("?", "–")
            why = exc.issue.message if isinstance(exc, AdaptlabError) else str(exc).splitlines()[0]
            notes.append(f"?: run {r['id']} could not be summarised: {why}")
            continue
        w = summary.candidate(summary.verdict.winner)
        metrics.add(summary.metric_info.name)
        name = w.name
        again = rejudged(summary, run_profile(r))
        if again is not None:
            name += f" *\n(was {again.then})" if again.flipped else " *"
            judged.append(f"run {r['id']}: {again.text()}")
        winners[r["id"]] = (name, summary.metric_info.fmt(w.quality))
    if judged:
        notes += [
            "*: the profile in adaptlab.yaml differs from the one stored with the run, and "
            "the winner shown is judged under today's",
            *judged,
        ]
    one_metric = next(iter(metrics)) if len(metrics) == 1 else None
    table = Table(
        title=Text(f"{project.config.name}: runs, newest first"),
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("run", no_wrap=True)
    table.add_column("when", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("cands", justify="right", no_wrap=True)
    table.add_column("winner", overflow="fold")
    table.add_column(
        f"winner's\ntest {one_metric}" if one_metric else "winner's\ntest", justify="right"
    )
    for r in rows:
        winner, figure = winners.get(r["id"], ("–", "–"))
        table.add_row(
            Text(r["id"]),
            _when(r["created_at"]),
            Text(r["status"]),
            str(counts.get(r["id"], 0)),
            Text(winner),
            Text(figure, overflow="fold"),
        )
    return table, notes


@runs.command("compare")
@click.argument("run_a")
@click.argument("run_b")
@click.option(
    "-p",
    "--project",
    "project_dir",
    default=None,
    type=click.Path(file_okay=False),
    help="Project folder holding adaptlab.yaml (default: the one given to 'runs', else .).",
)
@click.pass_context
def compare_command(ctx: click.Context, run_a: str, run_b: str, project_dir: str | None) -> None:
    """Two runs candidate by candidate: the metric on test in each, the change B - A, and a
    paired test of B against A where both runs answered the same test examples.

    RUN_A and RUN_B are run ids, or enough of their start to name one run ('adaptlab
    runs' lists them). Put the older run first: the change then reads as progress.

    \b
    adaptlab runs compare -p my-task 3fa1 9bc2
    """
    from adaptlab.cli.common import require_runs
    from adaptlab.engine import summarize_project
    from adaptlab.engine.project import Project
    from adaptlab.evaluation.compare_runs import compare_runs
    from adaptlab.store import RunStore
    from adaptlab.store.runs import find_run

    parent = ctx.parent.params.get("project_dir") if ctx.parent is not None else None
    project = Project.load(project_dir or parent or ".")
    require_runs(project)
    with RunStore(project.store) as store:
        # Both ids first: a typo in the second is reported before the first is summarised.
        ids = [find_run(store, run_id)["id"] for run_id in (run_a, run_b)]
    a, b = (summarize_project(project, run_id) for run_id in ids)
    with RunStore(project.store) as store:
        comparison = compare_runs(a, b, store)
    print_comparison(comparison, (a, b))


# Short tags of the test column, and the sentence each one stands for.
_TAGS = {
    "same": (
        "same answers",
        "same answers: both runs link one stored result (an unchanged "
        "candidate is reused, and 'run --force' replaces the stored answers in place)",
    ),
    "examples": (
        "not paired",
        "not paired: the runs answered different test examples (the "
        "data, seed or split changed), so only the figures compare",
    ),
    "metric": ("–", "the runs rank by different metrics, so no change or test is shown"),
}


def _value(summary: RunSummary, c: CandidateSummary | None) -> str:
    if c is None:
        return "–"
    info = summary.metric_info
    return f"{100 * c.quality:.1f}" if info.percent else f"{c.quality:.3f}"


def _change_cells(cmp: RunComparison, ch: CandidateChange, n_tests: int) -> tuple[list[str], str]:
    """(diff, p, test) cells of one candidate, and the key of its tag in _TAGS or ''."""
    from adaptlab.core.format import sig
    from adaptlab.evaluation.summary import p_bound

    if ch.a is None or ch.b is None:
        return ["–", "–", "only in " + ("B" if ch.a is None else "A")], ""
    if not cmp.same_metric:
        return ["–", "–", _TAGS["metric"][0]], "metric"
    d = ch.diff or 0.0
    diff = f"{100 * d:+.1f}" if cmp.b.metric_info.percent else f"{d:+.3f}"
    if ch.test is None:
        key = "same" if ch.same_result else "examples"
        return [diff, "–", _TAGS[key][0]], key
    resamples = int(cmp.b.config.get("evaluation", {}).get("bootstrap_resamples", 1000))
    bound = p_bound(ch.test, resamples)
    p = ch.p_holm if ch.p_holm is not None else ch.test.p_value
    shown = f"<{sig(min(1.0, bound * n_tests))}" if bound is not None else fmt_p(p)
    name = "McNemar" if ch.test.name.startswith("mcnemar") else "bootstrap"
    return [diff, shown, name], ""


def comparison_table(cmp: RunComparison, width: int | None = None) -> Any:
    """The rich table of :func:`print_comparison`: a row per candidate of either run."""
    a, b = cmp.a, cmp.b

    def header(label: str, s: RunSummary) -> str:
        return (
            f"{label} {s.run_id[:8]}\n{s.metric_info.name}{' %' if s.metric_info.percent else ''}"
        )

    unit = "points" if b.metric_info.percent else ""
    columns = [
        (header("A", a), False),
        (header("B", b), False),
        (f"B - A\n{unit}".rstrip(), False),
        ("p\nHolm", False),
        ("test", True),
    ]
    n_tests = sum(ch.test is not None for ch in cmp.changes)
    rows = []
    for ch in cmp.changes:
        cells, _ = _change_cells(cmp, ch, n_tests)
        rows.append((ch.name, [_value(a, ch.a), _value(b, ch.b), *cells]))
    title = (
        f"{b.project}: test {b.metric_info.name}, run A {a.run_id} ({_when(a.created_at)}) "
        f"against run B {b.run_id} ({_when(b.created_at)}); p: paired test of B against A, "
        "Holm-adjusted over the candidates tested"
    )
    return fitted_table(title, "candidate", columns, rows, width)


def print_comparison(cmp: RunComparison, decided: tuple[ProjectSummary, ProjectSummary]) -> None:
    """The table, then which candidates are in one run only, the two winners (from
    ``decided``: runs A and B with their verdicts), and what each tag in the test column
    means."""
    from rich.padding import Padding

    console.print(comparison_table(cmp))
    a, b = cmp.a, cmp.b
    lines = []
    for label, s, names in (("A", a, cmp.only_a), ("B", b, cmp.only_b)):
        if names:
            lines.append(f"only in run {label} ({s.run_id}): {', '.join(names)}")
    wa, wb = (s.verdict.winner for s in decided)
    lines.append(f"winner: {wa} in both runs" if wa == wb else f"winner: {wa} in A, {wb} in B")
    n_tests = sum(ch.test is not None for ch in cmp.changes)
    keys = {_change_cells(cmp, ch, n_tests)[1] for ch in cmp.changes} - {""}
    lines += [_TAGS[k][1] for k in ("same", "examples", "metric") if k in keys]
    for line in lines:
        console.print(Padding(Text(line), (0, 0, 0, 2)))
