"""A project's documents: its index settings, encoder, index refresh and retriever.

``adaptlab run`` refreshes the index (incrementally) before the first candidate
with ``context_k`` and gives every such candidate the same :class:`Retriever`.
A candidate's stored result depends on the documents through
:func:`docs_fingerprint`, so editing an article recomputes the RAG candidates and
nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from adaptlab.backends import EncoderBackend, llm_key_var, load_backend
from adaptlab.core.errors import AdaptlabError, ConfigError, MissingDependencyError
from adaptlab.llm.keys import find_key
from adaptlab.rag.documents import iter_files
from adaptlab.rag.embedders import EncoderEmbedder, OpenAIEmbedder
from adaptlab.rag.embedding_cache import FILE_NAME as EMBEDDING_CACHE
from adaptlab.rag.embedding_cache import CachedEmbedder
from adaptlab.rag.index import IndexSettings, RagIndex, build_index
from adaptlab.rag.pgvector import PgVectorStore, local_server
from adaptlab.rag.search import Retriever

if TYPE_CHECKING:
    from adaptlab.config import ProjectConfig, RagConfig
    from adaptlab.core.progress import ProgressSink
    from adaptlab.rag.embedders import Embedder
    from adaptlab.rag.index import IndexReport
    from adaptlab.rag.search import Hit, VectorStore

_EMBEDDERS: dict[str, Any] = {}


class ProjectFolder(Protocol):
    """What the RAG layer reads of a project: its folder and its config
    (:class:`adaptlab.engine.Project` is one; the engine sits above this layer)."""

    @property
    def root(self) -> Path: ...

    @property
    def config(self) -> ProjectConfig: ...


def rag_config(project: ProjectFolder) -> RagConfig:
    """The project's ``rag:`` section; :class:`ConfigError` when there is none."""
    cfg = project.config.rag
    if cfg is None:
        raise ConfigError(
            "this project has no 'rag:' section",
            file=project.root / "adaptlab.yaml",
            fix="add 'rag: {docs: docs}' (a folder of .md, .txt, .html or .pdf files)",
        )
    return cfg


def index_settings(cfg: RagConfig) -> IndexSettings:
    return IndexSettings(
        max_tokens=cfg.chunk_tokens,
        overlap_tokens=cfg.chunk_overlap,
        language=cfg.language,
        max_file_mb=cfg.max_file_mb,
        encoding=cfg.encoding,
        max_pages=cfg.max_pages,
        max_chars=cfg.max_chars,
        max_seconds=cfg.max_seconds,
    )


def docs_folder(project: ProjectFolder) -> Path:
    return Path(project.root / rag_config(project).docs).resolve()


def index_folder(project: ProjectFolder) -> Path:
    return Path(project.root / rag_config(project).index)


def load_embedder(config: ProjectConfig) -> Embedder:
    """The embedder ``rag:`` names (loaded once per process).

    Kept per process under what decides its vectors: the encoder's options, or the
    ``llms:`` entry's whole config (model, ``base_url``, the key's variable name; never
    the key), so two projects whose entries share a name but not an endpoint never
    share an embedder.
    """
    cfg = config.rag
    assert cfg is not None
    llm = config.llms.get(cfg.embeddings_llm) if cfg.embeddings_llm is not None else None
    key = json.dumps(
        [
            cfg.embeddings_llm,
            llm.model_dump(mode="json") if llm is not None else None,
            cfg.encoder.model_dump(mode="json"),
        ],
        sort_keys=True,
        default=str,
    )
    if key in _EMBEDDERS:
        return _EMBEDDERS[key]  # type: ignore[no-any-return]
    if cfg.embeddings_llm is not None:
        if llm is None or llm.backend != "openai":
            raise ConfigError(
                f"rag.embeddings_llm names '{cfg.embeddings_llm}', which is not an 'openai' "
                "entry under llms:",
                fix="add llms: {embed: {backend: openai, name: text-embedding-3-small}} and "
                "set rag.embeddings_llm: embed",
            )
        var = llm_key_var(llm)
        embedder: Any = OpenAIEmbedder(
            llm.name, base_url=llm.base_url, api_key=(find_key(var) if var else None) or "none"
        )
    else:
        backend = load_backend(cfg.encoder)
        if not isinstance(backend, EncoderBackend):
            raise ConfigError(
                f"rag.encoder backend '{cfg.encoder.backend}' is not an encoder",
                fix="set rag.encoder.backend: sentence-transformers",
            )
        embedder = EncoderEmbedder(backend)
    _EMBEDDERS[key] = embedder
    return embedder  # type: ignore[no-any-return]


def docs_fingerprint(project: ProjectFolder) -> str:
    """Hash of what retrieval answers depend on: every document's bytes and ``rag:``.

    Raises :class:`ConfigError` when the documents folder is missing.
    """

    cfg = rag_config(project)
    folder = docs_folder(project)
    if not folder.is_dir():
        raise ConfigError(
            f"rag.docs points to '{cfg.docs}', which is not a folder",
            file=project.root / "adaptlab.yaml",
            fix="create the folder and put the documents in it, or fix rag.docs",
        )
    digest = hashlib.sha256()
    settings = cfg.model_dump(mode="json", exclude={"index", "pg_url", "store"})
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for path, problem in iter_files(folder, exclude=index_folder(project)):
        digest.update(os.fsencode(path.relative_to(folder).as_posix()) + b"\0")
        if problem is None:
            try:
                st = path.stat()
                if st.st_size <= cfg.max_file_mb * (1 << 20):
                    digest.update(hashlib.sha256(path.read_bytes()).digest())
            except OSError:
                digest.update(b"unreadable")
    return digest.hexdigest()[:16]


