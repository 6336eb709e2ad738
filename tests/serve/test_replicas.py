"""Three ``adaptlab serve`` replicas (real processes, real HTTP) on one PostgreSQL store
behind a round-robin client, as behind a load balancer: every answered request is
logged once, feedback sent to another replica than the one that answered finds its
request, a key's rate limit holds across the three, a key revoked with ``adaptlab keys
revoke`` is refused by all three within the stated time, and ``adaptlab logs export``
gives every labelled request once."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest

from adaptlab.serve.keys import RELOAD_S
from tests.serve.conftest import Served, start_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]

REQUESTS = 3000  # each with its feedback
RPM = 40  # the limited key's requests per minute
REPLICAS = 3
#: The slack on top of RELOAD_S for a revocation to reach every replica: the
#: ``keys revoke`` command itself (timed from before it starts) and a loaded CI machine.
REVOKE_SLACK_S = 1.0


def _key(cli: Any, pg_url: str, name: str, *extra: str) -> dict[str, str]:
    added = cli("keys", "add", name, "--store", pg_url, *extra)
    secret = added.stdout.strip()
    assert added.code == 0 and secret.startswith("al-"), added.text
    return {"Authorization": f"Bearer {secret}"}


def test_three_replicas_share_the_log_feedback_keys_and_limits(
    cli: Any, pg_url: str, tfidf_export: Path, tmp_path: Path
) -> None:
    project = tfidf_export.parent / "p"
    bulk = _key(cli, pg_url, "bulk")
    limited = _key(cli, pg_url, "limited", "--rpm", str(RPM))
    doomed = _key(cli, pg_url, "doomed")
    rows = [json.loads(line) for line in (project / "data/tickets.jsonl").open(encoding="utf-8")]
    labels = sorted({r["label"] for r in rows})
    answered: set[str] = set()  # ids of every request answered 200, whatever the phase
    lock = threading.Lock()
    start = time.monotonic()
    with _replicas_of(pg_url, tfidf_export) as servers:
        startup_s = time.monotonic() - start
        clients = [httpx2.Client(base_url=s.url, timeout=60) for s in servers]

        def predict(i: int, headers: dict[str, str]) -> httpx2.Response:
            text = f"{rows[i % len(rows)]['text']} (#{i})"
            reply = clients[i % REPLICAS].post("/v1/predict", json={"input": text}, headers=headers)
            if reply.status_code == 200:
                with lock:
                    answered.add(reply.json()["id"])
            return reply

        # 1. traffic with feedback; the feedback goes to the next replica round the ring
        def with_feedback(i: int) -> tuple[str, str, int]:
            reply = predict(i, bulk)
            assert reply.status_code == 200, reply.text
            rid, gold = reply.json()["id"], labels[i % len(labels)]
            fb = clients[(i + 1) % REPLICAS].post(
                "/v1/feedback", json={"request_id": rid, "label": gold}, headers=bulk
            )
            assert fb.status_code == 200, fb.text
            return rid, gold, i % REPLICAS

        began = time.monotonic()
        with ThreadPoolExecutor(24) as pool:
            traffic = list(pool.map(with_feedback, range(REQUESTS)))
        traffic_s = time.monotonic() - began
        assert {answered_by for _, _, answered_by in traffic} == set(range(REPLICAS))

        # 2. the limited key from all three at once: exactly RPM pass within the minute
        with ThreadPoolExecutor(24) as pool:
            limited_replies = list(pool.map(lambda i: predict(i, limited), range(3 * RPM)))
        statuses = sorted(r.status_code for r in limited_replies)
        assert statuses.count(200) == RPM and statuses.count(429) == 2 * RPM, statuses
        waits = [int(r.headers["retry-after"]) for r in limited_replies if r.status_code == 429]
        assert all(1 <= w <= 61 for w in waits), waits
        by_replica = [
            sum(r.status_code == 200 for r in limited_replies[k::REPLICAS]) for k in range(3)
        ]
        assert all(n > 0 for n in by_replica), by_replica  # each replica passed some

        # 3. revoke through the shared store; every replica refuses within RELOAD_S
        for k in range(REPLICAS):
            assert predict(k, doomed).status_code == 200  # each replica holds the key now
        before = time.monotonic()
        assert cli("keys", "revoke", "doomed", "--store", pg_url).code == 0
        revoked_at = time.monotonic()

        def refused_after(k: int) -> float:
            while time.monotonic() - before < 30:
                reply = predict(k, doomed)
                if reply.status_code == 401:
                    return time.monotonic() - before
                assert reply.status_code == 200, reply.text
                time.sleep(0.02)
            raise AssertionError(f"replica {k} still takes the revoked key after 30 s")

        with ThreadPoolExecutor(REPLICAS) as pool:
            refusal_s = list(pool.map(refused_after, range(REPLICAS)))
        assert max(refusal_s) <= RELOAD_S + REVOKE_SLACK_S, refusal_s

        # 4. the shared log: every answered request once, no other; every feedback
        export = tmp_path / "served.jsonl"
        out = cli("logs", "export", "-p", str(project), "--store", pg_url, "-o", str(export))
        stats = cli("logs", "stats", "-p", str(project), "--store", pg_url)
        for c in clients:
            c.close()
    for s in servers:
        assert s.process.returncode == 0, s.output[-3000:]

    from adaptlab.evaluation.served import live_traffic
    from adaptlab.store import RunStore

    with RunStore(pg_url) as store:
        logged = [r[0] for r in store.conn.execute("SELECT id FROM requests").fetchall()]
        feedback = store.conn.execute("SELECT request_id, label FROM feedback").fetchall()
    assert len(logged) == len(set(logged)) and set(logged) == answered  # 0 lost, 0 extra
    assert sorted(tuple(f) for f in feedback) == sorted((rid, g) for rid, g, _ in traffic)
    assert out.code == 0, out.text
    exported = [json.loads(line) for line in export.read_text(encoding="utf-8").splitlines()]
    assert len(exported) == REQUESTS and len({r["id"] for r in exported}) == REQUESTS
    assert {(r["id"], r["label"]) for r in exported} == {(rid, g) for rid, g, _ in traffic}
    assert stats.code == 0 and f"{len(answered):,}" in stats.text, stats.text
    live = live_traffic(pg_url, 0.95, 100)  # the report's "Served traffic"
    assert live is not None and sum(s.requests for s in live.stats) == len(answered)
    print(
        f"\nreplicas: start {startup_s:.1f} s; {REQUESTS} requests + feedback in "
        f"{traffic_s:.1f} s ({2 * REQUESTS / traffic_s:.0f}/s); revoked key refused after "
        + ", ".join(f"{t:.2f}" for t in refusal_s)
        + f" s (the revoke command took {revoked_at - before:.2f} s)"
    )


class _replicas_of:
    """``with _replicas_of(url, export) as servers``: three servers, stopped (Ctrl-C,
    the log drained) when the block ends."""

    def __init__(self, pg_url: str, tfidf_export: Path) -> None:
        self.args = ("--model", f"tfidf={tfidf_export}", "--store", pg_url, "--max-wait-ms", "2")
        self.project = tfidf_export.parent / "p"
        self.servers: list[Served] = []

    def __enter__(self) -> list[Served]:
        with ThreadPoolExecutor(REPLICAS) as pool:
            started = [pool.submit(start_server, self.project, *self.args) for _ in range(REPLICAS)]
        self.servers = [f.result() for f in started if f.exception() is None]
        failed = [f.exception() for f in started if f.exception() is not None]
        if failed:
            self.__exit__()
            raise AssertionError(f"a replica did not start: {failed[0]}")
        return self.servers

    def __exit__(self, *exc: object) -> None:
        for s in self.servers:
            s.stop()
