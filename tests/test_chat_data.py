"""Chat JSONL: ``adaptlab data check FILE`` and ``adaptlab data convert``, through the CLI.

Each broken file in ``tests/data/chat/`` stops ``data check`` with its documented error
(the codes of :mod:`adaptlab.train.chat_file`), naming the file and line and a fix; a valid
file prints its statistics; a project converted with ``data convert`` passes the check.
"""

from __future__ import annotations

import csv
import json
import random
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import SHARED

DATA = Path(__file__).parent / "data" / "chat"


@dataclass
class Result:
    code: int
    text: str  # stdout and stderr, whitespace folded (rich wraps long lines)


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``cli("data", "check", f)`` -> Result; a traceback or an internal error fails."""
    from adaptlab.cli import main

    def call(*args: object) -> Result:
        monkeypatch.setenv("COLUMNS", "200")
        monkeypatch.setattr(sys, "argv", ["adaptlab", *map(str, args)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main()
        out = capsys.readouterr()
        text = " ".join((out.err + "\n" + out.out).split())
        code = exc.value.code if isinstance(exc.value.code, int) else 1
        assert "Traceback" not in text and code != 3, text
        return Result(code, text)

    return call


# file, line, what the error says (its code among it)
BROKEN = [
    ("data_type.jsonl", 2, "the record is an array, not an object (data_type)"),
    ("missing_messages_list.jsonl", 3, "'messages' is missing (missing_messages_list)"),
    ("empty_messages.jsonl", 1, "'messages' is an empty list (missing_messages_list)"),
    ("message_missing_key.jsonl", 2, "message 1: has no role (message_missing_key)"),
    ("message_unrecognized_key.jsonl", 1, "['mood'] (message_unrecognized_key)"),
    ("unrecognized_role.jsonl", 2, 'message 1: has role "human" (unrecognized_role)'),
    ("missing_content.jsonl", 2, "message 2: content is empty (missing_content)"),
    ("content_not_string.jsonl", 3, "message 2: content is a number (missing_content)"),
    (
        "example_missing_assistant_message.jsonl",
        2,
        "no assistant message (example_missing_assistant_message)",
    ),
    ("message_not_object.jsonl", 1, "message 1: is a string, not an object"),
    ("invalid_weight.jsonl", 2, "message 2: weight is 2 (invalid_weight)"),
    ("bad_json.jsonl", 2, "invalid JSON at column 92"),
    ("json_array.jsonl", 1, "one JSON array, not JSON Lines"),
    ("empty.jsonl", 1, "the file holds no records (empty_file)"),
    ("not_utf8.jsonl", 2, "byte 0xfc is not valid utf-8"),
    ("nul_byte.jsonl", 2, "the file holds a NUL byte"),
    ("labelled.jsonl", 1, "this is not a chat file"),
    ("nan_value.jsonl", 2, "NaN is not a JSON value"),
    ("duplicate_key.jsonl", 1, "key 'messages' appears twice"),
]


@pytest.mark.parametrize(("name", "line", "message"), BROKEN, ids=[b[0] for b in BROKEN])
def test_broken_chat_file_names_its_error_and_line(
    cli: Any, name: str, line: int, message: str
) -> None:
    path = DATA / name
    result = cli("data", "check", path)
    assert result.code == 2, result.text
    assert f"{path}:{line}: " in result.text, result.text
    assert message in result.text, result.text
    assert "fix:" in result.text


def test_errors_are_folded_per_kind_with_a_count(cli: Any) -> None:
    path = DATA / "many_errors.jsonl"
    result = cli("data", "check", path)
    assert result.code == 2
    assert "8 format error(s)" in result.text
    for line in range(1, 6):
        assert f"{path}:{line}: no assistant message" in result.text
    assert f"{path}:6:" not in result.text
    assert "and 3 more example_missing_assistant_message on lines 6, 7, 8" in result.text


def test_every_broken_file_is_small() -> None:
    files = sorted(DATA.glob("*.jsonl"))
    assert len(files) >= 12
    assert all(f.stat().st_size < 2000 for f in files)


def _chat(user: str, answer: str, system: str | None = "Route the ticket.") -> dict[str, Any]:
    messages = [{"role": "system", "content": system}] if system else []
    messages += [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    return {"messages": messages}


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def test_valid_file_prints_statistics(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = ["billing"] * 14 + ["shipping"] * 5 + ["refund"] * 3
    rows = [_chat(f"ticket number {i} about {lab}", lab) for i, lab in enumerate(labels)]
    rows[4] = _chat("charged twice, IBAN DE89 3704 0044 0532 0130 00, ring 0171 2345678", "refund")
    rows[7] = _chat("my card 4111 1111 1111 1111 was declined", "billing", system=None)
    rows.append(rows[0])  # an identical record
    rows.append(_chat("ticket number 1 about billing", "shipping"))  # same prompt, new answer
    _write(tmp_path / "train.jsonl", rows)
    # A relative path, as typed: the table's places column then never cuts it, however
    # long the temporary folder is.
    monkeypatch.chdir(tmp_path)
    result = cli("data", "check", "train.jsonl", "--model", "gpt-4o-mini-2024-07-18")
    text = result.text
    assert result.code == 0, text
    n = len(rows)
    assert f"{n} chat examples" in text
    assert re.search(r"messages │ 2 │ 3 │ 3 │ 3 │ 3 │ 3\.0", text.replace("┃", "│")), text
    assert "over the context window (128,000 tokens): 0" in text
    answers = Counter(r["messages"][-1]["content"] for r in rows)
    assert f"answers: {len(answers)} distinct" in text
    for answer, count in answers.items():
        assert re.search(rf"{answer}\s*│\s*{count}\s*│\s*{count / n:.1%}", text), answer
    assert "answers are imbalanced" in text  # 14 billing vs 4 refund
    assert "1 duplicate record(s) in 1 group(s), e.g. lines 1, 23" in text
    assert "1 prompt(s) have different answers, e.g. lines 2, 24" in text
    assert f"system message in {n - 1} of {n} examples (1 distinct)" in text
    # personal data: counted and placed, never printed in full
    assert re.search(r"iban │ 1 │ \S*train\.jsonl:5 DE\*\*", text), text
    assert re.search(r"phone │ 1 │ \S*train\.jsonl:5 017", text), text
    assert re.search(r"credit_card │ 1 │ \S*train\.jsonl:8 4\*\*\*", text), text
    assert "0532 0130" not in text and "2345678" not in text and "4111 1111" not in text
    # the cost: 24 examples -> 100 // 24 = 4 epochs (OpenAI's rule), 3 USD per 1M tokens
    assert "training cost for gpt-4o-mini-2024-07-18: 4 epochs" in text
    billed = int(re.search(r"= ~?([\d,]+) tokens", text).group(1).replace(",", ""))  # type: ignore[union-attr]
    per_epoch = int(re.search(r"x ~?([\d,]+) billed", text).group(1).replace(",", ""))  # type: ignore[union-attr]
    assert billed == 4 * per_epoch
    usd = float(re.search(r"([\d.]+) USD", text).group(1))  # type: ignore[union-attr]
    assert usd == pytest.approx(billed * 3.0 / 1e6, abs=0.006)


def test_leakage_between_train_val_and_test(cli: Any, tmp_path: Path) -> None:
    train = _write(tmp_path / "train.jsonl", [_chat(f"question {i}", "a") for i in range(6)])
    val = _write(tmp_path / "val.jsonl", [_chat("Question 2!", "a"), _chat("fresh", "a")])
    test = _write(tmp_path / "test.jsonl", [_chat("question 4", "b"), _chat("fresh", "b")])
    result = cli("data", "check", train, "--val", val, "--test", test)
    assert result.code == 0, result.text
    assert f"1 user prompt(s) of train ({train}) also appear in val ({val}) (lines 3/1)" in (
        result.text
    )
    assert f"of train ({train}) also appear in test ({test}) (lines 5/1)" in result.text
    assert f"of val ({val}) also appear in test ({test}) (lines 2/2)" in result.text
    clean = _write(tmp_path / "clean.jsonl", [_chat("unseen", "a")])
    assert "no user prompt appears in two files" in cli("data", "check", train, "--val", clean).text


def test_errors_of_several_files_at_once(cli: Any, tmp_path: Path) -> None:
    ok = _write(tmp_path / "ok.jsonl", [_chat("q", "a")])
    result = cli(
        "data", "check", ok, "--val", DATA / "data_type.jsonl", "--test", DATA / "empty.jsonl"
    )
    assert result.code == 2
    assert f"{DATA / 'data_type.jsonl'}:2:" in result.text
    assert f"{DATA / 'empty.jsonl'}:1:" in result.text


def test_model_choice(cli: Any, tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", [_chat("q", "a")])
    bad = cli("data", "check", path, "--model", "no-such-model")
    assert bad.code == 2 and "unknown model 'no-such-model'" in bad.text
    claude = cli("data", "check", path, "--model", "claude-3-5-haiku")
    assert claude.code == 0 and "no per-token training price for 'claude-3-5-haiku'" in claude.text
    assert "--val and --test compare chat files" in cli("data", "check", "--val", path).text


def _tiny_tokenizer_folder(folder: Path, window: int, prefix: str = "") -> Any:
    """A word-level tokenizer with a ChatML-like template, saved like a model folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = ["<unk>", "<|im_start|>", "<|im_end|>", "user", "assistant", "yes", "no"]
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>")  # type: ignore[no-untyped-call]
    fast.chat_template = prefix + (
        "{% for m in messages %}<|im_start|> {{ m.role }} {{ m.content }} <|im_end|> {% endfor %}"
    )
    fast.save_pretrained(folder)
    (folder / "config.json").write_text(json.dumps({"max_position_embeddings": window}))
    return fast


