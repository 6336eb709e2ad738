"""What every command shares: the project option, errors, progress, result tables."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from adaptlab.errors import AdaptlabError

if TYPE_CHECKING:
    from adaptlab.evaluation.summary import RunSummary

console = Console(stderr=False, highlight=False)
err_console = Console(stderr=True, highlight=False)

project_option = click.option(
    "-p",
    "--project",
    "project_dir",
    default=".",
    show_default=True,
    type=click.Path(file_okay=False),
    help="Project folder holding adaptlab.yaml.",
)


@contextmanager
def handle_errors() -> Iterator[None]:
    """Print user errors as 'where: what / fix: how' and exit 2; no traceback."""
    try:
        yield
    except AdaptlabError as exc:
        err_console.print(f"[bold red]error:[/] {exc}", markup=True, soft_wrap=True)
        sys.exit(2)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print(
            "interrupted: finished candidates are stored; 'adaptlab run' resumes from there"
        )
        sys.exit(130)


def fmt_pct(x: float) -> str:
    return f"{100 * x:.1f}"


def results_table(summary: RunSummary) -> Any:
    """The rich table `run`, `demo` and `report` print."""
    from rich.table import Table

    rec = summary.recommendation
    table = Table(title=f"{summary.project} — test split of {summary.split.get('test', 0)}")
    for col, just in (
        ("candidate", "left"),
        ("accuracy % (95% CI)", "right"),
        ("macro-F1 %", "right"),
        ("p vs best", "right"),
        ("p50 / p95 ms", "right"),
        ("fit s", "right"),
        ("USD / 1k req", "right"),
        ("setup USD", "right"),
    ):
        table.add_column(col, justify=just)  # type: ignore[arg-type]
    for c in summary.candidates:
        name = c.name + (" ★" if c.name == rec.winner else "") + (" (cached)" if c.reused else "")
        p = "best" if c.vs_best is None else f"{c.vs_best.p_value:.3g}"
        table.add_row(
            name,
            f"{fmt_pct(c.accuracy)} ({fmt_pct(c.accuracy_ci.low)}–{fmt_pct(c.accuracy_ci.high)})",
            fmt_pct(c.metrics.macro_f1),
            p,
            f"{c.latency_p50_ms:.1f} / {c.latency_p95_ms:.1f}",
            f"{c.fit_seconds:.1f}",
            f"{c.cost_per_1k_usd:.5f}",
            f"{c.setup_cost_usd:.4f}",
        )
    return table


def print_summary(summary: RunSummary) -> None:
    rec = summary.recommendation
    console.print(results_table(summary))
    kind = "significant lead" if rec.kind == "significant" else "cheapest within noise"
    console.print(f"[bold green]recommendation:[/] {rec.winner} ({kind})")
    for reason in rec.reasons:
        console.print(f"  {reason}", soft_wrap=True)
