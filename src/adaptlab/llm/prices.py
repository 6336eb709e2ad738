"""API prices and capabilities of generative models: the shipped table, overrides and
cost arithmetic.

Prices are USD per 1M tokens. The table (``prices.yaml``, package data) holds the
providers' published list prices as of its ``checked`` date; ``llms.<name>.prices`` in
``adaptlab.yaml`` overrides it. A model with no price (self-hosted, or unknown to the
table) gets ``None`` from :func:`price_for`, never 0: an unknown cost must not look free.
:func:`price_kind` tells the report why.

The same table says what a model accepts (:class:`Capabilities`): its context window,
whether it reasons before answering (o-series, gpt-5: such models spend
``max_completion_tokens`` on hidden reasoning and refuse ``temperature``), so a backend
sends each model only what it takes.

The table's ``batch:`` block gives each provider's batch tier (:class:`BatchTerms`): the
share of the standard prices its batch API bills (OpenAI Batch API, Anthropic Message
Batches: 0.5). :func:`batch_price_for` is a model's price in that tier.
"""

from __future__ import annotations

import functools
import ipaddress
import math
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

import yaml

if TYPE_CHECKING:
    from adaptlab.config import LLMConfig
    from adaptlab.llm.types import Usage

PER_TOKENS = 1_000_000
PriceKind = Literal["override", "table", "self-hosted", "unknown"]
#: Backends that run the model on this machine (``hf``; ``fake``, the scripted one): never
#: looked up in the price table, never "hosted"; a candidate's cost is the machine's time.
SELF_HOSTED_BACKENDS = frozenset({"hf", "fake"})

# A dated snapshot or alias suffix: gpt-4o-mini-2024-07-18, gpt-3.5-turbo-0125,
# claude-3-5-haiku-20241022, claude-3-5-haiku-latest, Vertex AI's claude-3-5-haiku@20241022.
_SNAPSHOT = re.compile(r"[-@](?:\d{4}-\d{2}-\d{2}|\d{8}|\d{4}|latest)$")
_ENTRY_KEYS = {
    "input",
    "output",
    "cached_input",
    "finetuned",
    "aliases",
    "source",
    "context_window",
    "reasoning",
    "accepts_temperature",
}
# Reasoning models named by their provider's convention, for ids the table does not list
# (a newer snapshot, an Azure deployment named after its model).
_REASONING_NAME = re.compile(r"^(?:o\d|gpt-5)(?:$|[-.])")
#: Output tokens left to a reasoning model beyond the answer itself: it spends
#: ``max_completion_tokens`` on hidden reasoning first, and with only the answer's
#: allowance (16 for a bare label) every answer comes back empty, cut off.
REASONING_ROOM = 4096
_FINETUNED_KEYS = {"input", "output", "cached_input", "training"}


@dataclass(frozen=True)
class Price:
    """USD per 1M tokens of one model.

    ``training`` is USD per 1M training tokens to fine-tune this model at the provider
    (None: the provider does not fine-tune it per token); ``finetuned`` holds the
    inference prices of a model fine-tuned from this one.
    """

    input: float
    output: float
    cached_input: float
    source: str
    training: float | None = None
    finetuned: Price | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a model accepts and how it answers.

    ``context_window``: tokens of prompt plus answer (None: unknown); ``reasoning``: it
    reasons before answering, out of its output tokens; ``accepts_temperature``: it takes
    sampling parameters (reasoning models refuse them with a 400).
    """

    context_window: int | None = None
    reasoning: bool = False
    accepts_temperature: bool = True
    source: str = "default"  # "table", "model name", "config.json" or "default"

    def output_room(self, answer_tokens: int) -> int:
        """The output limit to send for an answer of ``answer_tokens``."""
        return answer_tokens + REASONING_ROOM if self.reasoning else answer_tokens


@dataclass(frozen=True)
class BatchTerms:
    """What one provider's batch API bills: ``share`` of the standard input, cached-input
    and output prices (0.5: half), for answers within ``window_hours``; ``source`` is
    the page that says so. ``provider`` is the backend's name ("openai", "anthropic")."""

    provider: str
    share: float
    source: str
    window_hours: int = 24


@dataclass(frozen=True)
class _Table:
    checked: str
    models: dict[str, Price]
    aliases: dict[str, str]
    capabilities: dict[str, Capabilities]
    batch: dict[str, BatchTerms] = field(default_factory=dict)


