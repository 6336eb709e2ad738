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
no longer in the folder leave the index. ``embeddings.npy`` is read with
``allow_pickle=False`` (tensors only), the rest is JSON.

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
from typing import TYPE_CHECKING, Any

from adaptlab.core.errors import AdaptlabError
from adaptlab.rag.chunking import Chunk, chunk_document
from adaptlab.rag.documents import (
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


@dataclass(frozen=True)
class IndexSettings:
    """How documents become chunks; changing one re-chunks every file.

    ``max_tokens`` counts the encoder's tokens (heading path included);
    ``language`` picks the BM25 stemmer and stop words (Snowball names: english,
    german, french, …).
    """

    max_tokens: int = 200
    overlap_tokens: int = 40
    language: str = "english"
    max_file_mb: float = 20.0
    encoding: str = "utf-8"

    def chunking(self) -> dict[str, Any]:
        return {"max_tokens": self.max_tokens, "overlap_tokens": self.overlap_tokens}


@dataclass
class IndexReport:
    """What one index run did, per file path."""

    version: str
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
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
                f"the retrieval index is damaged (CURRENT names '{version[:80]}')",
                file=index_dir / "CURRENT",
                fix="delete the index folder and run 'adaptlab rag index' again",
                code="rag-damaged",
            )
        try:
            manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
            with open(folder / "chunks.jsonl", encoding="utf-8") as fh:
                chunks = [Chunk.from_json(json.loads(line)) for line in fh if line.strip()]
            embeddings = np.load(folder / "embeddings.npy", allow_pickle=False)
        except FileNotFoundError:
            raise
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise AdaptlabError(
                f"the retrieval index is damaged ({type(exc).__name__}: {exc})",
                file=folder,
                fix="delete the index folder and run 'adaptlab rag index' again",
                code="rag-damaged",
            ) from None
        if manifest.get("format") != FORMAT or len(chunks) != len(embeddings):
            raise AdaptlabError(
                "the retrieval index is damaged or from another adaptlab version",
                file=folder,
                fix="delete the index folder and run 'adaptlab rag index' again",
                code="rag-damaged",
            )
        return cls(index_dir, version, manifest, chunks, embeddings.astype(np.float32))


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
    try:
        name = (index_dir / "CURRENT").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return name or None


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
        for path, problem in iter_files(folder, exclude=index_dir):
            rel = path.relative_to(folder).as_posix()
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
                else:
                    doc = parse_document(data, rel, settings.encoding)
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
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


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
    import io

    import numpy as np

    version = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
    versions = index_dir / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    live = _prune(index_dir)
    folder = versions / version
    folder.mkdir()
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
    tmp = index_dir / f"CURRENT.{uuid.uuid4().hex[:8]}.tmp"
    _fsync_write(tmp, version.encode("utf-8"))
    _fsync_dir(folder)
    _fsync_dir(versions)
    os.replace(tmp, index_dir / "CURRENT")
    _fsync_dir(index_dir)  # the swap itself survives a power cut
    if live is not None:
        shutil.rmtree(versions / live, ignore_errors=True)
    return version


def _fsync_dir(path: Path) -> None:
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
