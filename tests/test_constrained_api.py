"""Constrained answers through APIs: OpenAI strict JSON-schema structured outputs,
Anthropic a forced tool, the fallback to free text when a model refuses them, and an
extraction project's schema passed through. Against the fake servers (real HTTP)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adaptlab.backends import load_llm
from adaptlab.backends.runner import LLMRunner
from adaptlab.config import LLMConfig
from adaptlab.data import Example
from adaptlab.llm.types import choice_schema
from adaptlab.strategies import StrategyContext
from adaptlab.strategies.prompting import LLMZeroShot
from adaptlab.strategies.prompting.config import ZeroShotPromptOptions
from tests.fakes.fake_llm import ChatCall, FakeLLMServer, request_schema

LABELS = ["billing", "shipping", "refund"]
TEXTS = ["charged twice", "where is my parcel", "money back please"]
SCHEMA = {
    "type": "object",
    "properties": {"order_id": {"type": "string"}, "amount": {"type": "number"}},
    "required": ["order_id", "amount"],
    "additionalProperties": False,
}


def rambling(call: ChatCall) -> str:
    """A model that talks around the label (free text would be hard to parse)."""
    word = ""
    for key, label in (("charged", "billing"), ("parcel", "shipping"), ("money", "refund")):
        if key in call.user_text:
            word = label
    return f"Well, I would say this is {word}, most likely."


def _strategy(
    server: FakeLLMServer, backend: str, tmp_path: Path, task: str = "classification", **opts: Any
) -> LLMZeroShot:
    url = server.base_url if backend == "openai" else server.root_url
    llm = load_llm(LLMConfig(backend=backend, name="some-model", base_url=url, max_retries=0))
    ctx = StrategyContext(
        backend=None,
        labels={lab: f"about {lab}" for lab in LABELS} if task == "classification" else {},
        seed=0,
        workdir=tmp_path,
        root=tmp_path,
        llm=LLMRunner(llm),
        task=task,
        task_options={"schema": SCHEMA} if task == "extraction" else {},
    )
    strategy = LLMZeroShot(ZeroShotPromptOptions(**opts), ctx)
    strategy.fit([Example("x", LABELS[0], "t.jsonl", 1)] if task == "classification" else [], [])
    return strategy


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_the_request_carries_the_label_enum_and_answers_are_labels(
    backend: str, tmp_path: Path
) -> None:
    with FakeLLMServer(rambling) as server:
        preds = _strategy(server, backend, tmp_path).predict(TEXTS)
    assert [p.label for p in preds] == LABELS
    assert all(p.status == "constrained" for p in preds)
    body = server.calls[0].body
    if backend == "openai":
        assert body["response_format"] == {
            "type": "json_schema",
            "json_schema": {"name": "answer", "strict": True, "schema": choice_schema(LABELS)},
        }
    else:
        (tool,) = body["tools"]
        assert tool["input_schema"] == choice_schema(LABELS)
        assert body["tool_choice"] == {"type": "tool", "name": tool["name"]}
    assert request_schema(server.calls[0]) == choice_schema(LABELS)


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_free_mode_sends_no_schema_and_parses_text(backend: str, tmp_path: Path) -> None:
    with FakeLLMServer(lambda call: "billing") as server:
        strategy = _strategy(server, backend, tmp_path, answer="free")
        preds = strategy.predict(TEXTS[:1])
    assert preds[0].label == "billing" and preds[0].status == "exact"
    assert "response_format" not in server.calls[0].body and "tools" not in server.calls[0].body
    assert strategy.info["answer"] == "free"


def test_a_model_without_structured_outputs_falls_back_to_free_text_with_a_note(
    tmp_path: Path,
) -> None:
    with FakeLLMServer(lambda call: "shipping", structured_outputs=False) as server:
        strategy = _strategy(server, "openai", tmp_path)
        preds = strategy.predict(TEXTS)
    # Every input answered and parsed from free text; the refusal cost one extra request
    # per input in flight at most, and later requests went without response_format.
    assert [p.label for p in preds] == ["shipping"] * 3
    assert all(p.status == "exact" for p in preds)
    refused = [c for c in server.calls if "response_format" in c.body]
    assert 1 <= len(refused) < len(server.calls) and len(server.calls) <= 2 * len(TEXTS)
    notes = " ".join(strategy.info["answer_notes"])  # type: ignore[arg-type]
    assert "refused structured outputs" in notes and "free text" in notes


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_an_extraction_candidate_gets_the_project_schema(backend: str, tmp_path: Path) -> None:
    answer = '{"order_id": "A-17", "amount": 12.5}'
    with FakeLLMServer(lambda call: answer) as server:
        strategy = _strategy(server, backend, tmp_path, task="extraction")
        (pred,) = strategy.predict(["order A-17 cost 12.50"])
    assert request_schema(server.calls[0]) == SCHEMA
    if backend == "openai":
        assert server.calls[0].body["response_format"]["json_schema"]["strict"] is True
    assert pred.status == "json" and '"order_id": "A-17"' in str(pred.label)


def test_answer_constrained_where_it_cannot_be_is_refused(tmp_path: Path) -> None:
    from adaptlab.core.errors import ConfigError

    with FakeLLMServer() as server, pytest.raises(ConfigError, match="no closed set"):
        _strategy(server, "openai", tmp_path, task="generation", answer="constrained").predict(
            ["hello"]
        )
    with pytest.raises(ValueError, match="exclude each other"):
        ZeroShotPromptOptions(answer="constrained", reasoning=True)
