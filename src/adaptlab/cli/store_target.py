"""``--store`` of ``serve``, ``keys`` and ``logs``: which run store holds the request log
and the keys — the project's SQLite file, or a PostgreSQL database several servers and
machines share."""

from __future__ import annotations

import os
from pathlib import Path

import click


def _checked(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--store`` as given, or click.BadParameter for a URL of another database, one
    that is not one line of text, or one that holds a password (a command line is
    visible to every user of the machine in ``ps`` and stays in the shell's history);
    the message never repeats the value's password."""
    if value is None:
        return None
    from adaptlab.core.redact import database_url_problem
    from adaptlab.store.db import display

    text = value.strip()
    if not text:
        raise click.BadParameter(
            "is empty; give postgresql://USER@HOST:PORT/DATABASE or a SQLite file",
            param_hint="--store",
        )
    if "://" not in text:
        return text  # a SQLite file
    problem = database_url_problem(text, allow_password=True)
    if problem is not None:
        raise click.BadParameter(
            f"'{display(text)}' {problem.reason}; {problem.fix}", param_hint="--store"
        )
    if display(text) != text:  # a password was blanked out
        raise click.BadParameter(
            f"'{display(text)}' holds a password, which a command line shows to every user "
            "of this machine (ps) and leaves in the shell's history; give it in PGPASSWORD "
            "or ~/.pgpass, or the whole URL in ADAPTLAB_STORE_URL",
            param_hint="--store",
        )
    return text


store_option = click.option(
    "--store",
    "store",
    default=None,
    metavar="URL|FILE",
    callback=_checked,
    help="The run store holding the request log and keys: postgresql://USER@HOST:PORT/DB "
    "(shared by several servers; the password from PGPASSWORD or ~/.pgpass) or a SQLite "
    "file. Default: ADAPTLAB_STORE_URL, else 'store:' in adaptlab.yaml, else the "
    "project's own file.",
)


def env_store() -> str | None:
    """``ADAPTLAB_STORE_URL`` when set (a password is allowed there), else None; raises
    :class:`~adaptlab.store.files.StoreError` for a value that is no PostgreSQL URL."""
    from adaptlab.store.location import STORE_ENV, store_target

    if not os.environ.get(STORE_ENV, "").strip():
        return None
    return str(store_target(Path(), None))
