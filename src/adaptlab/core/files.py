"""Read a user's file only when it is a regular file, and never more than a bound;
write one whole or not at all.

``Path.read_bytes()`` of ``/dev/zero`` grows until memory runs out, of a FIFO waits
forever, and of a folder raises ``IsADirectoryError``; everything adaptlab reads from
a project (data files, ``adaptlab.yaml``) goes through :func:`read_regular_file`.

Every file the CLI writes for the user (``export results -o``, ``logs export -o``,
``data convert``, ``predict -o``, the ``profile:`` block ``decide`` writes into
``adaptlab.yaml``, the report) goes through :func:`open_for_writing`: a temporary file
beside the *target* (a link is resolved, so it stays a link and its target gets the
content), flushed to disk, then renamed over it, with the old file's permission bits.
A full disk, a quota, an I/O error or a folder in the way leaves the old file whole
byte for byte and raises :class:`WriteError` naming the file and the fix. A terminal,
``/dev/stdout`` or a named pipe is written to as a stream (nothing can be renamed over
a device); a block device or a socket is refused. :func:`read_npy` reads a ``.npy``
array only after its header showed a numeric array within a bound.
"""

from __future__ import annotations

import errno
import io
import math
import os
import shlex
import stat
import tempfile
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

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


def open_regular_file(
    path: Path, *, what: str, fix: str, error: type[AdaptlabError] = AdaptlabError
) -> IO[bytes]:
    """``path`` opened for reading in binary, only when it is a regular file: checked
    before it is opened (no device or pipe is ever opened), opened non-blocking (a FIFO
    swapped in after the check cannot hang it) and checked again on the open
    descriptor. For reads that stream (line by line, a header first) and bound
    themselves. Raises ``error`` (codes "not-found", "unreadable", "not-regular") naming
    the file and ``fix`` (for a file without read permission: how to grant it)."""

    def not_regular(mode: int) -> AdaptlabError:
        return error(
            f"the {what} is {_kind(mode)}, not a regular file",
            file=path,
            fix=fix,
            code="not-regular",
        )

    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode):
            raise not_regular(mode)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except FileNotFoundError:
        raise error(f"{what} not found", file=path, fix=fix, code="not-found") from None
    except OSError as exc:
        how = "make it readable (chmod u+r)" if isinstance(exc, PermissionError) else fix
        raise error(
            f"cannot read the {what}: {exc.strerror}", file=path, fix=how, code="unreadable"
        ) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise not_regular(mode)
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


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
    """The bytes of ``path``; a clear ``error`` for anything but a readable regular file
    (:func:`open_regular_file`), read with one bounded read, so a file that grows past
    ``max_bytes`` is refused, not swallowed. ``limit_name`` is the setting that raises
    the bound; the error names it.
    """
    with open_regular_file(path, what=what, fix=fix_path, error=error) as fh:
        size = os.fstat(fh.fileno()).st_size
        data = b""
        if size <= max_bytes:
            # read(n) allocates n bytes up front: ask for the size it has, then for what
            # it grew by since (up to the bound), never for the bound itself
            data = fh.read(size + 1)
            if len(data) > size:
                data += fh.read(max_bytes + 1 - len(data))
        size = max(size, len(data))
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


def shell_path(path: str | Path) -> str:
    """``path`` as one word of a shell command in a fix: quoted when it holds spaces or
    quotes, and after ``./`` when it starts with ``-`` (a name, not an option)."""
    text = str(path)
    if text.startswith("-"):
        text = "./" + text
    return shlex.quote(text)


