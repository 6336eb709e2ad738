"""Extraction and generation tasks end to end, against scripted models.

The models are the in-process ``fake`` backend answering through the oracles below
(:func:`~tests.fakes.scripted.scripted`); the judge test keeps the localhost
OpenAI-compatible server, as it counts the requests the server received.

The fixtures are synthetic: 40 short order emails whose target is
``{"customer", "order_id", "items"}``, and 40 questions with a reference answer. The
responders answer with the gold target, except for a fixed schedule of mistakes
(wrong field, missing item, no JSON, schema-breaking JSON, partial or wrong answer),
so every expected number below is computed by hand from that schedule and the
stored rows, not by the code under test.
"""

from __future__ import annotations

import csv
import html
import json
import re
import sqlite3
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab import Project, run_project, summarize_project
from adaptlab.core.errors import DataError
from adaptlab.data import Example, normalise, split_examples
from adaptlab.report import render_report
from tests.fakes.fake_llm import FakeLLMServer
from tests.fakes.scripted import UserText, scripted

TASK_INPUT = re.compile(r"<input>\n(.*?)\n</input>", re.S)


# ---------------------------------------------------------------- extraction fixture

CUSTOMERS = ["Anna Schmidt", "Ben Okafor", "Carla Rossi", "Deniz Yilmaz", "Eva Novak"]
PRODUCTS = ["desk lamp", "usb cable", "coffee mug", "notebook", "phone case", "backpack"]
GREETINGS = ["Hello", "Hi team", "Good morning", "Dear support"]
SCHEMA = {
    "type": "object",
    "properties": {
        "customer": {"type": "string"},
        "order_id": {"type": "string"},
        "items": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["customer", "order_id", "items"],
    "additionalProperties": False,
}


def order_emails(n: int = 40) -> list[dict[str, Any]]:
    rows = []
    for i in range(n):
        items = [PRODUCTS[(i + k) % len(PRODUCTS)] for k in range(1 + i % 3)]
        target = {"customer": CUSTOMERS[i % 5], "order_id": f"A-{1000 + i}", "items": items}
        text = (
            f"{GREETINGS[i % 4]}, this is {target['customer']}. My order {target['order_id']} "
            f"with {' and '.join(items)} has not arrived after {i + 2} days."
        )
        rows.append({"text": text, "target": target})
    return rows


def extraction_mistake(i: int, few_shot: bool) -> str:
    """What the extraction oracle does for email ``i``; few-shot prompts only fail to parse."""
    kind = {1: "customer", 3: "item", 5: "prose", 7: "schema", 9: "fenced"}.get(i % 10, "ok")
    if few_shot and kind != "prose":
        return "ok"
    return kind


class ExtractionOracle:
    def __init__(self) -> None:
        self.by_text = {r["text"]: (i, r["target"]) for i, r in enumerate(order_emails())}

    def __call__(self, call: UserText) -> str:
        i, target = self.by_text[TASK_INPUT.findall(call.user_text)[-1]]
        answer = dict(target)
        kind = extraction_mistake(i, "<examples>" in call.user_text)
        if kind == "customer":
            answer["customer"] = "Somebody Else"
        elif kind == "item":
            answer["items"] = target["items"][:-1]
        elif kind == "prose":
            return "Sorry, I cannot read an order in this email."
        elif kind == "schema":
            answer["order_id"] = 1000 + i  # a number where the schema wants a string
        text = json.dumps(answer)
        return f"Here is the order:\n```json\n{text}\n```" if kind == "fenced" else text


# ---------------------------------------------------------------- generation fixture

NAMES = ["Mara Lind", "Tomas Berg", "Ines Vogel", "Omar Haddad"]
TOPICS = ["river bridge", "city library", "harbour crane", "old mill", "train depot"]


def questions(n: int = 40) -> list[dict[str, str]]:
    return [
        {
            "question": f"Who restored the {TOPICS[i % 5]} number {i}, and when?",
            "answer": f"{NAMES[i % 4]} restored it in {1950 + i}",
        }
        for i in range(n)
    ]


def generation_answer(i: int, gold: str, cot: bool) -> str:
    """The generation oracle: exact, partial, wrong or cased/punctuated answers."""
    kind = i % 8
    if kind == 1:
        answer = " ".join(gold.split()[:-2])  # "Mara Lind restored" of 5 words: partial
    elif kind == 3:
        answer = "I have no record of that"
    elif kind == 5:
        answer = gold.upper() + "."  # equal after normalising
    else:
        answer = gold
    if cot:
        if kind == 7:
            return "The records are unclear, so I will not commit to an answer."  # unparsed
        return f"Looking at the restoration records.\nAnswer: {answer}"
    return answer


def _tokens(text: str) -> list[str]:
    # The fixture's answers hold no articles and no punctuation but a final period, so
    # SQuAD normalisation reduces to this.
    return text.lower().replace(".", "").split()


def hand_token_f1(pred: str | None, gold: str) -> float:
    p, g = _tokens(pred or ""), _tokens(gold)
    same = sum((Counter(p) & Counter(g)).values())
    if same == 0:
        return 0.0
    precision, recall = same / len(p), same / len(g)
    return 2 * precision * recall / (precision + recall)


def judge_score(reply_for: int) -> str:
    return {0: "Score: 1", 1: "0.5", 2: "4/5", 3: "I would rather not grade this."}[reply_for % 4]


class GenerationOracle:
    """Answers questions; on the same server, grades judge prompts (they hold <reference>)."""

    def __init__(self) -> None:
        self.by_question = {q["question"]: (i, q["answer"]) for i, q in enumerate(questions())}
        self.judged: list[str] = []

    def __call__(self, call: UserText) -> str:
        text = call.user_text
        if "<reference>" in text:
            answer = re.search(r"<answer>\n(.*?)\n</answer>", text, re.S)
            assert answer is not None
            self.judged.append(answer.group(1))
            return judge_score(len(answer.group(1)))
        i, gold = self.by_question[TASK_INPUT.findall(text)[-1]]
        return generation_answer(i, gold, cot="step by step" in text)


def expected_judge(answer: str | None) -> float:
    """What the judge oracle's reply for ``answer`` parses to (unreadable and no answer: 0)."""
    if not answer:
        return 0.0
    return {0: 1.0, 1: 0.5, 2: 0.8, 3: 0.0}[len(answer) % 4]


# ---------------------------------------------------------------- projects


def write_project(
    root: Path,
    server: FakeLLMServer | None,
    *,
    task: str,
    rows: list[dict[str, Any]],
    candidates: list[dict[str, Any]],
    label_field: str,
    input_field: str = "text",
    **extra: Any,
) -> Path:
    (root / "data").mkdir(parents=True)
    with (root / "data/examples.jsonl").open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
    cfg: dict[str, Any] = {
        "name": f"{task} test",
        "task": task,
        "data": {
            "path": "data/examples.jsonl",
            "input_field": input_field,
            "label_field": label_field,
            "test_size": 0.5,
        },
        "llms": _llms(server),
        "candidates": candidates,
        "evaluation": {"bootstrap_resamples": 200, "latency_samples": 0},
        **extra,
    }
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False), encoding="utf-8")
    return root


