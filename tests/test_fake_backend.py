"""The in-process ``fake`` backend, and the wheel without the wire-level test servers."""

from __future__ import annotations

import asyncio
import importlib.util
import json
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab import Project, summarize_project
from adaptlab.backends import BACKENDS, load_llm
from adaptlab.backends.availability import llm_unavailable
from adaptlab.backends.fake import FakeBackend, respond_with
from adaptlab.backends.runner import LLMRunError, LLMRunner
from adaptlab.config import LLMConfig
from adaptlab.core.errors import ConfigError
from adaptlab.llm.prices import SELF_HOSTED_BACKENDS, price_for, price_kind
from adaptlab.llm.tokens import estimate_tokens
from adaptlab.llm.types import ChatRequest, ChatResponse, InputError, Message, Usage
from tests.conftest import small_project

ROOT = Path(__file__).resolve().parents[1]


def ask(user: str, system: str = "Sort tickets.") -> ChatRequest:
    return ChatRequest((Message("system", system), Message("user", user)))


def fake(answers: Any = None, name: str = "scripted") -> FakeBackend:
    backend = load_llm(LLMConfig(backend="fake", name=name, answers=answers))
    assert isinstance(backend, FakeBackend)
    return backend


def answer(backend: FakeBackend, request: ChatRequest) -> ChatResponse:
    return asyncio.run(backend.execute(request))


# ---------------------------------------------------------------- the three scripts


def test_a_list_answers_in_order_and_cycles() -> None:
    backend = fake(["billing", "refund", "shipping"])
    got = [answer(backend, ask(f"ticket {i}")).text for i in range(7)]
    assert got == ["billing", "refund", "shipping"] * 2 + ["billing"]
    # The local (batched) path takes the same script, in the same order.
    batch = backend.generate_batch([ask("a"), ask("b")])
    assert [r.text for r in batch] == ["refund", "shipping"]


def test_a_mapping_answers_by_the_last_user_message_with_a_default() -> None:
    backend = fake({"Where is my parcel?": "shipping", "refund": "refund", "*": "general"})
    assert answer(backend, ask("Where is my parcel?")).text == "shipping"  # equal
    wrapped = ask("<input>\nI want a refund please\n</input>")
    assert answer(backend, wrapped).text == "refund"  # found inside the prompt
    assert answer(backend, ask("Hello there")).text == "general"  # the '*' default
    # The last user message counts, not an earlier one nor the system prompt.
    history = ChatRequest(
        (
            Message("system", "refund"),
            Message("user", "Where is my parcel?"),
            Message("assistant", "shipping"),
            Message("user", "Thanks!"),
        )
    )
    assert answer(backend, history).text == "general"


def test_a_mapping_without_default_stops_on_an_unknown_input() -> None:
    backend = fake({"parcel": "shipping"})
    runner = LLMRunner(backend)
    with pytest.raises(LLMRunError, match="no answer for the input 'Hello'") as err:
        runner.run_sync([ask("Hello")])
    assert err.value.kind == "script" and err.value.attempts == 1  # not retried
    assert "'*' default" in (err.value.fix or "")


def test_a_callable_answers_from_python() -> None:
    config = LLMConfig(backend="fake", name="echo")
    backend = FakeBackend(config, respond=lambda r: r.messages[-1].content.upper())
    assert answer(backend, ask("hello")).text == "HELLO"

    # For a whole run, registered by model name: load_llm builds it like the engine does.
    with respond_with("echo", lambda r: f"{len(r.messages)} messages"):
        assert answer(fake(name="echo"), ask("x")).text == "2 messages"
        with pytest.raises(ValueError, match="registered already"), respond_with("echo", str):
            pass
    with pytest.raises(ConfigError, match="no script") as err:
        fake(name="echo")  # the block is over: no script any more
    assert "answers:" in (err.value.fix or "")


def test_a_callable_can_script_a_failure_of_one_input() -> None:
    def respond(request: ChatRequest) -> str:
        if "bad" in request.messages[-1].content:
            raise InputError("content filter", status="filtered")
        return "billing"

    runner = LLMRunner(FakeBackend(LLMConfig(backend="fake", name="f"), respond=respond))
    ok, refused = runner.run_sync([ask("good"), ask("bad")])
    assert ok.text == "billing" and refused.finish_reason == "error:filtered"


# ---------------------------------------------------------------- usage, identity, cost


def test_usage_is_deterministic_and_the_finish_is_stop() -> None:
    request = ask("My card was charged twice for one order.")
    first = answer(fake(["You were charged twice."]), request)
    again = answer(fake(["You were charged twice."]), request)
    expected = Usage(
        estimate_tokens(request.prompt_text()), estimate_tokens("You were charged twice."), 0
    )
    assert first.usage == again.usage == expected
    assert first.finish_reason == again.finish_reason == "stop"
    assert fake(["x"]).count_tokens(request) == (expected.input_tokens, True)


def test_the_script_is_part_of_the_cache_identity() -> None:
    a, b = fake(["billing"]), fake(["refund"])
    assert a.identity()["backend"] == "fake"
    assert a.identity() != b.identity()
    assert a.identity() == fake(["billing"]).identity()
    assert ask("x").cache_key(a.identity()) != ask("x").cache_key(b.identity())


