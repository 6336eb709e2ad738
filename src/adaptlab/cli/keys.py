"""``adaptlab keys``: API keys for ``adaptlab serve`` (stored hashed, shown once)."""

from __future__ import annotations

import click

from adaptlab.cli.common import console, project_option
from adaptlab.cli.store_target import store_option


@click.group()
def keys() -> None:
    """API keys of 'adaptlab serve': add (shown once), list, revoke.

    \b
    adaptlab keys add my-app --rpm 600 -p my-task
    adaptlab keys list -p my-task
    adaptlab keys revoke my-app -p my-task

    With --store postgresql://USER@HOST/DB (or ADAPTLAB_STORE_URL) the keys are those of
    every 'adaptlab serve' on that store; no project folder is needed then.
    """


def _conn(project_dir: str, store: str | None) -> object:
    """The run store: ``--store`` as given (no project needed), else the project's."""
    from adaptlab.store import RunStore

    if store is None:
        from adaptlab.cli.store_target import env_store

        store = env_store()
    if store is not None:
        return RunStore(store)
    from adaptlab.engine.project import Project

    project = Project.load(project_dir)
    project.prepare_state()
    return RunStore(project.store)


@keys.command("add")
@project_option
@store_option
@click.option(
    "--rpm",
    type=click.IntRange(1, 10_000_000),
    default=None,
    help="Requests per minute this key may make (default: no limit); past it, 429.",
)
@click.argument("name")
def add(project_dir: str, store: str | None, name: str, rpm: int | None) -> None:
    """Create a key NAME; the key is printed once and stored only as its hash."""
    from adaptlab.serve.keys import add_key
    from adaptlab.store import RunStore

    opened = _conn(project_dir, store)
    assert isinstance(opened, RunStore)
    with opened:
        key, secret = add_key(opened.conn, name, rpm)
    limit = f"{rpm} requests/minute" if rpm else "no rate limit"
    click.echo(secret)
    click.echo(
        f"key '{key.name}' ({key.prefix}…, {limit}); shown only now: it is stored hashed",
        err=True,
    )


@keys.command("list")
@project_option
@store_option
def list_command(project_dir: str, store: str | None) -> None:
    """The keys: name, prefix, limit, created, revoked (never the key)."""
    from rich.table import Table
    from rich.text import Text

    from adaptlab.serve.keys import list_keys
    from adaptlab.store import RunStore

    opened = _conn(project_dir, store)
    assert isinstance(opened, RunStore)
    with opened:
        rows = list_keys(opened.conn)
    if not rows:
        console.print("no keys; create one with: adaptlab keys add NAME", markup=False)
        return
    table = Table()
    # the name whole on one line (up to 40 characters): it is what revoke is given
    widest = min(max(len(k.name) for k in rows), 40)
    table.add_column("name", no_wrap=True, min_width=widest)
    for header in ("id", "prefix", "rpm", "created", "revoked"):
        table.add_column(header)
    for k in rows:
        # Text, not markup: a key named "[bold]x[/" is a name, not a style
        cells = (k.name, k.id, f"{k.prefix}…", str(k.rpm or "–"), k.created_at, k.revoked_at)
        table.add_row(*(Text(c or "") for c in cells))
    console.print(table)


@keys.command("revoke")
@project_option
@store_option
@click.argument("name")
def revoke(project_dir: str, store: str | None, name: str) -> None:
    """Revoke key NAME (or its id); every server on the store refuses it within 1 s."""
    from adaptlab.serve.keys import revoke_key
    from adaptlab.store import RunStore

    opened = _conn(project_dir, store)
    assert isinstance(opened, RunStore)
    with opened:
        key = revoke_key(opened.conn, name)
    console.print(f"revoked key '{key.name}' ({key.prefix}…)", markup=False)