MODELS = ("gpt-4o-mini", "gpt-4o")  # chat and grader, by name, for scripted()


def _llms(server: FakeLLMServer | None) -> dict[str, Any]:
    """The models on ``server``, or (None) the fake backend, answering in ``scripted(...)``."""
    if server is None:
        return {
            "chat": {"backend": "fake", "name": "gpt-4o-mini"},
            "grader": {"backend": "fake", "name": "gpt-4o"},
        }
    return {
        "chat": {"backend": "openai", "name": "gpt-4o-mini", "base_url": server.base_url},
        "grader": {"backend": "openai", "name": "gpt-4o", "base_url": server.base_url},
    }


EXTRACTION_CANDIDATES: list[dict[str, Any]] = [
    {"name": "zero", "strategy": "llm-zero-shot", "llm": "chat"},
    {"name": "few", "strategy": "llm-few-shot", "llm": "chat", "params": {"shots": 3}},
]
GENERATION_CANDIDATES = [
    {"name": "zero", "strategy": "llm-zero-shot", "llm": "chat"},
    {"name": "cot", "strategy": "llm-cot", "llm": "chat"},
]


def stored(
    project: Path, name: str, split: str = "test"
) -> list[tuple[str, str, str | None, str | None]]:
    """(input, gold, predicted, status) of a candidate's rows of ``split`` in the latest run."""
    with sqlite3.connect(project / ".adaptlab/runs.db") as conn:
        key = conn.execute(
            "SELECT result_key FROM run_candidates WHERE name = ? ORDER BY rowid DESC", (name,)
        ).fetchone()[0]
        return conn.execute(
            "SELECT input, gold, predicted, status FROM predictions WHERE result_key = ? "
            "AND split = ? ORDER BY idx",
            (key, split),
        ).fetchall()


