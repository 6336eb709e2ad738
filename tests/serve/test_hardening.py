"""Issue 23, kinds 3 and 4, against a real ``adaptlab serve`` process: one request that
cannot be encoded harms none of the 29 sent with it; unfinished connections lock no
one out and are closed; a deleted or locked store gives 503 naming it, and the server
comes back when the store does. ``tests/hostile/test_serve_hostile.py`` has the many
inputs of each kind, in-process."""

from __future__ import annotations

import json
import re
import resource
import select
import shutil
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx2
import pytest

from tests.serve.conftest import Served, add_key, start_server

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

HEADER_TIMEOUT_S = 2.0
ERROR_KEYS = {"message", "type", "param", "code"}


@pytest.fixture(scope="module")
def server(quick_project: Path) -> Iterator[tuple[Served, dict[str, str]]]:
    """The quick project served with a key, short request timers and a 50 ms batch wait."""
    key = add_key(quick_project, "hardening")
    served = start_server(
        quick_project,
        "--candidate",
        "zero-shot",
        "--max-wait-ms",
        "50",
        "--header-timeout-s",
        str(HEADER_TIMEOUT_S),
        "--body-timeout-s",
        str(HEADER_TIMEOUT_S),
    )
    try:
        yield served, {"Authorization": f"Bearer {key}"}
    finally:
        served.stop()


def _texts(project: Path, n: int) -> list[str]:
    rows = [json.loads(line) for line in (project / "data/tickets.jsonl").open(encoding="utf-8")]
    texts = [r["text"] for r in rows]
    return [f"{texts[i % len(texts)]} (#{i})" for i in range(n)]


def _chat(text: str) -> dict[str, Any]:
    return {"model": "default", "messages": [{"role": "user", "content": text}]}


def _batches(client: httpx2.Client) -> tuple[float, float]:
    """(batches run, of them of one input) from the server's Prometheus metrics."""
    text = client.get("/metrics").text
    ones = re.search(r'adaptlab_batch_size_bucket\{candidate="zero-shot",le="1\.0"\} (\S+)', text)
    count = re.search(r'adaptlab_batch_size_count\{candidate="zero-shot"\} (\S+)', text)
    assert ones and count, text[-2000:]
    return float(count.group(1)), float(ones.group(1))


def _error(r: httpx2.Response) -> dict[str, Any]:
    assert r.headers["content-type"].startswith("application/json"), r.text
    error: dict[str, Any] = r.json()["error"]
    assert set(error) == ERROR_KEYS, error
    return error


def test_thirty_at_once_one_unencodable_the_29_answered_as_alone_and_logged(
    server: tuple[Served, dict[str, str]], quick_project: Path
) -> None:
    served, auth = server
    texts = _texts(quick_project, 29)
    bad_at = 13
    bad_body = json.dumps(_chat("my parcel @")).replace("@", "\\ud800").encode()
    with httpx2.Client(base_url=served.url, headers=auth, timeout=60) as client:
        alone = []
        for text in texts:  # each by itself: a batch of one
            r = client.post("/v1/chat/completions", json=_chat(text))
            assert r.status_code == 200, r.text
            alone.append(r.json())
        batches, ones = _batches(client)
        start = threading.Barrier(30)

        def send(i: int) -> httpx2.Response:
            start.wait(30)
            if i == bad_at:
                return client.post(
                    "/v1/chat/completions",
                    content=bad_body,
                    headers={"Content-Type": "application/json"},
                )
            return client.post("/v1/chat/completions", json=_chat(texts[i - (i > bad_at)]))

        with ThreadPoolExecutor(30) as pool:
            replies = list(pool.map(send, range(30)))
        batches_after, ones_after = _batches(client)
    bad = replies.pop(bad_at)
    assert bad.status_code == 400, bad.text
    error = _error(bad)
    assert error["param"] == "messages.0.content" and error["code"] == "invalid_text"
    assert "Unicode" in error["message"]
    # The 29 shared batches (not all of one), and each got what it got alone.
    assert ones_after - ones < batches_after - batches, (batches, ones, batches_after, ones_after)
    ids = []
    for text, reply, single in zip(texts, replies, alone, strict=True):
        assert reply.status_code == 200, reply.text
        got = reply.json()
        assert got["choices"][0]["message"] == single["choices"][0]["message"], text
        assert got["adaptlab"]["score"] == pytest.approx(single["adaptlab"]["score"], abs=1e-4)
        ids.append(got["id"])
    # Logged before answered: every row is there now, none for the refused one.
    with sqlite3.connect(quick_project / ".adaptlab" / "runs.db") as conn:
        marks = ",".join("?" * len(ids))
        rows = conn.execute(
            f"SELECT id, input, output, http_status FROM requests WHERE id IN ({marks})", ids
        ).fetchall()
        singles = [a["id"] for a in alone]
        marks = ",".join("?" * len(singles))
        logged_alone = conn.execute(
            f"SELECT COUNT(*) FROM requests WHERE id IN ({marks})", singles
        ).fetchone()[0]
    by_id = {r[0]: r[1:] for r in rows}
    for rid, text, reply in zip(ids, texts, replies, strict=True):
        assert by_id[rid] == (text, reply.json()["choices"][0]["message"]["content"], 200)
    assert len(by_id) == 29 and logged_alone == 29


