"""Read a folder of documents into structured blocks: markdown, text, HTML and PDF.

A documents folder is data someone handed over, so every file is read through
:func:`adaptlab.files.read_regular_file` (regular files only, bounded size), links
that lead out of the folder are refused, and each file that cannot be read is
reported as a :class:`Skipped` with its reason and fix instead of stopping the
whole index: the rest of the folder is still indexed and nothing is lost
silently. Parsing uses maintained libraries: markdown-it-py (CommonMark: a ``#``
inside a code fence is no heading), BeautifulSoup for HTML and pypdf for PDF.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from adaptlab.errors import AdaptlabError
from adaptlab.files import read_regular_file

SUFFIXES = {
    ".md": "markdown",
    ".markdown": "markdown",
    ".txt": "text",
    ".text": "text",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}


@dataclass(frozen=True)
class Block:
    """One structural unit of a document: a paragraph, list, table or code block.

    ``headings`` is the path of headings above it (outermost first); a heading
    itself is not a block, it only names the blocks under it.
    """

    text: str
    headings: tuple[str, ...] = ()


@dataclass(frozen=True)
class Document:
    """One file of the folder: ``path`` relative to the folder, POSIX separators.

    ``sha256`` is the hash of the file's bytes (what decides re-indexing).
    """

    path: str
    sha256: str
    kind: str
    title: str
    blocks: tuple[Block, ...]

    @property
    def doc_id(self) -> str:
        """The id citations and qrels use: the path without its suffix."""
        return str(Path(self.path).with_suffix("")).replace(os.sep, "/")


@dataclass(frozen=True)
class Skipped:
    """A file left out of the index, with why and how to fix it."""

    path: str
    reason: str
    fix: str


@dataclass
class FolderScan:
    """What a scan found: documents to index, files skipped and their reasons."""

    documents: list[Document] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)


class UnreadableDocument(Exception):
    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


def iter_files(folder: Path) -> Iterator[tuple[Path, str | None]]:
    """Every file under ``folder`` (sorted, recursive, hidden ones left out), each with
    a reason it must be skipped (a link out of the folder, an unknown type) or None."""
    root = folder.resolve()
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            if path.is_symlink():
                target = path.resolve()
                if not target.is_relative_to(root):
                    yield path, f"a link to {target}, outside the documents folder"
                    continue
            if path.suffix.lower() not in SUFFIXES:
                yield path, f"unsupported type '{path.suffix or '(none)'}'"
                continue
            yield path, None


def scan_folder(folder: Path, *, max_file_mb: float, encoding: str = "utf-8") -> FolderScan:
    """Read every supported file under ``folder`` into a :class:`Document`.

    Raises :class:`AdaptlabError` when ``folder`` is missing or not a folder; an
    unreadable file only adds a :class:`Skipped`.
    """
    if not folder.is_dir():
        raise AdaptlabError(
            "the documents folder does not exist" if not folder.exists() else "not a folder",
            file=folder,
            fix="set rag.docs in adaptlab.yaml (or pass --docs) to a folder of .md, .txt, "
            ".html or .pdf files",
            code="rag-docs",
        )
    scan = FolderScan()
    for path, problem in iter_files(folder):
        rel = path.relative_to(folder).as_posix()
        if problem is not None:
            fix = (
                "copy the file into the folder instead of linking it"
                if "link" in problem
                else "convert it to .md, .txt, .html or .pdf, or move it out of the folder"
            )
            scan.skipped.append(Skipped(rel, problem, fix))
            continue
        try:
            scan.documents.append(read_document(path, rel, max_file_mb, encoding))
        except UnreadableDocument as exc:
            scan.skipped.append(Skipped(rel, exc.reason, exc.fix))
    return scan


def read_bytes(path: Path, max_file_mb: float) -> bytes:
    """The file's bytes (regular files only, at most ``max_file_mb``)."""
    try:
        return read_regular_file(
            path,
            max_bytes=int(max_file_mb * (1 << 20)),
            limit_name="rag.max_file_mb",
            what="document",
            size_fix="split the document, move it out of the folder, or raise "
            "rag.max_file_mb in adaptlab.yaml",
        )
    except AdaptlabError as exc:
        if exc.issue.code == "not-found":
            raise UnreadableDocument(
                "it vanished while the folder was being indexed",
                "run the index again once the folder has stopped changing",
            ) from None
        raise UnreadableDocument(exc.issue.message, exc.fix or "") from None