# ---------------------------------------------------------------- extraction


def test_extraction_field_scores_and_format_validity(tmp_path: Path) -> None:
    oracle = ExtractionOracle()
    with scripted(oracle, *MODELS):
        project = write_project(
            tmp_path / "p",
            None,
            task="extraction",
            rows=order_emails(),
            candidates=EXTRACTION_CANDIDATES,
            label_field="target",
            schema=SCHEMA,
        )
        run_project(Project.load(project))
        summary = summarize_project(Project.load(project))

    assert summary.task == "extraction" and summary.metric == "field_f1"
    index = {r["text"]: i for i, r in enumerate(order_emails())}
    for cand in summary.candidates:
        rows = stored(project, cand.name)
        assert len(rows) == summary.split["test"] == 20 == cand.n  # nothing dropped
        fields: dict[str, Counter[str]] = {f: Counter() for f in ("customer", "order_id", "items")}
        kinds: Counter[str] = Counter()
        for text, gold_json, predicted, status in rows:
            gold = json.loads(gold_json)
            assert gold_json == json.dumps(gold, sort_keys=True, ensure_ascii=False)
            kind = extraction_mistake(index[text], few_shot=cand.name == "few")
            kinds[kind] += 1
            n_items = len(gold["items"])
            # Expected counts of this example, by the oracle's schedule.
            if kind == "prose":
                assert predicted is None and status == "unparsed"
                fields["customer"]["fn"] += 1
                fields["order_id"]["fn"] += 1
                fields["items"]["fn"] += n_items
                continue
            assert predicted is not None
            assert status == ("invalid" if kind == "schema" else "json")
            for f in ("customer", "order_id"):
                wrong = (kind == "customer" and f == "customer") or (
                    kind == "schema" and f == "order_id"
                )
                fields[f].update({"fp": 1, "fn": 1} if wrong else {"tp": 1})
            missing = 1 if kind == "item" else 0
            fields["items"].update({"tp": n_items - missing, "fn": missing})
        total = sum(fields.values(), Counter())
        precision = total["tp"] / (total["tp"] + total["fp"])
        recall = total["tp"] / (total["tp"] + total["fn"])
        f1 = 2 * precision * recall / (precision + recall)
        ext = cand.extraction
        assert ext is not None and cand.metrics is None
        assert ext.precision == pytest.approx(precision)
        assert ext.recall == pytest.approx(recall)
        assert cand.quality == pytest.approx(f1) == pytest.approx(ext.f1)
        assert cand.quality_ci.low <= cand.quality <= cand.quality_ci.high
        for name, c in fields.items():
            got = ext.per_field[name]
            assert got.support == c["tp"] + c["fn"]
            assert got.recall == pytest.approx(c["tp"] / (c["tp"] + c["fn"]))
            assert got.precision == pytest.approx(c["tp"] / (c["tp"] + c["fp"]))
        # Format validity: no-JSON and schema-breaking answers are counted, not dropped.
        bad = kinds["prose"] + kinds["schema"]
        assert cand.statuses.get("unparsed", 0) == kinds["prose"]
        assert cand.statuses.get("invalid", 0) == kinds["schema"]
        assert cand.unparsed == bad
        assert cand.valid_rate == pytest.approx(1 - bad / 20)
        assert ext.unparsed == kinds["prose"]

    zero, few = summary.candidate("zero"), summary.candidate("few")
    assert kinds_of(project, "zero") != {"ok"}, "the schedule must put mistakes in the test split"
    assert few.quality > zero.quality
    assert summary.best_on_test == "few"
    # the winner (chosen on val) is compared on test with the other, by paired bootstrap
    win = summary.candidate(summary.recommendation.winner)
    other = zero if win is few else few
    assert win.vs_best is None and other.vs_best is not None
    assert other.vs_best.name == "paired-bootstrap"
    assert other.vs_best.diff == pytest.approx(win.quality - other.quality)
    reasons = " ".join(summary.recommendation.reasons)
    assert "field F1" in reasons and "accuracy" not in reasons


