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


def _split_long(text: str, limit: int, count: TokenCounter) -> list[str]:
    """Sentences of ``text``; a sentence over ``limit`` tokens cut at word boundaries."""
    out: list[str] = []
    sentences = [s for s in _SENTENCE_END.split(text) if s.strip()]
    for sentence, n in zip(sentences, count(sentences), strict=True):
        if n <= limit:
            out.append(sentence)
            continue
        words = sentence.split()
        per = max(1, len(words) * limit // max(n, 1))
        out.extend(" ".join(words[i : i + per]) for i in range(0, len(words), per))
    return out


def chunk_document(
    doc: Document,
    *,
    max_tokens: int,
    overlap_tokens: int,
    count: TokenCounter = word_tokens,
) -> list[Chunk]:
    """Cut ``doc`` into chunks of at most ``max_tokens`` tokens (heading path included).

    Raises ``ValueError`` when ``overlap_tokens`` is not below ``max_tokens``.
    """
    if overlap_tokens >= max_tokens:
        raise ValueError("overlap_tokens must be smaller than max_tokens")
    chunks: list[Chunk] = []
    for headings, group in groupby(doc.blocks, key=lambda b: b.headings):
        blocks: list[Block] = list(group)
        probe = Chunk("", doc.doc_id, doc.path, doc.title, headings, 0, "")
        head_tokens = count([probe.heading_path])[0] + 2 if probe.heading_path else 0
        budget = max(16, max_tokens - head_tokens)
        pieces: list[str] = []
        for block, n in zip(blocks, count([b.text for b in blocks]), strict=True):
            pieces.extend([block.text] if n <= budget else _split_long(block.text, budget, count))
        sizes = count(pieces)
        current: list[int] = []  # indexes into pieces
        groups: list[list[int]] = []
        for i, size in enumerate(sizes):
            used = sum(sizes[j] for j in current)
            if current and used + size > budget:
                groups.append(current)
                # Overlap: carry the last whole pieces that fit in overlap_tokens.
                carried: list[int] = []
                for j in reversed(current):
                    if sum(sizes[k] for k in carried) + sizes[j] > overlap_tokens:
                        break
                    carried.insert(0, j)
                if len(carried) == len(current):  # a strict tail only, never a repeat
                    carried = carried[1:]
                if carried and sum(sizes[k] for k in carried) + size > budget:
                    carried = []
                current = carried
            current.append(i)
        if current:
            groups.append(current)
        for idx in groups:
            text = "\n\n".join(pieces[i] for i in idx)
            n = len(chunks)
            chunks.append(
                Chunk(f"{doc.doc_id}#{n}", doc.doc_id, doc.path, doc.title, headings, n, text)
            )
    return chunks
