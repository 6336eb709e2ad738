"""The per-process embedder cache of ``rag:``: keyed by what decides the vectors.

An ``llms:`` entry's name alone is not enough: two projects (or one edited config in a
long-lived process) may name their embedding entry alike and point it at different
endpoints or models; each must get its own client.
"""

from __future__ import annotations

from typing import Any

from adaptlab.config import ProjectConfig
from adaptlab.rag.project import load_embedder


def _config(base_url: str, model: str = "text-embedding-3-small") -> ProjectConfig:
    raw: dict[str, Any] = {
        "name": "p",
        "data": {"path": "d.jsonl"},
        "labels": {"a": "first", "b": "second"},
        "candidates": [{"name": "zs", "strategy": "zero-shot"}],
        "llms": {"embed": {"backend": "openai", "name": model, "base_url": base_url}},
        "rag": {"docs": "docs", "embeddings_llm": "embed"},
    }
    return ProjectConfig.model_validate(raw)


def test_entries_of_one_name_at_other_endpoints_get_their_own_embedder() -> None:
    first = load_embedder(_config("http://127.0.0.1:1/v1"))
    assert load_embedder(_config("http://127.0.0.1:1/v1")) is first  # loaded once
    other = load_embedder(_config("http://127.0.0.1:2/v1"))
    assert other is not first
    assert str(other.client.base_url).startswith("http://127.0.0.1:2/")  # type: ignore[attr-defined]
    renamed = load_embedder(_config("http://127.0.0.1:1/v1", model="text-embedding-3-large"))
    assert renamed is not first and renamed.model_id == "text-embedding-3-large"
