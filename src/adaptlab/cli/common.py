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
    except Exception as exc:  # a bug: say so briefly, keep the traceback in a file
        sys.exit(_internal_error(exc))


def _internal_error(exc: Exception) -> int:
    """Print a one-paragraph report of a bug, with the traceback saved to a file; exit 3.

    ``ADAPTLAB_DEBUG=1`` re-raises instead, for a developer who wants the traceback.
    """
    import os
    import tempfile
    import traceback

    if os.environ.get("ADAPTLAB_DEBUG"):
        raise exc
    from adaptlab.llm.keys import redact

    text = redact("".join(traceback.format_exception(exc)))
    fd, path = tempfile.mkstemp(prefix="adaptlab-crash-", suffix=".txt")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(text)
    err_console.print(
        f"internal error: {type(exc).__name__}: {redact(str(exc))}",
        markup=False,
        soft_wrap=True,
    )
    err_console.print(
        f"  this is a bug in adaptlab, not in your input; the traceback is in {path} "
        "(set ADAPTLAB_DEBUG=1 to see it here)",
        markup=False,
        soft_wrap=True,
    )
    return 3


def fmt_pct(x: float) -> str:
    return f"{100 * x:.1f}"


def fmt_p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


_SHORT = {"accuracy": "acc.", "field_f1": "field F1", "token_f1": "tok. F1", "exact_match": "EM"}


def results_table(summary: RunSummary) -> Any:
    """The rich table `run`, `demo` and `report` print; fits an 80-column terminal."""
    from rich import box
    from rich.table import Table

    rec = summary.recommendation
    info = summary.metric_info
    name = _SHORT.get(info.key, info.name)

    def fmt(x: float) -> str:
        return fmt_pct(x) if info.percent else f"{x:.3f}"

    table = Table(
        title=f"{summary.project}: {summary.split.get('test', 0)} test examples",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )
    table.add_column("candidate", no_wrap=True)
    classification = summary.task == "classification"
    for col in (
        f"{name}{' %' if info.percent else ''}\n{summary.confidence:.0%} CI",
        "macro\nF1 %" if classification else "valid\n%",
        "p vs\nbest",
        "ms p50\np95",
        "fit s",
        "USD per\n1k req",
        "setup\nUSD",
    ):
        table.add_column(col, justify="right", no_wrap=True)
    for c in summary.candidates:
        tags = [t for t, on in (("★ winner", c.name == rec.winner), ("cached", c.reused)) if on]
        ci = c.quality_ci
        if c.metrics is not None:
            second = fmt_pct(c.metrics.macro_f1)
        else:
            second = fmt_pct(c.valid_rate) if c.valid_rate is not None else "–"
        table.add_row(
            c.name + ("\n" + ", ".join(tags) if tags else ""),
            f"{fmt(c.quality)}\n{fmt(ci.low)}–{fmt(ci.high)}",
            second,
            "best" if c.vs_best is None else fmt_p(c.vs_best.p_value),
            f"{c.latency_p50_ms:.1f}\n{c.latency_p95_ms:.1f}",
            f"{c.fit_seconds:.1f}",
            f"{c.cost_per_1k_usd:.5f}",
            f"{c.setup_cost_usd:.4f}",
        )
    return table


def llm_table(summary: RunSummary) -> Any:
    """Tokens, parsing and consistency of the generative candidates (None if there are none)."""
    from rich import box
    from rich.table import Table

    rows = [c for c in summary.candidates if c.llm is not None or c.agreement is not None]
    if not rows:
        return None
    table = Table(title="generative answers", box=box.SIMPLE_HEAD, pad_edge=False)
    table.add_column("candidate", no_wrap=True)
    for col in ("tokens\nin/out", "unparsed", "agree %\nvalid %", "retries", "cache\nhits"):
        table.add_column(col, justify="right", no_wrap=True)
    for c in rows:
        llm = c.info.get("llm", {}) if isinstance(c.info.get("llm"), dict) else {}
        tokens = (
            f"{c.input_tokens_per_request:.0f}/{c.output_tokens_per_request:.0f}"
            if c.input_tokens_per_request is not None and c.output_tokens_per_request is not None
            else "–"
        )
        agree = (
            f"{fmt_pct(c.agreement)}\n{fmt_pct(c.format_validity or 0)}"
            if c.agreement is not None
            else "–"
        )
        table.add_row(
            c.name + (f"\n{c.llm}" if c.llm else ""),
            tokens,
            str(c.unparsed),
            agree,
            str(llm.get("retries", "–")),
            str(llm.get("cache_hits", "–")),
        )
    return table


def print_summary(summary: RunSummary) -> None:
    rec = summary.recommendation
    console.print(results_table(summary))
    extra = llm_table(summary)
    if extra is not None:
        console.print(extra)
    from adaptlab.report.html import KINDS

    kind = KINDS.get(rec.kind, (rec.kind, ""))[0]
    console.print(f"[bold green]recommendation:[/] {rec.winner} ({kind})")
    for reason in rec.reasons:
        console.print(f"  {reason}", soft_wrap=True)
