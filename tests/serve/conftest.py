"""One served project for the session, and real ``adaptlab serve`` processes on 127.0.0.1.

The project holds an encoder candidate of each kind (zero-shot, few-shot, a 2-epoch
head fine-tune), a prompted chat model behind the fake OpenAI-compatible server, and
a LoRA candidate on a tiny random-weight Llama (SmolLM2's tokenizer), so every kind
of served answer comes from a real run's stored result.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import small_project
from tests.fakes.fake_llm import ChatCall, FakeLLMServer
from tests.train.conftest import tiny_base, tokenizer_dir  # noqa: F401 (fixtures)

LORA = {
    "epochs": 2,
    "batch_size": 8,
    "learning_rate": 2e-2,
    "eval_steps": 4,
    "early_stopping_patience": None,
    "precision": "fp32",
    "lora_r": 4,
    "max_tokens": 8,
}


@pytest.fixture(scope="session")
def chat_server() -> Iterator[FakeLLMServer]:
    """The fake chat model: answers the gold label of a ticket it finds in the prompt's
    input (the last one, after any shots), else 'general'; up for the whole session."""
    gold: dict[str, str] = {}

    def answer(call: ChatCall) -> str:
        found = [t for t in gold if t in call.user_text]
        return gold[max(found, key=call.user_text.rindex)] if found else "general"

    with FakeLLMServer(answer) as server:
        server.gold = gold  # type: ignore[attr-defined]
        yield server


@pytest.fixture(scope="session")
def served_project(
    tmp_path_factory: pytest.TempPathFactory,
    example_project: Path,
    chat_server: FakeLLMServer,
    tiny_base: Path,  # noqa: F811
) -> Path:
    """The support tickets (8 a label), run once with every kind of candidate."""
    from adaptlab import Project, run_project

    candidates: list[dict[str, object]] = [
        {"name": "zero-shot", "strategy": "zero-shot"},
        {"name": "few-shot", "strategy": "few-shot", "params": {"k": 4}},
        {"name": "finetune", "strategy": "finetune", "params": {"epochs": 2, "batch_size": 16}},
        {
            "name": "chat-few-shot",
            "strategy": "llm-few-shot",
            "llm": "chat",
            "params": {"shots": 2},
        },
        {"name": "lora", "strategy": "llm-finetune", "llm": "tiny", "params": LORA},
    ]
    root = small_project(tmp_path_factory.mktemp("served") / "p", example_project, 8, candidates)
    for line in (root / "data/tickets.jsonl").open(encoding="utf-8"):
        row = json.loads(line)
        chat_server.gold[row["text"]] = row["label"]  # type: ignore[attr-defined]
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text(encoding="utf-8"))
    cfg["llms"] = {
        "chat": {"backend": "openai", "name": "gpt-4o-mini", "base_url": chat_server.base_url},
        # fp32: a constrained score in bf16 moves with the batch it shares (padding
        # changes the rounding), and the tests compare served scores with predict's.
        "tiny": {"backend": "hf", "name": str(tiny_base), "batch_size": 8, "precision": "fp32"},
    }
    cfg["evaluation"].update(timing_repeats=1, latency_samples=3)
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    run_project(Project.load(root))
    return root


@pytest.fixture(scope="session")
def quick_project(tmp_path_factory: pytest.TempPathFactory, example_project: Path) -> Path:
    """The support tickets (4 a label) and the zero-shot encoder alone, run once: a
    project served in seconds, for tests of the server rather than of the models."""
    from adaptlab import Project, run_project

    candidates: list[dict[str, object]] = [{"name": "zero-shot", "strategy": "zero-shot"}]
    root = small_project(tmp_path_factory.mktemp("quick") / "p", example_project, 4, candidates)
    run_project(Project.load(root))
    return root


@pytest.fixture(scope="session")
def tfidf_export(tmp_path_factory: pytest.TempPathFactory, example_project: Path) -> Path:
    """The support tickets (4 a label) with a TF-IDF + logistic regression candidate, run
    and exported: the cheapest model a project serves (no encoder, no torch), for tests
    of many requests and of several servers. The project is the folder's parent's ``p``;
    the export is ``tfidf``: serve it with ``--model tfidf=DIR``."""
    from adaptlab import Project, run_project
    from adaptlab.engine.artifact import export_candidate

    base = tmp_path_factory.mktemp("tfidf")
    candidates: list[dict[str, object]] = [{"name": "tfidf", "strategy": "tfidf-lr"}]
    root = small_project(base / "p", example_project, 4, candidates)
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text(encoding="utf-8"))
    cfg["evaluation"].update(cv_folds=0, timing_repeats=1, latency_samples=0)
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    project = Project.load(root)
    run_project(project)
    export_candidate(project, "tfidf", base / "tfidf")
    return base / "tfidf"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Served:
    """A running ``adaptlab serve``; ``output`` holds its log once stopped."""

    process: subprocess.Popen[str]
    url: str  # http://127.0.0.1:PORT
    log: Path  # its stdout and stderr: a file, since a full pipe would stall the server
    output: str = ""
    stopped: bool = field(default=False)

    @property
    def v1(self) -> str:
        return f"{self.url}/v1"

    def stop(self) -> str:
        """Ctrl-C, as a user stops it; the request log drains before it exits."""
        if not self.stopped:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.output = self.log.read_text(encoding="utf-8", errors="replace")
            self.stopped = True
        return self.output


def start_server(project: Path, *args: str, timeout: float = 180, **popen: Any) -> Served:
    """``adaptlab serve -p PROJECT ARGS --port P`` as a process; waits for /health.
    ``popen``: more arguments for :class:`subprocess.Popen` (``preexec_fn``)."""
    import tempfile

    import httpx2

    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "COLUMNS": "200"}
    fd, log = tempfile.mkstemp(prefix="adaptlab-serve-", suffix=".log")
    with os.fdopen(fd, "w") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "adaptlab",
                "serve",
                "-p",
                str(project),
                *args,
                "--port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            **popen,
        )
    served = Served(process, f"http://127.0.0.1:{port}", Path(log))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            output = served.stop()
            raise AssertionError(f"adaptlab serve exited with {process.returncode}:\n{output}")
        try:
            if httpx2.get(f"{served.url}/health", timeout=1).status_code == 200:
                return served
        except httpx2.TransportError:
            pass
        time.sleep(0.3)
    output = served.stop()
    raise AssertionError(f"adaptlab serve did not answer /health in {timeout} s:\n{output}")


def add_key(project: Path, name: str, *extra: str) -> str:
    """``adaptlab keys add NAME``; the key as printed (once) on standard output."""
    result = subprocess.run(
        [sys.executable, "-m", "adaptlab", "keys", "add", name, "-p", str(project), *extra],
        capture_output=True,
        text=True,
        check=True,
    )
    secret = result.stdout.strip()
    assert secret.startswith("al-") and len(secret) > 40, result.stdout + result.stderr
    return secret