def kinds_of(project: Path, name: str) -> set[str]:
    index = {r["text"]: i for i, r in enumerate(order_emails())}
    return {extraction_mistake(index[row[0]], few_shot=False) for row in stored(project, name)}


def test_extraction_report_and_table(tmp_path: Path) -> None:
    with scripted(ExtractionOracle(), *MODELS):
        project = write_project(
            tmp_path / "p",
            None,
            task="extraction",
            rows=order_emails(),
            candidates=EXTRACTION_CANDIDATES,
            label_field="target",
            schema=SCHEMA,
        )
        run_project(Project.load(project))
    summary = summarize_project(Project.load(project))
    page = render_report(summary)
    _self_contained(page)
    assert "Field F1" in page and 'id="per-field"' in page and 'id="answers"' in page
    assert 'id="per-class"' not in page and "Confusion matrix" not in page
    winner = summary.candidate(summary.recommendation.winner)
    assert winner.extraction is not None
    for name, m in winner.extraction.per_field.items():
        assert f"<code>{name}</code>" in page
        assert f"{100 * m.f1:.1f}%" in page
    shown = re.search(r'<tr data-candidate="zero".*?<span class="acc">([^<]*)</span>', page, re.S)
    assert shown is not None
    assert shown.group(1) == f"{100 * summary.candidate('zero').quality:.1f}%"

    from rich.console import Console

    from adaptlab.cli.common import results_table

    console = Console(width=100, record=True)
    console.print(results_table(summary))
    text = console.export_text()
    assert "field F1 %" in text and "valid" in text and "acc." not in text


# ---------------------------------------------------------------- generation


