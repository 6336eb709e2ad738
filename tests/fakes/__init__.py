"""Wire-level test servers: a fake LLM server with fault injection, and a fake
provider fine-tuning API on top of it. They live with the tests, not in the wheel.

For tests of a generative strategy that do not test HTTP, the in-process ``fake``
backend (:mod:`adaptlab.backends.fake`) is lighter: no socket, no thread.

Imported lazily so that ``python -m tests.fakes.fake_llm`` does not import the
module twice.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.fakes.fake_llm import (
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
        from tests.fakes import fake_llm

        return getattr(fake_llm, name)
    raise AttributeError(f"module 'tests.fakes' has no attribute {name!r}")
