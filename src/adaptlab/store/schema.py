"""The run store's schema: numbered migrations, one definition for SQLite and PostgreSQL.

Each migration is ``(name, sql)``: statements separated by ``;`` in the SQL both
engines read, with SQLite's column types (PostgreSQL's are derived by
:func:`~adaptlab.store.db.ddl_to_postgresql`). A migration whose data step needs
an engine's own SQL gives ``sql`` as ``{"sqlite": …, "postgresql": …}``; the
columns it makes are the same on both. Versions are 1, 2, … in list order and are
recorded in ``schema_migrations``; append, never edit or reorder.
"""

from __future__ import annotations

#: (name, sql) in version order; ``sql`` is one text for both engines or one per dialect.
MIGRATIONS: list[tuple[str, str | dict[str, str]]] = [
    (
        "initial schema",
        """
        CREATE TABLE runs (
            id TEXT PRIMARY KEY,
            project TEXT NOT NULL,
            created_at TEXT NOT NULL,
            finished_at TEXT,
            status TEXT NOT NULL,
            config_json TEXT NOT NULL,
            data_fingerprint TEXT NOT NULL,
            seed INTEGER NOT NULL,
            model_json TEXT NOT NULL,
            split_json TEXT NOT NULL
        );
        CREATE TABLE results (
            key TEXT PRIMARY KEY,
            candidate TEXT NOT NULL,
            strategy TEXT NOT NULL,
            params_json TEXT NOT NULL,
            created_at TEXT NOT NULL,
            fit_seconds REAL NOT NULL,
            fit_cpu_seconds REAL NOT NULL,
            predict_seconds REAL NOT NULL,
            predict_cpu_seconds REAL NOT NULL,
            n_predictions INTEGER NOT NULL,
            trains_weights INTEGER NOT NULL,
            info_json TEXT NOT NULL
        );
        CREATE TABLE run_candidates (
            run_id TEXT NOT NULL REFERENCES runs(id),
            position INTEGER NOT NULL,
            name TEXT NOT NULL,
            result_key TEXT NOT NULL,
            reused INTEGER NOT NULL,
            PRIMARY KEY (run_id, name)
        );
        CREATE TABLE predictions (
            result_key TEXT NOT NULL REFERENCES results(key),
            idx INTEGER NOT NULL,
            example_id TEXT NOT NULL,
            input TEXT NOT NULL,
            gold TEXT NOT NULL,
            predicted TEXT,
            score REAL,
            latency_ms REAL,
            PRIMARY KEY (result_key, idx)
        );
        CREATE TABLE curves (
            result_key TEXT NOT NULL REFERENCES results(key),
            step INTEGER NOT NULL,
            epoch REAL NOT NULL,
            split TEXT NOT NULL,
            metric TEXT NOT NULL,
            value REAL NOT NULL
        );
        CREATE INDEX curves_key ON curves(result_key);
        """,
    ),
    (
        "generative answers: raw text, parse status, tokens; consistency samples",
        """
        ALTER TABLE predictions ADD COLUMN raw TEXT;
        ALTER TABLE predictions ADD COLUMN status TEXT;
        ALTER TABLE predictions ADD COLUMN input_tokens INTEGER;
        ALTER TABLE predictions ADD COLUMN output_tokens INTEGER;
        ALTER TABLE predictions ADD COLUMN cached_tokens INTEGER;
        CREATE TABLE consistency (
            result_key TEXT NOT NULL REFERENCES results(key),
            idx INTEGER NOT NULL,
            sample INTEGER NOT NULL,
            predicted TEXT,
            status TEXT,
            PRIMARY KEY (result_key, idx, sample)
        );
        """,
    ),
    (
        "run notes: candidates that could not run and why",
        """
        ALTER TABLE runs ADD COLUMN notes_json TEXT;
        """,
    ),
    (
        "generative answers: finish reason and whether the token counts are exact",
        """
        ALTER TABLE predictions ADD COLUMN finish_reason TEXT;
        ALTER TABLE predictions ADD COLUMN usage_exact INTEGER;
        """,
    ),
    (
        "retrieval: the passages a prompt held, and the documents the reference cites",
        """
        ALTER TABLE predictions ADD COLUMN context_json TEXT;
        ALTER TABLE predictions ADD COLUMN sources_json TEXT;
        """,
    ),
    (
        "validation answers beside test answers: predictions keyed by split",
        """
        CREATE TABLE predictions_by_split (
            result_key TEXT NOT NULL REFERENCES results(key),
            split TEXT NOT NULL,
            idx INTEGER NOT NULL,
            example_id TEXT NOT NULL,
            input TEXT NOT NULL,
            gold TEXT NOT NULL,
            predicted TEXT,
            score REAL,
            latency_ms REAL,
            raw TEXT,
            status TEXT,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cached_tokens INTEGER,
            finish_reason TEXT,
            usage_exact INTEGER,
            context_json TEXT,
            sources_json TEXT,
            PRIMARY KEY (result_key, split, idx)
        );
        INSERT INTO predictions_by_split
            SELECT result_key, 'test', idx, example_id, input, gold, predicted, score,
                   latency_ms, raw, status, input_tokens, output_tokens, cached_tokens,
                   finish_reason, usage_exact, context_json, sources_json
            FROM predictions;
        DROP TABLE predictions;
        ALTER TABLE predictions_by_split RENAME TO predictions;
        """,
    ),
    (
        "learning curves: which result is which (candidate, train subset size, draw)",
        """
        CREATE TABLE curve_points (
            split_fingerprint TEXT NOT NULL,
            candidate TEXT NOT NULL,
            size INTEGER NOT NULL,
            draw INTEGER NOT NULL,
            result_key TEXT NOT NULL REFERENCES results(key),
            PRIMARY KEY (split_fingerprint, candidate, size, draw)
        );
        """,
    ),
    (
        "serving: API keys (hashed), the request log and feedback on answers",
        """
        CREATE TABLE api_keys (
            id TEXT PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            prefix TEXT NOT NULL,
            hash TEXT NOT NULL UNIQUE,
            rpm INTEGER,
            created_at TEXT NOT NULL,
            revoked_at TEXT
        );
        CREATE TABLE requests (
            id TEXT PRIMARY KEY,
            created_at TEXT NOT NULL,
            endpoint TEXT NOT NULL,
            route TEXT,
            candidate TEXT,
            shadow_of TEXT,
            user_hash TEXT,
            key_id TEXT,
            input TEXT,
            output TEXT,
            score REAL,
            answer_status TEXT,
            http_status INTEGER NOT NULL,
            latency_ms REAL,
            input_tokens INTEGER,
            output_tokens INTEGER,
            cost_usd REAL,
            error TEXT
        );
        CREATE INDEX requests_candidate ON requests(candidate, created_at);
        CREATE INDEX requests_shadow ON requests(shadow_of);
        CREATE TABLE feedback (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            request_id TEXT NOT NULL,
            created_at TEXT NOT NULL,
            label TEXT,
            rating REAL,
            comment TEXT,
            key_id TEXT
        );
        CREATE INDEX feedback_request ON feedback(request_id);
        """,
    ),
    (
        "runs: their order without SQLite's rowid (runs of the same second)",
        {
            "sqlite": """
            ALTER TABLE runs ADD COLUMN seq INTEGER;
            UPDATE runs SET seq = rowid;
            """,
            "postgresql": """
            ALTER TABLE runs ADD COLUMN seq INTEGER;
            """,
        },
    ),
    (
        "serving: requests per key and second, for rate limits shared by server replicas",
        """
        CREATE TABLE rate_limit_hits (
            key_id TEXT NOT NULL,
            second INTEGER NOT NULL,
            hits INTEGER NOT NULL,
            PRIMARY KEY (key_id, second)
        );
        """,
    ),
]


def statements(sql: str | dict[str, str], dialect: str) -> list[str]:
    """A migration's statements for ``dialect`` ("sqlite" or "postgresql"), in order."""
    text = sql[dialect] if isinstance(sql, dict) else sql
    return [s.strip() for s in text.split(";") if s.strip()]
