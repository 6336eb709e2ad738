"""Finding a run by the id a user typed: a whole id or the start of one."""

from __future__ import annotations

import sqlite3

from adaptlab.core.errors import AdaptlabError
from adaptlab.store.sqlite import RunStore

_SHOWN = 10  # run ids an error lists before "… and N more"


def find_run(store: RunStore, run_id: str | None = None) -> sqlite3.Row:
    """The run ``run_id`` (a whole id, or the start of exactly one), or when None the
    latest finished run; a row of the ``runs`` table.

    Raises :class:`AdaptlabError` (code "no-run") when there is none; for an unknown or
    ambiguous id the message lists the store's run ids, newest first, to choose from.
    """
    if run_id is None:
        latest = store.latest_run()
        if latest is None:
            raise AdaptlabError(
                "no finished run in this project",
                file=store.path,
                fix="run 'adaptlab run' first",
                code="no-run",
            )
        return latest
    exact = store.run(run_id)
    if exact is not None:
        return exact
    runs = store.runs()
    # Ids are 16 hex digits; like git, the first few name a run when no other starts so.
    matches = [r for r in runs if run_id and r["id"].startswith(run_id)]
    if len(matches) == 1:
        return matches[0]
    if not runs:
        raise AdaptlabError(
            f"no run '{run_id}': this project has no runs yet",
            file=store.path,
            fix="run 'adaptlab run' first",
            code="no-run",
        )
    shown = matches or runs
    ids = ", ".join(r["id"] for r in shown[:_SHOWN])
    if len(shown) > _SHOWN:
        ids += f", … and {len(shown) - _SHOWN} more"
    what = f"ambiguous: {len(matches)} runs start with it" if matches else "unknown"
    raise AdaptlabError(
        f"no run '{run_id}' ({what}); the project's runs, newest first: {ids}",
        file=store.path,
        fix="give one of those ids, or enough of its start to name one run "
        "('adaptlab runs' lists them with their dates and winners)",
        code="no-run",
    )