def test_generation_token_f1_exact_match_and_unparsed(tmp_path: Path) -> None:
    with scripted(GenerationOracle(), *MODELS):
        project = write_project(
            tmp_path / "p",
            None,
            task="generation",
            rows=questions(),
            candidates=GENERATION_CANDIDATES,
            input_field="question",
            label_field="answer",
            instruction="Answer the question in one sentence.",
        )
        run_project(Project.load(project))
        summary = summarize_project(Project.load(project))

    assert summary.metric == "token_f1"
    index = {q["question"]: i for i, q in enumerate(questions())}
    kinds = set()
    for cand in summary.candidates:
        rows = stored(project, cand.name)
        assert len(rows) == cand.n == 20
        f1s, ems, unparsed = [], [], 0
        for question, gold, predicted, status in rows:
            i = index[question]
            kinds.add(i % 8)
            expected = generation_answer(i, gold, cot=False)
            if cand.name == "cot" and i % 8 == 7:
                assert predicted is None and status == "unparsed"
                unparsed += 1
            else:
                assert predicted == expected and status == "ok"
            f1s.append(hand_token_f1(predicted, gold))
            ems.append(float(_tokens(predicted or "") == _tokens(gold)))
        assert cand.quality == pytest.approx(sum(f1s) / 20)
        assert cand.generation is not None
        assert cand.generation.token_f1 == pytest.approx(sum(f1s) / 20)
        assert cand.generation.exact_match == pytest.approx(sum(ems) / 20)
        assert cand.unparsed == unparsed
        assert cand.valid_rate == pytest.approx(1 - unparsed / 20)
    assert {1, 3, 5} <= kinds, "the schedule must put partial, wrong and cased answers in test"
    assert 0 < summary.candidate("zero").quality < 1
    # Partial answers make the scores continuous: a paired bootstrap, not McNemar.
    other = next(c for c in summary.candidates if c.name != summary.best)
    assert other.vs_best is not None and other.vs_best.name == "paired-bootstrap"
    assert "token F1" in summary.recommendation.reasons[0]

    page = render_report(summary)
    _self_contained(page)
    assert "Token F1" in page and 'id="answers"' in page and 'id="per-class"' not in page
    winner = summary.candidate(summary.recommendation.winner)
    worst = winner.answers[0]
    assert worst.score == min(winner.scores)
    assert html.escape(worst.reference) in page


def test_generation_exact_match_uses_mcnemar(tmp_path: Path) -> None:
    with scripted(GenerationOracle(), *MODELS):
        project = write_project(
            tmp_path / "p",
            None,
            task="generation",
            rows=questions(),
            candidates=GENERATION_CANDIDATES,
            input_field="question",
            label_field="answer",
            evaluation={
                "bootstrap_resamples": 200,
                "latency_samples": 0,
                "generation_metric": "exact_match",
            },
        )
        run_project(Project.load(project))
        summary = summarize_project(Project.load(project))
    for cand in summary.candidates:
        rows = stored(project, cand.name)
        em = [float(_tokens(p or "") == _tokens(g)) for _, g, p, _ in rows]
        assert cand.quality == pytest.approx(sum(em) / len(em))
    other = next(c for c in summary.candidates if c.name != summary.best)
    assert other.vs_best is not None and other.vs_best.name.startswith("mcnemar")
    assert "exact match" in summary.recommendation.reasons[0]


def test_generation_similarity_is_the_encoders_cosine(tmp_path: Path, backend: Any) -> None:
    import numpy as np

    with scripted(GenerationOracle(), *MODELS):
        project = write_project(
            tmp_path / "p",
            None,
            task="generation",
            rows=questions(),
            candidates=GENERATION_CANDIDATES,
            input_field="question",
            label_field="answer",
            evaluation={"bootstrap_resamples": 200, "generation_metric": "similarity"},
        )
        run_project(Project.load(project))
        summary = summarize_project(Project.load(project))
    for cand in summary.candidates:
        rows = stored(project, cand.name)
        expected = []
        for _, gold, predicted, _ in rows:
            if predicted is None:
                expected.append(0.0)  # nothing was read: no similarity
                continue
            a, b = backend.embed([predicted, gold])
            expected.append(float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b)))
        # Under bf16 autocast (precision auto on a CPU with AMX/avx512_bf16) an embedding
        # depends on the batch it was computed in (padding changes the rounding): the run
        # embeds whole batches, this check one pair at a time. Measured: 1.2e-5 apart on
        # the mean; fp32 agrees to 1e-5.
        tol = 2e-4 if backend.use_bf16 else 1e-5
        assert cand.quality == pytest.approx(sum(expected) / len(rows), abs=tol)
        assert 0.3 < cand.quality < 1.0
    assert summary.metric_info.name == "similarity" and not summary.metric_info.percent
    assert "similarity" in summary.recommendation.reasons[0]


