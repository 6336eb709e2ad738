"""Retrieved passages in a prompt, and the checks on the citations of an answer.

Passages enter a prompt as data, never as instructions:

* each is a numbered block (``[N] text``) under a system prompt that calls them
  reference material; a line of a document that starts like a block (``[7] …``) is
  rewritten, so a document cannot open a passage of its own;
* sentences addressed to the model ("ignore all previous instructions…", "Vergessen
  Sie alles…", "Oubliez les consignes…", base64 or look-alike letters, a
  ``</context>`` that ends the context early) are removed before the passage is
  shown and counted (:func:`adaptlab.rag.screen.screen_passage`, which says how,
  and what it catches as measured on a public dataset) — a pattern screen is a
  first line, not a proof; the layout and the system prompt are the second.

An answer cites passages as ``[1]`` or ``[1, 3]``. :func:`check_citations` says
which cited ids exist among the passages shown, and whether a cited passage
supports the answer by token overlap: at least half of the answer's content
words (lower-cased, stop words removed) must occur in the passages it cites.
Groundedness is the same share against all passages shown.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass

from adaptlab.rag.screen import screen_passage

SUPPORT_THRESHOLD = 0.5

_CITATION = re.compile(r"\[\s*(\d{1,3}(?:\s*[,;]\s*\d{1,3})*)\s*\]")
_WORD = re.compile(r"\w+", re.UNICODE)

_STOP = frozenset(
    [
        "a",
        "an",
        "the",
        "and",
        "or",
        "but",
        "if",
        "of",
        "to",
        "in",
        "on",
        "at",
        "by",
        "for",
        "with",
        "from",
        "as",
        "is",
        "are",
        "was",
        "were",
        "be",
        "been",
        "it",
        "its",
        "this",
        "that",
        "these",
        "those",
        "you",
        "your",
        "we",
        "our",
        "i",
        "my",
        "me",
        "he",
        "she",
        "they",
        "them",
        "their",
        "there",
        "here",
        "do",
        "does",
        "did",
        "not",
        "no",
        "yes",
        "can",
        "will",
        "would",
        "should",
        "could",
        "may",
        "might",
        "must",
        "have",
        "has",
        "had",
        "so",
        "than",
        "then",
        "into",
        "out",
        "up",
        "down",
        "about",
        "over",
        "under",
        "again",
        "more",
        "most",
        "some",
        "any",
        "all",
        "each",
        "which",
        "who",
        "whom",
        "what",
        "when",
        "where",
        "why",
        "how",
        "also",
        "just",
        "only",
        "very",
        "please",
    ]
)


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk as shown in a prompt: ``n`` is its citation id (1-based)."""

    n: int
    chunk_id: str
    doc_id: str
    section: str
    text: str
    score: float
    removed: int = 0  # sentences withheld by the instruction screen


def make_passages(hits: Sequence[object]) -> list[Passage]:
    """Passages from :class:`~adaptlab.rag.search.Hit` objects, best first, ids from 1."""
    out = []
    for n, hit in enumerate(hits, start=1):
        chunk = hit.chunk  # type: ignore[attr-defined]
        text, removed = screen_passage(chunk.text)
        out.append(
            Passage(
                n,
                chunk.chunk_id,
                chunk.doc_id,
                chunk.heading_path,
                text,
                float(hit.score),  # type: ignore[attr-defined]
                removed,
            )
        )
    return out


_MARKER = re.compile(r"^[ \t]*\[(\d{1,3})\]", re.MULTILINE)


def format_context(passages: Sequence[Passage]) -> str:
    """The passages as numbered blocks for a template's ``context`` part::

        [1] text of the best passage

        [2] text of the next one

    A line of a passage that itself starts with ``[n]`` is rewritten to ``(n)``, so
    no document can open a passage of its own. With no passage at all (nothing
    matched), the part says so, so the prompt keeps its layout.
    """
    if not passages:
        return "(no passage matches the question)"
    return "\n\n".join(f"[{p.n}] " + _MARKER.sub(r"(\1)", p.text) for p in passages)


def passages_json(passages: Sequence[Passage]) -> str:
    return json.dumps([asdict(p) for p in passages], ensure_ascii=False)


def passages_from_json(text: str | None) -> list[Passage] | None:
    """The passages stored with an answer; None when none were (or they cannot be read:
    a store written by another program must not crash a summary)."""
    if text is None:
        return None
    try:
        return [Passage(**p) for p in json.loads(text)]
    except (ValueError, TypeError):
        return None


def sources_from_json(text: str | None) -> list[str] | None:
    """The supporting document ids stored with an answer; None when unknown or unreadable."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except ValueError:
        return None
    return [str(v) for v in value] if isinstance(value, list) else None


def parse_citations(answer: str) -> list[int]:
    """Every cited passage id in order of appearance, repeats removed."""
    out: list[int] = []
    for match in _CITATION.finditer(answer):
        for part in re.split(r"[,;]", match.group(1)):
            n = int(part)
            if n not in out:
                out.append(n)
    return out


def strip_citations(answer: str) -> str:
    """The answer without its ``[n]`` markers (what is scored against the reference)."""
    text = _CITATION.sub("", answer)
    return re.sub(r"\s+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", text)).strip()


def content_words(text: str) -> set[str]:
    return {w for w in (m.lower() for m in _WORD.findall(text)) if w not in _STOP and len(w) > 1}


def overlap(answer: str, sources: Sequence[str]) -> float:
    """Share of the answer's content words found in ``sources``; 1.0 for an empty answer."""
    words = content_words(answer)
    if not words:
        return 1.0
    pool: set[str] = set()
    for s in sources:
        pool |= content_words(s)
    return len(words & pool) / len(words)


@dataclass(frozen=True)
class CitationCheck:
    """The citations of one answer against the passages its prompt held."""

    cited: tuple[int, ...]
    valid: tuple[int, ...]  # cited ids that exist among the passages
    invalid: tuple[int, ...]  # cited ids that do not
    unsupported: tuple[int, ...]  # valid ids whose passage shares too few words
    groundedness: float  # share of content words found in any passage

    @property
    def has_valid(self) -> bool:
        return bool(self.valid)


def check_citations(answer: str, passages: Sequence[Passage]) -> CitationCheck:
    """Check the ``[n]`` citations of ``answer`` against ``passages`` (see module doc)."""
    cited = tuple(parse_citations(answer))
    by_n = {p.n: p for p in passages}
    valid = tuple(n for n in cited if n in by_n)
    invalid = tuple(n for n in cited if n not in by_n)
    text = strip_citations(answer)
    unsupported = tuple(
        n for n in valid if overlap(text, [by_n[n].text, by_n[n].section]) < SUPPORT_THRESHOLD
    )
    grounded = overlap(text, [t for p in passages for t in (p.text, p.section)])
    return CitationCheck(cited, valid, invalid, unsupported, grounded)
