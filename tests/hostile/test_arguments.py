"""Arguments, settings and values that are data (issue 23, kinds 7 and 8).

Each must mean what it says or be refused with where and how to fix it: a tuning share
that leaves nothing to report on, one chat file given as train and val, JSON text that
is not Unicode, a ``model:`` section naming a generative backend, and settings that
make a measurement say nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.conftest import GOOD, base_config, jsonl, write_project
from tests.rag.test_rag_cli import make_project

# ---------------------------------------------------------------- rag eval --tune


def _queries(root: Path, n: int) -> None:
    """Keep the first ``n`` of the project's four judged queries."""
    keep = [json.loads(line) for line in (root / "queries.jsonl").read_text().splitlines()][:n]
    (root / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in keep))
    lines = (root / "qrels.tsv").read_text().splitlines()
    (root / "qrels.tsv").write_text("\n".join(lines[: n + 1]) + "\n")


@pytest.fixture(scope="module")
def rag_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.rag.test_rag_cli import invoke

    root = make_project(tmp_path_factory.mktemp("rag") / "p", {"mode": "bm25"})
    assert invoke("rag", "index", "-p", str(root)).exit_code == 0
    return root


@pytest.mark.parametrize(
    ("n", "share", "needles"),
    [
        (4, "0.9", ("--tune 0.9 on 4 judged queries leaves no query", "at most 0.62")),
        (3, "0.9", ("on 3 judged queries", "at most 0.50")),
        (2, "0.9", ("on 2 judged queries", "at most 0.25")),
        (1, "0.5", ("on 1 judged query leaves", "at least two judged queries")),
        (1, "0.01", ("on 1 judged query leaves",)),
    ],
)
def test_a_tuning_share_that_leaves_no_query_is_refused(
    cli: Any, rag_project: Path, tmp_path: Path, n: int, share: str, needles: tuple[str, ...]
) -> None:
    import shutil

    root = tmp_path / "p"
    shutil.copytree(rag_project, root)
    _queries(root, n)
    queries, qrels = root / "queries.jsonl", root / "qrels.tsv"
    args = ("rag", "eval", "-p", root, "--queries", queries, "--qrels", qrels)
    cli(*args, "--tune", share, "--latency-queries", "0").error(*needles)


def test_the_suggested_tuning_share_works(cli: Any, rag_project: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "p"
    shutil.copytree(rag_project, root)
    queries, qrels = root / "queries.jsonl", root / "qrels.tsv"
    args = ("rag", "eval", "-p", root, "--queries", queries, "--qrels", qrels)
    text = cli(*args, "--tune", "0.62", "--latency-queries", "0").ok()
    assert "chosen on 2 queries" in text and "scored on 2 queries" in text


@pytest.mark.parametrize(
    "line",
    [
        '{"_id": "q1", "text": "refund \\ud800"}',
        '{"_id": "q1\\udc80", "text": "refund"}',
        '{"_id": "q1", "text": "refund", "\\udfff": 1}',
        '["q1", "refund"]',
        '{"_id": "q1", "text": NaN}',
    ],
    ids=["lone-high-surrogate", "surrogate-in-id", "surrogate-in-key", "not-an-object", "nan"],
)
def test_a_query_line_that_is_not_unicode_or_no_query_names_its_line(
    cli: Any, rag_project: Path, tmp_path: Path, line: str
) -> None:
    queries = tmp_path / "q.jsonl"
    queries.write_text('{"_id": "q2", "text": "parcels"}\n' + line + "\n", encoding="utf-8")
    args = ("rag", "eval", "-p", rag_project, "--queries", queries, "--qrels")
    text = cli(*args, rag_project / "qrels.tsv", "--latency-queries", "0").error("q.jsonl:2")
    assert "\\ud800" not in text or "lone surrogate" in text


# ---------------------------------------------------------------- one file as two


def _chat(path: Path, prompts: list[str]) -> Path:
    rows = [
        {"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": "a"}]}
        for p in prompts
    ]
    path.write_bytes(jsonl(rows))
    return path


SAME_FILE = [
    ("same-path", lambda d: (d / "c.jsonl", d / "c.jsonl"), "--val", "--val names the same file"),
    ("dot-slash", lambda d: (d / "c.jsonl", d / "." / "c.jsonl"), "--val", "same file as FILE"),
    ("via-link", lambda d: (d / "c.jsonl", d / "link.jsonl"), "--val", "same file as FILE"),
    ("dot-dot", lambda d: (d / "c.jsonl", d / "sub" / ".." / "c.jsonl"), "--test", "--test names"),
    ("hard-link", lambda d: (d / "c.jsonl", d / "hard.jsonl"), "--val", "same file as FILE"),
]


