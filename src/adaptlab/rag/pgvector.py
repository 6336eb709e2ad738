"""PostgreSQL + pgvector as the vector store, behind the same interface as the embedded one.

:class:`PgVectorStore` answers :meth:`~adaptlab.rag.search.VectorStore.search`
exactly like :class:`~adaptlab.rag.search.NumpyVectorStore`: the exact inner
product of each query with every L2-normalised chunk row (pgvector's ``<#>``,
a sequential scan; no approximate index unless asked for), best first, ties to
the lower row number, ``k`` capped at the number of rows. pgvector sums in
float32 like numpy, in another order, so scores agree to ~1e-6 and rankings
agree except between chunks whose scores differ by less than that.

The rows of one :class:`~adaptlab.rag.index.RagIndex` version go into their own
table, ``adaptlab_rag_<name>_v<version>`` (``row`` = the chunk's row in the
index, ``chunk_id``, ``doc_id``, ``embedding vector(d)``), so a re-index never
mixes versions; opening a newer version drops the older tables of the same
``name`` (newer ones are kept: a process still on them may be searching).
Loading is one transaction under an advisory lock: two processes opening the
same version load it once, and a half-loaded table is never seen.

``hnsw=True`` adds an HNSW index (pgvector ≥ 0.5, ``vector_ip_ops``) and searches
through it: faster on large indexes but **approximate** — results can then
differ from the embedded store.

:func:`local_server` starts the PostgreSQL 16 + pgvector that the ``pgserver``
package bundles (``pip install "adaptlab[pgvector]"``), listening on a Unix
socket in its data folder only. A password in a connection URL (or
``PGPASSWORD``) never appears in a message or a log line: :func:`redact_url`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adaptlab.core.errors import AdaptlabError, MissingDependencyError
from adaptlab.core.redact import redact_url as redact_url
from adaptlab.core.redact import scrub as _scrub

if TYPE_CHECKING:
    import numpy as np

    from adaptlab.rag.index import RagIndex

_log = logging.getLogger(__name__)

TABLE_PREFIX = "adaptlab_rag_"
MAX_DIM = 16_000  # pgvector's limit for a vector column
HNSW_MAX_DIM = 2_000  # and for an HNSW index on one
_MAX_EF_SEARCH = 1_000  # pgvector's limit for hnsw.ef_search
_NAME = re.compile(r"[a-z0-9_]{1,20}")

_CONNECT_FIX = (
    "check that the server runs and rag.pg_url (postgresql://user@host:port/db); the "
    "password comes from PGPASSWORD; or leave rag.pg_url unset for a local pgserver"
)


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise MissingDependencyError("psycopg", "pgvector") from None
    return psycopg


def _import_pgserver() -> Any:
    # platformdirs warns at import when XDG_RUNTIME_DIR is unset (containers, CI);
    # pgserver then keeps its lock file under /tmp, which is fine.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
        try:
            import pgserver
        except ImportError:
            raise MissingDependencyError("pgserver", "pgvector") from None
    return pgserver


def local_server(datadir: Path, *, cleanup_mode: str | None = "stop") -> str:
    """Start (or reuse) the bundled PostgreSQL with its data in ``datadir``; its URL.

    The server listens on a Unix socket only and trusts local connections, so the
    URL carries no password. ``cleanup_mode``: ``"stop"`` stops the server when
    this process exits (the data stays), ``"delete"`` also removes ``datadir``,
    ``None`` leaves it running. A second call for the same folder returns the
    same server. Running as root, pgserver runs PostgreSQL as a system user
    ``pgserver`` (created if missing) and opens the folder's parents to it.

    Raises :class:`~adaptlab.core.errors.MissingDependencyError` without ``pgserver``,
    :class:`~adaptlab.core.errors.AdaptlabError` when the server does not start.
    """
    import subprocess

    pgserver = _import_pgserver()
    datadir = Path(datadir).expanduser().resolve()
    datadir.parent.mkdir(parents=True, exist_ok=True)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR.*")
            server = pgserver.get_server(datadir, cleanup_mode=cleanup_mode)
        url: str = server.get_uri()
    except (OSError, subprocess.SubprocessError, AssertionError, RuntimeError) as exc:
        raise AdaptlabError(
            f"the bundled PostgreSQL did not start ({type(exc).__name__}: {exc})",
            file=datadir,
            fix=f"read {datadir / 'log'}; if the folder is damaged, delete it and retry",
            code="pgvector-server",
        ) from None
    _log.info("local PostgreSQL for %s at %s", datadir, redact_url(url))
    return url


def stop_local_server(datadir: Path) -> None:
    """Stop the server :func:`local_server` started for ``datadir`` (per its cleanup mode)."""
    pgserver = _import_pgserver()
    datadir = Path(datadir).expanduser().resolve()
    server = pgserver.PostgresServer._instances.get(datadir)
    if server is not None:
        server.cleanup()


def table_name(name: str, version: str) -> str:
    """The table of one index version: ``adaptlab_rag_<name>_v<version>`` (≤ 63 bytes)."""
    slug = re.sub(r"[^a-z0-9]+", "_", version.lower()).strip("_")
    if len(slug) > 28:  # keep the time prefix (it orders versions) and a hash of the rest
        slug = slug[:19] + "_" + hashlib.sha256(version.encode()).hexdigest()[:8]
    return f"{TABLE_PREFIX}{name}_v{slug}"


def default_name(index: RagIndex) -> str:
    """The table name part of an index: a hash of its folder, so projects sharing a
    database never drop each other's tables."""
    return hashlib.sha256(str(Path(index.path).resolve()).encode()).hexdigest()[:12]