# Bidirectional overrides and isolates reorder how the rest of a line is shown.
_BIDI = frozenset("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def printable_name(name: str) -> str:
    """A file name as it can be shown in a terminal and stored as UTF-8 text.

    Bytes of a name that is not UTF-8 (Python keeps them as lone surrogates,
    ``os.fsdecode``) become ``\\xNN``; control characters (newline, ESC, …), line and
    paragraph separators and bidirectional overrides become ``\\n``, ``\\x1b``,
    ``\\u202e``; every other character is kept. A name that needs none of this is
    returned as it is.
    """
    if name.isprintable() and name.isascii():
        return name
    out: list[str] = []
    for ch in name:
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # surrogateescape: the undecodable byte code - 0xDC00
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch in "\n\r\t":
            out.append({"\n": "\\n", "\r": "\\r", "\t": "\\t"}[ch])
        elif unicodedata.category(ch) in ("Cc", "Cs", "Zl", "Zp") or ch in _BIDI:
            out.append(f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}")
        else:
            out.append(ch)
    return "".join(out)


class WriteError(AdaptlabError):
    """A file could not be written; the file that was there (if any) is unchanged."""


def _write_error(
    exc: OSError, path: Path, target: Path, what: str, *, replacing: bool | None
) -> WriteError:
    """``exc`` (raised while writing ``path``, whose real file is ``target``) in words;
    ``replacing``: an old file is kept (True), none was there (False), a stream (None)."""
    code = exc.errno or 0
    link = f" (a link to {printable_name(str(target))})" if target != path else ""
    kept = (
        ""
        if replacing is None
        else "; the old file is unchanged"
        if replacing
        else "; nothing was written"
    )
    folder = shell_path(target.parent)
    if code in (errno.ENOSPC, getattr(errno, "EDQUOT", -1), errno.EFBIG):
        problem = {
            errno.ENOSPC: "no space left on the device",
            errno.EFBIG: "the file would be larger than this system allows (ulimit -f)",
        }.get(code, "no space left on the device (disk quota exceeded)")
        fix = (
            f"free some space there (df -h {folder}) or write to another disk, then run again"
            if replacing is not None
            else "it is a device that takes no more data: name a regular file on a disk with "
            "space (-o results.json)"
        )
        kind = "disk-full"
    elif code == errno.EROFS:
        problem, fix, kind = (
            "on a read-only file system",
            "write to a folder on a writable disk",
            "read-only",
        )
    elif code in (errno.EACCES, errno.EPERM):
        problem = "permission denied"
        fix = f"make the folder writable for your user (chmod u+w {folder}) or write elsewhere"
        kind = "permission"
    elif code == errno.EISDIR:
        problem = "a folder is here, where a file is to be written"
        fix = f"name a file inside it ({shell_path(path / 'out.jsonl')}) or move the folder away"
        kind = "is-a-folder"
    elif code in (errno.ENOTDIR, errno.EEXIST):
        blocker = next(
            (p for p in target.parents if os.path.lexists(p) and not os.path.isdir(p)), None
        )
        shown = shell_path(printable_name(str(blocker))) if blocker else "it"
        problem = (
            f"a file is on the way to it, where a folder must be ({printable_name(str(blocker))})"
            if blocker
            else "a file is on the way to it, where a folder must be"
        )
        fix = f"move that file away (mv {shown} {shown}.bak) or choose another path"
        kind = "not-a-folder"
    elif code == errno.ELOOP:
        problem = "a loop of symbolic links"
        fix = f"remove or repoint the link (ls -l {shell_path(path)}), or name another file"
        kind = "link-loop"
    elif code == errno.ENAMETOOLONG:
        problem = "the name is too long for the file system"
        fix = "choose a shorter name"
        kind = "name-too-long"
    elif code == errno.ENOENT:
        problem = "its folder does not exist"
        fix = "create the folder first, or name a file in an existing one"
        kind = "missing"
    elif code == errno.EPIPE:
        problem = "the program reading it stopped"
        fix = "keep the reading program running, or write to a regular file"
        kind = "broken-pipe"
    else:
        problem = exc.strerror or type(exc).__name__
        fix = "check the disk (dmesg) and the folder, or write to another folder"
        kind = "write-failed"
    return WriteError(
        f"cannot write {what}{link}: {problem}{kept}",
        file=printable_name(str(path)),
        fix=fix,
        code=kind,
    )


def _stream_error(path: Path, what: str, kind: str) -> WriteError:
    return WriteError(
        f"cannot write {what}: it is {kind}; adaptlab writes regular files, terminals and "
        "named pipes only",
        file=printable_name(str(path)),
        fix="name a regular file (-o results.json), or leave -o out to write to standard output",
        code="not-regular",
    )


class _FdWriter(io.RawIOBase):
    """The raw file under the text stream; its writes go through ``os.write``."""

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    def write(self, data: Any) -> int:
        return os.write(self._fd, data)

    def close(self) -> None:
        if not self.closed:
            try:
                os.close(self._fd)
            finally:
                super().close()


class Output:
    """What :func:`open_for_writing` yields: ``write(text)`` and ``flush()``, each
    raising :class:`WriteError` (naming the file and the fix) instead of ``OSError``."""

    def __init__(self, stream: IO[str], fail: Callable[[OSError], WriteError]) -> None:
        self._stream = stream
        self._fail = fail

    def write(self, text: str) -> int:
        try:
            return self._stream.write(text)
        except OSError as exc:
            raise self._fail(exc) from None

    def flush(self) -> None:
        try:
            self._stream.flush()
        except OSError as exc:
            raise self._fail(exc) from None


def _text(fd: int, newline: str | None) -> IO[str]:
    return io.TextIOWrapper(
        io.BufferedWriter(_FdWriter(fd), 1 << 16), encoding="utf-8", newline=newline
    )


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def open_for_writing(
    path: str | Path, *, what: str = "the file", newline: str | None = None
) -> Iterator[Output]:
    """Write UTF-8 text to ``path`` whole or not at all; ``what`` names it in errors.

    A regular file (or a new one; missing folders are created) is written as a
    temporary file beside the link's target, flushed to disk and renamed over it:
    the old file keeps its content byte for byte until the rename, and the new one
    gets its permission bits. A terminal, ``/dev/stdout`` or a named pipe is written
    to as a stream (a pipe nobody reads is refused, not waited for). ``newline`` is
    :func:`open`'s (``""`` writes line endings as given). Raises :class:`WriteError`
    for a folder, a block device or a socket at the path, a link loop, and every
    ``OSError`` of the write (full disk, quota, I/O error, no permission); an
    exception from the ``with`` body removes the temporary file and passes through.
    """
    path = Path(path)
    try:
        info: os.stat_result | None = os.stat(path)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise _write_error(exc, path, path, what, replacing=False) from None
    if info is not None and stat.S_ISREG(info.st_mode) and _through_proc(path):
        # /dev/stdout, /dev/fd/N, /proc/self/fd/N: the file a descriptor of this process
        # has open (a shell's redirect); appended to, as `>` and `>>` both expect.
        with _stream(path, what, newline, append=True) as out:
            yield out
        return
    if info is not None and not stat.S_ISREG(info.st_mode):
        if stat.S_ISDIR(info.st_mode):
            raise _write_error(
                IsADirectoryError(errno.EISDIR, "Is a directory"),
                path,
                path,
                what,
                replacing=False,
            )
        if stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode):
            with _stream(path, what, newline) as out:
                yield out
            return
        raise _stream_error(path, what, _kind(info.st_mode))
    # A link (or a chain of them) is resolved: its target is replaced, the link stays.
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    replacing = info is not None

    def fail(exc: OSError) -> WriteError:
        return _write_error(exc, path, target, what, replacing=replacing)

    if replacing and not os.access(target, os.W_OK):
        # the rename would succeed (it needs the folder's rights), but the user made
        # the file read-only: respect that, as open(path, "w") would
        raise WriteError(
            f"cannot write {what}: the file is read-only; the old file is unchanged",
            file=printable_name(str(path)),
            fix=f"make it writable (chmod u+w {shell_path(printable_name(str(target)))}) if "
            "it is meant to be replaced, or write elsewhere",
            code="permission",
        )
    try:
        if path.is_symlink() and not target.parent.is_dir():
            raise FileNotFoundError(errno.ENOENT, "No such file or directory", str(target))
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name[:40]}.", suffix=".tmp")
    except OSError as exc:
        raise fail(exc) from None
    stream: IO[str] | None = None
    try:
        try:
            _same_mode(fd, info)
            stream = _text(fd, newline)
        except OSError as exc:
            os.close(fd)
            raise fail(exc) from None
        yield Output(stream, fail)
        try:
            stream.flush()
            os.fsync(stream.fileno())
            stream.close()
            os.replace(tmp, target)
        except OSError as exc:
            raise fail(exc) from None
    except BaseException:
        if stream is not None:
            with suppress(OSError, ValueError):
                stream.close()  # the buffer's flush may fail again on a full disk
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_folder(target.parent)


