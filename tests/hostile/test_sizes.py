"""Kind 6 of issue 23: every size is bounded before it is paid for.

A model folder's ``.npz`` that declares or inflates to any size, a retrieval index whose
files lie about their sizes, a small PDF holding 20,000 pages of text, and a 1 GB or
endless ``predict`` input. Each is refused (or cut, with a note) before the memory or
the time is spent: the refusals here allocate a few MB at most (tracemalloc) and end in
well under a second; nothing is read whole that a user file can make huge.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import time
import tracemalloc
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from adaptlab.core.errors import AdaptlabError
from adaptlab.strategies.state import StateError, load_arrays
from tests.hostile.conftest import LABELS

# ---------------------------------------------------------------- .npz of a model folder


def npy(
    shape: tuple[int, ...], descr: str = "<f4", data: bytes = b"", *, version: int = 1
) -> bytes:
    """An .npy file whose header declares ``shape`` and ``descr``, followed by ``data``
    (not necessarily as much as declared)."""
    header = repr({"descr": descr, "fortran_order": False, "shape": shape}).encode("latin1")
    if version == 1:
        pad = -(10 + len(header) + 1) % 64
        return (
            b"\x93NUMPY\x01\x00"
            + struct.pack("<H", len(header) + pad + 1)
            + header
            + b" " * pad
            + b"\n"
            + data
        )
    pad = -(12 + len(header) + 1) % 64
    return (
        b"\x93NUMPY"
        + bytes([version, 0])
        + struct.pack("<I", len(header) + pad + 1)
        + header
        + b" " * pad
        + b"\n"
        + data
    )


def npz(members: dict[str, bytes], *, compress: bool = False) -> bytes:
    buf = io.BytesIO()
    method = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def saved(**arrays: Any) -> bytes:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def lying_size(members: dict[str, bytes], declared: int) -> bytes:
    """A stored zip whose one member says it is ``declared`` bytes (both headers)."""
    data = npz(members)
    ((_, content),) = members.items()
    real = struct.pack("<I", len(content))
    fake = struct.pack("<I", declared)
    local = data.index(b"PK\x03\x04")
    central = data.index(b"PK\x01\x02")
    out = bytearray(data)
    for at in (local + 18, local + 22, central + 20, central + 24):
        assert out[at : at + 4] == real
        out[at : at + 4] = fake
    return bytes(out)


def _vectors(rows: int = 6, dim: int = 8) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((rows, dim)).astype(np.float32)


SHAPE = {"vectors": (len(LABELS), None)}
ONE_MB = {"ADAPTLAB_MAX_STATE_MB": "1"}

Bomb = tuple[Callable[[], bytes], dict[str, str], tuple[str, ...]]


def _vec_member(shape: tuple[int, ...], descr: str = "<f4", data: bytes = b"") -> bytes:
    return npz({"vectors.npy": npy(shape, descr, data)})


def _inflating() -> bytes:
    return npz({"vectors.npy": npy((6, 1 << 16), "<f4", bytes(6 * 4 << 16))}, compress=True)


def _bad_crc() -> bytes:
    good = saved(vectors=_vectors())
    return good.replace(_vectors().tobytes()[:16], b"\x00" * 16)


# name -> (file bytes, environment, needles of the refusal)
BOMBS: dict[str, Bomb] = {
    "declares-a-terabyte-in-248-bytes": (
        lambda: _vec_member((6, 1 << 38)),
        {},
        ("(6, 274877906944)", "over the limit"),
    ),
    "declares-more-rows-than-labels": (
        lambda: _vec_member((1 << 30, 8)),
        {},
        ("needs (6, any)",),
    ),
    "declares-more-than-it-holds": (
        lambda: _vec_member((6, 1 << 20), "<f4", b"\0" * 64),
        {},
        ("lies about its size",),
    ),
    "inflates-past-the-limit": (
        _inflating,
        ONE_MB,
        ("over the limit of 1 MB", "ADAPTLAB_MAX_STATE_MB"),
    ),
    "zip-says-it-inflates-to-4-gb": (
        lambda: lying_size({"vectors.npy": npy((6, 8), "<f4", bytes(192))}, (4 << 30) - 1),
        {},
        ("over the limit of 2,048 MB", "ADAPTLAB_MAX_STATE_MB"),
    ),
    "zip-says-it-is-smaller-than-it-is": (
        lambda: lying_size({"vectors.npy": npy((6, 8), "<f4", bytes(192))}, 100),
        {},
        ("not a readable array file",),
    ),
    "object-array": (
        lambda: _vec_member((6, 8), "|O", b"\x80\x04"),
        {},
        ("object", "not a numeric"),
    ),
    "structured-array": (
        lambda: saved(vectors=np.zeros(6, dtype=[("a", "<f4"), ("b", "<i4")])),
        {},
        ("not a numeric",),
    ),
    "string-array": (
        lambda: saved(vectors=np.array([["x"] * 8] * 6)),
        {},
        ("<U1", "not a numeric"),
    ),
    "complex-array": (
        lambda: saved(vectors=np.zeros((6, 8), np.complex64)),
        {},
        ("complex64",),
    ),
    "datetime-array": (
        lambda: saved(vectors=np.zeros((6, 8), "datetime64[s]")),
        {},
        ("datetime64",),
    ),
    "one-dimensional": (
        lambda: saved(vectors=np.zeros(6, np.float32)),
        {},
        ("shape (6,)", "needs (6, any)"),
    ),
    "negative-length": (lambda: _vec_member((6, -8)), {}, ("negative",)),
    "header-format-3": (
        lambda: npz({"vectors.npy": npy((6, 8), "<f4", bytes(192), version=3)}),
        {},
        ("format (3, 0)",),
    ),
    "header-not-a-dict": (
        lambda: npz({"vectors.npy": b"\x93NUMPY\x01\x00\x10\x00" + b"[1, 2, 3]      \n"}),
        {},
        ("header cannot be read", "not a dictionary"),
    ),
    "not-an-npy-member": (
        lambda: npz({"vectors.npy": b"PK not numpy at all"}),
        {},
        ("header cannot be read", "magic string"),
    ),
    "cut-off-member": (
        lambda: _vec_member((6, 8), "<f4", bytes(100)),
        {},
        ("lies about its size",),
    ),
    "bad-crc": (_bad_crc, {}, ("readable",)),
    "not-a-zip": (lambda: os.urandom(300), {}, ("not a readable array file",)),
    "missing-array": (
        lambda: saved(other=_vectors()),
        {},
        ("lacks the array(s) vectors",),
    ),
    "file-over-the-limit": (
        lambda: saved(vectors=_vectors(), pad=np.zeros(1 << 19)),
        ONE_MB,
        ("over the limit of 1 MB",),
    ),
    "bad-limit-setting": (
        lambda: saved(vectors=_vectors()),
        {"ADAPTLAB_MAX_STATE_MB": "lots"},
        ("not a size in MB",),
    ),
}


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", list(BOMBS))
def test_a_hostile_npz_is_refused_before_it_is_allocated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str
) -> None:
    make, env, needles = BOMBS[case]
    (tmp_path / "state.npz").write_bytes(make())
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(AdaptlabError) as exc:
            load_arrays(tmp_path, "state.npz", ("vectors",), SHAPE)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.perf_counter() - start
    text = str(exc.value)
    assert all(n in text for n in needles), text
    assert exc.value.fix, text
    if case != "bad-limit-setting":
        assert isinstance(exc.value, StateError) and "state.npz" in text
    assert peak < 8 << 20, f"{peak:,} bytes allocated"  # the declared sizes are GB
    assert seconds < 2


def test_a_fitting_npz_is_read_whole_and_writable(tmp_path: Path) -> None:
    """The control: the same checks pass a model's own arrays, C or Fortran order."""
    vectors = _vectors()
    (tmp_path / "s.npz").write_bytes(saved(vectors=vectors, f=np.asfortranarray(vectors)))
    got = load_arrays(tmp_path, "s.npz", ("vectors", "f"), {"vectors": (6, None)})
    assert np.array_equal(got["vectors"], vectors) and np.array_equal(got["f"], vectors)
    got["vectors"][0, 0] = 1.0  # owns writable memory, as np.load's arrays do


