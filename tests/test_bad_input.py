"""Broken data and config files: each gets an error naming file and line, and nothing
half-written is left behind (no project folder from ``init``, no ``.adaptlab`` from ``run``).
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import yaml

from adaptlab.cli import main

# Broken inputs of the issue-7 suite (counted with `pytest -m hostile --co`).
pytestmark = [pytest.mark.hostile, pytest.mark.timeout(120)]

GOOD = [
    {"text": f"ticket {i} about {label} things number {i}", "label": label}
    for i, label in enumerate(
        ["billing", "technical", "shipping", "account", "refund", "general"] * 4
    )
]


def jsonl(rows: Sequence[object]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def good_lines() -> list[bytes]:
    return jsonl(GOOD).splitlines(keepends=True)


def with_line(n: int, raw: bytes) -> bytes:
    """The good data with line ``n`` (1-based) replaced by ``raw``."""
    lines = good_lines()
    lines[n - 1] = raw + b"\n"
    return b"".join(lines)


# name, data file name, bytes, expected line, substring of the message
DATA_CASES = [
    ("bad-json", "d.jsonl", with_line(3, b'{"text": "oops", "label": '), 3, "invalid JSON"),
    ("missing-field", "d.jsonl", with_line(2, b'{"text": "no label here"}'), 2, "missing label"),
    ("missing-input", "d.jsonl", with_line(5, b'{"label": "billing"}'), 5, "missing input"),
    ("empty-file", "d.jsonl", b"", 1, "no records"),
    ("blank-lines-only", "d.jsonl", b"\n\n  \n", 1, "no records"),
    ("empty-text", "d.jsonl", with_line(4, b'{"text": "   ", "label": "billing"}'), 4, "is empty"),
    ("not-an-object", "d.jsonl", with_line(6, b'["a", "billing"]'), 6, "expected a JSON object"),
    ("wrong-type", "d.jsonl", with_line(7, b'{"text": "x y", "label": ["billing"]}'), 7, "must be"),
    (
        "latin1-bytes",
        "d.jsonl",
        with_line(8, '{"text": "Rücksendung", "label": "refund"}'.encode("latin-1")),
        8,
        "not valid utf-8",
    ),
    (
        "conflicting-duplicate",
        "d.jsonl",
        with_line(9, json.dumps({"text": GOOD[0]["text"], "label": "refund"}).encode()),
        1,
        "conflicting labels",
    ),
    (
        "unknown-label",
        "d.jsonl",
        with_line(10, b'{"text": "hello there", "label": "sales"}'),
        10,
        "unknown label 'sales'",
    ),
    (
        "csv-wrong-columns",
        "d.csv",
        b"text,label\nfine text,billing\nsome,extra,column\nmore,refund\n",
        3,
        "columns",
    ),
    (
        "csv-missing-column",
        "d.csv",
        b"body,label\nfine text,billing\nother text,refund\n",
        2,
        # said once, with the column to name: not the same issue on every line
        "no record has the input field 'text' (the records' fields: body, label) fix: name "
        "the field that holds the input: for a new project 'adaptlab init DIR --data d.csv "
        "--input-field body'",
    ),
    (
        "jsonl-labels-under-another-name",
        "d.jsonl",
        b'{"text": "a", "category": "billing", "id": 1}\n{"text": "b", "category": "refund"}\n',
        1,
        "no record has the label field 'label' (the records' fields: category, id, text) fix: "
        "name the field that holds the label (one of: category, id)",
    ),
    (
        "jsonl-one-record-without-label",
        "d.jsonl",
        b'{"text": "a", "label": "billing"}\n{"text": "b"}\n',
        2,
        "missing label field 'label'",
    ),
    (
        "csv-unclosed-quote",
        "d.csv",
        b'text,label\n"never closed,billing\nnext,refund\n',
        2,
        "",
    ),
]


def _write_project(
    root: Path, data_name: str, data: bytes, *, config: dict[str, Any] | None = None
) -> Path:
    root.mkdir(parents=True)
    (root / "data").mkdir()
    (root / "data" / data_name).write_bytes(data)
    cfg = config or {
        "name": "broken",
        "data": {"path": f"data/{data_name}"},
        "labels": {g["label"]: f"about {g['label']}" for g in GOOD},
        "candidates": [{"name": "zs", "strategy": "zero-shot"}],
    }
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return root


def _cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str) -> str:
    monkeypatch.setattr(sys, "argv", ["adaptlab", *args])
    with pytest.raises(SystemExit) as exc:
        main()
    out = capsys.readouterr()
    assert exc.value.code == 2, out.out + out.err
    return " ".join((out.err + out.out).split())  # rich wraps long lines


DataCase = tuple[str, str, bytes, int, str]
data_cases = pytest.mark.parametrize("case", DATA_CASES, ids=[c[0] for c in DATA_CASES])


@data_cases
def test_broken_data_run(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: DataCase,
) -> None:
    _, fname, data, line, needle = case
    project = _write_project(tmp_path / "p", fname, data)
    before = sorted(p.name for p in project.rglob("*"))
    msg = _cli(monkeypatch, capsys, "run", "-p", str(project))
    assert f"{fname}:{line}" in msg
    assert needle.lower() in msg.lower()
    assert "fix:" in msg
    assert sorted(p.name for p in project.rglob("*")) == before, "run left files behind"


@data_cases
def test_broken_data_init(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    case: DataCase,
) -> None:
    name, fname, data, line, _ = case
    if name == "unknown-label":
        pytest.skip("init takes its labels from the data, so no label is unknown")
    src = tmp_path / fname
    src.write_bytes(data)
    target = tmp_path / "new-project"
    msg = _cli(monkeypatch, capsys, "init", str(target), "--data", str(src))
    assert f"{fname}:{line}" in msg
    assert not target.exists()
    assert [p.name for p in tmp_path.iterdir()] == [fname], "init left a folder behind"


def test_unknown_label_in_own_test_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    project = _write_project(tmp_path / "p", "d.jsonl", jsonl(GOOD))
    test_rows = [GOOD[0] | {"text": "fresh one"}, {"text": "another one", "label": "warranty"}]
    (project / "data" / "test.jsonl").write_bytes(jsonl(test_rows))
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["data"]["test_path"] = "data/test.jsonl"
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg))
    msg = _cli(monkeypatch, capsys, "run", "-p", str(project))
    assert "test.jsonl:2" in msg and "unknown label 'warranty'" in msg
    assert not (project / ".adaptlab").exists()


BASE_YAML = """\
name: broken
data:
  path: data/d.jsonl
