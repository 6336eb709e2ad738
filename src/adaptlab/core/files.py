"""Read a user's file only when it is a regular file, and never more than a bound;
write one whole or not at all.

``Path.read_bytes()`` of ``/dev/zero`` grows until memory runs out, of a FIFO waits
forever, and of a folder raises ``IsADirectoryError``; everything adaptlab reads from
a project (data files, ``adaptlab.yaml``) goes through :func:`read_regular_file`.
"""

from __future__ import annotations

import errno
import os
import stat
import tempfile
from pathlib import Path

from adaptlab.core.errors import AdaptlabError

_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISSOCK, "a socket"),
)


def _kind(mode: int) -> str:
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_regular_file(
    path: Path,
    *,
    max_bytes: int,
    limit_name: str,
    what: str = "data file",
    error: type[AdaptlabError] = AdaptlabError,
    fix_path: str = "point data.path in adaptlab.yaml at a file",
    size_fix: str | None = None,
) -> bytes:
    """The bytes of ``path``; a clear ``error`` for anything but a readable regular file.

    The file is opened non-blocking (a FIFO swapped in after the check cannot hang
    the read), checked again on the open descriptor, and read with one bounded
    read, so a file that grows past ``max_bytes`` is refused, not swallowed.
    ``limit_name`` is the setting that raises the bound; the error names it.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise error(f"{what} not found", file=path, fix=fix_path, code="not-found") from None
    except OSError as exc:
        raise error(
            f"cannot read the {what}: {exc.strerror}", file=path, fix=fix_path, code="unreadable"
        ) from None
    if not stat.S_ISREG(mode):
        raise error(
            f"the {what} is {_kind(mode)}, not a regular file",
            file=path,
            fix=fix_path,
            code="not-regular",
        )
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as exc:
        fix = "make it readable (chmod u+r)" if isinstance(exc, PermissionError) else fix_path
        raise error(
            f"cannot read the {what}: {exc.strerror}", file=path, fix=fix, code="unreadable"
        ) from None
    with os.fdopen(fd, "rb") as fh:
        info = os.fstat(fh.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise error(
                f"the {what} is {_kind(info.st_mode)}, not a regular file",
                file=path,
                fix=fix_path,
                code="not-regular",
            )
        data = b"" if info.st_size > max_bytes else fh.read(max_bytes + 1)
        size = max(info.st_size, len(data))
    if size > max_bytes:
        raise error(
            f"the {what} is {_size(size)}, over the limit {limit_name} of {_size(max_bytes)}",
            file=path,
            fix=size_fix
            or f"raise {limit_name} in adaptlab.yaml if the file is meant to be this big, "
            "or check that the path names the right file",
            code="too-large",
        )
    return data


def _size(n: int) -> str:
    if n >= 1 << 20:
        return f"{n / (1 << 20):,.1f} MB"
    return f"{n:,} bytes"


def write_text_atomically(path: Path, text: str, *, newline: str | None = None) -> None:
    """Write ``text`` to ``path`` so that a reader sees the old file or the new one, never
    half of one: a temporary file beside it, flushed to disk, then renamed over it.

    ``newline`` is :func:`open`'s (``""`` writes line endings as given, as the csv module
    needs). The folder is created when missing. Raises ``OSError`` (``IsADirectoryError``
    when ``path`` is a folder); the CLI turns it into an error naming the file and the fix.
    """
    if path.is_dir():
        raise IsADirectoryError(errno.EISDIR, "Is a directory", str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from whoever it is shared with
        with os.fdopen(fd, "w", encoding="utf-8", newline=newline) as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
