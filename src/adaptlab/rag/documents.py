"""Read a folder of documents into structured blocks: markdown, text, HTML and PDF.

A documents folder is data someone handed over, so every file is read through
:func:`adaptlab.core.files.read_regular_file` (regular files only, bounded size), links
are never followed (one leading out of the folder is refused; one inside it is left
to its target, indexed under its own name), and each file that cannot be read is
reported as a :class:`Skipped` with its reason and fix instead of stopping the
whole index: the rest of the folder is still indexed and nothing is lost
silently. Parsing uses maintained libraries: markdown-it-py (CommonMark: a ``#``
inside a code fence is no heading), BeautifulSoup for HTML and pypdf for PDF.

``rag.max_file_mb`` bounds a file's bytes, but a small PDF can hold far more text
(20,000 pages sharing one content stream: 3 MB of file, minutes of extraction), so
:class:`DocLimits` also bounds the pages read, the characters kept and the seconds
spent on one document; what a bound cuts is said in :attr:`Document.cut`, never
dropped silently. Pages that share their content and resources are extracted once.
"""

from __future__ import annotations

import hashlib
import os
import re
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adaptlab.core.errors import AdaptlabError
from adaptlab.core.files import printable_name, read_regular_file

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
    cut: str = ""  # what a bound of :class:`DocLimits` left out ("" when nothing)

    @property
    def doc_id(self) -> str:
        """The id citations and qrels use: the path without a document suffix (.md,
        .pdf, …); any other dot is part of the id ("St._Louis", "v1.2" stay whole)."""
        path = self.path.replace(os.sep, "/")
        suffix = Path(path).suffix
        return path[: -len(suffix)] if suffix and suffix.lower() in SUFFIXES else path


@dataclass(frozen=True)
class DocLimits:
    """How much of one document is read: PDF pages, characters of text kept and
    seconds of extraction (checked between pages). The defaults leave real documents
    whole (a 5,000-page manual, 20 million characters) and stop a hostile one in time.
    """

    max_pages: int = 5000
    max_chars: int = 20_000_000
    max_seconds: float = 60.0


@dataclass(frozen=True)
class Skipped:
    """A file left out of the index, with why and how to fix it."""

    path: str
    reason: str
    fix: str


class UnreadableDocument(Exception):
    def __init__(self, reason: str, fix: str) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fix = fix


class Problem(str):
    """Why :func:`iter_files` leaves a path out (the string), with :attr:`fix`."""

    fix: str

    def __new__(cls, reason: str, fix: str) -> Problem:
        obj = super().__new__(cls, reason)
        obj.fix = fix
        return obj


_LINK_OUT_FIX = "copy the file into the folder instead of linking it"
_UNSUPPORTED_FIX = "convert it to .md, .txt, .html or .pdf, or move it out of the folder"


def _link_problem(path: Path, root: Path) -> Problem:
    """Why the link ``path`` is not followed: links are never followed, so a document
    is indexed once, under its own name, and nothing outside the folder is read."""
    target = Path(os.path.realpath(path))
    if not target.is_relative_to(root):
        return Problem(
            f"a link to {printable_name(str(target))}, outside the documents folder",
            _LINK_OUT_FIX,
        )
    if not target.exists():
        return Problem(
            "a broken link (its target does not exist)", "remove the link or restore its target"
        )
    return Problem(
        f"a link to '{printable_name(target.relative_to(root).as_posix())}' inside the folder "
        "(links are not followed; the target is indexed under its own name)",
        "nothing to do when the target is indexed; replace the link by a copy to index it "
        "under this name too",
    )


