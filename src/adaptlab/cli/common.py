"""What every command shares: the project option, errors, progress, result tables."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.text import Text

from adaptlab.core.errors import AdaptlabError

if TYPE_CHECKING:
    from adaptlab.engine.project import Project
    from adaptlab.engine.summary import ProjectSummary
    from adaptlab.evaluation.summary import CandidateSummary

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


def require_runs(project: Project) -> None:
    """Raise :class:`AdaptlabError` (code "no-run") when no run has made the project's
    store yet; checked before opening it, so that reading creates nothing."""
    if not project.has_store:
        raise AdaptlabError(
            "no run in this project yet",
            file=project.root,
            fix=f"run 'adaptlab run -p {project.root}' first",
            code="no-run",
        )


_interrupt_hint = "interrupted"


def set_interrupt_hint(text: str) -> None:
    """What Ctrl-C prints for the running command (``run`` says how to resume)."""
    global _interrupt_hint
    _interrupt_hint = text


def print_error(exc: object) -> None:
    """'error: …' with the message as plain text: brackets in names and paths stay literal."""
    err_console.print(Text.assemble(("error:", "bold red"), " ", str(exc)), soft_wrap=True)


@contextmanager
def handle_errors() -> Iterator[None]:
    """Print user errors as 'where: what / fix: how' and exit 2; no traceback."""
    import sqlite3

    set_interrupt_hint("interrupted")  # a command that has a better hint sets its own
    try:
        yield
    except AdaptlabError as exc:
        print_error(exc)
        sys.exit(2)
    except click.exceptions.Abort as exc:
        # click turns Ctrl-C into Abort; the KeyboardInterrupt is its cause.
        if isinstance(exc.__cause__ or exc.__context__, KeyboardInterrupt):
            err_console.print(_interrupt_hint, markup=False, soft_wrap=True)
        else:
            err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print(_interrupt_hint, markup=False, soft_wrap=True)
        sys.exit(130)
    except OSError as exc:  # a full disk, a read-only folder, a file where a folder belongs
        from adaptlab.store.files import os_error

        print_error(os_error(exc))
        sys.exit(2)
    except sqlite3.Error as exc:
        print_error(
            AdaptlabError(
                f"a database file of this project could not be used: {exc}",
                fix="look for a damaged, locked or read-only file in the project's .adaptlab "
                "folder; move a damaged one away and run again",
            )
        )
        sys.exit(2)
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


_BREAK_AFTER = re.compile(r"(?<=[-_/. ])")


def _piece_width(name: str) -> int:
    """Cells of the longest piece of ``name`` that :func:`wrap_name` never breaks."""
    return max(
        Text(p.rstrip(" ")).cell_len for line in name.split("\n") for p in _BREAK_AFTER.split(line)
    )


def wrap_name(name: str, width: int) -> str:
    """``name`` in lines of at most ``width`` cells, broken only after "-", "_", "/", "."
    or a space (``smollm2-135m-`` / ``instruct``, never ``smollm2-135m-in`` / ``struct``);
    a piece longer than ``width`` stays whole on its own line (the table folds it only
    when nothing else fits)."""
    out = []
    for line in name.split("\n"):
        current = ""
        for piece in _BREAK_AFTER.split(line):
            if current and Text((current + piece).rstrip(" ")).cell_len > width:
                out.append(current.rstrip(" "))
                current = ""
            current += piece
        out.append(current.rstrip(" "))
    return "\n".join(out)


class FittedTable:
    """A table whose numbers are never cut, laid out for the width it is printed at.

    ``columns`` are (header, optional) of the right-aligned value columns; each row is
    (name, values), a value plain text or a styled :class:`~rich.text.Text`. Values do
    not wrap; the name column folds instead. When the values
    do not fit beside 10 characters of name, optional columns are left out from the
    right (a caption says which); on a terminal narrower still, values fold onto a
    second line rather than end in "…".
    """

    def __init__(
        self,
        title: str,
        name_header: str,
        columns: list[tuple[str, bool]],
        rows: Sequence[tuple[str, Sequence[str | Text]]],
        width: int | None = None,
    ) -> None:
        self.title, self.name_header, self.columns, self.rows = title, name_header, columns, rows
        self.width = width

    def table(self, width: int) -> Any:
        from rich import box
        from rich.table import Table

        def cell_width(text: str | Text) -> int:
            plain = text.plain if isinstance(text, Text) else text
            return max((Text(line).cell_len for line in plain.split("\n")), default=0)

        columns, rows = self.columns, self.rows
        widths = [
            max([cell_width(header)] + [cell_width(values[i]) for _, values in rows])
            for i, (header, _) in enumerate(columns)
        ]

        # The name column is at least as wide as the longest piece of a name or of its
        # header (names break after "-", "_", "/", "." or a space, never inside a word),
        # and 6.
        name_min = max([6, _piece_width(self.name_header)] + [_piece_width(n) for n, _ in rows])

        def fits(keep: list[int]) -> bool:
            return sum(widths[j] + 3 for j in keep) + name_min + 2 <= width  # as name_room

        keep = list(range(len(columns)))
        for i in reversed(range(len(columns))):
            if fits(keep):
                break
            if columns[i][1]:
                keep.remove(i)
        dropped = [columns[i][0].replace("\n", " ") for i in range(len(columns)) if i not in keep]
        table = Table(
            title=Text(self.title),
            box=box.SIMPLE_HEAD,
            pad_edge=False,
            caption=Text(f"left out at this width: {', '.join(dropped)}") if dropped else None,
        )
        fold = not fits(keep)
        # what the value columns leave (each: its width, 2 of padding, 1 of separator;
        # 2 more for the table's edges)
        name_room = max(name_min, width - sum(widths[j] + 3 for j in keep) - 2)
        longest = max([Text(n).cell_len for name, _ in rows for n in name.split("\n")] + [6])
        table.add_column(
            self.name_header,
            overflow="fold",
            min_width=name_min,
            width=None if fold else min(name_room, max(longest, name_min)),
        )
        for i in keep:
            table.add_column(
                columns[i][0],
                justify="right",
                no_wrap=not fold,
                overflow="fold",
                min_width=None if fold else widths[i],
            )
        for name, values in rows:
            table.add_row(
                Text(wrap_name(name, name_room), overflow="fold"),
                *(v if isinstance(v := values[i], Text) else Text(v) for i in keep),
            )
        return table

    def __rich_console__(self, console: Console, options: Any) -> Iterator[Any]:
        yield self.table(self.width or options.max_width)


def estimated_mark(c: CandidateSummary) -> str:
    """``~`` after a token count or a cost that rests on estimated or doubted usage."""
    return "~" if c.usage_estimated else ""


def fitted_table(
    title: str,
    name_header: str,
    columns: list[tuple[str, bool]],
    rows: Sequence[tuple[str, Sequence[str | Text]]],
    width: int | None = None,
) -> FittedTable:
    """A :class:`FittedTable`: the numbers never cut, laid out for the terminal's width."""
    return FittedTable(title, name_header, columns, rows, width)


