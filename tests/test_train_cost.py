"""The provider fine-tuning bill: OpenAI's epoch rule, the per-example cap, the price."""

from __future__ import annotations

import pytest

from adaptlab.llm.prices import lookup_price
from adaptlab.train.cost import (
    DEFAULT_MAX_TOKENS_PER_EXAMPLE,
    base_model_id,
    default_epochs,
    estimate_training_cost,
    max_tokens_per_example,
)


@pytest.mark.parametrize(
    ("n", "epochs"),
    [
        (1, 25),  # 100 // 1 = 100, capped at 25
        (4, 25),
        (5, 20),  # the cookbook's own example: 5 examples -> 20 epochs
        (10, 10),
        (33, 3),  # 33 * 3 = 99 < 100 -> 100 // 33 = 3
        (34, 3),  # 102 visits: the target
        (8333, 3),  # 24,999 visits
        (8334, 2),  # 25,002 > 25,000 -> 25,000 // 8334 = 2
        (12_500, 2),
        (12_501, 1),
        (100_000, 1),  # never below 1
    ],
)
def test_default_epochs_follow_the_cookbook(n: int, epochs: int) -> None:
    assert default_epochs(n) == epochs


def test_billed_tokens_are_capped_per_example_and_multiplied_by_epochs() -> None:
    counts = [10, 20, 70_000, 30]
    cost = estimate_training_cost(counts, "gpt-4o-mini-2024-07-18", n_epochs=2)
    assert cost.cap == 65_536
    assert cost.tokens_per_epoch == 10 + 20 + 65_536 + 30
    assert cost.billed_tokens == 2 * cost.tokens_per_epoch
    assert cost.over_cap == 1
    assert cost.epochs == 2
    price = lookup_price("gpt-4o-mini")
    assert price is not None and price.training == pytest.approx(3.0)
    assert cost.usd == pytest.approx(cost.billed_tokens * 3.0 / 1e6)
    assert "prices" in cost.source or "pricing" in cost.source


def test_auto_epochs_and_prices_of_each_fine_tunable_model() -> None:
    counts = [100] * 5
    expected = {
        "gpt-4o-mini-2024-07-18": 3.00,
        "gpt-4o-2024-08-06": 25.00,
        "gpt-4.1-mini": 5.00,
        "gpt-4.1": 25.00,
        "gpt-4.1-nano": 1.50,
        "gpt-3.5-turbo": 8.00,
    }
    for model, per_1m in expected.items():
        cost = estimate_training_cost(counts, model)
        assert cost.epochs == 20, model
        assert cost.billed_tokens == 500 * 20
        assert cost.usd == pytest.approx(10_000 * per_1m / 1e6), model


def test_model_without_a_training_price_has_no_usd_but_a_reason() -> None:
    cost = estimate_training_cost([50, 60], "claude-3-5-haiku")
    assert cost.usd is None
    assert "no per-token training price" in cost.source
    local = estimate_training_cost([50], "my-local-llama", cap=32)
    assert local.usd is None and local.cap == 32 and local.billed_tokens == 32 * 25


def test_caps_by_model_and_snapshot() -> None:
    assert base_model_id("ft:gpt-4.1-nano-2025-04-14:org:x:id") == "gpt-4.1-nano"
    assert base_model_id("gpt-3.5-turbo-0125") == "gpt-3.5-turbo"
    assert max_tokens_per_example("gpt-4.1-nano-2025-04-14") == 32_768
    assert max_tokens_per_example("gpt-3.5-turbo-0125") == 16_385
    assert max_tokens_per_example("someone-elses-model") == DEFAULT_MAX_TOKENS_PER_EXAMPLE


@pytest.mark.parametrize("bad", [0, 51, -1, True, 2.5])
def test_epochs_out_of_range_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="n_epochs"):
        estimate_training_cost([1], "gpt-4o-mini", n_epochs=bad)  # type: ignore[arg-type]


def test_empty_file_and_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one example"):
        estimate_training_cost([], "gpt-4o-mini")
    with pytest.raises(ValueError, match=">= 0"):
        estimate_training_cost([3, -1], "gpt-4o-mini")
