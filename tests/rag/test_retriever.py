"""The retriever over both vector stores: the embedded numpy one and PostgreSQL + pgvector.

Every test that takes ``store`` runs once per store. The pgvector runs start the
PostgreSQL that ``pgserver`` bundles (once for the test session, in a temporary
folder, deleted afterwards: tests/conftest.py); they are skipped only where ``pgserver`` is not
installed (``pip install "adaptlab[pgvector]"``, as CI does).
"""

from __future__ import annotations

import hashlib
import logging
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from itertools import pairwise
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from adaptlab.core.errors import AdaptlabError, MissingDependencyError
from adaptlab.rag.chunking import Chunk
from adaptlab.rag.index import IndexSettings, RagIndex, build_index
from adaptlab.rag.search import MODES, NumpyVectorStore, Retriever, VectorStore

DIM = 128

DOCS = {
    "refunds.md": """# Refunds

Refunds are paid back to the original card within five business days after we
receive the item. Ask for a refund under the marmalade clause when the order
arrived damaged.

## Partial refunds

A partial refund covers one item of a larger order; the rest of the order stays
with you and is not charged again.
""",
    "shipping.md": """# Shipping

Orders leave our warehouse within two days. Bulky furniture travels by zeppelin
freight and takes a week longer than ordinary parcels.
""",
    "passwords.md": """# Account security

Reset your password from the login page. A reset link expires after an hour; an
administrator can issue the obsidian token when the link no longer arrives.
""",
    "warranty.md": """# Warranty

Every appliance carries a two-year warranty from the date of delivery.

## Claims

Send a photo of the tangerine seal on the back of the device together with the
receipt. Claims without the seal are reviewed by hand, which takes longer.

## Exclusions

Damage from water, drops or unauthorised repairs is not covered by the warranty.
""",
    "invoices.md": """# Invoices

Invoices are issued on the first of every month and list every order of the
previous month. Corrections go through the copper ledger team.
""",
    "privacy.md": """# Privacy

We keep personal data for as long as the account exists. Deletion requests
follow the walrus protocol and finish within thirty days.
""",
    "api.md": """# API limits

Each key may send 600 requests per minute. Partners on the saffron quota may
send ten times as many; a request over the limit answers with status 429.
""",
    "returns.md": """# Returns

Unwanted items can be returned within thirty days. Print the lighthouse form,
put it in the box and drop the parcel at any post office.
""",
    "contact.md": """# Contact

Our support team answers by email within a day. Urgent outages go to the
pelican hotline, staffed around the clock.
""",
}
# An exact copy under another path: equal chunk text, equal embeddings, equal scores.
DOCS["archive/shipping.md"] = DOCS["shipping.md"]

PHRASES = [
    ("marmalade clause", "refunds"),
    ("obsidian token", "passwords"),
    ("tangerine seal", "warranty"),
    ("copper ledger", "invoices"),
    ("walrus protocol", "privacy"),
    ("saffron quota", "api"),
    ("lighthouse form", "returns"),
    ("pelican hotline", "contact"),
]


class HashEmbedder:
    """A deterministic bag-of-words embedder: signed word hashes into 128 dimensions."""

    max_tokens = 512

    def __init__(self, model_id: str = "test/hash-bow-128") -> None:
        self.model_id = model_id

    def embed(
        self, texts: Sequence[str], *, on_batch: Callable[[int], None] | None = None
    ) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for i, text in enumerate(texts):
            for word in re.findall(r"\w+", text.lower()):
                h = hashlib.sha256(word.encode()).digest()
                out[i, h[0] % DIM] += 1.0 if h[1] & 1 else -1.0
        if on_batch is not None:
            on_batch(len(texts))
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)

    def count_tokens(self, texts: Sequence[str]) -> list[int]:
        return [len(t.split()) for t in texts]


def _write_docs(folder: Path, docs: dict[str, str]) -> Path:
    for name, text in docs.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def _synthetic_index(path: Path, version: str, embeddings: np.ndarray) -> RagIndex:
    chunks = [Chunk(f"d{i}#0", f"d{i}", f"d{i}.md", "", (), 0, "x") for i in range(len(embeddings))]
    return RagIndex(path, version, {"encoder": "synthetic"}, chunks, embeddings)


# -- fixtures ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def docs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_docs(tmp_path_factory.mktemp("docs"), DOCS)


