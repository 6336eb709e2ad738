"""Reports of real (small) runs, written once per session for the report tests.

Each builder runs a cheap version of a project through ``run_project``: the example
projects with few rows and only candidates that train nothing big, a generative model
answered by the localhost fake server (the report's sections and plots are the same
whichever model answered), and BANKING77 for the many-label layout.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab import Project, run_project, summarize_project, write_report
from adaptlab.engine.scaffold import init_project
from tests.conftest import SHARED, small_project
from tests.fakes.fake_finetune import FakeFinetuneServer
from tests.fakes.fake_llm import ChatCall, FakeLLMServer

BANKING77 = SHARED / "data" / "banking77"
BENCH = Path(__file__).resolve().parents[2] / "bench"

# Retrieved passages in a prompt: "[n] text" blocks before the question.
PASSAGE = re.compile(r"^\[(\d+)\] (.*?)(?=\n\n\[\d+\] |\n\nQuestion: |\Z)", re.S | re.M)
NOT_COVERED = "The help center does not cover this. Please contact Northwind support."
# One timing pass and a few latency samples: the timings are shown, not checked here.
CHEAP_TIMING = {"timing_repeats": 1, "latency_samples": 3, "bootstrap_resamples": 200}
FINETUNABLE = "gpt-4o-mini-2024-07-18"  # a model the provider fine-tunes
# Two epochs of one step each (the train split is under 64 tickets): a curve, cheaply.
FINETUNE = {"method": "head", "epochs": 2, "batch_size": 64, "save_model": False}


def _edit_config(project: Path, **sections: Any) -> None:
    path = project / "adaptlab.yaml"
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    cfg.update(sections)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")


def write_project_report(project: Path) -> Path:
    """The report of the project's latest run, where ``adaptlab report`` writes it (with
    the served-traffic section when the request log holds requests)."""
    from adaptlab.evaluation.served import live_traffic

    loaded = Project.load(project)
    ev = loaded.config.evaluation
    live = live_traffic(loaded.store_path, ev.confidence, ev.bootstrap_resamples)
    path: Path = write_report(summarize_project(loaded), loaded.report_path, live)
    return path


def log_served_traffic(project: Path) -> None:
    """Served traffic as ``adaptlab serve`` logs it: zero-shot answering the test inputs,
    a shadow with a long name answering them too, label feedback for most (written
    through the request log, as the server does), for the report's served section."""
    from adaptlab.serve.log import Feedback, RequestLog, RequestRecord, now

    loaded = Project.load(project)
    test = loaded.split().test
    log = RequestLog(loaded.store_path)
    shadow = "finetune-with-a-rather-long-candidate-name"
    for i, ex in enumerate(test):
        for rid, cand, of, answer in (
            (f"r{i}", "zero-shot", None, ex.label if i % 4 else "general"),
            (f"s{i}", shadow, f"r{i}", ex.label if i % 3 else "billing"),
        ):
            log.record(
                RequestRecord(
                    rid, now(), "chat", "default", cand, of, None, None, ex.text, answer, 1.0,
                    None, 200, 20.0 + i, None, None, 0.00001, None,
                )
            )  # fmt: skip
        if i % 5:
            log.feedback(Feedback(f"r{i}", ex.label, None, None, None))
    log.close()


def run_support_tickets(target: Path, example_project: Path) -> Path:
    """The ticket example, 12 tickets a label: the embedding candidates, a two-step
    fine-tune (for the training curves), the TF-IDF baseline and a chat model that knows
    the labels."""
    candidates: list[dict[str, object]] = [
        {"name": "zero-shot", "strategy": "zero-shot"},
        {"name": "few-shot-4", "strategy": "few-shot", "params": {"k": 4}},
        {"name": "rag-knn", "strategy": "rag", "params": {"top_k": 10}},
        {"name": "finetune", "strategy": "finetune", "params": FINETUNE},
        {"name": "llm-zero-shot", "strategy": "llm-zero-shot", "llm": "chat"},
    ]
    project = small_project(target, example_project, 12, candidates)
    gold = {
        (row := json.loads(line))["text"]: row["label"]
        for line in (project / "data/tickets.jsonl").open(encoding="utf-8")
    }

    def answer(call: ChatCall) -> str:
        found = [text for text in gold if text in call.user_text]
        return gold[max(found, key=call.user_text.rindex)] if found else "general"

    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text(encoding="utf-8"))
    with FakeLLMServer(answer) as server:
        chat = {"backend": "openai", "name": "gpt-4o-mini", "base_url": server.base_url}
        evaluation = {**cfg["evaluation"], **CHEAP_TIMING, "baseline": True}
        _edit_config(project, llms={"chat": chat}, evaluation=evaluation)
        run_project(Project.load(project))
    return project


