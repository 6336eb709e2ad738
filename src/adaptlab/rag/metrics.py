"""Retrieval metrics over BEIR-style relevance judgements (qrels).

Definitions follow ``trec_eval`` as BEIR reports them (Thakur et al., NeurIPS 2021
Datasets and Benchmarks), and a test compares them with ``pytrec_eval``:

* nDCG@k (Järvelin & Kekäläinen, TOIS 2002): DCG = Σ_{i≤k} rel_i / log2(i + 1) with
  graded relevance as the gain; the ideal DCG sorts all judged documents of the
  query by grade. Documents with grade 0 gain nothing.
* recall@k: relevant documents (grade > 0) in the top k / all relevant ones.
* MRR@k: 1 / rank of the first relevant document in the top k, 0 when none.

A qrels file is ``query-id<TAB>corpus-id<TAB>score`` with an optional header row.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

from adaptlab.core.errors import DataError

Qrels = dict[str, dict[str, int]]


def ndcg_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """nDCG@k of one ranking (document ids, best first); 0 when nothing is relevant."""
    dcg = sum(relevant.get(doc, 0) / math.log2(i + 2) for i, doc in enumerate(ranked[:k]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0.0


def recall_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int) -> float:
    """Share of the relevant documents found in the top k; 0 when nothing is relevant."""
    wanted = {d for d, g in relevant.items() if g > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def mrr_at_k(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Reciprocal rank of the first relevant document within the top k."""
    for i, doc in enumerate(ranked[:k]):
        if relevant.get(doc, 0) > 0:
            return 1.0 / (i + 1)
    return 0.0


def read_qrels(path: Path) -> Qrels:
    """Read a BEIR qrels TSV; :class:`DataError` names the line of a malformed row."""
    qrels: Qrels = {}
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(
            f"cannot read the qrels file: {exc}",
            file=path,
            fix="give a UTF-8 TSV: query-id, corpus-id, score",
        ) from None
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if number == 1 and fields[0].strip().lower() in ("query-id", "query_id", "qid"):
            continue
        if len(fields) == 4:  # TREC style: qid 0 docid rel
            fields = [fields[0], fields[2], fields[3]]
        if len(fields) != 3:
            raise DataError(
                f"expected 3 tab-separated fields, found {len(fields)}",
                file=path,
                line=number,
                fix="each row is: query-id<TAB>corpus-id<TAB>score",
            )
        try:
            grade = int(fields[2])
        except ValueError:
            raise DataError(
                f"the score '{fields[2].strip()}' is not an integer",
                file=path,
                line=number,
                fix="relevance scores are integers (0 = not relevant, 1 or more = relevant)",
            ) from None
        qrels.setdefault(fields[0].strip(), {})[fields[1].strip()] = grade
    if not qrels:
        raise DataError("the qrels file holds no judgements", file=path, fix="add rows")
    return qrels