def test_the_limit_is_raised_by_the_users_environment_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make = BOMBS["inflates-past-the-limit"][0]
    (tmp_path / "s.npz").write_bytes(make())
    monkeypatch.setenv("ADAPTLAB_MAX_STATE_MB", "4")
    assert load_arrays(tmp_path, "s.npz", ("vectors",), SHAPE)["vectors"].shape == (6, 1 << 16)


def test_a_model_json_file_is_bounded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adaptlab.strategies import state

    monkeypatch.setattr(state, "JSON_MAX_BYTES", 1000)
    (tmp_path / "labels.json").write_text(json.dumps(["x" * 50] * 100))
    with pytest.raises(StateError) as exc:
        state.load_json(tmp_path, "labels.json")
    assert "labels.json" in str(exc.value) and "over the limit" in str(exc.value)


# ---------------------------------------------------------------- the same through the CLI


class FakeEncoder:
    """An encoder that embeds every text as the same unit vector (no model to load)."""

    def __init__(self, dim: int = 8) -> None:
        self.dim = dim

    def embed(self, texts: Any, **kw: Any) -> np.ndarray:
        return np.full((len(texts), self.dim), self.dim**-0.5, dtype=np.float32)


def model_folder(folder: Path, state_file: bytes) -> Path:
    """A zero-shot model folder as ``adaptlab export`` writes it, around ``state_file``
    (its hash in the manifest: the folder's maker controls both)."""
    folder.mkdir(parents=True)
    (folder / "label_vectors.npz").write_bytes(state_file)
    manifest = {
        "format": "adaptlab-model",
        "format_version": 1,
        "adaptlab_version": "0.1.0",
        "created_at": "2026-01-01T00:00:00+00:00",
        "candidate": "zs",
        "strategy": "zero-shot",
        "options": {},
        "generative": False,
        "task": "classification",
        "labels": {label: f"about {label}" for label in LABELS},
        "seed": 42,
        "encoder": {"backend": "sentence-transformers", "name": "all-MiniLM-L6-v2"},
        "state": {"arrays": "label_vectors.npz"},
        "files": {"label_vectors.npz": hashlib.sha256(state_file).hexdigest()},
    }
    (folder / "adaptlab-model.json").write_text(json.dumps(manifest))
    return folder


