"""A persistent response cache: a paid-for answer is never requested twice.

One SQLite file (``.adaptlab/llm_cache.db`` in a project). The key is the hash
of the model identity, the sampling parameters, the rendered messages and the
sample index (:meth:`ChatRequest.cache_key`). Every answer is committed the
moment it arrives, so a run killed with ``kill -9`` keeps every answer it got.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from adaptlab.llm.types import ChatRequest, ChatResponse, Usage
from adaptlab.store.files import open_wal

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    created_at TEXT NOT NULL,
    model_json TEXT NOT NULL,
    request_json TEXT NOT NULL,
    text TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cached_input_tokens INTEGER NOT NULL,
    usage_exact INTEGER NOT NULL,
    finish_reason TEXT,
    latency_ms REAL NOT NULL,
    attempts INTEGER NOT NULL
);
"""


class ResponseCache:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        fix = (
            f"delete it (rm {self.path}) and run again: answers it held are requested again, "
            "and paid for again"
        )
        self.conn = open_wal(
            self.path, _SCHEMA, damaged_fix=fix, isolation_level=None, check_same_thread=False
        )
        try:
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("SELECT key FROM responses LIMIT 1").fetchone()
        except BaseException:
            self.conn.close()
            raise

    def get(self, key: str) -> ChatResponse | None:
        row = self.conn.execute(
            "SELECT text, input_tokens, output_tokens, cached_input_tokens, usage_exact, "
            "finish_reason, latency_ms, attempts FROM responses WHERE key = ?",
            (key,),
        ).fetchone()
        if row is None:
            return None
        text, inp, out, cached, exact, finish, latency, attempts = row
        return ChatResponse(
            text=text,
            usage=Usage(inp, out, cached, bool(exact)),
            latency_ms=latency,
            finish_reason=finish,
            attempts=attempts,
            from_cache=True,
        )

    def put(
        self, key: str, identity: dict[str, Any], request: ChatRequest, response: ChatResponse
    ) -> None:
        u = response.usage
        req = {
            "messages": [[m.role, m.content] for m in request.messages],
            "params": request.params.as_dict(),
            "sample": request.sample,
        }
        self.conn.execute(
            "INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
            (
                key,
                datetime.now(timezone.utc).isoformat(timespec="seconds"),
                json.dumps(identity, sort_keys=True),
                json.dumps(req, ensure_ascii=False),
                response.text,
                u.input_tokens,
                u.output_tokens,
                u.cached_input_tokens,
                int(u.exact),
                response.finish_reason,
                response.latency_ms,
                response.attempts,
            ),
        )

    def __len__(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self.conn.close()