def iter_files(
    folder: Path, *, exclude: Path | None = None
) -> Iterator[tuple[Path, Problem | None]]:
    """Every file under ``folder`` (sorted, recursive, hidden ones left out), each with
    a reason it must be skipped or None.

    Links (to files or folders) are never followed; a link out of the folder, a
    folder that cannot be listed and an unsupported type each come with a
    :class:`Problem`. ``exclude`` (the index folder, when it lies inside) is left out.
    """
    root = folder.resolve()
    skip_dir = exclude.resolve() if exclude is not None else None
    errors: list[OSError] = []
    for dirpath, dirnames, filenames in os.walk(folder, onerror=errors.append, followlinks=False):
        while errors:
            exc = errors.pop(0)
            where = Path(exc.filename) if exc.filename else Path(dirpath)
            yield (
                where,
                Problem(
                    f"this folder cannot be listed ({exc.strerror or type(exc).__name__})",
                    "make it readable (chmod u+rx) or move it out of the documents folder",
                ),
            )
        here = Path(dirpath)
        kept: list[str] = []
        for d in sorted(dirnames):
            sub = here / d
            if d.startswith(".") or (skip_dir is not None and sub.resolve() == skip_dir):
                continue
            if sub.is_symlink():
                yield sub, _link_problem(sub, root)
                continue
            kept.append(d)
        dirnames[:] = kept
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = here / name
            if path.is_symlink():
                yield path, _link_problem(path, root)
                continue
            if path.suffix.lower() not in SUFFIXES:
                yield (
                    path,
                    Problem(
                        f"unsupported type '{printable_name(path.suffix) or '(none)'}'",
                        _UNSUPPORTED_FIX,
                    ),
                )
                continue
            special = _special_file(path)
            if special is not None:  # a FIFO would block a reader, a device never end
                yield path, special
                continue
            yield path, None
    for exc in errors:  # the folder itself vanished or cannot be listed
        yield (
            folder,
            Problem(
                f"the folder cannot be listed ({exc.strerror or type(exc).__name__})",
                "make it readable (chmod u+rx)",
            ),
        )


