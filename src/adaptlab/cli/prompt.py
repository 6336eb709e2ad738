"""``adaptlab prompt render``: exactly what a candidate would send, with its tokens."""

from __future__ import annotations

import click

from adaptlab.cli.common import console, project_option


@click.group()
def prompt() -> None:
    """Inspect the prompts of generative candidates."""


@prompt.command()
@project_option
@click.option("-c", "--candidate", "name", required=True, help="A generative candidate.")
@click.option(
    "-i", "--index", default=0, show_default=True, help="Which test input to render (0-based)."
)
@click.option("--text", default=None, help="Render this input instead of a test input.")
def render(project_dir: str, name: str, index: int, text: str | None) -> None:
    """Show the messages a candidate sends for one input, its template version and tokens."""
    from rich.markup import escape
    from rich.rule import Rule

    from adaptlab.backends import load_llm
    from adaptlab.core.errors import ConfigError
    from adaptlab.engine.planning import fitted_prompt_strategy
    from adaptlab.engine.project import Project

    project = Project.load(project_dir)
    cfg = project.config
    cand = next((c for c in cfg.candidates if c.name == name), None)
    if cand is None or cand.llm is None:
        generative = [c.name for c in cfg.candidates if c.llm is not None]
        raise ConfigError(
            f"no generative candidate named '{name}'",
            file=project.root / "adaptlab.yaml",
            fix="choose from: " + (", ".join(generative) or "(none: add one with 'llm:')"),
        )
    split = project.split()
    if text is None:
        if not 0 <= index < len(split.test):
            raise click.BadParameter(
                f"the test split has {len(split.test)} inputs", param_hint="--index"
            )
        text = split.test[index].text
    strategy = fitted_prompt_strategy(project, cand, split)
    request = strategy.requests([text])[0]
    backend = load_llm(cfg.llms[cand.llm], require_key=False)
    tokens, exact = backend.count_tokens(request)
    llm = cfg.llms[cand.llm]
    console.print(
        f"candidate [bold]{escape(name)}[/]  model {escape(f'{llm.backend}:{llm.name}')}  "
        f"template {escape(strategy.template.name)} @ {strategy.template.version}"
    )
    for message in request.messages:
        console.print(Rule(f"{message.role}", align="left"))
        console.print(escape(message.content), soft_wrap=True)
    console.print(Rule())
    p = request.params
    kind = "exact" if exact else "estimate (no tokenizer for this model offline)"
    console.print(f"input tokens: {tokens} ({kind}); answer limit: {p.max_tokens} tokens")
    console.print(f"parameters: temperature={p.temperature} seed={p.seed}")
