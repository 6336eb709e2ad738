"""Every warning's ``fix:`` is a complete sentence that names an action.

The test triggers each warning it can (``data check`` on data with duplicates, a
conflict kept on purpose, a rare class, an imbalance, too few examples, German text
under an English encoder and an English generative model; ``data check FILE`` on a
chat file with an extra key) and checks each fix: it starts with a verb that says
what to do and ends with a full stop.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from adaptlab.core.errors import Issue
from adaptlab.engine.project import Project
from adaptlab.train.chat_file import load_chat_file
from tests.test_language_prompts import GERMAN, _gguf

#: The verbs a fix may start with: each says what the user does.
ACTIONS = {
    "add", "check", "collect", "copy", "decide", "delete", "give", "point", "remove",
    "rerun", "run", "set", "use", "write",
}  # fmt: skip
#: Every warning code this test triggers; a new code must be added here (and pass).
EXPECTED = {
    "duplicate", "conflicting-duplicate", "few-per-class", "imbalance", "small-data",
    "language", "generator-language", "record_unrecognized_key",
}  # fmt: skip


def _warnings(tmp_path: Path) -> list[Issue]:
    root = tmp_path / "p"
    (root / "data").mkdir(parents=True)
    rows = [{"text": t, "label": label} for label, texts in GERMAN.items() for t in texts]
    rows.append(dict(rows[0]))  # an exact duplicate
    rows.append({"text": rows[1]["text"], "label": "shipping"})  # a conflict, kept (warn)
    rows += [{"text": "Wie lange ist mein Gutschein gültig?", "label": "general"}] * 1
    rows.append({"text": "Haben Sie den Artikel auch in Blau?", "label": "general"})
    (root / "data" / "d.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    gguf = _gguf(tmp_path / "m.gguf", {"general.languages": ["en"]})
    cfg = {
        "name": "fixes",
        "data": {"path": "data/d.jsonl", "conflicts": "warn"},
        "labels": {"billing": "payments", "shipping": "parcels", "general": "anything else"},
        "llms": {"local": {"backend": "hf", "name": str(gguf)}},
        "candidates": [
            {"name": "zs", "strategy": "zero-shot"},
            {"name": "llm", "strategy": "llm-zero-shot", "llm": "local"},
        ],
    }
    (root / "adaptlab.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    found = Project.load(root).check_data().warnings
    chat = tmp_path / "chat.jsonl"
    record = {
        "messages": [{"role": "user", "content": "Hallo"}, {"role": "assistant", "content": "x"}],
        "meta": 1,
    }
    chat.write_text(json.dumps(record) + "\n")
    found += load_chat_file(chat)[1]
    return found


def test_every_warning_fix_is_a_sentence_with_an_action(tmp_path: Path) -> None:
    warnings = _warnings(tmp_path)
    assert {w.code for w in warnings} == EXPECTED
    for w in warnings:
        fix = w.fix or ""
        first = re.split(r"[\s,;:]", fix, maxsplit=1)[0].lower()
        assert first in ACTIONS, f"{w.code}: the fix does not start with an action: {fix!r}"
        assert fix.endswith("."), f"{w.code}: the fix is no whole sentence: {fix!r}"
        assert len(fix.split()) >= 5, f"{w.code}: a fragment: {fix!r}"


@pytest.mark.parametrize("conflicts", ["error", "warn"])
def test_the_conflict_fix_offers_warn_only_when_it_is_not_set(
    tmp_path: Path, conflicts: str
) -> None:
    from adaptlab.data import Example, check_examples

    examples = [Example("a b c", "x", "f", 1), Example("a b c", "y", "f", 2)]
    report = check_examples(examples, ["x", "y"], conflicts=conflicts)
    (issue,) = [i for i in report.issues if i.code == "conflicting-duplicate"]
    # kept on purpose it is a warning data check prints, not dropped
    assert issue.severity == ("error" if conflicts == "error" else "warning")
    assert issue.fix is not None and issue.fix.endswith(".")
    assert ("data.conflicts: warn" in issue.fix) == (conflicts == "error")
