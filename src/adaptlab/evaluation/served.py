"""What served traffic becomes: a dataset (requests with feedback labels) and live
statistics per candidate, with the report's intervals and tests.

The dataset is JSON Lines in the project's own fields (``data.input_field``,
``data.label_field``), so ``adaptlab run`` takes it as ``data.path`` or
``data.test_path``; each row also keeps the request id, the candidate that answered
and its answer. Inputs holding personal data are flagged with the data checks' own
detector (:func:`adaptlab.data.pii.find_pii`), values masked.

Both read the request log of a SQLite or a PostgreSQL run store (the SQL is the one
both engines take), so a log that several server replicas share is read whole.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from adaptlab.data.pii import find_pii
from adaptlab.evaluation.stats import Interval, PairedTest, bootstrap_stat_ci, mcnemar, percentile
from adaptlab.store import RunStore


@dataclass
class LogExport:
    rows: list[dict[str, Any]]
    without_label: int  # primary requests with no label feedback, left out (or kept unlabelled)
    failed: int  # requests that got an error, never exported
    unknown_label: Counter[str] = field(default_factory=Counter)  # label -> rows left out
    pii: Counter[str] = field(default_factory=Counter)  # kind -> rows
    pii_examples: list[str] = field(default_factory=list)  # "request id: kind masked"


def export_rows(
    conn: Any,
    *,
    input_field: str,
    label_field: str,
    candidate: str | None = None,
    since: str | None = None,
    unlabelled: bool = False,
    labels: set[str] | None = None,
) -> LogExport:
    """Primary (not shadow) answered requests, oldest first, labelled by their latest
    label feedback. ``unlabelled`` keeps requests without one (label field absent);
    ``labels`` (a classification project's) leaves out, and counts, rows whose feedback
    names another label, which ``adaptlab run`` would refuse. ``conn``: a connection to
    the run store (SQLite or PostgreSQL)."""

    where = ["r.shadow_of IS NULL"]
    args: list[Any] = []
    if candidate is not None:
        where.append("r.candidate = ?")
        args.append(candidate)
    if since is not None:
        where.append("r.created_at >= ?")
        args.append(since)
    rows = conn.execute(
        f"""
        SELECT r.id, r.created_at, r.candidate, r.input, r.output, r.http_status,
               (SELECT f.label FROM feedback f WHERE f.request_id = r.id AND f.label IS NOT NULL
                ORDER BY f.id DESC LIMIT 1) AS label
        FROM requests r WHERE {" AND ".join(where)} ORDER BY r.created_at, r.id
        """,
        args,
    ).fetchall()
    out = LogExport([], 0, 0)
    for rid, created, cand, text, answer, status, label in rows:
        if status != 200 or text is None:
            out.failed += 1
            continue
        if label is None:
            out.without_label += 1
            if not unlabelled:
                continue
        elif labels is not None and label not in labels:
            out.unknown_label[label] += 1
            continue
        row: dict[str, Any] = {"id": rid, input_field: text}
        if label is not None:
            row[label_field] = label
        row.update(served_by=cand, served_answer=answer, served_at=created)
        found = find_pii(text)
        if found:
            kinds = sorted({m.kind for m in found})
            row["pii"] = kinds
            out.pii.update(kinds)
            if len(out.pii_examples) < 5:
                out.pii_examples.append(f"{rid}: {found[0].kind} {found[0].masked}")
        out.rows.append(row)
    return out


def to_jsonl(rows: list[dict[str, Any]]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


# ---------------------------------------------------------------- statistics


@dataclass
class LiveStats:
    """One candidate's served traffic (primary answers, or shadow answers)."""

    candidate: str
    shadow: bool
    requests: int
    errors: int
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    tokens_per_request: float | None
    cost_usd: float | None
    labelled: int  # answers with label feedback
    accuracy: Interval | None  # on those, with a bootstrap interval
    mean_rating: float | None
    rated: int


@dataclass
class LiveComparison:
    """Two candidates on the same requests (one a shadow): McNemar on labelled pairs."""

    a: str
    b: str
    pairs: int
    test: PairedTest | None


def live_stats(
    conn: Any,
    *,
    since: str | None = None,
    confidence: float = 0.95,
    resamples: int = 1000,
) -> tuple[list[LiveStats], list[LiveComparison]]:
    """Per candidate (primary and shadow apart): volume, errors, latency p50/p95, tokens,
    cost, and accuracy against label feedback with its percentile-bootstrap interval;
    and for each primary/shadow pair, McNemar's test on the requests both answered
    that have a label (paired, as the report compares candidates)."""
    import numpy as np

    cond, args = ("WHERE r.created_at >= ?", [since]) if since else ("", [])
    rows = conn.execute(
        f"""
        SELECT r.id, r.candidate, r.shadow_of, r.output, r.http_status, r.latency_ms,
               r.input_tokens, r.output_tokens, r.cost_usd,
               (SELECT f.label FROM feedback f WHERE f.request_id = COALESCE(r.shadow_of, r.id)
                AND f.label IS NOT NULL ORDER BY f.id DESC LIMIT 1),
               (SELECT AVG(f.rating) FROM feedback f WHERE f.request_id = r.id
                AND f.rating IS NOT NULL)
        FROM requests r {cond}
        """,
        args,
    ).fetchall()
    groups: dict[tuple[str, bool], list[Any]] = {}
    for row in rows:
        groups.setdefault((row[1], row[2] is not None), []).append(row)
    stats = []
    for (cand, shadow), items in sorted(groups.items()):
        ok = [r for r in items if r[4] == 200]
        lat = [r[5] for r in ok if r[5] is not None]
        tokens = [(r[6] or 0) + (r[7] or 0) for r in ok if r[6] is not None]
        costs = [r[8] for r in ok if r[8] is not None]
        labelled = [r for r in ok if r[9] is not None]
        acc = None
        if labelled:
            correct = np.array([float(r[3] == r[9]) for r in labelled])
            acc = bootstrap_stat_ci(correct, resamples=resamples, confidence=confidence)
        ratings = [r[10] for r in items if r[10] is not None]
        stats.append(
            LiveStats(
                candidate=cand,
                shadow=shadow,
                requests=len(items),
                errors=len(items) - len(ok),
                latency_p50_ms=percentile(lat, 50) if lat else None,
                latency_p95_ms=percentile(lat, 95) if lat else None,
                tokens_per_request=sum(tokens) / len(tokens) if tokens else None,
                cost_usd=sum(costs) if costs else None,
                labelled=len(labelled),
                accuracy=acc,
                mean_rating=sum(ratings) / len(ratings) if ratings else None,
                rated=len(ratings),
            )
        )
    # Paired: a primary answer and the shadow answer to the same request.
    primary = {r[0]: r for r in rows if r[2] is None and r[4] == 200}
    pairs: dict[tuple[str, str], list[tuple[bool, bool]]] = {}
    for r in rows:
        p = primary.get(r[2]) if r[2] is not None and r[4] == 200 else None
        if p is None or p[9] is None:
            continue
        pairs.setdefault((p[1], r[1]), []).append((p[3] == p[9], r[3] == p[9]))
    comparisons = []
    for (a, b), outcomes in sorted(pairs.items()):
        ca = np.array([x for x, _ in outcomes])
        cb = np.array([y for _, y in outcomes])
        comparisons.append(LiveComparison(a, b, len(outcomes), mcnemar(ca, cb)))
    return stats, comparisons


@dataclass
class LiveTraffic:
    """What the report shows of served traffic (``adaptlab logs stats``' figures)."""

    stats: list[LiveStats]
    comparisons: list[LiveComparison]
    confidence: float


def live_traffic(store: Any, confidence: float, resamples: int) -> LiveTraffic | None:
    """The request log's statistics, or None when nothing was served yet. ``store``: the
    run store, a SQLite file or a ``postgresql://`` URL."""

    with RunStore(store) as opened:
        stats, comparisons = live_stats(opened.conn, confidence=confidence, resamples=resamples)
    return LiveTraffic(stats, comparisons, confidence) if stats else None
