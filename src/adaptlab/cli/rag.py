"""``adaptlab rag``: index a project's documents, search them, and score retrieval.

``rag index`` (re-)indexes ``rag.docs`` (only changed files are embedded again);
``rag query`` shows what a question retrieves; ``rag eval`` scores retrieval on
labelled queries with BEIR-style qrels (nDCG@10, recall@k, MRR, latency), and with
``--tune`` chooses the hybrid weight on part of the queries and reports on the rest.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.text import Text

from adaptlab.cli.common import console, project_option
from adaptlab.core.format import plural

if TYPE_CHECKING:
    from adaptlab.rag.index import IndexReport


@click.group()
def rag() -> None:
    """Retrieval over the project's documents (rag: in adaptlab.yaml)."""


def _print_report(report: IndexReport) -> None:
    files = len(report.added) + len(report.changed) + len(report.unchanged)
    console.print(
        Text(
            f"indexed {plural(report.chunks, 'chunk')} from {plural(files, 'file')} in "
            f"{report.seconds:.1f} s: "
            f"{len(report.added)} new, {len(report.changed)} changed, "
            f"{len(report.unchanged)} unchanged, {len(report.removed)} removed; "
            f"{plural(report.embedded, 'chunk')} embedded (version {report.version})"
        )
    )
    for s in report.skipped:
        console.print(Text.assemble(("skipped ", "yellow"), f"{s.path}: {s.reason}"))
        console.print(Text(f"  fix: {s.fix}"))
    for s in report.cut:  # indexed, but not whole: never silently
        console.print(Text.assemble(("cut ", "yellow"), f"{s.path}: {s.reason}"))
        console.print(Text(f"  fix: {s.fix}"))


@rag.command("index")
@project_option
def index_cmd(project_dir: str) -> None:
    """Index rag.docs: chunk, embed and store; unchanged files are not embedded again."""
    from adaptlab.cli.progress import RichProgress
    from adaptlab.engine.project import Project
    from adaptlab.rag.project import refresh_index

    project = Project.load(project_dir)
    with RichProgress(console) as progress:
        report = refresh_index(project, progress)
    _print_report(report)


@rag.command("query")
@project_option
@click.argument("question")
@click.option("-k", "--top-k", "k", type=click.IntRange(1, 100), default=5, show_default=True)
@click.option(
    "--mode",
    type=click.Choice(["dense", "bm25", "rrf", "hybrid"]),
    default=None,
    help="Default: rag.mode.",
)
def query_cmd(project_dir: str, question: str, k: int, mode: str | None) -> None:
    """Show the chunks QUESTION retrieves, best first, with their scores."""
    from adaptlab.engine.project import Project
    from adaptlab.rag.project import open_retriever, rag_config

    project = Project.load(project_dir)
    cfg = rag_config(project)
    retriever = open_retriever(project)
    hits, ms = retriever.timed_search(
        question, k, mode=mode or cfg.mode, weight=cfg.hybrid_weight, depth=cfg.depth
    )
    for hit in hits:
        console.print(
            Text.assemble(
                (f"{hit.rank + 1}. ", "bold"),
                (hit.chunk.chunk_id, "cyan"),
                f"  {hit.score:.3f}  ",
                (hit.chunk.heading_path, "dim"),
            )
        )
        console.print(Text("   " + hit.chunk.text[:300].replace("\n", " ")))
    console.print(Text(f"{ms:.1f} ms, query embedding included", style="dim"))


def _read_queries(path: Path, max_mb: float) -> dict[str, str]:
    from adaptlab.core.errors import DataError
    from adaptlab.core.strict_json import NotJsonError, parse_json
    from adaptlab.rag.metrics import read_eval_file

    out: dict[str, str] = {}
    lines = read_eval_file(path, "queries file", max_mb).splitlines()
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = parse_json(line)
            out[str(obj["_id"])] = str(obj["text"])
        except NotJsonError as exc:
            raise DataError(str(exc), file=path, line=number, fix=exc.fix) from None
        except (json.JSONDecodeError, KeyError, TypeError):
            raise DataError(
                "not a query object",
                file=path,
                line=number,
                fix='write {"_id": "…", "text": "…"} on each line',
            ) from None
    return out


