"""`adaptlab run --dry-run` of fine-tuned candidates: what training will bill or process.

An ``openai-finetune`` candidate shows its job's epochs (OpenAI's "auto" rule), billed
tokens and USD, and its answers are priced as the fine-tuned model; an ``llm-finetune``
candidate shows the tokens its local trainer will see per epoch. Every expected number
is worked out here from the template, the price table's YAML and the tokenizer.
"""

from __future__ import annotations

import math
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from adaptlab import Project
from adaptlab.cli import cli
from adaptlab.core.format import usd as format_usd
from adaptlab.engine.planning import plan_project
from tests.conftest import small_project
from tests.train.conftest import tiny_base, tokenizer_dir  # noqa: F401 (fixtures)

TEMPLATE = """\
{% block system %}Sort tickets.{% endblock %}
{% block task %}Ticket: {{ input }}{% endblock %}
{% block output_format %}Reply with one of: {{ labels | join(", ") }}.{% endblock %}
"""


def _project(
    tmp_path: Path, example_project: Path, cand: dict[str, Any], llm: dict[str, Any]
) -> Path:
    cand["params"] = {"template": "prompts/tiny.j2", **cand.get("params", {})}
    project = small_project(tmp_path / "p", example_project, 4, [cand])
    (project / "prompts").mkdir()
    (project / "prompts/tiny.j2").write_text(TEMPLATE)
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["llms"] = {"chat": llm}
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return project


def _chats(project: Path) -> list[list[dict[str, str]]]:
    """The training chats by hand: the template's messages and the label as the answer."""
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    labels = ", ".join(cfg["labels"])
    return [
        [
            {"role": "system", "content": "Sort tickets."},
            {"role": "user", "content": f"Ticket: {ex.text}\n\nReply with one of: {labels}."},
            {"role": "assistant", "content": ex.label},
        ]
        for ex in Project.load(project).split().train
    ]


def _dry_run(project: Path) -> str:
    """``adaptlab run --dry-run`` in this process, whitespace runs made one space (rich
    wraps long lines at the terminal's width)."""
    result = CliRunner().invoke(cli, ["run", "--dry-run", "-p", str(project)])
    assert result.exit_code == 0, result.output
    return " ".join(result.output.split())


def _table_entry(model: str) -> dict[str, Any]:
    text = resources.files("adaptlab.llm").joinpath("prices.yaml").read_text(encoding="utf-8")
    entry: dict[str, Any] = yaml.safe_load(text)["models"][model]
    return entry


def test_a_provider_fine_tune_shows_epochs_billed_tokens_and_usd(
    tmp_path: Path, example_project: Path
) -> None:
    project = _project(
        tmp_path,
        example_project,
        {"name": "ft", "strategy": "openai-finetune", "llm": "chat"},
        {"backend": "openai", "name": "gpt-4o-mini"},
    )
    chats = _chats(project)
    n = len(chats)
    # OpenAI's cookbook rule for n_epochs "auto": 3 epochs, raised to reach 100 example
    # visits on a small file (at most 25).
    epochs = min(25, 100 // n) if 3 * n < 100 else 3
    # Offline, no tiktoken file: 3 to prime the reply, then 3 + 1 (role) + ceil(chars/4)
    # per message.
    per_epoch = sum(3 + sum(4 + math.ceil(len(m["content"]) / 4) for m in c) for c in chats)
    entry = _table_entry("gpt-4o-mini")
    tuned = entry["finetuned"]
    usd = per_epoch * epochs * tuned["training"] / 1e6

    out = _dry_run(project)
    assert (
        f"ft: training at the provider on {n} examples: {epochs} epochs (auto: OpenAI's rule "
        f"for {n} examples) x ~{per_epoch:,} tokens = ~{per_epoch * epochs:,} billed tokens, "
        f"{format_usd(usd)} ({tuned['training']:g} USD per 1M training tokens" in out
    ), out
    # The test and val inputs are answered by the tuned model, at its prices (not its base's).
    (plan,) = plan_project(Project.load(project))
    split = Project.load(project).split()
    assert plan.requests == len(split.test) + len(split.val) and plan.input_tokens > 0
    answers = (plan.input_tokens * tuned["input"] + plan.output_tokens * tuned["output"]) / 1e6
    assert plan.cost_usd == pytest.approx(answers)
    assert (
        answers > (plan.input_tokens * entry["input"] + plan.output_tokens * entry["output"]) / 1e6
    )
    assert plan.training is not None and plan.training.usd == pytest.approx(usd)
    assert (
        f"projected API cost of this run: {format_usd(answers + usd)} ({format_usd(usd)} of it "
        "training)" in out
    )


def test_a_local_fine_tune_shows_the_tokens_its_trainer_will_see(
    tmp_path: Path,
    example_project: Path,
    tiny_base: Path,  # noqa: F811
) -> None:
    from transformers import AutoTokenizer

    max_length = 60
    project = _project(
        tmp_path,
        example_project,
        {
            "name": "tuned",
            "strategy": "llm-finetune",
            "llm": "chat",
            "params": {"epochs": 2.5, "max_length": max_length},
        },
        {"backend": "hf", "name": str(tiny_base)},
    )
    tok: Any = AutoTokenizer.from_pretrained(tiny_base)  # apply_chat_template: a dict here
    kept = cut = loss = 0
    examples = 0
    for chat in _chats(project):
        full = len(tok.apply_chat_template(chat, tokenize=True)["input_ids"])
        prompt = len(
            tok.apply_chat_template(chat[:-1], tokenize=True, add_generation_prompt=True)[
                "input_ids"
            ]
        )
        cut += full > max_length
        if prompt >= max_length:
            continue  # cut before its answer: nothing left to learn, left out
        examples += 1
        kept += min(full, max_length)
        loss += min(full, max_length) - prompt
    assert 0 < cut < len(_chats(project)), "max_length should cut some chats, not all"

    out = _dry_run(project)
    assert (
        f"tuned: training on this machine on {examples} examples: 2.5 epochs (set) x "
        f"{kept:,} tokens, {loss:,} of them answer tokens the loss is on = at most about "
        f"{round(kept * 2.5):,} tokens trained on, compute cost only (no API bill); {cut} "
        f"example(s) longer than max_length={max_length} are cut" in out
    ), out
    assert "tuned: runs on this machine: compute cost only" in out
    assert "projected API cost of this run: 0 USD" in out
    # Nothing was trained: no checkpoint folder, no stored run.
    assert not (project / ".adaptlab" / "runs.db").exists()


@pytest.mark.parametrize("problem", ["no-val", "remote"])
def test_a_local_fine_tune_that_would_stop_says_why(
    tmp_path: Path,
    example_project: Path,
    tiny_base: Path,  # noqa: F811
    problem: str,
) -> None:
    llm = (
        {"backend": "openai", "name": "gpt-4o-mini"}
        if problem == "remote"
        else {"backend": "hf", "name": str(tiny_base)}
    )
    project = _project(
        tmp_path, example_project, {"name": "tuned", "strategy": "llm-finetune", "llm": "chat"}, llm
    )
    if problem == "no-val":
        cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
        cfg["data"]["val_size"] = 0
        (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    out = _dry_run(project)
    expected = "data.val_size" if problem == "no-val" else "point the candidate at an 'hf' llm"
    assert "tuned: training: no estimate" in out and expected in out, out
