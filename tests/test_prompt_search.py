"""``strategy: prompt-search`` against the fake OpenAI server (real HTTP): the printed
maximum bounds the requests the server receives, ``max_calls`` and ``max_usd`` hold
under concurrency and retries, a rerun sends nothing new, demonstrations come from
the train split only, and bad options are refused with the key and the fix.

The server's model answers right only when the prompt shows demonstrations, so the
search has something to find: zero-shot (the unoptimised prompt) is wrong on every
input, any setting with shots is right on every input.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab import Project, run_project, summarize_project
from adaptlab.core.errors import AdaptlabError, ConfigError
from adaptlab.core.progress import ProgressSink
from adaptlab.engine.planning import plan_project
from adaptlab.engine.runner import Models, make_context
from adaptlab.llm.types import ChatResponse, Usage
from adaptlab.strategies.prompt_search import PromptSearch
from adaptlab.strategies.prompt_search.budget import Budget, BudgetSpent
from adaptlab.strategies.prompt_search.strategy import mcnemar_exact, successive_halving
from tests.conftest import small_project
from tests.fakes.fake_llm import ChatCall, FakeLLMServer, fail_first, honour_schema, prompt_tokens

EXAMPLE = re.compile(r"<example>\n<input>(.*?)</input>", re.S)
INPUT = re.compile(r"<input>\n(.*?)\n</input>|^Klassifizieren.*?\n\n(.*)$", re.S)
#: Small, so each test is a second or two: 8 settings, rounds on 4, 8, then all 12 inputs.
SEARCH: dict[str, Any] = {
    "max_trials": 8,
    "min_examples": 4,
    "space": {"shots": [0, 2], "selectors": ["stratified", "random"]},
}


def last_input(call: ChatCall) -> str:
    """The input a prompt asks about: the last <input> block outside the examples."""
    text = EXAMPLE.sub("", call.user_text)
    found = re.findall(r"<input>\n?(.*?)\n?</input>", text, re.S)
    return found[-1].strip() if found else text.strip().splitlines()[-1]


class NeedsExamples:
    """Right (the gold label) only when the prompt holds demonstrations."""

    def __init__(self, project: Path) -> None:
        split = Project.load(project).split()
        self.gold = {ex.text: ex.label for ex in (*split.train, *split.val, *split.test)}
        self.labels = sorted(set(self.gold.values()))
        self.answers: dict[int, str] = {}

    def __call__(self, call: ChatCall) -> str:
        gold = self.gold[last_input(call)]
        wrong = next(lab for lab in self.labels if lab != gold)
        answer = gold if "<example>" in call.user_text else wrong
        self.answers[call.index] = honour_schema(call, answer)
        return answer


class Lines(ProgressSink):
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    def note(self, message: str) -> None:
        self.lines.append(message)


def project_with(
    tmp_path: Path, example_project: Path, server: FakeLLMServer, llm: dict[str, Any], **params: Any
) -> Path:
    cand = {"name": "search", "strategy": "prompt-search", "llm": "chat", "params": params}
    project = small_project(tmp_path / "p", example_project, 20, [cand])
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["llms"] = {
        "chat": {"backend": "openai", "name": "gpt-4o-mini", "base_url": server.base_url, **llm}
    }
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return project


def printed_max(lines: list[str]) -> int:
    found = [re.search(r"at most ([\d,]+) calls", line) for line in lines]
    (match,) = [m for m in found if m]
    return int(match.group(1).replace(",", ""))


def tuning(project: Path) -> dict[str, Any]:
    (cand,) = summarize_project(Project.load(project)).candidates
    info: dict[str, Any] = cand.info
    return info


@pytest.fixture
def run_search(tmp_path: Path, example_project: Path) -> Any:
    """Run a prompt-search project against a fresh server; returns (server, project,
    printed lines, split, responder)."""

    def go(faults: Any = None, llm: dict[str, Any] | None = None, **params: Any) -> Any:
        server = FakeLLMServer(faults=faults).start()
        project = project_with(tmp_path, example_project, server, llm or {}, **params)
        oracle = NeedsExamples(project)
        server.responder = oracle
        lines = Lines()
        try:
            run_project(Project.load(project), progress=lines)
        finally:
            server.stop()
        return server, project, lines.lines, Project.load(project).split(), oracle

    return go


def search_calls(server: FakeLLMServer, split: Any) -> list[ChatCall]:
    """The requests of the search: every one not about a test input."""
    test = {ex.text for ex in split.test}
    return [c for c in server.calls if last_input(c) not in test]


def test_search_finds_demonstrations_and_records_the_contract(run_search: Any) -> None:
    server, project, lines, split, _ = run_search(**SEARCH)
    info = tuning(project)
    t = info["tuning"]
    n_val = len(split.val)
    assert t["default"]["params"]["shots"] == 0 and t["default"]["val_score"] == 0.0
    assert t["tuned"]["params"]["shots"] == 2 and t["tuned"]["val_score"] == 1.0
    assert len(t["default"]["val_per_example"]) == len(t["tuned"]["val_per_example"]) == n_val
    assert t["trials"][0]["params"] == t["default"]["params"] and t["trials"][0]["n_val"] == n_val
    assert {"params", "rung", "n_val", "val_score", "seconds", "calls", "usd"} <= set(
        t["trials"][1]
    )
    assert set(t["budget"]) == {
        "max_minutes", "max_calls", "max_usd", "minutes", "calls", "usd", "stopped_by",
    }  # fmt: skip
    assert info["prompt_search"]["decision"]["kept"] == "tuned"
    # Every request of the search was counted, and no more than printed were sent.
    assert t["budget"]["calls"] == len(search_calls(server, split))
    assert len(search_calls(server, split)) <= printed_max(lines)
    # The test split was answered once, by the kept prompt (with demonstrations).
    test_calls = [c for c in server.calls if c not in search_calls(server, split)]
    assert len(test_calls) == len(split.test) and all(
        "<example>" in c.user_text for c in test_calls
    )
    # Demonstrations come from train, never from validation or test.
    train = {ex.text for ex in split.train}
    shown = {s.strip() for c in server.calls for s in EXAMPLE.findall(c.user_text)}
    assert shown and shown <= train
    # The search never asked about a test input.
    assert not {last_input(c) for c in search_calls(server, split)} & {ex.text for ex in split.test}
    # An export rebuilds the kept prompt from the stored search, sending nothing.
    loaded = Project.load(project)
    strategy, _ = make_context(
        loaded, loaded.config.candidates[0], project, Models(loaded), ProgressSink(), with_llm=False
    )
    assert isinstance(strategy, PromptSearch)
    strategy.restore_fit(split.train, split.val, info)
    again = strategy.requests([ex.text for ex in split.test])
    assert sorted(r.messages[-1].content for r in again) == sorted(c.user_text for c in test_calls)


def test_a_rerun_sends_nothing_new(run_search: Any, tmp_path: Path) -> None:
    server, project, _, _, oracle = run_search(**SEARCH)
    with FakeLLMServer(oracle) as again:
        cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
        cfg["llms"]["chat"]["base_url"] = server.base_url  # the same identity: same cache keys
        (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
        run_project(Project.load(project), force=True)  # the search again, from the cache
    assert again.calls == [] and tuning(project)["tuning"]["budget"]["calls"] == 0


@pytest.mark.parametrize("fault", ["429:0.01", "500"])
def test_max_calls_holds_under_retries_and_concurrency(run_search: Any, fault: str) -> None:
    cap = 30  # the default on all val (12) and a few rounds' worth, of a 60-odd search
    server, project, lines, split, _ = run_search(
        faults=fail_first(1, fault), llm={"max_concurrency": 8}, max_calls=cap, **SEARCH
    )
    t = tuning(project)["tuning"]
    calls = search_calls(server, split)
    assert sum(c.fault is not None for c in calls) > 0  # retries happened, and counted
    assert len(calls) <= cap and t["budget"]["calls"] == len(calls)
    assert t["budget"]["stopped_by"] == "max_calls"
    assert printed_max(lines) == cap


def test_max_usd_holds(run_search: Any) -> None:
    cap = 0.6
    # USD per 1M tokens: ~USD 0.01 a call as the fake bills (0.037 held for the
    # default: its token count includes the JSON schema); the search uncapped bills ~0.7.
    prices = {"input": 100.0, "output": 0.0}
    server, project, lines, split, oracle = run_search(
        llm={"prices": prices}, max_usd=cap, **SEARCH
    )
    t = tuning(project)["tuning"]
    calls = search_calls(server, split)
    # The bill as the server counts it: its prompt tokens and the answers it sent.
    billed = sum(
        prompt_tokens(c) * prices["input"] + len(oracle.answers[c.index].split()) * prices["output"]
        for c in calls
        if c.fault is None
    )
    assert 0 < billed / 1e6 <= cap and t["budget"]["usd"] <= cap
    assert t["budget"]["stopped_by"] == "max_usd"
    assert any("USD" in line and "at most" in line for line in lines)


def test_the_dry_run_bounds_the_run(run_search: Any) -> None:
    server, project, _, split, _ = run_search(max_calls=40, **SEARCH)
    (plan,) = plan_project(Project.load(project))
    # Everything was cached by the run: the plan counts the same requests as cached.
    assert plan.requests >= len(server.calls)
    assert plan.requests <= 40 + len(split.test)


def test_caps_too_small_for_the_default_are_refused_before_sending(run_search: Any) -> None:
    with pytest.raises(ConfigError, match="max_calls: 3 cannot pay") as err:
        run_search(max_calls=3, **SEARCH)
    assert "raise max_calls to at least" in str(err.value)


@pytest.mark.parametrize(
    ("params", "key"),
    [
        ({"space": {"shots": [-1]}}, "shots"),
        ({"space": {"shots": []}}, "shots"),
        ({"space": {"shots": [2, 2]}}, "shots"),
        ({"space": {"selectors": ["nearest"]}}, "selectors"),
        ({"space": {"answers": ["maybe"]}}, "answers"),
        ({"space": {"temperatures": [3.0]}}, "temperatures"),
        ({"space": {"instructions": ["  "]}}, "instructions"),
        ({"space": {"shot": [2]}}, "shot"),
        ({"max_calls": 0}, "max_calls"),
        ({"max_usd": 0}, "max_usd"),
        ({"max_minutes": -1}, "max_minutes"),
        ({"eta": 1}, "eta"),
        ({"shortlist": 9, "max_trials": 4}, "shortlist"),
        ({"max_call": 10}, "max_call"),
    ],
)
def test_bad_options_are_refused_with_the_key(
    tmp_path: Path, example_project: Path, params: dict[str, Any], key: str
) -> None:
    server = FakeLLMServer()  # never started: nothing may be sent
    llm = {"base_url": "http://127.0.0.1:9/v1"}
    project = project_with(tmp_path, example_project, server, llm, **params)
    with pytest.raises(ConfigError) as err:
        Project.load(project)
    text = str(err.value)
    assert key in text and "adaptlab.yaml" in text


def test_schedule_and_paired_test() -> None:
    assert successive_halving(12, 100, 16, 2, 2) == [(12, 16), (6, 32), (3, 64), (2, 100)]
    assert successive_halving(8, 10, 4, 2, 2) == [(8, 4), (4, 8), (2, 10)]
    assert successive_halving(3, 5, 16, 2, 2) == [(3, 5)]  # too few inputs to halve on
    # 10 discordant pairs all one way: 2 * 0.5**10 (exact McNemar).
    assert mcnemar_exact([1.0] * 10 + [0.0] * 5, [0.0] * 15) == pytest.approx(2 / 1024)
    assert mcnemar_exact([1.0, 0.0], [0.0, 1.0]) == 1.0


def test_budget_refuses_past_each_cap() -> None:
    budget = Budget(max_calls=2, max_usd=None, deadline=None)
    budget.admit(2, 0.0)
    with pytest.raises(BudgetSpent, match="max_calls"):
        budget.admit(1, 0.0)
    money = Budget(max_calls=None, max_usd=1.0, deadline=None)
    money.admit(1, 0.9)
    money.settle(0.9, None, None)  # a failed attempt is not billed
    money.admit(1, 0.9)
    with pytest.raises(BudgetSpent, match="max_usd"):
        money.admit(1, 0.2)
    late = Budget(max_calls=None, max_usd=None, deadline=0.0)
    with pytest.raises(BudgetSpent, match="max_minutes"):
        late.admit(1, 0.0)
    assert (budget.calls, money.calls, late.calls, late.stopped_by) == (2, 2, 0, "max_minutes")
    # A reservation becomes the reported usage of the answer.
    priced = Budget(None, 1.0, None)
    priced.admit(1, 0.5)
    priced.settle(0.5, ChatResponse("x", Usage(10, 1), latency_ms=0.0), None)
    assert priced.usd == 0.0


def test_a_search_error_that_is_not_the_budget_stops_the_run(run_search: Any) -> None:
    with pytest.raises(AdaptlabError, match="refused"):
        run_search(faults=lambda c: "401", **SEARCH)


def test_a_missing_template_in_the_space_is_named_before_sending(run_search: Any) -> None:
    params = {**SEARCH, "space": {**SEARCH["space"], "templates": ["auto", "prompts/nope.j2"]}}
    with pytest.raises(ConfigError, match=r"prompts/nope.j2.*not found"):
        run_search(**params)
