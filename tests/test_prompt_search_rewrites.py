"""``prompt-search`` with ``space.rewrites``: a proposer LLM writes system instructions
(from a task summary, then by reflection on validation failures) that race as settings.

Against the fake OpenAI server (real HTTP), which is both the classifier and the
proposer: the classifier answers right only when its system instruction holds
``MAGIC``, so a proposed instruction is the only way to win. The tests check what the
proposer is shown (train examples for a summary, never a validation or test text;
validation failures for a reflection, never a test text), that the winning
instruction is kept and recorded, that the proposer's calls are capped and counted
in the printed maximum, that a rerun sends nothing, and that bad options are refused.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab import Project, run_project
from adaptlab.core.errors import ConfigError
from adaptlab.engine.planning import plan_project
from adaptlab.llm.types import ChatResponse, Usage
from adaptlab.strategies.prompt_search import propose
from tests.fakes.fake_llm import ChatCall, FakeLLMServer
from tests.test_prompt_search import (
    Lines,
    last_input,
    printed_max,
    project_with,
    search_calls,
    tuning,
)

MAGIC = "Read the input word by word (MAGIC) and answer with its label."
#: 4 settings (no demonstrations, so only an instruction can win) and 4 rewrites: a
#: schedule of 8 on 4, 8, then all 12 validation inputs; 2 summaries, 2 reflections.
SEARCH: dict[str, Any] = {
    "max_trials": 4,
    "min_examples": 4,
    "space": {"shots": [0], "rewrites": 4},
}


def tag(text: str) -> str:
    return f"<instruction>{text}</instruction>"


class Writer:
    """The fake model: a classifier right only under a MAGIC instruction, and a proposer
    answering from scripts (``summary[i]`` / ``reflect[i]`` for the i-th call)."""

    def __init__(self, project: Path, summary: list[str], reflect: list[str]) -> None:
        loaded = Project.load(project)
        split = loaded.split()
        self.seed = loaded.config.seed
        self.gold = {ex.text: ex.label for ex in (*split.train, *split.val, *split.test)}
        self.labels = sorted(set(self.gold.values()))
        self.summary, self.reflect = summary, reflect
        self.proposer: list[ChatCall] = []
        self._lock = threading.Lock()

    def __call__(self, call: ChatCall) -> str:
        if call.system == propose.SYSTEM:
            with self._lock:
                self.proposer.append(call)
            i = (int(call.body["seed"]) - self.seed) % 10_000
            script = self.reflect if "got these inputs wrong" in call.user_text else self.summary
            return script[i % len(script)]
        gold = self.gold[last_input(call)]
        wrong = next(lab for lab in self.labels if lab != gold)
        return gold if "MAGIC" in (call.system or "") else wrong


@pytest.fixture
def run_rewrites(tmp_path: Path, example_project: Path) -> Any:
    """Run a prompt-search project with rewrites; returns (server, project, printed
    lines, split, responder)."""

    def go(
        summary: list[str],
        reflect: list[str],
        others: dict[str, dict[str, Any]] | None = None,
        **params: Any,
    ) -> Any:
        server = FakeLLMServer().start()
        project = project_with(tmp_path, example_project, server, {}, **params)
        if others:  # more entries under llms:, at the same server
            cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
            for name, entry in others.items():
                cfg["llms"][name] = {"base_url": server.base_url, **entry}
            (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        writer = Writer(project, summary, reflect)
        server.responder = writer
        lines = Lines()
        try:
            run_project(Project.load(project), progress=lines)
        finally:
            server.stop()
        return server, project, lines.lines, Project.load(project).split(), writer

    return go


def texts_in(calls: list[ChatCall], texts: set[str]) -> set[str]:
    return {t for t in texts for c in calls if t in c.user_text}


def test_a_summary_instruction_wins_and_garbled_answers_are_skipped(run_rewrites: Any) -> None:
    server, project, lines, split, writer = run_rewrites([tag(MAGIC), ""], ["unused"], **SEARCH)
    info = tuning(project)
    decision = info["prompt_search"]["decision"]
    assert decision["kept"] == "tuned" and decision["written_by"] == "summary"
    assert decision["instruction"] == MAGIC
    assert info["tuning"]["tuned"]["params"]["system"] == MAGIC
    assert info["tuning"]["tuned"]["val_score"] == 1.0
    # The proposer saw label names and train examples, never a validation or test text.
    summaries = [c for c in writer.proposer if "got these" not in c.user_text]
    assert len(summaries) == 2
    assert not texts_in(summaries, {ex.text for ex in (*split.val, *split.test)})
    assert texts_in(summaries, {ex.text for ex in split.train})
    assert all(lab in summaries[0].user_text for lab in writer.labels)
    # The empty answer is skipped with its reason; nothing to reflect on (no error).
    records = info["prompt_search"]["proposals"]
    assert [r["skipped"] for r in records] == [None, "empty answer"]
    assert records[0]["prompt"][0]["content"] == propose.SYSTEM and records[0]["val_score"] == 1.0
    assert len(writer.proposer) == 2 and "made no error" in info["prompt_search_reflect"]
    # Every call counted, proposer included, and no more than the printed maximum.
    sent = search_calls(server, split)
    assert info["tuning"]["budget"]["calls"] == len(sent) <= printed_max(lines)
    assert any("4 proposer calls to the candidate's own llm" in line for line in lines)
    # The test split was answered by the kept instruction.
    test = {ex.text for ex in split.test}
    answered = [c for c in server.calls if c.system != propose.SYSTEM and last_input(c) in test]
    assert len(answered) == len(split.test) and all(c.system == MAGIC for c in answered)


def test_a_reflection_on_validation_failures_wins(run_rewrites: Any) -> None:
    plain = tag("Classify the input carefully into exactly one of the labels given.")
    server, project, lines, split, writer = run_rewrites(
        [plain, tag("Pick the single most fitting label for the input text.")],
        [tag(MAGIC), "<instruction>cut off by the length lim"],
        **SEARCH,
    )
    info = tuning(project)
    decision = info["prompt_search"]["decision"]
    assert decision["kept"] == "tuned" and decision["written_by"] == "reflect"
    assert decision["instruction"] == MAGIC
    reflections = [c for c in writer.proposer if "got these inputs wrong" in c.user_text]
    assert len(reflections) == 2
    # Failures of the validation minibatch are shown (input, expected, got); test never.
    val = {ex.text: ex.label for ex in split.val}
    shown = texts_in(reflections[:1], set(val))
    assert shown and all(
        f"<input>{t}</input>\n<expected>{val[t]}</expected>" in reflections[0].user_text
        for t in shown
    )
    assert not texts_in(writer.proposer, {ex.text for ex in split.test})
    records = info["prompt_search"]["proposals"]
    assert [r["phase"] for r in records] == ["summary", "summary", "reflect", "reflect"]
    assert "cut off" in records[3]["skipped"]
    sent = search_calls(server, split)
    assert info["tuning"]["budget"]["calls"] == len(sent) <= printed_max(lines)


def test_a_rerun_sends_nothing_and_a_named_proposer_is_used(
    run_rewrites: Any, tmp_path: Path
) -> None:
    others = {"writer": {"backend": "openai", "name": "gpt-4o"}}
    params = {**SEARCH, "space": {**SEARCH["space"], "proposer": "writer"}}
    server, project, lines, split, writer = run_rewrites(
        [tag(MAGIC)], [tag(MAGIC)], others=others, **params
    )
    assert {c.model for c in writer.proposer} == {"gpt-4o"}
    assert any("proposer calls to llm 'writer'" in line for line in lines)
    assert tuning(project)["tuning"]["budget"]["calls"] == len(search_calls(server, split))
    # A dry run counts the proposer's calls too (cached ones included, as the run sent them).
    (plan,) = plan_project(Project.load(project))
    # ... each model's at its own price: the proposer's calls at gpt-4o's, not the
    # candidate's gpt-4o-mini's.
    assert plan.proposer is not None and plan.proposer.model == "openai:gpt-4o"
    assert plan.requests + plan.proposer.requests >= len(server.calls)
    assert plan.proposer.requests >= len(writer.proposer)
    from adaptlab.llm.prices import lookup_price

    gpt4o = lookup_price("gpt-4o")
    assert gpt4o is not None and plan.proposer.input_usd_per_1m == gpt4o.input
    assert plan.input_usd_per_1m != gpt4o.input
    own, asked = plan.own_cost_usd, plan.proposer.cost_usd
    assert own is not None and asked is not None and plan.cost_usd == pytest.approx(own + asked)
    from tests.conftest import run_cli

    printed = run_cli("run", "-p", str(project), "--dry-run").output
    assert "search proposer" in printed and "gpt-4o " in printed, printed
    with FakeLLMServer(writer) as again:
        cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
        for entry in cfg["llms"].values():  # the same identities: the same cache keys
            entry["base_url"] = server.base_url
        (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        run_project(Project.load(project), force=True)
    assert again.calls == [] and tuning(project)["tuning"]["budget"]["calls"] == 0
    # The proposer's model is part of the stored result's key; another entry is not.
    from adaptlab.engine.runner import result_key

    def key_with(entry: str, model: str) -> str:
        cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
        cfg["llms"][entry]["name"] = model
        (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        loaded = Project.load(project)
        cand = next(c for c in loaded.config.candidates if c.strategy == "prompt-search")
        return result_key(loaded, cand, loaded.split())

    before = key_with("writer", "gpt-4o")
    assert key_with("writer", "gpt-4.1") != before
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["llms"]["unused"] = {"backend": "openai", "name": "gpt-4o-mini"}
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    assert key_with("unused", "o3") == key_with("unused", "gpt-4o-mini")


def test_max_calls_holds_with_the_proposer(run_rewrites: Any) -> None:
    cap = 20  # the default on all 12, the 2 summaries, then part of round 0
    server, project, lines, split, writer = run_rewrites(
        [tag(MAGIC)], [tag(MAGIC)], max_calls=cap, **SEARCH
    )
    t = tuning(project)["tuning"]
    sent = search_calls(server, split)
    assert len(writer.proposer) == 2 and len(sent) <= cap and t["budget"]["calls"] == len(sent)
    assert t["budget"]["stopped_by"] == "max_calls" and printed_max(lines) == cap


@pytest.mark.parametrize(
    ("space", "key"),
    [
        ({"rewrites": 2, "proposer": "nope"}, "space.proposer"),
        ({"rewrites": 0, "proposer": "chat"}, "proposer"),
        ({"rewrites": -1}, "rewrites"),
        ({"rewrites": 33}, "rewrites"),
        ({"rewrites": 2, "proposer_max_tokens": 8}, "proposer_max_tokens"),
    ],
)
def test_bad_rewrite_options_are_refused(
    tmp_path: Path, example_project: Path, space: dict[str, Any], key: str
) -> None:
    server = FakeLLMServer()  # never started: nothing may be sent
    project = project_with(
        tmp_path, example_project, server, {"base_url": "http://127.0.0.1:9/v1"}, space=space
    )
    with pytest.raises(ConfigError) as err:
        Project.load(project)
    text = str(err.value)
    assert key in text and "adaptlab.yaml" in text


def test_a_local_model_is_not_the_default_proposer(tmp_path: Path, example_project: Path) -> None:
    project = project_with(tmp_path, example_project, FakeLLMServer(), {}, space={"rewrites": 2})
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["llms"]["chat"] = {"backend": "hf", "name": "smollm2-135m-instruct"}
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(ConfigError, match=r"space\.rewrites.*local model") as err:
        Project.load(project)
    assert "adaptlab.yaml" in str(err.value) and "space.proposer" in str(err.value)


@pytest.mark.parametrize(
    ("text", "finish", "instruction", "why"),
    [
        (tag("Label each ticket by its main request."), "stop", "Label each", None),
        ("<think>hmm</think>Label each ticket by its request.", "stop", "Label each", None),
        ("", "stop", None, "empty"),
        ("   ", "stop", None, "empty"),
        ("<instruction>Label each ticket by", "length", None, "cut off"),
        ("Label each ticket by its", "length", None, "cut off"),
        (tag("ok"), "stop", None, "too short"),
        (tag("### 1234 5678 %%%% !!!! ????"), "stop", None, "garbled"),
        (tag("x " * 2000), "stop", None, "longer than"),
        ("", "content_filter", None, "failed"),
    ],
)
def test_read_instruction_skips_what_is_no_instruction(
    text: str, finish: str, instruction: str | None, why: str | None
) -> None:
    answer = ChatResponse(text, Usage(1, 1), latency_ms=0.0, finish_reason=finish)
    got, reason = propose.read_instruction(answer)
    assert (got is None) == (instruction is None)
    if instruction is not None:
        assert got is not None and got.startswith(instruction) and reason is None
    else:
        assert why is not None and reason is not None and why in reason
