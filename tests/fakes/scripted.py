"""Oracles written for :class:`~tests.fakes.fake_llm.FakeLLMServer` answering through the
in-process ``fake`` backend (:mod:`adaptlab.backends.fake`) instead: no socket, no thread.

An oracle reads ``call.user_text`` (the last user message), which a
:class:`~tests.fakes.fake_llm.ChatCall` and an :class:`Asked` both have. Projects name
the models ``{"backend": "fake", "name": NAME}`` with no ``answers:``, and run inside
``with scripted(oracle, NAME, ...)``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

from adaptlab.backends.fake import respond_with
from adaptlab.llm.types import ChatRequest


class UserText(Protocol):
    """What an oracle reads of a request."""

    @property
    def user_text(self) -> str: ...


@dataclass(frozen=True)
class Asked:
    """A request as an oracle sees it through the fake backend."""

    user_text: str  # content of the last user message, as ChatCall has it
    model: str


@contextlib.contextmanager
def scripted(oracle: Callable[[Asked], str], *models: str) -> Iterator[None]:
    """While inside, every ``backend: fake`` llm named one of ``models`` (that has no
    ``answers:``) answers with ``oracle(Asked(...))``."""
    with contextlib.ExitStack() as stack:
        for model in models:

            def respond(request: ChatRequest, model: str = model) -> str:
                last = next((m.content for m in reversed(request.messages) if m.role == "user"), "")
                return oracle(Asked(last, model))

            stack.enter_context(respond_with(model, respond))
        yield