def _read_until_closed(sock: socket.socket, deadline: float) -> bytes | None:
    """What the server sent before closing; None if still open at ``deadline``."""
    data = b""
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        sock.settimeout(left)
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            return None
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_unfinished_connections_lock_no_one_out_and_are_closed_in_time(
    server: tuple[Served, dict[str, str]],
) -> None:
    served, auth = server
    port = int(served.url.rsplit(":", 1)[1])
    kinds = {
        "half a header": b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: appl",
        "half a request line": b"POST /v1/pre",
        "nothing": b"",
        "half a body": (
            b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n" + b'{"input": "my'
        ),
    }
    counts = {"half a header": 200, "half a request line": 40, "nothing": 30, "half a body": 30}
    socks: list[tuple[str, socket.socket]] = []
    try:
        opened = time.monotonic()
        for kind, n in counts.items():
            for _ in range(n):
                sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                socks.append((kind, sock))
                if kinds[kind]:
                    sock.sendall(kinds[kind])
        # A client still gets its answer at once, while 300 connections hang.
        t = time.monotonic()
        r = httpx2.post(f"{served.v1}/predict", json={"input": "my bill"}, headers=auth, timeout=10)
        assert r.status_code == 200, r.text
        assert time.monotonic() - t < 5
        # None is closed long before its time...
        ready, _, _ = select.select([s for _, s in socks], [], [], 0.5)
        early = time.monotonic() - opened < HEADER_TIMEOUT_S - 0.3
        assert not ready or not early
        # ...and all are closed soon after it, with a 408 for those that sent something.
        deadline = opened + HEADER_TIMEOUT_S + 8
        for kind, sock in socks:
            said = _read_until_closed(sock, deadline)
            assert said is not None, f"a connection with {kind} is still open"
            if kind == "nothing":
                assert said == b""
            else:
                head, _, body = said.partition(b"\r\n\r\n")
                assert head.startswith(b"HTTP/1.1 408"), said
                error = json.loads(body)["error"]
                assert set(error) == ERROR_KEYS and error["code"] == "request_timeout"
                part = "body" if kind == "half a body" else "headers"
                assert part in error["message"]
    finally:
        for _, sock in socks:
            sock.close()
    r = httpx2.get(f"{served.url}/health", timeout=10)
    assert r.status_code == 200 and r.json()["status"] == "ok"


