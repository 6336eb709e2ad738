"""Prompt templates: Jinja2 files with named parts and a content-hash version.

A template defines up to five blocks — ``system``, ``context``, ``examples``,
``task`` and ``output_format``. The system block becomes the system message;
the others, in that order and separated by a blank line, the user message. The
built-ins (``classify``, ``extract``, ``generate``) wrap inputs and examples in
XML-style tags so that text inside an input cannot pass for an instruction.
Your own file can ``{% extends "classify.j2" %}`` and override one block.

The built-ins exist in English (``templates/*.j2``) and German (``templates/de/*.j2``,
Sie-form); :func:`template_language` says which one a project's language gets, and
``PromptTemplate(name, root, language="de")`` loads it. Each language is one folder
with the same file names, so ``extends "classify.j2"`` inside it finds its own
language's parent; the XML tags and the ``Answer:`` marker stay English in every
language (they are markup that the parser and the RAG document screen read). A
language without a folder gets the English built-ins and a note
(:func:`template_language`); a user's own template is never replaced.

The version of a template is the hash of its source and of every template it
extends or includes: it is recorded with each run, and changing a comma makes a
new version (and new cache keys), while an unchanged template reuses answers.

A template comes with a project folder, which may be someone else's: it renders
in Jinja's immutable sandbox (no Python internals, no mutation), sees only its own
folder inside the project and the built-ins (see :mod:`adaptlab.prompts.sandbox`),
and every value it builds is bounded in size, so it can neither run code, read
files elsewhere nor exhaust memory.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import jinja2
import jinja2.exceptions
import jinja2.meta
import jinja2.nodes

from adaptlab.core.errors import ConfigError
from adaptlab.core.languages import language_name
from adaptlab.llm.types import Message
from adaptlab.prompts.sandbox import MAX_CHARS, ProjectLoader, PromptEnvironment, Refused

PARTS = ("system", "context", "examples", "task", "output_format")
BUILTIN = ("classify", "classify-short", "extract", "generate")
_BUILTIN_DIR = Path(__file__).parent / "templates"
#: Languages (ISO 639-1) the built-in templates are written in; English is the fallback.
TEMPLATE_LANGUAGES = ("en", "de")


def is_builtin(name: str) -> bool:
    """Whether a candidate's ``template`` names a built-in ("classify", "classify.j2")."""
    return name in BUILTIN or (name.removesuffix(".j2") in BUILTIN and "/" not in name)


def template_language(code: str) -> tuple[str, str | None]:
    """The language of the built-in templates for data in ``code`` (ISO 639-1), and a
    note when that is the English fallback for a language without built-ins.

    The note names the language and how to write one's own template: copy the
    English built-in (``adaptlab prompt render`` shows its parts) into the project,
    translate it and name it in the candidate's ``template:``.
    """
    if code in TEMPLATE_LANGUAGES:
        return code, None
    note = (
        f"no built-in prompt templates in {language_name(code)} ({code}): the prompted "
        f"candidates use the English ones (built-ins exist in {', '.join(TEMPLATE_LANGUAGES)}); "
        f"to prompt in {language_name(code)}, copy {_BUILTIN_DIR / 'classify.j2'} (or "
        "extract.j2, generate.j2) into the project as prompts/classify.j2, translate its "
        "text and set template: prompts/classify.j2 in the candidate's params"
    )
    return "en", note


_SANDBOX_FIX = (
    "a template may use its variables, Jinja's filters and tests, and templates in its "
    "own folder or the built-ins (classify.j2, classify-short.j2, extract.j2,"
    " generate.j2); nothing else"
)


@dataclass(frozen=True)
class RenderedPrompt:
    parts: dict[str, str]
    messages: tuple[Message, ...]


