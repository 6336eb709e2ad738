"""An LLM that grades generated answers against their references.

The judge is an entry under ``llms:`` named by ``evaluation.judge_llm``; it reads
the rubric, the input, the reference and the answer, and replies with a score from
0 to 1. Requests go through :class:`~adaptlab.backends.runner.LLMRunner` with the
project's response cache, so a grade is paid for once: summarising a run again (or
rendering its report) re-reads the cached replies and parses them again.

A reply no score can be read from is counted and scores 0; it is never dropped.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from adaptlab.backends import load_llm
from adaptlab.backends.availability import llm_unavailable
from adaptlab.backends.runner import LLMRunner
from adaptlab.core.errors import AdaptlabError
from adaptlab.llm.cache import ResponseCache
from adaptlab.llm.parse import strip_reasoning
from adaptlab.llm.types import ChatRequest, GenerationParams, Message, failure_status

if TYPE_CHECKING:
    from adaptlab.config import LLMConfig
    from adaptlab.core.progress import ProgressSink

SYSTEM = (
    "You grade answers. You compare an answer with a reference answer, follow the rubric "
    "you are given, and reply with a single number from 0 to 1."
)
MAX_TOKENS = 32  # a number, perhaps with "Score:" before it

_NUM = r"(\d+(?:[.,]\d+)?|[.,]\d+)"
_SCALE = rf"\s*(%|/\s*{_NUM})?"
# "Score: 0.8", "score = 4/5", "**Score:** 80%", "Final score 1"
_LABELLED = re.compile(rf"score\W{{0,4}}(?:is|of)?\W{{0,4}}{_NUM}{_SCALE}", re.I)
_ANY = re.compile(rf"(?<![\w.,-]){_NUM}{_SCALE}")


def _number(text: str) -> float:
    return float(text.replace(",", "."))


def _value(match: re.Match[str]) -> float | None:
    value = _number(match.group(1))
    if match.group(2) == "%":
        value /= 100
    elif match.group(3) is not None:
        den = _number(match.group(3))
        if den <= 0:
            return None
        value /= den
    return value if 0.0 <= value <= 1.0 else None


def parse_score(reply: str) -> float | None:
    """The score in a judge's reply, from 0 to 1, or None when there is none.

    A number after the word "score" wins (the last one); otherwise the last number in
    the reply. "80%" is 0.8, "4/5" is 0.8, a decimal comma is read as a point. A
    number outside 0..1 (say "8" on a ten-point scale the rubric did not ask for) is
    not guessed at: the reply counts as unreadable.
    """
    found = list(_LABELLED.finditer(reply)) or list(_ANY.finditer(reply))
    return _value(found[-1]) if found else None


def judge_request(
    rubric: str, input_text: str, reference: str, answer: str, *, seed: int
) -> ChatRequest:
    """The grading prompt for one answer; its hash is the response-cache key."""
    user = (
        f"<rubric>\n{rubric.strip()}\n</rubric>\n\n"
        f"<input>\n{input_text}\n</input>\n\n"
        f"<reference>\n{reference}\n</reference>\n\n"
        f"<answer>\n{answer}\n</answer>\n\n"
        "Reply with the score only: a number from 0 (wrong) to 1 (right)."
    )
    params = GenerationParams(temperature=0.0, max_tokens=MAX_TOKENS, seed=seed)
    return ChatRequest((Message("system", SYSTEM), Message("user", user)), params)


@dataclass
class JudgeStats:
    """What grading a run took: requests asked, sent (not cached) and unreadable replies."""

    llm: str  # "openai:gpt-4o"
    requests: int = 0
    sent: int = 0
    cache_hits: int = 0
    unparsed: int = 0


class Judge:
    """Grades (input, reference, answer) triples with the judge model, through the cache."""

    def __init__(
        self,
        name: str,
        config: LLMConfig,
        *,
        rubric: str,
        seed: int,
        cache_path: Path,
        progress: ProgressSink | None = None,
    ) -> None:
        self.name, self.config = name, config
        self.rubric, self.seed = rubric, seed
        self.cache = ResponseCache(cache_path)
        # No key is needed to read grades that are already cached; see _check_available.
        backend = load_llm(config, require_key=False)
        self.runner = LLMRunner(backend, cache=self.cache, progress=progress)
        self.stats = JudgeStats(f"{config.backend}:{config.name}")

    def grade(self, items: Sequence[tuple[str, str, str]]) -> list[float | None]:
        """One score (None: unreadable reply) per (input, reference, answer)."""
        if not items:
            return []
        requests = [judge_request(self.rubric, *item, seed=self.seed) for item in items]
        self._check_available(requests)
        before = (self.runner.stats.sent, self.runner.stats.cache_hits)
        responses = self.runner.run_sync(requests, description=f"judging with {self.name}")

        # A grading request the provider refused has no grade (its text is the error).
        scores = [
            None if failure_status(r.finish_reason) else parse_score(strip_reasoning(r.text))
            for r in responses
        ]
        self.stats.requests += len(requests)
        self.stats.sent += self.runner.stats.sent - before[0]
        self.stats.cache_hits += self.runner.stats.cache_hits - before[1]
        self.stats.unparsed += sum(s is None for s in scores)
        return scores

    def _check_available(self, requests: Sequence[ChatRequest]) -> None:
        identity = self.runner.identity
        missing = sum(self.cache.get(r.cache_key(identity)) is None for r in requests)
        reason = llm_unavailable(self.config) if missing else None
        if reason is not None:
            raise AdaptlabError(
                f"the judge '{self.name}' cannot grade {missing} answer(s): {reason}",
                fix="configure the judge model (grades it already gave are cached), or set "
                "evaluation.generation_metric to token_f1, exact_match or similarity",
                code="judge-unavailable",
            )

    def close(self) -> None:
        self.cache.close()
