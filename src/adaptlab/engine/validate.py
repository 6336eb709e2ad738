"""``adaptlab.yaml`` checked against the registries: the strategies and backends named.

:mod:`adaptlab.config` checks a project file's shape; what a strategy accepts as
options, and what a backend can do, is known only to the registries above it, so it
is checked here, where a project is loaded (:func:`load_config`).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from adaptlab.backends import BACKENDS, EncoderBackend, GenerativeBackend, key_refusal
from adaptlab.config import ProjectConfig
from adaptlab.config import load_config as load_config_shape
from adaptlab.config.yaml_safe import format_validation_error, node_line
from adaptlab.core.errors import ConfigError
from adaptlab.strategies.registry import get_strategy


def load_config(path: str | Path) -> ProjectConfig:
    """Read ``adaptlab.yaml`` (a file or its folder) and check it completely: its shape
    (:func:`adaptlab.config.load_config`) and its candidates and llms against the
    registries (:func:`check_registered`). Raises
    :class:`~adaptlab.core.errors.ConfigError` naming the file, the line and the fix."""
    return load_config_shape(path, check=check_registered)


def check_registered(config: ProjectConfig, file: Path, root: yaml.Node | None) -> None:
    """Each candidate's strategy exists, takes its options, fits the task and names the
    right kind of model; each llm's backend exists and can do what it is asked."""
    # Strategy options are checked by the strategy named, so a plugin's options are
    # validated exactly like the built-ins'.
    for i, cand in enumerate(config.candidates):
        try:
            strategy = get_strategy(cand.strategy)
        except KeyError as exc:
            raise ConfigError(
                str(exc.args[0]),
                file=file,
                line=node_line(root, ("candidates", i, "strategy")),
                fix="use one of the strategies listed by 'adaptlab strategies'",
            ) from None
        try:
            options = strategy.Options.model_validate(cand.params)
        except ValidationError as exc:
            raise format_validation_error(
                exc,
                file=file,
                root=root,
                model=strategy.Options,
                prefix=("candidates", i, "params"),
            ) from None
        # Options that depend on other sections (a tune: of retrieval on rag:, a proposer
        # under llms:) say how they do not fit: (key path under params, problem, fix).
        problem = strategy.check_project(options, config, cand)
        if problem is not None:
            loc, message, fix = problem
            path = ("candidates", i, "params", *loc)
            key = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path)
            raise ConfigError(
                f"candidate '{cand.name}', {key.replace('.[', '[')}: {message}",
                file=file,
                line=node_line(root, path),
                fix=fix,
            )
        _check_candidate_model(config, i, strategy, file, root)
    _check_llms(config, file, root)
    _check_encoder(config, file, root)


def _check_encoder(config: ProjectConfig, file: Path, root: yaml.Node | None) -> None:
    """The ``model:`` section names an encoder backend that takes its options."""
    backend = config.model.backend

    def encoders() -> str:  # only for the error: naming them loads every backend
        return ", ".join(n for n in BACKENDS.names() if issubclass(BACKENDS.get(n), EncoderBackend))

    try:
        cls = BACKENDS.get(backend)
    except KeyError as exc:
        raise ConfigError(
            f"model.backend: {exc.args[0]}",
            file=file,
            line=node_line(root, ("model", "backend")),
            fix=f"use an encoder backend ({encoders()}); the default "
            "'sentence-transformers' runs the bundled all-MiniLM-L6-v2",
        ) from None
    if not issubclass(cls, EncoderBackend):
        raise ConfigError(
            f"model.backend '{backend}' is a generative model, and 'model:' is the encoder "
            "that embeds texts (zero-shot, few-shot, kNN, finetune, retrieval)",
            file=file,
            line=node_line(root, ("model", "backend")),
            fix=f"use an encoder backend ({encoders()}) under 'model:', and put "
            f"'{backend}' under 'llms:' for the candidates that prompt it",
        )
    try:
        cls.Options.model_validate(config.model.model_dump(exclude={"backend"}))
    except ValidationError as exc:
        raise format_validation_error(
            exc, file=file, root=root, model=cls.Options, prefix=("model",)
        ) from None


def _check_candidate_model(
    config: ProjectConfig, i: int, strategy: Any, file: Path, root: yaml.Node | None
) -> None:
    cand = config.candidates[i]
    if config.task not in strategy.tasks:
        raise ConfigError(
            f"strategy '{cand.strategy}' of candidate '{cand.name}' cannot do a {config.task} task",
            file=file,
            line=node_line(root, ("candidates", i, "strategy")),
            fix=f"for {config.task} use a generative strategy: llm-zero-shot, llm-few-shot, "
            "llm-cot or prompt",
        )
    if strategy.generative and cand.llm is None:
        raise ConfigError(
            f"candidate '{cand.name}' prompts a generative model but names none",
            file=file,
            line=node_line(root, ("candidates", i)),
            fix="add 'llm: NAME' naming an entry under 'llms:'"
            + (f" ({', '.join(config.llms)})" if config.llms else ""),
        )
    if cand.llm is not None and not strategy.generative:
        raise ConfigError(
            f"strategy '{cand.strategy}' uses the encoder under 'model:', not an llm",
            file=file,
            line=node_line(root, ("candidates", i, "llm")),
            fix="remove 'llm:' from this candidate",
        )
    if cand.llm is not None and cand.llm not in config.llms:
        close = difflib.get_close_matches(cand.llm, list(config.llms), n=1)
        raise ConfigError(
            f"candidate '{cand.name}' names llm '{cand.llm}', which is not under 'llms:'",
            file=file,
            line=node_line(root, ("candidates", i, "llm")),
            fix=(f"did you mean '{close[0]}'? " if close else "")
            + "define it under 'llms:' (backend and name), e.g. 'llms: {chat: {backend: openai, "
            "name: gpt-4o-mini}}'",
        )


def _check_llms(config: ProjectConfig, file: Path, root: yaml.Node | None) -> None:
    for name, llm in config.llms.items():
        try:
            cls = BACKENDS.get(llm.backend)
        except KeyError as exc:
            raise ConfigError(
                str(exc.args[0]),
                file=file,
                line=node_line(root, ("llms", name, "backend")),
                fix="use 'openai' (also for vLLM, Ollama, llama.cpp, LM Studio), "
                "'anthropic' or 'hf'",
            ) from None
        if not issubclass(cls, GenerativeBackend):
            raise ConfigError(
                f"backend '{llm.backend}' of llm '{name}' is an encoder, not a generative model",
                file=file,
                line=node_line(root, ("llms", name, "backend")),
                fix="use 'openai', 'anthropic' or 'hf'",
            )
        refused = key_refusal(
            llm,
            file=file,
            key=f"llms.{name}.api_key_env",
            line=node_line(root, ("llms", name, "api_key_env")),
        )
        if refused is not None:  # before any request: a folder may not direct a secret
            raise refused
        if llm.adapter is not None and not cls.local:
            raise ConfigError(
                f"llm '{name}': 'adapter' only applies to local models (backend 'hf')",
                file=file,
                line=node_line(root, ("llms", name, "adapter")),
                fix="remove 'adapter:', or use backend 'hf' with a local checkpoint",
            )