def run_support_qa(target: Path) -> Path:
    """The question-answering example, its model answering through the fake server:
    closed-book says it does not know, RAG quotes and cites its first passage. The local
    LoRA candidates are left out (minutes of training); a provider fine-tune on the fake
    server draws the step-wise training curves instead."""
    project = init_project(target, example="support-qa")

    def answer(call: ChatCall) -> str:
        passages = PASSAGE.findall(call.user_text)
        if not passages:
            return NOT_COVERED
        n, body = passages[0]
        return f"[{n}] {body.strip().splitlines()[0]}"

    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text(encoding="utf-8"))
    for cand in cfg["candidates"]:
        cand["params"].pop("prefill", None)  # a prefill needs a local (hf) model
    lora = [c["name"] for c in cfg["candidates"] if c["strategy"] == "llm-finetune"]
    tuned = {"n_epochs": 2, "poll_interval_s": 0.05}
    cfg["candidates"].append(
        {
            "name": "provider-finetune",
            "strategy": "openai-finetune",
            "llm": "local",
            "params": tuned,
        }
    )
    with FakeFinetuneServer(answer) as server:
        local = {"backend": "openai", "name": FINETUNABLE, "base_url": server.base_url}
        # BM25 alone: the encoder's embeddings would double the run's time, not the report.
        rag = {**cfg["rag"], "mode": "bm25"}
        _edit_config(project, llms={"local": local}, candidates=cfg["candidates"], rag=rag)
        run_project(Project.load(project), leave_out=dict.fromkeys(lora, "left out by the test"))
    return project


def _sample_csv(source: Path, target: Path, per_label: int) -> None:
    with source.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    random.Random(0).shuffle(rows)
    kept: dict[str, int] = defaultdict(int)
    with target.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["text", "category"])
        writer.writeheader()
        for row in rows:
            if kept[row["category"]] < per_label:
                kept[row["category"]] += 1
                writer.writerow(row)


def run_banking77(target: Path) -> Path:
    """BANKING77 with the bench's labels (77 intents: the report's many-label layout) and
    cheap candidates. The data options have no subsample, so a per-intent sample of the
    shared files goes to ``target`` (a tmp folder, never the project)."""
    if not (BANKING77 / "train.csv").is_file() or not (BANKING77 / "test.csv").is_file():
        pytest.skip(f"BANKING77 is not in {BANKING77} (see shared/data/README.md)")
    cfg = yaml.safe_load((BENCH / "banking77" / "adaptlab.yaml").read_text(encoding="utf-8"))
    (target / "data").mkdir(parents=True)
    _sample_csv(BANKING77 / "train.csv", target / "data/train.csv", per_label=4)
    _sample_csv(BANKING77 / "test.csv", target / "data/test.csv", per_label=2)
    (target / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    _edit_config(
        target,
        data={**cfg["data"], "path": "data/train.csv", "test_path": "data/test.csv"},
        candidates=[
            {"name": "zero-shot", "strategy": "zero-shot"},
            {"name": "few-shot-3", "strategy": "few-shot", "params": {"k": 3}},
            {"name": "rag-knn", "strategy": "rag", "params": {"top_k": 10}},
        ],
        evaluation=CHEAP_TIMING,  # and the default TF-IDF baseline
    )
    run_project(Project.load(target))
    return target


@pytest.fixture(scope="session")
def support_tickets_report(tmp_path_factory: pytest.TempPathFactory, example_project: Path) -> Path:
    target = tmp_path_factory.mktemp("tickets") / "support-tickets"
    project = run_support_tickets(target, example_project)
    log_served_traffic(project)
    return write_project_report(project)


@pytest.fixture(scope="session")
def support_qa_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    target = tmp_path_factory.mktemp("qa") / "support-qa"
    return write_project_report(run_support_qa(target))


@pytest.fixture(scope="session")
def banking77_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project_report(run_banking77(tmp_path_factory.mktemp("banking77")))
