"""Progress of long work: the hook every layer reports to, and the CLI renders.

It lives at the bottom so the LLM runner, the trainers and the indexes report
progress without importing the strategies that call them (dspy keeps its callback
hook in ``dspy/utils/callback.py`` for the same reason).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

Advance = Callable[[int], None]


class ProgressSink:
    """Where long work reports progress; the CLI plugs in rich, tests a silent one."""

    @contextmanager
    def task(self, description: str, total: int | None) -> Iterator[Advance]:
        yield lambda n: None

    def status(self, text: str) -> None:
        """Where the innermost open task stands beyond its count (``epoch 3/8, val acc
        0.912``), shown beside its description until the next status; none by default."""

    def note(self, message: str) -> None:
        """Something the user should know that does not stop the work (a warning)."""
        print(f"warning: {message}", file=sys.stderr)

    def info(self, message: str) -> None:
        """A line the user should see before the work goes on (an estimate, a status)."""
        print(message, file=sys.stderr)
