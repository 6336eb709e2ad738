"""Two users, two machines, one store: each result is computed once.

Two ``adaptlab run`` processes start at once with the same data and candidates (a
TF-IDF classifier and an LLM against the fake OpenAI server). On PostgreSQL they
run from two project folders (so neither the project's run lock nor its response
cache is shared: only the store's result claims keep them from computing twice);
on SQLite from one folder, where the project's run lock serialises them.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab.store import RunStore
from tests.conftest import adaptlab_process
from tests.fakes.fake_llm import ChatCall, FakeLLMServer
from tests.hostile.projects import llm_project, oracle

pytestmark = pytest.mark.timeout(240)

CANDIDATES = [
    {"name": "tfidf", "strategy": "tfidf-lr", "params": {"c_grid": [1.0]}},
    {"name": "zero", "strategy": "llm-zero-shot", "llm": "chat"},
]


def _project(root: Path, base_url: str, store: str | None) -> Path:
    llm_project(root, base_url, max_concurrency=1)
    cfg = yaml.safe_load((root / "adaptlab.yaml").read_text())
    cfg["candidates"] = CANDIDATES
    cfg["evaluation"] = {**cfg["evaluation"], "cv_folds": 0}
    if store is not None:
        cfg["store"] = store
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


def _start(root: Path, url: str | None, monkeypatch: Any) -> Any:
    if url is not None:
        monkeypatch.setenv("ADAPTLAB_STORE_URL", url)
    else:
        monkeypatch.delenv("ADAPTLAB_STORE_URL", raising=False)
    return adaptlab_process("run", "-p", str(root))


@pytest.mark.slow  # two `adaptlab run` processes, one after the other starts: ~25 s each
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_two_runs_at_once_compute_each_result_once(
    engine: str, tmp_path: Path, request: pytest.FixtureRequest, monkeypatch: Any
) -> None:
    """The first run's first LLM answer is held back until the second run says that it
    waits (on the project's lock on SQLite, on the first run's claim on PostgreSQL), so
    the two overlap on any machine, however loaded."""
    url: str | None = request.getfixturevalue("pg_url") if engine == "postgresql" else None
    gate = threading.Event()

    def held(call: ChatCall) -> str:
        gate.wait(120)
        return oracle(call)

    with FakeLLMServer(held) as server:
        first = _project(tmp_path / "alice", server.base_url, url)  # store: in adaptlab.yaml
        # PostgreSQL: another folder, the store named by the environment
        second = first if url is None else _project(tmp_path / "bob", server.base_url, None)
        one = _start(first, None, monkeypatch)
        while not server.calls:  # the first run holds its claim on the LLM result
            assert one.poll() is None, one.communicate()[0]
            time.sleep(0.05)
        two = _start(second, url, monkeypatch)
        assert two.stdout is not None
        lines: list[str] = []
        while not any("waiting" in line for line in lines):
            line = two.stdout.readline()
            assert line, "".join(lines)
            lines.append(line)
        gate.set()
        outs = [one.communicate(timeout=200)[0], "".join(lines) + two.communicate(timeout=200)[0]]
        counts = server.counts()
    for p, out in zip((one, two), outs, strict=True):
        assert p.returncode == 0, out
    # The test and val splits: one prompt per input, each sent once over both runs.
    assert len(counts) == 12 and set(counts.values()) == {1}, counts
    with RunStore(url or first / ".adaptlab" / "runs.db") as store:
        runs = store.runs()
        assert [r["status"] for r in runs] == ["finished", "finished"]
        links = [store.run_candidates(r["id"]) for r in runs]
    for run_links in links:  # both runs list every result
        assert sorted(r["name"] for r in run_links) == ["tfidf", "zero"]
    for name in ("tfidf", "zero"):  # computed by exactly one run, reused by the other
        computed = [r["reused"] for rs in links for r in rs if r["name"] == name]
        assert sorted(computed) == [0, 1], (name, links)
    said = " ".join(outs[1].split())
    if url is None:
        assert "another adaptlab run (pid" in said
    else:
        assert "zero: waiting for adaptlab pid" in said, said
        assert "which is computing this result in the shared store" in said
        assert not (tmp_path / "alice" / ".adaptlab" / "runs.db").exists()
        assert not (tmp_path / "bob" / ".adaptlab" / "runs.db").exists()
