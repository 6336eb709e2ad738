"""A rich-backed progress sink for strategies and the runner."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from adaptlab.core.progress import Advance, ProgressSink


class RichProgress(ProgressSink):
    """Descriptions are markup only in the prefix adaptlab writes; names and texts are escaped."""

    def __init__(self, console: Console, prefix: str = "") -> None:
        self.prefix = prefix
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )

    def set_candidate(self, name: str) -> None:
        """Prefix every task from now on with this candidate's name (printed literally)."""
        self.prefix = f"[cyan]{escape(name)}[/]: "

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def note(self, message: str) -> None:
        """A warning above the bars, printed as written (a path or label may hold brackets)."""
        self.progress.console.print(Text.assemble(("warning:", "yellow"), f" {message}"))

    def info(self, message: str) -> None:
        """A line of information above the bars (an estimate, a status), as written."""
        self.progress.console.print(Text(message))

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Advance]:
        task_id = self.progress.add_task(f"{self.prefix}{escape(description)}", total=total)
        try:
            yield lambda n: self.progress.advance(task_id, n)
        finally:
            self.progress.update(task_id, completed=total) if total else None