def results_table(summary: ProjectSummary, width: int | None = None) -> Any:
    """The rich table `run`, `demo` and `report` print; fits an 80-column terminal.

    The p-value against the winner is red where the winner is significantly better on
    test, green with a ▲ where this candidate is significantly better than the winner
    (:func:`adaptlab.report.notes.standing_on_test`; the recommendation says why it was
    not chosen).
    """
    from adaptlab.core.format import dollars, number, plural
    from adaptlab.report.notes import p_text, selection_evidence, standing_on_test

    v = summary.verdict
    info = summary.metric_info
    name = _SHORT.get(info.key, info.name)

    def fmt(x: float) -> str:
        return fmt_pct(x) if info.percent else f"{x:.3f}"

    classification = summary.task == "classification"
    sel = "val" if summary.selected_on == "val" else "test"
    if any(c.selection_source == "cv" for c in summary.candidates):
        sel = "val/cv"  # a cross-validated candidate's figure is marked "cv"
    columns = [
        (f"{name}{' %' if info.percent else ''}\n{summary.confidence:.0%} CI", False),
        (f"{sel}\n{'%' if info.percent else name}", False),
        ("macro\nF1 %" if classification else "valid\n%", True),
        ("p vs\nwinner", False),
        ("ms p50\np95", True),
        ("fit s", True),
        ("USD per\n1k req", False),
        ("setup\nUSD", True),
    ]
    resamples = summary.cfg.evaluation.bootstrap_resamples
    rows: list[tuple[str, list[str | Text]]] = []
    for c in summary.candidates:
        tags = [
            t
            for t, on in (
                ("★ winner", c.name == v.winner),
                ("tuned", c.tuning is not None),
                ("untuned", c.name in v.untuned),
                ("cached", c.reused),
            )
            if on
        ]
        paired = v.test_tests.get(c.name)  # the winner against c on test
        ci = c.quality_ci
        if c.metrics is not None:
            second = fmt_pct(c.metrics.macro_f1)
        else:
            second = fmt_pct(c.valid_rate) if c.valid_rate is not None else "–"
        p: str | Text = "winner"
        if paired is not None:
            standing = standing_on_test(v, c.name)
            p = Text(p_text(paired, resamples))
            if standing == "worse":
                p.stylize("red")
            elif standing == "better":
                p = Text(p.plain + " ▲", style="green")
        values: list[str | Text] = [
            f"{fmt(c.quality)}\n{fmt(ci.low)}–{fmt(ci.high)}",
            fmt(c.selection_ci.estimate) + ("\ncv" if c.selection_source == "cv" else ""),
            second,
            p,
            f"{number(c.latency_p50_ms)}\n{number(c.latency_p95_ms)}",
            number(c.fit_seconds),
            dollars(c.cost_per_1k_usd) + estimated_mark(c),
            dollars(c.setup_cost_usd),
        ]
        rows.append((c.name + ("\n" + ", ".join(tags) if tags else ""), values))
    title = (
        f"{summary.project}: {plural(summary.split.get('test', 0), 'test example')}; the "
        f"winner is chosen on {selection_evidence(summary.candidate(v.winner))} "
        "(p: Holm-adjusted)"
    )
    return fitted_table(title, "candidate", columns, rows, width)