def test_local_tokenizer_counts_with_its_chat_template(cli: Any, tmp_path: Path) -> None:
    folder = tmp_path / "tiny-model"
    fast = _tiny_tokenizer_folder(folder, window=40)
    rows = [_chat("is it " * 20, "yes", system=None)] * 2 + [
        _chat(f"short {i}", "no", system=None) for i in range(5)
    ]
    path = _write(tmp_path / "c.jsonl", rows)
    result = cli("data", "check", path, "--model", folder)
    assert result.code == 0, result.text
    lengths = [
        len(fast(fast.apply_chat_template(r["messages"], tokenize=False))["input_ids"])
        for r in rows
    ]
    assert lengths[0] > 40 > lengths[-1]
    assert "tokens (estimate)" not in result.text
    assert f"over the context window (40 tokens): {sum(n > 40 for n in lengths)}" in result.text
    assert re.search(rf"tokens │ {min(lengths)} │ .* │ {max(lengths)} │", result.text)
    assert "no per-token training price" in result.text


def _convert_project(
    root: Path, rows: list[tuple[str, str]], candidates: list[dict[str, Any]]
) -> Path:
    (root / "data").mkdir(parents=True)
    with (root / "data" / "d.csv").open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "category"])
        writer.writerows(rows)
    config = {
        "name": "chat-convert",
        "task": "classification",
        "data": {"path": "data/d.csv", "label_field": "category"},
        "labels": {label: label.replace("_", " ") for label in sorted({r[1] for r in rows})},
        "llms": {"chat": {"backend": "openai", "name": "gpt-4o-mini"}},
        "candidates": candidates,
    }
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def test_convert_then_check(cli: Any, tmp_path: Path) -> None:
    labels = ["billing", "shipping", "refund"]
    rows = [(f"ticket {i} about {labels[i % 3]}", labels[i % 3]) for i in range(30)]
    project = _convert_project(
        tmp_path / "p",
        rows,
        [
            {"name": "zs", "strategy": "zero-shot"},
            {"name": "fs", "strategy": "llm-few-shot", "llm": "chat", "params": {"shots": 3}},
        ],
    )
    refused = cli("data", "convert", "-p", project, "-c", "zs")
    assert (
        refused.code == 2 and "not a prompting candidate" in refused.text and "fs" in refused.text
    )
    over = cli("data", "convert", "-p", project, "-c", "fs", "-o", project / "data" / "d.csv")
    assert over.code == 2 and "would overwrite it" in over.text
    done = cli("data", "convert", "-p", project, "-c", "fs", "--split", "all")
    assert done.code == 0, done.text
    out = project / "data" / "chat" / "fs-all.jsonl"
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == len(rows)
    assert {r["messages"][-1]["content"] for r in records} == set(labels)
    assert all(r["messages"][-1]["role"] == "assistant" for r in records)
    # the few-shot prompt holds 3 training examples before the input
    assert all(r["messages"][-2]["content"].count("<example>") == 3 for r in records)
    assert not list(out.parent.glob("*.tmp"))
    check = cli("data", "check", out)
    assert check.code == 0, check.text
    assert f"{len(rows)} chat examples" in check.text
    train = cli("data", "convert", "-p", project, "-c", "fs")
    assert train.code == 0 and (project / "data" / "chat" / "fs-train.jsonl").is_file()


