"""``adaptlab logs``: served traffic as the next dataset, and live statistics."""

from __future__ import annotations

from pathlib import Path

import click

from adaptlab.cli.common import console, err_console, fmt_p, project_option
from adaptlab.cli.store_target import store_option


@click.group()
def logs() -> None:
    """The request log of 'adaptlab serve': export it as data, compare candidates.

    \b
    adaptlab logs export -p my-task -o data/served.jsonl
    adaptlab logs stats -p my-task
    adaptlab logs export -p my-task --store postgresql://adaptlab@db/serving
    """


def _open(project_dir: str, store: str | None) -> tuple[object, object]:
    """The project (its fields and labels) and the run store holding its request log:
    ``--store``, else the project's (never created here when it is a missing file)."""
    from adaptlab.cli.common import require_runs
    from adaptlab.engine.project import Project
    from adaptlab.store import RunStore
    from adaptlab.store.location import store_exists

    project = Project.load(project_dir)
    target = store if store is not None else project.store
    if not store_exists(target):
        if store is not None:
            raise click.BadParameter(f"'{store}' does not exist", param_hint="--store")
        require_runs(project)
    return project, RunStore(target)


def since_option(value: str | None) -> str | None:
    """``--since`` as the request log writes times (UTC ISO 8601, milliseconds), so the
    log's string comparison orders them; raises click.BadParameter for anything that is
    not an ISO 8601 date or time ("01/01/2099" compared as text would pass every row)."""
    from datetime import datetime, timezone

    if value is None:
        return None
    text = value.strip()
    try:
        when = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not an ISO 8601 date or time; write e.g. 2026-12-01 or "
            "2026-12-01T09:30:00Z",
            param_hint="--since",
        ) from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return when.astimezone(timezone.utc).isoformat(timespec="milliseconds")


since_flag = click.option(
    "--since",
    default=None,
    callback=lambda ctx, param, value: since_option(value),
    help="Only requests from this time on: an ISO 8601 date or time (2026-12-01, "
    "2026-12-01T09:30Z; UTC unless an offset is given).",
)


@logs.command("export")
@project_option
@store_option
@click.option(
    "-o", "--output", default=None, help="JSONL file to write (default: standard output)."
)
@click.option("-c", "--candidate", default=None, help="Only requests this candidate answered.")
@since_flag
@click.option(
    "--unlabelled",
    is_flag=True,
    help="Keep requests without label feedback too (no label field; for review).",
)
def export_command(
    project_dir: str,
    store: str | None,
    output: str | None,
    candidate: str | None,
    since: str | None,
    unlabelled: bool,
) -> None:
    """Served requests with their feedback label as JSON Lines in the project's input and
    label fields, ready for 'adaptlab run' (as data.path or data.test_path). Shadow
    answers and failed requests are never exported; how many were left out is printed.
    """
    from adaptlab.core.format import plural
    from adaptlab.engine.project import Project
    from adaptlab.evaluation.served import export_rows, to_jsonl
    from adaptlab.store import RunStore

    project, opened = _open(project_dir, store)
    assert isinstance(project, Project) and isinstance(opened, RunStore)
    data = project.config.data
    with opened:
        result = export_rows(
            opened.conn,
            input_field=data.input_field,
            label_field=data.label_field,
            candidate=candidate,
            since=since,
            unlabelled=unlabelled,
            labels=set(project.config.labels) if project.config.task == "classification" else None,
        )
    text = to_jsonl(result.rows)
    if output is None:
        click.echo(text, nl=False)
    else:
        from adaptlab.core.files import write_text_atomically

        write_text_atomically(Path(output), text, what="the exported dataset")
    labelled = sum(data.label_field in r for r in result.rows)
    say = err_console.print
    say(f"{plural(len(result.rows), 'request')} exported ({labelled} with a label)", markup=False)
    if result.without_label and not unlabelled:
        say(
            f"{plural(result.without_label, 'request')} without label feedback left out "
            "(--unlabelled keeps them)",
            markup=False,
        )
    if result.failed:
        say(f"{plural(result.failed, 'failed request')} left out", markup=False)
    if result.unknown_label:
        named = ", ".join(f"'{k}' ({n})" for k, n in result.unknown_label.most_common(5))
        say(
            f"{plural(sum(result.unknown_label.values()), 'request')} left out: their feedback "
            "names a "
            f"label the project does not have: {named}",
            markup=False,
            soft_wrap=True,
        )
    if result.pii:
        kinds = ", ".join(f"{k}: {n}" for k, n in sorted(result.pii.items()))
        say(
            f"warning: personal data in {plural(sum('pii' in r for r in result.rows), 'input')} "
            f"({kinds}; flagged in the rows' 'pii' field), e.g. "
            + "; ".join(result.pii_examples[:3]),
            markup=False,
            soft_wrap=True,
        )
    if output is not None:
        from adaptlab.core.files import printable_name

        say(f"dataset: {printable_name(output)}", markup=False)


