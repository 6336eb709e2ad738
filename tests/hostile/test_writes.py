"""Kind 5 of issue 23: every write is safe, through links and on full disks.

Each command that writes a file for the user (``export results -o``, ``logs export
-o``, ``data convert -o``, ``decide`` rewriting ``adaptlab.yaml``) meets a full disk
(ENOSPC, EDQUOT, EFBIG, EIO at the write, at the fsync, at the rename), a folder that
cannot be written, links (to a file, dangling, a loop, into a folder that is gone) and
things that are no regular file (a folder, /dev/full, a FIFO nobody reads, a socket).
Every failure is a user error naming the file and a fix (no traceback), and the file
that was there is unchanged byte for byte, with no temporary file left beside it.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.hostile.conftest import base_config, write_project
from tests.hostile.projects import stored_project

OLD = b"old content\r\nwith two lines, kept byte for byte\n\x00\xff"

Command = Callable[[Path, Path], tuple[str, ...]]
COMMANDS: dict[str, Command] = {
    "export-results": lambda root, out: ("export", "results", "-p", str(root), "-o", str(out)),
    "logs-export": lambda root, out: ("logs", "export", "-p", str(root), "-o", str(out)),
    "data-convert": lambda root, out: (
        "data", "convert", "-p", str(root), "-c", "fs", "-o", str(out)
    ),
}  # fmt: skip


def _convert_project(root: Path) -> Path:
    cfg = base_config(
        llms={"chat": {"backend": "openai", "name": "gpt-4o-mini"}},
        candidates=[{"name": "fs", "strategy": "llm-few-shot", "llm": "chat"}],
    )
    return write_project(root, config=cfg)


@pytest.fixture
def projects(tmp_path: Path) -> dict[str, Path]:
    from tests.report.conftest import log_served_traffic

    stored = stored_project(tmp_path / "stored", ["a", "b"], 20)
    log_served_traffic(stored)  # something for 'logs export' to write
    return {
        "export-results": stored,
        "logs-export": stored,
        "data-convert": _convert_project(tmp_path / "convert"),
    }


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def _fail_os(monkeypatch: pytest.MonkeyPatch, name: str, code: int, after: int = 0) -> None:
    """``os.<name>`` as the writer calls it raises ``code`` (for os.write: after
    ``after`` bytes went through, as a disk that fills up mid-file)."""
    real = getattr(os, name)
    written = [0]

    def fail(*args: Any, **kw: Any) -> Any:
        if name == "write" and written[0] < after:
            fd, data = args
            n = real(fd, bytes(data)[: after - written[0]])
            written[0] += n
            return n
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr(f"adaptlab.core.files.os.{name}", fail)


FAILURES = [
    pytest.param("write", errno.ENOSPC, 0, ("no space left", "df -h"), id="write-enospc"),
    pytest.param("write", errno.ENOSPC, 7, ("no space left", "df -h"), id="write-enospc-midway"),
    pytest.param("write", errno.EDQUOT, 0, ("quota", "df -h"), id="write-edquot"),
    pytest.param("write", errno.EFBIG, 0, ("larger than", "ulimit"), id="write-efbig"),
    pytest.param("write", errno.EIO, 0, ("input/output error", "dmesg"), id="write-eio"),
    pytest.param("fsync", errno.ENOSPC, 0, ("no space left", "df -h"), id="fsync-enospc"),
    pytest.param("fsync", errno.EIO, 0, ("input/output error", "dmesg"), id="fsync-eio"),
    pytest.param("replace", errno.EIO, 0, ("input/output error", "dmesg"), id="rename-eio"),
    pytest.param("replace", errno.EXDEV, 0, ("cross-device", "dmesg"), id="rename-exdev"),
]


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(("call", "code", "after", "needles"), FAILURES)
def test_a_failed_write_keeps_the_old_file_whole(
    cli: Any,
    projects: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    call: str,
    code: int,
    after: int,
    needles: tuple[str, ...],
) -> None:
    out = tmp_path / "out" / "result.file"
    out.parent.mkdir()
    out.write_bytes(OLD)
    os.chmod(out, 0o640)
    _fail_os(monkeypatch, call, code, after)
    text = cli(*COMMANDS[command](projects[command], out)).error(str(out), *needles)
    assert "the old file is unchanged" in text
    assert out.read_bytes() == OLD and stat.S_IMODE(out.stat().st_mode) == 0o640
    assert _files(out.parent) == ["result.file"]  # no temporary file left


@pytest.mark.parametrize("command", list(COMMANDS))
@pytest.mark.parametrize(
    ("code", "needles"),
    [
        (errno.EACCES, ("permission denied", "chmod u+w")),
        (errno.EROFS, ("read-only", "writable disk")),
        (errno.ENOSPC, ("no space left", "df -h")),  # no inode left for the temporary file
    ],
    ids=["no-permission", "read-only-fs", "no-inode"],
)
def test_a_folder_that_takes_no_new_file(
    cli: Any,
    projects: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    code: int,
    needles: tuple[str, ...],
) -> None:
    """The temporary file cannot be made (as root a chmod would not stop it: simulated)."""
    out = tmp_path / "ro" / "result.file"
    out.parent.mkdir()
    out.write_bytes(OLD)

    def refuse(*args: Any, **kw: Any) -> Any:
        raise OSError(code, os.strerror(code), str(kw.get("dir", "")))

    monkeypatch.setattr("adaptlab.core.files.tempfile.mkstemp", refuse)
    cli(*COMMANDS[command](projects[command], out)).error(str(out), *needles)
    assert out.read_bytes() == OLD and _files(out.parent) == ["result.file"]


@pytest.mark.parametrize("command", [*COMMANDS, "decide"])
def test_a_read_only_file_is_not_replaced(
    cli: Any,
    projects: dict[str, Path],
    decided: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """chmod a-w protects a file from open(..., "w"); a rename would pass over it (it
    needs the folder's rights only), so the writer asks first. As root every file is
    writable: access() answers as it would for a user."""
    out = decided / "adaptlab.yaml" if command == "decide" else tmp_path / "kept.file"
    if command != "decide":
        out.write_bytes(OLD)
    before = out.read_bytes()
    os.chmod(out, 0o444)
    real = os.access
    monkeypatch.setattr(
        "adaptlab.core.files.os.access",
        lambda p, mode, **kw: False if Path(p) == out and mode == os.W_OK else real(p, mode),
    )
    args = _decide(decided) if command == "decide" else COMMANDS[command](projects[command], out)
    cli(*args).error(out.name, "read-only", "chmod u+w")
    assert out.read_bytes() == before and stat.S_IMODE(out.stat().st_mode) == 0o444


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_link_stays_a_link_and_its_target_gets_the_content(
    cli: Any, projects: dict[str, Path], tmp_path: Path, command: str
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    target = shared / "real.file"
    target.write_bytes(OLD)
    os.chmod(target, 0o600)
    link = tmp_path / "link.file"
    link.symlink_to(target)
    chain = tmp_path / "chain.file"
    chain.symlink_to(link)  # a link to a link: both stay
    cli(*COMMANDS[command](projects[command], chain)).ok()
    assert chain.is_symlink() and link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() != OLD
    assert stat.S_IMODE(target.stat().st_mode) == 0o600  # the old file's permission bits
    assert _files(shared) == ["real.file"]


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_dangling_link_gets_its_target_written(
    cli: Any, projects: dict[str, Path], tmp_path: Path, command: str
) -> None:
    link = tmp_path / "dangling.file"
    link.symlink_to(tmp_path / "made-by-the-write.file")
    cli(*COMMANDS[command](projects[command], link)).ok()
    assert link.is_symlink() and (tmp_path / "made-by-the-write.file").stat().st_size >= 0


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_link_into_a_missing_folder(
    cli: Any, projects: dict[str, Path], tmp_path: Path, command: str
) -> None:
    link = tmp_path / "dangling.file"
    link.symlink_to(tmp_path / "gone" / "x.file")
    cli(*COMMANDS[command](projects[command], link)).error(
        "dangling.file", "a link to", "folder does not exist", "create the folder"
    )
    assert link.is_symlink() and not (tmp_path / "gone").exists()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_link_loop(cli: Any, projects: dict[str, Path], tmp_path: Path, command: str) -> None:
    (tmp_path / "a.file").symlink_to(tmp_path / "b.file")
    (tmp_path / "b.file").symlink_to(tmp_path / "a.file")
    cli(*COMMANDS[command](projects[command], tmp_path / "a.file")).error(
        "a.file", "loop of symbolic links", "ls -l"
    )
    assert (tmp_path / "a.file").is_symlink() and (tmp_path / "b.file").is_symlink()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_link_into_a_folder_that_takes_no_file(
    cli: Any,
    projects: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    command: str,
) -> None:
    """The link's folder is writable, its target's is not: the error names both."""
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "real.file").write_bytes(OLD)
    link = tmp_path / "link.file"
    link.symlink_to(locked / "real.file")
    real = tempfile.mkstemp

    def mkstemp(*args: Any, **kw: Any) -> Any:
        if Path(kw["dir"]) == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(locked))
        return real(*args, **kw)

    monkeypatch.setattr("adaptlab.core.files.tempfile.mkstemp", mkstemp)
    cli(*COMMANDS[command](projects[command], link)).error(
        "link.file", f"a link to {locked / 'real.file'}", "permission denied", str(locked)
    )
    assert (locked / "real.file").read_bytes() == OLD and link.is_symlink()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_folder_at_the_path(
    cli: Any, projects: dict[str, Path], tmp_path: Path, command: str
) -> None:
    folder = tmp_path / "taken"
    folder.mkdir()
    (folder / "keep.txt").write_bytes(OLD)
    result = cli(*COMMANDS[command](projects[command], folder))
    # click's own check (data convert's -o is a click.Path) or the writer's: clear either way
    assert result.code == 2 and ("a folder is here" in result.text or "directory" in result.text)
    assert _files(folder) == ["keep.txt"] and (folder / "keep.txt").read_bytes() == OLD


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
@pytest.mark.parametrize("command", list(COMMANDS))
def test_dev_full_is_a_clear_no_space_and_stays_a_device(
    cli: Any, projects: dict[str, Path], command: str
) -> None:
    cli(*COMMANDS[command](projects[command], Path("/dev/full"))).error(
        "/dev/full", "no space left", "regular file"
    )
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)  # never replaced by a file (as root)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_dev_null_is_written_as_a_stream(cli: Any, projects: dict[str, Path], command: str) -> None:
    cli(*COMMANDS[command](projects[command], Path("/dev/null"))).ok()
    assert stat.S_ISCHR(os.stat("/dev/null").st_mode)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_fifo_nobody_reads_is_refused_not_waited_for(
    cli: Any, projects: dict[str, Path], tmp_path: Path, command: str
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    cli(*COMMANDS[command](projects[command], fifo)).error("pipe", "no program reads it", "cat")
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_fifo_with_a_reader_gets_the_stream(
    cli: Any, projects: dict[str, Path], tmp_path: Path, command: str
) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    opened = threading.Event()

    def read() -> None:
        # open first, as `cat pipe &` does; then read until the writer has come and gone
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)
        opened.set()
        try:
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline:
                try:
                    data = os.read(fd, 1 << 16)
                except BlockingIOError:
                    data = None  # a writer is connected, nothing to read yet
                if data:
                    got.append(data)
                elif data == b"" and got:
                    return  # the writer closed
                else:
                    time.sleep(0.01)
        finally:
            os.close(fd)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    assert opened.wait(5)
    cli(*COMMANDS[command](projects[command], fifo)).ok()
    reader.join(10)
    assert stat.S_ISFIFO(os.stat(fifo).st_mode)
    assert b"".join(got)


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_socket_is_refused(
    cli: Any, projects: dict[str, Path], tmp_path: Path, command: str
) -> None:
    path = tmp_path / "s.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(str(path))
        cli(*COMMANDS[command](projects[command], path)).error("s.sock", "a socket", "regular")
        assert stat.S_ISSOCK(os.stat(path).st_mode)
    finally:
        sock.close()


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_file_on_the_way_where_a_folder_belongs(
    cli: Any, projects: dict[str, Path], tmp_path: Path, command: str
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_bytes(OLD)
    cli(*COMMANDS[command](projects[command], blocker / "out.file")).error(
        "not-a-folder", "a file is on the way", "move that file away"
    )
    assert blocker.read_bytes() == OLD


@pytest.mark.parametrize("command", list(COMMANDS))
def test_a_new_file_gets_the_usual_permissions(
    cli: Any, projects: dict[str, Path], tmp_path: Path, command: str
) -> None:
    out = tmp_path / "new" / "deeper" / "fresh.file"  # missing folders are made
    cli(*COMMANDS[command](projects[command], out)).ok()
    mask = os.umask(0o022)
    os.umask(mask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600
    assert _files(out.parent) == ["fresh.file"]


# ---------------------------------------------------------------- decide


@pytest.fixture
def decided(tmp_path: Path) -> Path:
    root = stored_project(tmp_path / "p", ["a", "b"], 20)
    # CRLF line endings and a comment: what decide does not own stays byte for byte
    text = (root / "adaptlab.yaml").read_text().replace("\n", "\r\n")
    (root / "adaptlab.yaml").write_bytes(b"# my notes\r\n" + text.encode())
    return root


def _decide(root: Path) -> tuple[str, ...]:
    return ("decide", "-p", str(root), "--monthly-requests", "123456", "--no-input")


@pytest.mark.parametrize(("call", "code", "after", "needles"), FAILURES)
def test_decide_on_a_full_disk_leaves_adaptlab_yaml_whole(
    cli: Any,
    decided: Path,
    monkeypatch: pytest.MonkeyPatch,
    call: str,
    code: int,
    after: int,
    needles: tuple[str, ...],
) -> None:
    config = decided / "adaptlab.yaml"
    before = config.read_bytes()
    _fail_os(monkeypatch, call, code, after)
    cli(*_decide(decided)).error(str(config), *needles)
    assert config.read_bytes() == before
    assert [p.name for p in decided.iterdir() if p.name.endswith(".tmp")] == []


def test_decide_keeps_the_rest_of_the_file_byte_for_byte(cli: Any, decided: Path) -> None:
    config = decided / "adaptlab.yaml"
    before = config.read_bytes()
    cli(*_decide(decided)).ok()
    after = config.read_bytes()
    assert after.startswith(b"# my notes\r\n") and b"monthly_requests: 123456" in after
    profile_free = [ln for ln in before.split(b"\r\n") if b"profile" not in ln]
    assert all(line in after for line in profile_free)
    assert yaml.safe_load(after)["profile"]["monthly_requests"] == 123456


def test_decide_writes_through_a_linked_adaptlab_yaml(cli: Any, tmp_path: Path) -> None:
    root = stored_project(tmp_path / "p", ["a", "b"], 20)
    shared = tmp_path / "configs" / "shared.yaml"
    shared.parent.mkdir()
    (root / "adaptlab.yaml").rename(shared)
    os.chmod(shared, 0o640)
    (root / "adaptlab.yaml").symlink_to(shared)
    cli(*_decide(root)).ok()
    assert (root / "adaptlab.yaml").is_symlink()
    assert yaml.safe_load(shared.read_text())["profile"]["monthly_requests"] == 123456
    assert stat.S_IMODE(shared.stat().st_mode) == 0o640
    assert sorted(p.name for p in shared.parent.iterdir()) == ["shared.yaml"]


def test_decide_in_a_folder_that_takes_no_new_file(
    cli: Any, decided: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kw: Any) -> Any:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS))

    monkeypatch.setattr("adaptlab.core.files.tempfile.mkstemp", refuse)
    config = decided / "adaptlab.yaml"
    before = config.read_bytes()
    cli(*_decide(decided)).error(str(config), "read-only", "writable disk")
    assert config.read_bytes() == before


# ---------------------------------------------------------------- the writer itself


def test_a_failure_inside_the_with_block_removes_the_temporary_file(tmp_path: Path) -> None:
    from adaptlab.core.files import open_for_writing

    out = tmp_path / "x.txt"
    out.write_bytes(OLD)
    with pytest.raises(KeyError), open_for_writing(out) as fh:
        fh.write("half of it")
        raise KeyError("the caller's own failure passes through")
    assert out.read_bytes() == OLD and _files(tmp_path) == ["x.txt"]


def test_dev_stdout_is_streamed_not_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """/dev/stdout -> /proc/self/fd/1 -> the file a redirect opened: appended to, never
    renamed over (that would make a file named after the descriptor's target)."""
    from adaptlab.core.files import write_text_atomically

    if not Path("/proc/self/fd").is_dir():
        pytest.skip("no /proc here")
    target = tmp_path / "redirected.txt"
    target.write_bytes(b"earlier\n")
    fd = os.open(target, os.O_WRONLY | os.O_APPEND)
    try:
        write_text_atomically(Path(f"/proc/self/fd/{fd}"), "streamed\n")
    finally:
        os.close(fd)
    assert target.read_bytes() == b"earlier\nstreamed\n" and _files(tmp_path) == ["redirected.txt"]


def _iter_names() -> Iterator[str]:
    yield from ("-rf.json", "with space.json", "quote'd.json", "tab\there.json")


@pytest.mark.parametrize("name", list(_iter_names()))
def test_odd_output_names_are_written_and_named_in_a_fix_safely(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """A name with a leading dash, a space or a quote is written as given; a fix that
    names its folder in a shell command quotes it (./-x, 'a b')."""
    import shlex

    from adaptlab.core.files import WriteError, write_text_atomically

    folder = tmp_path / name.replace(".json", "")
    folder.mkdir()
    write_text_atomically(folder / name, "ok")
    assert (folder / name).read_text() == "ok"
    _fail_os(monkeypatch, "fsync", errno.ENOSPC)
    with pytest.raises(WriteError) as exc:
        write_text_atomically(folder / name, "new")
    fix = exc.value.fix or ""
    command = fix[fix.index("df -h ") : fix.index(")")]
    assert shlex.split(command)[2] == str(folder)  # one word, the folder itself
    assert (folder / name).read_text() == "ok"