def _through_proc(path: Path) -> bool:
    """Whether ``path`` or a link on the way to it lies in ``/proc`` (a descriptor's
    magic link: renaming over its target would write a file named "pipe:[…]")."""
    hop = os.path.abspath(path)
    for _ in range(40):
        if hop == "/proc" or hop.startswith("/proc/"):
            return True
        try:
            link = os.readlink(hop)
        except OSError:
            return False
        hop = os.path.normpath(os.path.join(os.path.dirname(hop), link))
    return False


def _same_mode(fd: int, info: os.stat_result | None) -> None:
    """Give the temporary file the old file's permission bits (and owner, where
    allowed), or a new file's usual ones: mkstemp's 0600 would hide it."""
    if os.chmod not in os.supports_fd:  # Windows: a new file is readable already
        return
    if info is None:
        os.chmod(fd, 0o666 & ~_umask())
        return
    os.chmod(fd, stat.S_IMODE(info.st_mode) & 0o777)  # never setuid/setgid bits
    if hasattr(os, "fchown"):
        with suppress(OSError):
            os.fchown(fd, info.st_uid, info.st_gid)


@contextmanager
def _stream(
    path: Path, what: str, newline: str | None, *, append: bool = False
) -> Iterator[Output]:
    """Write to a terminal, device or named pipe as it is: nothing to replace there."""

    def fail(exc: OSError) -> WriteError:
        return _write_error(exc, path, path, what, replacing=None)

    flags = os.O_WRONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)
    flags |= os.O_APPEND if append else 0
    try:
        fd = os.open(path, flags)  # non-blocking: a pipe nobody reads fails (ENXIO) at once
    except OSError as exc:
        if exc.errno == errno.ENXIO:
            raise WriteError(
                f"cannot write {what}: it is a named pipe and no program reads it",
                file=printable_name(str(path)),
                fix=f"start the reader first (cat {shell_path(path)} &), or name a regular file",
                code="no-reader",
            ) from None
        raise fail(exc) from None
    info = os.fstat(fd)
    streamable = stat.S_ISCHR(info.st_mode) or stat.S_ISFIFO(info.st_mode)
    if not (streamable or (append and stat.S_ISREG(info.st_mode))):  # swapped meanwhile
        os.close(fd)
        raise _stream_error(path, what, _kind(info.st_mode))
    if hasattr(os, "set_blocking"):
        os.set_blocking(fd, True)
    stream = _text(fd, newline)
    try:
        yield Output(stream, fail)
        try:
            stream.flush()
        except OSError as exc:
            raise fail(exc) from None
    finally:
        with suppress(OSError, ValueError):
            stream.close()


