from __future__ import annotations

import datetime as dt
from importlib import resources
from typing import Any

import pytest
import yaml

from adaptlab.config import LLMConfig, PriceConfig
from adaptlab.llm.prices import (
    Price,
    _parse_table,
    cost_usd,
    load_price_table,
    lookup_price,
    price_for,
    price_kind,
    price_table_checked,
    training_cost_usd,
)
from adaptlab.llm.types import Usage


def _raw_table() -> dict[str, Any]:
    text = resources.files("adaptlab.llm").joinpath("prices.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(text)
    return data


def _price(model: str) -> Price:
    price = lookup_price(model)
    assert price is not None, model
    return price


# ------------------------------------------------------------------ lookups


def test_exact_ids() -> None:
    assert (_price("gpt-4o-mini").input, _price("gpt-4o-mini").output) == (0.15, 0.60)
    assert (_price("gpt-4o").input, _price("gpt-4o").output) == (2.50, 10.00)
    assert _price("claude-3-5-haiku").cached_input == 0.08
    assert _price("GPT-4o-Mini ") == _price("gpt-4o-mini")  # ids are case-insensitive


@pytest.mark.parametrize(
    ("snapshot", "model"),
    [
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("o4-mini-2025-04-16", "o4-mini"),
        ("gpt-3.5-turbo-0125", "gpt-3.5-turbo"),
        ("gpt-4-0613", "gpt-4"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-3-5-haiku-latest", "claude-3-5-haiku"),
        ("claude-3-5-haiku@20241022", "claude-3-5-haiku"),  # Vertex AI spelling
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-sonnet-4-0", "claude-sonnet-4"),  # alias
    ],
)
def test_snapshots_and_aliases(snapshot: str, model: str) -> None:
    assert lookup_price(snapshot) == _price(model)


def test_prefix_trap() -> None:
    mini, big = _price("gpt-4o-mini"), _price("gpt-4o")
    assert mini != big
    assert lookup_price("gpt-4o-mini-2024-07-18") == mini
    assert lookup_price("gpt-4o-2024-08-06") == big
    # A listed snapshot with its own price wins over its model's.
    assert _price("gpt-4o-2024-05-13").input == 5.00
    # Not a snapshot suffix: no match rather than the price of a shorter id.
    for unknown in ("gpt-4o-audio-preview", "gpt-4o-mini-tts", "gpt-4.5", "claude-opus-4-9"):
        assert lookup_price(unknown) is None, unknown


def test_finetuned_ids() -> None:
    ft = _price("ft:gpt-4o-mini-2024-07-18:my-org::abc123")
    assert (ft.input, ft.output, ft.cached_input, ft.training) == (0.30, 1.20, 0.15, 3.00)
    assert _price("ft:gpt-4o-mini-2024-07-18:my-org:custom:abc123") == ft
    assert _price("ft:gpt-4.1-nano-2025-04-14:org::x").training == 1.50
    ft35 = _price("ft:gpt-3.5-turbo-0125:org::x")
    assert ft35.cached_input == ft35.input == 3.00  # no caching discount listed
    assert lookup_price("ft:o4-mini-2025-04-16:org::x") is None  # billed per hour
    assert lookup_price("ft:gpt-4o-2024-05-13:org::x") is None  # not fine-tunable
    assert lookup_price("ft:") is None
    assert lookup_price("ft:unknown-model:org::x") is None


@pytest.mark.parametrize("model", ["gpt-99", "llama3.1:8b", "meta-llama/Llama-3.1-8B", ""])
def test_unknown_model(model: str) -> None:
    assert lookup_price(model) is None


# ------------------------------------------------------------------ configs


def _llm(**kw: Any) -> LLMConfig:
    return LLMConfig(**{"backend": "openai", "name": "gpt-4o-mini", **kw})


def test_price_for_table_and_override() -> None:
    assert price_for(_llm()) == _price("gpt-4o-mini")
    over = price_for(_llm(prices=PriceConfig(input=0.1, output=0.2)))
    assert over is not None
    assert (over.input, over.output, over.cached_input) == (0.1, 0.2, 0.1)
    assert "adaptlab.yaml" in over.source
    assert over.training == 3.00  # the override has no training field; the table's stays
    over = price_for(_llm(prices=PriceConfig(input=1, output=2, cached_input=0.5)))
    assert over is not None and over.cached_input == 0.5


def test_self_hosted_and_base_urls() -> None:
    hf = _llm(backend="hf", name="gpt-4o-mini")  # a local folder that happens to share the id
    assert price_for(hf) is None
    assert price_kind(hf) == "self-hosted"
    hf_priced = _llm(backend="hf", name="./model", prices=PriceConfig(input=0, output=0))
    assert price_for(hf_priced) == Price(0.0, 0.0, 0.0, "adaptlab.yaml (llms.<name>.prices)")
    assert price_kind(hf_priced) == "override"

    azure = _llm(base_url="https://my-resource.openai.azure.com/openai/v1")
    assert price_for(azure) == _price("gpt-4o-mini")
    assert price_kind(azure) == "table"

    for url in (
        "http://localhost:11434/v1",
        "http://127.0.0.1:8000/v1",
        "http://10.1.2.3:8000/v1",
        "http://[::1]:8000/v1",
        "http://vllm:8000/v1",
        "http://gpu-box.local/v1",
        "http://host.docker.internal:1234/v1",
    ):
        vllm = _llm(name="meta-llama/Llama-3.1-8B-Instruct", base_url=url)
        assert price_for(vllm) is None
        assert price_kind(vllm) == "self-hosted", url

    hosted = _llm(name="meta-llama/llama-3.1-8b-instruct", base_url="https://openrouter.ai/api/v1")
    assert price_for(hosted) is None
    assert price_kind(hosted) == "unknown"
    assert price_kind(_llm(name="gpt-99")) == "unknown"
    assert price_kind(_llm(backend="anthropic", name="claude-3-5-haiku-latest")) == "table"


# ------------------------------------------------------------------ arithmetic


def test_cost_usd_by_hand() -> None:
    price = _price("gpt-4o-mini")  # 0.15 in, 0.075 cached, 0.60 out
    usage = Usage(input_tokens=12_000, output_tokens=500, cached_input_tokens=2_000)
    # 10,000 fresh x 0.15 + 2,000 cached x 0.075 + 500 x 0.60, per million.
    assert cost_usd(usage, price) == pytest.approx((1500 + 150 + 300) / 1e6)
    # Anthropic-style usage: input_tokens does not include the cache reads.
    assert cost_usd(usage, price, cached_in_input=False) == pytest.approx((1800 + 150 + 300) / 1e6)
    assert cost_usd(Usage(), price) == 0.0
    assert cost_usd(Usage(1_000_000, 1_000_000), _price("claude-opus-4")) == pytest.approx(90.0)
    with pytest.raises(ValueError, match="cannot exceed"):
        cost_usd(Usage(input_tokens=10, cached_input_tokens=11), price)
    assert cost_usd(Usage(10, 0, 11), price, cached_in_input=False) > 0


def test_training_cost_by_hand() -> None:
    price = _price("gpt-4o-mini")  # 3.00 per 1M training tokens
    assert training_cost_usd(1_000_000, price) == pytest.approx(3.0)
    assert training_cost_usd(250_000, price, epochs=3) == pytest.approx(2.25)
    with pytest.raises(ValueError, match="training price"):
        training_cost_usd(1000, _price("claude-3-5-haiku"))
    with pytest.raises(ValueError):
        training_cost_usd(1000, price, epochs=0)


# ------------------------------------------------------------------ the table


def test_table_integrity() -> None:
    raw = _raw_table()
    assert isinstance(raw["checked"], dt.date)
    assert price_table_checked() == raw["checked"].isoformat()
    models = raw["models"]
    assert len(models) >= 20
    for model, entry in models.items():
        assert model == model.lower(), model
        for key in ("input", "output", "source"):
            assert key in entry, (model, key)
        assert entry["source"].startswith(
            ("https://platform.openai.com/", "https://docs.anthropic.com/")
        )
        numbers = [entry["input"], entry["output"], entry.get("cached_input", 0)]
        ft = entry.get("finetuned", {})
        numbers += list(ft.values())
        assert all(isinstance(x, int | float) and x >= 0 for x in numbers), model
        assert entry["output"] >= entry["input"], model
        assert entry.get("cached_input", entry["input"]) <= entry["input"], model
        if ft:
            assert ft["output"] >= ft["input"] >= entry["input"], model
            assert ft["training"] > 0, model
    for required in (
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "o4-mini",
        "gpt-3.5-turbo",
        "claude-3-5-haiku",
        "claude-3-7-sonnet",
        "claude-sonnet-4",
        "claude-opus-4",
        "claude-haiku-4-5",
    ):
        assert required in models, required
    assert set(load_price_table()) == set(models)


def test_load_price_table_returns_a_copy() -> None:
    table = load_price_table()
    table.clear()
    assert lookup_price("gpt-4o") is not None
    assert load_price_table()


_GOOD = "checked: 2025-01-01\nmodels:\n  m:\n    input: 1\n    output: 2\n    source: https://x\n"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("models: {}\n", "checked"),
        (_GOOD.replace("    source: https://x\n", ""), "lacks 'source'"),
        (_GOOD.replace("input: 1", "input: -1"), "must be a finite number"),
        (_GOOD.replace("input: 1", "input: '1'"), "must be a number"),
        (_GOOD.replace("input: 1", "inptu: 1"), "unknown keys"),
        (_GOOD.replace("https://x", "http://x"), "https"),
        (_GOOD + "    finetuned: {input: 1, output: 2}\n", "lacks 'training'"),
        (_GOOD + "    aliases: [m]\n", "also model ids"),
        (_GOOD + "    aliases: m2\n", "list of model ids"),
    ],
)
def test_parse_table_rejects(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        _parse_table(text)


def test_parse_table_defaults() -> None:
    table = _parse_table(_GOOD + "    finetuned: {input: 2, output: 4, training: 5}\n")
    price = table.models["m"]
    assert price == Price(1.0, 2.0, 1.0, "https://x", 5.0, Price(2.0, 4.0, 2.0, "https://x", 5.0))