@pytest.mark.parametrize(("how", "paths", "option", "needle"), SAME_FILE, ids=lambda c: c)
def test_one_chat_file_given_as_two_roles_is_refused(
    cli: Any, tmp_path: Path, how: str, paths: Any, option: str, needle: str
) -> None:
    _chat(tmp_path / "c.jsonl", ["hi", "how are you", "what now"])
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "c.jsonl")
    os.link(tmp_path / "c.jsonl", tmp_path / "hard.jsonl")
    first, second = paths(tmp_path)
    args = ("data", "check", first, option, second, "--model", "smollm2-135m-instruct")
    cli(*args).error(needle, "scored on what it was trained on")


def test_val_and_test_naming_one_file_are_refused(cli: Any, tmp_path: Path) -> None:
    train = _chat(tmp_path / "train.jsonl", ["a", "b", "c"])
    other = _chat(tmp_path / "other.jsonl", ["d", "e", "f"])
    args = ("data", "check", train, "--val", other, "--test", other)
    cli(*args, "--model", "smollm2-135m-instruct").error("--test names the same file as --val")


def test_two_files_sharing_prompts_are_named_by_role_and_path(cli: Any, tmp_path: Path) -> None:
    train = _chat(tmp_path / "train.jsonl", ["a", "b", "c"])
    val = _chat(tmp_path / "val.jsonl", ["b", "x", "y"])
    text = cli("data", "check", train, "--val", val, "--model", "gpt-4o-mini").ok()
    assert f"1 user prompt(s) of train ({train}) also appear in val ({val})" in text


# ---------------------------------------------------------------- JSON that is not Unicode

NOT_UNICODE = [
    ("text", lambda r: {**r, "text": "refund \ud800 please"}),
    ("text-low-surrogate", lambda r: {**r, "text": "\udc80"}),
    ("label", lambda r: {**r, "label": "billing\udbff"}),
    ("extra-field", lambda r: {**r, "note": "x\udfff"}),
    ("key", lambda r: {**r, "\ud800": "x"}),
    ("reversed-pair", lambda r: {**r, "text": "\ude00\ud83d"}),
]


@pytest.mark.parametrize(("what", "spoil"), NOT_UNICODE, ids=[c[0] for c in NOT_UNICODE])
def test_a_data_line_that_is_not_unicode_is_refused_with_its_line(
    cli: Any, tmp_path: Path, what: str, spoil: Any
) -> None:
    rows: list[dict[str, Any]] = [dict(r) for r in GOOD]
    rows[4] = spoil(rows[4])
    root = write_project(tmp_path / "p", jsonl(rows))
    assert b"\\ud" in (root / "data/d.jsonl").read_bytes()  # json.dumps escapes it
    cli("data", "check", "-p", root).error("d.jsonl:5", "not valid Unicode", "lone surrogate")
    cli("run", "-p", root).error("d.jsonl:5", "not valid Unicode")


def test_a_surrogate_pair_is_text(cli: Any, tmp_path: Path) -> None:
    rows: list[dict[str, Any]] = [dict(r) for r in GOOD]
    rows[4]["text"] = "refund 😀 please"  # written as the pair \ud83d\ude00
    root = write_project(tmp_path / "p", jsonl(rows))
    assert b"\\ud83d\\ude00" in (root / "data/d.jsonl").read_bytes()
    cli("data", "check", "-p", root).ok()


@pytest.mark.parametrize(
    "message",
    [
        {"role": "user", "content": "hi \ud800"},
        {"role": "user\udc80", "content": "hi"},
        {"role": "user", "content": [{"type": "text", "text": "x\udfff"}]},
    ],
    ids=["content", "role", "content-part"],
)
def test_a_chat_line_that_is_not_unicode_is_refused_with_its_line(
    cli: Any, tmp_path: Path, message: dict[str, Any]
) -> None:
    rows = [
        {"messages": [{"role": "user", "content": "fine"}, {"role": "assistant", "content": "a"}]},
        {"messages": [message, {"role": "assistant", "content": "a"}]},
    ]
    path = tmp_path / "c.jsonl"
    path.write_bytes(jsonl(rows))
    cli("data", "check", path, "--model", "smollm2-135m-instruct").error("c.jsonl:2")


# ---------------------------------------------------------------- the encoder section


