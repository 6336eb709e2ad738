"""The on-disk index: incremental re-indexing, a killed or failed run, bad and hostile folders.

The embedder is a fake that records every text it is asked to embed, so each test
can say exactly what was (re-)embedded; nothing here loads torch.
"""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from adaptlab.core.errors import AdaptlabError
from adaptlab.rag.chunking import word_tokens
from adaptlab.rag.index import IndexReport, IndexSettings, RagIndex, build_index
from adaptlab.rag.search import Retriever
from tests.rag.test_documents import encrypt_pdf, make_pdf


class FakeEmbedder:
    """Deterministic unit vectors from the text's hash; records what it embeds."""

    def __init__(self, model_id: str = "fake-encoder", dim: int = 16) -> None:
        self.model_id = model_id
        self.max_tokens = 256
        self.dim = dim
        self.calls: list[list[str]] = []

    def embed(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        self.calls.append(list(texts))
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(t.encode()).digest()[:8], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim)
            rows.append(v / np.linalg.norm(v))
        if on_batch is not None:
            on_batch(len(texts))
        return np.asarray(rows, dtype=np.float32).reshape(len(texts), self.dim)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return word_tokens(texts)

    @property
    def embedded(self) -> list[str]:
        return [t for call in self.calls for t in call]

    def reset(self) -> None:
        self.calls.clear()


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def article(i: int, extra: str = "") -> str:
    body = " ".join(f"Fact {k} of article {i} is number {i * 100 + k}." for k in range(12))
    return f"# Article {i}\n\nArticle {i} is about topic{i}.\n\n## Details\n\n{body}{extra}\n"


def indexed_by_path(index: RagIndex) -> dict[str, str]:
    """indexed_text -> path of the chunk that holds it."""
    return {c.indexed_text: c.path for c in index.chunks}


def assert_consistent(index_dir: Path) -> RagIndex:
    idx = RagIndex.open(index_dir)
    assert len(idx.chunks) == len(idx.embeddings) > 0
    ids = [c.chunk_id for c in idx.chunks]
    assert len(ids) == len(set(ids)), "duplicate chunk ids"
    files = idx.manifest["files"]
    assert {c.path for c in idx.chunks} == set(files)
    for path, entry in files.items():
        assert entry["chunks"] == sum(c.path == path for c in idx.chunks)
    assert np.allclose(np.linalg.norm(idx.embeddings, axis=1), 1, atol=1e-4)
    versions = [p.name for p in (index_dir / "versions").iterdir()]
    assert versions == [idx.version], f"leftover versions: {versions}"
    assert not list(index_dir.glob("CURRENT.*.tmp"))
    return idx


# -- incremental re-index ---------------------------------------------------------------


@pytest.fixture
def hundred(tmp_path: Path) -> tuple[Path, Path, FakeEmbedder, RagIndex]:
    docs = tmp_path / "docs"
    for i in range(100):
        write(docs / f"a{i:03d}.md", article(i))
    index_dir = tmp_path / "index"
    emb = FakeEmbedder()
    settings = IndexSettings(max_tokens=80, overlap_tokens=16)
    report = build_index(docs, index_dir, emb, settings)
    assert len(report.added) == 100 and not report.skipped
    idx = assert_consistent(index_dir)
    assert report.embedded == len(emb.embedded) == len({c.content_hash for c in idx.chunks})
    assert all(len([c for c in idx.chunks if c.path == f"a{i:03d}.md"]) >= 3 for i in range(3))
    emb.reset()
    return docs, index_dir, emb, idx


SETTINGS = IndexSettings(max_tokens=80, overlap_tokens=16)