def test_generation_judge_is_scored_counted_and_cached(tmp_path: Path) -> None:
    oracle = GenerationOracle()
    with FakeLLMServer(oracle) as server:
        project = write_project(
            tmp_path / "p",
            server,
            task="generation",
            rows=questions(),
            candidates=GENERATION_CANDIDATES,
            input_field="question",
            label_field="answer",
            evaluation={
                "bootstrap_resamples": 200,
                "latency_samples": 0,
                "generation_metric": "judge",
                "judge_llm": "grader",
                "judge_rubric": "Score 1 if the answer names the same person and year.",
            },
        )
        run_project(Project.load(project))
        answered = len(server.calls)
        assert oracle.judged == []  # running does not judge; summarising does

        summary = summarize_project(Project.load(project))
        judge_calls = list(server.calls[answered:])
        assert judge_calls and all(c.model == "gpt-4o" for c in judge_calls)
        assert "same person and year" in judge_calls[0].user_text

        again = summarize_project(Project.load(project))
        assert len(server.calls) == answered + len(judge_calls)  # every grade came from cache

    graded = 0
    unreadable = 0
    distinct = set()  # the same (input, answer) from two candidates is one cached grade
    for cand in summary.candidates:
        rows = stored(project, cand.name)
        # the validation answers are graded too (candidates are chosen on them)
        both = rows + stored(project, cand.name, "val")
        distinct |= {(q, p) for q, _, p, _ in both if p}
        expected = [expected_judge(p) for _, _, p, _ in rows]
        assert cand.quality == pytest.approx(sum(expected) / len(rows))
        asked = [p for _, _, p, _ in rows if p]
        graded += len([p for _, _, p, _ in both if p])
        unreadable += sum(len(p) % 4 == 3 for _, _, p, _ in both if p)
        assert cand.generation is not None
        assert cand.generation.judge_unparsed == sum(len(p) % 4 == 3 for p in asked)
        assert again.candidate(cand.name).quality == pytest.approx(cand.quality)
    # Unanswered (unparsed CoT) rows score 0 without a request; the rest are graded once.
    assert len(judge_calls) == len(distinct) < graded
    assert summary.judge is not None and again.judge is not None
    assert summary.judge.requests == graded == again.judge.requests
    assert summary.judge.sent == len(judge_calls) and again.judge.sent == 0
    assert summary.judge.cache_hits == graded - len(distinct)
    assert again.judge.cache_hits == graded
    assert summary.judge.unparsed == unreadable > 0
    assert summary.metric_info.name == "judge score"
    page = render_report(again)
    _self_contained(page)
    assert "Judge score" in page and "gpt-4o" in page


# ---------------------------------------------------------------- data


def _data_error(project: Path) -> DataError:
    with pytest.raises(DataError) as err:
        Project.load(project).split()
    return err.value


def test_extraction_target_errors_name_file_line_and_fix(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [
        {"text": r["text"], "target": r["target"]} for r in order_emails(6)
    ]
    rows[2]["target"] = ["A-1002", "desk lamp"]  # line 3: an array, not an object
    rows[4]["target"] = {**rows[4]["target"], "order_id": 1004}  # line 5: breaks the schema
    project = write_project(
        tmp_path / "p",
        None,
        task="extraction",
        rows=rows,
        candidates=EXTRACTION_CANDIDATES,
        label_field="target",
        schema=SCHEMA,
    )
    err = _data_error(project)
    by_line = {i.line: i for i in err.issues}
    assert set(by_line) == {3, 5}
    assert by_line[3].code == "not-object-target" and "an array" in by_line[3].message
    assert by_line[3].file is not None and by_line[3].file.endswith("examples.jsonl")
    assert by_line[3].fix and "JSON object" in by_line[3].fix
    assert by_line[5].code == "schema-violation" and "$.order_id" in by_line[5].message
    assert by_line[5].fix and "schema" in by_line[5].fix
    assert "examples.jsonl:3" in str(err) and "fix:" in str(err)


def test_extraction_csv_cells_hold_json_and_conflicts_are_caught(tmp_path: Path) -> None:
    project = write_project(
        tmp_path / "p",
        None,
        task="extraction",
        rows=[],
        candidates=EXTRACTION_CANDIDATES,
        label_field="target",
        schema=SCHEMA,
    )
    rows = order_emails(6)
    rows.append({"text": rows[0]["text"], "target": {**rows[0]["target"], "items": []}})
    with (project / "data/examples.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "target"])
        for r in rows:
            writer.writerow([r["text"], json.dumps(r["target"])])
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["data"]["path"] = "data/examples.csv"
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg))
    p = Project.load(project)
    examples, _ = p.load_data()
    assert examples[1].label == json.dumps(rows[1]["target"], sort_keys=True, ensure_ascii=False)
    err = _data_error(project)
    assert [i.code for i in err.issues] == ["conflicting-duplicate"]
    assert err.issues[0].line == 2 and "lines 2, 8" in err.issues[0].message