def llm_table(summary: ProjectSummary, width: int | None = None) -> Any:
    """Tokens, parsing and consistency of the generative candidates (None if there are none)."""
    cands = [c for c in summary.candidates if c.llm is not None or c.agreement is not None]
    if not cands:
        return None
    columns = [
        ("tokens\nin/out", False),
        ("unparsed", False),
        ("failed", False),
        ("cut\noff", False),
        ("agree %\nvalid %", False),
        ("retries", True),
        ("cache\nhits", True),
    ]
    rows: list[tuple[str, list[str | Text]]] = []
    for c in cands:
        llm = c.info.get("llm", {}) if isinstance(c.info.get("llm"), dict) else {}
        tokens = (
            f"{c.input_tokens_per_request:.0f}/{c.output_tokens_per_request:.0f}"
            + estimated_mark(c)
            if c.input_tokens_per_request is not None and c.output_tokens_per_request is not None
            else "–"
        )
        agree = (
            f"{fmt_pct(c.agreement)}\n{fmt_pct(c.format_validity or 0)}"
            if c.agreement is not None
            else "–"
        )
        values: list[str | Text] = [
            tokens,
            str(c.unparsed),
            str(sum(c.failed.values())),
            str(c.cut_off),
            agree,
            str(llm.get("retries", "–")),
            str(llm.get("cache_hits", "–")),
        ]
        mode = c.info.get("answer")  # constrained or free (prompted candidates)
        label = c.name + (f"\n{c.llm}" if c.llm else "") + (f"\n{mode}" if mode else "")
        rows.append((label, values))
    table = fitted_table("generative answers", "candidate", columns, rows, width)
    notes = llm_notes(summary)
    if not notes:
        return table
    from rich.console import Group
    from rich.padding import Padding

    return Group(table, *(Padding(Text(n), (0, 0, 0, 2)) for n in notes))