@pytest.fixture(scope="module")
def fake_index(docs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> RagIndex:
    index_dir = tmp_path_factory.mktemp("fake-index")
    settings = IndexSettings(max_tokens=40, overlap_tokens=8)
    build_index(docs_dir, index_dir, HashEmbedder(), settings)
    return RagIndex.open(index_dir)


@pytest.fixture(scope="module")
def pg_url(pg_server: str) -> str:
    """The session's bundled PostgreSQL (tests/conftest.py), shared by this module."""
    return pg_server


@pytest.fixture(scope="module", params=["embedded", "pgvector"])
def store(request: pytest.FixtureRequest) -> Iterator[Callable[[RagIndex], VectorStore]]:
    """Opens the parametrised vector store over an index (closed after the module)."""
    if request.param == "embedded":
        yield lambda index: NumpyVectorStore(index.embeddings)
        return
    from adaptlab.rag.pgvector import PgVectorStore

    url = request.getfixturevalue("pg_url")
    opened: list[PgVectorStore] = []

    def open_store(index: RagIndex) -> VectorStore:
        opened.append(PgVectorStore(url, index))
        return opened[-1]

    yield open_store
    for s in opened:
        s.close()


@pytest.fixture(scope="module")
def retriever(store: Callable[[RagIndex], VectorStore], fake_index: RagIndex) -> Retriever:
    return Retriever(fake_index, HashEmbedder(), store=store(fake_index))


@pytest.fixture(scope="module")
def encoder() -> Any:
    from adaptlab.backends.sentence_transformers import (
        SentenceTransformerBackend,
        SentenceTransformerOptions,
    )
    from adaptlab.rag.embedders import EncoderEmbedder

    return EncoderEmbedder(
        SentenceTransformerBackend(SentenceTransformerOptions(max_seq_length=256))
    )


@pytest.fixture(scope="module")
def encoder_index(
    docs_dir: Path, encoder: Any, tmp_path_factory: pytest.TempPathFactory
) -> RagIndex:
    index_dir = tmp_path_factory.mktemp("encoder-index")
    build_index(docs_dir, index_dir, encoder, IndexSettings(max_tokens=64, overlap_tokens=16))
    return RagIndex.open(index_dir)


# -- helpers ----------------------------------------------------------------------


def assert_brute_force(rows: np.ndarray, scores: np.ndarray, sims: np.ndarray, k: int) -> None:
    """``rows``/``scores`` are the top ``k`` of float64 brute force ``sims`` (m, n).

    Scores agree to 1e-5 at every rank; a row whose score is within 1e-5 of another
    row's may swap places with it (float32 sums in another order), any other row
    must be exactly where brute force puts it (ties to the lower row).
    """
    k = min(k, sims.shape[1])
    assert rows.shape == scores.shape == (len(sims), k)
    assert rows.dtype == np.int64
    assert scores.dtype == np.float32
    for r, s, full in zip(rows, scores, sims, strict=True):
        order = np.lexsort((np.arange(len(full)), -full))[:k]
        np.testing.assert_allclose(s, full[order], atol=1e-5)
        np.testing.assert_allclose(full[r], full[order], atol=1e-5)
        assert len(set(r.tolist())) == k
        for rank, row in enumerate(order):
            if np.sum(np.abs(full - full[row]) <= 1e-5) == 1:
                assert r[rank] == row, f"rank {rank}: row {r[rank]}, brute force {row}"


def _docs(hits: Sequence[Any]) -> list[str]:
    return [h.chunk.doc_id for h in hits]


# -- both stores --------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 4, 10, 1000])
def test_dense_top_k_equals_brute_force(
    store: Callable[[RagIndex], VectorStore], fake_index: RagIndex, k: int
) -> None:
    texts = [p for p, _ in PHRASES] + ["refund of a damaged order", "how long", "zeppelin freight"]
    queries = np.vstack([HashEmbedder().embed(texts), fake_index.embeddings[::3]])
    rows, scores = store(fake_index).search(queries, k)
    sims = queries.astype(np.float64) @ fake_index.embeddings.astype(np.float64).T
    assert_brute_force(rows, scores, sims, k)


def test_exact_ties_go_to_the_lower_row_also_at_the_cut(
    store: Callable[[RagIndex], VectorStore], tmp_path: Path
) -> None:
    basis = np.eye(4, DIM, dtype=np.float32)
    mixed = (basis[0] + basis[1]) / np.linalg.norm(basis[0] + basis[1])
    embeddings = np.stack([basis[0], mixed, basis[1], basis[0], mixed, basis[2]] * 5)
    index = _synthetic_index(tmp_path / "ties", "20240101T000000-0000ties", embeddings)
    queries = np.stack([basis[0], basis[1], basis[3]])
    rows, scores = store(index).search(queries, 7)
    assert rows[0].tolist() == [0, 3, 6, 9, 12, 15, 18]  # ten rows tie at 1.0: cut at 7
    assert rows[1].tolist() == [2, 8, 14, 20, 26, 1, 4]
    assert rows[2].tolist() == list(range(7))  # all 0: by row
    np.testing.assert_allclose(scores[0], 1.0, atol=1e-6)
    np.testing.assert_allclose(scores[1, 5:], 0.70710677, atol=1e-6)
    rows, scores = store(index).search(queries[:1], 100)
    assert rows.shape == (1, 30)
    assert rows[0].tolist() == sorted(
        range(30), key=lambda i: (-float(embeddings[i] @ basis[0]), i)
    )


@pytest.mark.parametrize("mode", MODES)
def test_distinctive_phrase_finds_its_document_first(retriever: Retriever, mode: str) -> None:
    results = retriever.search_many([p for p, _ in PHRASES], 3, mode=mode)  # type: ignore[arg-type]
    assert [hits[0].chunk.doc_id for hits in results] == [doc for _, doc in PHRASES]


@pytest.mark.parametrize("mode", MODES)
def test_identical_documents_tie_and_the_lower_row_wins(retriever: Retriever, mode: str) -> None:
    hits = retriever.search("zeppelin freight", 2, mode=mode)
    assert sorted(_docs(hits)) == ["archive/shipping", "shipping"]
    assert hits[0].row < hits[1].row
    if mode != "rrf":  # rrf scores ranks, and the tie is already broken in each ranking
        assert hits[0].score == pytest.approx(hits[1].score, abs=1e-6)


def test_hybrid_weight_one_is_dense_and_zero_is_bm25(retriever: Retriever) -> None:
    n = len(retriever.index.chunks)
    for query in ["refund for a damaged order", "password reset link", "thirty days"]:
        dense = [h.row for h in retriever.search(query, n, mode="dense")]
        bm25 = [h.row for h in retriever.search(query, n, mode="bm25")]
        assert [h.row for h in retriever.search(query, n, mode="hybrid", weight=1.0)] == dense
        # BM25 returns the rows that match a query term; the hybrid ranks those first.
        hybrid = [h.row for h in retriever.search(query, n, mode="hybrid", weight=0.0)]
        assert hybrid[: len(bm25)] == bm25
        assert dense != bm25


@pytest.mark.parametrize("mode", MODES)
def test_k_larger_than_the_corpus(retriever: Retriever, mode: str) -> None:
    n = len(retriever.index.chunks)
    hits = retriever.search("warranty claims", 10 * n, mode=mode, depth=5)
    # Every chunk, except that BM25 returns only the chunks sharing a term with the query.
    everything = (
        n
        if mode != "bm25"
        else len(retriever.bm25.search(["warranty claims"], n)[1][0].nonzero()[0])
    )
    assert len(hits) == everything
    assert len({h.row for h in hits}) == everything
    assert [h.rank for h in hits] == list(range(everything))
    assert all(a.score >= b.score for a, b in pairwise(hits))


def test_real_encoder_same_ranking_on_every_store(
    store: Callable[[RagIndex], VectorStore], encoder: Any, encoder_index: RagIndex
) -> None:
    questions = [
        "How long until I get my money back?",
        "When does my order ship?",
        "I forgot my password",
        "How many API calls may I make?",
        "Is water damage covered?",
        "How do I send an item back?",
    ]
    vectors = encoder.embed(questions)
    rows, scores = store(encoder_index).search(vectors, 8)
    sims = vectors.astype(np.float64) @ encoder_index.embeddings.astype(np.float64).T
    assert_brute_force(rows, scores, sims, 8)
    retriever = Retriever(encoder_index, encoder, store=store(encoder_index))
    firsts = [hits[0].chunk.doc_id for hits in retriever.search_many(questions, 3, mode="dense")]
    assert firsts[0] == "refunds"
    assert firsts[1] in ("shipping", "archive/shipping")
    assert firsts[2:] == ["passwords", "api", "warranty", "returns"]


# -- store-independent ----------------------------------------------------------------


def test_bm25_query_of_unknown_words_only(fake_index: RagIndex) -> None:
    retriever = Retriever(fake_index, HashEmbedder())
    assert retriever.search("zzqx blorft", 5, mode="bm25") == []  # nothing matches
    for mode in ("rrf", "hybrid"):
        assert len(retriever.search("zzqx blorft", 5, mode=mode)) == 5
    assert retriever.search_many([], 5, mode="bm25") == []


def test_encoder_mismatch_is_a_clear_error(fake_index: RagIndex) -> None:
    retriever = Retriever(fake_index, HashEmbedder("test/another-model"))
    for mode in ("dense", "hybrid", "rrf"):
        with pytest.raises(AdaptlabError) as err:
            retriever.search("refund", 3, mode=mode)
        assert err.value.issue.code == "rag-encoder-mismatch"
        assert "test/hash-bow-128" in str(err.value)
        assert "re-index" in (err.value.fix or "")
    assert retriever.search("refund", 3, mode="bm25")  # BM25 needs no encoder


def test_german_stemming_finds_the_singular(tmp_path: Path) -> None:
    docs = _write_docs(
        tmp_path / "docs",
        {
            "erstattung.md": "# Geld zurück\n\nEine Rückerstattung dauert fünf Werktage.\n",
            "versand.md": "# Versand\n\nPakete verlassen das Lager innerhalb von zwei Tagen.\n",
            "konto.md": "# Konto\n\nDas Passwort setzen Sie auf der Anmeldeseite zurück.\n",
        },
    )
    build_index(docs, tmp_path / "index", HashEmbedder(), IndexSettings(language="german"))
    index = RagIndex.open(tmp_path / "index")
    hits = Retriever(index, HashEmbedder()).search("Rückerstattungen", 3, mode="bm25")
    assert [h.chunk.doc_id for h in hits] == ["erstattung"]  # the only one sharing a stem
    assert hits[0].score > 0


# -- pgvector only ------------------------------------------------------------------


def test_pg_rows_round_trip_exactly(pg_url: str, fake_index: RagIndex) -> None:
    import psycopg

    from adaptlab.rag.pgvector import PgVectorStore

    with PgVectorStore(pg_url, fake_index) as pg, psycopg.connect(pg_url) as conn:
        got = conn.execute(
            f"SELECT row, chunk_id, doc_id, embedding::text FROM {pg.table} ORDER BY row"
        ).fetchall()
    assert [r[0] for r in got] == list(range(len(fake_index.chunks)))
    assert [r[1] for r in got] == [c.chunk_id for c in fake_index.chunks]
    assert [r[2] for r in got] == [c.doc_id for c in fake_index.chunks]
    back = np.array([[float(x) for x in r[3].strip("[]").split(",")] for r in got], np.float32)
    assert np.array_equal(back, fake_index.embeddings)


def test_pg_a_new_version_drops_older_tables_only(
    pg_url: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import psycopg

    from adaptlab.rag.pgvector import PgVectorStore

    rng = np.random.default_rng(0)
    e = rng.normal(size=(12, 8)).astype(np.float32)
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    v1 = _synthetic_index(tmp_path, "20240101T000000-00000001", e)
    v2 = _synthetic_index(tmp_path, "20240102T000000-00000002", e[::-1].copy())

    def tables() -> list[str]:
        with psycopg.connect(pg_url) as conn:
            return [
                t
                for (t,) in conn.execute(
                    "SELECT tablename FROM pg_tables WHERE tablename LIKE 'adaptlab_rag_reidx%'"
                ).fetchall()
            ]

    old = PgVectorStore(pg_url, v1, name="reidx")
    new = PgVectorStore(pg_url, v2, name="reidx")
    assert tables() == [new.table]
    assert new.search(e[11:], 1)[0].tolist() == [[0]]
    with pytest.raises(AdaptlabError) as err:
        old.search(e[:1], 1)
    assert err.value.issue.code == "rag-busy"
    old.close()
    with caplog.at_level(logging.INFO, logger="adaptlab.rag.pgvector"):
        again = PgVectorStore(pg_url, v2, name="reidx")
    assert "is loaded" in caplog.text  # the same version is not loaded twice
    stale = PgVectorStore(pg_url, v1, name="reidx")  # an older process: keeps the newer table
    assert sorted(tables()) == sorted([stale.table, new.table])
    for s in (new, again, stale):
        s.close()


def test_pg_hnsw_is_optional_and_close_to_exact(pg_url: str, fake_index: RagIndex) -> None:
    from adaptlab.rag.pgvector import PgVectorStore

    queries = HashEmbedder().embed([p for p, _ in PHRASES])
    with PgVectorStore(pg_url, fake_index, name="hnsw", hnsw=True) as pg:
        rows, scores = pg.search(queries, 3)
        many, _ = pg.search(queries[:1], len(fake_index.chunks) + 3)
    exact, exact_scores = NumpyVectorStore(fake_index.embeddings).search(queries, 3)
    assert rows[:, 0].tolist() == exact[:, 0].tolist()
    np.testing.assert_allclose(scores[:, 0], exact_scores[:, 0], atol=1e-5)
    assert sorted(many[0].tolist()) == list(range(len(fake_index.chunks)))


def test_pg_missing_extension_is_a_clear_error(pg_url: str, fake_index: RagIndex) -> None:
    import psycopg
    from psycopg.conninfo import make_conninfo

    from adaptlab.rag.pgvector import PgVectorStore

    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS novector")
        conn.execute("DROP ROLE IF EXISTS plain_user")
        conn.execute("CREATE ROLE plain_user LOGIN")
        conn.execute("CREATE DATABASE novector OWNER plain_user")
    url = make_conninfo(pg_url, user="plain_user", dbname="novector")
    with pytest.raises(AdaptlabError) as err:
        PgVectorStore(url, fake_index)  # pgvector is not trusted: a plain role cannot add it
    assert err.value.issue.code == "pgvector-extension"
    assert "CREATE EXTENSION vector" in (err.value.fix or "")


def test_pg_dimension_mismatch(pg_url: str, fake_index: RagIndex) -> None:
    from adaptlab.rag.pgvector import PgVectorStore

    with PgVectorStore(pg_url, fake_index) as pg, pytest.raises(AdaptlabError) as err:
        pg.search(np.zeros((1, DIM + 1), np.float32), 3)
    assert err.value.issue.code == "rag-encoder-mismatch"


# -- pgvector errors without a server -------------------------------------------------


def test_unreachable_server_names_it_without_the_password(
    fake_index: RagIndex, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("psycopg", reason='psycopg is not installed: "adaptlab[pgvector]"')
    from adaptlab.rag.pgvector import PgVectorStore

    monkeypatch.setenv("PGPASSWORD", "envsecret42")
    url = "postgresql://alice:hunter2secret@/nowhere?host=/nonexistent-adaptlab-socket"
    with pytest.raises(AdaptlabError) as err:
        PgVectorStore(url, fake_index, connect_timeout=2)
    text = str(err.value)
    assert err.value.issue.code == "pgvector-connect"
    assert "alice:***@" in text
    assert "hunter2secret" not in text
    assert "envsecret42" not in text
    assert err.value.__cause__ is None and err.value.__suppress_context__


def test_redact_url() -> None:
    from adaptlab.rag.pgvector import redact_url

    assert redact_url("postgresql://bob:p%40ss@db.example:5432/rag") == (
        "postgresql://bob:***@db.example:5432/rag"
    )
    assert redact_url("postgres://bob@db/rag") == "postgres://bob@db/rag"
    assert redact_url("host=db user=bob password='a b' dbname=rag") == (
        "host=db user=bob password=*** dbname=rag"
    )
    assert redact_url("postgresql://db/rag?password=xyz&sslmode=require") == (
        "postgresql://db/rag?password=***&sslmode=require"
    )


def test_missing_packages_name_the_extra(
    fake_index: RagIndex, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from adaptlab.rag.pgvector import PgVectorStore, local_server

    monkeypatch.setitem(sys.modules, "pgserver", None)
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(MissingDependencyError) as err:
        local_server(tmp_path / "pg")
    assert "'pgserver'" in str(err.value)
    assert "adaptlab[pgvector]" in (err.value.fix or "")
    with pytest.raises(MissingDependencyError) as err:
        PgVectorStore("postgresql://localhost/rag", fake_index)
    assert "'psycopg'" in str(err.value)


def test_rrf_gives_no_vote_to_rows_that_match_no_query_term(fake_index: RagIndex) -> None:
    """A row BM25 scores 0 shares no term with the query: no RRF vote, so RRF is dense."""
    retriever = Retriever(fake_index, HashEmbedder())
    dense = [h.row for h in retriever.search("qwzx vbnm", 5, mode="dense")]
    assert [h.row for h in retriever.search("qwzx vbnm", 5, mode="rrf")] == dense