@rag.command("eval")
@project_option
@click.option(
    "--queries",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="BEIR queries.jsonl: {_id, text} per line.",
)
@click.option(
    "--qrels",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="BEIR qrels TSV: query-id, corpus-id, score (doc ids = file names "
    "without suffix under rag.docs).",
)
@click.option(
    "--tune",
    "tune_share",
    type=click.FloatRange(0, 0.9),
    default=0.0,
    show_default=True,
    help="Share of the queries that choose the hybrid weight; the rest report.",
)
@click.option("--latency-queries", type=click.IntRange(0), default=100, show_default=True)
@click.option(
    "--max-file-mb",
    type=click.FloatRange(min=0, min_open=True),
    default=512.0,
    show_default=True,
    help="Refuse a larger queries or qrels file.",
)
def eval_cmd(
    project_dir: str,
    queries: Path,
    qrels: Path,
    tune_share: float,
    latency_queries: int,
    max_file_mb: float,
) -> None:
    """Score retrieval of the project's index: nDCG@10, recall@k, MRR, latency p50/p95."""
    import numpy as np

    from adaptlab.engine.project import Project
    from adaptlab.evaluation.stats import bootstrap_stat_ci, percentile
    from adaptlab.rag.evaluate import (
        ModeResult,
        measure_latency,
        score_mode,
        split_queries,
        tune_weight,
    )
    from adaptlab.rag.metrics import read_qrels
    from adaptlab.rag.project import open_retriever, rag_config
    from adaptlab.rag.search import Mode

    project = Project.load(project_dir)
    cfg = rag_config(project)
    judged = read_qrels(qrels, max_file_mb)
    texts = _read_queries(queries, max_file_mb)
    missing = sorted(set(judged) - set(texts))
    if missing:
        from adaptlab.core.errors import DataError

        raise DataError(
            f"{plural(len(missing), 'judged query')} "
            f"{'has' if len(missing) == 1 else 'have'} no text in the queries file "
            f"(first: {missing[0]})",
            file=queries,
            fix="give every query-id of the qrels file a line in the queries file",
        )
    retriever = open_retriever(project)
    qids = sorted(judged)
    weight = cfg.hybrid_weight
    if tune_share > 0:
        tune_ids, qids = split_queries(qids, tune_share, project.config.seed)
        weight, by_weight = tune_weight(retriever, texts, judged, tune_ids, depth=cfg.depth)
        grid = ", ".join(f"{w:.1f}: {v:.3f}" for w, v in by_weight.items())
        console.print(
            Text(f"hybrid weight chosen on {plural(len(tune_ids), 'query')}: {weight:.1f} ({grid})")
        )
    console.print(Text(f"scored on {plural(len(qids), 'query')}"))
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD)
    for col in ("mode", "nDCG@10 (95% CI)", "recall@10", "recall@100", "MRR@10", "ms p50", "p95"):
        table.add_column(col, justify="right" if col != "mode" else "left")
    modes: tuple[Mode, ...] = ("dense", "bm25", "rrf", "hybrid")
    for mode in modes:
        res = score_mode(retriever, texts, judged, qids, mode, weight=weight, depth=cfg.depth)
        ci = bootstrap_stat_ci(np.asarray(res.ndcg10), seed=project.config.seed)
        sample = [texts[q] for q in qids[:latency_queries]]
        lat = measure_latency(retriever, sample, mode, weight=weight)
        table.add_row(
            res.label,
            f"{ci.estimate:.3f} ({ci.low:.3f}–{ci.high:.3f})",
            f"{ModeResult.mean(res.recall[10]):.3f}",
            f"{ModeResult.mean(res.recall[100]):.3f}",
            f"{ModeResult.mean(res.mrr10):.3f}",
            f"{percentile(lat, 50):.1f}" if lat else "–",
            f"{percentile(lat, 95):.1f}" if lat else "–",
        )
    console.print(table)
    console.print(Text("latency: one query at a time, query embedding included", style="dim"))