def test_changing_one_file_embeds_only_its_changed_chunks(
    hundred: tuple[Path, Path, FakeEmbedder, RagIndex],
) -> None:
    docs, index_dir, emb, old = hundred
    write(docs / "a042.md", article(42, extra=" A brand new closing remark."))
    report = build_index(docs, index_dir, emb, SETTINGS)
    new = assert_consistent(index_dir)
    assert report.changed == ["a042.md"] and len(report.unchanged) == 99
    owner = indexed_by_path(new)
    assert emb.embedded and all(owner[t] == "a042.md" for t in emb.embedded)
    old_hashes = {c.content_hash for c in old.chunks}
    changed = {c.content_hash for c in new.chunks if c.path == "a042.md"} - old_hashes
    assert report.embedded == len(emb.embedded) == len(changed) > 0
    # Chunks of the file whose text did not change kept their embedding.
    assert len(changed) < sum(c.path == "a042.md" for c in new.chunks)
    # Every other chunk and its vector is exactly the old one.
    old_rows = {c.chunk_id: (c, old.embeddings[i]) for i, c in enumerate(old.chunks)}
    for i, c in enumerate(new.chunks):
        if c.path != "a042.md":
            assert old_rows[c.chunk_id][0] == c
            assert np.array_equal(old_rows[c.chunk_id][1], new.embeddings[i])


def test_unchanged_rerun_embeds_nothing(
    hundred: tuple[Path, Path, FakeEmbedder, RagIndex],
) -> None:
    docs, index_dir, emb, old = hundred
    report = build_index(docs, index_dir, emb, SETTINGS)
    assert report.embedded == 0 and emb.calls == []
    assert len(report.unchanged) == 100 and not (report.added or report.changed)
    new = assert_consistent(index_dir)
    assert new.chunks == old.chunks and np.array_equal(new.embeddings, old.embeddings)


def test_deleting_a_file_removes_all_its_chunks(
    hundred: tuple[Path, Path, FakeEmbedder, RagIndex],
) -> None:
    docs, index_dir, emb, old = hundred
    assert any(c.path == "a007.md" for c in old.chunks)
    (docs / "a007.md").unlink()
    report = build_index(docs, index_dir, emb, SETTINGS)
    new = assert_consistent(index_dir)
    assert report.removed == ["a007.md"] and report.embedded == 0
    assert not any(c.path == "a007.md" or c.doc_id == "a007" for c in new.chunks)
    assert "a007.md" not in new.manifest["files"]
    assert len(new.chunks) == len(old.chunks) - sum(c.path == "a007.md" for c in old.chunks)


def test_adding_a_file_embeds_only_its_chunks(
    hundred: tuple[Path, Path, FakeEmbedder, RagIndex],
) -> None:
    docs, index_dir, emb, _old = hundred
    write(docs / "sub" / "new.md", article(1000))
    report = build_index(docs, index_dir, emb, SETTINGS)
    new = assert_consistent(index_dir)
    assert report.added == ["sub/new.md"]
    owner = indexed_by_path(new)
    assert emb.embedded and all(owner[t] == "sub/new.md" for t in emb.embedded)
    assert report.embedded == sum(c.path == "sub/new.md" for c in new.chunks)


def test_new_chunk_settings_rechunk_but_reuse_identical_chunks(
    hundred: tuple[Path, Path, FakeEmbedder, RagIndex],
) -> None:
    docs, index_dir, emb, old = hundred
    smaller = IndexSettings(max_tokens=48, overlap_tokens=8)
    report = build_index(docs, index_dir, emb, smaller)
    new = assert_consistent(index_dir)
    assert len(report.changed) == 100  # every file chunked again
    assert new.settings == smaller and len(new.chunks) > len(old.chunks)
    old_texts = {c.indexed_text for c in old.chunks}
    new_texts = {c.indexed_text for c in new.chunks}
    reused = new_texts & old_texts
    assert reused, "the intro chunks are the same text under both settings"
    assert report.embedded == len(emb.embedded) == len(new_texts - old_texts) > 0
    assert not set(emb.embedded) & old_texts


