"""Kind 7 of issue 23 (file names are data): a document name that is not UTF-8, or
holds a newline, an escape sequence, a bidirectional override, a leading dash or 250
characters, is indexed under its escaped name, shown escaped, stored as valid UTF-8,
and never fails the rest of the folder; the same for names in write errors and in
``predict``'s errors.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from tests.hostile.test_sizes import rag_project


@pytest.fixture
def embedder(monkeypatch: pytest.MonkeyPatch) -> Any:
    from tests.rag.test_index import FakeEmbedder

    fake = FakeEmbedder()
    monkeypatch.setattr("adaptlab.rag.project.load_embedder", lambda config: fake)
    return fake


# raw file name (bytes, as the file system holds it) -> the name shown and stored
NAMES: dict[str, tuple[bytes, str]] = {
    "not-utf8": (b"\xff\xfe.md", "\\xff\\xfe.md"),
    "latin1": (b"caf\xe9.md", "caf\\xe9.md"),
    "newline": (b"new\nline.md", "new\\nline.md"),
    "carriage-return": (b"carriage\rreturn.md", "carriage\\rreturn.md"),
    "tab": (b"tab\there.md", "tab\\there.md"),
    "escape-sequence": (b"esc\x1b[31mred.md", "esc\\x1b[31mred.md"),
    "bell-and-delete": (b"bell\x07del\x7f.md", "bell\\x07del\\x7f.md"),
    "bidi-override": ("bidi\u202etxt.md".encode(), "bidi\\u202etxt.md"),
    "line-separator": ("line\u2028sep.md".encode(), "line\\u2028sep.md"),
    "leading-dash": (b"-rf.md", "-rf.md"),
    "double-dash": (b"--help.md", "--help.md"),
    "very-long": (b"x" * 240 + b".md", "x" * 240 + ".md"),
    "spaces": (b"  spaced  name .md", "  spaced  name .md"),
    "unicode-kept": ("Grüße 📄.md".encode(), "Grüße 📄.md"),
    "shell-chars": (b"$(rm -rf ~);`x`.md", "$(rm -rf ~);`x`.md"),
}
RAW_CONTROL = ("\x1b", "\r", "\x07", "\x7f", "\u202e", "\u2028", "\udcff")


@pytest.mark.parametrize("case", list(NAMES))
def test_an_odd_document_name_is_indexed_and_shown_escaped(
    cli: Any, tmp_path: Path, embedder: Any, case: str
) -> None:
    from adaptlab.engine.project import Project
    from adaptlab.rag.index import RagIndex
    from adaptlab.rag.project import docs_fingerprint

    raw, shown = NAMES[case]
    root = rag_project(tmp_path / "p", {})
    with open(os.fsencode(root / "docs") + b"/" + raw, "wb") as fh:
        fh.write(b"# Odd\n\nThe zanzibar refund policy lives in this oddly named file.\n")
    text = cli("rag", "index", "-p", root).ok()
    assert "2 new" in text and "skipped" not in text, text
    assert not any(c in text for c in RAW_CONTROL), repr(text)
    index = RagIndex.open(root / ".adaptlab" / "rag")
    assert {c.path for c in index.chunks} == {"good.md", shown}
    version = root / ".adaptlab" / "rag" / "versions" / index.version
    for name in ("chunks.jsonl", "manifest.json"):
        (version / name).read_bytes().decode("utf-8")  # stored as valid UTF-8
    assert shown in json.loads((version / "manifest.json").read_text())["files"]
    again = cli("rag", "index", "-p", root).ok()  # the escaped name finds its old chunks
    assert "2 unchanged" in again and "0 embedded" not in again
    assert docs_fingerprint(Project.load(root))  # what 'run' hashes: no crash either
    hits = cli("rag", "query", "-p", root, "zanzibar refund", "--mode", "bm25").ok()
    assert "Odd" in hits and not any(c in hits for c in RAW_CONTROL)


@pytest.mark.timeout(20)
def test_a_fifo_named_like_a_document_is_skipped_not_waited_for(
    cli: Any, tmp_path: Path, embedder: Any
) -> None:
    from adaptlab.engine.project import Project
    from adaptlab.rag.project import docs_fingerprint

    root = rag_project(tmp_path / "p", {})
    os.mkfifo(root / "docs" / "pipe.md")
    text = cli("rag", "index", "-p", root).ok()
    assert "skipped pipe.md: a named pipe (FIFO), not a regular file" in text
    assert docs_fingerprint(Project.load(root))  # 'run' hashed it with read_bytes(): a hang


def test_a_write_error_shows_an_odd_name_escaped(cli: Any, tmp_path: Path) -> None:
    from tests.hostile.projects import stored_project

    root = stored_project(tmp_path / "p", ["a", "b"], 20)
    blocker = tmp_path / "bad\nname\x1b[2J"
    blocker.write_text("a file where a folder would be")
    result = cli("export", "results", "-p", root, "-o", blocker / "out.json")
    result.error("bad\\nname\\x1b[2J", "a file is on the way")
    assert "\x1b" not in result.stderr


def test_predict_names_an_undecodable_input_file_escaped(
    cli: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import numpy as np

    from tests.hostile.test_sizes import FakeEncoder, model_folder, saved

    monkeypatch.setattr("adaptlab.engine.artifact._load_encoder", lambda *a: FakeEncoder())
    folder = model_folder(tmp_path / "model", saved(vectors=np.ones((6, 8), np.float32)))
    name = os.fsencode(tmp_path) + b"/in\xff\n.txt"
    with open(name, "wb") as fh:
        fh.write(b"ok\ncaf\xe9\n")
    result = cli("predict", "--model", folder, os.fsdecode(name))
    result.error("in\\xff\\n.txt:2", "not utf-8-sig")
    assert "\udcff" not in result.stderr