@pytest.mark.parametrize(
    ("model", "needles"),
    [
        ({"backend": "openai", "name": "gpt-4o-mini"}, ("'openai' is a generative model",)),
        ({"backend": "anthropic"}, ("'anthropic' is a generative model",)),
        ({"backend": "hf", "name": "x"}, ("'hf' is a generative model", "under 'llms:'")),
        ({"backend": "fake"}, ("'fake' is a generative model",)),
        ({"backend": "nope"}, ("unknown backend 'nope'", "sentence-transformers")),
        ({"backend": ""}, ("unknown backend ''",)),
    ],
    ids=["openai", "anthropic", "hf", "fake", "unknown", "empty"],
)
def test_a_model_section_that_is_no_encoder_names_the_key(
    cli: Any, tmp_path: Path, model: dict[str, Any], needles: tuple[str, ...]
) -> None:
    root = write_project(tmp_path / "p", config=base_config(model=model))
    cli("run", "-p", root).error("adaptlab.yaml", "model.backend" if model["backend"] else "")
    cli("data", "check", "-p", root).error(*needles)


# ---------------------------------------------------------------- settings that say nothing


def test_one_consistency_sample_is_refused(cli: Any, tmp_path: Path) -> None:
    cfg = base_config(evaluation={"baseline": False, "consistency_samples": 1})
    root = write_project(tmp_path / "p", config=cfg)
    cli("run", "-p", root).error("consistency_samples", "agrees with itself")


@pytest.mark.parametrize(
    ("evaluation", "needle"),
    [
        ({"latency_samples": 1}, "latency_samples is 1: a p95 of fewer than 20"),
        ({"latency_samples": 19}, "latency_samples is 19"),
        ({"consistency_samples": 2, "consistency_inputs": 3}, "consistency_inputs is 3"),
    ],
    ids=["latency-1", "latency-19", "consistency-3-inputs"],
)
def test_a_setting_that_makes_a_measurement_say_little_is_warned_about(
    cli: Any, tmp_path: Path, evaluation: dict[str, Any], needle: str
) -> None:
    cfg = base_config(evaluation={"baseline": False, **evaluation})
    root = write_project(tmp_path / "p", config=cfg)
    assert needle in cli("run", "-p", root).ok()


def test_a_sound_setting_warns_nothing(cli: Any, tmp_path: Path) -> None:
    cfg = base_config(evaluation={"baseline": False, "latency_samples": 20})
    root = write_project(tmp_path / "p", config=cfg)
    assert "latency_samples is" not in cli("run", "-p", root).ok()


# ---------------------------------------------------------------- rag eval's own files


@pytest.mark.parametrize("which", ["queries", "qrels"])
@pytest.mark.parametrize(
    ("spoil", "needle"),
    [
        ("fifo", "not a regular file"),
        ("folder", "not a regular file"),
        ("latin-1", "not UTF-8 text"),
        ("too-big", "--max-file-mb"),
        ("missing", "not found"),
    ],
)
def test_rag_eval_files_are_read_bounded_and_named(
    cli: Any, rag_project: Path, tmp_path: Path, which: str, spoil: str, needle: str
) -> None:
    files = {"queries": rag_project / "queries.jsonl", "qrels": rag_project / "qrels.tsv"}
    bad = tmp_path / f"bad.{which}"
    if spoil == "fifo":
        os.mkfifo(bad)  # nobody writes: a plain read would hang
    elif spoil == "folder":
        bad.mkdir()
    elif spoil == "latin-1":
        bad.write_bytes(files[which].read_bytes().replace(b"refund", b"r\xe9fund"))
    elif spoil == "too-big":
        bad.write_bytes(files[which].read_bytes() * 200)
    files[which] = bad
    args = ("rag", "eval", "-p", rag_project, "--queries", files["queries"], "--qrels")
    result = cli(*args, files["qrels"], "--max-file-mb", "0.01")
    if spoil == "folder":  # click's own check of the argument, before any reading
        assert result.code == 2 and "is a directory" in result.text
    else:
        result.error(str(bad), needle)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"OPENAI_API_KEY: " + b"x" * (2 << 20), "over the limit of a keys file"),
        (b"OPENAI_API_KEY: sk-\xff\xfe", "cannot read the keys file"),
        (b"- just\n- a list\n", "must map names to keys"),
    ],
    ids=["huge", "not-utf8", "a-list"],
)
def test_a_keys_file_is_read_bounded_and_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, content: bytes, needle: str
) -> None:
    from adaptlab.core.errors import ConfigError
    from adaptlab.llm.keys import find_key

    path = tmp_path / "keys.yaml"
    path.write_bytes(content)
    path.chmod(0o600)
    monkeypatch.setenv("ADAPTLAB_KEYS_FILE", str(path))
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(ConfigError, match=needle) as exc:
        find_key("OPENAI_API_KEY")
    assert exc.value.fix and "sk-" not in str(exc.value)
