"""The hostile-input suite: broken or hostile inputs, each with the right handling.

Every case runs the real CLI entry point in-process (``adaptlab.cli.main``) under a
timeout and asserts that it either succeeds or stops with a user error (exit 2) that
names where and how to fix it. An exception escaping ``main`` fails the case (that
is a raw traceback for the user); so does ``internal error`` (exit 3), which is
what the CLI prints for a bug. Count the cases with ``pytest -m hostile --co -q``.
"""

from __future__ import annotations

import json
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


HERE = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Every case here is a hostile input and runs under a timeout: a hang is a failure.
    for item in items:
        if HERE in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.hostile)
            if item.get_closest_marker("timeout") is None:
                item.add_marker(pytest.mark.timeout(120))