@pytest.mark.skipif(
    not (SHARED / "data" / "banking77" / "train.csv").is_file(), reason="needs ../shared/data"
)
def test_banking77_converted_to_chat_prints_statistics(cli: Any, tmp_path: Path) -> None:
    """A sample of BANKING77 (2-6 examples of each of its 77 intents) through a zero-shot
    prompt candidate to chat JSONL, then ``data check``: counts checked against the CSV."""
    with (SHARED / "data" / "banking77" / "train.csv").open(newline="") as fh:
        every = [(r["text"], r["category"]) for r in csv.DictReader(fh)]
    rng = random.Random(0)
    rng.shuffle(every)
    want = {cat: rng.randint(2, 6) for cat in sorted({c for _, c in every})}
    seen_texts: set[str] = set()
    rows: list[tuple[str, str]] = []
    for text, cat in every:
        key = " ".join(text.lower().split())
        if want[cat] and key not in seen_texts:
            want[cat] -= 1
            seen_texts.add(key)
            rows.append((text, cat))
    project = _convert_project(
        tmp_path / "b77", rows, [{"name": "zs", "strategy": "llm-zero-shot", "llm": "chat"}]
    )
    shutil.copy(SHARED / "data" / "banking77" / "LICENSE", project / "data" / "LICENSE")
    done = cli("data", "convert", "-p", project, "-c", "zs", "--split", "all")
    assert done.code == 0, done.text
    out = project / "data" / "chat" / "zs-all.jsonl"
    result = cli("data", "check", out)
    text = result.text
    assert result.code == 0, text
    counts = Counter(cat for _, cat in rows)
    assert f"{len(rows)} chat examples" in text
    assert f"answers: {len(counts)} distinct" in text
    assert f"the 50 most common of {len(counts)}" in text
    top_n = max(counts.values())
    for label in (cat for cat, n in counts.items() if n == top_n):  # all in the first 50
        assert re.search(rf"│ {label}\s*│\s*{top_n}\s*│\s*{top_n / len(rows):.1%}", text), label
    assert f"system message in {len(rows)} of {len(rows)} examples (1 distinct)" in text
    assert "duplicates: none; conflicting answers: none" in text
    assert re.search(r"messages │ 3 │ 3 │ 3 │ 3 │ 3 │ 3\.0", text), text
    # OpenAI's epochs for this many examples: 3 (between 34 and 8,333 examples)
    assert f"3 epochs (as OpenAI picks them for {len(rows)} examples)" in text


