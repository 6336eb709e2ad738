"""Structure-aware chunking: sections by heading, then paragraphs, then sentences.

A chunk never crosses a heading: it holds whole blocks (paragraphs, lists, tables)
of one section while they fit in ``max_tokens``, counted with the embedding
model's own tokenizer, so no chunk is silently truncated by the encoder. A block
longer than the limit is split at sentence ends, and a sentence longer than the
limit at word boundaries. Consecutive chunks of one section share up to
``overlap_tokens`` of whole sentences, so a fact that straddles a boundary is
in both. Each chunk's embedded and BM25-indexed text starts with its heading path
(document title > section), which names what the chunk is about even when the
paragraph itself does not.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from itertools import groupby

from adaptlab.rag.documents import Block, Document

TokenCounter = Callable[[Sequence[str]], list[int]]

_SENTENCE_END = re.compile(r"(?<=[.!?:;])\s+|\n+")


def word_tokens(texts: Sequence[str]) -> list[int]:
    """A tokenizer-free estimate: 4 tokens per 3 words (BPE on English prose)."""
    return [-(-len(t.split()) * 4 // 3) for t in texts]


@dataclass(frozen=True)
class Chunk:
    """One retrievable passage.

    ``chunk_id`` is ``<doc_id>#<position>`` (position counts from 0 within the
    document); ``content_hash`` hashes :attr:`indexed_text`, so equal text shares
    one embedding across re-indexing runs.
    """

    chunk_id: str
    doc_id: str
    path: str
    title: str
    headings: tuple[str, ...]
    position: int
    text: str

    @property
    def heading_path(self) -> str:
        parts = [self.title, *[h for h in self.headings if h != self.title]]
        return " > ".join(p for p in parts if p)

    @property
    def indexed_text(self) -> str:
        """What is embedded and BM25-indexed: the heading path, then the text."""
        head = self.heading_path
        return f"{head}\n{self.text}" if head else self.text

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(self.indexed_text.encode("utf-8")).hexdigest()

    def to_json(self) -> dict[str, object]:
        return {
            "chunk_id": self.chunk_id,
            "doc_id": self.doc_id,
            "path": self.path,
            "title": self.title,
            "headings": list(self.headings),
            "position": self.position,
            "text": self.text,
            "content_hash": self.content_hash,
        }

    @classmethod
    def from_json(cls, obj: dict[str, object]) -> Chunk:
        return cls(
            chunk_id=str(obj["chunk_id"]),
            doc_id=str(obj["doc_id"]),
            path=str(obj["path"]),
            title=str(obj["title"]),
            headings=tuple(str(h) for h in obj["headings"]),  # type: ignore[attr-defined]
            position=int(obj["position"]),  # type: ignore[call-overload]
            text=str(obj["text"]),
        )


# A chunk also holds at most this many characters per token of ``max_tokens``: a
# tokenizer can count a 100,000-character "word" (a base64 blob) as one unknown token,
# and such a chunk would flood BM25 and every prompt it is quoted in. Prose runs at
# 4-6 characters per token, so the bound only ever cuts degenerate text.
MAX_CHARS_PER_TOKEN = 12


@dataclass(frozen=True)
class _Piece:
    text: str
    whole: bool  # a whole block or sentence (only those are repeated as overlap)
    size: int


def _bounded(count: TokenCounter) -> TokenCounter:
    """``count`` that also charges one token per :data:`MAX_CHARS_PER_TOKEN` characters."""

    def sized(texts: Sequence[str]) -> list[int]:
        texts = list(texts)
        if not texts:
            return []
        return [
            max(n, -(-len(t) // MAX_CHARS_PER_TOKEN))
            for t, n in zip(texts, count(texts), strict=True)
        ]

    return sized


def _cut(units: list[str], sep: str, limit: int, count: TokenCounter) -> list[tuple[str, bool]]:
    """``units`` joined by ``sep`` in greedy windows of at most ``limit`` tokens, each
    measured with ``count`` itself (token counts are not additive); a unit over the
    limit on its own comes back alone, flagged False."""
    n = len(units)
    if n == 0:
        return []
    total = count([sep.join(units)])[0]
    per = max(1, n * limit // max(total, 1))  # a first guess: units per window
    out: list[tuple[str, bool]] = []
    i = 0
    while i < n:

        def fits(j: int, i: int = i) -> bool:
            return count([sep.join(units[i:j])])[0] <= limit

        guess = min(n, i + per)
        lo, hi = i, n + 1  # units[i:lo] fits; units[i:hi] does not (n + 1: past the end)
        step = max(1, per // 8)
        if fits(guess):
            lo = guess
            while lo < n:
                probe = min(n, lo + step)
                if not fits(probe):
                    hi = probe
                    break
                lo, step = probe, step * 2
        else:
            hi = guess
            while hi - i > 1:
                probe = max(i + 1, hi - step)
                if fits(probe):
                    lo = probe
                    break
                hi, step = probe, step * 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if fits(mid):
                lo = mid
            else:
                hi = mid
        if lo == i:
            out.append((units[i], False))
            i += 1
        else:
            out.append((sep.join(units[i:lo]), True))
            i = lo
    return out


def _cut_words(text: str, limit: int, count: TokenCounter) -> list[str]:
    """``text`` in windows of at most ``limit`` tokens, cut between words, and inside a
    word only where one word alone is over the limit."""
    out: list[str] = []
    for window, ok in _cut(text.split(), " ", limit, count):
        if ok:
            out.append(window)
            continue
        # One enormous word: cut it between characters (in runs of 8, so a
        # megabyte-long word costs a hundred thousand counts, not a million).
        runs = [window[k : k + 8] for k in range(0, len(window), 8)]
        out.extend(part for part, _ok in _cut(runs, "", limit, count))
    return out


def _split_long(text: str, limit: int, count: TokenCounter) -> list[_Piece]:
    """Sentences of ``text``; a sentence over ``limit`` tokens cut at word boundaries."""
    out: list[_Piece] = []
    sentences = [s.strip() for s in _SENTENCE_END.split(text) if s.strip()]
    for sentence, n in zip(sentences, count(sentences), strict=True):
        if n <= limit:
            out.append(_Piece(sentence, True, n))
            continue
        parts = _cut_words(sentence, limit, count)
        out.extend(_Piece(p, False, m) for p, m in zip(parts, count(parts), strict=True))
    return out


def _heading_fit(
    doc: Document, headings: tuple[str, ...], limit: int, count: TokenCounter
) -> tuple[str, tuple[str, ...]]:
    """The title and headings of a chunk, cut short when their path is over ``limit``."""
    probe = Chunk("", doc.doc_id, doc.path, doc.title, headings, 0, "")
    path = probe.heading_path
    if not path or count([path])[0] <= limit:
        return doc.title, headings
    return _cut_words(path, limit, count)[0] + " …", ()


class _Packer:
    """Packs one section's pieces into chunks under ``budget`` (estimated from the
    pieces' own counts), with overlap, and with ``check`` measures each chunk."""

    def __init__(
        self, head: str, budget: int, max_tokens: int, overlap: int, count: TokenCounter
    ) -> None:
        self.head, self.budget, self.max_tokens = head, budget, max_tokens
        self.overlap, self.count = overlap, count

    def indexed(self, group: Sequence[_Piece]) -> str:
        text = "\n\n".join(p.text for p in group)
        return f"{self.head}\n{text}" if self.head else text

    def verified(self, group: list[_Piece], carried: int, limit: int) -> list[list[_Piece]]:
        """``group`` as chunks that each fit by their real count: drop the overlap,
        then halve, then cut a lone piece finer."""
        if self.count([self.indexed(group)])[0] <= self.max_tokens:
            return [group]
        if 0 < carried < len(group):
            return self.verified(group[carried:], 0, limit)
        if len(group) > 1:
            mid = len(group) // 2
            return self.verified(group[:mid], 0, limit) + self.verified(group[mid:], 0, limit)
        smaller = limit * 3 // 4
        parts = _cut_words(group[0].text, smaller, self.count) if smaller >= 1 else []
        if len(parts) < 2:
            return [group]  # one character over the limit: nothing left to cut
        return [c for t in parts for c in self.verified([_Piece(t, False, 0)], 0, smaller)]

    def pack(self, pieces: Sequence[_Piece], *, check: bool) -> list[list[_Piece]]:
        out: list[list[_Piece]] = []

        def close(group: list[_Piece], carried: int) -> None:
            out.extend(self.verified(group, carried, self.budget) if check else [group])

        current: list[_Piece] = []
        carried = 0  # how many pieces at the start of ``current`` repeat the chunk before
        for piece in pieces:
            if current and sum(p.size for p in current) + piece.size > self.budget:
                close(current, carried)
                # Overlap: the last whole pieces that fit in overlap_tokens, a strict
                # tail of the chunk before (never all of it), and room for this piece.
                tail: list[_Piece] = []
                for p in reversed(out[-1][1:]):
                    if not p.whole or sum(q.size for q in tail) + p.size > self.overlap:
                        break
                    tail.insert(0, p)
                if tail and sum(q.size for q in tail) + piece.size > self.budget:
                    tail = []
                current, carried = tail, len(tail)
            current.append(piece)
        if current:
            close(current, carried)
        return out


