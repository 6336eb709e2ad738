"""System instructions an LLM (the *proposer*) writes for the prompt search.

Two kinds of request, one paid call each (they go through a runner, so through the
response cache and the search's caps):

* **from a summary of the task** (MIPROv2's grounded proposer, Opsahl-Ong et al.,
  "Optimizing Instructions and Demonstrations for Multi-Stage Language Model
  Programs", 2024): the label names and descriptions, a few *train* examples (never a
  validation or test text) and the current instruction, with one "tip" per call so
  the instructions differ;
* **reflective** (GEPA, Agrawal et al., "GEPA: Reflective Prompt Evolution Can
  Outperform Reinforcement Learning", 2025): the best prompt's instruction and the
  validation minibatch inputs it got wrong (input, expected, got), asking for a rewrite
  that would get them right. Validation failures are shown, as in GEPA; the final
  choice is still made on the whole validation split, and test inputs are never shown.

The instruction is read between ``<instruction>`` tags; an empty, cut-off or garbled
reply is skipped with its reason (:func:`read_instruction`), never raised.

Every variable part of a request is clipped to a number of UTF-8 bytes, so the prompt
tokens of a request that cannot be written yet (a reflection) are bounded before
anything is sent: a token covers at least one byte (:func:`reflect_bound`).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from adaptlab.llm.parse import strip_reasoning
from adaptlab.llm.types import ChatRequest, GenerationParams, Message, failure_status

if TYPE_CHECKING:
    from adaptlab.data import Example
    from adaptlab.llm.types import ChatResponse

#: The longest instruction kept, in UTF-8 bytes (and the most of one shown back).
INSTRUCTION_BYTES = 2000
#: A train example or a failed validation input, in bytes, as the proposer sees it.
TEXT_BYTES = 300
#: A failed answer ("got"), in bytes.
GOT_BYTES = 120
#: Train examples in a summary (stratified over the labels).
MAX_EXAMPLES = 12
#: Failures in one reflection.
MAX_FAILURES = 6
#: Sampling of the proposer: varied, and seeded so a rerun asks the same (cached) thing.
TEMPERATURE = 0.7

SYSTEM = (
    "You write the system instruction of a text classifier that is a language model. "
    "After your instruction the classifier is shown the labels with their descriptions, "
    "sometimes a few examples, and one input; it must answer with exactly one label. "
    "The label list and the answer format are added for you: do not repeat them. "
    "Reply with the new instruction between <instruction> and </instruction>, nothing else."
)

#: One per call, in turn, so that N summary proposals are N different instructions.
TIPS = (
    "Keep it short: two or three sentences.",
    "Explain how to tell apart the labels that are easily confused.",
    "Write it as an expert in this domain would brief a new colleague.",
    "Describe what the inputs look like and what to attend to in them.",
    "Give a few decision rules, one per line.",
    "Be precise and literal, and say what to do with unclear inputs.",
)


def clip(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` UTF-8 bytes (an ellipsis marks a cut)."""
    data = text.encode()
    if len(data) <= limit:
        return text
    return data[: max(limit - 3, 0)].decode(errors="ignore") + "…"  # "…" is 3 bytes


def _labels(labels: Mapping[str, str]) -> str:
    return "\n".join(f"- {name}: {desc}" if desc else f"- {name}" for name, desc in labels.items())


def _language(language: str) -> str:
    return f"The inputs are in the language with ISO code '{language}'."


def summary_examples(train: Sequence[Example], labels: Sequence[str], seed: int) -> list[Example]:
    """Up to :data:`MAX_EXAMPLES` train examples, round-robin over the labels (seeded)."""
    by_label: dict[str, list[Example]] = {lab: [] for lab in labels}
    for ex in train:
        by_label.setdefault(ex.label, []).append(ex)
    rng = random.Random(seed)
    for pool in by_label.values():
        rng.shuffle(pool)
    picked: list[Example] = []
    while len(picked) < MAX_EXAMPLES and any(by_label.values()):
        for pool in by_label.values():
            if pool and len(picked) < MAX_EXAMPLES:
                picked.append(pool.pop())
    return picked


def _request(user: str, index: int, seed: int, max_tokens: int) -> ChatRequest:
    params = GenerationParams(temperature=TEMPERATURE, max_tokens=max_tokens, seed=seed + index)
    return ChatRequest((Message("system", SYSTEM), Message("user", user)), params)


