"""Hostile answers from generative-model providers (issue 7, kinds 1-4).

Each case points a tiny project (24 tickets, one ``llm-zero-shot`` candidate, no
encoder) at the fake OpenAI/Anthropic server and runs the real CLI:

1. an error about one input (a content filter, a prompt too long, an invalid prompt)
   is that input's stored prediction with its own status, and the run goes on; errors
   about the key, the model or a parameter still stop the candidate with a fix; a
   stream that ends in an error event is retried; inputs too long for the context
   window are found by ``data check`` and ``run --dry-run`` before anything is paid;
2. models differ: reasoning models get no temperature and room to reason, cut-off
   answers are counted with the fix, ``<think>`` blocks are removed before parsing;
3. a usage block is untrusted: odd figures are repaired and marked, and odd stored
   rows never crash ``report``;
4. errors that retrying cannot fix (no quota left) stop at once, and a long
   Retry-After is announced or stops the run with the wait.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from adaptlab.engine.project import Project
from tests.fakes.fake_llm import ChatCall, FakeLLMServer, fail_first, with_reasoning
from tests.hostile.conftest import GOOD, LABELS, base_config, jsonl, write_project

_INPUT = re.compile(r"<input>\n(.*?)\n</input>", re.S)
GOLD = {r["text"]: r["label"] for r in GOOD}
LINE = {r["text"]: i + 1 for i, r in enumerate(GOOD)}  # example id is d.jsonl:<line>


def ticket(call: ChatCall) -> str:
    found = _INPUT.findall(call.user_text)
    return found[-1] if found else ""


def oracle(call: ChatCall) -> str:
    """The gold label of the ticket in the prompt."""
    return GOLD.get(ticket(call), LABELS[0])


class FirstInput:
    """Every request for the first ticket asked about gets ``fault``; the rest answer."""

    def __init__(self, fault: str) -> None:
        self.fault = fault
        self.text: str | None = None

    def __call__(self, call: ChatCall) -> str | None:
        if self.text is None:
            self.text = ticket(call)
        return self.fault if ticket(call) == self.text else None

    @property
    def example_id(self) -> str:
        assert self.text is not None
        return f"d.jsonl:{LINE[self.text]}"


def project(
    root: Path,
    server: FakeLLMServer,
    *,
    backend: str = "openai",
    model: str | None = None,
    params: dict[str, Any] | None = None,
    strategy: str = "llm-zero-shot",
    data: bytes | None = None,
    **llm: Any,
) -> Path:
    name = model or ("gpt-4o-mini" if backend == "openai" else "claude-haiku-4-5")
    url = server.base_url if backend == "openai" else server.root_url
    cfg = base_config(
        llms={"chat": {"backend": backend, "name": name, "base_url": url, "max_retries": 2, **llm}},
        candidates=[{"name": "zero", "strategy": strategy, "llm": "chat", "params": params or {}}],
    )
    return write_project(root, data, config=cfg)


def predictions(root: Path, split: str = "test") -> list[dict[str, Any]]:
    """Stored answers of ``split`` ('test', 'val', or '%' for both)."""
    with sqlite3.connect(root / ".adaptlab/runs.db") as conn:
        conn.row_factory = sqlite3.Row
        return [
            dict(r)
            for r in conn.execute(
                "SELECT * FROM predictions WHERE split LIKE ? ORDER BY split, idx", (split,)
            )
        ]


@pytest.fixture(autouse=True)
def _no_keys(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[None]:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("ADAPTLAB_KEYS_FILE", str(tmp_path / "no-keys.yaml"))
    yield


# ---------------------------------------------------------------- 1. one bad input

ONE_INPUT = [
    # (backend, stream, fault, status, words the stored raw answer holds)
    ("openai", False, "400@content_filter@prompt", "filtered", "content management policy"),
    ("openai", True, "400@content_filter@prompt", "filtered", "content management policy"),
    ("openai", False, "400@context_length_exceeded@messages", "too_long", "maximum context"),
    ("openai", True, "400@context_length_exceeded", "too_long", "maximum context"),
    ("openai", False, "400@invalid_prompt", "filtered", "usage policy"),
    ("openai", False, "400@content_policy_violation", "filtered", "safety system"),
    ("openai", False, "400@string_above_max_length@messages[1].content", "too_long", "messages"),
    ("openai", False, "400@invalid_value@messages[1].content", "error", "messages[1].content"),
    ("openai", False, "413", "too_long", "HTTP 413"),
    ("openai", True, "stream-error@content_filter", "filtered", "content management policy"),
    ("anthropic", True, "stream-error@prompt_too_long", "too_long", "prompt is too long"),
    ("anthropic", False, "400@prompt_too_long", "too_long", "prompt is too long"),
    ("anthropic", False, "413", "too_long", "HTTP 413"),
    ("anthropic", True, "400@prompt_too_long", "too_long", "prompt is too long"),
    ("anthropic", False, "400@invalid_request_error@messages.0.content", "error", "messages.0"),
]


@pytest.mark.parametrize(("backend", "stream", "fault", "status", "says"), ONE_INPUT)
def test_an_error_about_one_input_is_that_inputs_answer(
    cli: Any,
    tmp_path: Path,
    backend: str,
    stream: bool,
    fault: str,
    status: str,
    says: str,
) -> None:
    picker = FirstInput(fault)
    with FakeLLMServer(oracle, faults=picker) as server:
        root = project(tmp_path / "p", server, backend=backend, stream=stream)
        text = cli("run", "-p", root).ok()
        rows = predictions(root)
        refused = [r for r in rows if r["status"] == status]
        assert [r["example_id"] for r in refused] == [picker.example_id]
        (row,) = refused
        assert row["predicted"] is None and row["score"] == 0.0
        assert says.lower() in row["raw"].lower()
        # Every other input was answered, and right.
        assert all(r["predicted"] == r["gold"] for r in rows if r is not row)
        # Never retried: one request for the refused input.
        assert sum(ticket(c) == picker.text for c in server.calls) == 1
        # The terminal counts it, names the example and what to do.
        assert f"{status}: {picker.example_id}" in text and "the run went on" in text
        sent = len(server.calls)
        # A rerun pays for nothing again: the refusal is cached like an answer.
        cli("run", "-p", root, "--force").ok()
        assert len(server.calls) == sent
        report = cli("report", "-p", root).ok()
        assert "failed" in report
    html = (root / "reports/report.html").read_text()
    assert f"{status}: {picker.example_id}" in html and f"{status} 1" in html


@pytest.mark.parametrize(
    ("backend", "stream"),
    [("openai", False), ("openai", True), ("anthropic", False), ("anthropic", True)],
)
def test_an_answer_blocked_by_the_provider_is_filtered(
    cli: Any, tmp_path: Path, backend: str, stream: bool
) -> None:
    picker = FirstInput("refusal")  # a 200 with finish_reason content_filter / refusal
    with FakeLLMServer(oracle, faults=picker) as server:
        root = project(tmp_path / "p", server, backend=backend, stream=stream)
        text = cli("run", "-p", root).ok()
    (row,) = [r for r in predictions(root) if r["status"] == "filtered"]
    assert row["example_id"] == picker.example_id and row["finish_reason"] == "content_filter"
    assert f"filtered: {picker.example_id}" in text


WHOLE_MODEL = [
    # (backend, fault, words the error must hold)
    ("openai", "401", ["401", "check the key"]),
    ("openai", "404", ["404", "'name' under llms"]),
    ("openai", "400", ["400", "prompt render"]),
    ("openai", "422", ["422", "prompt render"]),
    ("openai", "403", ["403", "permissions"]),
    ("openai", "400@unsupported_parameter@temperature", ["'temperature'", "temperature: null"]),
    ("openai", "400@unsupported_value@temperature", ["'temperature'", "temperature: null"]),
    ("openai", "400@unsupported_parameter@max_tokens", ["'max_tokens'", "max_completion_tokens"]),
    ("openai", "400@unsupported_parameter@response_format", ["'response_format'", "output: text"]),
    ("openai", "400@invalid_parameter@seed", ["'seed'"]),
    ("anthropic", "401", ["401", "ANTHROPIC_API_KEY"]),
    ("anthropic", "404", ["was not found", "'name' under llms"]),
    ("anthropic", "400", ["HTTP 400", "prompt render"]),
    ("anthropic", "403", ["403", "permissions"]),
    ("anthropic", "400@invalid_request_error@temperature", ["'temperature'", "temperature: null"]),
]


@pytest.mark.parametrize(("backend", "fault", "says"), WHOLE_MODEL)
def test_an_error_about_the_model_or_key_stops_with_its_fix(
    cli: Any, tmp_path: Path, backend: str, fault: str, says: list[str]
) -> None:
    with FakeLLMServer(oracle, faults=lambda call: fault) as server:
        root = project(tmp_path / "p", server, backend=backend)
        cli("run", "-p", root).error(*says)
    # Not retried, and not taken for a problem of one input (no run went on).
    assert len(set(c.prompt_key for c in server.calls)) == len(server.calls)
    assert len(server.calls) <= 16  # the requests already in flight, nothing more


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_stream_ending_in_an_error_event_is_retried(
    cli: Any, tmp_path: Path, backend: str
) -> None:
    with FakeLLMServer(oracle, faults=fail_first(1, "stream-error")) as server:
        root = project(tmp_path / "p", server, backend=backend, stream=True)
        cli("run", "-p", root).ok()
    rows = predictions(root)
    assert all(r["predicted"] == r["gold"] for r in rows)
    assert set(server.counts().values()) == {2}  # each prompt: the error, then the answer


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
def test_a_stream_that_always_errors_gives_up_with_a_message(
    cli: Any, tmp_path: Path, backend: str
) -> None:
    with FakeLLMServer(oracle, faults=lambda call: "stream-error") as server:
        root = project(tmp_path / "p", server, backend=backend, stream=True, max_retries=1)
        cli("run", "-p", root).error("gave up after attempt 2", "rerun")


def test_every_input_refused_is_the_setup_not_the_inputs(cli: Any, tmp_path: Path) -> None:
    rows = [
        {"text": f"case {i} about {label} and more words {i}", "label": label}
        for i, label in enumerate(LABELS * 8)
    ]
    with FakeLLMServer(oracle, faults=lambda call: "400@context_length_exceeded") as server:
        root = project(tmp_path / "p", server, data=jsonl(rows), max_concurrency=1)
        cli("run", "-p", root).error("refused each of the first 8", "context window")
    assert len(server.calls) == 8  # stopped there, not after every input


LONG = "word " * 40_000  # ~50,000 tokens: more than gpt-4's 8,192, fewer than gpt-4o's 128,000


def long_data(n_long: int = 6) -> bytes:
    rows = [dict(r) for r in GOOD]
    for i in range(n_long):
        rows[i]["text"] = f"ticket {i} " + LONG
    return jsonl(rows)


@pytest.mark.parametrize(
    ("backend", "model"), [("openai", "gpt-4"), ("openai", "gpt-3.5-turbo"), ("anthropic", "x")]
)
def test_data_check_finds_inputs_too_long_for_the_context_window(
    cli: Any, tmp_path: Path, backend: str, model: str
) -> None:
    data = long_data()
    if backend == "anthropic":  # 200,000 tokens: six inputs longer than that
        rows = [dict(r) for r in GOOD]
        for i in range(6):
            rows[i]["text"] = f"ticket {i} " + "word " * 180_000  # ~225,000 tokens
        data, model = jsonl(rows), "claude-haiku-4-5"
    with FakeLLMServer(oracle) as server:
        root = project(tmp_path / "p", server, backend=backend, model=model, data=data)
        text = cli("data", "check", "-p", root).ok()
    assert "6 input(s) will not fit" in text and "d.jsonl:1 (" in text
    assert "fix: shorten those inputs" in text
    assert server.calls == []  # nothing sent


def test_dry_run_finds_inputs_too_long_before_anything_is_paid(cli: Any, tmp_path: Path) -> None:
    with FakeLLMServer(oracle) as server:
        root = project(tmp_path / "p", server, model="gpt-4", data=long_data(24))
        text = cli("run", "-p", root, "--dry-run").ok()
    assert "too long: zero:" in text and "will not fit the 8,192-token context" in text
    assert "stored as too_long" in text and server.calls == []


def test_data_check_reads_a_local_models_context_window(cli: Any, tmp_path: Path) -> None:
    model = tmp_path / "tiny-lm"
    model.mkdir()
    (model / "config.json").write_text('{"model_type": "llama", "max_position_embeddings": 256}')
    rows = [dict(r) for r in GOOD]
    rows[0]["text"] = "ticket 0 " + "word " * 400
    root = write_project(
        tmp_path / "p",
        jsonl(rows),
        config=base_config(
            llms={"local": {"backend": "hf", "name": str(model)}},
            candidates=[{"name": "zero", "strategy": "llm-zero-shot", "llm": "local"}],
        ),
    )
    text = cli("data", "check", "-p", root).ok()
    assert "1 input(s) will not fit the 256-token context of hf:" in text
    assert "d.jsonl:1 (~" in text


def test_inputs_that_fit_raise_no_warning(cli: Any, tmp_path: Path) -> None:
    with FakeLLMServer(oracle) as server:
        root = project(tmp_path / "p", server, model="gpt-4")
        text = cli("data", "check", "-p", root).ok()
    assert "will not fit" not in text


# ---------------------------------------------------------------- 2. models differ


@pytest.mark.parametrize("model", ["gpt-5", "gpt-5-mini", "o3-mini", "o4-mini", "o1", "o9-new"])
def test_reasoning_models_get_no_temperature_and_room_to_reason(
    cli: Any, tmp_path: Path, model: str
) -> None:
    # It reasons before answering: with only the answer's 16 tokens every answer would
    # be an unterminated <think>, cut off, and unparsed.
    thoughts = " ".join(["weighing billing against shipping and refund"] * 40)
    with FakeLLMServer(with_reasoning(oracle, thoughts)) as server:
        root = project(tmp_path / "p", server, model=model, prices={"input": 1, "output": 1})
        text = cli("run", "-p", root).ok()
    assert "were cut off" not in text
    for call in server.calls:
        assert "temperature" not in call.body and "top_p" not in call.body
        assert "max_tokens" not in call.body
        assert call.body["max_completion_tokens"] >= 16 + 4096
    assert all(r["predicted"] == r["gold"] for r in predictions(root))


def test_dry_run_counts_a_reasoning_models_hidden_reasoning(cli: Any, tmp_path: Path) -> None:
    with FakeLLMServer(oracle) as server:
        root = project(tmp_path / "p", server, model="gpt-5-mini")
        text = cli("run", "-p", root, "--dry-run").ok()
    root_split = Project.load(root).split()
    answered = len(root_split.test) + len(root_split.val)  # both splits are answered
    assert f"≤{answered * (16 + 4096):,}" in text and server.calls == []


def test_a_chat_model_still_gets_temperature_and_max_tokens(cli: Any, tmp_path: Path) -> None:
    with FakeLLMServer(oracle) as server:
        root = project(tmp_path / "p", server, model="gpt-4o-mini")
        cli("run", "-p", root).ok()
    # 16 tokens for a free answer; a constrained one (the default) has room for its JSON.
    longest = max(len(label) for label in Project.load(root).config.labels)
    assert all(c.body["temperature"] == 0.0 for c in server.calls)
    assert all(c.body["max_tokens"] == 16 + longest for c in server.calls)


def test_temperature_null_sends_none(cli: Any, tmp_path: Path) -> None:
    with FakeLLMServer(oracle) as server:
        root = project(
            tmp_path / "p", server, model="my-azure-deployment", params={"temperature": None}
        )
        cli("run", "-p", root).ok()
    assert server.calls and all("temperature" not in c.body for c in server.calls)


@pytest.mark.parametrize("stream", [False, True])
def test_cut_off_answers_are_counted_and_explained(cli: Any, tmp_path: Path, stream: bool) -> None:
    def rambles(call: ChatCall) -> str:
        return "Let me think about this ticket carefully before I answer. " * 4 + oracle(call)

    with FakeLLMServer(rambles) as server:
        # Free text: a constrained answer (the default) cannot ramble past its label.
        root = project(tmp_path / "p", server, stream=stream, params={"answer": "free"})
        text = cli("run", "-p", root).ok()
    rows = predictions(root)
    assert rows and all(r["finish_reason"] == "length" for r in rows)
    assert f"{len(rows)} of {len(rows)} answers were cut off" in text
    assert "raise max_tokens" in text
    cli("report", "-p", root).ok()
    html = (root / "reports/report.html").read_text()
    assert "cut off at the output limit" in html and "raise max_tokens" in html


@pytest.mark.parametrize(
    ("closed", "stream", "strategy"),
    [(True, False, "llm-zero-shot"), (True, True, "llm-zero-shot"), (True, False, "llm-cot")],
)
def test_think_blocks_are_removed_before_parsing_and_kept_raw(
    cli: Any, tmp_path: Path, closed: bool, stream: bool, strategy: str
) -> None:
    def answer(call: ChatCall) -> str:
        label = oracle(call)
        return f"Answer: {label}" if strategy == "llm-cot" else label

    # The reasoning names other labels: a fuzzy reading of the whole reply would fail.
    thoughts = "Could be billing, or shipping, or refund; the words decide."
    with FakeLLMServer(with_reasoning(answer, thoughts, closed=closed)) as server:
        # Free text: a server decoding within a schema keeps reasoning out of the answer.
        params = {"max_tokens": 64, "answer": "free"}
        root = project(tmp_path / "p", server, stream=stream, strategy=strategy, params=params)
        cli("run", "-p", root).ok()
    rows = predictions(root)
    assert all(r["predicted"] == r["gold"] for r in rows)
    assert all(r["raw"].startswith("<think>Could be billing") for r in rows)


def test_an_unterminated_think_block_is_unparsed_and_cut_off(cli: Any, tmp_path: Path) -> None:
    thoughts = " ".join(["billing or shipping, hmm"] * 10)
    with FakeLLMServer(with_reasoning(oracle, thoughts, closed=False)) as server:
        root = project(tmp_path / "p", server, params={"answer": "free"})
        text = cli("run", "-p", root).ok()
    rows = predictions(root)
    assert all(r["status"] == "unparsed" and r["predicted"] is None for r in rows)
    assert all(r["raw"].startswith("<think>") and r["finish_reason"] == "length" for r in rows)
    assert "raise max_tokens" in text


# ---------------------------------------------------------------- 3. usage is untrusted

ODD_USAGE: list[tuple[str, str, Any]] = [
    # (backend, what, usage block sent)
    (
        "openai",
        "cached > prompt",
        {
            "prompt_tokens": 12,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": 1800},
        },
    ),
    ("openai", "negative", {"prompt_tokens": -5, "completion_tokens": -1, "total_tokens": -6}),
    ("openai", "missing", None),
    ("openai", "empty", {}),
    ("openai", "not numbers", {"prompt_tokens": "many", "completion_tokens": 1.5}),
    ("openai", "numbers as text", {"prompt_tokens": "12", "completion_tokens": "1"}),
    (
        "openai",
        "negative cached",
        {
            "prompt_tokens": 12,
            "completion_tokens": 1,
            "prompt_tokens_details": {"cached_tokens": -3},
        },
    ),
    ("anthropic", "negative", {"input_tokens": -5, "output_tokens": 1}),
    (
        "anthropic",
        "odd cache",
        {"input_tokens": 10, "output_tokens": 1, "cache_read_input_tokens": "lots"},
    ),
    ("anthropic", "missing counts", {}),
    # counts that are counts, but not of this request (kept as billed, marked)
    ("openai", "zero prompt", {"prompt_tokens": 0, "completion_tokens": 1}),
    ("openai", "zero answer", {"prompt_tokens": 60, "completion_tokens": 0}),
    ("openai", "one token prompt", {"prompt_tokens": 1, "completion_tokens": 1}),
    ("openai", "millions of prompt tokens", {"prompt_tokens": 5_000_000, "completion_tokens": 1}),
    ("openai", "beyond any context", {"prompt_tokens": 10**12, "completion_tokens": 10**15}),
    ("anthropic", "zero input", {"input_tokens": 0, "output_tokens": 1}),
    ("anthropic", "beyond any context", {"input_tokens": 30, "output_tokens": 10**13}),
]
# Streams carry the usage block in their last chunk (OpenAI) or message_start (Anthropic).
STREAMED = [case for case in ODD_USAGE if case[1] in ("cached > prompt", "negative")]


@pytest.mark.parametrize(
    ("backend", "what", "usage", "stream"),
    [(*case, False) for case in ODD_USAGE] + [(*case, True) for case in STREAMED],
)
def test_an_odd_usage_block_is_repaired_and_marked(
    cli: Any, tmp_path: Path, backend: str, what: str, usage: Any, stream: bool
) -> None:
    with FakeLLMServer(oracle, usage=usage) as server:
        root = project(tmp_path / "p", server, backend=backend, stream=stream)
        text = cli("run", "-p", root).ok()
        assert len(server.calls) == len(predictions(root, "%"))  # answers kept, none retried
    rows = predictions(root)
    assert all(r["predicted"] == r["gold"] for r in rows)
    for r in rows:
        assert r["input_tokens"] >= r["cached_tokens"] >= 0 and r["output_tokens"] >= 0
        assert r["input_tokens"] <= 10**7 and r["output_tokens"] <= 10**7
    if what != "numbers as text":
        assert all(r["usage_exact"] == 0 for r in rows)
        assert "~ token counts (and the costs from them) estimated" in text
        # and the cost that rests on them is marked where it is shown
        assert re.search(r"\d\.\d+~", text), text  # USD per 1k requests
        exported = json.loads(cli("export", "results", "-p", root, "--format", "json").ok())
        assert next(c for c in exported["candidates"] if c["name"] == "zero")["usage_estimated"]
    cli("report", "-p", root).ok()
    html = (root / "reports/report.html").read_text()
    if what != "numbers as text":
        assert "~ marks token counts, and the costs" in html
        assert re.search(r"\d\.\d+ ~</td>", html)


ODD_ROWS = [
    ("cached > input", "input_tokens = 12, cached_tokens = 1800"),
    ("negative tokens", "input_tokens = -5, output_tokens = -1, cached_tokens = -2"),
    ("text in token columns", "input_tokens = 'many', output_tokens = 'x', cached_tokens = '?'"),
    ("fractions", "input_tokens = 12.5, output_tokens = 1e308, cached_tokens = 0.5"),
    ("odd latency", "latency_ms = 'slow'"),
    ("negative latency", "latency_ms = -1"),
    ("unknown status", "status = 'weird', finish_reason = 'who knows'"),
    ("exactness not a flag", "usage_exact = 'perhaps'"),
    ("blob raw", "raw = x'00ff', status = NULL"),
]


@pytest.mark.parametrize(("what", "update"), ODD_ROWS)
def test_odd_rows_in_the_store_never_crash_a_report(
    cli: Any, tmp_path: Path, what: str, update: str
) -> None:
    with FakeLLMServer(oracle) as server:
        root = project(tmp_path / "p", server, prices={"input": 1, "output": 2})
        cli("run", "-p", root).ok()
    with sqlite3.connect(root / ".adaptlab/runs.db") as conn:
        conn.execute(f"UPDATE predictions SET {update}")  # every row of the candidate
    text = cli("report", "-p", root).ok()
    assert "zero" in text
    assert (root / "reports/report.html").stat().st_size > 0


# ---------------------------------------------------------------- 4. retrying cannot help

NO_QUOTA = [
    ("openai", "429@insufficient_quota"),
    ("openai", "stream-error@insufficient_quota"),
    ("anthropic", "400@credit_balance"),
    ("anthropic", "402@billing_error"),
]


@pytest.mark.parametrize(("backend", "fault"), NO_QUOTA)
def test_no_quota_left_stops_at_once_and_says_so(
    cli: Any, tmp_path: Path, backend: str, fault: str
) -> None:
    with FakeLLMServer(oracle, faults=lambda call: fault) as server:
        stream = fault.startswith("stream")
        root = project(tmp_path / "p", server, backend=backend, max_retries=6, stream=stream)
        text = cli("run", "-p", root).error("the account has no quota left", "billing")
    assert "max_concurrency" not in text  # not advice for a rate limit
    assert set(server.counts().values()) == {1}  # never retried


def test_a_retry_after_beyond_what_anyone_waits_stops_with_the_wait(
    cli: Any, tmp_path: Path
) -> None:
    with FakeLLMServer(oracle, faults=lambda call: "429@rate_limit_exceeded:3600") as server:
        root = project(tmp_path / "p", server)
        cli("run", "-p", root).error("asks to wait 60 min", "rerun after")
    assert set(server.counts().values()) == {1}


def test_a_long_retry_after_is_announced_then_waited(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import adaptlab.backends.runner as runner

    monkeypatch.setattr(runner, "LONG_WAIT_S", 0.1)  # so a 0.4 s wait counts as long
    with FakeLLMServer(oracle, faults=fail_first(1, "429:0.4")) as server:
        root = project(tmp_path / "p", server, max_concurrency=1)
        text = cli("run", "-p", root).ok()
    assert "asks to wait 0.4 s (Retry-After); waiting" in text
    assert all(r["predicted"] == r["gold"] for r in predictions(root))


def test_an_ordinary_rate_limit_is_still_retried(cli: Any, tmp_path: Path) -> None:
    with FakeLLMServer(oracle, faults=fail_first(1, "429@rate_limit_exceeded")) as server:
        root = project(tmp_path / "p", server)
        text = cli("run", "-p", root).ok()
    assert set(server.counts().values()) == {2} and "asks to wait" not in text