labels:
  billing: about billing
  technical: about technical
  shipping: about shipping
  account: about account
  refund: about refund
  general: about general
candidates:
  - name: zs
    strategy: zero-shot
  - name: rag
    strategy: rag
    params:
      top_k: 5
"""

# name, yaml text, expected line, substring
CONFIG_CASES = [
    (
        "yaml-syntax",
        BASE_YAML.replace("  path: data/d.jsonl", "  path: [data/d.jsonl"),
        4,
        "YAML syntax",
    ),
    ("tab-indent", BASE_YAML.replace("  billing:", "\tbilling:"), 5, "YAML syntax"),
    (
        "unknown-key",
        BASE_YAML.replace("candidates:", "candidatse:"),
        11,
        "did you mean 'candidates'",
    ),
    ("typo-param", BASE_YAML.replace("top_k: 5", "top_kk: 5"), 17, "did you mean 'top_k'"),
    ("wrong-type", BASE_YAML + "seed: lots\n", 18, "seed"),
    (
        "out-of-range",
        BASE_YAML.replace("  path: data/d.jsonl", "  path: data/d.jsonl\n  test_size: 1.5"),
        4,
        "test_size",
    ),
    ("bad-param-value", BASE_YAML.replace("top_k: 5", "top_k: -3"), 17, "top_k"),
    (
        "unknown-strategy",
        BASE_YAML.replace("strategy: rag", "strategy: ragg"),
        15,
        "unknown strategy 'ragg'",
    ),
    ("duplicate-candidate", BASE_YAML.replace("name: rag", "name: zs"), 11, "appears twice"),
    (
        "one-label",
        BASE_YAML.split("  technical")[0] + "candidates:\n  - {name: zs, strategy: zero-shot}\n",
        4,
        "two labels",
    ),
    ("empty-config", "", 1, "empty"),
    ("top-level-list", "- name: broken\n", 1, "mapping"),
    (
        "missing-data-file",
        BASE_YAML.replace("data/d.jsonl", "data/nope.jsonl"),
        3,
        "does not exist",
    ),
]


@pytest.mark.parametrize(
    ("name", "text", "line", "needle"), CONFIG_CASES, ids=[c[0] for c in CONFIG_CASES]
)
def test_broken_config(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    name: str,
    text: str,
    line: int,
    needle: str,
) -> None:
    project = _write_project(tmp_path / "p", "d.jsonl", jsonl(GOOD))
    (project / "adaptlab.yaml").write_text(text)
    msg = _cli(monkeypatch, capsys, "run", "-p", str(project))
    assert f"adaptlab.yaml:{line}" in msg
    assert needle.lower() in msg.lower()
    assert "fix:" in msg
    assert not (project / ".adaptlab").exists()


def test_cases_count() -> None:
    """The issue asks for at least 15 broken files; keep the table honest."""
    assert len(DATA_CASES) + len(CONFIG_CASES) + 1 >= 15


def test_init_into_non_empty_folder_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "taken"
    target.mkdir()
    (target / "notes.txt").write_text("mine")
    msg = _cli(monkeypatch, capsys, "init", str(target), "--example", "support-tickets")
    assert "not empty" in msg
    assert [p.name for p in target.iterdir()] == ["notes.txt"]
    shutil.rmtree(target)
