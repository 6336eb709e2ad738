"""The sandbox a project's prompt templates render in.

A project folder may come from someone else, so its templates are untrusted code.
Jinja's :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment` already refuses
Python internals (``__class__``, ``__globals__``, …) and mutation; on top of it:

* the loader sees only the template's own folder and the built-ins, with every
  path resolved (``..``, absolute paths and symlinks leading elsewhere are refused),
  and only regular UTF-8 files up to :data:`MAX_SOURCE` bytes;
* every value a template builds — by ``*``, ``**``, ``%``, ``+``, ``~``, a filter,
  a method or a macro — is checked against :data:`MAX_CHARS` *before* it is built
  where its size can be known in advance (``'x' * 10**10`` never allocates), and
  after otherwise, so no chain of steps can grow past it;
* ``range`` shares one budget of :data:`MAX_LOOP` numbers per render, and every
  ``{% for %}`` one of :data:`MAX_LOOP` iterations (nested loops over long strings
  would otherwise spin for hours without building anything); ``lipsum`` is gone,
  and a render stops after :data:`MAX_SECONDS` (checked at each call, operator and
  thousandth iteration).
"""

from __future__ import annotations

import functools
import os
import re
import string
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import jinja2
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError
from jinja2.loaders import split_template_path
from jinja2.nodes import Concat, Filter, For, Template
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import _PassArg, pass_context

MAX_CHARS = 4_000_000  # a value or a rendered part: about 1M tokens, the largest context windows
MAX_SOURCE = 1_000_000  # bytes of one template file
MAX_LOOP = 1_000_000  # numbers all range() calls of one render may produce; loop turns, too
_LOOP_FILTER = "adaptlab_loop_budget"
MAX_SECONDS = 10.0
_MAX_BITS = 100_000  # integers from ** (a 30,000-digit number)


class Refused(SecurityError):
    """Something a template may not do; the message starts 'templates may not'."""


def _size(value: Any) -> int:
    if isinstance(value, str | bytes):
        return len(value)
    if isinstance(value, list | tuple):
        return len(value) + sum(len(v) for v in value if isinstance(v, str | bytes))
    return 0


def _checked(value: Any) -> Any:
    if _size(value) > MAX_CHARS:
        raise Refused(f"templates may not build a value over {MAX_CHARS:,} characters")
    return value


def _check_number(value: Any) -> None:
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_CHARS:
        raise Refused(f"templates may not pass a size or count over {MAX_CHARS:,} (got {value:,})")