def _literal(vector: np.ndarray) -> str:
    """A pgvector text literal that parses back to exactly these float32 values.

    ``tolist`` gives the shortest repr of each value as a float64, which is the
    float32 exactly; the server's ``strtof`` then returns that float32.
    """
    return str(vector.tolist())


class PgVectorStore:
    """The chunk embeddings of ``index`` in PostgreSQL, searched with pgvector.

    ``url``: a libpq connection URL or ``key=value`` string (PGPASSWORD and the
    other PG* variables apply). ``name``: the table name part shared by the
    versions of one index (lowercase letters, digits, ``_``; 1–20 chars; default
    :func:`default_name`). ``hnsw``: search through an HNSW index — approximate;
    ``ef_search`` is its candidate list size (raised to ``k`` when smaller).

    Raises :class:`~adaptlab.core.errors.MissingDependencyError` without psycopg, and
    :class:`~adaptlab.core.errors.AdaptlabError` when the server cannot be reached,
    lacks the ``vector`` extension (or one too old for ``hnsw``), or the index's
    dimension is beyond pgvector's limits.
    """

    def __init__(
        self,
        url: str,
        index: RagIndex,
        *,
        name: str | None = None,
        hnsw: bool = False,
        ef_search: int = 100,
        connect_timeout: int = 10,
    ) -> None:
        self._psycopg = _import_psycopg()
        self.url = url
        self.display_url = redact_url(url)
        self.name = name if name is not None else default_name(index)
        if not _NAME.fullmatch(self.name):
            raise AdaptlabError(
                f"invalid pgvector table name '{self.name}'",
                fix="use 1 to 20 lowercase letters, digits or '_'",
                code="pgvector-name",
            )
        self.version = index.version
        self.table = table_name(self.name, index.version)
        self.size, self.dim = (int(x) for x in index.embeddings.shape)
        self.hnsw = hnsw
        self.ef_search = ef_search
        limit = HNSW_MAX_DIM if hnsw else MAX_DIM
        if self.dim > limit:
            raise AdaptlabError(
                f"pgvector holds at most {limit} dimensions"
                + (" in an HNSW index" if hnsw else "")
                + f"; the index has {self.dim}",
                fix="use the embedded store (rag.store: embedded) or a smaller encoder",
                code="pgvector-dim",
            )
        self._lock = threading.Lock()  # one statement at a time on the connection
        self._conn = self._connect(connect_timeout)
        try:
            self.extension_version = self._ensure_extension()
            self._load(index)
        except BaseException:
            self._conn.close()
            raise

    # -- connection -----------------------------------------------------------------

    def _connect(self, timeout: int) -> Any:
        psycopg = self._psycopg
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=timeout)
        except psycopg.Error as exc:
            # ``from None``: the driver's exception is not chained, in case it quotes the URL.
            raise AdaptlabError(
                f"cannot reach PostgreSQL at {self.display_url}: {self._why(exc)}",
                fix=_CONNECT_FIX,
                code="pgvector-connect",
            ) from None

    def _why(self, exc: BaseException) -> str:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return _scrub(f"{type(exc).__name__}: {first}", self.url)

    def _ensure_extension(self) -> str:
        """The installed pgvector version; creates the extension when it may."""
        psycopg = self._psycopg
        fix = (
            "install pgvector on the server (https://github.com/pgvector/pgvector) and run "
            "'CREATE EXTENSION vector;' in this database as a superuser, or leave "
            "rag.pg_url unset to use the bundled pgserver, which includes it"
        )
        try:
            row = self._conn.execute(
                "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
            ).fetchone()
            if row is None:
                self._conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                row = self._conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                ).fetchone()
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None
        except psycopg.Error as exc:
            raise AdaptlabError(
                f"the PostgreSQL server at {self.display_url} has no pgvector extension "
                f"({self._why(exc)})",
                fix=fix,
                code="pgvector-extension",
            ) from None
        version = str(row[0])
        if self.hnsw and tuple(int(p) for p in re.findall(r"\d+", version)[:2]) < (0, 5):
            raise AdaptlabError(
                f"pgvector {version} has no HNSW index (0.5.0 or newer has)",
                fix="upgrade pgvector on the server, or search without hnsw",
                code="pgvector-extension",
            )
        return version

    def _lost(self, exc: BaseException) -> AdaptlabError:
        return AdaptlabError(
            f"lost the connection to PostgreSQL at {self.display_url}: {self._why(exc)}",
            fix=_CONNECT_FIX,
            code="pgvector-connect",
        )

    # -- loading --------------------------------------------------------------------

    def _load(self, index: RagIndex) -> None:
        """Create and fill this version's table unless it is there whole; drop older ones."""
        from psycopg import sql

        psycopg = self._psycopg
        table = sql.Identifier(self.table)
        try:
            with self._conn.transaction():
                self._conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (self.table,))
                if self._table_ok(table):
                    _log.info("pgvector table %s is loaded", self.table)
                else:
                    self._fill(table, index)
                if self.hnsw:
                    self._conn.execute(
                        sql.SQL(
                            "CREATE INDEX IF NOT EXISTS {} ON {} "
                            "USING hnsw (embedding vector_ip_ops)"
                        ).format(sql.Identifier(self.table + "_hnsw"), table)
                    )
                self._drop_older()
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None
        except psycopg.DataError as exc:
            raise AdaptlabError(
                f"PostgreSQL refused the index's embeddings ({self._why(exc)})",
                fix="re-index: the embeddings hold values pgvector cannot store (NaN or inf)",
                code="pgvector-data",
            ) from None

    def _table_ok(self, table: Any) -> bool:
        from psycopg import sql

        exists = self._conn.execute(
            "SELECT 1 FROM pg_tables WHERE schemaname = current_schema() AND tablename = %s",
            (self.table,),
        ).fetchone()
        if exists is None:
            return False
        count, dim = self._conn.execute(
            sql.SQL("SELECT count(*), max(vector_dims(embedding)) FROM {}").format(table)
        ).fetchone()
        if count == self.size and dim == self.dim:
            return True
        _log.warning("pgvector table %s is incomplete; loading it again", self.table)
        self._conn.execute(sql.SQL("DROP TABLE {}").format(table))
        return False

    def _fill(self, table: Any, index: RagIndex) -> None:
        from psycopg import sql

        self._conn.execute(
            sql.SQL(
                "CREATE TABLE {} (row integer PRIMARY KEY, chunk_id text NOT NULL, "
                "doc_id text NOT NULL, embedding vector({}) NOT NULL)"
            ).format(table, sql.Literal(self.dim))
        )
        copy_sql = sql.SQL("COPY {} (row, chunk_id, doc_id, embedding) FROM STDIN").format(table)
        with self._conn.cursor() as cur, cur.copy(copy_sql) as copy:
            for row, (chunk, vector) in enumerate(zip(index.chunks, index.embeddings, strict=True)):
                copy.write_row((row, chunk.chunk_id, chunk.doc_id, _literal(vector)))
        _log.info("loaded %d rows into pgvector table %s", self.size, self.table)

    def _drop_older(self) -> None:
        from psycopg import sql

        prefix = f"{TABLE_PREFIX}{self.name}_v"
        rows = self._conn.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = current_schema() "
            "AND starts_with(tablename, %s)",
            (prefix,),
        ).fetchall()
        for (other,) in rows:
            if other < self.table:  # versions start with their time: older sorts first
                self._conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(other)))
                _log.info("dropped the older pgvector table %s", other)

    # -- search ---------------------------------------------------------------------

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` chunk rows with the largest inner product with each query.

        ``queries``: (m, d) float32, L2-normalised (as the index rows are). Returns
        (rows (m, k) int64, scores (m, k) float32 cosine similarities), best first,
        ties to the lower row; ``k`` is capped at the number of rows. Exact unless
        the store was opened with ``hnsw=True``. Raises
        :class:`~adaptlab.core.errors.AdaptlabError` when ``d`` differs from the index's,
        the connection is lost, or the table was dropped by a newer index version.
        """
        import numpy as np

        q = np.asarray(queries, dtype=np.float32)
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise AdaptlabError(
                f"query vectors of shape {q.shape} for an index of dimension {self.dim}",
                fix="embed the queries with the index's encoder",
                code="rag-encoder-mismatch",
            )
        k = max(0, min(int(k), self.size))
        if k == 0 or len(q) == 0:
            return np.zeros((len(q), k), dtype=np.int64), np.zeros((len(q), k), dtype=np.float32)
        approximate = self.hnsw and k <= _MAX_EF_SEARCH
        rows, scores, filled = self._run(q, k, approximate)
        short = [i for i, n in enumerate(filled) if n < k]
        if short:  # HNSW may find fewer than k: those queries exactly
            rows[short], scores[short], _ = self._run(q[short], k, approximate=False)
        if approximate:  # the index orders by distance only: ties to the lower row here
            order = np.lexsort((rows, -scores), axis=1)
            rows = np.take_along_axis(rows, order, axis=1)
            scores = np.take_along_axis(scores, order, axis=1)
        return rows, scores

    def _run(self, q: np.ndarray, k: int, approximate: bool) -> tuple[Any, Any, list[int]]:
        """(rows, scores, how many rows each query got) as :meth:`search` returns them."""
        import numpy as np

        rows = np.zeros((len(q), k), dtype=np.int64)
        scores = np.zeros((len(q), k), dtype=np.float32)
        filled = [0] * len(q)
        for n, row, dist in self._query([_literal(v) for v in q], k, approximate):
            rows[n - 1, filled[n - 1]] = row
            scores[n - 1, filled[n - 1]] = -dist  # <#> is the negative inner product
            filled[n - 1] += 1
        return rows, scores, filled

    def _query(
        self, literals: list[str], k: int, approximate: bool
    ) -> list[tuple[int, int, float]]:
        """(query number from 1, row, ``<#>`` distance) for each query's top ``k``, in order."""
        from psycopg import sql

        psycopg = self._psycopg
        # Exact: ordering by (distance, row) is a full scan and sort that no index can
        # serve. Approximate: ordering by the distance alone lets the planner use HNSW.
        order = sql.SQL("d, t.row") if not approximate else sql.SQL("d")
        query = sql.SQL(
            "SELECT q.n, h.row, h.d FROM unnest(%s::vector[]) WITH ORDINALITY AS q(v, n) "
            "CROSS JOIN LATERAL (SELECT t.row, t.embedding <#> q.v AS d FROM {} AS t "
            "ORDER BY {} LIMIT %s) AS h ORDER BY q.n, h.d, h.row"
        ).format(sql.Identifier(self.table), order)
        try:
            with self._lock, self._conn.transaction():
                if approximate:
                    ef = min(_MAX_EF_SEARCH, max(self.ef_search, k))
                    self._conn.execute(
                        sql.SQL("SET LOCAL hnsw.ef_search = {}").format(sql.Literal(ef))
                    )
                out: list[tuple[int, int, float]] = self._conn.execute(
                    query, (literals, k)
                ).fetchall()
        except psycopg.errors.UndefinedTable:
            raise AdaptlabError(
                f"the pgvector table of index version {self.version} is gone (a newer "
                "index replaced it)",
                fix="open the index again",
                code="rag-busy",
            ) from None
        except psycopg.OperationalError as exc:
            raise self._lost(exc) from None
        return out

    # -- lifetime -------------------------------------------------------------------

    def close(self) -> None:
        """Close the connection (the table stays for the next process)."""
        self._conn.close()

    def __enter__(self) -> PgVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
