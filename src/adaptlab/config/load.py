"""Load ``adaptlab.yaml``: parse safely, validate against the schema, then check what
the schema alone cannot (names, paths, devices); the engine adds the checks against
the strategy and backend registries.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import (
    ValidationError,
)

from adaptlab.config.schema import CONFIG_FILE, ProjectConfig
from adaptlab.config.yaml_safe import (
    CONFIG_MAX_BYTES,
    format_validation_error,
    node_at,
    node_line,
    parse_yaml,
)
from adaptlab.core.errors import ConfigError
from adaptlab.core.files import read_regular_file
from adaptlab.core.strict_json import parse_json

#: A check of a loaded config against what the registries know, raising ConfigError
#: with the file and the line (found in the YAML node tree) of what it refuses.
ConfigCheck = Callable[[ProjectConfig, Path, yaml.Node | None], None]


def load_config(path: str | Path, *, check: ConfigCheck | None = None) -> ProjectConfig:
    """Read and validate ``adaptlab.yaml`` (a file or the project folder holding it).

    This checks the file's shape: YAML, the schema, names, paths, the judge, devices
    and the extraction schema. ``check`` (the engine's
    :func:`adaptlab.engine.load_config` passes one) runs after the names and paths, to
    check candidates and llms against the strategy and backend registries. Raises
    :class:`~adaptlab.core.errors.ConfigError` naming the file, the line and the fix.
    """
    file = Path(path)
    if file.is_dir() and file.name != CONFIG_FILE:
        file = file / CONFIG_FILE
    if not file.exists():
        raise ConfigError(
            "no adaptlab.yaml here",
            file=file,
            fix="run 'adaptlab init DIR' to create a project, or pass --project DIR",
        )

    raw = read_regular_file(
        file,
        max_bytes=CONFIG_MAX_BYTES,
        limit_name="the 1 MB limit of adaptlab.yaml",
        what="config file",
        error=ConfigError,
        fix_path="adaptlab.yaml must be a file in the project folder",
        size_fix="a config holds settings, not data: move data into data/ and point "
        "data.path at it",
    )
    try:
        text = raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(
            "the file is not valid UTF-8", file=file, line=line, fix="save it as UTF-8"
        ) from None
    data, root = parse_yaml(text, file)
    if data is None:
        raise ConfigError(
            "the file is empty", file=file, line=1, fix="run 'adaptlab init' for a template"
        )
    if not isinstance(data, dict):
        raise ConfigError(
            f"expected a mapping of keys at the top level, got {type(data).__name__}",
            file=file,
            line=1,
            fix="start the file with 'name:', 'data:', 'labels:', 'candidates:'",
        )
    try:
        config = ProjectConfig.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc, file=file, root=root, model=ProjectConfig) from None
    _check_names(config, file, root)
    _check_paths(config, file, root)

    # What the registries know (a strategy's options, a backend's abilities) is checked
    # by the engine, which passes ``check``: a plugin's options are validated exactly
    # like the built-ins', and this package stays below the registries.
    if check is not None:
        check(config, file, root)
    _check_judge(config, file, root)
    _check_devices(config, file, root)
    if config.task == "extraction":
        config.schema_ = _load_schema(config.schema_, file, root)
    return config


_NAME_MAX = 100


def _check_names(config: ProjectConfig, file: Path, root: yaml.Node | None) -> None:
    """Names end up in folder names, result keys, terminal lines and report headings."""

    def refuse(what: str, loc: tuple[str | int, ...], fix: str, *, key: bool = False) -> None:
        node = node_at(root, loc[:-1]) if key else None
        line = node_line(root, loc)
        if key and isinstance(node, yaml.MappingNode):
            line = next((k.start_mark.line + 1 for k, _ in node.value if k.value == loc[-1]), line)
        raise ConfigError(what, file=file, line=line, fix=fix)

    def check(name: str, what: str, loc: tuple[str | int, ...], *, path: bool, key: bool) -> None:
        if not name.strip():
            refuse(f"{what} is empty", loc, f"give the {what} a name", key=key)
        if name != name.strip():
            refuse(
                f"{what} '{name}' starts or ends with whitespace",
                loc,
                f"write it as '{name.strip()}'",
                key=key,
            )
        if len(name) > _NAME_MAX:
            refuse(
                f"{what} is {len(name)} characters long (at most {_NAME_MAX})",
                loc,
                "use a shorter name",
                key=key,
            )
        if path and (set(name) & {"/", "\\"} or name in {".", ".."}):
            refuse(
                f"{what} '{name}' holds a path separator or is '.'/'..'",
                loc,
                "use letters, digits, '-' and '_' (the name becomes part of file names)",
                key=key,
            )

    check(config.name, "the project name", ("name",), path=False, key=False)
    for i, cand in enumerate(config.candidates):
        check(cand.name, "candidate name", ("candidates", i, "name"), path=True, key=False)
    for name in config.llms:
        check(name, "llm name", ("llms", name), path=True, key=True)
    for label in config.labels:
        check(label, "label", ("labels", label), path=False, key=True)
    for key in ("input_field", "label_field"):
        value = getattr(config.data, key)
        if not value.strip():
            refuse(f"data.{key} is empty", ("data", key), "name the column or JSON field")


def _outside(root: Path, rel: str) -> bool:
    target = (root / rel).resolve()
    return Path(rel).is_absolute() or not target.is_relative_to(root.resolve())


def _check_paths(config: ProjectConfig, file: Path, root: yaml.Node | None) -> None:
    """Files a project reads lie inside the project folder.

    A project folder is data that may come from someone else; a path that leaves it
    (absolute, ``../``, or a link pointing out) could feed any file of the user's
    into prompts sent to a provider, so it is refused.
    """
    folder = file.parent
    paths: list[tuple[tuple[str | int, ...], str]] = [(("data", "path"), config.data.path)]
    if config.data.test_path:
        paths.append((("data", "test_path"), config.data.test_path))
    if isinstance(config.schema_, str):
        paths.append((("schema",), config.schema_))
    for i, cand in enumerate(config.candidates):
        template = cand.params.get("template")
        if isinstance(template, str) and (template.endswith(".j2") or set(template) & {"/", "\\"}):
            paths.append((("candidates", i, "params", "template"), template))
    allowed = _data_dirs()
    for loc, rel in paths:
        key = ".".join(str(p) for p in loc if not isinstance(p, int))
        if not rel.strip():
            raise ConfigError(
                f"{key} is empty", file=file, line=node_line(root, loc), fix="name a file"
            )
        if not _outside(folder, rel):
            continue
        target = (folder / rel).resolve()
        if loc[0] == "data" and any(target.is_relative_to(d) for d in allowed):
            continue  # the user (not the project) allowed data from this folder
        raise ConfigError(
            f"{key} '{rel}' points outside the project folder",
            file=file,
            line=node_line(root, loc),
            fix="copy the file into the project folder (e.g. data/) and give its path "
            "relative to adaptlab.yaml ('adaptlab init --data FILE' copies a data file)"
            + (
                f", or allow data from its folder: export {DATA_DIRS_ENV}={target.parent}"
                if loc[0] == "data"
                else ""
            ),
        )


#: Folders (os.pathsep-separated) the user allows data.path / data.test_path to read
#: from besides the project folder. An environment setting, never a project setting:
#: a project folder from someone else must not choose which of your files it reads.
DATA_DIRS_ENV = "ADAPTLAB_DATA_DIRS"


def _data_dirs() -> list[Path]:
    import os

    raw = os.environ.get(DATA_DIRS_ENV, "")
    return [Path(d).expanduser().resolve() for d in raw.split(os.pathsep) if d.strip()]


def _device_problem(device: str) -> str | None:
    """Why ``device`` cannot be used here, or None; torch is imported only for a GPU."""
    if device in ("cpu", "auto"):
        return None
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return "torch is not installed"
    import torch

    if device == "mps":
        return None if torch.backends.mps.is_available() else "this machine has no MPS (Apple GPU)"
    if not torch.cuda.is_available():
        return "torch sees no CUDA GPU on this machine (a CPU-only torch, or no driver)"
    index = int(device.partition(":")[2] or 0)
    count = int(torch.cuda.device_count())
    if index >= count:
        return f"this machine has {count} CUDA GPU(s), numbered from 0"
    return None


def _check_devices(config: ProjectConfig, file: Path, root: yaml.Node | None) -> None:
    wanted: list[tuple[tuple[str | int, ...], str]] = [(("model", "device"), config.model.device)]
    for name, llm in config.llms.items():
        if llm.backend == "hf":
            wanted.append((("llms", name, "device"), llm.device))
    for loc, device in wanted:
        problem = _device_problem(device)
        if problem:
            key = ".".join(str(p) for p in loc)
            raise ConfigError(
                f"{key} is '{device}', but {problem}",
                file=file,
                line=node_line(root, loc),
                fix=f"set {key}: cpu (or 'auto': a GPU when there is one)",
            )


def _check_judge(config: ProjectConfig, file: Path, root: yaml.Node | None) -> None:
    ev = config.evaluation
    if config.task != "generation" or ev.generation_metric != "judge":
        return
    if ev.judge_llm is None or ev.judge_llm not in config.llms:
        close = difflib.get_close_matches(ev.judge_llm or "", list(config.llms), n=1)
        raise ConfigError(
            "generation_metric 'judge' needs a judge model"
            if ev.judge_llm is None
            else f"judge_llm '{ev.judge_llm}' is not under 'llms:'",
            file=file,
            line=node_line(
                root, ("evaluation", "judge_llm" if ev.judge_llm else "generation_metric")
            ),
            fix=(f"did you mean '{close[0]}'? " if close else "")
            + "set evaluation.judge_llm to an entry under 'llms:'"
            + (f" ({', '.join(config.llms)})" if config.llms else ""),
        )


def _load_schema(value: Any, file: Path, root: yaml.Node | None) -> dict[str, Any]:
    """The extraction schema, inline or from a .json file; checked to be a JSON schema."""
    import json

    import jsonschema

    where = file
    if isinstance(value, str):
        where = file.parent / value
        raw = read_regular_file(
            where,
            max_bytes=CONFIG_MAX_BYTES,
            limit_name="the 1 MB limit of a schema file",
            what="schema file",
            error=ConfigError,
            fix_path="give 'schema:' a .json file relative to adaptlab.yaml, or the schema inline",
            size_fix="a schema describes one object; check that 'schema:' names the right file",
        )
        try:
            value = parse_json(raw.decode("utf-8-sig"))
        except UnicodeDecodeError:
            raise ConfigError(
                "the schema file is not valid UTF-8", file=where, fix="save it as UTF-8"
            ) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"the schema is not valid JSON: {exc.msg}",
                file=where,
                line=exc.lineno,
                fix="fix the JSON syntax at that line",
            ) from None
        except (ValueError, RecursionError) as exc:  # NaN, a duplicate key, deep nesting
            why = str(exc) if isinstance(exc, ValueError) else "it is nested too deeply"
            raise ConfigError(
                f"the schema is not usable JSON: {why}",
                file=where,
                fix=getattr(exc, "fix", "write plain JSON: objects, strings, finite numbers"),
            ) from None
    if not isinstance(value, dict):
        raise ConfigError(
            "the schema must be a JSON object", file=where, fix="see https://json-schema.org"
        )
    try:
        jsonschema.Draft202012Validator.check_schema(value)
    except jsonschema.SchemaError as exc:
        raise ConfigError(
            f"not a valid JSON schema: {exc.message}",
            file=where,
            line=node_line(root, ("schema",)) if where == file else None,
            fix="check the schema against https://json-schema.org (draft 2020-12)",
        ) from None
    return value


def dump_config(config: ProjectConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
