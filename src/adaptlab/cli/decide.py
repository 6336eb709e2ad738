"""``adaptlab decide``: the task profile (volume, privacy, latency, change) and the verdict.

Asks for each field of ``profile:`` (the current value is the default; flags answer
without asking, ``--no-input`` takes flags and defaults as they are), writes the
``profile:`` block of ``adaptlab.yaml`` (nothing else in the file changes), and
weighs the latest run's measurements against it: no rerun is needed to see how the
recommendation moves with the volume or a constraint.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

import click

from adaptlab.cli.common import console, project_option

# field -> (question, click type); the order is the order of the questions.
QUESTIONS: dict[str, tuple[str, Any]] = {
    "monthly_requests": ("Requests per month you expect", click.IntRange(min=0)),
    "monthly_growth": ("Monthly growth of that volume (0.05 = 5%)", click.FloatRange(-0.99, 10)),
    "horizon_months": ("Months over which one-off costs must pay back", click.IntRange(1, 120)),
    "requirements_change": (
        "How often do the requirements change",
        click.Choice(["rarely", "monthly", "weekly"]),
    ),
    "knowledge_change": (
        "How often does the knowledge behind the answers change",
        click.Choice(["never", "yearly", "monthly", "weekly", "daily"]),
    ),
    "latency_budget_ms": ("p95 latency budget in ms (0: none)", click.FloatRange(min=0)),
    "answers_may_wait": (
        "May answers arrive within 24 hours (provider batch APIs, at half the price)",
        bool,
    ),
    "data_may_leave": ("May inputs be sent to a hosted API outside the company", bool),
    "citations_needed": ("Must answers cite their sources", bool),
    "hallucination_tolerance": (
        "Tolerance for confident wrong answers",
        click.Choice(["low", "medium", "high"]),
    ),
    "format_critical": ("Must every output follow the format exactly", bool),
    "monthly_budget_usd": ("Monthly budget in USD (0: none)", click.FloatRange(min=0)),
    "error_cost_usd": (
        "What does one wrong answer cost you, in USD (0: unknown)",
        click.FloatRange(min=0),
    ),
    "hosting": (
        "Does a self-hosted model need a machine of its own (dedicated) or run on one "
        "you have (shared)",
        click.Choice(["dedicated", "shared"]),
    ),
}
_ZERO_IS_NONE = {"latency_budget_ms", "monthly_budget_usd"}
_TOP_KEY = re.compile(r"^[A-Za-z_][\w-]*\s*:")


def _options(f: Any) -> Any:
    for name, (question, kind) in reversed(QUESTIONS.items()):
        flag = "--" + name.replace("_", "-")
        if kind is bool:
            f = click.option(
                f"{flag}/--no-{name.replace('_', '-')}", name, default=None, help=question + "?"
            )(f)
        else:
            f = click.option(flag, name, type=kind, default=None, help=question + ".")(f)
    return f


def replace_block(text: str, key: str, block: str) -> str:
    """``text`` (a YAML file) with its top-level ``key:`` block replaced by ``block``, or
    ``block`` appended when there is none. Comment lines right above the old block go
    with it only when they belong to it (indented); other lines are kept byte for byte."""
    lines = text.splitlines(keepends=True)
    start = next((i for i, ln in enumerate(lines) if re.match(rf"^{key}\s*:", ln)), None)
    if start is None:
        sep = "" if not text or text.endswith("\n") else "\n"
        return text + sep + "\n" + block
    end = start + 1
    while end < len(lines) and not _TOP_KEY.match(lines[end]):
        end += 1
    # trailing blank lines and top-level comments after the block belong to what follows
    while end > start + 1 and (not lines[end - 1].strip() or lines[end - 1].startswith("#")):
        end -= 1
    return "".join(lines[:start]) + block + "".join(lines[end:])


def _block(values: dict[str, Any]) -> str:
    import yaml

    body = yaml.safe_dump({"profile": values}, sort_keys=False, allow_unicode=True)
    return body


def _read_config(path: Path) -> str:
    """``adaptlab.yaml`` as text, line endings as they are (the 1 MB bound of the loader)."""
    from adaptlab.config.yaml_safe import CONFIG_MAX_BYTES
    from adaptlab.core.errors import ConfigError
    from adaptlab.core.files import read_regular_file

    raw = read_regular_file(
        path,
        max_bytes=CONFIG_MAX_BYTES,
        limit_name="the 1 MB limit of adaptlab.yaml",
        what="config file",
        error=ConfigError,
        fix_path="adaptlab.yaml must be a file in the project folder",
    )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:  # changed since the project was loaded
        raise ConfigError(
            "the file is not valid UTF-8", file=path, fix="save it as UTF-8"
        ) from None


@click.command()
@project_option
@_options
@click.option(
    "--no-input", is_flag=True, help="Ask nothing: take the flags given and keep the rest."
)
def decide(project_dir: str, no_input: bool, **answers: Any) -> None:
    """Set the task profile (volume, privacy, latency, change) and see the verdict.

    \b
    adaptlab decide -p my-task                         asks, with the current values
    adaptlab decide -p my-task --monthly-requests 500000 --no-data-may-leave --no-input
    adaptlab decide -p my-task --answers-may-wait --no-input   batch prices for API models
    """
    from adaptlab.config import CONFIG_FILE, ProfileConfig
    from adaptlab.core.errors import ConfigError
    from adaptlab.core.files import printable_name, write_text_atomically
    from adaptlab.engine import load_config
    from adaptlab.engine.project import Project

    project = Project.load(project_dir)
    current = project.config.profile.model_dump()
    ask = not no_input and sys.stdin.isatty()
    values: dict[str, Any] = {}
    for name, (question, kind) in QUESTIONS.items():
        given = answers.get(name)
        if given is None and ask:
            default = current[name]
            if name in _ZERO_IS_NONE and default is None:
                default = 0
            if kind is bool:
                given = click.confirm(question + "?", default=bool(default))
            else:
                given = click.prompt(question, type=kind, default=default)
        value = current[name] if given is None else given
        if name in _ZERO_IS_NONE and value == 0:
            value = None
        values[name] = value
    profile = ProfileConfig.model_validate(values)

    path = Path(project.root) / CONFIG_FILE
    original = _read_config(path)
    updated = replace_block(original, "profile", _block(profile.model_dump(mode="json")))
    # Whole or not at all (a full disk leaves the old file byte for byte); newline="":
    # the file's own line endings are kept. A link stays a link; its target is written.
    write_text_atomically(path, updated, newline="", what="the profile into adaptlab.yaml")
    try:
        load_config(path)
    except ConfigError:  # never leave a file that will not load
        write_text_atomically(path, original, newline="", what="adaptlab.yaml back")
        raise
    console.print(f"profile written to {printable_name(str(path))}", markup=False)

    from adaptlab.store import RunStore

    if not project.has_store:
        console.print("no run yet: 'adaptlab run' measures the candidates against it")
        return
    with RunStore(project.store) as store:
        if store.latest_run() is None:
            console.print("no finished run yet: 'adaptlab run' measures the candidates")
            return
    from adaptlab.cli.common import print_summary
    from adaptlab.engine import summarize_project

    print_summary(summarize_project(Project.load(project_dir)))