_CACHED: dict[tuple[OpenAIEmbedder, Path], CachedEmbedder] = {}


def project_embedder(project: ProjectFolder) -> Embedder:
    """The project's embedder (:func:`load_embedder`); a paid embeddings endpoint keeps
    its vectors in the project's ``.adaptlab/embedding_cache.db``
    (:class:`~adaptlab.rag.embedding_cache.CachedEmbedder`), so no text — a chunk or a
    query — is paid for twice."""
    embedder = load_embedder(project.config)
    if not isinstance(embedder, OpenAIEmbedder):
        return embedder
    path = Path(project.root) / ".adaptlab" / EMBEDDING_CACHE
    key = (embedder, path)
    if key not in _CACHED:
        _CACHED[key] = CachedEmbedder(embedder, path)
    return _CACHED[key]


def refresh_index(project: ProjectFolder, progress: ProgressSink | None = None) -> IndexReport:
    """Re-index the project's documents (only changed files are embedded again)."""

    cfg = rag_config(project)
    return build_index(
        docs_folder(project),
        index_folder(project),
        project_embedder(project),
        index_settings(cfg),
        progress=progress,
    )


def open_store(project: ProjectFolder, index: Any) -> VectorStore | None:
    """The configured vector store over ``index`` (None: the embedded numpy store)."""
    cfg = rag_config(project)
    if cfg.store == "embedded":
        return None

    url = cfg.pg_url or local_server(index_folder(project) / "pgdata")
    return PgVectorStore(url, index)


def open_retriever(project: ProjectFolder) -> Retriever:
    """A retriever over the live index with the project's store and reranker."""

    cfg = rag_config(project)
    index = RagIndex.open(index_folder(project))
    reranker = None
    if cfg.reranker is not None:
        reranker = load_reranker(cfg.reranker)
    return Retriever(
        index,
        project_embedder(project),
        store=open_store(project, index),
        reranker=reranker,
        rerank_depth=cfg.rerank_depth,
    )


def load_reranker(name: str) -> Any:
    """A sentence-transformers ``CrossEncoder`` from a folder or the hub name."""
    import os

    if Path(name).expanduser().exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from sentence_transformers import CrossEncoder

        return CrossEncoder(
            str(Path(name).expanduser()) if Path(name).expanduser().exists() else name
        )
    except ImportError:
        raise MissingDependencyError("sentence-transformers", "local") from None
    except (OSError, ValueError) as exc:
        raise AdaptlabError(
            f"cannot load the reranker '{name}': {exc}",
            fix="set rag.reranker to a local cross-encoder folder (saved with save_pretrained)",
            code="model-load",
        ) from None


class ProjectRetrieval:
    """``retrieve(texts, k)`` for strategies: the index refreshed once, searched per query."""

    def __init__(self, project: ProjectFolder, progress: ProgressSink | None = None) -> None:
        self.project = project
        self.progress = progress
        self._retriever: Retriever | None = None
        self.report: IndexReport | None = None

    @property
    def retriever(self) -> Retriever:
        if self._retriever is None:
            self.report = refresh_index(self.project, self.progress)
            if self.progress is not None:
                r = self.report
                files = len(r.added) + len(r.changed) + len(r.unchanged)
                self.progress.info(
                    f"documents: {r.chunks} chunks from {files} files ({len(r.added)} new, "
                    f"{len(r.changed)} changed, {len(r.removed)} removed, {len(r.skipped)} "
                    f"skipped; {r.embedded} chunks embedded)"
                )
                for s in r.skipped:
                    self.progress.note(f"{s.path} not indexed: {s.reason} ({s.fix})")
                for s in r.cut:
                    self.progress.note(f"{s.path} not indexed whole: {s.reason} ({s.fix})")
            self._retriever = open_retriever(self.project)
        return self._retriever

    @property
    def config(self) -> ProjectConfig:
        """The project's config (its ``rag:`` says how :meth:`__call__` searches)."""
        return self.project.config

    def __call__(
        self,
        texts: Sequence[str],
        k: int,
        *,
        weight: float | None = None,
        rerank: bool | None = None,
    ) -> tuple[list[list[Hit]], list[float]]:
        """The top ``k`` chunks of each text, and each search's ms, as ``rag:`` says.

        ``weight`` replaces ``rag.hybrid_weight`` and ``rerank=False`` searches without
        ``rag.reranker`` for this call only (a search over retrieval settings); None
        keeps the project's. Raises :class:`ConfigError` for ``rerank=True`` when
        ``rag:`` names no reranker, and for a weight outside [0, 1].
        """
        cfg = rag_config(self.project)
        if rerank and cfg.reranker is None:
            raise ConfigError(
                "reranking was asked for, and rag: names no reranker",
                file=self.project.root / "adaptlab.yaml",
                fix="set rag.reranker to a cross-encoder, or do not ask for reranking",
            )
        if weight is not None and not 0.0 <= weight <= 1.0:
            raise ConfigError(
                f"hybrid weight {weight} is outside [0, 1]",
                file=self.project.root / "adaptlab.yaml",
                fix="give a dense share between 0 and 1",
            )
        w = cfg.hybrid_weight if weight is None else weight
        retriever = self.retriever
        reranker = retriever.reranker
        if rerank is False:
            retriever.reranker = None  # this call only; searches run one at a time
        hits, ms = [], []
        try:
            for text in texts:  # one at a time: each answer's latency holds its own retrieval
                start = time.perf_counter()
                hits.append(retriever.search(text, k, mode=cfg.mode, weight=w, depth=cfg.depth))
                ms.append((time.perf_counter() - start) * 1000)
        finally:
            retriever.reranker = reranker
        return hits, ms