MALFORMED = {
    "nul-in-a-header": b"GET /health HTTP/1.1\r\nHost: x\r\nX-User-Id: a\x00b\r\n\r\n",
    "not-http": b"HELLO THERE\r\n\r\n",
    "bad-content-length": b"POST /v1/predict HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n",
    "head-over-16-kib": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 20_000,
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_request_gets_a_json_400_not_plain_text(
    server: tuple[Served, dict[str, str]], case: str
) -> None:
    served, _ = server
    port = int(served.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(MALFORMED[case])
        said = _read_until_closed(sock, time.monotonic() + 10)
    assert said is not None
    head, _, body = said.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), said
    assert b"content-type: application/json" in head.lower()
    error = json.loads(body)["error"]
    assert set(error) == ERROR_KEYS and error["code"] == "bad_http"


def _lower_open_files() -> None:
    """In the server's process: a soft limit of 256 open files (serve raises it)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(256, hard), hard))


@pytest.mark.skipif(sys.platform != "linux", reason="reads /proc")
def test_connection_cap_store_deleted_or_locked_and_back(
    quick_project: Path, tmp_path: Path
) -> None:
    root = tmp_path / "p"
    shutil.copytree(quick_project, root)
    key = add_key(root, "store-test")
    auth = {"Authorization": f"Bearer {key}"}
    served = start_server(
        root,
        "--candidate",
        "zero-shot",
        "--max-connections",
        "20",
        "--header-timeout-s",
        "30",
        "--store-timeout-s",
        "1",
        preexec_fn=_lower_open_files,
    )
    db = root / ".adaptlab" / "runs.db"
    moved = tmp_path / "moved"
    moved.mkdir()
    try:
        # serve raised its open-file limit to the hard limit
        limits = Path(f"/proc/{served.process.pid}/limits").read_text()
        soft, hard = re.search(r"Max open files\s+(\S+)\s+(\S+)", limits).groups()  # type: ignore[union-attr]
        assert soft == hard, limits

        def predict() -> httpx2.Response:
            return httpx2.post(
                f"{served.v1}/predict", json={"input": "my bill"}, headers=auth, timeout=30
            )

        # Past 20 open connections a new one is answered 503 in OpenAI's shape.
        port = int(served.url.rsplit(":", 1)[1])
        idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(20)]
        try:
            time.sleep(0.3)
            r = predict()
            assert r.status_code == 503 and _error(r)["code"] == "too_many_connections"
        finally:
            for sock in idle:
                sock.close()
        deadline = time.monotonic() + 10
        while (r := predict()).status_code == 503 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert r.status_code == 200, r.text
        # The store deleted: 503 naming it and the fix; health says so.
        for name in ("runs.db", "runs.db-wal", "runs.db-shm"):
            if (db.parent / name).exists():
                (db.parent / name).rename(moved / name)
        health = httpx2.get(f"{served.url}/health", timeout=30)
        assert health.status_code == 503 and "deleted" in _error(health)["message"]
        r = predict()
        assert r.status_code == 503, r.text
        message = _error(r)["message"]
        assert str(db) in message and "deleted" in message and "fix:" in message
        # Put back: served and logged again.
        for path in moved.iterdir():
            path.rename(db.parent / path.name)
        r = predict()
        assert r.status_code == 200, r.text
        # Locked by another program past --store-timeout-s: 503; released: 200.
        other = sqlite3.connect(db, isolation_level=None)
        try:
            other.execute("BEGIN EXCLUSIVE")
            locked = predict()
            health = httpx2.get(f"{served.url}/health", timeout=30)
        finally:
            other.execute("ROLLBACK")
            other.close()
        assert locked.status_code == 503 and "locked" in _error(locked)["message"]
        assert health.status_code == 503 and "locked" in _error(health)["message"]
        answered = predict()
        assert answered.status_code == 200, answered.text
    finally:
        output = served.stop()
    assert "Traceback" not in output, output[-3000:]
    assert "limits: request head 30 s" in output
    with sqlite3.connect(db) as conn:
        ids = {r[0] for r in conn.execute("SELECT id FROM requests")}
    assert answered.json()["id"] in ids
