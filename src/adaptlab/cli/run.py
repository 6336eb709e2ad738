"""``adaptlab run``: every candidate on the holdout, with progress bars."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import click
from rich.padding import Padding
from rich.text import Text

from adaptlab.cli.common import console, print_summary, project_option, set_interrupt_hint

if TYPE_CHECKING:
    from adaptlab.cli.progress import RichProgress
    from adaptlab.config import CandidateConfig
    from adaptlab.data import Split
    from adaptlab.engine.project import Project
    from adaptlab.engine.runner import Models
    from adaptlab.engine.summary import ProjectSummary


def run_and_summarize(
    project_dir: str | Path,
    only: tuple[str, ...] = (),
    force: bool = False,
    leave_out: dict[str, str] | None = None,
    batch: bool = False,
    long_runs: Literal["ask", "yes", "no"] = "ask",
) -> tuple[Project, ProjectSummary]:
    """Run the project with rich progress and print the results.

    ``leave_out``: candidate names not to run this time, with the reason shown;
    ``batch``: evaluate through the providers' batch APIs (``evaluation.batch: true``);
    ``long_runs``: what happens to a candidate estimated past ``evaluation.max_minutes``
    ("ask" in a terminal, else skip; "yes" runs it; "no" skips it).
    """
    from adaptlab.cli.progress import RichProgress
    from adaptlab.core.format import number
    from adaptlab.engine import summarize_project
    from adaptlab.engine.project import Project
    from adaptlab.engine.runner import RunEvents, run_project

    project = Project.load(project_dir)
    if batch:
        ev = project.config.evaluation.model_copy(update={"batch": True})
        project.config = project.config.model_copy(update={"evaluation": ev})
    set_interrupt_hint(
        "interrupted: finished candidates are stored; "
        f"'adaptlab run -p {project_dir}' resumes from there"
    )
    with RichProgress(console) as progress:

        def say(line: Text) -> None:
            # One event, one line: a log keeps it whole, a terminal wraps it as it likes.
            progress.progress.console.print(line, soft_wrap=True)

        def start(name: str) -> None:
            progress.set_candidate(name)
            say(Text(f"▶ {name}", style="bold"))

        events = RunEvents(
            on_skip=lambda n: say(
                Text(f"✓ {n}: unchanged since the last run, reusing stored predictions", "dim")
            ),
            on_unavailable=lambda n, why: say(Text(f"– {n}: skipped, {why}", "yellow")),
            on_start=start,
            on_cv=lambda n, k, s: progress.set_candidate(n),
            on_done=lambda n, s: say(Text.assemble((f"✓ {n}", "green"), f" ({number(s)} s)")),
            on_wait=lambda holder: say(
                Text(
                    f"waiting: another adaptlab run ({holder}) is using this project; this run "
                    "starts when it ends and reuses what it stored (Ctrl-C to stop waiting)",
                    "yellow",
                )
            ),
        )
        events.before_compute = functools.partial(
            estimate_and_ask, project, progress, say, str(project_dir), long_runs
        )
        outcome = run_project(
            project,
            only=only or None,
            force=force,
            progress=progress,
            events=events,
            leave_out=leave_out,
        )
    if not outcome.computed and not outcome.reused:
        from adaptlab.core.errors import AdaptlabError

        raise AdaptlabError(
            "no candidate ran this time: each one was skipped, for the reason shown above",
            fix=f"run one with 'adaptlab run -p {project_dir} -c NAME --yes', or change what "
            "the reason names",
            code="nothing-ran",
        )
    summary = summarize_project(project, outcome.run_id)
    print_summary(summary)
    from adaptlab.store.db import display

    console.print(f"run {outcome.run_id} stored in {display(project.store)}", markup=False)
    return project, summary


def estimate_and_ask(
    project: Project,
    progress: RichProgress,
    say: Callable[[Text], None],
    project_dir: str,
    long_runs: Literal["ask", "yes", "no"],
    candidates: Sequence[CandidateConfig],
    models: Models,
    split: Split,
) -> dict[str, str]:
    """Say each candidate's estimated time before the run starts; ask about (or skip) the
    ones past ``evaluation.max_minutes``. Returns the candidates skipped, with why."""
    from adaptlab.core.format import duration
    from adaptlab.engine.estimate import estimate_times

    if not candidates:
        return {}
    say(Text("estimating each candidate's time on this machine (a few real steps)…", "dim"))
    estimates = estimate_times(project, candidates, models, split, progress, count_loads=False)
    for est in estimates:
        say(Text(f"  time: {est.line()}", "dim"))
    known = [e.seconds for e in estimates if e.seconds is not None]
    if len(known) > 1:
        say(Text(f"  time: about {duration(sum(known))} in all", "dim"))
    limit = project.config.evaluation.max_minutes
    if limit is None or long_runs == "yes":
        return {}
    skipped = {}
    interactive = long_runs == "ask" and can_ask()
    for est in estimates:
        if est.seconds is None or est.seconds <= 60 * limit:
            continue
        over = (
            f"estimated at {est.said()} on this machine, over "
            f"evaluation.max_minutes ({limit:g} min)"
        )
        if interactive:
            progress.progress.stop()
            try:
                go = click.confirm(f"{est.candidate} is {over}. Run it now?", default=True)
            finally:
                progress.progress.start()
            if go:
                continue
        how = f"adaptlab run -p {project_dir} -c {est.candidate} --yes"
        why = "" if interactive or long_runs == "no" else " (no terminal to ask in)"
        skipped[est.candidate] = (
            f"{over}{why}; run it with '{how}', or raise evaluation.max_minutes in adaptlab.yaml"
        )
    return skipped


def can_ask() -> bool:
    """Whether a person can answer a question: stdin and the console are terminals."""
    return sys.stdin.isatty() and console.is_terminal


@click.command()
@project_option
@click.option("-c", "--candidate", "only", multiple=True, help="Run only this candidate (repeat).")
@click.option("--force", is_flag=True, help="Recompute candidates even if their result is stored.")
@click.option(
    "--dry-run",
    is_flag=True,
    help="Print the requests, tokens and cost each candidate would need; call nothing.",
)
@click.option(
    "--batch",
    is_flag=True,
    help="Send the requests of OpenAI and Anthropic candidates through the providers' batch "
    "APIs: half the price, answered within 24 h; a rerun re-attaches to a batch in flight "
    "(evaluation.batch: true in adaptlab.yaml does the same).",
)
@click.option(
    "--yes",
    "-y",
    is_flag=True,
    help="Run candidates estimated past evaluation.max_minutes without asking.",
)
@click.option(
    "--no-input",
    is_flag=True,
    help="Ask nothing: skip candidates estimated past evaluation.max_minutes (saying how to "
    "run them).",
)
def run(
    project_dir: str,
    only: tuple[str, ...],
    force: bool,
    dry_run: bool,
    batch: bool,
    yes: bool,
    no_input: bool,
) -> None:
    """Run every candidate on the same holdout and store each prediction.

    Candidates whose options, model, labels and data are unchanged since a stored
    result are not recomputed, so an interrupted run resumes where it stopped;
    answers of generative models are cached, so no request is ever paid twice.
    """
    if dry_run:
        print_plan(project_dir)
        return
    if yes and no_input:
        raise click.UsageError("--yes runs long candidates and --no-input skips them; give one")
    long_runs: Literal["ask", "yes", "no"] = "yes" if yes else "no" if no_input else "ask"
    run_and_summarize(project_dir, only, force, batch=batch, long_runs=long_runs)


def print_plan(project_dir: str | Path) -> None:
    """``run --dry-run``: each remote candidate's requests, tokens and cost, what training
    would cost, and the projected API cost of the run; nothing is sent."""
    from rich import box
    from rich.table import Table

    from adaptlab.core.format import and_list, dollars, usd
    from adaptlab.engine.planning import plan_project
    from adaptlab.engine.project import Project

    project = Project.load(project_dir)
    plans = plan_project(project)
    remote = [p for p in plans if p.model != "local encoder"]
    local = [p.name for p in plans if p.model == "local encoder"]
    table = Table(title="dry run: nothing was sent", title_justify="left", box=box.SIMPLE_HEAD)
    table.add_column("candidate", overflow="fold")
    table.add_column("model", overflow="fold")
    for col in ("req.", "cached", "in tok", "out tok", "USD"):
        table.add_column(col, justify="right", no_wrap=True)
    total = training = 0.0
    for p in remote:
        cost = p.own_cost_usd
        total += cost or 0.0
        table.add_row(
            Text(p.name),
            Text(p.model.split(":", 1)[-1]),
            str(p.requests),
            str(p.cached),
            f"{p.input_tokens:,}" + ("" if p.tokens_exact else "~"),
            ("≤" if p.output_is_bound else "") + f"{p.output_tokens:,}",
            "?" if cost is None else dollars(cost),
        )
        if p.proposer is not None:  # a prompt-search's proposer, at its own price
            q = p.proposer
            total += q.cost_usd or 0.0
            table.add_row(
                Text(f"{p.name} proposer"),
                Text(q.model.split(":", 1)[-1]),
                str(q.requests),
                str(q.cached),
                f"{q.input_tokens:,}" + ("" if q.tokens_exact else "~"),
                f"≤{q.output_tokens:,}",
                "?" if q.cost_usd is None else dollars(q.cost_usd),
            )
    if remote:
        console.print(table)
    for p in remote:
        if p.note:
            console.print(Padding(Text(f"{p.name}: {p.note}"), (0, 0, 0, 2)))
        if p.training is not None:
            style = "yellow" if p.training.problem else ""
            console.print(Padding(Text(f"{p.name}: {p.training.line()}", style), (0, 0, 0, 2)))
            total += p.training.usd or 0.0
            training += p.training.usd or 0.0
        for line in p.context.lines() if p.context is not None else []:
            console.print(Padding(Text(f"too long: {line}", style="yellow"), (0, 0, 0, 2)))
    if any(not p.tokens_exact for p in remote):
        console.print(
            "  ~ estimated: no tokenizer for this model offline (about 4 characters a token)"
        )
    if any(p.output_is_bound for p in remote):
        console.print("  ≤ upper bound: answers counted at max_tokens")
    if local:
        console.print(
            Padding(
                Text(f"{and_list(local)}: run on this machine, compute cost only"), (0, 0, 0, 2)
            )
        )
    for p in plans:  # a tuned encoder candidate: its trials and cap
        if p.model == "local encoder" and "tuning:" in p.note:
            console.print(Padding(Text(f"{p.name}: {p.note.split('; ', 1)[-1]}"), (0, 0, 0, 2)))
    of_it = f" ({usd(training)} of it training)" if training else ""
    console.print(f"projected API cost of this run: {usd(total)}{of_it}")
    print_time_estimates(project, [p.name for p in plans if "would be skipped" not in p.note])
    # The prompts' language, as the run will say it: the same templates are priced above.
    for kind, line in project.language_notes():
        warn = ("warning: ", "yellow") if kind == "warning" else ""
        console.print(Text.assemble(warn, line), soft_wrap=True)


def print_time_estimates(project: Project, names: Sequence[str]) -> None:
    """The dry run's wall-time estimates, from a probe run here (a few training steps and
    answers of each local candidate; nothing is sent to a paid API and nothing is stored).
    Candidates whose result is stored, unchanged, are reused by a run and cost nothing."""
    from contextlib import closing

    from adaptlab.cli.progress import RichProgress
    from adaptlab.core.format import duration
    from adaptlab.engine.estimate import estimate_times
    from adaptlab.engine.runner import Models, result_key
    from adaptlab.store import RunStore

    split = project.split()
    cands = [c for c in project.config.candidates if c.name in names]
    stored: set[str] = set()
    if project.has_store:
        with RunStore(project.store) as store:
            stored = {c.name for c in cands if store.has_result(result_key(project, c, split))}
    todo = [c for c in cands if c.name not in stored]
    limit = project.config.evaluation.max_minutes
    console.print(
        "time on this machine (measured now: a few real training steps and answers of "
        "each candidate):"
    )
    with closing(Models(project)) as models, RichProgress(console) as progress:
        estimates = estimate_times(project, todo, models, split, progress)
    for est in estimates:
        over = limit is not None and est.seconds is not None and est.seconds > 60 * limit
        style = "yellow" if over else ""
        tail = f" — over evaluation.max_minutes ({limit:g} min): run asks first" if over else ""
        console.print(Padding(Text(est.line() + tail, style), (0, 0, 0, 2)))
    for name in sorted(stored):
        console.print(
            Padding(Text(f"{name}: stored and unchanged, reused (no time)"), (0, 0, 0, 2))
        )
    known = [e.seconds for e in estimates if e.seconds is not None]
    if known:
        console.print(f"estimated time of this run: about {duration(sum(known))}")
