"""`adaptlab run --dry-run` and `adaptlab prompt render`: tokens and cost, nothing sent."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

from adaptlab import Project, run_project
from adaptlab.config import LLMConfig
from adaptlab.core.format import dollars
from adaptlab.core.format import usd as format_usd
from adaptlab.llm.prices import price_for
from tests.conftest import small_project
from tests.fakes.fake_llm import FakeLLMServer
from tests.test_llm_runs import Oracle

TEMPLATE = """\
{% block system %}Sort tickets.{% endblock %}
{% block task %}Ticket: {{ input }}{% endblock %}
{% block output_format %}Reply with one of: {{ labels | join(", ") }}.{% endblock %}
"""
# USD per 1M input / output tokens, as published by OpenAI (the shipped table's source).
PRICES = {"gpt-4o-mini": (0.15, 0.60), "gpt-4.1-nano": (0.10, 0.40), "gpt-4o": (2.50, 10.00)}
VARIANT = "You route the support tickets of an online shop to the right queue."


def _project(tmp_path: Path, example_project: Path) -> Path:
    project = small_project(
        tmp_path / "p",
        example_project,
        per_label=5,
        candidates=[
            {"name": "mini-zero", "strategy": "llm-zero-shot", "llm": "mini",
             "params": {"template": "prompts/tiny.j2"}},
            {"name": "nano-variant", "strategy": "llm-zero-shot", "llm": "nano",
             "params": {"template": "prompts/tiny.j2", "system": VARIANT}},
            {"name": "4o-cot", "strategy": "llm-cot", "llm": "big",
             "params": {"template": "prompts/tiny.j2", "max_tokens": 100}},
        ],
    )  # fmt: skip
    (project / "prompts").mkdir()
    (project / "prompts/tiny.j2").write_text(TEMPLATE)
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["llms"] = {
        "mini": {"backend": "openai", "name": "gpt-4o-mini"},
        "nano": {"backend": "openai", "name": "gpt-4.1-nano"},
        "big": {"backend": "openai", "name": "gpt-4o"},
    }
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return project


def _cli(*args: str) -> str:
    env = {**os.environ, "COLUMNS": "150"}
    out = subprocess.run(
        [sys.executable, "-m", "adaptlab", *args], capture_output=True, text=True, env=env
    )
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _rows(output: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        cells = line.split()
        if cells and cells[0] in ("mini-zero", "nano-variant", "4o-cot"):
            rows[cells[0]] = cells
    return rows


def _tokens(text: str) -> int:
    """OpenAI's chat rule with the offline estimate: ceil(characters / 4) per text."""
    return math.ceil(len(text) / 4)


def test_dry_run_tokens_and_cost_by_hand(tmp_path: Path, example_project: Path) -> None:
    project = _project(tmp_path, example_project)
    split = Project.load(project).split()
    # A run answers the test split and the validation split (chosen on val): both cost.
    test_inputs = [ex.text for ex in (*split.test, *split.val)]
    labels = list(yaml.safe_load((project / "adaptlab.yaml").read_text())["labels"])
    n = len(test_inputs)

    def prompt_tokens(system: str) -> int:
        total = 0
        for text in test_inputs:
            user = f"Ticket: {text}\n\nReply with one of: {', '.join(labels)}."
            # 3 to prime the reply, then per message 3 + 1 for the role + its content.
            total += 3 + (3 + 1 + _tokens(system)) + (3 + 1 + _tokens(user))
        return total

    label_answer = max(_tokens(label) for label in labels) + 1  # a label and an end token
    expected = {
        "mini-zero": ("gpt-4o-mini", prompt_tokens("Sort tickets."), n * label_answer),
        "nano-variant": ("gpt-4.1-nano", prompt_tokens(VARIANT), n * label_answer),
        "4o-cot": ("gpt-4o", prompt_tokens("Sort tickets."), n * 100),
    }
    out = _cli("run", "--dry-run", "-p", str(project))
    rows = _rows(out)
    assert set(rows) == set(expected), out
    total = 0.0
    for name, (model, tokens_in, tokens_out) in expected.items():
        _, shown_model, requests, cached, tin, tout, usd = rows[name]
        assert shown_model == model and int(requests) == n and int(cached) == 0
        assert tin == f"{tokens_in:,}~"  # ~: an estimate, no tokenizer files offline
        assert tout == ("≤" if name == "4o-cot" else "") + f"{tokens_out:,}"
        p_in, p_out = PRICES[model]
        price = price_for(LLMConfig(backend="openai", name=model))
        assert price is not None and (price.input, price.output) == (p_in, p_out)
        cost = (tokens_in * p_in + tokens_out * p_out) / 1_000_000
        assert usd == dollars(cost)  # two significant digits, never 0.000000
        total += cost
    assert f"projected API cost of this run: {format_usd(total)}" in out
    assert out.count("would be skipped") == 3  # no key here: a real run would skip them
    assert not (project / ".adaptlab" / "llm_cache.db").exists()


def test_dry_run_after_a_run_counts_cached_answers_as_free(
    tmp_path: Path, example_project: Path
) -> None:
    project = _project(tmp_path, example_project)
    with FakeLLMServer(Oracle(example_project)) as server:
        cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
        cfg["llms"]["mini"]["base_url"] = server.base_url
        cfg["candidates"] = cfg["candidates"][:1]
        (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        run_project(Project.load(project))
        sent = len(server.calls)
        out = _cli("run", "--dry-run", "-p", str(project))
        assert len(server.calls) == sent  # the dry run sent nothing
    cells = _rows(out)["mini-zero"]
    assert cells[2] == cells[3] == str(sent)  # every request is cached
    assert cells[4:] == ["0", "0", "0"]


def test_prompt_render_shows_the_exact_messages_and_tokens(
    tmp_path: Path, example_project: Path
) -> None:
    project = _project(tmp_path, example_project)
    first = Project.load(project).split().test[0].text
    out = _cli("prompt", "render", "-p", str(project), "-c", "nano-variant")
    assert VARIANT in out and f"Ticket: {first}" in out
    assert re.search(r"template prompts/tiny\.j2 @ [0-9a-f]{12}", out)
    labels = list(yaml.safe_load((project / "adaptlab.yaml").read_text())["labels"])
    user = f"Ticket: {first}\n\nReply with one of: {', '.join(labels)}."
    tokens = 3 + (4 + _tokens(VARIANT)) + (4 + _tokens(user))
    assert f"input tokens: {tokens} (estimate" in out
    # Editing the template changes its version.
    before = re.search(r"@ ([0-9a-f]{12})", out)
    (project / "prompts/tiny.j2").write_text(TEMPLATE.replace("Sort", "Route"))
    after = re.search(
        r"@ ([0-9a-f]{12})", _cli("prompt", "render", "-p", str(project), "-c", "mini-zero")
    )
    assert before and after and before.group(1) != after.group(1)
