"""`adaptlab keys` prints a key's name as the user typed it, never as rich markup."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.conftest import run_cli


@pytest.mark.parametrize("name", ["[bold]ops[/", "[/]", "[red]admin[/red]", "a[link=x]b"])
def test_a_key_named_with_markup_is_listed_verbatim(
    tmp_path: Path, example_project: Path, name: str
) -> None:
    root = tmp_path / "p"
    shutil.copytree(example_project, root)
    added = run_cli("keys", "add", name, "-p", str(root))
    assert added.exit_code == 0, added.output
    listed = run_cli("keys", "list", "-p", str(root))
    assert listed.exit_code == 0, listed.output
    # the table may fold a long name over two lines of its cell: read it without borders
    cells = "".join(ch for ch in listed.output if ch not in " │┃\n")
    assert name in cells
    revoked = run_cli("keys", "revoke", name, "-p", str(root))
    assert revoked.exit_code == 0 and name in revoked.output
