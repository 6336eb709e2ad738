"""``adaptlab store migrate``: move a project's run store from its SQLite file to PostgreSQL."""

from __future__ import annotations

import click

from adaptlab.cli.common import console, project_option


@click.group()
def store() -> None:
    """The run store: the project's SQLite file, or a PostgreSQL database a team shares.

    \b
    adaptlab store migrate -p my-task --to postgresql://me@db.example:5432/adaptlab
    """


@store.command()
@project_option
@click.option(
    "--to",
    "target",
    default=None,
    metavar="URL",
    help="The PostgreSQL store: postgresql://USER@HOST:PORT/DATABASE (the password from "
    "PGPASSWORD or ~/.pgpass). Default: ADAPTLAB_STORE_URL, else 'store:' in adaptlab.yaml.",
)
@click.option(
    "--from",
    "source",
    default=None,
    type=click.Path(dir_okay=False),
    metavar="FILE",
    help="The SQLite store to copy. Default: the project's .adaptlab/runs.db.",
)
def migrate(project_dir: str, target: str | None, source: str | None) -> None:
    """Copy every table and row of the project's SQLite store to PostgreSQL.

    Each table is checked after the copy by its row count and a hash of its content;
    a database that already holds other rows is refused, one holding exactly these
    rows is left as it is (running this again is harmless). Afterwards set
    'store: postgresql://…' in adaptlab.yaml (or ADAPTLAB_STORE_URL): run, runs,
    report, decide, curve and export then use it.
    """
    from pathlib import Path

    from adaptlab.core.errors import AdaptlabError
    from adaptlab.core.redact import database_url_problem
    from adaptlab.engine.project import Project
    from adaptlab.store.copy import copy_store
    from adaptlab.store.db import is_url

    project = Project.load(project_dir)
    if target is not None:
        problem = database_url_problem(target)  # a password here is seen by ps, kept in history
        if problem is not None:
            raise AdaptlabError(f"--to {problem.reason}", fix=problem.fix, code="bad-url")
    else:
        configured = project.store
        if not is_url(configured):
            raise AdaptlabError(
                "no PostgreSQL store to copy to",
                fix="give --to postgresql://USER@HOST:PORT/DATABASE, or set ADAPTLAB_STORE_URL",
                code="bad-url",
            )
        target = str(configured)
    report = copy_store(Path(source) if source else project.store_path, target)
    verb = "copied" if report.copied else "already there (identical), nothing copied"
    console.print(f"{report.source} → {report.target}: {verb}", markup=False)
    for t in report.tables:
        console.print(f"  {t.name:<16} {t.rows:>8} rows  sha256 {t.digest[:16]}", markup=False)
    for name in report.not_copied:
        console.print(f"  {name:<16} not copied: not a table of adaptlab's", markup=False)
    if report.copied or report.tables:
        console.print(
            "to use it: set 'store: <the URL>' in adaptlab.yaml (or ADAPTLAB_STORE_URL); "
            f"the SQLite file stays as it was ({report.source})",
            markup=False,
        )
