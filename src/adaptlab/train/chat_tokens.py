"""Tokens of chat examples as a model counts them: OpenAI's rule, or a local model's template.

:func:`token_counter` picks the counter for a model name: an OpenAI model id counts with
tiktoken (exact, where its encoding file is cached offline) or the 4-characters-a-token
estimate around OpenAI's per-message overhead; a local model (a bundled alias, a .gguf
file or a folder) counts with its own tokenizer and chat template, as its trainer sees
the example. What the counts are used for is in :mod:`adaptlab.train.chat_file`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptlab.backends.gguf import BUNDLED, resolve_model
from adaptlab.core.errors import ConfigError, MissingDependencyError
from adaptlab.llm.prices import lookup_capabilities, lookup_price
from adaptlab.llm.tokens import (
    REPLY_PRIMER_TOKENS,
    TOKENS_PER_MESSAGE,
    encoding_is_cached,
    estimate_tokens,
)
from adaptlab.train.cost import base_model_id


@dataclass
class TokenCounter:
    """Counts the tokens of one chat example for ``model``.

    ``kind``: "tiktoken" (exact, OpenAI), "estimate" (OpenAI-style overhead around
    :func:`adaptlab.llm.tokens.estimate_tokens`: the encoding is not cached offline),
    or "hf" (the model's own tokenizer and chat template); ``context_window``: tokens
    of prompt plus answer the model takes (None: unknown).
    """

    model: str
    kind: str
    context_window: int | None
    count: Callable[[list[dict[str, Any]]], int]
    count_text: Callable[[str], int]
    note: str = ""

    @property
    def exact(self) -> bool:
        return self.kind != "estimate"


def _message_texts(message: dict[str, Any]) -> list[str]:
    """The strings of a message a tokenizer sees: role, content, name, calls as JSON."""
    texts = [str(message.get("role", ""))]
    content = message.get("content")
    if isinstance(content, str):
        texts.append(content)
    if message.get("name"):
        texts.append(str(message["name"]))
    for key in ("function_call", "tool_calls"):
        if message.get(key):
            texts.append(json.dumps(message[key], ensure_ascii=False))
    return texts


def _openai_counter(model: str) -> TokenCounter:
    """OpenAI's count (cookbook "How to count tokens with tiktoken"): 3 per message, the
    tokens of its strings, 1 more for a name, 3 to prime the reply."""

    window = lookup_capabilities(model).context_window
    encode: Callable[[str], int] | None = None
    name = ""
    try:
        import tiktoken
        from tiktoken.model import encoding_name_for_model

        name = encoding_name_for_model(model.split(":")[1] if model.startswith("ft:") else model)
        if encoding_is_cached(name):  # tiktoken would download it otherwise
            enc = tiktoken.get_encoding(name)

            def encode(text: str) -> int:
                return len(enc.encode(text, disallowed_special=()))
    except (ImportError, KeyError, ValueError):
        pass
    if encode is None:
        encode = estimate_tokens
        kind = "estimate"
        note = (
            f"estimated (~4 characters per token): tiktoken's {name} file is not cached "
            "here (see adaptlab.llm.tokens)"
            if name
            else "estimated (~4 characters per token): no offline tokenizer for this model"
        )
    else:
        kind, note = "tiktoken", f"tiktoken {name}"
    count_text = encode

    def count(messages: list[dict[str, Any]]) -> int:
        total = REPLY_PRIMER_TOKENS
        for message in messages:
            total += TOKENS_PER_MESSAGE + (1 if message.get("name") else 0)
            total += sum(count_text(t) for t in _message_texts(message))
        return total

    return TokenCounter(model, kind, window, count, count_text, note)


def _hf_counter(model: str) -> TokenCounter:
    """The tokens a local model trains on: its chat template applied, then tokenized."""

    folder = resolve_model(model)
    try:
        from transformers import AutoTokenizer
    except ImportError:
        raise MissingDependencyError("transformers", "local") from None
    try:
        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # a broken folder raises whatever its files make it raise
        raise ConfigError(
            f"cannot load a tokenizer from '{folder}': {str(exc).splitlines()[0]}",
            fix="name a folder saved with save_pretrained() (with its tokenizer files), a "
            ".gguf file or smollm2-135m-instruct",
        ) from None
    window = _hf_window(folder)
    templated = bool(getattr(tok, "chat_template", None))

    def count(messages: list[dict[str, Any]]) -> int:
        if templated:
            try:
                text = tok.apply_chat_template(messages, tokenize=False)
            except Exception as exc:  # the template's own raise_exception(), or its bug
                raise TemplateRefused(str(exc).splitlines()[0] if str(exc) else repr(exc)) from None
            return len(tok(str(text), add_special_tokens=False)["input_ids"])
        # No template: the texts alone, plus the 3 tokens per message most templates add.
        return sum(
            3 + len(tok(t, add_special_tokens=False)["input_ids"])
            for m in messages
            for t in _message_texts(m)[1:]
        )

    def count_text(text: str) -> int:
        return len(tok(text, add_special_tokens=False)["input_ids"])

    note = "the model's chat template" if templated else "no chat template: texts + 3 per message"
    return TokenCounter(model, "hf", window, count, count_text, f"{type(tok).__name__}, {note}")


class TemplateRefused(ValueError):
    """A model's chat template refused a conversation (e.g. roles that do not alternate)."""


def _hf_window(folder: Path) -> int | None:
    try:
        data = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        value = data.get(key) if isinstance(data, dict) else None
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None


def token_counter(model: str) -> TokenCounter:
    """The counter for ``model``: a model id of the price table (OpenAI, Anthropic) counts
    with tiktoken or its estimate; a bundled alias, a .gguf file or a model folder with
    its own tokenizer. Raises ConfigError for a name that is none of these."""

    if model in BUNDLED or Path(model).expanduser().exists():
        return _hf_counter(model)
    if lookup_price(model) is not None or base_model_id(model).startswith(
        ("gpt-", "o1", "o3", "o4")
    ):
        return _openai_counter(model)
    raise ConfigError(
        f"unknown model '{model}' for token counts",
        fix="pass --model with an OpenAI model id (gpt-4o-mini, gpt-4.1-mini…), "
        f"{', '.join(BUNDLED)}, or a local model folder",
    )


__all__ = ["TemplateRefused", "TokenCounter", "token_counter"]
