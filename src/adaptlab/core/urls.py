"""Endpoint URLs that a config, a model folder or a command line names.

A URL is copied wherever its setting goes (the store, the report, a model folder, a
log line), so one that carries a secret (``https://user:pass@host``, ``…?key=…``)
spreads it; one with a fragment, a backslash, whitespace or a control character can be
read as one server by a check and as another by the HTTP client. :func:`url_problem`
refuses all of these, so an accepted URL is ``http(s)://host[:port][/path]`` and
:func:`origin` says exactly which server it reaches: the unit a key is bound to
(:mod:`adaptlab.llm.keys`).
"""

from __future__ import annotations

import ipaddress
import re
from typing import NamedTuple
from urllib.parse import urlsplit

_DEFAULT_PORTS = {"http": 80, "https": 443}
# A host name as DNS writes it (letters, digits, '-', '_' for container names, dots).
_HOST_NAME = re.compile(r"[a-z0-9_-]+(\.[a-z0-9_-]+)*\.?")
_ONE_LINE = "write the URL on one line, e.g. https://api.example.com/v1"


class UrlProblem(NamedTuple):
    """Why a URL is refused (never repeating a secret it holds) and how to write it."""

    reason: str
    fix: str


def url_problem(url: object) -> UrlProblem | None:
    """Why ``url`` cannot name an endpoint, or None when it is ``http(s)://host[:port][/path]``.

    Refused: anything but text, an empty or non-ASCII URL, whitespace or control
    characters anywhere, a scheme other than http/https, a user name or password
    (``user:pass@``), a query string, a fragment, a backslash, a host that is no DNS
    name or IP address, a bad port or port 0. The reason never contains the URL, so it
    may be shown and stored whatever the URL held.
    """
    if not isinstance(url, str) or not url:
        return UrlProblem("is empty or not text", _ONE_LINE)
    bad = next((i for i, c in enumerate(url) if c.isspace() or not c.isprintable()), None)
    if bad is not None:
        return UrlProblem(f"has whitespace or a control character at position {bad + 1}", _ONE_LINE)
    if not url.isascii():
        return UrlProblem(
            "has characters outside ASCII",
            "write the host in its xn-- (punycode) form and percent-encode the path",
        )
    if "\\" in url:
        return UrlProblem("has a backslash", "use '/' between the parts of the path")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS:
        return UrlProblem("must start with http:// or https://", _ONE_LINE)
    if "@" in parts.netloc:
        return UrlProblem(
            "carries credentials (a user name or password before '@'): they would be "
            "stored, logged and sent as they are",
            "remove the part up to and including '@'; a key belongs in the keys file "
            "(~/.config/adaptlab/keys.yaml), bound to this URL under 'send:'",
        )
    if "?" in url:
        return UrlProblem(
            "carries a query string ('?…'): a key there would be stored, logged and sent as it is",
            "remove everything from '?'; a key belongs in the keys file "
            "(~/.config/adaptlab/keys.yaml), bound to this URL under 'send:'",
        )
    if "#" in url:
        return UrlProblem("has a fragment ('#…')", "remove everything from '#'")
    host = (parts.hostname or "").lower()
    if not host:
        return UrlProblem("names no host", _ONE_LINE)
    if parts.netloc.startswith("["):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return UrlProblem("has a bracketed host that is no IPv6 address", _ONE_LINE)
    elif not _HOST_NAME.fullmatch(host):
        return UrlProblem(
            "has a host that is no DNS name or IP address",
            "a host has letters, digits, '-', '_' and dots only",
        )
    try:
        port = parts.port
    except ValueError:
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        return UrlProblem("has a bad port (1 to 65535)", _ONE_LINE)
    return None


def origin(url: str) -> str:
    """``scheme://host:port`` of ``url``: lower case, the default port written out.

    Two URLs reach the same server exactly when their origins are equal:
    ``https://A.com/v1`` and ``https://a.com:443`` are one origin; ``http://a.com``,
    ``https://a.com:8443`` and ``https://a.com.evil.org`` are three others. Raises
    ValueError for a URL :func:`url_problem` refuses.
    """
    problem = url_problem(url)
    if problem is not None:
        raise ValueError(f"the URL {problem.reason}")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6, written in its one canonical form
        host = f"[{ipaddress.IPv6Address(host).compressed}]"
    return f"{scheme}://{host}:{parts.port or _DEFAULT_PORTS[scheme]}"


__all__ = ["UrlProblem", "origin", "url_problem"]
