"""What a reader sees of a report or a terminal: its text, and the numbers in it.

:func:`visible_text` keeps the text of an HTML page a browser shows (prose, tables,
the plots' SVG labels) and leaves out CSS, scripts, and the code and quoted user text
(run ids, template hashes, prompts, the examples' inputs and answers), whose digits
are not figures. :data:`EXPONENT` finds a number written with an exponent ("2.2e+04",
"1e-05") and no hexadecimal id that happens to hold "5e9".
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

#: A number in exponent form, standing alone: not part of a word, an id or a hash.
EXPONENT = re.compile(r"(?<![\w.])\d+(?:\.\d+)?[eE][+-]?\d+(?![\w.])")
#: Elements whose text is no figure of the report: styles, code, quoted user text.
SKIPPED = {"style", "script", "code", "pre", "details", "title"}


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skipping: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in SKIPPED:
            self.skipping.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if self.skipping and self.skipping[-1] == tag:
            self.skipping.pop()

    def handle_data(self, data: str) -> None:
        if not self.skipping:
            self.parts.append(data)


def visible_text(page: str) -> str:
    """The text of ``page`` a reader sees as figures and prose, whitespace runs as one
    space (see the module docstring for what is left out)."""
    parser = _Text()
    parser.feed(page)
    parser.close()
    return " ".join(" ".join(parser.parts).split())


def exponents(text: str, context: int = 50) -> list[str]:
    """Each number in ``text`` written with an exponent, with the words around it."""
    return [text[max(0, m.start() - context) : m.end() + context] for m in EXPONENT.finditer(text)]