def write_text_atomically(
    path: Path, text: str, *, newline: str | None = None, what: str = "the file"
) -> None:
    """Write ``text`` to ``path`` whole or not at all (:func:`open_for_writing`).

    ``newline`` is :func:`open`'s (``""`` writes line endings as given, as the csv
    module needs). Raises :class:`WriteError` naming the file and the fix; the file
    that was there is then unchanged.
    """
    with open_for_writing(path, what=what, newline=newline) as out:
        out.write(text)


def fsync_folder(path: Path) -> None:
    """Make a folder's entries durable (POSIX; a no-op where folders cannot be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class ArrayTooLarge(ValueError):
    """An .npy header declares more data than the bound allows."""


#: dtype kinds an array of a model or an index may have: bool, integers, floats.
NUMERIC_KINDS = "biuf"


def read_npy(
    fh: IO[bytes],
    *,
    stored_bytes: int,
    max_bytes: int,
    shape: tuple[int | None, ...] | None = None,
    kinds: str = NUMERIC_KINDS,
) -> np.ndarray:
    """The array of a ``.npy`` stream, allocated only after its header was checked.

    ``stored_bytes`` is how many bytes the stream holds (the file size, or a zip
    member's uncompressed size); the header must declare a numeric dtype (``kinds``),
    no more data than that and at most ``max_bytes``, and ``shape`` when given (None
    for any length on that axis). Raises ``ValueError`` saying what the header declares
    and which check it fails (:class:`ArrayTooLarge` for the bound); nothing is allocated
    for the data before that.
    """
    import numpy as np
    from numpy.lib import format as npy

    try:
        version = npy.read_magic(fh)
        if version == (1, 0):
            declared, fortran, dtype = npy.read_array_header_1_0(fh)
        elif version == (2, 0):
            declared, fortran, dtype = npy.read_array_header_2_0(fh)
        else:
            raise ValueError(f"it is .npy format {version}, which adaptlab does not read")
    except ValueError as exc:
        raise ValueError(f"its .npy header cannot be read ({exc})") from None
    if dtype.hasobject or dtype.kind not in kinds or dtype.names or dtype.subdtype:
        raise ValueError(f"it declares dtype {dtype}, not a numeric one")
    if any(d < 0 for d in declared):
        raise ValueError(f"it declares shape {declared}, with a negative length")
    if shape is not None and (
        len(declared) != len(shape)
        or any(want is not None and want != got for want, got in zip(shape, declared, strict=True))
    ):
        want = "(" + ", ".join("any" if d is None else str(d) for d in shape) + ")"
        raise ValueError(f"it declares shape {declared}, where this needs {want}")
    size = math.prod(declared) * dtype.itemsize
    if size > max_bytes:
        raise ArrayTooLarge(
            f"it declares shape {declared} of {dtype} ({size:,} bytes), over the limit of "
            f"{max_bytes:,} bytes"
        )
    if size > stored_bytes - fh.tell():
        raise ValueError(
            f"it declares shape {declared} of {dtype} ({size:,} bytes) in {stored_bytes:,} "
            "bytes: it is cut off or lies about its size"
        )
    data = bytearray(size)  # writable: the array owns this memory, as np.load's does
    view, got = memoryview(data), 0
    while got < size:
        n = fh.readinto(view[got:])  # type: ignore[attr-defined]
        if not n:
            raise ValueError(f"it is cut off after {got:,} of {size:,} bytes")
        got += n
    return np.frombuffer(data, dtype=dtype).reshape(declared, order="F" if fortran else "C")
