"""The ``adaptlab.yaml`` schema: the one source of validation, defaults and help.

Every field carries its help text; ``adaptlab config schema`` prints them and the
error messages quote them. Strategy parameters are checked against the options
class of the strategy they name (see :mod:`adaptlab.strategies.registry`).
"""

from __future__ import annotations

import difflib
import re
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


# strict: `seed: yes` is not the integer 1 and `name: 2024` is not text; no NaN or
# infinity in a float field (they pass `ge=0` checks and break arithmetic later).
_STRICT = ConfigDict(extra="forbid", validate_default=True, strict=True, allow_inf_nan=False)


class _Strict(BaseModel):
    model_config = _STRICT


_DEVICE = re.compile(r"cpu|auto|mps|cuda(:\d{1,3})?")


def _device_name(v: str) -> str:
    if not _DEVICE.fullmatch(v):
        raise ValueError(f"unknown device {v!r}: use 'cpu', 'cuda', 'cuda:N', 'mps' or 'auto'")
    return v


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
    encoding: str = Field(
        default="utf-8",
        description="Text encoding of the data files (utf-8, cp1252 for Excel on Windows, "
        "latin-1, utf-16); a byte-order mark in the file overrides it.",
    )
    delimiter: str = Field(
        default="auto",
        description="CSV column delimiter: 'auto' (sniffed among , ; tab |), or one "
        "character such as ';' (German Excel) or '\\t' (tab).",
    )
    max_file_mb: float = Field(
        default=1024,
        gt=0,
        le=1 << 20,
        description="Largest data file read, in MB; a bigger file is refused, not swallowed.",
    )
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

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str) -> str:
        import codecs

        try:
            codecs.lookup(v)
        except LookupError:
            raise ValueError(
                f"unknown encoding '{v}' (use utf-8, cp1252, latin-1 or utf-16)"
            ) from None
        return v

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, v: str) -> str:
        v = "\t" if v in ("tab", "\\t") else v
        if v != "auto" and (len(v) != 1 or v in '"\r\n' or v.isalnum() or v == " "):
            raise ValueError(
                f"the delimiter must be 'auto' or one character such as ',' ';' '\\t' '|', "
                f"not {v!r}"
            )
        return v


class ModelConfig(_Strict):
    backend: str = Field(
        default="sentence-transformers", description="Backend that runs the model."
    )
    name: str = Field(
        default=BUNDLED_MODEL,
        description="Model name or local path; 'all-MiniLM-L6-v2' is the bundled offline model.",
    )
    device: str = Field(
        default="cpu", description="'cpu', 'cuda', 'cuda:1', 'mps' or 'auto' (a GPU if any)."
    )
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto",
        description="'auto' uses bf16 autocast only where the hardware has native bf16, else fp32.",
    )
    batch_size: int = Field(default=64, ge=1, le=65536, description="Texts per forward pass.")
    max_seq_length: int = Field(default=128, ge=8, le=1 << 20, description="Tokens kept per input.")

    _device = field_validator("device")(_device_name)


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
    device: str = Field(
        default="cpu", description="'hf' only: 'cpu', 'cuda', 'cuda:1', 'mps' or 'auto'."
    )
    precision: Literal["auto", "bf16", "fp32"] = Field(
        default="auto", description="'hf' only: bf16 where the hardware has it natively."
    )
    batch_size: int = Field(
        default=8, ge=1, le=65536, description="'hf' only: prompts per generate()."
    )
    prices: PriceConfig | None = Field(
        default=None, description="Override the shipped price table for this model."
    )

    _device = field_validator("device")(_device_name)


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
    model_config = ConfigDict(**_STRICT, validate_by_name=True, serialize_by_alias=True)

    name: str = Field(description="Project name, shown in reports.")
    task: Literal["classification", "extraction", "generation"] = Field(
        default="classification",
        description="'classification' (a label per input), 'extraction' (a JSON object per "
        "input, following 'schema') or 'generation' (free text scored against a reference).",
    )
    seed: int = Field(
        default=42,
        ge=0,
        lt=1 << 32,
        description="Seed for splits, sampling and training: 0 ≤ seed < 2**32 (what numpy "
        "and torch accept).",
    )
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
    node = _node_at(root, loc)
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


def _node_at(node: yaml.Node | None, loc: tuple[str | int, ...]) -> yaml.Node | None:
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
            f"control character U+{ord(bad.group()):04X} in {node.value[:40]!r}",
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


def load_config(path: str | Path) -> ProjectConfig:
    """Read and validate ``adaptlab.yaml`` (a file or the project folder holding it)."""
    file = Path(path)
    if file.is_dir() and file.name != CONFIG_FILE:
        file = file / CONFIG_FILE
    if not file.exists():
        raise ConfigError(
            "no adaptlab.yaml here",
            file=file,
            fix="run 'adaptlab init DIR' to create a project, or pass --project DIR",
        )
    from adaptlab.files import read_regular_file

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
    _check_devices(config, file, root)
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


_NAME_MAX = 100


def _check_names(config: ProjectConfig, file: Path, root: yaml.Node | None) -> None:
    """Names end up in folder names, result keys, terminal lines and report headings."""

    def refuse(what: str, loc: tuple[str | int, ...], fix: str, *, key: bool = False) -> None:
        node = _node_at(root, loc[:-1]) if key else None
        line = _node_line(root, loc)
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
                f"{key} is empty", file=file, line=_node_line(root, loc), fix="name a file"
            )
        if not _outside(folder, rel):
            continue
        target = (folder / rel).resolve()
        if loc[0] == "data" and any(target.is_relative_to(d) for d in allowed):
            continue  # the user (not the project) allowed data from this folder
        raise ConfigError(
            f"{key} '{rel}' points outside the project folder",
            file=file,
            line=_node_line(root, loc),
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
                line=_node_line(root, loc),
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
        from adaptlab.data.load import parse_json
        from adaptlab.files import read_regular_file

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
