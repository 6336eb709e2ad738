"""``tune:`` on a prompted RAG candidate against the fake OpenAI server (real HTTP):
context_k and rag's hybrid_weight chosen on validation inputs only, the default trial
being the untuned candidate's validation answers, a rerun sending nothing, the cap
holding, the dry run bounding the calls, and bad options refused with key and line.

The project is the help-center one of ``test_rag_candidates`` (hybrid retrieval over
its articles, the bundled encoder). The server's model answers right only when the
passage holding the answer is in its prompt, so more passages can only help and the
search has something to find.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab import Project, run_project, summarize_project
from adaptlab.core.errors import ConfigError
from adaptlab.engine.planning import plan_project
from adaptlab.strategies.prompting.config import ZeroShotPromptOptions
from tests.fakes.fake_llm import ChatCall, FakeLLMServer
from tests.rag.test_rag_candidates import QUESTIONS
from tests.rag.test_rag_candidates import write_project as rag_project

#: Pages that match the questions' words and hold no answer: the best passage is often
#: one of these, so one passage is often not enough.
DISTRACTORS = {
    "faq.md": "# Questions\n\nHow long until a card refund is back? When does my PayPal "
    "refund arrive? How fast do parcels leave? Is there Saturday delivery?\n",
    "more-faq.md": "# More questions\n\nHow long is the reset link valid? My reset link "
    "expired, what now? How long can I use a gift card? Do you have a store in Berlin?\n",
}
TUNE: dict[str, Any] = {"max_minutes": 5, "context_k": [2, 3], "hybrid_weight": [0.2, 0.8]}


class Reader:
    """Answers a question right only when its answer is among the prompt's passages."""

    def __init__(self) -> None:
        self.asked: list[str] = []  # every prompt, in arrival order

    def __call__(self, call: ChatCall) -> str:
        text = call.user_text
        self.asked.append(text)
        answer = next(a for q, a, _ in QUESTIONS if q in text)
        return f"[1] {answer}" if answer in text else "I do not know."


def write_project(root: Path, base_url: str, candidates: list[dict[str, Any]], **rag: Any) -> Path:
    """``test_rag_candidates``' project, with the distractors, each question twice, a
    validation split, hybrid retrieval and the fake server's model."""
    rag_project(root, candidates)
    for name, text in DISTRACTORS.items():
        (root / "docs" / name).write_text(text, encoding="utf-8")
    data = root / "data/questions.jsonl"
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:16]), encoding="utf-8")
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text(encoding="utf-8"))
    cfg["data"].update(test_size=0.4, val_size=0.4)
    cfg["rag"].update({"chunk_tokens": 32, "chunk_overlap": 0, "mode": "hybrid", **rag})
    cfg["llms"] = {"chat": {"backend": "openai", "name": "gpt-4o-mini", "base_url": base_url}}
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return root


def candidate(name: str, tune: dict[str, Any] | None = None, **params: Any) -> dict[str, Any]:
    params = {"context_k": 1, **params}
    if tune is not None:
        params["tune"] = tune
    return {"name": name, "strategy": "llm-zero-shot", "llm": "chat", "params": params}


@pytest.fixture
def server() -> Any:
    with FakeLLMServer(Reader()) as srv:
        yield srv


def searched(monkeypatch: pytest.MonkeyPatch, reader: Reader) -> list[tuple[int, int]]:
    """(first, end) indexes into ``reader.asked`` of each search (tune_retrieval call)."""
    import adaptlab.strategies.prompting.tune as tune

    spans: list[tuple[int, int]] = []
    real = tune.tune_retrieval

    def spy(strategy: Any, val: Any) -> None:
        first = len(reader.asked)
        real(strategy, val)
        spans.append((first, len(reader.asked)))

    monkeypatch.setattr(tune, "tune_retrieval", spy)
    return spans