def chunk_document(
    doc: Document,
    *,
    max_tokens: int,
    overlap_tokens: int,
    count: TokenCounter = word_tokens,
) -> list[Chunk]:
    """Cut ``doc`` into chunks of at most ``max_tokens`` tokens (heading path included).

    Every chunk's :attr:`Chunk.indexed_text` is counted with ``count`` itself, so the
    limit holds for any tokenizer; it also holds at most
    ``max_tokens * MAX_CHARS_PER_TOKEN`` characters. A heading path longer than
    half the limit is cut short. Overlap repeats whole sentences or blocks only
    (never a piece of a sentence cut at word boundaries), and never a whole chunk.

    Raises ``ValueError`` when ``overlap_tokens`` is not below ``max_tokens``.
    """
    if overlap_tokens >= max_tokens:
        raise ValueError("overlap_tokens must be smaller than max_tokens")
    count = _bounded(count)
    chunks: list[Chunk] = []
    for section, run in groupby(doc.blocks, key=lambda b: b.headings):
        blocks: list[Block] = list(run)
        title, headings = _heading_fit(doc, section, max(1, max_tokens // 2), count)
        probe = Chunk("", doc.doc_id, doc.path, title, headings, 0, "")
        head = probe.heading_path
        head_tokens = count([head])[0] + 1 if head else 0
        budget = max(1, max_tokens - head_tokens)
        pieces: list[_Piece] = []
        for block, n in zip(blocks, count([b.text for b in blocks]), strict=True):
            if n <= budget:
                pieces.append(_Piece(block.text, True, n))
            else:
                pieces.extend(_split_long(block.text, budget, count))

        packer = _Packer(head, budget, max_tokens, overlap_tokens, count)
        sections = packer.pack(pieces, check=False)
        sized = count([packer.indexed(g) for g in sections])
        if any(n > max_tokens for n in sized):  # counts were not additive here: check each
            sections = packer.pack(pieces, check=True)
        for group_pieces in sections:
            text = "\n\n".join(p.text for p in group_pieces)
            n = len(chunks)
            chunks.append(
                Chunk(f"{doc.doc_id}#{n}", doc.doc_id, doc.path, title, headings, n, text)
            )
    return chunks
