"""``adaptlab strategies``: what is installed, with each option's help."""

from __future__ import annotations

import click

from adaptlab.cli.common import console


@click.command()
def strategies() -> None:
    """List the installed strategies and their options (built-ins and plugins)."""
    from adaptlab.strategies import STRATEGIES

    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        console.print(f"[bold]{name}[/]  ({cls.__module__})")
        for field, info in cls.Options.model_fields.items():
            default = info.get_default(call_default_factory=True)
            console.print(f"  {field} = {default!r}  {info.description or ''}", soft_wrap=True)
