"""Passwords out of anything shown: a database URL's password never reaches a message,
a log line, a report or a store.

A libpq connection string names its password in the URL (``postgresql://bob:pw@host``),
as ``password=…`` (``key=value`` form or a URL query), or not at all (``PGPASSWORD``,
``~/.pgpass``). :func:`redact_url` blanks the first two in a URL or any text holding
one; :func:`scrub` also blanks the password's own text wherever a driver or server
message repeats it (and ``PGPASSWORD``'s).
"""

from __future__ import annotations

import os
import re
from urllib.parse import quote, unquote

from adaptlab.core.urls import UrlProblem

_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/?#@\s]*:)[^\s]+(?=@)", re.I)
_KV_PASSWORD = re.compile(r"(?P<head>\b(?:ssl)?password\s*=\s*)(?:'(?:[^'\\]|\\.)*'|[^\s&]*)", re.I)
REDACTED = "***"


def redact_url(url: str) -> str:
    """``url`` (or any text) with each password replaced by ``***``.

    Both forms: ``scheme://user:PASSWORD@host`` and ``password=PASSWORD`` (a ``key=value``
    connection string or a URL query). A user name, host and database stay readable.
    """
    return _KV_PASSWORD.sub(rf"\g<head>{REDACTED}", _URL_PASSWORD.sub(rf"\g<head>{REDACTED}", url))


def secrets_of(url: str) -> list[str]:
    """The passwords of ``url`` and ``PGPASSWORD`` as they could appear in text (as
    written and percent-encoded); only those of 3 characters or more, since a shorter
    one would blank out ordinary text. Parses with psycopg where it is installed."""
    found: list[str] = []
    try:
        from psycopg.conninfo import conninfo_to_dict

        password = conninfo_to_dict(url).get("password")
        if password:
            found.append(str(password))
    except Exception:  # psycopg missing or the text unparsable: the regexes still apply
        pass
    # As written, too: a URL libpq cannot parse is quoted in its error message.
    found += [m.group(0)[len(m.group("head")) :] for m in _URL_PASSWORD.finditer(url)]
    if os.environ.get("PGPASSWORD"):
        found.append(os.environ["PGPASSWORD"])
    forms = {v for s in found for v in (s, quote(s, safe=""), unquote(s))}
    return sorted((v for v in forms if len(v) >= 3), key=len, reverse=True)


def scrub(text: str, url: str) -> str:
    """``text`` (a server or driver message) with every password of ``url`` redacted."""
    text = redact_url(text)
    for secret in secrets_of(url):
        text = text.replace(secret, REDACTED)
    return text


_DB_SCHEMES = ("postgresql://", "postgres://")
_DB_FIX = (
    "write postgresql://USER@HOST:PORT/DATABASE; the password goes in PGPASSWORD or "
    "~/.pgpass (or the whole URL in ADAPTLAB_STORE_URL), never in adaptlab.yaml"
)


def database_url_problem(url: object, *, allow_password: bool = False) -> UrlProblem | None:
    """Why ``url`` cannot name a PostgreSQL store, or None.

    Refused: anything but text, whitespace or control characters, a scheme other than
    ``postgresql://``/``postgres://``, and, unless ``allow_password`` (a URL from the
    environment, never written to a file), a password in it (``user:PASSWORD@`` or
    ``password=``). The reason never repeats the URL, so it may be shown whatever it held.
    """
    if not isinstance(url, str) or not url:
        return UrlProblem("is empty or not text", _DB_FIX)
    if any(c.isspace() or not c.isprintable() for c in url):
        return UrlProblem("has whitespace or a control character", "write the URL on one line")
    if not url.lower().startswith(_DB_SCHEMES):
        return UrlProblem("must be a PostgreSQL URL starting with postgresql://", _DB_FIX)
    if not allow_password and redact_url(url) != url:
        return UrlProblem(
            "holds a password: a file keeps it for everyone who reads or commits it, a "
            "command line shows it to every user of the machine (ps) and its history",
            _DB_FIX,
        )
    return None