@pytest.fixture
def fake_encoder(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        "adaptlab.engine.artifact._load_encoder", lambda folder, manifest, precision: FakeEncoder()
    )


@pytest.mark.parametrize(
    "case",
    [
        "declares-a-terabyte-in-248-bytes",
        "zip-says-it-inflates-to-4-gb",
        "object-array",
        "declares-more-rows-than-labels",
        "inflates-past-the-limit",
    ],
)
def test_predict_with_a_hostile_model_folder(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fake_encoder: None, case: str
) -> None:
    make, env, needles = BOMBS[case]
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    folder = model_folder(tmp_path / "model", make())
    (tmp_path / "in.txt").write_text("my card was charged twice\n")
    cli("predict", "--model", folder, tmp_path / "in.txt").error("label_vectors.npz", *needles)


@pytest.fixture
def model(tmp_path: Path, fake_encoder: None) -> Path:
    return model_folder(tmp_path / "model", saved(vectors=_vectors()))


def test_predict_with_a_fitting_model_folder(cli: Any, tmp_path: Path, model: Path) -> None:
    """The control for the cases above and the folder the streaming cases below use."""
    (tmp_path / "in.txt").write_text("one\ntwo\n")
    result = cli("predict", "--model", model, tmp_path / "in.txt")
    assert result.code == 0, result.text
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["input"] for r in rows] == ["one", "two"] and all(r["label"] for r in rows)


# ---------------------------------------------------------------- predict streams its input