def summary_requests(
    labels: Mapping[str, str],
    examples: Sequence[Example],
    current: str,
    language: str,
    n: int,
    *,
    seed: int,
    max_tokens: int,
) -> list[ChatRequest]:
    """``n`` requests for an instruction written from the task alone (train examples)."""
    shown = "\n".join(
        f"<example>\n<input>{clip(ex.text, TEXT_BYTES)}</input>\n<label>{ex.label}</label>\n"
        "</example>"
        for ex in examples
    )
    out = []
    for i in range(n):
        user = (
            f"The labels:\n{_labels(labels)}\n\n{_language(language)} Some labelled "
            f"examples:\n{shown}\n\nThe current instruction:\n<current>\n"
            f"{clip(current, INSTRUCTION_BYTES)}\n</current>\n\n"
            f"Write a better instruction for this task. {TIPS[i % len(TIPS)]}"
        )
        out.append(_request(user, i, seed, max_tokens))
    return out


def reflect_requests(
    labels: Mapping[str, str],
    current: str,
    failures: Sequence[tuple[str, str, str]],
    language: str,
    n: int,
    *,
    seed: int,
    max_tokens: int,
) -> list[ChatRequest]:
    """``n`` requests to rewrite ``current`` from its ``(input, expected, got)`` failures
    (each request shows a different window of them where there are more than fit)."""
    out = []
    for i in range(n):
        start = (i * MAX_FAILURES) % max(len(failures), 1)
        window = [*failures[start:], *failures[:start]][:MAX_FAILURES]
        shown = "\n".join(
            f"<case>\n<input>{clip(text, TEXT_BYTES)}</input>\n<expected>{expected}</expected>\n"
            f"<got>{clip(got, GOT_BYTES)}</got>\n</case>"
            for text, expected, got in window
        )
        user = (
            f"The labels:\n{_labels(labels)}\n\n{_language(language)} With the current "
            f"instruction\n<current>\n{clip(current, INSTRUCTION_BYTES)}\n</current>\nthe "
            f"classifier got these inputs wrong:\n{shown}\n\nFind what the instruction misses "
            "and write an improved instruction that gets such inputs right, without "
            f"naming these inputs. {TIPS[(i + 1) % len(TIPS)]}"
        )
        out.append(_request(user, 10_000 + i, seed, max_tokens))
    return out


def reflect_bound(labels: Mapping[str, str], language: str, *, max_tokens: int) -> ChatRequest:
    """A reflection request with every variable part empty; its prompt tokens plus
    :func:`reflect_slack` bytes bound the tokens of any reflection (nothing is sent)."""
    empty = [("", "", "")] * MAX_FAILURES
    return reflect_requests(labels, "", empty, language, 1, seed=0, max_tokens=max_tokens)[0]


def reflect_slack(labels: Mapping[str, str]) -> int:
    """The most bytes the variable parts of a reflection add to :func:`reflect_bound`."""
    longest = max((len(name.encode()) for name in labels), default=0)
    return INSTRUCTION_BYTES + MAX_FAILURES * (TEXT_BYTES + GOT_BYTES + longest)


def read_instruction(response: ChatResponse) -> tuple[str | None, str | None]:
    """``(instruction, None)`` from a proposer's reply, or ``(None, why it is skipped)``."""
    failed = failure_status(response.finish_reason)
    if failed is not None:
        return None, f"the proposer's answer failed ({failed}): {response.text[:200]}"
    text = strip_reasoning(response.text).strip()
    if not text:
        return None, "empty answer"
    start, end = text.find("<instruction>"), text.find("</instruction>")
    if start >= 0 and end > start:
        text = text[start + len("<instruction>") : end].strip()
    elif start >= 0:  # opened, never closed: cut off by max_tokens, or malformed
        return None, "the instruction was cut off (no </instruction>; raise proposer_max_tokens)"
    elif response.finish_reason == "length":
        return None, "the answer was cut off by proposer_max_tokens"
    if "<instruction" in text or "</instruction" in text:
        return None, "garbled: stray tags in the instruction"
    words = text.split()
    visible = [c for c in text if not c.isspace()]
    letters = sum(c.isalpha() for c in visible)
    if len(words) < 3:
        return None, f"too short to be an instruction: {text[:80]!r}"
    if "\ufffd" in text or letters < 0.5 * len(visible):
        return None, f"garbled (few letters): {text[:80]!r}"
    if len(text.encode()) > INSTRUCTION_BYTES:
        return None, f"longer than {INSTRUCTION_BYTES} bytes"
    return text, None


@dataclass
class Proposal:
    """One proposer call: what was asked, answered and kept (or why not)."""

    phase: str  # "summary" or "reflect"
    request: ChatRequest
    reply: str | None = None
    instruction: str | None = None
    skipped: str | None = None
    val_score: float | None = None  # on the inputs it was answered on, once tried

    def record(self) -> dict[str, Any]:
        """JSON-ready: the prompt and the answer, for ``info`` and the report."""
        return {
            "phase": self.phase,
            "prompt": [{"role": m.role, "content": m.content} for m in self.request.messages],
            "reply": self.reply,
            "instruction": self.instruction,
            "skipped": self.skipped,
            "val_score": self.val_score,
        }
