"""The on-disk retrieval index: chunks, their embeddings, and an atomic swap.

Layout of an index folder (``rag.index``, by default ``.adaptlab/rag`` in the
project)::

    CURRENT                 the name of the live version (replaced atomically)
    index.lock              held by the one indexer at work
    versions/<version>/     manifest.json, chunks.jsonl, embeddings.npy

An index run writes a complete new version beside the live one and only then
points ``CURRENT`` at it with ``os.replace`` (atomic on POSIX and Windows), so a
run that fails or is killed leaves the previous index whole and answering;
versions that never became current are removed by the next run. Re-indexing
hashes every file: an unchanged file keeps its chunks, and a chunk whose text is
unchanged keeps its embedding, so only changed files are embedded again; files
no longer in the folder leave the index. ``embeddings.npy`` is read only after its
header showed float vectors of the manifest's dimension, within the file's size (an
index folder can come with a project from someone else), and ``chunks.jsonl`` line by
line up to that many chunks; the rest is JSON.

A file name that is not UTF-8, or that holds control characters, is indexed under
its escaped name (:func:`adaptlab.core.files.printable_name`): ``b"\\xff.md"`` becomes
the document ``\\xff``, shown and stored as such; the file is still read by its name.

Why plain numpy for the vectors: exact inner-product search over a matrix is
what every approximate index approximates; ``bench/rag_scifact.py`` measures it
against faiss' flat and HNSW indexes on SciFact (5,183 chunks) in the same run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, TYPE_CHECKING, Any

from adaptlab.core.errors import AdaptlabError
from adaptlab.core.files import (
    fsync_folder,
    open_regular_file,
    printable_name,
    read_npy,
    read_regular_file,
)
from adaptlab.rag.chunking import Chunk, chunk_document
from adaptlab.rag.documents import (
    DocLimits,
    Document,
    Skipped,
    UnreadableDocument,
    iter_files,
    parse_document,
    read_bytes,
    require_folder,
)
from adaptlab.store.lock import RunLock

if TYPE_CHECKING:
    import numpy as np

    from adaptlab.core.progress import ProgressSink
    from adaptlab.rag.embedders import Embedder

FORMAT = 1
_VERSION_NAME = re.compile(r"[0-9A-Za-z][0-9A-Za-z_-]*")
#: Bounds on reading an index folder: its manifest lists every file (~200 bytes each),
#: a chunk line holds one chunk of at most a few thousand tokens.
MANIFEST_MAX_BYTES = 256 << 20
CHUNK_LINE_MAX_BYTES = 4 << 20
_DAMAGED_FIX = "delete the index folder and run 'adaptlab rag index' again"


@dataclass(frozen=True)
class IndexSettings:
    """How documents become chunks; changing one re-chunks every file.

    ``max_tokens`` counts the encoder's tokens (heading path included);
    ``language`` picks the BM25 stemmer and stop words (Snowball names: english,
    german, french, …). ``max_file_mb`` bounds a file's bytes; ``max_pages``,
    ``max_chars`` and ``max_seconds`` what is read of one document
    (:class:`~adaptlab.rag.documents.DocLimits`).
    """

    max_tokens: int = 200
    overlap_tokens: int = 40
    language: str = "english"
    max_file_mb: float = 20.0
    encoding: str = "utf-8"
    max_pages: int = DocLimits.max_pages
    max_chars: int = DocLimits.max_chars
    max_seconds: float = DocLimits.max_seconds

    def chunking(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "overlap_tokens": self.overlap_tokens}

    def limits(self) -> DocLimits:
        return DocLimits(self.max_pages, self.max_chars, self.max_seconds)


@dataclass
class IndexReport:
    """What one index run did, per file path."""

    version: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    cut: list[Skipped] = field(default_factory=list)  # indexed, but a bound left part out
    chunks: int = 0
    embedded: int = 0  # chunk texts sent to the encoder in this run
    seconds: float = 0.0


@dataclass
class RagIndex:
    """A loaded index version: ``chunks[i]`` has embedding row ``embeddings[i]``."""

    path: Path
    version: str
    manifest: dict[str, Any]
    chunks: list[Chunk]
    embeddings: np.ndarray

    @property
    def settings(self) -> IndexSettings:
        return IndexSettings(**self.manifest["settings"])

    @property
    def encoder(self) -> str:
        return str(self.manifest["encoder"])

    @classmethod
    def open(cls, index_dir: Path) -> RagIndex:
        """The live version of the index at ``index_dir``.

        Raises :class:`AdaptlabError` when there is none yet or it is damaged.
        """
        for _attempt in range(3):  # an indexer may swap and prune between our reads
            version = _current(index_dir)
            if version is None:
                raise AdaptlabError(
                    "no retrieval index here yet",
                    file=index_dir,
                    fix="run 'adaptlab rag index' first",
                    code="rag-no-index",
                )
            try:
                return cls._load(index_dir, version)
            except FileNotFoundError:
                continue
        raise AdaptlabError(
            "the retrieval index changed while it was being read",
            file=index_dir,
            fix="retry, or wait for the running 'adaptlab rag index' to finish",
            code="rag-busy",
        )

    @classmethod
    def _load(cls, index_dir: Path, version: str) -> RagIndex:
        import numpy as np

        folder = index_dir / "versions" / version
        if not _VERSION_NAME.fullmatch(version):  # CURRENT names a folder under versions/
            raise AdaptlabError(
                f"the retrieval index is damaged (CURRENT names '{printable_name(version[:80])}')",
                file=index_dir / "CURRENT",
                fix=_DAMAGED_FIX,
                code="rag-damaged",
            )
        # Every read is bounded before it is paid for: the vectors' header against the
        # manifest and the file size, the chunks up to as many as there are vectors.
        where = folder / "manifest.json"
        try:
            manifest = json.loads(
                read_regular_file(
                    where,
                    max_bytes=MANIFEST_MAX_BYTES,
                    limit_name="for an index manifest",
                    what="index manifest",
                    fix_path=_DAMAGED_FIX,
                    size_fix=_DAMAGED_FIX,
                )
            )
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise ValueError("not an index manifest of this adaptlab version")
            dim = manifest.get("dim")
            where = folder / "embeddings.npy"
            with _open(where) as fh:
                embeddings = read_npy(
                    fh,
                    stored_bytes=os.fstat(fh.fileno()).st_size,
                    max_bytes=os.fstat(fh.fileno()).st_size,
                    shape=(None, dim if isinstance(dim, int) else None),
                    kinds="f",
                )
            where = folder / "chunks.jsonl"
            chunks = _read_chunks(where, len(embeddings))
        except FileNotFoundError:
            raise
        except AdaptlabError as exc:
            if exc.issue.code == "not-found":  # pruned by an indexer meanwhile: open() retries
                raise FileNotFoundError(where) from None
            raise AdaptlabError(
                f"the retrieval index is damaged ({exc.issue.message})",
                file=where,
                fix=_DAMAGED_FIX,
                code="rag-damaged",
            ) from None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AdaptlabError(
                f"the retrieval index is damaged ({type(exc).__name__}: {exc})",
                file=where,
                fix=_DAMAGED_FIX,
                code="rag-damaged",
            ) from None
        return cls(index_dir, version, manifest, chunks, embeddings.astype(np.float32))


def _open(path: Path) -> IO[bytes]:
    """A file of an index version, opened only when it is a regular file (a FIFO or a
    device there would hang or never end the read)."""
    return open_regular_file(path, what="index file", fix=_DAMAGED_FIX)


def _read_chunks(path: Path, count: int) -> list[Chunk]:
    """The ``count`` chunks of ``chunks.jsonl``; ``ValueError`` for more, fewer, or a
    line over :data:`CHUNK_LINE_MAX_BYTES` (read no further than that)."""
    chunks: list[Chunk] = []
    with _open(path) as fh:
        while True:
            line = fh.readline(CHUNK_LINE_MAX_BYTES + 1)
            if not line:
                break
            if len(line) > CHUNK_LINE_MAX_BYTES:
                raise ValueError(
                    f"chunk line {len(chunks) + 1} is over {CHUNK_LINE_MAX_BYTES:,} bytes"
                )
            if not line.strip():
                continue
            if len(chunks) == count:
                raise ValueError(f"more chunks than the {count:,} vectors")
            chunks.append(Chunk.from_json(json.loads(line)))
    if len(chunks) != count:
        raise ValueError(f"{len(chunks):,} chunks for {count:,} vectors")
    return chunks


def _check_settings(settings: IndexSettings) -> None:
    """A clear error for settings no index can be built with (the config validates
    them too; this guards the Python API)."""
    import codecs

    problem, fix = "", ""
    if settings.max_tokens < 1 or not 0 <= settings.overlap_tokens < settings.max_tokens:
        problem = (
            f"chunk overlap {settings.overlap_tokens} must be at least 0 and smaller than "
            f"the chunk size {settings.max_tokens}"
        )
        fix = "set rag.chunk_tokens above rag.chunk_overlap in adaptlab.yaml"
    elif not settings.max_file_mb > 0:
        problem = f"rag.max_file_mb is {settings.max_file_mb}; it must be above 0"
        fix = "set rag.max_file_mb in adaptlab.yaml to a size in MB, such as 20"
    elif not (settings.max_pages >= 1 and settings.max_chars >= 1 and settings.max_seconds > 0):
        problem = (
            f"rag.max_pages ({settings.max_pages}), rag.max_chars ({settings.max_chars}) and "
            f"rag.max_seconds ({settings.max_seconds}) must all be above 0"
        )
        fix = "set them in adaptlab.yaml, or leave them out for the defaults"
    else:
        try:
            codecs.lookup(settings.encoding)
        except LookupError:
            problem = f"unknown encoding '{settings.encoding}'"
            fix = "set rag.encoding in adaptlab.yaml to utf-8, cp1252, latin-1 or utf-16"
    if problem:
        raise AdaptlabError(problem, fix=fix, code="rag-settings")


def _doc_id(rel: str) -> str:
    """:attr:`Document.doc_id` of the file ``rel`` (its path without the suffix)."""
    return str(PurePosixPath(rel).with_suffix(""))


def _current(index_dir: Path) -> str | None:
    """The live version's name (None: no index yet); bounded, any bytes accepted (a
    name that is no version name is refused by the callers)."""
    path = index_dir / "CURRENT"
    if not path.exists() and not path.is_symlink():
        return None
    try:
        raw = read_regular_file(
            path,
            max_bytes=4096,
            limit_name="for the index pointer",
            what="index pointer",
            fix_path=_DAMAGED_FIX,
        )
    except AdaptlabError as exc:
        if exc.issue.code == "not-found":
            return None
        return "\0damaged"  # no version name: open() and _prune() say it is damaged
    return raw.decode("utf-8", errors="replace").strip() or None


def _previous(index_dir: Path, embedder: Embedder, settings: IndexSettings) -> RagIndex | None:
    """The live index when its embeddings can be reused (same encoder), else None."""
    try:
        old = RagIndex.open(index_dir)
    except AdaptlabError:
        return None
    return old if old.encoder == embedder.model_id else None


def build_index(
    folder: Path,
    index_dir: Path,
    embedder: Embedder,
    settings: IndexSettings | None = None,
    *,
    progress: ProgressSink | None = None,
) -> IndexReport:
    """Index (or re-index) the documents under ``folder`` into ``index_dir``.

    Raises :class:`AdaptlabError` when the folder is missing or holds no readable
    document (the live index, if any, is left as it was). Files that cannot be
    read are listed in :attr:`IndexReport.skipped` with the reason and a fix.
    """

    settings = settings or IndexSettings()
    _check_settings(settings)
    require_folder(folder)
    start = time.perf_counter()
    with RunLock(index_dir / "index.lock").acquire(
        on_wait=lambda who: progress.info(f"waiting for the indexer of {who}") if progress else None
    ):
        _prune(index_dir)  # what a killed or failed run left behind
        old = _previous(index_dir, embedder, settings)
        old_files: dict[str, Any] = old.manifest["files"] if old else {}
        same_chunking = old is not None and old.manifest["settings"] == asdict(settings)
        old_chunks: dict[str, list[Chunk]] = {}
        if old is not None:
            for c in old.chunks:
                old_chunks.setdefault(c.path, []).append(c)
        report = IndexReport(version="")
        files: dict[str, dict[str, Any]] = {}
        chunks: list[Chunk] = []
        ids: dict[str, str] = {}  # doc_id -> the file that has it
        limits = settings.limits()
        for path, problem in iter_files(folder, exclude=index_dir):
            # the name as it is shown and stored: odd bytes and control characters escaped
            rel = printable_name(path.relative_to(folder).as_posix())
            if problem is not None:
                report.skipped.append(Skipped(rel, str(problem), problem.fix))
                continue
            doc_id = _doc_id(rel)
            if doc_id in ids:  # a.md and a.txt: citations could not tell them apart
                report.skipped.append(
                    Skipped(
                        rel,
                        f"its id '{doc_id}' is already taken by {ids[doc_id]} (ids are "
                        "paths without the suffix)",
                        "rename one of the two files",
                    )
                )
                continue
            try:
                data = read_bytes(path, settings.max_file_mb)
                sha = hashlib.sha256(data).hexdigest()
                before = old_files.get(rel)
                if same_chunking and before is not None and before["sha256"] == sha:
                    file_chunks = old_chunks.get(rel, [])
                    report.unchanged.append(rel)
                    cut = str(before.get("cut") or "")
                else:
                    doc = parse_document(data, rel, settings.encoding, limits)
                    cut = doc.cut
                    file_chunks = chunk_document(
                        doc,
                        max_tokens=settings.max_tokens,
                        overlap_tokens=settings.overlap_tokens,
                        count=embedder.count_tokens,
                    )
                    (report.changed if before is not None else report.added).append(rel)
            except UnreadableDocument as exc:
                report.skipped.append(Skipped(rel, exc.reason, exc.fix))
                continue
            ids[doc_id] = rel
            files[rel] = {"sha256": sha, "chunks": len(file_chunks)}
            if cut:
                files[rel]["cut"] = cut
                report.cut.append(Skipped(rel, cut, _CUT_FIX))
            chunks.extend(file_chunks)
        report.removed = sorted(set(old_files) - set(files))
        if not chunks:
            why = "; ".join(f"{s.path}: {s.reason}" for s in report.skipped[:5])
            raise AdaptlabError(
                "no readable document in the folder" + (f" ({why})" if why else ""),
                file=folder,
                fix="put .md, .txt, .html or .pdf files with text into it"
                + ("; the previous index is unchanged" if old is not None else ""),
                code="rag-empty",
            )
        embeddings = _embeddings(chunks, old, embedder, report, progress)
        report.version = _write_version(
            index_dir, chunks, embeddings, files, report.skipped, embedder, settings
        )
        report.chunks = len(chunks)
    report.seconds = time.perf_counter() - start
    return report


_CUT_FIX = (
    "split the document, or raise the named limit under rag: in adaptlab.yaml "
    "(max_pages, max_chars, max_seconds) if all of it should be indexed"
)


def index_documents(
    documents: Iterable[Document],
    index_dir: Path,
    embedder: Embedder,
    settings: IndexSettings | None = None,
    *,
    progress: ProgressSink | None = None,
) -> IndexReport:
    """Index documents given in memory (a BEIR ``corpus.jsonl``), replacing the index."""

    settings = settings or IndexSettings()
    _check_settings(settings)
    start = time.perf_counter()
    with RunLock(index_dir / "index.lock").acquire():
        _prune(index_dir)
        old = _previous(index_dir, embedder, settings)
        report = IndexReport(version="")
        files: dict[str, dict[str, Any]] = {}
        chunks: list[Chunk] = []
        seen: set[str] = set()
        for doc in documents:
            if doc.doc_id in seen:
                raise AdaptlabError(
                    f"two documents have the id '{doc.doc_id}'",
                    fix="give every document of the corpus its own _id",
                    code="rag-duplicate-id",
                )
            seen.add(doc.doc_id)
            doc_chunks = chunk_document(
                doc,
                max_tokens=settings.max_tokens,
                overlap_tokens=settings.overlap_tokens,
                count=embedder.count_tokens,
            )
            files[doc.path] = {"sha256": doc.sha256, "chunks": len(doc_chunks)}
            chunks.extend(doc_chunks)
            report.added.append(doc.path)
        if not chunks:
            raise AdaptlabError("no documents to index", code="rag-empty")
        embeddings = _embeddings(chunks, old, embedder, report, progress)
        report.version = _write_version(
            index_dir, chunks, embeddings, files, [], embedder, settings
        )
        report.chunks = len(chunks)
    report.seconds = time.perf_counter() - start
    return report


def _embeddings(
    chunks: Sequence[Chunk],
    old: RagIndex | None,
    embedder: Embedder,
    report: IndexReport,
    progress: ProgressSink | None,
) -> np.ndarray:
    """One row per chunk: reused by content hash where the old index has it."""
    import numpy as np

    known: dict[str, int] = {}
    if old is not None:
        known = {c.content_hash: i for i, c in enumerate(old.chunks)}
    hashes = [c.content_hash for c in chunks]
    todo: dict[str, str] = {}
    for c, h in zip(chunks, hashes, strict=True):
        if h not in known and h not in todo:
            todo[h] = c.indexed_text
    fresh: dict[str, np.ndarray] = {}
    if todo:
        texts = list(todo.values())
        if progress is not None:
            with progress.task("embedding chunks", len(texts)) as advance:
                vectors = embedder.embed(texts, on_batch=advance)
        else:
            vectors = embedder.embed(texts)
        vectors = np.asarray(vectors, dtype=np.float32)
        reused = old is not None and any(h in known for h in hashes)
        dim = old.embeddings.shape[1] if reused else None  # type: ignore[union-attr]
        if vectors.ndim != 2 or len(vectors) != len(texts) or dim not in (None, vectors.shape[1]):
            raise AdaptlabError(
                f"the encoder '{embedder.model_id}' returned vectors of shape "
                f"{tuple(vectors.shape)} for {len(texts)} texts"
                + (f" (the index holds {dim}-dimensional ones)" if dim is not None else ""),
                fix="check rag.encoder / rag.embeddings_llm; if the model changed, delete "
                "the index folder and index again",
                code="rag-embeddings",
            )
        if not np.isfinite(vectors).all():
            raise AdaptlabError(
                f"the encoder '{embedder.model_id}' returned NaN or infinite vectors",
                fix="check the encoder (a broken or wrongly converted model); the previous "
                "index is unchanged",
                code="rag-embeddings",
            )
        fresh = dict(zip(todo, vectors, strict=True))
        report.embedded = len(texts)
    rows = [fresh[h] if h in fresh else old.embeddings[known[h]] for h in hashes]  # type: ignore[union-attr]
    return np.stack(rows).astype(np.float32)


def _fsync_write(path: Path, data: bytes) -> None:
    try:
        with open(path, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:  # a full disk raises without a file name: give it one
        if exc.filename is None:
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
        raise


def _write_version(
    index_dir: Path,
    chunks: Sequence[Chunk],
    embeddings: np.ndarray,
    files: dict[str, dict[str, Any]],
    skipped: Sequence[Skipped],
    embedder: Embedder,
    settings: IndexSettings,
) -> str:
    """Write a complete version, then make it current; prune the others."""
    version = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    versions = index_dir / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    live = _prune(index_dir)
    folder = versions / version
    folder.mkdir()
    try:
        _write_files(folder, chunks, embeddings, files, skipped, embedder, settings, version)
        tmp = index_dir / f"CURRENT.{uuid.uuid4().hex[:8]}.tmp"
        _fsync_write(tmp, version.encode("utf-8"))
        fsync_folder(folder)
        fsync_folder(versions)
        os.replace(tmp, index_dir / "CURRENT")
    except BaseException:  # a full disk: the live index stays, nothing half-written stays
        shutil.rmtree(folder, ignore_errors=True)
        for tmp_pointer in index_dir.glob("CURRENT.*.tmp"):
            tmp_pointer.unlink(missing_ok=True)
        raise
    fsync_folder(index_dir)  # the swap itself survives a power cut
    if live is not None:
        shutil.rmtree(versions / live, ignore_errors=True)
    return version


def _write_files(
    folder: Path,
    chunks: Sequence[Chunk],
    embeddings: np.ndarray,
    files: dict[str, dict[str, Any]],
    skipped: Sequence[Skipped],
    embedder: Embedder,
    settings: IndexSettings,
    version: str,
) -> None:
    """``chunks.jsonl``, ``embeddings.npy`` and ``manifest.json`` of a new version."""
    import io

    import numpy as np

    lines = "".join(json.dumps(c.to_json(), ensure_ascii=False) + "\n" for c in chunks)
    _fsync_write(folder / "chunks.jsonl", lines.encode("utf-8"))
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(embeddings, dtype=np.float32), allow_pickle=False)
    _fsync_write(folder / "embeddings.npy", buf.getvalue())
    manifest = {
        "format": FORMAT,
        "version": version,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "encoder": embedder.model_id,
        "dim": int(embeddings.shape[1]),
        "settings": asdict(settings),
        "files": files,
        "skipped": [asdict(s) for s in skipped],
    }
    _fsync_write(folder / "manifest.json", json.dumps(manifest, indent=1).encode("utf-8"))


def _prune(index_dir: Path) -> str | None:
    """Remove what a failed or killed run left (versions that never became current,
    ``CURRENT.*.tmp``); call with the index lock held. Returns the live version, None
    when there is none or ``CURRENT`` is damaged (it never names a folder to delete
    outside ``versions/``)."""
    live = _current(index_dir)
    if live is not None and not _VERSION_NAME.fullmatch(live):
        live = None
    versions = index_dir / "versions"
    if versions.is_dir():
        for stale in versions.iterdir():
            if stale.name == live:
                continue
            if stale.is_dir() and not stale.is_symlink():
                shutil.rmtree(stale, ignore_errors=True)
            else:
                stale.unlink(missing_ok=True)
    for tmp_pointer in index_dir.glob("CURRENT.*.tmp"):
        tmp_pointer.unlink(missing_ok=True)
    return live
