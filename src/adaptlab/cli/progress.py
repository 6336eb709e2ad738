"""A rich-backed progress sink for strategies and the runner."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from adaptlab.core.format import duration
from adaptlab.core.progress import Advance, ProgressSink

#: Seconds between two plain progress lines of one task (a log, not a terminal);
#: ``ADAPTLAB_PROGRESS_EVERY_S`` overrides it (0: a line for every step).
PLAIN_EVERY_S = 30.0


class RichProgress(ProgressSink):
    """Progress bars in a terminal; plain lines anywhere else.

    With a terminal, rich bars (description, bar, done/total, elapsed, time left). With
    output going to a file or a pipe (CI, ``nohup``, a scheduler), no bar is drawn or
    dumped: a task says a line every :data:`PLAIN_EVERY_S` seconds while it runs
    (``finetune: training 120/456 (26%), 4.1 min elapsed, about 11 min left``) and one
    when it ends (``finetune: training 456/456 in 15 min``), so a short task is one line
    and a long one shows it is alive. Descriptions are markup only in the prefix
    adaptlab writes; names and texts are escaped.
    """

    def __init__(self, console: Console, prefix: str = "") -> None:
        self.prefix = prefix
        self.plain = not console.is_terminal
        every = os.environ.get("ADAPTLAB_PROGRESS_EVERY_S", "")
        self.every_s = float(every) if every.replace(".", "", 1).isdigit() else PLAIN_EVERY_S
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            # Rate over the last 5 minutes, not rich's default 30 s, so one pause (a
            # fine-tune epoch's validation and checkpoint) does not swing the time left.
            speed_estimate_period=300.0,
            transient=False,
            disable=self.plain,  # tasks are still counted; plain lines say them
        )
        self._open: list[tuple[TaskID, str, _PlainLine | None]] = []  # innermost last

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

    def status(self, text: str) -> None:
        """Show ``text`` after the innermost open task's description (a plain line now,
        without a terminal: an epoch's end is worth a line in a log)."""
        if not self._open:
            return
        task_id, head, line = self._open[-1]
        self.progress.update(task_id, description=f"{head}, {escape(text)}")
        if line is not None and line.done():
            line.last = time.monotonic()
            line.say(final=False)

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Advance]:
        head = f"{self.prefix}{escape(description)}"
        task_id = self.progress.add_task(head, total=total)
        if not self.plain:
            self._open.append((task_id, head, None))
            try:
                yield lambda n: self.progress.advance(task_id, n)
            finally:
                self._open.pop()
                self.progress.update(task_id, completed=total) if total else None
            return
        line = _PlainLine(self, task_id, time.monotonic())
        self._open.append((task_id, head, line))
        try:
            yield line.advance
        finally:
            self._open.pop()
            line.say(final=True)


class _PlainLine:
    """The plain-text lines of one task: at its start, at most every ``every_s`` while
    it runs, and at its end."""

    def __init__(self, owner: RichProgress, task_id: TaskID, start: float) -> None:
        self.owner, self.task_id, self.start = owner, task_id, start
        self.last = start

    def done(self) -> float:
        return self.owner.progress.tasks[self._index()].completed

    def _index(self) -> int:
        return next(i for i, t in enumerate(self.owner.progress.tasks) if t.id == self.task_id)

    def advance(self, n: int) -> None:
        self.owner.progress.advance(self.task_id, n)
        now = time.monotonic()
        if now - self.last >= self.owner.every_s:
            task = self.owner.progress.tasks[self._index()]
            if task.completed and (task.total is None or task.completed < task.total):
                self.last = now
                self.say(final=False)

    def say(self, *, final: bool) -> None:
        """``finetune: training 120/456 (26%), 4.1 min elapsed, about 11 min left`` while
        it runs; ``finetune: training 456/456 in 15 min`` at the end."""
        task = self.owner.progress.tasks[self._index()]
        elapsed = duration(time.monotonic() - self.start)
        head = Text.from_markup(task.description).plain
        done, total = task.completed, task.total
        if final:
            count = f"{done:,.0f}/{total:,.0f}" if total else f"{done:,.0f}"
            text = f"{head}: {count} in {elapsed}"
            if total and done < total:
                text += f", stopped at {done / total:.0%}"
        elif total:
            left = (time.monotonic() - self.start) / done * (total - done)
            text = f"{head}: {done:,.0f}/{total:,.0f} ({done / total:.0%}), {elapsed} "
            text += f"elapsed, about {duration(left)} left"
        else:
            text = f"{head}: {done:,.0f} so far, {elapsed} elapsed"
        self.owner.progress.console.print(Text(text), soft_wrap=True)
