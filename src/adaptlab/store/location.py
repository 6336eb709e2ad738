"""Where a project's run store is: a PostgreSQL URL from the environment or
``adaptlab.yaml``, else the SQLite file in the project folder."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from adaptlab.core.redact import database_url_problem
from adaptlab.store.db import is_url
from adaptlab.store.files import StoreError

#: The variable that names the store for every project of a shell, a CI job or a server.
STORE_ENV = "ADAPTLAB_STORE_URL"


def store_target(
    default: Path, configured: str | None, environ: Mapping[str, str] | None = None
) -> Path | str:
    """The store: ``ADAPTLAB_STORE_URL`` when set (it may carry a password: a secret
    manager sets it, no file holds it), else ``configured`` (adaptlab.yaml's ``store:``,
    checked when the file loads), else ``default`` (the project's SQLite file).

    Raises :class:`StoreError` (code "bad-url") when the variable is no PostgreSQL URL;
    the message never repeats the variable's value.
    """
    env = (os.environ if environ is None else environ).get(STORE_ENV, "").strip()
    if env:
        problem = database_url_problem(env, allow_password=True)
        if problem is not None:
            raise StoreError(
                f"{STORE_ENV} {problem.reason}",
                fix=f"{problem.fix}; or unset {STORE_ENV} to use the project's own store",
                code="bad-url",
            )
        return env
    return configured or default


def store_exists(target: Path | str) -> bool:
    """Whether a store is there to read: the SQLite file exists (reading never creates
    one); a PostgreSQL URL always counts (opening it says clearly what is wrong)."""
    return is_url(target) or Path(target).exists()
