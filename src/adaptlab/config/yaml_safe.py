"""Reading ``adaptlab.yaml`` safely: a strict YAML loader and errors that name the line.

A project folder may come from someone else, so its YAML is data and nothing more:
keys must be text, duplicated keys, aliases (the "billion laughs" bomb), deep nesting,
control characters and non-finite numbers are refused with the line and the fix.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    BaseModel,
    ValidationError,
)

from adaptlab.core.errors import ConfigError

#: The pydantic error type of a value that may hold a secret (a URL with a password):
#: its error names the key and the reason, never the value.
SECRET_VALUE = "secret_value"

# ---------------------------------------------------------------- loading


def node_line(node: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
    """Line (1-based) of the YAML node at ``loc``, or of its closest existing parent."""
    line = node.start_mark.line + 1 if node is not None else None
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == key:
                    line, node = k.start_mark.line + 1, v
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _field_help(model: type[BaseModel], loc: tuple[str | int, ...]) -> tuple[type[BaseModel], str]:
    """Walk ``loc`` through nested models; return the innermost model and the field help."""
    current: type[BaseModel] = model
    help_text = ""
    for key in loc:
        if not isinstance(key, str) or key not in current.model_fields:
            break
        field = current.model_fields[key]
        help_text = field.description or ""
        ann = field.annotation
        inner = getattr(ann, "__args__", (ann,))
        nested = [a for a in inner if isinstance(a, type) and issubclass(a, BaseModel)]
        if nested:
            current = nested[0]
    return current, help_text


def format_validation_error(
    err: ValidationError,
    *,
    file: Path,
    root: yaml.Node | None,
    model: type[BaseModel],
    prefix: tuple[str | int, ...] = (),
) -> ConfigError:
    """Turn the first pydantic error into a ConfigError naming key, value, line and fix."""
    # An unknown key usually explains a "missing" one (a typo), so report it first.
    errors = sorted(err.errors(), key=lambda e: e["type"] != "extra_forbidden")
    first = errors[0]
    loc = prefix + tuple(first["loc"])
    key = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
    line = node_line(root, loc)
    owner, help_text = _field_help(model, tuple(first["loc"]))
    kind = first["type"]
    if kind == "extra_forbidden":
        name = str(loc[-1])
        close = difflib.get_close_matches(name, list(owner.model_fields), n=1)
        fix = f"did you mean '{close[0]}'?" if close else ""
        fix += (" " if fix else "") + "allowed keys: " + ", ".join(owner.model_fields)
        return ConfigError(f"unknown key '{key}'", file=file, line=line, fix=fix)
    if kind == "missing":
        return ConfigError(
            f"required key '{key}' is missing",
            file=file,
            line=line,
            fix=f"add '{loc[-1]}:' — {help_text}" if help_text else f"add '{loc[-1]}:'",
        )
    if kind == SECRET_VALUE:  # the value may hold a secret: named, never shown
        ctx = first.get("ctx") or {}
        return ConfigError(
            f"'{key}' {ctx.get('reason', first['msg'])}", file=file, line=line, fix=ctx.get("fix")
        )
    value = first.get("input")
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    node = node_at(root, loc)
    if (
        kind == "string_type"
        and isinstance(node, yaml.ScalarNode)
        and node.style is None
        and node.value
    ):
        # `yes`, `no`, `on`, `null`, `2024`: YAML read them as something else than text.
        help_text = f"quote it: '{node.value}'" + (f" — {help_text}" if help_text else "")
    return ConfigError(
        f"bad value {shown} for '{key}': {first['msg']}", file=file, line=line, fix=help_text
    )


def node_at(node: yaml.Node | None, loc: tuple[str | int, ...]) -> yaml.Node | None:
    """The YAML node at ``loc``, or None."""
    for key in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == key), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return None
    return node


CONFIG_MAX_BYTES = 1 << 20  # a config is a page of settings; 1 MB is generous
YAML_MAX_DEPTH = 64
_STR_TAG = "tag:yaml.org,2002:str"
_KEY_KINDS = {
    "tag:yaml.org,2002:bool": "a boolean (YAML 1.1 reads yes/no/on/off/true/false so)",
    "tag:yaml.org,2002:int": "a number",
    "tag:yaml.org,2002:float": "a number",
    "tag:yaml.org,2002:null": "null",
    "tag:yaml.org,2002:timestamp": "a date",
}
# C0 and C1 control characters and DEL; tab and newline are text.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class _Refused(Exception):
    """Something in the YAML that parses but that adaptlab.yaml must not hold."""

    def __init__(self, message: str, node_or_mark: Any, fix: str) -> None:
        super().__init__(message)
        mark = getattr(node_or_mark, "start_mark", node_or_mark)
        self.line = mark.line + 1 if mark is not None else None
        self.fix = fix


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that refuses aliases and nesting deeper than ``YAML_MAX_DEPTH``.

    Nothing in a config needs an alias, and aliases are how a 1 kB "billion laughs"
    file expands to gigabytes once anything walks the result: they are refused when
    the first one is read, before any expansion.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise _Refused(
                "YAML aliases (*name) are not allowed in adaptlab.yaml",
                event.start_mark,
                "write the value out in full where the alias stands (anchors and "
                "aliases can expand a small file into gigabytes)",
            )
        self._depth += 1
        if self._depth > YAML_MAX_DEPTH:
            raise _Refused(
                f"the YAML is nested more than {YAML_MAX_DEPTH} levels deep",
                self.peek_event().start_mark,  # type: ignore[no-untyped-call]
                "flatten the structure; no setting needs this depth",
            )
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _quote_fix(value: str) -> str:
    return f"quote it: '{value}'" if value else "give it a name in quotes, e.g. 'name'"


def _check_nodes(node: yaml.Node) -> None:
    """Refuse what YAML parses but no setting can use: keys that are not text,
    duplicated keys (at any level), merge keys, NUL and control characters, numbers
    that are not finite or too large to be a count."""
    stack = [node]
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: dict[str, int] = {}
            for key, value in node.value:
                if key.tag == "tag:yaml.org,2002:merge":
                    raise _Refused(
                        "YAML merge keys (<<) are not allowed in adaptlab.yaml",
                        key,
                        "write the keys out in full",
                    )
                if not isinstance(key, yaml.ScalarNode):
                    raise _Refused(
                        "a key must be text, not a list or mapping",
                        key,
                        "use a plain name as the key",
                    )
                if key.tag != _STR_TAG:
                    kind = _KEY_KINDS.get(key.tag, key.tag)
                    raise _Refused(
                        f"key {key.value or '(empty)'!r} is read as {kind}, not as text",
                        key,
                        _quote_fix(key.value),
                    )
                line = key.start_mark.line + 1
                if key.value in seen:
                    raise _Refused(
                        f"key '{key.value}' appears twice in one mapping (lines "
                        f"{seen[key.value]} and {line}); YAML would silently keep the last",
                        key,
                        "keep one of them",
                    )
                seen[key.value] = line
                stack.extend((key, value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.ScalarNode):
            _check_scalar(node)


def _check_scalar(node: yaml.ScalarNode) -> None:
    bad = _CONTROL.search(node.value)
    if bad:
        raise _Refused(
            # by position: the value is not shown (it may be a URL with a secret in it)
            f"control character U+{ord(bad.group()):04X} at character {bad.start() + 1} "
            "of the value",
            node,
            "remove it; a value holds printable text, tabs and newlines only",
        )
    if node.tag == "tag:yaml.org,2002:float":
        text = node.value.lower().lstrip("+-")
        if text in (".nan", ".inf"):
            raise _Refused(
                f"{node.value} is not a finite number",
                node,
                "write a finite number",
            )
    if node.tag == "tag:yaml.org,2002:int" and len(node.value) > 19:
        raise _Refused(
            f"the number {node.value[:30]}… is larger than any setting takes",
            node,
            "write a smaller number",
        )


def parse_yaml(text: str, file: Path) -> tuple[Any, yaml.Node | None]:
    """Parse ``text`` as adaptlab.yaml: the data and the node tree (for key lines)."""
    loader: _ConfigLoader | None = None
    try:
        loader = _ConfigLoader(text)  # the reader refuses non-printable characters here
        root = loader.get_single_node()
        if root is not None:
            _check_nodes(root)
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(
            f"YAML syntax error: {exc.problem or exc}",
            file=file,
            line=line,
            fix="check indentation (spaces, not tabs) and that every 'key: value' has its colon",
        ) from None
    except _Refused as exc:
        raise ConfigError(str(exc), file=file, line=exc.line, fix=exc.fix) from None
    except yaml.YAMLError as exc:  # a non-printable character: a ReaderError, no mark
        pos = getattr(exc, "position", None)
        raise ConfigError(
            f"unreadable YAML: {getattr(exc, 'reason', None) or exc}",
            file=file,
            line=text.count("\n", 0, pos) + 1 if isinstance(pos, int) else None,
            fix="remove the control character; save the file as plain UTF-8 text",
        ) from None
    finally:
        if loader is not None:
            loader.dispose()
    return data, root


def key_line(file: Path, *loc: str | int) -> int | None:
    """Line of a key in a config file that already parsed (for errors found later)."""
    try:
        return node_line(yaml.compose(file.read_text(encoding="utf-8")), loc)
    except (OSError, yaml.YAMLError):
        return None
