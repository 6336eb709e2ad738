"""Prompt templates: Jinja2 files with named parts and a content-hash version.

A template defines up to five blocks — ``system``, ``context``, ``examples``,
``task`` and ``output_format``. The system block becomes the system message;
the others, in that order and separated by a blank line, the user message. The
built-ins (``classify``, ``extract``, ``generate``) wrap inputs and examples in
XML-style tags so that text inside an input cannot pass for an instruction.
Your own file can ``{% extends "classify.j2" %}`` and override one block.

The version of a template is the hash of its source and of every template it
extends or includes: it is recorded with each run, and changing a comma makes a
new version (and new cache keys), while an unchanged template reuses answers.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import jinja2.meta
import jinja2.nodes

from adaptlab.errors import ConfigError
from adaptlab.llm.types import Message

PARTS = ("system", "context", "examples", "task", "output_format")
BUILTIN = ("classify", "extract", "generate")
_BUILTIN_DIR = Path(__file__).parent / "templates"


@dataclass(frozen=True)
class RenderedPrompt:
    parts: dict[str, str]
    messages: tuple[Message, ...]


class PromptTemplate:
    """A template by built-in name (``classify``) or by path (relative to ``root``)."""

    def __init__(self, name: str, root: Path | None = None) -> None:
        self.name = name
        root = root or Path.cwd()
        if name in BUILTIN or (name.removesuffix(".j2") in BUILTIN and "/" not in name):
            self.file = _BUILTIN_DIR / f"{name.removesuffix('.j2')}.j2"
        else:
            self.file = (root / name).expanduser()
            if not self.file.is_file():
                raise ConfigError(
                    f"prompt template '{name}' not found",
                    file=self.file,
                    fix=f"use a built-in template ({', '.join(BUILTIN)}) or a .j2 file "
                    "relative to the project folder",
                )
        # The file's own folder first, then the built-ins, so `extends "classify.j2"` works.
        self.env = jinja2.Environment(
            loader=jinja2.FileSystemLoader([str(self.file.parent), str(_BUILTIN_DIR)]),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        try:
            self.template = self.env.get_template(self.file.name)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                f"template syntax error: {exc.message}",
                file=Path(exc.filename or self.file),
                line=exc.lineno,
                fix="see https://jinja.palletsprojects.com/templates/ for the syntax",
            ) from None
        self.chain = self._chain()
        unknown = {name for t in self.chain for name in t.blocks} - set(PARTS)
        if unknown:
            raise ConfigError(
                f"unknown prompt part(s): {', '.join(sorted(unknown))}",
                file=self.file,
                fix=f"a template's blocks are named {', '.join(PARTS)}",
            )

    def _chain(self) -> list[jinja2.Template]:
        """This template and the ones it extends, child first (for block lookup)."""
        chain = [self.template]
        while len(chain) < 10:
            source = self.env.loader.get_source(self.env, chain[-1].name or "")[0]  # type: ignore[union-attr]
            extends = self.env.parse(source).find(jinja2.nodes.Extends)
            if extends is None or not isinstance(extends.template, jinja2.nodes.Const):
                break
            chain.append(self.env.get_template(extends.template.value))
        return chain

    @cached_property
    def version(self) -> str:
        """Hash of this template's source and of every template it pulls in."""
        digest = hashlib.sha256()
        seen: set[str] = set()
        todo = [self.file.name]
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            source = self.env.loader.get_source(self.env, name)[0]  # type: ignore[union-attr]
            digest.update(name.encode() + b"\0" + source.encode() + b"\0")
            refs = jinja2.meta.find_referenced_templates(self.env.parse(source))
            todo.extend(r for r in refs if r is not None)
        return digest.hexdigest()[:12]

    def render(self, variables: dict[str, Any], *, system: str | None = None) -> RenderedPrompt:
        """Render every part; ``system`` replaces the system part (system-prompt variants)."""
        ctx = self.template.new_context(dict(variables))
        # As Jinja's own `extends` does: a part's first block is the child's, and the
        # parents' follow, so `{{ super() }}` works inside an overridden part.
        for parent in self.chain[1:]:
            for name, block in parent.blocks.items():
                ctx.blocks.setdefault(name, []).append(block)
        parts: dict[str, str] = {}
        try:
            for part in PARTS:
                blocks = ctx.blocks.get(part)
                parts[part] = "".join(blocks[0](ctx)).strip() if blocks else ""
        except jinja2.UndefinedError as exc:
            raise ConfigError(
                f"template uses an unknown variable: {exc.message}",
                file=self.file,
                fix="available: " + ", ".join(sorted(variables)),
            ) from None
        if system is not None:
            parts["system"] = system.strip()
        user = "\n\n".join(parts[p] for p in PARTS[1:] if parts[p])
        messages = [Message("system", parts["system"])] if parts["system"] else []
        messages.append(Message("user", user))
        return RenderedPrompt(parts, tuple(messages))
