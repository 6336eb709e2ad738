"""Read a label out of a model's answer; an answer that names none is *counted*.

Three levels, each allowing the ones before it:

* ``exact``: the answer, stripped, is a label;
* ``normalised``: equal after lower-casing, dropping quotes, brackets, trailing
  punctuation and a leading "label:", with ``-``, ``_`` and spaces the same;
* ``fuzzy``: exactly one label occurs in the answer as whole words, or the
  answer is a near-miss spelling of one (difflib ratio at least 0.8).

A chain-of-thought answer is read from its last ``Answer:`` line. Reasoning blocks
(``<think>…</think>`` of R1-style models served without a reasoning parser, and an
unterminated ``<think>`` that the output limit cut off) are removed before any of
this; the raw answer keeps them. Whatever no level can read gets status ``unparsed``
and counts as wrong; nothing is dropped.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Sequence

LEVELS = ("exact", "normalised", "fuzzy")
_ANSWER = re.compile(
    r"^\s*(?:\*\*)?(?:final\s+)?answer(?:\*\*)?\s*[:：]\s*(?:\*\*)?\s*(.+?)\s*$", re.I | re.M
)
_THINK_TAGS = "think|thinking|reasoning|thought"
_THINK = re.compile(rf"<({_THINK_TAGS})>.*?</\1>", re.I | re.S)
# An opening tag never closed: the rest is reasoning (cut off by the output limit).
_THINK_OPEN = re.compile(rf"<(?:{_THINK_TAGS})>.*\Z", re.I | re.S)
# A closing tag with no opening one: servers whose chat template opens the block in the
# prompt send only the reasoning and "</think>".
_THINK_CLOSE = re.compile(rf"\A.*?</(?:{_THINK_TAGS})>", re.I | re.S)
_PREFIX = re.compile(r"^(?:the\s+)?(?:label|category|class|answer)\s*(?:is)?\s*[:：]?\s*", re.I)


def strip_reasoning(text: str) -> str:
    """The answer without its reasoning blocks (see the module docstring)."""
    if "<" not in text:
        return text
    out = _THINK.sub("", text)
    out = _THINK_CLOSE.sub("", out)
    out = _THINK_OPEN.sub("", out)
    return out.strip()


def extract_answer(text: str) -> str | None:
    """The text after the last ``Answer:`` line, or None when there is none."""
    found = _ANSWER.findall(text)
    return found[-1].strip() if found else None


def normalise(text: str) -> str:
    t = text.strip().lower()
    t = _PREFIX.sub("", t)
    t = t.strip(" \t\n\"'`*<>[](){}.,;:!")
    return re.sub(r"[\s_\-]+", " ", t).strip()


def parse_label(text: str, labels: Sequence[str], level: str = "fuzzy") -> tuple[str | None, str]:
    """Return (label or None, status) with status one of exact/normalised/fuzzy/unparsed."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    allowed = LEVELS[: LEVELS.index(level) + 1]
    answer = text.strip()
    if answer in labels:
        return answer, "exact"
    if "normalised" in allowed:
        norm = normalise(answer)
        by_norm = {normalise(label): label for label in labels}
        if norm in by_norm:
            return by_norm[norm], "normalised"
        if "fuzzy" in allowed:
            padded = f" {re.sub(r'[^a-z0-9 ]+', ' ', norm)} "
            inside = [lab for n, lab in by_norm.items() if n and f" {n} " in padded]
            if len(inside) == 1:
                return inside[0], "fuzzy"
            close = difflib.get_close_matches(norm, list(by_norm), n=2, cutoff=0.8)
            if len(close) == 1 or (
                close and difflib.SequenceMatcher(None, norm, close[0]).ratio() == 1
            ):
                return by_norm[close[0]], "fuzzy"
    return None, "unparsed"
