"""Errors that carry where the problem is and how to fix it.

Every error a user can cause by what they wrote (a data file, ``adaptlab.yaml``)
is an :class:`AdaptlabError` with the file, the line when there is one, and a fix.
The CLI prints these without a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Issue:
    """One finding about a file: an error stops the run, a warning does not."""

    message: str
    file: str | None = None
    line: int | None = None
    fix: str | None = None
    severity: str = "error"
    code: str = "invalid"

    @property
    def where(self) -> str:
        if self.file is None:
            return ""
        return f"{self.file}:{self.line}" if self.line is not None else self.file

    def __str__(self) -> str:
        text = f"{self.where}: {self.message}" if self.where else self.message
        if self.fix:
            text += f"\n  fix: {self.fix}"
        return text


class AdaptlabError(Exception):
    """A problem the user can fix; ``str()`` names where and how."""

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        fix: str | None = None,
        code: str = "invalid",
    ) -> None:
        self.issue = Issue(
            message=message,
            file=str(file) if file is not None else None,
            line=line,
            fix=fix,
            code=code,
        )
        super().__init__(str(self.issue))

    @property
    def file(self) -> str | None:
        return self.issue.file

    @property
    def line(self) -> int | None:
        return self.issue.line

    @property
    def fix(self) -> str | None:
        return self.issue.fix


class ConfigError(AdaptlabError):
    """``adaptlab.yaml`` is malformed or holds a wrong value."""


class DataError(AdaptlabError):
    """A data file is malformed or fails validation."""

    def __init__(self, message: str, *, issues: list[Issue] | None = None, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.issues = issues or [self.issue]

    def __str__(self) -> str:
        if len(self.issues) <= 1:
            return str(self.issues[0])
        shown = "\n".join(str(i) for i in self.issues[:20])
        more = len(self.issues) - 20
        tail = f"\n… and {more} more" if more > 0 else ""
        return f"{self.args[0]}\n{shown}{tail}"


class MissingDependencyError(AdaptlabError):
    """A feature needs an optional extra that is not installed."""

    def __init__(self, package: str, extra: str) -> None:
        super().__init__(
            f"this needs the '{package}' package, which is not installed",
            fix=f'pip install "adaptlab[{extra}]" (install torch==2.13.0 or your CUDA build first)',
            code="missing-dependency",
        )