def _special_file(path: Path) -> Problem | None:
    """Why ``path`` (not a link) is no document: a named pipe, device or socket."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return None  # vanished: the read says so
    if stat.S_ISREG(mode):
        return None
    kind = next(
        (
            name
            for test, name in (
                (stat.S_ISFIFO, "a named pipe (FIFO)"),
                (stat.S_ISCHR, "a character device"),
                (stat.S_ISBLK, "a block device"),
                (stat.S_ISSOCK, "a socket"),
            )
            if test(mode)
        ),
        "not a regular file",
    )
    return Problem(
        f"{kind}, not a regular file",
        "move it out of the documents folder (only regular files are indexed)",
    )


def require_folder(folder: Path) -> None:
    """Raise :class:`AdaptlabError` with the fix when ``folder`` is missing or a file."""
    if not folder.is_dir():
        raise AdaptlabError(
            "the documents folder does not exist" if not folder.exists() else "not a folder",
            file=folder,
            fix="set rag.docs in adaptlab.yaml to a folder of .md, .txt, .html or .pdf files",
            code="rag-docs",
        )


def read_bytes(path: Path, max_file_mb: float) -> bytes:
    """The file's bytes (regular files only, at most ``max_file_mb``)."""
    try:
        return read_regular_file(
            path,
            max_bytes=int(max_file_mb * (1 << 20)),
            limit_name="rag.max_file_mb",
            what="document",
            fix_path="move it out of the documents folder (only regular files are indexed)",
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


def parse_document(
    data: bytes, rel: str, encoding: str = "utf-8", limits: DocLimits | None = None
) -> Document:
    """The bytes of the file ``rel`` as a :class:`Document`; :class:`UnreadableDocument`
    says why not (binary, wrong encoding, a broken or encrypted PDF, no text).

    ``limits`` (default :class:`DocLimits`) bound the pages, characters and seconds
    spent; what they cut is in :attr:`Document.cut`.
    """
    limits = limits or DocLimits()
    kind = SUFFIXES[Path(rel).suffix.lower()]
    sha = hashlib.sha256(data).hexdigest()
    cut = ""
    try:
        if kind == "pdf":
            blocks, title, cut = _pdf_blocks(data, limits)
        else:
            text = _decode(data, encoding)
            if kind == "markdown":
                blocks, title = markdown_blocks(text)
            elif kind == "html":
                blocks, title = html_blocks(text)
            else:
                blocks, title = text_blocks(text), ""
    except UnreadableDocument:
        raise
    except Exception as exc:  # a parser rejecting a malformed or hostile file: a skip
        raise UnreadableDocument(
            f"it cannot be parsed as {kind} ({type(exc).__name__}: "
            f"{str(exc).strip().splitlines()[0][:120] if str(exc).strip() else ''})",
            "open it in an editor or browser, fix or export it again, and index that",
        ) from None
    if not any(b.text.strip() for b in blocks):
        raise UnreadableDocument(
            "it holds no text"
            + (" (a scanned PDF?)" if kind == "pdf" else "")
            + (f"; {cut}" if cut else ""),
            "run OCR on scanned PDFs first; remove empty files"
            if kind == "pdf"
            else "remove the empty file or give it content",
        )
    if not cut:
        blocks, cut = _keep_chars(blocks, limits.max_chars)
    title = title.strip()[:1000] or Path(rel).stem
    return Document(rel, sha, kind, title, tuple(blocks), cut)


def _keep_chars(blocks: list[Block], max_chars: int) -> tuple[list[Block], str]:
    """The leading blocks holding at most ``max_chars`` characters (the last one cut),
    and what was left out ("" when nothing)."""
    total = sum(len(b.text) for b in blocks)
    if total <= max_chars:
        return blocks, ""
    kept: list[Block] = []
    left = max_chars
    for b in blocks:
        if left <= 0:
            break
        kept.append(b if len(b.text) <= left else Block(b.text[:left], b.headings))
        left -= len(b.text)
    return kept, (
        f"only its first {max_chars:,} of {total:,} characters were indexed (rag.max_chars)"
    )


def read_document(
    path: Path, rel: str, max_file_mb: float, encoding: str, limits: DocLimits | None = None
) -> Document:
    """One file as a :class:`Document`; :class:`UnreadableDocument` says why not."""
    return parse_document(read_bytes(path, max_file_mb), rel, encoding, limits)


def _decode(data: bytes, encoding: str) -> str:
    utf16 = data.startswith((b"\xff\xfe", b"\xfe\xff"))
    if utf16:
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    if b"\0" in data:
        raise UnreadableDocument(
            "it is a binary file (NUL bytes), not text",
            "remove it, or export it as .md, .txt, .html or .pdf",
        )
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    name = "utf-8" if bom else encoding
    try:
        return data[bom:].decode(name)
    except UnicodeDecodeError as exc:
        at = exc.start + bom
        raise UnreadableDocument(
            f"it is not valid {name} (byte 0x{data[at]:02x} at offset {at})",
            "re-save it as UTF-8, or set rag.encoding in adaptlab.yaml (cp1252, latin-1) "
            "when the whole folder uses another encoding",
        ) from None
    except LookupError:
        raise UnreadableDocument(
            f"the encoding '{name}' is unknown",
            "set rag.encoding in adaptlab.yaml to utf-8, cp1252, latin-1 or utf-16",
        ) from None


_BLANK_LINE = re.compile(r"\n[ \t\f\v]*\n")


def text_blocks(text: str, headings: tuple[str, ...] = ()) -> list[Block]:
    """Paragraphs separated by blank lines (lines of only spaces count as blank)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    paragraphs = [p.strip() for p in _BLANK_LINE.split(text)]
    return [Block(p, headings) for p in paragraphs if p]


_FRONT_MATTER_TITLE = re.compile(r"^title:\s*(.+?)\s*$", re.IGNORECASE)


def _front_matter(lines: list[str]) -> tuple[int, str]:
    """The number of lines of a leading YAML front matter block and its ``title:``."""
    if not lines or lines[0].strip() != "---":
        return 0, ""
    for end in range(1, min(len(lines), 200)):
        if lines[end].strip() in ("---", "..."):
            title = ""
            for line in lines[1:end]:
                m = _FRONT_MATTER_TITLE.match(line)
                if m:
                    title = m.group(1).strip().strip("\"'")
                    break
            return end + 1, title
    return 0, ""


def _inline_text(tok: Any) -> str:
    """The plain text of a markdown-it inline token (no markup, no raw HTML)."""
    parts: list[str] = []
    for child in tok.children or []:
        if child.type in ("text", "code_inline"):
            parts.append(child.content)
        elif child.type in ("softbreak", "hardbreak"):
            parts.append(" ")
    return " ".join("".join(parts).split())


def markdown_blocks(text: str) -> tuple[list[Block], str]:
    """Top-level CommonMark blocks (paragraphs, lists, tables, code) under their headings.

    A YAML front matter block is left out (its ``title:`` names the document),
    thematic breaks are no blocks, and raw HTML blocks keep only their visible text.
    """
    from markdown_it import MarkdownIt

    md = MarkdownIt("commonmark").enable("table")
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    skip, title = _front_matter(lines)
    lines = [""] * skip + lines[skip:]
    path: list[tuple[int, str]] = []
    blocks: list[Block] = []
    tokens = md.parse("\n".join(lines))
    for i, tok in enumerate(tokens):
        if tok.level != 0 or tok.map is None or tok.nesting == -1 or tok.type == "hr":
            continue
        if tok.type == "heading_open":
            level = int(tok.tag[1:])
            heading = _inline_text(tokens[i + 1])
            path = [(lv, h) for lv, h in path if lv < level] + [(level, heading)]
            if level == 1 and not title:
                title = heading
            continue
        start, end = tok.map
        body = "\n".join(lines[start:end]).strip()
        if tok.type == "html_block":
            body = _visible_html_text(body)
        if body:
            blocks.append(Block(body, tuple(h for _, h in path if h)))
    return blocks, title


# Elements whose content is never text of the page (code, styles, embedded objects).
_HTML_DROP = (
    "script", "style", "noscript", "template", "head", "iframe", "object", "embed",
    "svg", "math", "canvas", "select", "button",
)  # fmt: skip
_HTML_BLOCKS = frozenset(("p", "li", "pre", "table", "blockquote", "dd", "dt", "td", "th"))
# Elements that end a run of loose text (text directly in a <div>, <section>, …).
_HTML_BREAKS = frozenset((
    "html", "body", "div", "section", "article", "main", "header", "footer", "nav", "aside",
    "form", "fieldset", "figure", "figcaption", "address", "details", "summary", "ul", "ol",
    "dl", "hr", "center", "hgroup", "caption", "tr", "tbody", "thead", "tfoot", "legend",
))  # fmt: skip


def _soup(text: str) -> Any:
    from bs4 import BeautifulSoup

    return BeautifulSoup(text, "html.parser")


def _visible_html_text(text: str) -> str:
    soup = _soup(text)
    for tag in soup(list(_HTML_DROP)):
        tag.decompose()
    return str(soup.get_text(" ", strip=True))


def _table_text(table: Any) -> str:
    """A table as one line per row, cells separated by `` | ``."""
    rows = []
    for tr in table.find_all("tr"):
        if tr.find_parent("table") is not table:
            continue  # a nested table's row: in its cell's text already
        cells = [c.get_text(" ", strip=True) for c in tr.find_all(["td", "th"], recursive=False)]
        if any(cells):
            rows.append(" | ".join(cells))
    return "\n".join(rows) if rows else str(table.get_text(" ", strip=True))


def html_blocks(text: str) -> tuple[list[Block], str]:
    """Paragraph-level HTML elements under their h1–h6 headings; scripts and styles dropped.

    Text directly inside a ``<div>`` or ``<section>`` (no ``<p>`` around it) is a
    block of its own: nothing visible on the page is left out.
    """
    from bs4.element import NavigableString, PreformattedString, Tag

    soup = _soup(text)
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else ""
    for tag in soup(list(_HTML_DROP)):
        tag.decompose()
    path: list[tuple[int, str]] = []
    blocks: list[Block] = []
    loose: list[str] = []

    def flush() -> None:
        body = " ".join(" ".join(loose).split())
        loose.clear()
        if body:
            blocks.append(Block(body, tuple(h for _, h in path if h)))

    # Depth-first in document order, without recursion (a hostile page nests deeply);
    # each entry: the children still to visit, and whether the element ends a text run.
    stack: list[tuple[Iterator[Any], bool]] = [(iter(soup.contents), True)]
    while stack:
        children, breaks = stack[-1]
        node = next(children, None)
        if node is None:
            stack.pop()
            if breaks:
                flush()
            continue
        if isinstance(node, PreformattedString):  # comments, doctype, CDATA
            continue
        if isinstance(node, NavigableString):
            loose.append(str(node))
            continue
        if not isinstance(node, Tag):
            continue
        name = node.name.lower()
        if len(name) == 2 and name[0] == "h" and name[1] in "123456":
            flush()
            level = int(name[1])
            heading = node.get_text(" ", strip=True)
            path = [(lv, h) for lv, h in path if lv < level] + [(level, heading)]
            title = title or (heading if level == 1 else "")
        elif name in _HTML_BLOCKS:
            flush()
            body = _table_text(node) if name == "table" else node.get_text(" ", strip=True)
            if body:
                blocks.append(Block(body, tuple(h for _, h in path if h)))
        elif name == "br":
            loose.append("\n")
        else:  # a break (div, section, …) or inline (span, a, em, …) element: look inside
            if name in _HTML_BREAKS:
                flush()
            stack.append((iter(node.contents), name in _HTML_BREAKS))
    flush()
    return blocks, title


def _page_key(page: Any) -> tuple[str, ...] | None:
    """What a page's text depends on (its content streams, resources and rotation), as
    a key: pages with equal keys extract to equal text. None when it is not cheap to
    tell (inline content, very large resources)."""
    from pypdf.generic import ArrayObject, IndirectObject

    contents = page.raw_get("/Contents") if "/Contents" in page else None
    if isinstance(contents, IndirectObject):
        refs = [contents]
    elif isinstance(contents, ArrayObject) and all(isinstance(c, IndirectObject) for c in contents):
        refs = list(contents)
    else:
        return None
    resources = repr(page.raw_get("/Resources")) if "/Resources" in page else ""
    if len(resources) > 10_000:
        return None
    rotate = repr(page.raw_get("/Rotate")) if "/Rotate" in page else ""
    return (*(f"{r.idnum} {r.generation}" for r in refs), resources, rotate)


def _pdf_blocks(data: bytes, limits: DocLimits) -> tuple[list[Block], str, str]:
    """Each page's paragraphs under the heading ``page N``, the title, and what the
    limits cut ("" when nothing).

    A PDF encrypted with an empty user password (only editing is restricted) opens
    in every viewer, so it is read; one that needs a password is skipped. A
    malformed PDF can make pypdf raise nearly anything: each failure is reported.
    Pages are read until ``limits.max_pages``, ``limits.max_chars`` characters or
    ``limits.max_seconds`` (checked between pages); a page whose content and
    resources an earlier page has is indexed once (its text would only repeat).
    """
    import io
    import logging

    from pypdf import PdfReader

    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            try:
                opened = bool(reader.decrypt(""))
            except Exception:
                opened = False
            if not opened:
                raise UnreadableDocument(
                    "the PDF is encrypted (it needs a password to open)",
                    "save an unencrypted copy (print to PDF) and index that",
                )
        blocks: list[Block] = []
        pages = reader.pages
        total = len(pages)
        start = time.monotonic()
        seen: dict[tuple[str, ...], int] = {}
        chars, cut, repeats = 0, "", 0
        for number in range(1, total + 1):
            if number > limits.max_pages:
                cut = (
                    f"only its first {limits.max_pages:,} of {total:,} pages were indexed "
                    "(rag.max_pages)"
                )
                break
            if number > 1 and time.monotonic() - start > limits.max_seconds:
                cut = (
                    f"only its first {number - 1:,} of {total:,} pages were indexed: reading "
                    f"them took over {limits.max_seconds:g} s (rag.max_seconds)"
                )
                break
            page = pages[number - 1]
            key = _page_key(page)
            if key is not None and key in seen:
                repeats += 1  # the same text again: nothing new to retrieve
                continue
            text = page.extract_text() or ""
            if key is not None:
                seen[key] = number
            if chars + len(text) > limits.max_chars:
                text = text[: limits.max_chars - chars]
                cut = (
                    f"only its first {limits.max_chars:,} characters were indexed (up to page "
                    f"{number:,} of {total:,}; rag.max_chars)"
                )
            chars += len(text)
            blocks.extend(text_blocks(text, (f"page {number}",)))
            if cut:
                break
        if repeats:
            note = f"{repeats:,} pages repeat an earlier page's content and were indexed once"
            cut = f"{cut}; {note}" if cut else note
        meta = reader.metadata
        title = str(meta.title) if meta is not None and meta.title else ""
    except UnreadableDocument:
        raise
    except Exception as exc:  # any failure of a hostile file is a skip, never a crash
        raise UnreadableDocument(
            f"the PDF cannot be read ({type(exc).__name__}: {str(exc)[:120]})",
            "open it in a PDF viewer and save or print it to a new PDF",
        ) from None
    return blocks, title, cut