def test_generation_empty_reference_is_a_data_error(tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = questions(6)
    rows[3]["answer"] = "   "  # line 4
    project = write_project(
        tmp_path / "p",
        None,
        task="generation",
        rows=rows,
        candidates=GENERATION_CANDIDATES,
        input_field="question",
        label_field="answer",
    )
    err = _data_error(project)
    assert len(err.issues) == 1
    issue = err.issues[0]
    assert issue.line == 4 and issue.file is not None and issue.file.endswith("examples.jsonl")
    assert "empty" in issue.message and "reference answer" in issue.message
    assert issue.fix and "reference answer" in issue.fix


def test_data_check_command_for_every_task(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from adaptlab.cli import cli

    extraction = write_project(
        tmp_path / "e",
        None,
        task="extraction",
        rows=order_emails(),
        candidates=EXTRACTION_CANDIDATES,
        label_field="target",
        schema=SCHEMA,
    )
    generation = write_project(
        tmp_path / "g",
        None,
        task="generation",
        rows=questions(),
        candidates=GENERATION_CANDIDATES,
        input_field="question",
        label_field="answer",
    )
    runner = CliRunner()
    out = runner.invoke(cli, ["data", "check", "-p", str(extraction)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "order_id" in out.output and "40 (100%)" in out.output
    assert "split train" in out.output and "unknown label" not in out.output
    out = runner.invoke(cli, ["data", "check", "-p", str(generation)], catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert "per reference answer" in out.output and "split train" in out.output


def test_random_split_is_seeded_group_aware_and_fingerprinted() -> None:
    examples = [
        Example(q["question"], q["answer"], "q.jsonl", i + 1) for i, q in enumerate(questions())
    ]
    examples.append(Example(examples[0].text.upper(), examples[0].label, "q.jsonl", 99))
    a = split_examples(examples, task="generation", test_size=0.25, val_size=0.1, seed=3)
    b = split_examples(examples, task="generation", test_size=0.25, val_size=0.1, seed=3)
    c = split_examples(examples, task="generation", test_size=0.25, val_size=0.1, seed=4)
    assert a == b and a.fingerprint == b.fingerprint
    assert c.fingerprint != a.fingerprint and c.test != a.test
    assert sum(a.counts().values()) == len(examples)
    assert len({normalise(e.text) for e in a.test}) == 10  # a quarter of 40 groups
    holding = [name for name in ("train", "val", "test") if examples[-1] in getattr(a, name)]
    assert examples[0] in getattr(a, holding[0])  # the duplicate sits beside its original
    strat = split_examples(examples, task="classification", test_size=0.25, val_size=0.1, seed=3)
    assert strat.fingerprint != a.fingerprint


def _self_contained(page: str) -> None:
    for banned in ("<script", "<link", "@import", "url(", "src=", "<iframe", "<img"):
        assert banned not in page, banned