def test_the_search_answers_val_only_from_the_untuned_default(
    tmp_path: Path, server: FakeLLMServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    reader: Reader = server.responder  # type: ignore[assignment]
    spans = searched(monkeypatch, reader)
    root = write_project(
        tmp_path / "p", server.base_url, [candidate("rag"), candidate("rag-tuned", TUNE)]
    )
    project = Project.load(root)
    split = project.split()
    outcome = run_project(project)

    (span,) = spans
    during = reader.asked[span[0] : span[1]]
    assert during, "the search sent nothing"
    val, test = [ex.text for ex in split.val], [ex.text for ex in split.test]
    assert all(any(v in prompt for v in val) for prompt in during)
    assert not any(t in prompt for t in test for prompt in during)  # never a test input
    summary = summarize_project(project, outcome.run_id)
    plain, tuned = summary.candidate("rag"), summary.candidate("rag-tuned")
    t = tuned.info["tuning"]
    assert t["metric"] == "token_f1" and t["resource"] == "validation inputs answered"
    assert t["default"]["params"] == {"context_k": 1, "hybrid_weight": 0.5}
    # The default trial is the untuned candidate's validation answers, example by example.
    assert plain.val_columns is not None and tuned.val_columns is not None
    assert t["default"]["val_per_example"] == list(plain.val_columns[:, 0])
    assert t["tuned"]["val_per_example"] == list(tuned.val_columns[:, 0])
    # 4 settings besides the default: a first rung on a third of val, then the best 2.
    n_val, m = len(split.val), -(-len(split.val) // 3)
    assert t["rungs"] == 2 and t["inputs_per_rung"] == [m, n_val]
    others = [x for x in t["trials"] if x["params"] != t["default"]["params"]]
    assert [(x["rung"], x["n_val"]) for x in others] == [(0, m)] * 4 + [(1, n_val)] * 2
    assert t["tuned"]["params"]["context_k"] > 1  # more passages hold more answers
    assert t["tuned"]["val_score"] > t["default"]["val_score"]
    assert t["budget"]["calls"] == span[1] - span[0]

    # A rerun from scratch answers everything from the response cache.
    before = len(server.calls)
    run_project(Project.load(root), force=True)
    assert len(server.calls) == before
    again = summarize_project(Project.load(root)).candidate("rag-tuned").info["tuning"]
    assert again["budget"]["calls"] == 0 and again["tuned"] == t["tuned"]

    # The dry run bounds what the run sent, and says so.
    plans = {p.name: p for p in plan_project(Project.load(root))}
    plan = plans["rag-tuned"]
    worst = n_val + 2 * m + 2 * n_val  # the default, 2 settings stopped at m, 2 on all
    assert f"validation inputs with at most {worst} calls" in plan.note
    assert t["budget"]["calls"] <= worst
    assert plan.requests == worst + len(split.test)
    assert "tuning: successive halving (eta 3) over 5 settings" in plan.note
    assert "tuning" not in plans["rag"].note


def test_the_cap_holds(tmp_path: Path, server: FakeLLMServer) -> None:
    server.latency_s = 0.2
    tune = {**TUNE, "max_minutes": 0.001}  # less than the default trial takes
    root = write_project(tmp_path / "p", server.base_url, [candidate("rag-tuned", tune)])
    project = Project.load(root)
    n_val, n_test = len(project.split().val), len(project.split().test)
    run_project(project)
    t = summarize_project(project).candidate("rag-tuned").info["tuning"]
    assert [x["params"] for x in t["trials"]] == [t["default"]["params"]]
    assert t["budget"]["stopped_by"] == "max_minutes" and len(t["left_out"]) == 4
    assert t["tuned"] == t["default"]
    assert len(server.calls) == n_val + n_test  # the default on val, then test


def test_the_untuned_key_is_unchanged() -> None:
    plain = ZeroShotPromptOptions.model_validate({"context_k": 2})
    assert "tune" not in plain.model_dump() and "answer" not in plain.model_dump()
    tuned = ZeroShotPromptOptions.model_validate({"context_k": 2, "tune": {"max_minutes": 1}})
    assert tuned.model_dump()["tune"]["max_minutes"] == 1
    assert tuned.tuning_space() == ({"context_k": 2}, {"context_k": [1, 4]})


@pytest.mark.parametrize(
    ("params", "rag", "key", "says"),
    [
        ({"tune": {"max_minutes": 1, "hybrid_weight": [1.5]}}, {}, "hybrid_weight", "1"),
        ({"tune": {"max_minutes": 1, "hybrid_weight": [-0.1]}}, {}, "hybrid_weight", "0"),
        (
            {"tune": {"max_minutes": 1, "hybrid_weight": [0.3]}},
            {"mode": "dense"},
            "hybrid_weight",
            "rag.mode is 'dense'",
        ),
        ({"tune": {"max_minutes": 1, "reranker": [True]}}, {}, "reranker", "no reranker"),
        ({"tune": {"max_minutes": 1, "context_k": []}}, {}, "context_k", "empty list"),
        ({"tune": {"max_minutes": 1, "context_k": [0]}}, {}, "context_k", "greater than 0"),
        ({"context_k": 0, "tune": {"max_minutes": 1}}, {}, "context_k", "context_k is 0"),
    ],
)
def test_bad_options_are_refused_with_key_and_line(
    tmp_path: Path, params: dict[str, Any], rag: dict[str, Any], key: str, says: str
) -> None:
    nowhere = "http://127.0.0.1:9/v1"  # nothing may be sent
    root = write_project(tmp_path / "p", nowhere, [candidate("rag-tuned", **params)], **rag)
    with pytest.raises(ConfigError) as err:
        Project.load(root)
    text = str(err.value)
    lines = (root / "adaptlab.yaml").read_text().splitlines()
    at = max(i + 1 for i, line in enumerate(lines) if line.strip().startswith(f"{key}:"))
    assert key in text and says in text, text
    found = re.search(r"adaptlab\.yaml:(\d+)", text)
    assert found is not None, text
    # The line of the key, of its value, or of the tune: or params: holding it.
    assert at - 3 <= int(found.group(1)) <= at + 1, text


def test_retrieval_takes_per_call_overrides(tmp_path: Path, server: FakeLLMServer) -> None:
    from adaptlab.rag.project import ProjectRetrieval

    root = write_project(tmp_path / "p", server.base_url, [candidate("rag")])
    retrieve = ProjectRetrieval(Project.load(root))
    query = ["How long until a card refund is back?"]

    def rows(hits: Any) -> list[int]:
        return [h.row for h in hits[0][0]]

    assert rows(retrieve(query, 3)) == rows(retrieve(query, 3, weight=0.5))
    dense, sparse = rows(retrieve(query, 6, weight=1.0)), rows(retrieve(query, 6, weight=0.0))
    assert dense != sparse
    with pytest.raises(ConfigError, match="no reranker"):
        retrieve(query, 3, rerank=True)

    class Reverse:  # a reranker that turns the order round
        def predict(self, pairs: Any, **kw: Any) -> list[float]:
            return [float(i) for i in range(len(pairs))]

    plain = rows(retrieve(query, 3))
    retrieve.retriever.reranker = Reverse()
    assert rows(retrieve(query, 3)) != plain  # reranked
    assert rows(retrieve(query, 3, rerank=False)) == plain
    assert isinstance(retrieve.retriever.reranker, Reverse)  # restored after the call


def test_the_chosen_setting_is_exported_and_checked(tmp_path: Path) -> None:
    from adaptlab.strategies.base import StrategyContext
    from adaptlab.strategies.prompting import LLMZeroShot
    from adaptlab.strategies.state import StateError

    def fresh() -> LLMZeroShot:
        ctx = StrategyContext(backend=None, labels={}, seed=0, workdir=tmp_path, task="generation")
        return LLMZeroShot(ZeroShotPromptOptions(context_k=1), ctx)

    tuned = fresh()
    tuned.retrieval_setting = {"context_k": 3, "hybrid_weight": 0.8}
    state = tuned.save_state(tmp_path)
    served = fresh()
    served.load_state(tmp_path, json.loads(json.dumps(state)))
    assert served.retrieval_setting == {"context_k": 3, "hybrid_weight": 0.8}
    assert "retrieval" not in fresh().save_state(tmp_path)  # untuned: the state as before
    for bad in ({"context_k": 0}, {"hybrid_weight": 1.5}, {"reranker": "yes"}, {"k": 3}):
        with pytest.raises(StateError):
            fresh().load_state(tmp_path, {**state, "retrieval": bad})