def test_another_encoder_embeds_everything(
    hundred: tuple[Path, Path, FakeEmbedder, RagIndex],
) -> None:
    docs, index_dir, _emb, old = hundred
    other = FakeEmbedder(model_id="another-encoder", dim=8)
    report = build_index(docs, index_dir, other, SETTINGS)
    new = assert_consistent(index_dir)
    assert new.encoder == "another-encoder" and new.embeddings.shape[1] == 8
    assert report.embedded == len({c.content_hash for c in new.chunks}) == len(old.chunks)


# -- a killed or failed run leaves the old index answering --------------------------------

CHILD = textwrap.dedent(
    """
    import os, sys, time
    from pathlib import Path
    import numpy as np
    from adaptlab.rag.chunking import word_tokens
    from adaptlab.rag.index import IndexSettings, build_index

    docs, index_dir, marker = (Path(a) for a in sys.argv[1:4])
    where = sys.argv[4]

    def stall():
        marker.write_text("ready")
        time.sleep(30)
        sys.exit(3)  # never reached: the test kills us first

    class Embedder:
        model_id = "fake-encoder"
        max_tokens = 256
        def embed(self, texts, *, on_batch=None):
            if where == "embed":
                stall()
            rows = np.ones((len(texts), 16), dtype=np.float32)
            return rows / np.linalg.norm(rows, axis=1, keepdims=True)
        def count_tokens(self, texts):
            return word_tokens(texts)

    if where == "swap":  # the new version is written; stop right before CURRENT moves
        real_replace = os.replace
        def replace(src, dst, *a, **kw):
            if str(dst).endswith("CURRENT"):
                stall()
            return real_replace(src, dst, *a, **kw)
        os.replace = replace

    build_index(docs, index_dir, Embedder(), IndexSettings(max_tokens=80, overlap_tokens=16))
    """
)


def small_folder(tmp_path: Path) -> tuple[Path, Path, FakeEmbedder, RagIndex]:
    docs = tmp_path / "docs"
    for i in range(5):
        write(docs / f"a{i}.md", article(i))
    write(docs / "refunds.md", "# Refunds\n\nRefunds of the zanzibar plan take 14 days.\n")
    index_dir = tmp_path / "index"
    emb = FakeEmbedder()
    build_index(docs, index_dir, emb, SETTINGS)
    return docs, index_dir, emb, assert_consistent(index_dir)


def assert_old_index_answers(index_dir: Path, old: RagIndex) -> None:
    idx = RagIndex.open(index_dir)
    assert idx.version == old.version
    assert idx.chunks == old.chunks and np.array_equal(idx.embeddings, old.embeddings)
    hits = Retriever(idx, None).search("how long do zanzibar refunds take", k=3, mode="bm25")
    assert hits and hits[0].chunk.doc_id == "refunds"


@pytest.mark.parametrize("where", ["embed", "swap"])
@pytest.mark.timeout(60)
def test_killed_indexer_leaves_the_old_index_answering(tmp_path: Path, where: str) -> None:
    docs, index_dir, emb, old = small_folder(tmp_path)
    write(docs / "a1.md", article(1, extra=" Changed after the first index."))
    write(docs / "added.md", article(77))
    marker = tmp_path / "marker"
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(docs), str(index_dir), str(marker), where],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 40
        while not marker.exists():
            if child.poll() is not None:
                out = child.stdout.read().decode() if child.stdout else ""
                pytest.fail(f"the indexer ended before the kill point ({child.returncode}):\n{out}")
            assert time.monotonic() < deadline, "the indexer never reached the kill point"
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)
        assert child.wait(timeout=20) == -signal.SIGKILL
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdout:
            child.stdout.close()
    if where == "swap":  # the run got as far as a complete, never-current version
        assert len(list((index_dir / "versions").iterdir())) == 2
        assert list(index_dir.glob("CURRENT.*.tmp"))
    assert_old_index_answers(index_dir, old)

    report = build_index(docs, index_dir, emb, SETTINGS)  # the lock died with the child
    assert report.changed == ["a1.md"] and report.added == ["added.md"]
    new = assert_consistent(index_dir)  # no leftover version folder or CURRENT.*.tmp
    assert new.version != old.version and any(c.path == "added.md" for c in new.chunks)


