"""One ``adaptlab run`` per project at a time: an OS file lock on ``.adaptlab/run.lock``.

Two runs of one project would ask for every uncached answer twice (each pays for
it before the other's is cached) and race each other's migrations. The lock is
the operating system's (``flock``), so it is released when its process ends in
any way, ``kill -9`` included: a lock file left behind never blocks anyone, and a
run that holds the lock knows that every run still marked ``running`` is dead.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import IO

from adaptlab.store.files import os_error

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not serialised there
    fcntl = None  # type: ignore[assignment]


class RunLock:
    """Held for the whole of a run; ``on_wait(holder)`` is called once if another run has it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fh: IO[str] | None = None

    def holder(self) -> str:
        """Who holds the lock, as its holder wrote it ("pid 123 on host")."""
        try:
            text = self.path.read_text(encoding="utf-8").strip()
        except OSError:
            return "pid unknown"
        return text or "pid unknown"

    def acquire(self, on_wait: Callable[[str], None] | None = None) -> RunLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fh = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release
        except OSError as exc:
            raise os_error(exc, "the run lock") from exc
        self._fh = fh
        if fcntl is not None:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait(self.holder())
                try:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)  # Ctrl-C still interrupts this
                except BaseException:
                    self.release()
                    raise
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
        fh.flush()
        return self

    def release(self) -> None:
        if self._fh is None:
            return
        if fcntl is not None:
            fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
        self._fh.close()
        self._fh = None

    def __enter__(self) -> RunLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