def test_fake_needs_no_key_and_has_no_price() -> None:
    assert "fake" in BACKENDS.names() and BACKENDS.get("fake") is FakeBackend
    assert {"fake", "hf"} <= SELF_HOSTED_BACKENDS and "openai" not in SELF_HOSTED_BACKENDS
    # Named like a listed model, it still has no price: it runs here.
    config = LLMConfig(backend="fake", name="gpt-4o-mini", answers=["billing"])
    assert price_for(config) is None and price_kind(config) == "self-hosted"
    assert llm_unavailable(config) is None  # no key wanted, no model folder


# ---------------------------------------------------------------- adaptlab.yaml


def _write_llm(project: Path, llm: dict[str, Any]) -> None:
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["llms"] = {"chat": llm}
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_adaptlab_run_with_a_fake_model_end_to_end(
    tmp_path: Path, example_project: Path, cli: Any
) -> None:
    project = small_project(
        tmp_path / "p",
        example_project,
        per_label=3,
        candidates=[{"name": "scripted", "strategy": "llm-zero-shot", "llm": "chat"}],
    )
    rows = [json.loads(line) for line in (project / "data/tickets.jsonl").open()]
    # Every other ticket is answered right; the rest get the default.
    script: dict[str, str] = {r["text"]: r["label"] for r in rows[::2]}
    script["*"] = "general"
    _write_llm(project, {"backend": "fake", "name": "scripted-model", "answers": script})

    out = cli("run", "-p", project).ok()  # no key, no network, no price
    assert "scripted" in out and "skipped" not in out

    with sqlite3.connect(project / ".adaptlab/runs.db") as conn:
        stored = conn.execute(
            "SELECT input, predicted, status FROM predictions WHERE split = 'test'"
        ).fetchall()
    assert stored
    for text, predicted, status in stored:
        assert status == "exact" and predicted == script.get(text, "general")

    summary = summarize_project(Project.load(project))
    cand = summary.candidate("scripted")
    assert cand.llm == "fake:scripted-model"
    assert not cand.hosted and cand.price_kind == "self-hosted"
    assert cand.api_cost_per_1k_usd is None and cand.cost.kind == "self-hosted"
    assert cand.usage_exact and cand.input_tokens_per_request

    # A new script is a new result: the candidate is computed again, not reused.
    _write_llm(project, {"backend": "fake", "name": "scripted-model", "answers": ["refund"]})
    cli("run", "-p", project).ok()
    with sqlite3.connect(project / ".adaptlab/runs.db") as conn:
        key = conn.execute(
            "SELECT result_key FROM run_candidates WHERE name = 'scripted' ORDER BY rowid DESC"
        ).fetchone()[0]
        latest = conn.execute(
            "SELECT DISTINCT predicted FROM predictions WHERE result_key = ?", (key,)
        ).fetchall()
    assert latest == [("refund",)]


@pytest.mark.parametrize(
    ("llm", "needle"),
    [
        (
            {"backend": "openai", "name": "gpt-4o-mini", "answers": ["billing"]},
            "'answers' only applies to backend 'fake', not 'openai'",
        ),
        ({"backend": "fake", "name": "f", "answers": "billing"}, "must be a list of answers"),
        ({"backend": "fake", "name": "f", "answers": ["billing", 3]}, "must be text: quote 3"),
        ({"backend": "fake", "name": "f", "answers": {"a": True}}, "must be text: quote True"),
        ({"backend": "fake", "name": "f", "answers": []}, "'answers' is empty"),
    ],
)
def test_a_bad_script_is_a_config_error(
    tmp_path: Path, example_project: Path, llm: dict[str, Any], needle: str
) -> None:
    project = tmp_path / "p"
    shutil.copytree(example_project, project)
    _write_llm(project, llm)
    with pytest.raises(ConfigError) as err:
        Project.load(project)
    assert needle in str(err.value) and "llms.chat.answers" in str(err.value)
    assert str(project / "adaptlab.yaml") in str(err.value)


def test_a_fake_model_without_a_script_stops_the_run_with_a_fix(
    tmp_path: Path, example_project: Path, cli: Any
) -> None:
    project = small_project(
        tmp_path / "p",
        example_project,
        per_label=2,
        candidates=[{"name": "scripted", "strategy": "llm-zero-shot", "llm": "chat"}],
    )
    _write_llm(project, {"backend": "fake", "name": "silent"})
    cli("run", "-p", project).error("fake model 'silent' has no script", "answers:")


# ---------------------------------------------------------------- the wheel


def test_the_package_holds_no_test_servers() -> None:
    assert importlib.util.find_spec("adaptlab.testing") is None
    for path in (ROOT / "src").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "tests.fakes" not in text and "adaptlab.testing" not in text, path


def test_the_wheel_holds_no_fake_servers(tmp_path: Path) -> None:
    """Built from a copy of the sources, so the working tree gets no build/ folder
    (10-14 s on two busy cores)."""
    source = tmp_path / "src-copy"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    out = tmp_path / "wheels"
    pip = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation"]
    subprocess.run(
        [*pip, "-q", "--no-index", "-w", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("adaptlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "adaptlab/backends/fake.py" in names  # the in-process backend ships
    assert not [n for n in names if Path(n).name in ("fake_llm.py", "fake_finetune.py")]
    assert not [n for n in names if n.startswith(("adaptlab/testing/", "tests/"))]
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert (
        "fake = adaptlab.backends.fake:FakeBackend"
        in zipfile.ZipFile(wheel).read(entry_points).decode()
    )