def test_leftovers_of_a_killed_run_are_cleaned_and_never_read(tmp_path: Path) -> None:
    docs, index_dir, emb, old = small_folder(tmp_path)
    partial = index_dir / "versions" / "29990101T000000-deadbeef"
    write(partial / "chunks.jsonl", '{"chunk_id": "half a li')
    write(index_dir / "CURRENT.0badf00d.tmp", "29990101T000000-deadbeef")
    write(index_dir / "versions" / "stray-file", "x")
    assert_old_index_answers(index_dir, old)
    build_index(docs, index_dir, emb, SETTINGS)
    assert_consistent(index_dir)


class FailingEmbedder(FakeEmbedder):
    def __init__(self, failure: Callable[[Sequence[str]], np.ndarray]) -> None:
        super().__init__()
        self.failure = failure

    def embed(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        return self.failure(texts)


def _raise(texts: Sequence[str]) -> np.ndarray:
    raise RuntimeError("the GPU fell over")


@pytest.mark.parametrize(
    ("failure", "error"),
    [
        (_raise, RuntimeError),
        (lambda texts: np.ones((len(texts) - 1, 16), dtype=np.float32), AdaptlabError),
        (lambda texts: np.ones((len(texts), 7), dtype=np.float32) / 7**0.5, AdaptlabError),
        (lambda texts: np.full((len(texts), 16), np.nan, dtype=np.float32), AdaptlabError),
    ],
    ids=["raises", "too-few-rows", "wrong-dimension", "nan"],
)
def test_failed_run_leaves_the_old_index_intact(
    tmp_path: Path, failure: Callable[[Sequence[str]], np.ndarray], error: type[Exception]
) -> None:
    docs, index_dir, emb, old = small_folder(tmp_path)
    write(docs / "a2.md", article(2, extra=" Edited."))
    with pytest.raises(error) as exc:
        build_index(docs, index_dir, FailingEmbedder(failure), SETTINGS)
    if isinstance(exc.value, AdaptlabError):
        assert exc.value.fix
    assert_old_index_answers(index_dir, old)
    assert_consistent(index_dir)
    report = build_index(docs, index_dir, emb, SETTINGS)
    assert report.changed == ["a2.md"]


def test_current_naming_a_folder_outside_versions_is_damage(tmp_path: Path) -> None:
    docs, index_dir, emb, _old = small_folder(tmp_path)
    (index_dir / "CURRENT").write_text("../../docs")
    with pytest.raises(AdaptlabError) as exc:
        RagIndex.open(index_dir)
    assert exc.value.issue.code == "rag-damaged" and exc.value.fix
    report = build_index(docs, index_dir, emb, SETTINGS)  # a fresh index replaces it
    assert len(report.added) == 6 and (docs / "refunds.md").exists()
    assert_consistent(index_dir)


def test_a_reader_during_reindexing_always_gets_a_whole_index(tmp_path: Path) -> None:
    docs, index_dir, emb, _old = small_folder(tmp_path)
    stop = threading.Event()
    seen: list[str] = []
    errors: list[BaseException] = []

    def read() -> None:
        while not stop.is_set():
            try:
                idx = RagIndex.open(index_dir)
                assert len(idx.chunks) == len(idx.embeddings) > 0
                seen.append(idx.version)
            except BaseException as exc:  # reported below
                errors.append(exc)
                return

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for n in range(8):
            write(docs / "a0.md", article(0, extra=f" Edit {n}."))
            build_index(docs, index_dir, emb, SETTINGS)
    finally:
        stop.set()
        reader.join()
    assert not errors, errors
    assert len(seen) > 0


# -- bad inputs ------------------------------------------------------------------------------


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    out = tmp_path / "outside"
    write(out / "secret.md", "# Secret\n\nTOPSECRET-OUTSIDE the password is hunter2.\n")
    return out


@pytest.fixture
def bad_folder(tmp_path: Path, outside: Path) -> Path:
    docs = tmp_path / "docs"
    write(docs / "good.md", "# Good\n\nThe good document is indexed.\n")
    write(docs / "manual.pdf", make_pdf(["The good PDF is indexed too."]))
    write(docs / "sub" / "nested.txt", "Nested text is indexed.\n")
    write(docs / "x.md" / "inner.md", "# Inner\n\nA file inside a folder named x.md.\n")
    write(docs / "garbage.pdf", b"%PDF-1.7\n" + os.urandom(4096))
    write(docs / "locked.pdf", encrypt_pdf(make_pdf(["hidden"]), user_password="pw"))
    write(docs / "binary.txt", b"MZ\x90\x00\x03\x00\x00\x00\x04\x00" * 100)
    write(docs / "photo.png", b"\x89PNG\r\n\x1a\n")
    write(docs / "empty.md", "")
    write(docs / "blank.md", "   \n\n\t\n")
    write(docs / "cp1252.md", b"# Gr\xfc\xdfe\n\nGr\xfc\xdfe aus K\xf6ln.\n")
    write(docs / "faq.md", "# FAQ\n\nThe markdown FAQ.\n")
    write(docs / "faq.txt", "The text FAQ has the same id.\n")
    write(docs / "bogus.html", "<![ bogus")
    with open(docs / "huge.md", "wb") as fh:  # 50 MB, sparse: nothing is written
        fh.truncate(50 << 20)
    os.mkfifo(docs / "pipe.md")
    (docs / "escape.md").symlink_to(outside / "secret.md")
    (docs / "shared").symlink_to(outside, target_is_directory=True)
    (docs / "alias.md").symlink_to(docs / "good.md")
    (docs / "dangling.md").symlink_to(docs / "gone.md")
    write(docs / ".hidden.md", "# Hidden\n\nnot indexed\n")
    return docs


EXPECTED_SKIPS = {
    "garbage.pdf": ("the PDF cannot be read", "print it to a new PDF"),
    "locked.pdf": ("encrypted", "unencrypted copy"),
    "binary.txt": ("binary file (NUL bytes)", "export it"),
    "photo.png": ("unsupported type '.png'", "convert it"),
    "empty.md": ("holds no text", "give it content"),
    "blank.md": ("holds no text", "give it content"),
    "cp1252.md": ("not valid utf-8 (byte 0xfc at offset 4)", "rag.encoding"),
    "faq.txt": ("already taken by faq.md", "rename"),
    "bogus.html": ("cannot be parsed as html", "export it again"),
    "huge.md": ("over the limit rag.max_file_mb", "rag.max_file_mb"),
    "pipe.md": ("named pipe (FIFO)", "only regular files are indexed"),
    "escape.md": ("outside the documents folder", "copy the file into the folder"),
    "shared": ("outside the documents folder", "copy the file into the folder"),
    "alias.md": ("links are not followed", "replace the link by a copy"),
    "dangling.md": ("broken link", "restore its target"),
}


@pytest.fixture
def bad_report(bad_folder: Path, tmp_path: Path) -> tuple[IndexReport, RagIndex]:
    report = build_index(bad_folder, tmp_path / "index", FakeEmbedder(), SETTINGS)
    return report, assert_consistent(tmp_path / "index")


@pytest.mark.timeout(30)  # a FIFO that is opened for reading would hang here
def test_bad_files_are_skipped_with_reason_and_fix(
    bad_report: tuple[IndexReport, RagIndex],
) -> None:
    report, idx = bad_report
    skipped = {s.path: s for s in report.skipped}
    assert len(skipped) == len(report.skipped), "a file reported twice"
    assert set(skipped) == set(EXPECTED_SKIPS)
    for path, (reason, fix) in EXPECTED_SKIPS.items():
        assert reason in skipped[path].reason, (path, skipped[path])
        assert fix in skipped[path].fix, (path, skipped[path])
        assert "data.path" not in skipped[path].fix  # a fix for documents, not data files
    assert idx.manifest["skipped"] == [
        {"path": s.path, "reason": s.reason, "fix": s.fix} for s in report.skipped
    ]
    assert set(idx.manifest["files"]) == {
        "good.md", "manual.pdf", "sub/nested.txt", "x.md/inner.md", "faq.md",
    }  # fmt: skip
    assert sorted(report.added) == sorted(idx.manifest["files"])
    texts = " ".join(c.indexed_text for c in idx.chunks)
    assert "The good PDF is indexed too." in texts and "Nested text is indexed." in texts
    assert texts.count("The good document is indexed.") == 1  # the alias is not indexed again


def test_no_text_from_outside_the_folder_or_from_scripts(
    bad_report: tuple[IndexReport, RagIndex], tmp_path: Path
) -> None:
    _report, idx = bad_report
    texts = " ".join(c.indexed_text for c in idx.chunks)
    assert "TOPSECRET" not in texts and "hunter2" not in texts  # escape.md, shared/
    assert "not indexed" not in texts  # .hidden.md


def test_bad_files_keep_being_skipped_on_rerun(bad_folder: Path, tmp_path: Path) -> None:
    emb = FakeEmbedder()
    first = build_index(bad_folder, tmp_path / "index", emb, SETTINGS)
    emb.reset()
    again = build_index(bad_folder, tmp_path / "index", emb, SETTINGS)
    assert again.skipped == first.skipped and again.embedded == 0
    assert sorted(again.unchanged) == sorted(first.added)


def test_other_encoding_indexes_with_the_setting(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "de.md", b"# Gr\xfc\xdfe\n\nGr\xfc\xdfe aus K\xf6ln.\n")
    with pytest.raises(AdaptlabError, match="no readable document") as exc:
        build_index(docs, tmp_path / "index", FakeEmbedder(), SETTINGS)
    assert "offset 4" in str(exc.value)
    settings = IndexSettings(max_tokens=80, overlap_tokens=16, encoding="cp1252")
    report = build_index(docs, tmp_path / "index", FakeEmbedder(), settings)
    assert report.added == ["de.md"] and not report.skipped
    idx = assert_consistent(tmp_path / "index")
    assert idx.chunks[0].indexed_text == "Grüße\nGrüße aus Köln."


def test_max_file_mb_setting_is_named_and_honoured(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "small.md", "# Small\n\nsmall file\n")
    write(docs / "big.md", "# Big\n\n" + "word " * 100_000)  # about 0.5 MB
    settings = IndexSettings(max_tokens=80, overlap_tokens=16, max_file_mb=0.1)
    report = build_index(docs, tmp_path / "index", FakeEmbedder(), settings)
    (skip,) = report.skipped
    assert skip.path == "big.md" and "rag.max_file_mb" in skip.reason + skip.fix
    assert report.added == ["small.md"]


def test_file_vanishing_mid_index_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import adaptlab.rag.index as index_module
    from adaptlab.rag.documents import read_bytes as real

    docs = tmp_path / "docs"
    write(docs / "stays.md", "# Stays\n\nstill here\n")
    write(docs / "vanishes.md", "# Vanishes\n\ngone soon\n")

    def read_bytes(path: Path, max_file_mb: float) -> bytes:
        if path.name == "vanishes.md":
            path.unlink()  # deleted between the listing and the read
        return real(path, max_file_mb)

    monkeypatch.setattr(index_module, "read_bytes", read_bytes)
    report = build_index(docs, tmp_path / "index", FakeEmbedder(), SETTINGS)
    (skip,) = report.skipped
    assert skip.path == "vanishes.md" and "vanished" in skip.reason and "again" in skip.fix
    assert report.added == ["stays.md"]
    assert_consistent(tmp_path / "index")


def test_empty_folder_is_an_error_and_keeps_the_previous_index(tmp_path: Path) -> None:
    docs, index_dir, emb, old = small_folder(tmp_path)
    for f in docs.iterdir():
        f.unlink()
    with pytest.raises(AdaptlabError) as exc:
        build_index(docs, index_dir, emb, SETTINGS)
    assert exc.value.issue.code == "rag-empty"
    assert "no readable document" in str(exc.value)
    assert exc.value.fix and "previous index is unchanged" in exc.value.fix
    assert_old_index_answers(index_dir, old)
    write(docs / "only.bin", b"\x00")
    with pytest.raises(AdaptlabError, match="unsupported type") as exc2:
        build_index(docs, index_dir, emb, SETTINGS)  # the error says what was skipped
    assert exc2.value.fix
    assert_old_index_answers(index_dir, old)


def test_missing_folder_or_a_file_as_folder_is_a_clear_error(tmp_path: Path) -> None:
    for folder in (tmp_path / "nope", write(tmp_path / "file.md", "# x\n\ny\n")):
        with pytest.raises(AdaptlabError) as exc:
            build_index(folder, tmp_path / "index", FakeEmbedder(), SETTINGS)
        assert exc.value.issue.code == "rag-docs" and exc.value.fix and "rag.docs" in exc.value.fix
    assert not (tmp_path / "index").exists()


@pytest.mark.parametrize(
    ("settings", "fix"),
    [
        (IndexSettings(max_tokens=40, overlap_tokens=40), "rag.chunk_tokens"),
        (IndexSettings(max_file_mb=0), "rag.max_file_mb"),
        (IndexSettings(encoding="klingon"), "rag.encoding"),
    ],
)
def test_impossible_settings_are_a_clear_error(
    tmp_path: Path, settings: IndexSettings, fix: str
) -> None:
    write(tmp_path / "docs" / "a.md", "# A\n\ntext\n")
    with pytest.raises(AdaptlabError) as exc:
        build_index(tmp_path / "docs", tmp_path / "index", FakeEmbedder(), settings)
    assert exc.value.fix and fix in exc.value.fix


def test_index_folder_inside_the_documents_is_not_indexed(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    write(docs / "a.md", "# A\n\ntext\n")
    emb = FakeEmbedder()
    build_index(docs, docs / "index", emb, SETTINGS)
    report = build_index(docs, docs / "index", emb, SETTINGS)
    assert report.skipped == [] and report.unchanged == ["a.md"]


def test_hostile_html_and_markdown_never_run_or_index_scripts(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    pwned = tmp_path / "pwned"
    payload = f"require('fs').writeFileSync('{pwned}', 'x'); import os; os.system('touch {pwned}')"
    write(
        docs / "page.html",
        f"<html><head><title>Page</title><script>{payload}</script></head><body>"
        f'<h1>Page</h1><p>Visible words.</p><img src=x onerror="{payload}">'
        f"<script type='module'>{payload}</script><style>body{{}}</style></body></html>",
    )
    write(docs / "note.md", f"# Note\n\nVisible note.\n\n<script>{payload}</script>\n")
    report = build_index(docs, tmp_path / "index", FakeEmbedder(), SETTINGS)
    assert sorted(report.added) == ["note.md", "page.html"]
    idx = assert_consistent(tmp_path / "index")
    texts = " ".join(c.indexed_text for c in idx.chunks)
    assert "Visible words." in texts and "Visible note." in texts
    assert "writeFileSync" not in texts and "os.system" not in texts
    assert not pwned.exists()