def retrieval_table(summary: ProjectSummary, width: int | None = None) -> Any:
    """Citations, groundedness and recall of the RAG candidates (None if there are none)."""
    cands = [c for c in summary.candidates if c.generation is not None and c.generation.retrieval]
    if not cands:
        return None
    columns = [
        ("cited %\nof n", False),
        ("invalid\nids", False),
        ("unsup-\nported", False),
        ("grounded\n%", False),
        ("docs\nrecall %", False),
        ("screened", True),
    ]
    rows: list[tuple[str, list[str | Text]]] = []
    for c in cands:
        r = c.generation.retrieval  # type: ignore[union-attr]
        assert r is not None
        values: list[str | Text] = [
            f"{fmt_pct(r.citation_rate)}\n{r.cited}/{r.citable}",
            str(r.invalid),
            str(r.unsupported),
            fmt_pct(r.groundedness),
            "–" if r.recall is None else f"{fmt_pct(r.recall)}\n@{r.k}",
            str(r.screened),
        ]
        rows.append((c.name, values))
    return fitted_table("retrieval and citations", "candidate", columns, rows, width)


def llm_notes(summary: ProjectSummary) -> list[str]:
    """What the generative table's failed, cut-off and ~ figures mean, with the fix."""
    from adaptlab.evaluation.batch_notes import batch_notes
    from adaptlab.evaluation.summary import answer_notes

    notes = [n for c in summary.candidates for n in answer_notes(c)] + batch_notes(summary)
    return notes + (
        [
            "~ token counts (and the costs from them) estimated or repaired: the provider "
            "reported none, or figures that cannot be true"
        ]
        if any(c.usage_estimated for c in summary.candidates)
        else []
    )


def print_summary(summary: ProjectSummary) -> None:
    """The results table, the generative and retrieval tables, the overfitting
    read-outs and the recommendation in words, as ``run``, ``report`` and ``decide``
    print them."""
    from rich.padding import Padding

    from adaptlab.report.notes import better_than_winner, loaded_timing_line

    rec = summary.recommendation
    console.print(results_table(summary))
    for extra in (llm_table(summary), retrieval_table(summary)):
        if extra is not None:
            console.print(extra)
    for c in summary.candidates:
        if c.overfit is not None:
            console.print(Text.assemble(("overfitting ", "bold"), (c.name, "bold"), ":"))
            for line in c.overfit.lines():
                console.print(Padding(Text(line), (0, 0, 0, 2)))
        if c.tuning is not None:
            console.print(Text.assemble(("tuning ", "bold"), (c.name, "bold"), ":"))
            for line in c.tuning.lines(summary.metric_info.percent):
                console.print(Padding(Text(line), (0, 0, 0, 2)))
    from adaptlab.report.html import KINDS

    kind = KINDS.get(summary.verdict.kind, (summary.verdict.kind, ""))[0]
    console.print(Text.assemble(("recommendation:", "bold green"), f" {rec.winner} ({kind})"))
    for reason in rec.reasons:
        # Wrapped by rich at word boundaries, indented as a block; never cut mid-word.
        console.print(Padding(Text(reason), (0, 0, 0, 2)))
    from adaptlab.decide.explain import selection_line

    console.print(Padding(Text(selection_line(summary.verdict, summary)), (0, 0, 0, 2)))
    for line in better_than_winner(summary.verdict, summary):
        console.print(Padding(Text.assemble(("▲ ", "green"), line), (0, 0, 0, 2)))
    for title, lines in (
        ("what would change it:", rec.changes),
        ("ruled out by the profile:", [f"{k}: {v}" for k, v in rec.excluded.items()]),
        ("timings:", [w] if (w := loaded_timing_line(summary.candidates)) else []),
    ):
        if lines:
            console.print(Text(title, style="bold"))
            for line in lines:
                console.print(Padding(Text(line), (0, 0, 0, 2)))