class Endless(io.RawIOBase):
    """Standard input that never ends: ``line`` again and again; counts bytes read."""

    def __init__(self, line: bytes) -> None:
        self.line = line
        self.read_bytes = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = len(b)
        data = (self.line * (n // len(self.line) + 1))[:n]
        b[:n] = data
        self.read_bytes += n
        return n


class Stop(Exception):
    pass


def _stop_after(monkeypatch: pytest.MonkeyPatch, batches: int) -> list[int]:
    """The model answers ``batches`` batches, then the test stops the command."""
    from adaptlab.engine.artifact import ServedModel

    seen: list[int] = []
    real = ServedModel.predict

    def predict(self: Any, texts: Any) -> Any:
        seen.append(len(texts))
        if len(seen) > batches:
            raise AdaptlabError("stopped by the test", fix="none")
        return real(self, texts)

    monkeypatch.setattr(ServedModel, "predict", predict)
    return seen


@pytest.mark.timeout(30)
def test_endless_standard_input_is_answered_batch_by_batch(
    cli: Any, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    stdin = Endless(b"my card was charged twice\n")
    fake = io.TextIOWrapper(io.BufferedReader(stdin))
    monkeypatch.setattr(sys, "stdin", fake)
    seen = _stop_after(monkeypatch, 3)
    result = cli("predict", "--model", model, "--batch-size", "100")
    assert result.code == 2 and "stopped by the test" in result.text
    assert seen == [100, 100, 100, 100]
    assert result.stdout.count("\n") == 300  # each batch written as soon as answered
    assert stdin.read_bytes < 200_000  # ~400 lines and a chunk, not everything so far


@pytest.mark.timeout(30)
def test_a_large_file_is_not_read_whole(
    cli: Any, tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = tmp_path / "big.txt"
    big.write_bytes(b"my card was charged twice, please refund it\n" * 500_000)  # 22 MB
    import importlib

    predict = importlib.import_module("adaptlab.cli.predict")  # the module, not the command

    opened: list[Any] = []
    real = predict._open_inputs

    def open_inputs(path: Path, out: str | None) -> Any:
        opened.append(real(path, out))
        return opened[-1]

    monkeypatch.setattr(predict, "_open_inputs", open_inputs)
    positions: list[int] = []
    from adaptlab.engine.artifact import ServedModel

    def predict_batch(self: Any, texts: Any) -> Any:
        positions.append(opened[0].tell())
        raise AdaptlabError("stopped by the test", fix="none")

    monkeypatch.setattr(ServedModel, "predict", predict_batch)
    assert cli("predict", "--model", model, big).code == 2
    assert positions and positions[0] < 1 << 20  # the first batch came after < 1 MB


@pytest.mark.timeout(30)
def test_dev_zero_as_input_is_a_line_too_long_not_a_memory_error(cli: Any, model: Path) -> None:
    tracemalloc.start()
    try:
        cli("predict", "--model", model, "/dev/zero").error("/dev/zero:1", "longer than", "split")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


@pytest.mark.parametrize(
    ("content", "needles"),
    [
        (b"ok\nok\n" + b"x" * 150 + b"\nok\n", ("in.txt:3", "longer than 100")),
        (b"x" * 101, ("in.txt:1", "longer than 100")),
        (b"ok\n" * 5000 + b"caf\xe9\n" + b"ok\n", ("in.txt:5001", "not utf-8-sig", "0xe9")),
        (b'{"text": "a"}\n' * 3 + b'{"text": 1}\n', ("in.txt:4", "not text")),
        (b'{"text": "a"}\n' + b"plain line\n", ("in.txt:2", "not valid JSON")),
    ],
    ids=["long-line-3", "long-last-line", "bad-byte-line-5001", "json-field", "json-mode-text"],
)
def test_a_bad_line_is_named_where_it_is(
    cli: Any,
    tmp_path: Path,
    model: Path,
    monkeypatch: pytest.MonkeyPatch,
    content: bytes,
    needles: tuple[str, ...],
) -> None:
    monkeypatch.setattr("adaptlab.serve.answers.MAX_LINE_CHARS", 100)
    (tmp_path / "in.txt").write_bytes(content)
    cli("predict", "--model", model, tmp_path / "in.txt").error(*needles)


@pytest.mark.parametrize(
    ("content", "encoding", "count"),
    [
        (b"x" * 99 + b"\n" + b"y" * 100, "utf-8-sig", 2),  # at the bound: kept
        ("a\r\nb\r\n\r\nc".encode("utf-16"), "utf-16", 3),  # decoded across chunks
        (b"\xef\xbb\xbfa\nb\n", "utf-8-sig", 2),
        ("é\n".encode() * 70_000, "utf-8", 70_000),  # 2-byte characters cut by chunks
    ],
    ids=["at-the-bound", "utf-16", "bom", "split-characters"],
)
def test_streamed_inputs_read_as_before(
    cli: Any,
    tmp_path: Path,
    model: Path,
    monkeypatch: pytest.MonkeyPatch,
    content: bytes,
    encoding: str,
    count: int,
) -> None:
    monkeypatch.setattr("adaptlab.serve.answers.MAX_LINE_CHARS", 100)
    (tmp_path / "in.txt").write_bytes(content)
    out = tmp_path / "answers.jsonl"
    cli("predict", "--model", model, tmp_path / "in.txt", "--encoding", encoding, "-o", out).ok()
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == count
    assert all("\r" not in r["input"] and "\ufeff" not in r["input"] for r in rows)


def test_predict_refuses_to_write_over_its_inputs(cli: Any, tmp_path: Path, model: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_bytes(b"one\ntwo\n")
    link = tmp_path / "link.txt"
    link.symlink_to(src)
    cli("predict", "--model", model, src, "-o", link).error("in.txt", "replaced by the answers")
    assert src.read_bytes() == b"one\ntwo\n"


def test_predict_on_a_full_disk_keeps_the_old_answers(
    cli: Any, tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import errno

    (tmp_path / "in.txt").write_bytes(b"one\ntwo\n")
    out = tmp_path / "answers.jsonl"
    out.write_bytes(b"the answers of yesterday\n")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("adaptlab.core.files.os.fsync", full)
    cli("predict", "--model", model, tmp_path / "in.txt", "-o", out).error(
        "answers.jsonl", "no space left", "df -h"
    )
    assert out.read_bytes() == b"the answers of yesterday\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["answers.jsonl", "in.txt", "model"]


# ---------------------------------------------------------------- the retrieval index on disk


def _index(tmp_path: Path) -> Path:
    from adaptlab.rag.index import build_index
    from tests.rag.test_index import FakeEmbedder

    docs = tmp_path / "docs"
    docs.mkdir()
    for i in range(3):
        (docs / f"a{i}.md").write_text(f"# Doc {i}\n\nSome words about topic {i}.\n")
    build_index(docs, tmp_path / "index", FakeEmbedder())
    return tmp_path / "index"


def _version(index: Path) -> Path:
    return index / "versions" / (index / "CURRENT").read_text().strip()


# name -> (the file: in the live version, or "/NAME" in the index folder; its new content:
# bytes, or "fifo", "dev-zero" (a link to it), "doubled" (its lines twice), "long-line")
INDEX_DAMAGE: dict[str, tuple[str, bytes | str]] = {
    "vectors-declare-ten-billion-rows": ("embeddings.npy", npy((10**10, 16))),
    "vectors-of-another-dimension": ("embeddings.npy", npy((3, 8), "<f4", bytes(96))),
    "vectors-of-objects": ("embeddings.npy", npy((3, 16), "|O")),
    "vectors-of-integers": ("embeddings.npy", npy((3, 16), "<i4", bytes(192))),
    "vectors-cut-off": ("embeddings.npy", npy((3, 16), "<f4", bytes(100))),
    "more-chunks-than-vectors": ("chunks.jsonl", "doubled"),
    "a-chunk-line-of-5-mb": ("chunks.jsonl", "long-line"),
    "chunks-a-fifo": ("chunks.jsonl", "fifo"),
    "vectors-a-fifo": ("embeddings.npy", "fifo"),
    "manifest-a-fifo": ("manifest.json", "fifo"),
    "current-a-fifo": ("/CURRENT", "fifo"),
    "current-links-to-dev-zero": ("/CURRENT", "dev-zero"),
    "current-of-a-megabyte": ("/CURRENT", b"x" * (1 << 20)),
}


def _damage(index: Path, name: str, content: bytes | str) -> None:
    path = index / name[1:] if name.startswith("/") else _version(index) / name
    if content == "doubled":
        path.write_bytes(path.read_bytes() * 2)
        return
    path.unlink()
    if content == "fifo":
        os.mkfifo(path)
    elif content == "dev-zero":
        path.symlink_to("/dev/zero")
    elif content == "long-line":
        path.write_bytes(b"x" * (5 << 20))
    else:
        assert isinstance(content, bytes)
        path.write_bytes(content)


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", list(INDEX_DAMAGE))
def test_a_damaged_index_is_refused_without_paying_for_it(tmp_path: Path, case: str) -> None:
    from adaptlab.rag.index import RagIndex

    index = _index(tmp_path)
    _damage(index, *INDEX_DAMAGE[case])
    tracemalloc.start()
    try:
        with pytest.raises(AdaptlabError) as exc:
            RagIndex.open(index)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert exc.value.issue.code == "rag-damaged", str(exc.value)
    assert "delete the index folder" in (exc.value.fix or "")
    assert peak < 16 << 20, f"{peak:,} bytes"


def test_an_oversized_manifest_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from adaptlab.rag import index as index_module

    index = _index(tmp_path)
    monkeypatch.setattr(index_module, "MANIFEST_MAX_BYTES", 100)
    with pytest.raises(AdaptlabError) as exc:
        index_module.RagIndex.open(index)
    assert "over the limit" in str(exc.value) and "manifest.json" in str(exc.value)


# ---------------------------------------------------------------- documents: text, not bytes


def shared_stream_pdf(pages: int, lines: int = 40) -> bytes:
    """A PDF whose ``pages`` pages all draw one content stream: a few MB that used to
    take minutes to extract (pypdf parses the stream once per page)."""
    content = (
        b"BT /F1 10 Tf 20 700 Td "
        + b"".join(
            b"(Line %d of the shared stream with some words) Tj 0 -12 Td " % i for i in range(lines)
        )
        + b"ET"
    )
    packed = zlib.compress(content)
    objs = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % (5 + i) for i in range(pages))
        + b"] /Count %d >>" % pages,
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
        4: b"<< /Length %d /Filter /FlateDecode >>\nstream\n" % len(packed)
        + packed
        + b"\nendstream",
    }
    for i in range(pages):
        objs[5 + i] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents 4 0 R >>"
        )
    return _pdf(objs)


def distinct_pages_pdf(pages: int, lines: int = 20) -> bytes:
    """``pages`` pages, each with its own text."""
    objs = {
        1: b"<< /Type /Catalog /Pages 2 0 R >>",
        2: b"<< /Type /Pages /Kids ["
        + b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(pages))
        + b"] /Count %d >>" % pages,
        3: b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    }
    for i in range(pages):
        content = (
            b"BT /F1 10 Tf 20 700 Td "
            + b"".join(
                b"(Page %d line %d says something new) Tj 0 -12 Td " % (i, j) for j in range(lines)
            )
            + b"ET"
        )
        objs[4 + 2 * i] = (
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>" % (5 + 2 * i)
        )
        objs[5 + 2 * i] = b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"
    return _pdf(objs)


def _pdf(objs: dict[int, bytes]) -> bytes:
    out = bytearray(b"%PDF-1.4\n")
    offsets = {}
    for k in sorted(objs):
        offsets[k] = len(out)
        out += b"%d 0 obj\n" % k + objs[k] + b"\nendobj\n"
    xref, size = len(out), max(objs) + 1
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    out += b"".join(b"%010d 00000 n \n" % offsets[k] for k in range(1, size))
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (size, xref)
    return bytes(out)


def rag_project(root: Path, docs: dict[str, bytes], **rag: Any) -> Path:
    (root / "docs").mkdir(parents=True)
    (root / "data").mkdir()
    for name, data in docs.items():
        (root / "docs" / name).write_bytes(data)
    (root / "docs" / "good.md").write_text("# Good\n\nA small article that is read whole.\n")
    rows = [{"question": f"q{i}", "answer": "x"} for i in range(12)]
    (root / "data" / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = {
        "name": "sizes",
        "task": "generation",
        "data": {"path": "data/q.jsonl", "input_field": "question", "label_field": "answer"},
        "rag": {"docs": "docs", "chunk_tokens": 64, "chunk_overlap": 8, **rag},
        "candidates": [{"name": "zero", "strategy": "llm-zero-shot", "llm": "chat"}],
        "llms": {"chat": {"backend": "openai", "name": "gpt-4o-mini"}},
    }
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


@pytest.fixture
def fake_embedder(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from tests.rag.test_index import FakeEmbedder

    embedder = FakeEmbedder()
    monkeypatch.setattr("adaptlab.rag.project.load_embedder", lambda config: embedder)
    yield embedder


@pytest.mark.timeout(60)
def test_a_pdf_of_20000_pages_sharing_one_stream_is_indexed_in_seconds(
    cli: Any, tmp_path: Path, fake_embedder: Any
) -> None:
    """Before: 43 ms a page, 20,000 pages, over 14 minutes (2-core machine). Now the
    shared stream is read once and the repeats are noted."""
    data = shared_stream_pdf(20_000)
    assert len(data) < 4 << 20
    root = rag_project(tmp_path / "p", {"big.pdf": data})
    start = time.perf_counter()
    text = cli("rag", "index", "-p", root).ok()
    assert time.perf_counter() - start < 30
    assert "cut big.pdf" in text and "first 5,000 of 20,000 pages" in text
    assert "4,999 pages repeat an earlier page" in text and "max_pages" in text


@pytest.mark.parametrize(
    ("docs", "rag", "needles"),
    [
        (
            {"many.pdf": distinct_pages_pdf(30)},
            {"max_pages": 5},
            ("first 5 of 30 pages", "rag.max_pages"),
        ),
        (
            {"many.pdf": distinct_pages_pdf(30)},
            {"max_chars": 3000},
            ("first 3,000 characters", "rag.max_chars"),
        ),
        (
            {"many.pdf": distinct_pages_pdf(60)},
            {"max_seconds": 1e-9},
            ("took over", "rag.max_seconds"),
        ),
        (
            {"long.md": b"# Long\n\n" + b"word " * 5000},
            {"max_chars": 1000},
            ("first 1,000 of", "rag.max_chars"),
        ),
        ({"long.txt": b"word " * 5000}, {"max_chars": 1000}, ("first 1,000 of", "rag.max_chars")),
        (
            {"long.html": b"<p>" + b"word " * 5000 + b"</p>"},
            {"max_chars": 1000},
            ("first 1,000 of", "rag.max_chars"),
        ),
    ],
    ids=["pdf-pages", "pdf-chars", "pdf-seconds", "markdown-chars", "text-chars", "html-chars"],
)
def test_what_a_bound_cuts_is_said_per_document(
    cli: Any,
    tmp_path: Path,
    fake_embedder: Any,
    docs: dict[str, bytes],
    rag: dict[str, Any],
    needles: tuple[str, ...],
) -> None:
    root = rag_project(tmp_path / "p", docs, **rag)
    (name,) = docs
    text = cli("rag", "index", "-p", root).ok()
    assert f"cut {name}:" in text and all(n in text for n in needles), text
    assert "fix: split the document, or raise the named limit" in text
    assert "good.md" not in text.split("cut", 1)[1]  # the small article is whole
    again = cli("rag", "index", "-p", root).ok()  # unchanged: still said, not forgotten
    assert f"cut {name}:" in again and "1 unchanged" not in again


@pytest.mark.parametrize("key", ["max_pages", "max_chars", "max_seconds"])
def test_a_bound_of_zero_is_a_config_error(cli: Any, tmp_path: Path, key: str) -> None:
    root = rag_project(tmp_path / "p", {}, **{key: 0})
    cli("rag", "index", "-p", root).error("adaptlab.yaml", key)