def test_openai_model_counts_exactly_with_a_cached_encoding(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the encoding's file cached (a stand-in: one token per byte), counts are exact:
    3 to prime the reply, and per message 3 plus the tokens of its role and content."""
    import hashlib

    import tiktoken
    import tiktoken.load

    from adaptlab.llm.tokens import ENCODING_FILES, cache_path

    content = b"stand-in for the real BPE file\n"
    url = "https://example.invalid/o200k_base.tiktoken"
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setitem(ENCODING_FILES, "o200k_base", ((url, hashlib.sha256(content).hexdigest()),))
    Path(cache_path(url, str(tmp_path))).write_bytes(content)
    byte_encoding = tiktoken.Encoding(
        name="bytes",
        pat_str=r"\S+|\s+",
        mergeable_ranks={bytes([i]): i for i in range(256)},
        special_tokens={},
    )
    monkeypatch.setattr(tiktoken, "get_encoding", lambda name: byte_encoding)
    monkeypatch.setattr(tiktoken.load, "read_file", lambda *a: pytest.fail("download"))
    rows = [_chat("hi", "yes", system=None), _chat("hello there", "no", system="Be brief.")]
    path = _write(tmp_path / "c.jsonl", rows)
    result = cli("data", "check", path, "--model", "gpt-4o-mini")
    assert result.code == 0, result.text
    lengths = [
        3 + sum(3 + len(m["role"]) + len(m["content"].encode()) for m in r["messages"])
        for r in rows
    ]
    assert "estimate" not in result.text and "tiktoken o200k_base" in result.text
    assert re.search(rf"tokens │ {min(lengths)} │ .* │ {max(lengths)} │", result.text), result.text
    assert f"x {sum(lengths)} billed tokens per epoch" in result.text
    # 2 examples: 100 // 2 = 50 epochs to reach 100 visits, capped at OpenAI's 25
    assert "25 epochs (as OpenAI picks them for 2 examples)" in result.text
    assert f"= {25 * sum(lengths):,} tokens" in result.text


def test_huge_line_is_counted_over_the_window_or_refused_by_size(cli: Any, tmp_path: Path) -> None:
    huge = "word " * 140_000  # ~700,000 characters: ~175,000 tokens by the estimate
    path = _write(tmp_path / "h.jsonl", [_chat(huge, "ok"), _chat("small", "ok")])
    result = cli("data", "check", path)
    assert result.code == 0, result.text
    assert "over the context window (128,000 tokens): 1" in result.text
    refused = cli("data", "check", path, "--max-file-mb", "0.5")
    assert refused.code == 2, refused.text
    assert f"{path}: the chat file is" in refused.text
    assert "over the limit --max-file-mb" in refused.text and "fix:" in refused.text


def test_local_template_refusing_a_conversation_names_the_line(cli: Any, tmp_path: Path) -> None:
    folder = tmp_path / "strict-model"
    _tiny_tokenizer_folder(
        folder,
        window=64,
        prefix="{% if messages[0].role != 'user' %}"
        "{{ raise_exception('Conversations must start with a user message') }}{% endif %}",
    )
    rows = [_chat("q", "yes", system=None), _chat("q", "no", system="sys"), _chat("r", "no")]
    path = _write(tmp_path / "c.jsonl", rows)
    result = cli("data", "check", path, "--model", folder)
    assert result.code == 2, result.text
    for line in (2, 3):
        assert f"{path}:{line}: the chat template of {folder} refuses this conversation" in (
            result.text
        )
    assert "Conversations must start with a user message (template_refused)" in result.text
    assert f"{path}:1:" not in result.text
    broken = tmp_path / "broken-model"
    broken.mkdir()
    (broken / "tokenizer.json").write_text("{not json")
    (broken / "tokenizer_config.json").write_text("{}")
    refused = cli("data", "check", path, "--model", broken)
    assert refused.code == 2 and "cannot load a tokenizer" in refused.text, refused.text


def test_function_calls_and_tools_are_chat_format(cli: Any, tmp_path: Path) -> None:
    call = {"name": "refund", "arguments": '{"order": "A-1"}'}
    rows = [
        {
            "messages": [
                {"role": "user", "content": "refund order A-1"},
                {"role": "assistant", "content": None, "function_call": call},
                {"role": "function", "name": "refund", "content": "done"},
                {"role": "assistant", "content": "Refunded.", "weight": 1},
            ],
            "functions": [{"name": "refund", "parameters": {"type": "object"}}],
        },
        {**_chat("hi", "hello"), "id": 7},
    ]
    result = cli("data", "check", _write(tmp_path / "f.jsonl", rows))
    assert result.code == 0, result.text
    assert "2 chat examples" in result.text
    assert "record keys ['id'] are not part of the chat format" in result.text  # a warning