class PromptTemplate:
    """A template by built-in name (``classify``) or by path (relative to ``root``).

    A path must stay inside ``root`` (the project folder), symlinks resolved.
    ``language`` (ISO 639-1) picks the built-in's language (see
    :func:`template_language`; English where there is none); :attr:`language` is the
    one loaded, None for the user's own file, which ``language`` never changes.
    """

    def __init__(self, name: str, root: Path | None = None, language: str = "en") -> None:
        self.name = name
        root = (root or Path.cwd()).resolve()
        self.language: str | None = None
        if is_builtin(name):
            self.language = template_language(language)[0]
            folder = _BUILTIN_DIR if self.language == "en" else _BUILTIN_DIR / self.language
            self.file = folder / f"{name.removesuffix('.j2')}.j2"
            folders = [folder, _BUILTIN_DIR] if folder != _BUILTIN_DIR else [folder]
        else:
            resolved = (root / name).resolve()
            self.file = resolved
            if not resolved.is_relative_to(root):
                raise ConfigError(
                    f"prompt template '{name}' is outside the project folder ({resolved})",
                    file=root / name,
                    fix="put the template inside the project folder and name it relative "
                    "to it (e.g. prompts/mine.j2); templates may not be read from elsewhere",
                )
            if not resolved.is_file():
                raise ConfigError(
                    f"prompt template '{name}' not found",
                    file=self.file,
                    fix=f"use a built-in template ({', '.join(BUILTIN)}) or a .j2 file "
                    "relative to the project folder",
                )
            # The file's own folder first, then the built-ins, so `extends "classify.j2"` works.
            folders = [resolved.parent, _BUILTIN_DIR]
        self.env = PromptEnvironment(
            loader=ProjectLoader(folders),
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=False,
        )
        try:
            self.template = self.env.get_template(self.file.name)
            self.chain = self._chain()
        except jinja2.TemplateSyntaxError as exc:
            raise self._syntax_error(exc) from None
        except jinja2.TemplateNotFound as exc:
            raise self._not_found(exc) from None
        unknown = {name for t in self.chain for name in t.blocks} - set(PARTS)
        if unknown:
            raise ConfigError(
                f"unknown prompt part(s): {', '.join(sorted(unknown))}",
                file=self.file,
                fix=f"a template's blocks are named {', '.join(PARTS)}",
            )

    def _syntax_error(self, exc: jinja2.TemplateSyntaxError) -> ConfigError:
        return ConfigError(
            f"template syntax error: {exc.message}",
            file=Path(exc.filename or self.file),
            line=exc.lineno,
            fix="see https://jinja.palletsprojects.com/templates/ for the syntax",
        )

    def _not_found(self, exc: jinja2.TemplateNotFound) -> ConfigError:
        return ConfigError(
            f"template '{self.name}' refers to '{exc.name}': {exc.message or 'not found'}",
            file=self.file,
            fix="extend or include a UTF-8 text file under 1 MB in the template's own folder "
            "(or below it) or a built-in; paths outside it ('..', absolute paths, links) are "
            "not followed",
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
        for name, source in self.sources().items():
            digest.update(name.encode() + b"\0" + source.encode() + b"\0")
        return digest.hexdigest()[:12]

    def sources(self) -> dict[str, str]:
        """Source of this template and of every template it extends or includes, by name
        (the file name its loader finds it by), in the order :attr:`version` hashes them.

        An export copies these files, so a served candidate renders its prompt without
        the project folder and keeps the version it was measured with.
        """
        out: dict[str, str] = {}
        todo = [self.file.name]
        try:
            while todo:
                name = todo.pop()
                if name in out:
                    continue
                source = self.env.loader.get_source(self.env, name)[0]  # type: ignore[union-attr]
                out[name] = source
                refs = jinja2.meta.find_referenced_templates(self.env.parse(source))
                todo.extend(r for r in refs if r is not None)
        except jinja2.TemplateNotFound as exc:
            raise self._not_found(exc) from None
        except jinja2.TemplateSyntaxError as exc:
            raise self._syntax_error(exc) from None
        return out

    def render(self, variables: dict[str, Any], *, system: str | None = None) -> RenderedPrompt:
        """Render every part; ``system`` replaces the system part (system-prompt variants)."""
        ctx = self.template.new_context(dict(variables))
        # As Jinja's own `extends` does: a part's first block is the child's, and the
        # parents' follow, so `{{ super() }}` works inside an overridden part.
        for parent in self.chain[1:]:
            for name, block in parent.blocks.items():
                ctx.blocks.setdefault(name, []).append(block)
        parts: dict[str, str] = {}
        self.env.start_render()
        try:
            for part in PARTS:
                blocks = ctx.blocks.get(part)
                parts[part] = self._collect(blocks[0](ctx)).strip() if blocks else ""
        except jinja2.UndefinedError as exc:
            raise ConfigError(
                f"template uses an unknown variable: {exc.message}",
                file=self.file,
                fix="available: " + ", ".join(sorted(variables)),
            ) from None
        except jinja2.exceptions.SecurityError as exc:
            raise self._unsafe(str(exc)) from None
        except jinja2.TemplateNotFound as exc:
            raise self._not_found(exc) from None
        except RecursionError:
            raise ConfigError(
                "template recursion too deep: it includes itself, or a macro calls itself "
                "without end",
                file=self.file,
                fix="remove the include or call that leads back to the same template",
            ) from None
        except (jinja2.TemplateError, ArithmeticError, TypeError, ValueError, LookupError) as exc:
            raise ConfigError(
                f"template failed while rendering: {type(exc).__name__}: {exc}",
                file=self.file,
                fix="check the expressions in the template; render it with "
                "'adaptlab prompt render -c NAME'",
            ) from None
        if system is not None:
            parts["system"] = system.strip()
        user = "\n\n".join(parts[p] for p in PARTS[1:] if parts[p])
        messages = [Message("system", parts["system"])] if parts["system"] else []
        messages.append(Message("user", user))
        return RenderedPrompt(parts, tuple(messages))

    def _collect(self, chunks: Any) -> str:
        """Join a block's output, stopping as soon as it outgrows any real prompt."""
        out: list[str] = []
        size = 0
        for chunk in chunks:
            size += len(chunk)
            if size > MAX_CHARS:
                raise Refused(f"templates may not render a part over {MAX_CHARS:,} characters")
            out.append(chunk)
        return "".join(out)

    def _unsafe(self, detail: str) -> ConfigError:
        if not detail.startswith("templates may not"):
            detail = f"templates may not access Python internals ({detail})"
        return ConfigError(f"unsafe template: {detail}", file=self.file, fix=_SANDBOX_FIX)


__all__ = [
    "BUILTIN",
    "MAX_CHARS",
    "PARTS",
    "TEMPLATE_LANGUAGES",
    "ProjectLoader",
    "PromptEnvironment",
    "PromptTemplate",
    "Refused",
    "RenderedPrompt",
    "is_builtin",
    "template_language",
]
