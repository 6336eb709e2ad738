"""Constrained answers of a prompted candidate: which mode applies, and how a local
model's per-label scores become a prediction (length normalisation, contextual
calibration, the softmax over labels as the prediction's score).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from adaptlab.llm.types import ChoiceScores
from adaptlab.strategies.prompting.config import PromptOptions

#: Content-free inputs of contextual calibration (Zhao et al., "Calibrate Before Use:
#: Improving Few-Shot Performance of Language Models", ICML 2021, section 5: the mean
#: over "N/A", "" and "[MASK]").
CONTENT_FREE = ("N/A", "", "[MASK]")


def answer_mode(
    opts: PromptOptions, task: str, backend: str, supports: frozenset[str], has_schema: bool
) -> tuple[str, str | None]:
    """("constrained" or "free", why a constrained answer is not possible or None).

    ``supports`` is the backend's :attr:`~adaptlab.backends.base.GenerativeBackend.
    constrained`; ``has_schema``: the project's extraction task has a JSON schema.
    """
    if opts.answer == "free":
        return "free", None
    need = "choices" if task == "classification" else "schema"
    why: str | None = None
    if task == "generation":
        why = "a generation task has no closed set of answers"
    elif opts.reasoning:
        why = "chain-of-thought reasons in free text before it answers"
    elif opts.prefill:
        why = "a prefilled answer is continued in free text"
    elif task == "classification" and opts.context_k and opts.cite:
        why = "the answer cites passages ([1]) besides the label"
    elif task == "extraction" and not has_schema:
        why = "the project has no JSON schema to constrain the answer to"
    elif need not in supports:
        what = "label choices" if need == "choices" else "a JSON schema"
        why = f"backend '{backend}' cannot constrain its answers to {what}"
    return ("free", why) if why else ("constrained", None)


def normalised(scores: ChoiceScores, choices: Sequence[str], norm: str) -> list[float]:
    """Each choice's log-likelihood under a length normalisation.

    ``token``: divided by its tokens (the mean log-probability per token, end-of-turn
    token included); ``char``: divided by the label's characters, as lm-eval-harness's
    ``acc_norm`` divides by the continuation's length; ``none``: the sum.
    """
    if norm == "token":
        return [lp / n for lp, n in zip(scores.logprobs, scores.tokens, strict=True)]
    if norm == "char":
        return [lp / max(1, len(c)) for lp, c in zip(scores.logprobs, choices, strict=True)]
    return list(scores.logprobs)


def log_softmax(values: Sequence[float]) -> list[float]:
    top = max(values)
    total = top + math.log(sum(math.exp(v - top) for v in values))
    return [v - total for v in values]


def content_free_offsets(
    found: Sequence[ChoiceScores], choices: Sequence[str], norm: str
) -> list[float]:
    """Log of each label's mean probability over the content-free inputs' answers.

    Subtracting it from a label's normalised score divides the label's probability by
    its content-free probability, Zhao et al.'s ``W = diag(p_cf)^-1`` (2021, eq. 2,
    with ``b = 0``).
    """
    probs = [0.0] * len(choices)
    for s in found:
        for i, lp in enumerate(log_softmax(normalised(s, choices, norm))):
            probs[i] += math.exp(lp) / len(found)
    return [math.log(max(p, 1e-300)) for p in probs]


def decide(
    scores: ChoiceScores,
    choices: Sequence[str],
    norm: str,
    offsets: Sequence[float] | None = None,
) -> tuple[str, float]:
    """(label, probability): the best choice after normalisation and calibration, and
    its share of the softmax over all choices."""
    values = normalised(scores, choices, norm)
    if offsets is not None:
        values = [v - o for v, o in zip(values, offsets, strict=True)]
    probs = log_softmax(values)
    best = max(range(len(probs)), key=probs.__getitem__)
    return choices[best], math.exp(probs[best])
