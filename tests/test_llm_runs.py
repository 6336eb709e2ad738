"""Generative candidates against a real localhost OpenAI-compatible server.

The server (``tests.fakes.fake_llm``) speaks the chat-completions protocol
over HTTP, streaming included, and injects faults; the official ``openai`` client
is what talks to it. The responder answers from the data's own labels, so a run
that survives its faults must score 100 %.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab import Project, run_project, summarize_project
from adaptlab.core.errors import AdaptlabError
from tests.conftest import adaptlab_process, small_project
from tests.fakes.fake_llm import ChatCall, FakeLLMServer, fail_first
from tests.keyfile import bind_key

INPUT = re.compile(r"<input>\n(.*?)\n</input>|^Ticket: (.*?)\n\nReply", re.S | re.M)


def input_of(call: ChatCall) -> str:
    """The ticket a prompt asks about (the last input; earlier ones are examples)."""
    found: list[tuple[str, str]] = INPUT.findall(call.user_text)
    return next(a or b for a, b in reversed(found))


class Oracle:
    """Answers with the gold label of the ticket in the prompt."""

    def __init__(self, project: Path) -> None:
        rows = [json.loads(line) for line in (project / "data/tickets.jsonl").open()]
        self.gold: dict[str, str] = {r["text"]: r["label"] for r in rows}

    def __call__(self, call: ChatCall) -> str:
        label = self.gold[input_of(call)]
        if "step by step" in call.user_text:
            return f"The customer writes about {label.replace('_', ' ')}.\nAnswer: {label}"
        return label


def llm_project(
    tmp_path: Path,
    example_project: Path,
    server: FakeLLMServer,
    candidates: list[dict[str, Any]],
    per_label: int = 4,
    **llm: Any,
) -> Path:
    project = small_project(tmp_path / "p", example_project, per_label, candidates)
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["llms"] = {
        "chat": {"backend": "openai", "name": "gpt-4o-mini", "base_url": server.base_url, **llm}
    }
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return project


ZERO = [{"name": "llm-zero", "strategy": "llm-zero-shot", "llm": "chat"}]


@pytest.mark.parametrize(
    ("fault", "stream", "timeout_s"),
    [
        ("429:0.05", False, 60),
        ("500", False, 60),
        ("503", True, 60),
        ("timeout:3", False, 1),
        ("malformed", False, 60),
        ("malformed", True, 60),
        ("truncated", True, 60),
        ("truncated", False, 60),
        ("incomplete", True, 60),
        ("stream-error", True, 60),
        ("drop", False, 60),
    ],
)
def test_each_fault_is_retried_and_counted(
    tmp_path: Path, example_project: Path, fault: str, stream: bool, timeout_s: float
) -> None:
    oracle = Oracle(example_project)
    with FakeLLMServer(oracle, faults=fail_first(1, fault)) as server:
        project = llm_project(
            tmp_path, example_project, server, ZERO, stream=stream, timeout_s=timeout_s
        )
        run = run_project(Project.load(project))
        summary = summarize_project(Project.load(project), run.run_id)
    cand = summary.candidates[0]
    # Test and validation inputs are both answered (candidates are chosen on val).
    n_test = summary.split["test"] + summary.split["val"]
    assert cand.accuracy == 1.0 and cand.unparsed == 0
    # Every distinct prompt failed once, was retried once and answered once.
    assert cand.info["llm"]["retries"] == n_test
    assert len(server.calls) == 2 * n_test
    assert set(server.counts().values()) == {2}
    assert sum(c.fault is not None for c in server.calls) == n_test


def test_stream_and_plain_give_the_same_answers_and_usage(
    tmp_path: Path, example_project: Path
) -> None:
    oracle = Oracle(example_project)
    results = {}
    for stream in (False, True):
        with FakeLLMServer(oracle) as server:
            project = llm_project(
                tmp_path / str(stream), example_project, server, ZERO, stream=stream
            )
            run = run_project(Project.load(project))
            with sqlite3.connect(project / ".adaptlab/runs.db") as conn:
                results[stream] = conn.execute(
                    "SELECT predicted, raw, input_tokens, output_tokens FROM predictions "
                    "ORDER BY split, idx"
                ).fetchall()
            # Usage is the server's, exactly: words + 3 per message (its documented rule).
            calls = {c.prompt_key: c for c in server.calls}
            expected = sorted(
                sum(len(m["content"].split()) + 3 for m in c.messages) for c in calls.values()
            )
            assert sorted(r[2] for r in results[stream]) == expected
            assert run.computed == ["llm-zero"]
    assert results[False] == results[True]


def test_retry_after_pauses_every_worker(tmp_path: Path, example_project: Path) -> None:
    """One 429 with Retry-After 0.5 s: no request reaches the server for 0.5 s after it."""
    arrivals: list[float] = []

    def faults(call: ChatCall) -> str | None:
        arrivals.append(time.monotonic())
        return "429:0.5" if call.index == 0 else None

    with FakeLLMServer(Oracle(example_project), faults=faults, latency_s=0.05) as server:
        project = llm_project(
            tmp_path, example_project, server, ZERO, per_label=6, max_concurrency=2
        )
        run_project(Project.load(project))
    # Requests already in flight when the 429 arrived finish; none starts inside the pause.
    after = [t - arrivals[0] for t in arrivals[1:]]
    assert not [t for t in after if 0.1 < t < 0.5]
    split = summarize_project(Project.load(project)).split
    assert len(server.calls) == split["test"] + split["val"] + 1


def test_a_refused_key_stops_with_a_clear_error_and_no_key_in_it(
    tmp_path: Path, example_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "sk-test-abcdefghijklmnopqrstuvwxyz123456"
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("ADAPTLAB_KEYS_FILE", str(tmp_path / "keys.yaml"))
    with FakeLLMServer(Oracle(example_project), faults=lambda c: "401") as server:
        bind_key("OPENAI_API_KEY", server.base_url)  # so the key is sent, and refused
        project = llm_project(tmp_path, example_project, server, ZERO)
        with pytest.raises(AdaptlabError) as err:
            run_project(Project.load(project))
    text = str(err.value)
    assert "refused" in text and "401" in text and "fix:" in text
    assert secret not in text
    assert set(server.counts().values()) == {1}  # a 401 is never retried
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert all(c.key_sha256 == digest for c in server.calls)
    for f in (project / ".adaptlab").rglob("*"):
        if f.is_file():
            assert secret.encode() not in f.read_bytes(), f


def test_exhausted_retries_fail_but_keep_what_was_answered(
    tmp_path: Path, example_project: Path
) -> None:
    def faults(call: ChatCall) -> str | None:
        return "500" if len(input_of(call)) % 2 else None

    with FakeLLMServer(Oracle(example_project), faults=faults) as server:
        project = llm_project(tmp_path, example_project, server, ZERO, max_retries=2)
        with pytest.raises(AdaptlabError, match="gave up after attempt 3"):
            run_project(Project.load(project))
        answered = len({c.prompt_key for c in server.calls if c.fault is None})
        with sqlite3.connect(project / ".adaptlab/llm_cache.db") as conn:
            cached = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert answered > 0 and cached == answered


def test_consistency_and_parse_statuses(tmp_path: Path, example_project: Path) -> None:
    oracle = Oracle(example_project)
    seen: dict[str, int] = {}

    def flaky(call: ChatCall) -> str:
        # The first answer for an input is right; later samples of every third
        # input say something unreadable.
        text = input_of(call)
        seen[text] = seen.get(text, 0) + 1
        if seen[text] > 1 and hash(text) % 3 == 0:
            return "I am not sure."
        return oracle(call)

    with FakeLLMServer(flaky) as server:
        project = llm_project(tmp_path, example_project, server, ZERO)
        cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
        cfg["evaluation"].update(consistency_samples=3, consistency_inputs=6)
        (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg))
        run_project(Project.load(project))
    cand = summarize_project(Project.load(project)).candidates[0]
    with sqlite3.connect(project / ".adaptlab/runs.db") as conn:
        rows = conn.execute("SELECT idx, sample, predicted FROM consistency").fetchall()
    assert len(rows) == 18 and cand.consistency_samples == 3
    by_idx: dict[int, list[str | None]] = {}
    for idx, _, pred in rows:
        by_idx.setdefault(idx, []).append(pred)
    expected = sum(max(v.count(x) for x in v) / 3 for v in by_idx.values()) / 6
    assert cand.agreement == pytest.approx(expected)
    unread = sum(p is None for *_, p in rows)
    assert cand.format_validity == pytest.approx(1 - unread / 18)
    # Sample 0 of each input is the main prediction: answered once, not twice.
    split = summarize_project(Project.load(project)).split
    assert len(server.calls) == split["test"] + split["val"] + 12


def test_kill_9_then_rerun_never_repeats_a_cached_request(
    tmp_path: Path, example_project: Path
) -> None:
    with FakeLLMServer(Oracle(example_project), latency_s=0.15) as server:
        project = llm_project(
            tmp_path, example_project, server, ZERO, per_label=10, max_concurrency=2
        )
        cache = project / ".adaptlab/llm_cache.db"
        proc = adaptlab_process("run", "-p", str(project))
        deadline = time.monotonic() + 120
        while len(server.calls) < 10 and time.monotonic() < deadline:
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        with sqlite3.connect(cache) as conn:
            cached_before = conn.execute("SELECT COUNT(*) FROM responses").fetchone()[0]
        sent_before = {c.prompt_key for c in server.calls}
        assert 5 <= cached_before < 12  # killed mid-run, with answers already cached

        rerun = adaptlab_process("run", "-p", str(project))
        out, _ = rerun.communicate(timeout=180)
        assert rerun.returncode == 0, out
    counts = server.counts()
    split = summarize_project(Project.load(project)).split
    n_test = split["test"] + split["val"]  # both splits are answered
    assert len(counts) == n_test
    repeated = [k for k, n in counts.items() if n > 1]
    # Only requests that were in flight at the kill (sent, never answered) go again.
    assert len(repeated) <= 2 and set(repeated) <= sent_before
    assert sum(counts.values()) == n_test + len(repeated)
    assert summarize_project(Project.load(project)).candidates[0].accuracy == 1.0


def test_a_key_from_the_keys_file_is_used_and_never_written(
    tmp_path: Path, example_project: Path
) -> None:
    secret = "sk-proj-0123456789abcdefghijklmnopqrstuvwxyz"
    keys = tmp_path / "keys.yaml"
    keys.write_text(f"OPENAI_API_KEY: {secret}\n")
    keys.chmod(0o600)
    with FakeLLMServer(Oracle(example_project), require_key=True) as server:
        # The user's binding of the key to this server (the provider's own needs none).
        with keys.open("a") as f:
            f.write(f"send:\n  OPENAI_API_KEY: [{server.base_url}]\n")
        project = llm_project(tmp_path, example_project, server, ZERO)
        env = {**os.environ, "ADAPTLAB_KEYS_FILE": str(keys), "COLUMNS": "200"}
        runs = [
            subprocess.run(
                [sys.executable, "-m", "adaptlab", *args, "-p", str(project)],
                capture_output=True,
                text=True,
                env=env,
            )
            for args in (["run"], ["report"])
        ]
    assert all(r.returncode == 0 for r in runs), runs
    digest = hashlib.sha256(secret.encode()).hexdigest()
    assert server.calls and all(c.key_sha256 == digest for c in server.calls)
    assert all(secret not in str(c.headers) for c in server.calls)
    assert all(secret not in r.stdout + r.stderr for r in runs)
    files = [f for f in project.rglob("*") if f.is_file()]
    assert any(f.name == "report.html" for f in files)
    assert not [f for f in files if secret.encode() in f.read_bytes()]


def test_report_shows_tokens_parsing_and_what_did_not_run(
    tmp_path: Path, example_project: Path
) -> None:
    from adaptlab import write_report

    with FakeLLMServer(Oracle(example_project)) as server:
        project = llm_project(
            tmp_path,
            example_project,
            server,
            [*ZERO, {"name": "gpt4o-zero", "strategy": "llm-zero-shot", "llm": "big"}],
        )
        cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
        cfg["llms"]["big"] = {"backend": "openai", "name": "gpt-4o"}  # no key, no base_url
        (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg))
        run = run_project(Project.load(project))
    assert list(run.unavailable) == ["gpt4o-zero"]
    summary = summarize_project(Project.load(project))
    assert summary.not_run == run.unavailable
    html = write_report(summary, project / "reports/report.html").read_text()
    cand = summary.candidates[0]
    assert 'id="llm"' in html and "gpt4o-zero (no OPENAI_API_KEY for openai:gpt-4o" in html
    tokens = f"{cand.input_tokens_per_request:,.0f} / {cand.output_tokens_per_request:,.0f}"
    # The default answer mode asks the fake OpenAI server for a label (a strict enum
    # schema), so every answer's status is "constrained" rather than a parse status.
    assert tokens in html and f"constrained {summary.split['test']}" in html
