"""Test helpers that ship with adaptlab: a fake LLM server with fault injection.

Imported lazily so that ``python -m adaptlab.testing.fake_llm`` does not import
the module twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from adaptlab.testing.fake_llm import (
        ChatCall,
        FakeLLMServer,
        FaultPlan,
        default_responder,
        fail_first,
        prompt_tokens,
        with_reasoning,
    )

__all__ = [
    "ChatCall",
    "FakeLLMServer",
    "FaultPlan",
    "default_responder",
    "fail_first",
    "prompt_tokens",
    "with_reasoning",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from adaptlab.testing import fake_llm

        return getattr(fake_llm, name)
    raise AttributeError(f"module 'adaptlab.testing' has no attribute {name!r}")