def _number(model: str, key: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"price table: {model}.{key} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"price table: {model}.{key} must be a finite number >= 0")
    return float(value)


def _unknown_keys(model: str, entry: dict[str, Any], allowed: set[str]) -> None:
    extra = sorted(set(entry) - allowed)
    if extra:
        raise ValueError(
            f"price table: {model} has unknown keys {extra}; allowed: {sorted(allowed)}"
        )


def _parse_entry(model: str, entry: object) -> Price:
    if not isinstance(entry, dict):
        raise ValueError(f"price table: {model} must be a mapping")
    _unknown_keys(model, entry, _ENTRY_KEYS)
    for key in ("input", "output", "source"):
        if key not in entry:
            raise ValueError(f"price table: {model} lacks '{key}'")
    source = entry["source"]
    if not isinstance(source, str) or not source.startswith("https://"):
        raise ValueError(f"price table: {model}.source must be an https:// URL")
    inp = _number(model, "input", entry["input"])
    finetuned: Price | None = None
    training: float | None = None
    ft = entry.get("finetuned")
    if ft is not None:
        name = f"{model}.finetuned"
        if not isinstance(ft, dict):
            raise ValueError(f"price table: {name} must be a mapping")
        _unknown_keys(name, ft, _FINETUNED_KEYS)
        for key in ("input", "output", "training"):
            if key not in ft:
                raise ValueError(f"price table: {name} lacks '{key}'")
        ft_in = _number(name, "input", ft["input"])
        training = _number(name, "training", ft["training"])
        finetuned = Price(
            input=ft_in,
            output=_number(name, "output", ft["output"]),
            cached_input=_number(name, "cached_input", ft.get("cached_input", ft_in)),
            source=source,
            training=training,
        )
    return Price(
        input=inp,
        output=_number(model, "output", entry["output"]),
        cached_input=_number(model, "cached_input", entry.get("cached_input", inp)),
        source=source,
        training=training,
        finetuned=finetuned,
    )


def _parse_capabilities(model: str, entry: dict[str, Any]) -> Capabilities:
    window = entry.get("context_window")
    if window is not None and (isinstance(window, bool) or not isinstance(window, int)):
        raise ValueError(f"price table: {model}.context_window must be a whole number of tokens")
    if window is not None and window < 1:
        raise ValueError(f"price table: {model}.context_window must be positive")
    for key in ("reasoning", "accepts_temperature"):
        if key in entry and not isinstance(entry[key], bool):
            raise ValueError(f"price table: {model}.{key} must be true or false")
    reasoning = bool(entry.get("reasoning", False))
    return Capabilities(
        context_window=window,
        reasoning=reasoning,
        accepts_temperature=bool(entry.get("accepts_temperature", not reasoning)),
        source="table",
    )


def _parse_batch(raw: object) -> dict[str, BatchTerms]:
    """The ``batch:`` block: provider -> {share (0 < share <= 1), source (https://)}."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise ValueError("price table: 'batch' must map providers to {share, source}")
    out: dict[str, BatchTerms] = {}
    for provider, entry in raw.items():
        name = f"batch.{provider}"
        if not isinstance(entry, dict):
            raise ValueError(f"price table: {name} must be a mapping")
        _unknown_keys(name, entry, {"share", "source"})
        for key in ("share", "source"):
            if key not in entry:
                raise ValueError(f"price table: {name} lacks '{key}'")
        share = _number(name, "share", entry["share"])
        if not 0 < share <= 1:
            raise ValueError(f"price table: {name}.share must be above 0 and at most 1")
        source = entry["source"]
        if not isinstance(source, str) or not source.startswith("https://"):
            raise ValueError(f"price table: {name}.source must be an https:// URL")
        out[str(provider)] = BatchTerms(str(provider), share, source)
    return out


def _parse_table(text: str) -> _Table:
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or "checked" not in data or "models" not in data:
        raise ValueError("price table: expected top-level 'checked:' and 'models:'")
    models_raw = data["models"]
    if not isinstance(models_raw, dict):
        raise ValueError("price table: 'models' must be a mapping")
    models: dict[str, Price] = {}
    aliases: dict[str, str] = {}
    capabilities: dict[str, Capabilities] = {}
    for raw_id, entry in models_raw.items():
        model = str(raw_id).lower()
        models[model] = _parse_entry(model, entry)
        capabilities[model] = _parse_capabilities(model, entry)
        names = entry.get("aliases") or []
        if not isinstance(names, list) or not all(isinstance(a, str) for a in names):
            raise ValueError(f"price table: {model}.aliases must be a list of model ids")
        for alias in names:
            aliases[alias.lower()] = model
    clash = sorted(set(aliases) & set(models))
    if clash:
        raise ValueError(f"price table: aliases {clash} are also model ids")
    return _Table(
        checked=str(data["checked"]),
        models=models,
        aliases=aliases,
        capabilities=capabilities,
        batch=_parse_batch(data.get("batch")),
    )


@functools.cache
def _table() -> _Table:
    text = resources.files("adaptlab.llm").joinpath("prices.yaml").read_text(encoding="utf-8")
    return _parse_table(text)


def load_price_table() -> dict[str, Price]:
    """The shipped table by model id (aliases not repeated); a copy of a cached parse."""
    return dict(_table().models)


def price_table_checked() -> str:
    """The date (ISO) of the published price lists the shipped table was compiled from."""
    return _table().checked


def _table_id(model_id: str) -> str | None:
    """The table's id for a provider id (exact, alias or snapshot), or None."""
    table = _table()
    for candidate in (model_id, _SNAPSHOT.sub("", model_id)):
        if candidate in table.models:
            return candidate
        if candidate in table.aliases:
            return table.aliases[candidate]
    return None


def _lookup_base(model_id: str) -> Price | None:
    """Exact id or alias, else the id with one snapshot suffix stripped.

    Only a suffix that looks like a snapshot (a date, 4 digits or 'latest') is
    stripped, so 'gpt-4o-mini-2024-07-18' finds 'gpt-4o-mini' and never 'gpt-4o', and
    'gpt-4o-audio-preview' finds nothing.
    """
    table = _table()
    for candidate in (model_id, _SNAPSHOT.sub("", model_id)):
        if candidate in table.models:
            return table.models[candidate]
        if candidate in table.aliases:
            return table.models[table.aliases[candidate]]
    return None


def lookup_price(model_id: str) -> Price | None:
    """Table price of a provider model id, or None when the table does not know it.

    Besides exact ids and snapshots (see :func:`_lookup_base`), an OpenAI fine-tuned id
    ``ft:<base>:<org>:<suffix>:<id>`` gets the ``finetuned`` prices of its base model
    (None when the base is not fine-tunable per token).
    """
    mid = model_id.strip().lower()
    if mid.startswith("ft:"):
        parts = mid.split(":")
        base = _lookup_base(parts[1]) if len(parts) > 1 and parts[1] else None
        return base.finetuned if base is not None else None
    return _lookup_base(mid)


def lookup_capabilities(model_id: str) -> Capabilities:
    """What a provider model id accepts: the table's entry (a fine-tuned ``ft:`` id takes
    its base model's), else what its name says (``o1``…, ``gpt-5``… reason), else defaults."""
    mid = model_id.strip().lower()
    if mid.startswith("ft:"):
        parts = mid.split(":")
        mid = parts[1] if len(parts) > 1 else mid
    found = _table_id(mid)
    if found is not None:
        return _table().capabilities[found]
    if _REASONING_NAME.match(mid):
        return Capabilities(reasoning=True, accepts_temperature=False, source="model name")
    return Capabilities()


def capabilities_for(config: LLMConfig) -> Capabilities:
    """Capabilities of one ``llms:`` entry; an ``hf`` model's context window is its
    ``config.json``'s ``max_position_embeddings`` (read without loading the model)."""
    if config.backend != "hf":
        return lookup_capabilities(config.name)
    import json
    from pathlib import Path

    try:
        data = json.loads((Path(config.name).expanduser() / "config.json").read_text())
    except (OSError, ValueError):
        return Capabilities()
    if not isinstance(data, dict):
        return Capabilities()
    for key in ("max_position_embeddings", "n_positions", "max_sequence_length"):
        window = data.get(key)
        if isinstance(window, int) and not isinstance(window, bool) and window > 0:
            return Capabilities(context_window=window, source="config.json")
    return Capabilities()


def price_for(config: LLMConfig) -> Price | None:
    """The price of one ``llms:`` entry, or None when it has none.

    ``config.prices`` wins (its ``cached_input`` defaults to its ``input``; ``training``
    and ``finetuned`` still come from the table when the model id is listed, as the
    override has no fields for them). Otherwise the table is looked up by
    ``config.name`` (:func:`lookup_price`), whatever ``base_url`` says: an Azure or proxy
    endpoint serving a listed id gets the list price, a vLLM/Ollama server serving an
    unlisted model gets None. A self-hosted backend (``hf``, ``fake``) runs the model on
    this machine and is never looked up.
    """
    table_price = None if config.backend in SELF_HOSTED_BACKENDS else lookup_price(config.name)
    override = config.prices
    if override is None:
        return table_price
    cached = override.cached_input if override.cached_input is not None else override.input
    return Price(
        input=override.input,
        output=override.output,
        cached_input=cached,
        source="adaptlab.yaml (llms.<name>.prices)",
        training=table_price.training if table_price is not None else None,
        finetuned=table_price.finetuned if table_price is not None else None,
    )


def batch_terms(backend: str) -> BatchTerms | None:
    """The batch tier of the provider behind ``backend`` ("openai", "anthropic"), or None
    when it has no batch API adaptlab uses (a local model, the fake backend)."""
    return _table().batch.get(backend)


def batch_price(price: Price, terms: BatchTerms) -> Price:
    """``price`` in the batch tier: input, cached input and output x ``terms.share``
    (the providers bill all three at the same share; see ``prices.yaml``). The
    ``finetuned`` prices scale alike (a fine-tuned model in a batch is billed at the
    same share); the training price does not (training is no batch request)."""
    s = terms.share
    return replace(
        price,
        input=price.input * s,
        output=price.output * s,
        cached_input=price.cached_input * s,
        source=f"{price.source} x {s:g} ({terms.source})",
        finetuned=None if price.finetuned is None else batch_price(price.finetuned, terms),
    )


def batch_price_for(config: LLMConfig) -> Price | None:
    """:func:`price_for` of ``config`` in its provider's batch tier; None when it has no
    price, or its backend no batch API (:func:`batch_terms`)."""
    price = price_for(config)
    terms = batch_terms(config.backend)
    if price is None or terms is None:
        return None
    return batch_price(price, terms)


def _is_local_host(base_url: str) -> bool:
    host = (urlsplit(base_url).hostname or "").lower()
    if not host:
        return False
    if "." not in host and ":" not in host:  # localhost, or a container name like 'vllm'
        return True
    if host.endswith((".localhost", ".local", ".internal", ".lan", ".home.arpa")):
        return True
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return False
    return ip.is_private or ip.is_loopback or ip.is_link_local


def price_kind(config: LLMConfig) -> PriceKind:
    """Why :func:`price_for` gives what it gives, for the report.

    'override' or 'table' when there is a price; 'self-hosted' when there is none and
    the model runs on this machine (``hf``, ``fake``) or behind a ``base_url`` on a local or
    private host (loopback, private IP, a dot-less name, .local/.internal/.lan), so the
    report counts compute cost only; 'unknown' otherwise (a hosted model missing from
    the table: the user should set ``prices``).
    """
    if config.prices is not None:
        return "override"
    if price_for(config) is not None:
        return "table"
    if config.backend in SELF_HOSTED_BACKENDS or (
        config.base_url is not None and _is_local_host(config.base_url)
    ):
        return "self-hosted"
    return "unknown"


def cost_usd(usage: Usage, price: Price, *, cached_in_input: bool = True) -> float:
    """API cost of one call (or of summed usage) in USD.

    With ``cached_in_input=True`` (OpenAI's convention, and :class:`Usage`'s), cached
    tokens are part of ``input_tokens``: ``input_tokens - cached`` are billed at the input
    price and ``cached`` at the cached price. Pass False for usage counted Anthropic's
    way, where ``input_tokens`` excludes cache reads.
    """
    cached = usage.cached_input_tokens
    fresh = usage.input_tokens - cached if cached_in_input else usage.input_tokens
    if min(fresh, cached, usage.output_tokens) < 0:
        raise ValueError(
            f"impossible usage {usage}: token counts must be >= 0 and cached input tokens "
            "cannot exceed input tokens when they are part of them"
        )
    total = fresh * price.input + cached * price.cached_input + usage.output_tokens * price.output
    return total / PER_TOKENS


def training_cost_usd(tokens: int, price: Price, *, epochs: int = 1) -> float:
    """Provider fine-tuning cost: ``tokens`` in the training file, billed once per epoch."""
    if price.training is None:
        raise ValueError(
            f"no per-token training price for this model (source: {price.source}); "
            "the provider does not fine-tune it per token"
        )
    if tokens < 0 or epochs < 1:
        raise ValueError("tokens must be >= 0 and epochs >= 1")
    return tokens * epochs * price.training / PER_TOKENS


__all__ = [
    "PER_TOKENS",
    "REASONING_ROOM",
    "BatchTerms",
    "Capabilities",
    "Price",
    "PriceKind",
    "batch_price",
    "batch_price_for",
    "batch_terms",
    "capabilities_for",
    "cost_usd",
    "load_price_table",
    "lookup_capabilities",
    "lookup_price",
    "price_for",
    "price_kind",
    "price_table_checked",
    "training_cost_usd",
]
