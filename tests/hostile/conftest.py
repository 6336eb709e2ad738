"""The hostile-input suite: broken or hostile inputs, each with the right handling.

Every case runs the real CLI entry point in-process (``adaptlab.cli.main``) under a
timeout and asserts that it either succeeds or stops with a user error (exit 2) that
names where and how to fix it. An exception escaping ``main`` fails the case (that
is a raw traceback for the user); so does ``internal error`` (exit 3), which is
what the CLI prints for a bug. Count the cases with ``pytest -m hostile --co -q``.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

LABELS = ["billing", "technical", "shipping", "account", "refund", "general"]
GOOD: list[dict[str, str]] = [
    {"text": f"ticket {i} about {label} things number {i}", "label": label}
    for i, label in enumerate(LABELS * 4)
]


def jsonl(rows: list[Any]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def base_config(data_name: str = "d.jsonl", **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "name": "hostile",
        "data": {"path": f"data/{data_name}"},
        "labels": {label: f"about {label}" for label in LABELS},
        "candidates": [{"name": "zs", "strategy": "zero-shot"}],
        # The TF-IDF baseline has its own tests (tests/decide); here it would only add a
        # candidate to every expectation.
        "evaluation": {"baseline": False},
    }
    cfg.update(extra)
    return cfg


def write_project(
    root: Path,
    data: bytes | None = None,
    *,
    data_name: str = "d.jsonl",
    config: dict[str, Any] | str | None = None,
) -> Path:
    """A project folder with ``data`` (default: 24 good tickets) and ``config``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "data").mkdir(exist_ok=True)
    (root / "data" / data_name).write_bytes(jsonl(GOOD) if data is None else data)
    cfg = base_config(data_name) if config is None else config
    text = cfg if isinstance(cfg, str) else yaml.safe_dump(cfg, sort_keys=False)
    (root / "adaptlab.yaml").write_text(text, encoding="utf-8")
    return root


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def text(self) -> str:
        """stdout and stderr with runs of whitespace folded (rich wraps long lines)."""
        return " ".join((self.stderr + "\n" + self.stdout).split())

    def error(self, *needles: str) -> str:
        """Assert a user error (exit 2) with a fix line naming every needle."""
        assert self.code == 2, f"exit {self.code}, expected 2:\n{self.stderr}{self.stdout}"
        low = self.text.lower()
        for needle in needles:
            assert needle.lower() in low, f"{needle!r} not in:\n{self.text}"
        assert "fix:" in low, f"no fix line:\n{self.text}"
        return self.text

    def ok(self) -> str:
        assert self.code == 0, f"exit {self.code}:\n{self.stderr}{self.stdout}"
        return self.text


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """``cli("run", "-p", dir)`` -> :class:`CliResult`; a raw traceback fails the test."""
    from adaptlab.cli import main

    def call(*args: str, columns: int = 200) -> CliResult:
        monkeypatch.setenv("COLUMNS", str(columns))
        monkeypatch.setattr(sys, "argv", ["adaptlab", *map(str, args)])
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main()
        out = capsys.readouterr()
        code = exc.value.code if isinstance(exc.value.code, int) else 1
        result = CliResult(code, out.out, out.err)
        assert "Traceback (most recent call last)" not in out.out + out.err, result.text
        assert code != 3, f"internal error (a bug):\n{result.text}"
        return result

    return call


HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every case here is a hostile input and runs under a timeout: a hang is a failure.
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.hostile)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(120))