_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[#0\- +]*(\*|\d+)?(?:\.(\*|\d+))?")


def _check_percent(fmt: str, args: Any) -> None:
    """``'%999999999d' % 1`` pads to a billion characters: check widths first."""
    star = False
    for match in _PERCENT_SPEC.finditer(fmt):
        for group in match.groups():
            if group == "*":
                star = True
            elif group:
                _check_number(int(group))
    if star:
        for arg in args if isinstance(args, tuple) else (args,):
            _check_number(arg)


def _check_format(fmt: str, args: Sequence[Any], kwargs: dict[str, Any]) -> None:
    """``'{:>999999999}'.format(1)``, nested ``{:>{w}}`` included."""
    nested = False
    try:
        fields = list(string.Formatter().parse(fmt))
    except ValueError:
        return  # str.format raises the same error itself
    for _, _, spec, _ in fields:
        if spec:
            nested = nested or "{" in spec
            for digits in re.findall(r"\d+", spec):
                _check_number(int(digits))
    if nested:
        for arg in (*args, *kwargs.values()):
            _check_number(arg)


def _check_replace(s: Any, old: Any, new: Any, count: Any = -1) -> None:
    if isinstance(s, str) and isinstance(old, str) and isinstance(new, str):
        hits = s.count(old) if old else len(s) + 1
        if isinstance(count, int) and count >= 0:
            hits = min(hits, count)
        if len(s) + hits * max(0, len(new) - len(old)) > MAX_CHARS:
            raise Refused(f"templates may not build a value over {MAX_CHARS:,} characters")


def _join_size(items: list[Any], sep: str) -> int:
    return sum(len(v) if isinstance(v, str) else 24 for v in items) + len(sep) * len(items)


def _guard_filter(name: str, func: Callable[..., Any]) -> Callable[..., Any]:
    passes_first = _PassArg.from_obj(func) is not None

    @functools.wraps(func)  # keeps the pass_context/pass_eval_context mark
    def guarded(*args: Any, **kwargs: Any) -> Any:
        for arg in (*args, *kwargs.values()):
            _check_number(arg)
        head, rest = (args[:1], list(args[1:])) if passes_first else ((), list(args))
        if rest and name == "replace":
            _check_replace(*rest[:4])
        elif rest and name == "join":
            rest[0] = items = list(rest[0])
            sep = rest[1] if len(rest) > 1 else kwargs.get("d", "")
            if _join_size(items, sep if isinstance(sep, str) else "") > MAX_CHARS:
                raise Refused(f"templates may not build a value over {MAX_CHARS:,} characters")
        elif rest and name == "format" and isinstance(rest[0], str):
            _check_percent(rest[0], tuple(rest[1:]) or tuple(kwargs.values()))
        elif rest and name == "indent" and isinstance(rest[0], str):
            width = rest[1] if len(rest) > 1 else kwargs.get("width", 4)
            if isinstance(width, str) and (rest[0].count("\n") + 1) * len(width) > MAX_CHARS:
                raise Refused(f"templates may not build a value over {MAX_CHARS:,} characters")
        return _checked(func(*head, *rest, **kwargs))

    return guarded


class _CodeGenerator(CodeGenerator):
    """``a ~ b`` has no environment hook; wrap it so a doubling loop stops at the cap."""

    def visit_Concat(self, node: Concat, frame: Frame) -> None:
        self.write("environment.checked(")
        super().visit_Concat(node, frame)
        self.write(")")


class PromptEnvironment(ImmutableSandboxedEnvironment):
    """Jinja's immutable sandbox with bounded values, loops and time (see the module)."""

    code_generator_class = _CodeGenerator
    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        # lipsum(n) writes n paragraphs on request: nothing a prompt needs.
        self.globals.pop("lipsum", None)
        self.globals["range"] = self._range
        self.filters = {name: _guard_filter(name, f) for name, f in self.filters.items()}
        self.filters[_LOOP_FILTER] = self._loop_budget
        self.start_render()

    def start_render(self) -> None:
        """Reset the loop budgets and the clock; the template calls this before rendering."""
        self._deadline = time.monotonic() + MAX_SECONDS
        self._loop_left = MAX_LOOP
        self._turns_left = MAX_LOOP

    def _parse(self, source: str, name: str | None, filename: str | None) -> Template:
        """Every ``{% for %}`` iterates through :meth:`_loop_budget`."""
        tree = super()._parse(source, name, filename)
        for loop in tree.find_all(For):
            loop.iter = Filter(loop.iter, _LOOP_FILTER, [], [], None, None, lineno=loop.lineno)
        return tree

    @pass_context  # never folded into a constant at compile time: it counts per render
    def _loop_budget(self, context: Context, iterable: Any) -> Iterator[Any]:
        for item in iterable:
            self._turns_left -= 1
            if self._turns_left < 0:
                raise Refused(f"templates may not loop more than {MAX_LOOP:,} times in all")
            if self._turns_left % 1000 == 0:
                self._tick()
            yield item

    def _tick(self) -> None:
        if time.monotonic() > self._deadline:
            raise Refused(f"templates may not take longer than {MAX_SECONDS:.0f} s to render")

    def _range(self, *args: int) -> range:
        self._tick()
        numbers = range(*args)
        if len(numbers) > self._loop_left:
            raise Refused(f"templates may not loop over more than {MAX_LOOP:,} numbers in all")
        self._loop_left -= len(numbers)
        return numbers

    def checked(self, value: Any) -> Any:
        self._tick()
        return _checked(value)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        self._tick()
        if operator == "*":
            for seq, n in ((left, right), (right, left)):
                if isinstance(n, int) and n > 0 and _size(seq) * n > MAX_CHARS:
                    raise Refused(f"templates may not build a value over {MAX_CHARS:,} characters")
        elif operator == "**":
            ints = isinstance(left, int) and isinstance(right, int) and right > 0
            if ints and abs(left).bit_length() * right > _MAX_BITS:
                raise Refused("templates may not compute numbers that large")
        elif operator == "%" and isinstance(left, str):
            _check_percent(left, right)
        return self.checked(super().call_binop(context, operator, left, right))

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        __self._tick()
        owner = getattr(__obj, "__self__", None)
        if isinstance(owner, str | list | tuple):
            for arg in (*args, *kwargs.values()):
                _check_number(arg)
            name = getattr(__obj, "__name__", "")
            if isinstance(owner, str) and name == "replace" and len(args) >= 2:
                _check_replace(owner, *args[:3])
            elif isinstance(owner, str) and name == "join" and args:
                items = list(args[0])
                if _join_size(items, owner) > MAX_CHARS:
                    raise Refused(f"templates may not build a value over {MAX_CHARS:,} characters")
                args = (items, *args[1:])
        return __self.checked(super().call(__context, __obj, *args, **kwargs))

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        """``'{:>999999999}'.format(1)``: check the field widths before formatting."""
        wrapper = super().wrap_str_format(value)
        if wrapper is None:
            return None
        fmt: str = value.__self__
        is_map = value.__name__ == "format_map"

        def checked_format(*args: Any, **kwargs: Any) -> str:
            if is_map and len(args) == 1 and isinstance(args[0], Mapping):
                _check_format(fmt, (), dict(args[0]))
            else:
                _check_format(fmt, args, kwargs)
            return _checked(wrapper(*args, **kwargs))  # type: ignore[no-any-return]

        return functools.update_wrapper(checked_format, value)


class ProjectLoader(jinja2.BaseLoader):
    """Templates from a few folders only: resolved paths that stay inside them."""

    def __init__(self, folders: Sequence[Path]) -> None:
        self.folders = [Path(f).resolve() for f in folders]

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str, Callable[[], bool]]:
        where = " or ".join(str(f) for f in self.folders)
        if template.startswith(("/", "\\", "~")) or re.match(r"^[A-Za-z]:", template):
            raise jinja2.TemplateNotFound(template, f"an absolute path; only {where} is read")
        try:
            pieces = split_template_path(template)
        except jinja2.TemplateNotFound:
            why = f"a path with '..'; only {where} is read"
            raise jinja2.TemplateNotFound(template, why) from None
        for folder in self.folders:
            path = folder.joinpath(*pieces)
            if not os.path.lexists(path):
                continue
            resolved = path.resolve()
            if not resolved.is_relative_to(folder):
                raise jinja2.TemplateNotFound(
                    template, f"a link to {resolved}, outside {folder}; links are not followed"
                )
            if not resolved.is_file():
                raise jinja2.TemplateNotFound(template, "not a regular file")
            break
        else:
            raise jinja2.TemplateNotFound(template, f"not found in {where}")
        if resolved.stat().st_size > MAX_SOURCE:
            raise jinja2.TemplateNotFound(
                template, f"over {MAX_SOURCE:,} bytes, too large for a prompt template"
            )
        try:
            source = resolved.read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise jinja2.TemplateNotFound(template, f"not UTF-8 text ({exc.reason})") from None
        mtime = resolved.stat().st_mtime

        def uptodate() -> bool:
            try:
                return resolved.stat().st_mtime == mtime
            except OSError:
                return False

        return source, str(resolved), uptodate
