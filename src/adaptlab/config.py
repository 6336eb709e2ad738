"""The ``adaptlab.yaml`` schema: the one source of validation, defaults and help.

Every field carries its help text; ``adaptlab config schema`` prints them and the
error messages quote them. Strategy parameters are checked against the options
class of the strategy they name (see :mod:`adaptlab.strategies.registry`).
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from adaptlab.errors import ConfigError

CONFIG_FILE = "adaptlab.yaml"
BUNDLED_MODEL = "all-MiniLM-L6-v2"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class DataConfig(_Strict):
    path: str = Field(
        description="Labelled examples, JSONL or CSV, relative to the project folder."
    )
    test_path: str | None = Field(
        default=None,
        description="An optional holdout file of your own; when set, no test split is carved out.",
    )
    format: Literal["auto", "jsonl", "csv"] = Field(
        default="auto", description="File format; 'auto' goes by the file extension."
    )
    input_field: str = Field(default="text", description="Field (column) holding the input text.")
    label_field: str = Field(default="label", description="Field (column) holding the label.")
    test_size: float = Field(
        default=0.2, gt=0, lt=1, description="Share of examples held out for the test split."
    )
    val_size: float = Field(
        default=0.1,
        ge=0,
        lt=1,
        description="Share of the training split carved out for validation (early stopping).",
    )
    encoding: str = Field(default="utf-8", description="Text encoding of the data files.")
    conflicts: Literal["error", "warn"] = Field(
        default="error",
        description="Same input with different labels: stop ('error'), or keep both and "
        "report them ('warn', for published datasets you must not edit).",
    )
    leakage: Literal["error", "warn"] = Field(
        default="error",
        description="A test_path input that also appears in train: stop ('error'), or keep "
        "it and report the count ('warn', to reproduce published numbers).",
    )


class ModelConfig(_Strict):
    backend: str = Field(
        default="sentence-transformers", description="Backend that runs the model."
    )
    name: str = Field(
        default=BUNDLED_MODEL,
        description="Model name or local path; 'all-MiniLM-L6-v2' is the bundled offline model.",
    )
    device: str = Field(default="cpu", description="'cpu', 'cuda', 'cuda:1', … or 'auto'.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto",
        description="'auto' uses bf16 autocast only where the hardware has native bf16, else fp32.",
    )
    batch_size: int = Field(default=64, ge=1, description="Texts per forward pass.")
    max_seq_length: int = Field(default=128, ge=8, description="Tokens kept per input.")


class PriceConfig(_Strict):
    """USD per 1M tokens; overrides the shipped price table for one model."""

    input: float = Field(ge=0, description="USD per 1M input tokens.")
    output: float = Field(ge=0, description="USD per 1M output tokens.")
    cached_input: float | None = Field(
        default=None, ge=0, description="USD per 1M cached input tokens (default: input price)."
    )


class LLMConfig(_Strict):
    backend: str = Field(
        description="'openai' (any OpenAI-compatible server), 'anthropic' or 'hf'."
    )
    name: str = Field(description="Model id at the provider, or a local folder for 'hf'.")
    base_url: str | None = Field(
        default=None,
        description="OpenAI-compatible endpoint: vLLM, Ollama (http://localhost:11434/v1), "
        "llama.cpp server, LM Studio, Azure; default is the provider's own.",
    )
    api_key_env: str | None = Field(
        default=None,
        description="Environment variable (or keys-file entry) holding the key; default "
        "OPENAI_API_KEY / ANTHROPIC_API_KEY. Keys are never written anywhere.",
    )
    max_concurrency: int = Field(default=16, ge=1, description="Requests in flight at once.")
    requests_per_minute: int | None = Field(
        default=None, ge=1, description="Client-side limit of requests per minute."
    )
    tokens_per_minute: int | None = Field(
        default=None, ge=1, description="Client-side limit of (estimated) tokens per minute."
    )
    timeout_s: float = Field(default=60.0, gt=0, description="Seconds before a call is abandoned.")
    max_retries: int = Field(
        default=6, ge=0, description="Retries of a failed call (429, 5xx, timeouts, broken bodies)."
    )
    stream: bool = Field(default=False, description="Stream responses (server-sent events).")
    adapter: str | None = Field(
        default=None, description="'hf' only: folder of a PEFT (LoRA) adapter to load on top."
    )
    device: str = Field(default="cpu", description="'hf' only: 'cpu', 'cuda' or 'auto'.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="'hf' only: bf16 where the hardware has it natively."
    )
    batch_size: int = Field(default=8, ge=1, description="'hf' only: prompts per generate().")
    prices: PriceConfig | None = Field(
        default=None, description="Override the shipped price table for this model."
    )


class CandidateConfig(_Strict):
    name: str = Field(description="Unique name of this candidate in reports.")
    strategy: str = Field(description="Adaptation strategy: zero-shot, few-shot, rag, finetune, …")
    llm: str | None = Field(
        default=None,
        description="Generative strategies: the name of an entry under 'llms:' to prompt.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict, description="Options of the strategy (see `adaptlab strategies`)."
    )


class EvaluationConfig(_Strict):
    bootstrap_resamples: int = Field(
        default=1000, ge=100, description="Resamples for the bootstrap confidence intervals."
    )
    confidence: float = Field(default=0.95, gt=0.5, lt=1, description="Confidence level.")
    alpha: float = Field(
        default=0.05, gt=0, lt=0.5, description="Significance level of the paired tests."
    )
    latency_samples: int = Field(
        default=100,
        ge=0,
        description="Test inputs sent one at a time to measure per-request latency.",
    )
    consistency_samples: int = Field(
        default=0,
        ge=0,
        le=20,
        description="Send each of the first consistency_inputs test inputs this many times "
        "(2 or more) and report how often the answers agree; 0 turns it off.",
    )
    consistency_inputs: int = Field(
        default=20, ge=1, description="Test inputs used for the consistency measurement."
    )
    generation_metric: Literal["token_f1", "exact_match", "similarity", "judge"] = Field(
        default="token_f1",
        description="Generation tasks: the primary score (SQuAD token F1, exact match, "
        "embedding cosine, or an LLM judge with a rubric).",
    )
    judge_llm: str | None = Field(
        default=None, description="Entry under 'llms:' that grades answers for the 'judge' metric."
    )
    judge_rubric: str = Field(
        default="Score 1 if the answer says the same as the reference, else 0.",
        description="What the judge is told to score (from 0 to 1).",
    )


class CostConfig(_Strict):
    cpu_hour_usd: float = Field(
        default=0.048,
        ge=0,
        description="Price of one CPU core-hour (a cloud vCPU on demand is about 0.04–0.05 USD).",
    )
    gpu_hour_usd: float = Field(default=2.5, ge=0, description="Price of one GPU-hour.")
    monthly_requests: int = Field(
        default=50_000, ge=0, description="Forecast of requests per month, for break-even."
    )
    tie_tolerance: float = Field(
        default=0.25,
        ge=0,
        description="Costs within this share of the cheapest count as equal (CPU timings "
        "are noisy); among candidates tied on quality and cost the more accurate wins.",
    )
    horizon_months: int = Field(
        default=12, ge=1, description="Months over which setup (training) cost is paid back."
    )


class ProjectConfig(_Strict):
    model_config = ConfigDict(
        extra="forbid", validate_default=True, validate_by_name=True, serialize_by_alias=True
    )

    name: str = Field(description="Project name, shown in reports.")
    task: Literal["classification", "extraction", "generation"] = Field(
        default="classification",
        description="'classification' (a label per input), 'extraction' (a JSON object per "
        "input, following 'schema') or 'generation' (free text scored against a reference).",
    )
    seed: int = Field(default=42, description="Seed for splits, sampling and training.")
    data: DataConfig = Field(description="Where the labelled examples are and how to split them.")
    labels: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Classification: every label with a one-line description; the descriptions are "
            "the 'prompt' that zero-shot classifies against."
        ),
    )
    schema_: dict[str, Any] | str | None = Field(
        default=None,
        alias="schema",
        description="Extraction: the JSON schema of the target object, inline or a .json file.",
    )
    instruction: str | None = Field(
        default=None, description="Generation: what the model is asked to do with each input."
    )
    model: ModelConfig = Field(
        default_factory=ModelConfig,
        description="The encoder: embeddings for the classifier strategies, example selection "
        "and retrieval.",
    )
    llms: dict[str, LLMConfig] = Field(
        default_factory=dict,
        description="Generative models by name; a candidate names one with 'llm:'.",
    )
    candidates: list[CandidateConfig] = Field(
        min_length=1,
        description="The candidates to compare: each a unique name, a strategy and its params.",
    )
    evaluation: EvaluationConfig = Field(
        default_factory=EvaluationConfig, description="Statistics of the comparison."
    )
    cost: CostConfig = Field(default_factory=CostConfig, description="Prices and volume.")

    @field_validator("labels")
    @classmethod
    def _label_descriptions(cls, v: dict[str, str], info: ValidationInfo) -> dict[str, str]:
        if info.data.get("task", "classification") == "classification" and len(v) < 2:
            raise ValueError("a classification task needs at least two labels")
        for label, desc in v.items():
            if not str(desc).strip():
                raise ValueError(f"label '{label}' has an empty description")
        return v

    @field_validator("schema_")
    @classmethod
    def _schema_for_extraction(cls, v: Any, info: ValidationInfo) -> Any:
        if info.data.get("task") == "extraction" and v is None:
            raise ValueError("an extraction task needs 'schema:' (the JSON schema of the target)")
        return v

    @field_validator("candidates")
    @classmethod
    def _unique_candidates(cls, v: list[CandidateConfig]) -> list[CandidateConfig]:
        seen: set[str] = set()
        for cand in v:
            if cand.name in seen:
                raise ValueError(
                    f"candidate name '{cand.name}' appears twice; names must be unique"
                )
            seen.add(cand.name)
        return v


# ---------------------------------------------------------------- loading


def _node_line(node: yaml.Node | None, loc: tuple[str | int, ...]) -> int | None:
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
    line = _node_line(root, loc)
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
    value = first.get("input")
    shown = repr(value) if not isinstance(value, dict | list) else type(value).__name__
    return ConfigError(
        f"bad value {shown} for '{key}': {first['msg']}", file=file, line=line, fix=help_text
    )


def parse_yaml(text: str, file: Path) -> tuple[Any, yaml.Node | None]:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(
            f"YAML syntax error: {exc.problem or exc}",
            file=file,
            line=line,
            fix="check indentation (spaces, not tabs) and that every 'key: value' has its colon",
        ) from None
    return data, root


def load_config(path: str | Path) -> ProjectConfig:
    """Read and validate ``adaptlab.yaml`` (a file or the project folder holding it)."""
    file = Path(path)
    if file.is_dir():
        file = file / CONFIG_FILE
    if not file.exists():
        raise ConfigError(
            "no adaptlab.yaml here",
            file=file,
            fix="run 'adaptlab init DIR' to create a project, or pass --project DIR",
        )
    try:
        text = file.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = file.read_bytes()[: exc.start].count(b"\n") + 1
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

    # Strategy options are checked by the strategy named, so a plugin's options are
    # validated exactly like the built-ins'.
    from adaptlab.strategies.registry import get_strategy

    for i, cand in enumerate(config.candidates):
        try:
            strategy = get_strategy(cand.strategy)
        except KeyError as exc:
            raise ConfigError(
                str(exc.args[0]),
                file=file,
                line=_node_line(root, ("candidates", i, "strategy")),
                fix="use one of the strategies listed by 'adaptlab strategies'",
            ) from None
        try:
            strategy.Options.model_validate(cand.params)
        except ValidationError as exc:
            raise format_validation_error(
                exc,
                file=file,
                root=root,
                model=strategy.Options,
                prefix=("candidates", i, "params"),
            ) from None
        _check_candidate_model(config, i, strategy, file, root)
    _check_llms(config, file, root)
    _check_judge(config, file, root)
    if config.task == "extraction":
        config.schema_ = _load_schema(config.schema_, file, root)
    return config


def _check_candidate_model(
    config: ProjectConfig, i: int, strategy: Any, file: Path, root: yaml.Node | None
) -> None:
    cand = config.candidates[i]
    if config.task not in strategy.tasks:
        raise ConfigError(
            f"strategy '{cand.strategy}' of candidate '{cand.name}' cannot do a {config.task} task",
            file=file,
            line=_node_line(root, ("candidates", i, "strategy")),
            fix=f"for {config.task} use a generative strategy: llm-zero-shot, llm-few-shot, "
            "llm-cot or prompt",
        )
    if strategy.generative and cand.llm is None:
        raise ConfigError(
            f"candidate '{cand.name}' prompts a generative model but names none",
            file=file,
            line=_node_line(root, ("candidates", i)),
            fix="add 'llm: NAME' naming an entry under 'llms:'"
            + (f" ({', '.join(config.llms)})" if config.llms else ""),
        )
    if cand.llm is not None and not strategy.generative:
        raise ConfigError(
            f"strategy '{cand.strategy}' uses the encoder under 'model:', not an llm",
            file=file,
            line=_node_line(root, ("candidates", i, "llm")),
            fix="remove 'llm:' from this candidate",
        )
    if cand.llm is not None and cand.llm not in config.llms:
        close = difflib.get_close_matches(cand.llm, list(config.llms), n=1)
        raise ConfigError(
            f"candidate '{cand.name}' names llm '{cand.llm}', which is not under 'llms:'",
            file=file,
            line=_node_line(root, ("candidates", i, "llm")),
            fix=(f"did you mean '{close[0]}'? " if close else "")
            + "define it under 'llms:' (backend and name), e.g. 'llms: {chat: {backend: openai, "
            "name: gpt-4o-mini}}'",
        )


def _check_llms(config: ProjectConfig, file: Path, root: yaml.Node | None) -> None:
    from adaptlab.backends import BACKENDS, GenerativeBackend

    for name, llm in config.llms.items():
        try:
            cls = BACKENDS.get(llm.backend)
        except KeyError as exc:
            raise ConfigError(
                str(exc.args[0]),
                file=file,
                line=_node_line(root, ("llms", name, "backend")),
                fix="use 'openai' (also for vLLM, Ollama, llama.cpp, LM Studio), "
                "'anthropic' or 'hf'",
            ) from None
        if not issubclass(cls, GenerativeBackend):
            raise ConfigError(
                f"backend '{llm.backend}' of llm '{name}' is an encoder, not a generative model",
                file=file,
                line=_node_line(root, ("llms", name, "backend")),
                fix="use 'openai', 'anthropic' or 'hf'",
            )
        if llm.adapter is not None and not cls.local:
            raise ConfigError(
                f"llm '{name}': 'adapter' only applies to local models (backend 'hf')",
                file=file,
                line=_node_line(root, ("llms", name, "adapter")),
                fix="remove 'adapter:', or use backend 'hf' with a local checkpoint",
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
            line=_node_line(
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
        where = (file.parent / value).expanduser()
        try:
            value = json.loads(where.read_text(encoding="utf-8"))
        except OSError:
            raise ConfigError(
                f"schema file '{where}' cannot be read",
                file=file,
                line=_node_line(root, ("schema",)),
                fix="give a path relative to adaptlab.yaml, or the schema inline",
            ) from None
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"the schema is not valid JSON: {exc.msg}",
                file=where,
                line=exc.lineno,
                fix="fix the JSON syntax at that line",
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
            line=_node_line(root, ("schema",)) if where == file else None,
            fix="check the schema against https://json-schema.org (draft 2020-12)",
        ) from None
    return value


def key_line(file: Path, *loc: str | int) -> int | None:
    """Line of a key in a config file that already parsed (for errors found later)."""
    try:
        return _node_line(yaml.compose(file.read_text(encoding="utf-8")), loc)
    except (OSError, yaml.YAMLError):
        return None


def dump_config(config: ProjectConfig) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
