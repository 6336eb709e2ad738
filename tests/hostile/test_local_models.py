"""Broken local generative models named under llms: (hf backend): each a clear error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.hostile.conftest import base_config, write_project

pytest.importorskip("transformers")
pytest.importorskip("gguf")


def _project(tmp_path: Path, name: str, strategy: str = "llm-zero-shot") -> Path:
    cfg = base_config(
        llms={"local": {"backend": "hf", "name": name}},
        candidates=[{"name": "lm", "strategy": strategy, "llm": "local"}],
    )
    return write_project(tmp_path / "p", config=cfg)


@pytest.mark.parametrize(
    ("blob", "why"),
    [
        (b"", "empty"),
        (b"GGUF" + b"\x00" * 20, "a header and nothing else"),
        (b"this is a text file\n" * 50, "not GGUF at all"),
        (b"GGUF\x03\x00\x00\x00" + b"\xff" * 64, "absurd tensor counts"),
    ],
)
def test_a_broken_gguf_file_stops_with_its_name(
    cli: Any, tmp_path: Path, blob: bytes, why: str
) -> None:
    model = tmp_path / "model.gguf"
    model.write_bytes(blob)
    result = cli("run", "-p", _project(tmp_path, str(model)), "-c", "lm")
    result.error("cannot read", "model.gguf", "GGUF")


def test_a_missing_model_is_skipped_or_named(cli: Any, tmp_path: Path) -> None:
    root = _project(tmp_path, str(tmp_path / "nowhere.gguf"))
    cli("run", "-p", root, "-c", "lm").error("not found", "nowhere.gguf")
    # Not asked for by name: the run goes on without it and says why.
    cfg = base_config(
        llms={"local": {"backend": "hf", "name": "smollm2-135m"}},
        candidates=[
            {"name": "zs", "strategy": "zero-shot"},
            {"name": "lm", "strategy": "llm-zero-shot", "llm": "local"},
        ],
    )
    text = cli("run", "-p", write_project(tmp_path / "q", config=cfg)).ok()
    assert "lm: skipped" in text and "did you mean 'smollm2-135m-instruct'" in text


def test_a_non_gguf_file_and_a_folder_of_several(cli: Any, tmp_path: Path) -> None:
    weights = tmp_path / "pytorch_model.bin"
    weights.write_bytes(b"\x80\x04 pickle")  # never unpickled: refused by its suffix
    cli("run", "-p", _project(tmp_path, str(weights)), "-c", "lm").error("not a .gguf file")
    many = tmp_path / "models"
    many.mkdir()
    (many / "a-Q4.gguf").write_bytes(b"GGUF")
    (many / "a-Q8.gguf").write_bytes(b"GGUF")
    root = write_project(
        tmp_path / "r",
        config=base_config(
            llms={"local": {"backend": "hf", "name": str(many)}},
            candidates=[{"name": "lm", "strategy": "llm-zero-shot", "llm": "local"}],
        ),
    )
    cli("run", "-p", root, "-c", "lm").error("2 GGUF files", "a-Q4.gguf")