def parse_document(data: bytes, rel: str, encoding: str = "utf-8") -> Document:
    """The bytes of the file ``rel`` as a :class:`Document`; :class:`UnreadableDocument`
    says why not (binary, wrong encoding, a broken or encrypted PDF, no text)."""
    kind = SUFFIXES[Path(rel).suffix.lower()]
    sha = hashlib.sha256(data).hexdigest()
    if kind == "pdf":
        blocks, title = _pdf_blocks(data)
    else:
        text = _decode(data, encoding)
        if kind == "markdown":
            blocks, title = markdown_blocks(text)
        elif kind == "html":
            blocks, title = html_blocks(text)
        else:
            blocks, title = text_blocks(text), ""
    if not any(b.text.strip() for b in blocks):
        raise UnreadableDocument(
            "it holds no text" + (" (a scanned PDF?)" if kind == "pdf" else ""),
            "run OCR on scanned PDFs first; remove empty files"
            if kind == "pdf"
            else "remove the empty file or give it content",
        )
    return Document(rel, sha, kind, title or Path(rel).stem, tuple(blocks))


def read_document(path: Path, rel: str, max_file_mb: float, encoding: str) -> Document:
    """One file as a :class:`Document`; :class:`UnreadableDocument` says why not."""
    return parse_document(read_bytes(path, max_file_mb), rel, encoding)


def _decode(data: bytes, encoding: str) -> str:
    if b"\0" in data[:8192] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnreadableDocument(
            "it is a binary file (NUL bytes), not text",
            "remove it, or export it as .md, .txt, .html or .pdf",
        )
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8", errors="strict")
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise UnreadableDocument(
            f"it is not valid {encoding} (byte 0x{data[exc.start]:02x} at offset {exc.start})",
            "re-save it as UTF-8, or set rag.encoding in adaptlab.yaml (cp1252, latin-1) "
            "when the whole folder uses another encoding",
        ) from None


def text_blocks(text: str, headings: tuple[str, ...] = ()) -> list[Block]:
    """Paragraphs separated by blank lines."""
    paragraphs = [p.strip() for p in text.replace("\r\n", "\n").split("\n\n")]
    return [Block(p, headings) for p in paragraphs if p]


def markdown_blocks(text: str) -> tuple[list[Block], str]:
    """Top-level CommonMark blocks (paragraphs, lists, tables, code) under their headings."""
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table")
    lines = text.replace("\r\n", "\n").split("\n")
    path: list[tuple[int, str]] = []
    title = ""
    blocks: list[Block] = []
    tokens = md.parse(text.replace("\r\n", "\n"))
    for i, tok in enumerate(tokens):
        if tok.level != 0 or tok.map is None or tok.nesting == -1:
            continue
        if tok.type == "heading_open":
            level = int(tok.tag[1:])
            heading = tokens[i + 1].content.strip()
            path = [(lv, h) for lv, h in path if lv < level] + [(level, heading)]
            if level == 1 and not title:
                title = heading
            continue
        start, end = tok.map
        body = "\n".join(lines[start:end]).strip()
        if body:
            blocks.append(Block(body, tuple(h for _, h in path)))
    return blocks, title


_HTML_BLOCKS = ("p", "li", "pre", "table", "blockquote", "dd", "dt", "td")


def html_blocks(text: str) -> tuple[list[Block], str]:
    """Paragraph-level HTML elements under their h1–h6 headings; scripts and styles dropped."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(text, "html.parser")
    for tag in soup(["script", "style", "noscript", "template", "head"]):
        tag.decompose()
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else ""
    path: list[tuple[int, str]] = []
    blocks: list[Block] = []
    names = ["h1", "h2", "h3", "h4", "h5", "h6", *_HTML_BLOCKS]
    for el in soup.find_all(names):
        if el.name[0] == "h" and el.name[1:].isdigit():
            level = int(el.name[1])
            heading = el.get_text(" ", strip=True)
            path = [(lv, h) for lv, h in path if lv < level] + [(level, heading)]
            title = title or (heading if level == 1 else "")
            continue
        if el.find_parent(_HTML_BLOCKS):  # nested: its text is in the outer block
            continue
        body = el.get_text(" | " if el.name == "table" else " ", strip=True)
        if body:
            blocks.append(Block(body, tuple(h for _, h in path)))
    if not blocks:  # plain text in a body with no block elements
        body = soup.get_text("\n", strip=True)
        blocks = text_blocks(body)
    return blocks, title


def _pdf_blocks(data: bytes) -> tuple[list[Block], str]:
    import io
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            raise UnreadableDocument(
                "the PDF is encrypted",
                "save an unencrypted copy (print to PDF) and index that",
            )
        blocks: list[Block] = []
        for number, page in enumerate(reader.pages, start=1):
            blocks.extend(text_blocks(page.extract_text() or "", (f"page {number}",)))
        meta = reader.metadata
        title = str(meta.title) if meta is not None and meta.title else ""
    except UnreadableDocument:
        raise
    except (PdfReadError, ValueError, KeyError, TypeError, AttributeError, OSError) as exc:
        raise UnreadableDocument(
            f"the PDF cannot be read ({type(exc).__name__}: {str(exc)[:120]})",
            "open it in a PDF viewer and save or print it to a new PDF",
        ) from None
    return blocks, title
