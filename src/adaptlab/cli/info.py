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


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the JSON schema instead.")
def schema(as_json: bool) -> None:
    """Every adaptlab.yaml key with its default and help (from the pydantic schema)."""
    import json

    from pydantic import BaseModel

    from adaptlab.config import ProjectConfig

    if as_json:
        console.print_json(json.dumps(ProjectConfig.model_json_schema()))
        return

    def walk(model: type[BaseModel], indent: str) -> None:
        for name, info in model.model_fields.items():
            ann = info.annotation
            nested = [a for a in getattr(ann, "__args__", (ann,)) if isinstance(a, type)]
            sub = next((a for a in nested if issubclass(a, BaseModel)), None)
            default = (
                "" if info.is_required() else f" = {info.get_default(call_default_factory=True)!r}"
            )
            if sub is not None and not info.is_required():
                default = ""
            console.print(
                f"{indent}[bold]{name}[/]{default}  [dim]{info.description or ''}[/]",
                soft_wrap=True,
            )
            if sub is not None:
                walk(sub, indent + "  ")

    walk(ProjectConfig, "")
