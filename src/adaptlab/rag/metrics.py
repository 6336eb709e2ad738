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
from adaptlab.core.files import read_regular_file

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


#: Largest queries or qrels file ``rag eval`` reads (MB) unless ``--max-file-mb`` says
#: more; BEIR's largest (MS MARCO: 500k queries) is about 40 MB.
MAX_EVAL_FILE_MB = 512.0


def read_eval_file(path: Path, what: str, max_mb: float = MAX_EVAL_FILE_MB) -> str:
    """The UTF-8 text of a queries or qrels file, read only if it is a regular file of
    at most ``max_mb`` MB; :class:`DataError` names the file and the fix otherwise."""
    data = read_regular_file(
        path,
        max_bytes=int(max_mb * (1 << 20)),
        limit_name="--max-file-mb",
        what=what,
        error=DataError,
        fix_path=f"give the {what} as a file",
        size_fix=f"pass a larger --max-file-mb to 'adaptlab rag eval' if the {what} is "
        "meant to be this big, or check that the path names the right file",
    )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(
            f"the {what} is not UTF-8 text (byte {data[exc.start]:#x})",
            file=path,
            line=data.count(b"\n", 0, exc.start) + 1,
            fix="convert it to UTF-8, e.g. iconv -f latin1 -t utf-8 FILE > NEW",
        ) from None


def read_qrels(path: Path, max_mb: float = MAX_EVAL_FILE_MB) -> Qrels:
    """Read a BEIR qrels TSV; :class:`DataError` names the line of a malformed row."""
    qrels: Qrels = {}
    text = read_eval_file(path, "qrels file", max_mb)
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
