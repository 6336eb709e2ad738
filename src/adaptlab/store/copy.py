"""Copy a project's SQLite store to PostgreSQL, every table and row, verified.

Both stores are first brought to this adaptlab's schema version; then each table's
rows are copied in one transaction and checked before it commits: the same number
of rows and the same content hash per table (:func:`table_digest`: a SHA-256 over
the rows' canonical JSON, sorted, so it does not depend on the order either engine
returns them in). A target that already holds rows is refused unless it holds
exactly the source's rows (then nothing is copied: a rerun is harmless).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from adaptlab.store.db import display, is_url
from adaptlab.store.files import StoreError
from adaptlab.store.sqlite import RunStore

#: Tables that describe the store rather than hold its data (each engine keeps its own).
_BOOKKEEPING = {"schema_migrations", "sqlite_sequence"}


@dataclass(frozen=True)
class TableCopy:
    """One table: its rows in the source, and their content hash (hex SHA-256)."""

    name: str
    rows: int
    digest: str


@dataclass
class CopyReport:
    """What :func:`copy_store` did: ``copied`` False when the target held the same rows
    already; ``tables`` in copy order; ``not_copied``: tables adaptlab does not know."""

    source: str
    target: str
    copied: bool
    tables: list[TableCopy] = field(default_factory=list)
    not_copied: list[str] = field(default_factory=list)


def _canonical(value: Any) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return {"bytes": bytes(value).hex()}
    return value


def table_digest(rows: Iterable[Sequence[Any]]) -> tuple[int, str]:
    """(row count, hex SHA-256) of ``rows``, whatever their order.

    Each row is canonical JSON (floats as their shortest exact repr, so a float64 that
    changed in its last bit changes the hash; bytes as hex), the lines are sorted, and
    the hash is taken over them joined by newlines.
    """
    lines = sorted(
        json.dumps([_canonical(v) for v in row], ensure_ascii=False, separators=(",", ":"))
        for row in rows
    )
    digest = hashlib.sha256("\n".join(lines).encode("utf-8", "surrogatepass")).hexdigest()
    return len(lines), digest


def _sqlite_tables(store: RunStore) -> list[str]:
    """The source's tables, parents before the tables whose foreign keys name them."""
    names = [
        str(r[0])
        for r in store.conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name"
        ).fetchall()
        if str(r[0]) not in _BOOKKEEPING
    ]
    parents = {
        name: {str(r["table"]) for r in store.conn.execute(f'PRAGMA foreign_key_list("{name}")')}
        for name in names
    }
    ordered: list[str] = []
    while len(ordered) < len(names):
        ready = [n for n in names if n not in ordered and parents[n] <= {*ordered, n}]
        if not ready:  # a cycle: keep the rest in name order (the copy defers nothing)
            ready = [n for n in names if n not in ordered]
        ordered.extend(ready)
    return ordered


def _columns(store: RunStore, table: str) -> list[str]:
    return [str(r["name"]) for r in store.conn.execute(f'PRAGMA table_info("{table}")')]


def _pg_tables(store: RunStore) -> set[str]:
    rows = store.conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
    ).fetchall()
    return {str(r[0]) for r in rows}


def _rows(store: RunStore, table: str, columns: Sequence[str]) -> list[tuple[Any, ...]]:
    cols = ", ".join(f'"{c}"' for c in columns)
    return [tuple(r) for r in store.conn.execute(f'SELECT {cols} FROM "{table}"').fetchall()]


def copy_store(source: Path, target: str) -> CopyReport:
    """Copy the SQLite store at ``source`` into the PostgreSQL store at ``target``.

    Both are migrated to this adaptlab's schema first. Raises :class:`StoreError` when
    ``source`` does not exist, ``target`` is no ``postgresql://`` URL, the target holds
    other rows than the source (naming the tables that differ), or a copied table does
    not read back with the same count and hash (then nothing is kept: one transaction).
    """
    if not is_url(target):
        raise StoreError(
            "is not a PostgreSQL URL",
            file=display(target),
            fix="give --to postgresql://USER@HOST:PORT/DATABASE",
            code="bad-url",
        )
    if not source.is_file():
        raise StoreError(
            "no run store here to copy",
            file=source,
            fix="run 'adaptlab run' in the project first, or give the store with --from",
            code="missing",
        )
    with RunStore(source) as src, RunStore(target) as dst:
        report = CopyReport(source=str(source), target=dst.display, copied=False)
        known = _pg_tables(dst)
        plan: list[tuple[str, list[str], list[tuple[Any, ...]]]] = []
        for table in _sqlite_tables(src):
            if table not in known:
                report.not_copied.append(table)
                continue
            columns = _columns(src, table)
            rows = _rows(src, table, columns)
            count, digest = table_digest(rows)
            report.tables.append(TableCopy(table, count, digest))
            plan.append((table, columns, rows))
        held = {
            t.name: table_digest(_rows(dst, t.name, cols))
            for t, (_, cols, _r) in zip(report.tables, plan, strict=True)
        }
        if all(n == 0 for n, _ in held.values()):
            _copy(dst, plan, report.tables)
            report.copied = True
            return report
        differ = [t.name for t in report.tables if held[t.name] != (t.rows, t.digest)]
        if differ:
            raise StoreError(
                "already holds other rows than this project's store (tables that differ: "
                + ", ".join(f"{n} ({held[n][0]} rows there)" for n in differ)
                + "); nothing was copied",
                file=dst.display,
                fix="copy into an empty database (createdb NAME), or drop adaptlab's tables "
                "there if they are not needed",
                code="target-not-empty",
            )
        return report  # the same rows already: a rerun


def _copy(
    dst: RunStore,
    plan: Sequence[tuple[str, list[str], list[tuple[Any, ...]]]],
    expected: Sequence[TableCopy],
) -> None:
    """Insert every table's rows and check them, in one transaction."""
    with dst.transaction() as conn:
        for table, columns, rows in plan:
            cols = ", ".join(f'"{c}"' for c in columns)
            marks = ", ".join("?" * len(columns))
            conn.executemany(f'INSERT INTO "{table}" ({cols}) VALUES ({marks})', rows)
            # A serial key (feedback.id) goes on after the copied ids, not from 1.
            for column in columns:
                seq = conn.execute("SELECT pg_get_serial_sequence(?, ?)", (table, column))
                name = seq.fetchone()[0]
                if name is not None and rows:
                    conn.execute(
                        f'SELECT setval(?, (SELECT MAX("{column}") FROM "{table}"))', (name,)
                    )
        for want, (table, columns, _) in zip(expected, plan, strict=True):
            got = table_digest(_rows(dst, table, columns))
            if got != (want.rows, want.digest):
                raise StoreError(
                    f"table {table} did not read back as written ({got[0]} rows, hash "
                    f"{got[1][:12]}; the source has {want.rows} rows, hash {want.digest[:12]}); "
                    "nothing was kept",
                    file=dst.display,
                    fix="report this as a bug with adaptlab's version and the table's name",
                    code="copy-mismatch",
                )