@logs.command("stats")
@project_option
@store_option
@since_flag
def stats_command(project_dir: str, store: str | None, since: str | None) -> None:
    """Each served candidate (and shadow) side by side: requests, errors, latency p50/p95,
    tokens, cost, and accuracy on the requests with label feedback (95% bootstrap
    interval); a shadow against the candidate it shadowed with McNemar's test."""
    from adaptlab.cli.common import fitted_table
    from adaptlab.core.format import ms as latency
    from adaptlab.core.format import pct, plural, sig, usd
    from adaptlab.engine.project import Project
    from adaptlab.evaluation.served import live_stats
    from adaptlab.store import RunStore

    project, opened = _open(project_dir, store)
    assert isinstance(project, Project) and isinstance(opened, RunStore)
    ev = project.config.evaluation
    with opened:
        stats, comparisons = live_stats(
            opened.conn,
            since=since,
            confidence=ev.confidence,
            resamples=ev.bootstrap_resamples,
        )
    if not stats:
        console.print("no served requests yet (adaptlab serve logs them)", markup=False)
        return

    def ms(x: float | None) -> str:
        return "–" if x is None else latency(x)

    rows = []
    for s in stats:
        acc = "–"
        if s.accuracy is not None:
            a = s.accuracy
            acc = f"{pct(a.estimate)} [{pct(a.low)}–{pct(a.high)}]"
        rows.append(
            (
                f"{s.candidate}{' (shadow)' if s.shadow else ''}",
                [
                    f"{s.requests:,}",
                    f"{s.labelled:,}",
                    acc,
                    ms(s.latency_p50_ms),
                    ms(s.latency_p95_ms),
                    f"{s.errors:,}",
                    "–" if s.cost_usd is None else usd(s.cost_usd),
                    "–" if s.tokens_per_request is None else sig(s.tokens_per_request),
                    "–" if s.mean_rating is None else f"{sig(s.mean_rating)} ({s.rated})",
                ],
            )
        )
    conf = f"{round(100 * ev.confidence)}%"
    columns = [  # what matters first: a narrow terminal leaves out the rightmost
        ("requests", True),
        ("labelled", True),
        (f"accuracy [{conf}]", True),
        ("p50", True),
        ("p95", True),
        ("errors", True),
        ("cost", True),
        ("tokens", True),
        ("rating", True),
    ]
    console.print(fitted_table("served traffic", "candidate", columns, rows))
    for c in comparisons:
        if c.test is None:
            continue
        t = c.test
        console.print(
            f"{c.a} vs {c.b} (shadow) on {plural(c.pairs, 'labelled request')} both answered: "
            f"{'+' if t.diff >= 0 else ''}{100 * t.diff:.1f} points, "
            f"{t.name} p = {fmt_p(t.p_value)} "
            f"({t.a_only} right only for {c.a}, {t.b_only} only for {c.b})",
            markup=False,
            soft_wrap=True,
        )
    unpaired = [s for s in stats if not s.shadow and s.accuracy is not None]
    if len(unpaired) > 1:
        console.print(
            "A/B candidates answered different requests: their accuracies are compared by "
            "their intervals only (no paired test); a --shadow gives paired answers.",
            markup=False,
            soft_wrap=True,
        )
