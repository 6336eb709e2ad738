"""What a provider fine-tuning job will bill, before it is started.

The rules are OpenAI's, as its cookbook "Data preparation and analysis for chat model
fine-tuning" states them
(https://cookbook.openai.com/examples/chat_finetuning_data_prep, notebook
``examples/Chat_finetuning_data_prep.ipynb`` in openai/openai-cookbook):

* billed tokens = sum over examples of ``min(tokens, MAX_TOKENS_PER_EXAMPLE)``, times
  the number of epochs (tokens beyond the cap are truncated, not trained on, not billed);
* with ``n_epochs`` left to the provider ("auto"), it aims at ``TARGET_EPOCHS`` passes
  but at least ``MIN_TARGET_EXAMPLES`` and at most ``MAX_TARGET_EXAMPLES`` example
  visits, within ``MIN_DEFAULT_EPOCHS``..``MAX_DEFAULT_EPOCHS`` (:func:`default_epochs`).

The cookbook's cap (16,385) is gpt-3.5-turbo's context window; newer models train on
longer examples (:data:`MAX_TOKENS_PER_EXAMPLE`). The price per training token is the
``finetuned.training`` field of the shipped price table (``adaptlab/llm/prices.yaml``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from adaptlab.llm.prices import lookup_price, price_table_checked, training_cost_usd

# The cookbook's default-epoch rule, verbatim.
TARGET_EPOCHS = 3
MIN_TARGET_EXAMPLES = 100
MAX_TARGET_EXAMPLES = 25_000
MIN_DEFAULT_EPOCHS = 1
MAX_DEFAULT_EPOCHS = 25
#: The most epochs OpenAI's fine-tuning API accepts in ``hyperparameters.n_epochs``.
MAX_EPOCHS = 50

#: The cookbook's cap, for a model this table does not list (gpt-3.5-turbo's window).
DEFAULT_MAX_TOKENS_PER_EXAMPLE = 16_385
#: Tokens of one training example the provider trains on (and bills); the rest is cut.
#: "Training example context length" per model, from the fine-tuning model table of
#: Azure OpenAI (MicrosoftDocs/azure-ai-docs, articles/ai-foundry/openai/includes/
#: fine-tune-models.md, checked 2025-12-01), which serves the same snapshots as OpenAI;
#: gpt-3.5-turbo from the cookbook above.
MAX_TOKENS_PER_EXAMPLE: dict[str, int] = {
    "gpt-3.5-turbo": 16_385,
    "gpt-4o-mini": 65_536,
    "gpt-4o": 65_536,
    "gpt-4.1": 65_536,
    "gpt-4.1-mini": 65_536,
    "gpt-4.1-nano": 32_768,
}

# A dated snapshot suffix (gpt-4o-mini-2024-07-18, gpt-3.5-turbo-0125).
_SNAPSHOT = re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{4})$")


@dataclass(frozen=True)
class TrainingCost:
    """What one provider fine-tuning job on a file bills.

    ``epochs``: passes over the file (as the provider picks them for "auto");
    ``billed_tokens``: training tokens billed, ``tokens_per_epoch * epochs``;
    ``usd``: their price in USD, None when the model has no per-token training price
    (self-hosted, unknown, or billed otherwise); ``cap``: tokens per example that are
    billed at most; ``source``: where the price comes from (or why there is none);
    ``tokens_per_epoch``: sum of ``min(tokens, cap)`` over the examples;
    ``over_cap``: examples longer than ``cap`` (truncated by the provider).
    """

    epochs: int
    billed_tokens: int
    usd: float | None
    cap: int
    source: str
    tokens_per_epoch: int = 0
    over_cap: int = 0


def base_model_id(model: str) -> str:
    """The table id of a provider model id: lower case, ``ft:<base>:…`` -> base, snapshot
    suffix dropped (``gpt-4o-mini-2024-07-18`` -> ``gpt-4o-mini``)."""
    mid = model.strip().lower()
    if mid.startswith("ft:"):
        parts = mid.split(":")
        mid = parts[1] if len(parts) > 1 and parts[1] else mid
    return _SNAPSHOT.sub("", mid)


def max_tokens_per_example(model: str) -> int:
    """Tokens of one example the provider trains on and bills for ``model``
    (:data:`MAX_TOKENS_PER_EXAMPLE`, else the cookbook's 16,385)."""
    return MAX_TOKENS_PER_EXAMPLE.get(base_model_id(model), DEFAULT_MAX_TOKENS_PER_EXAMPLE)


def default_epochs(n_examples: int) -> int:
    """Epochs OpenAI picks for ``n_epochs="auto"`` on ``n_examples`` training examples.

    From the cookbook (see the module docstring): 3 epochs, raised to reach 100 example
    visits on a small file (at most 25 epochs), lowered to stay near 25,000 visits on a
    large one (at least 1). Raises ValueError for fewer than one example.
    """
    if n_examples < 1:
        raise ValueError("a training file needs at least one example")
    if n_examples * TARGET_EPOCHS < MIN_TARGET_EXAMPLES:
        return min(MAX_DEFAULT_EPOCHS, MIN_TARGET_EXAMPLES // n_examples)
    if n_examples * TARGET_EPOCHS > MAX_TARGET_EXAMPLES:
        return max(MIN_DEFAULT_EPOCHS, MAX_TARGET_EXAMPLES // n_examples)
    return TARGET_EPOCHS


def estimate_training_cost(
    token_counts: Sequence[int],
    model: str,
    n_epochs: int | Literal["auto"] = "auto",
    *,
    cap: int | None = None,
) -> TrainingCost:
    """The bill of fine-tuning ``model`` on examples of ``token_counts`` tokens each.

    ``token_counts``: one count per training example, in the model's tokenizer with the
    chat overhead (what :mod:`adaptlab.train.chat_tokens` counts); ``n_epochs``: a number
    (1-50, as the API accepts) or "auto" for the provider's choice
    (:func:`default_epochs`); ``cap``: tokens billed per example at most (default: the
    model's, :func:`max_tokens_per_example`).

    Billed tokens = ``sum(min(t, cap) for t in token_counts) * epochs`` (OpenAI cookbook,
    see the module docstring); USD = billed tokens x ``finetuned.training`` of the price
    table / 1M. Raises ValueError on no examples, a negative count or epochs out of range.
    """

    if not token_counts:
        raise ValueError("a training file needs at least one example")
    if any(t < 0 for t in token_counts):
        raise ValueError("token counts must be >= 0")
    if n_epochs == "auto":
        epochs = default_epochs(len(token_counts))
    elif isinstance(n_epochs, bool) or not isinstance(n_epochs, int):
        raise ValueError(f"n_epochs must be a whole number or 'auto', got {n_epochs!r}")
    elif not 1 <= n_epochs <= MAX_EPOCHS:
        raise ValueError(f"n_epochs must be 1-{MAX_EPOCHS}, got {n_epochs}")
    else:
        epochs = n_epochs
    limit = max_tokens_per_example(model) if cap is None else cap
    if limit < 1:
        raise ValueError(f"the per-example cap must be >= 1 token, got {limit}")
    per_epoch = sum(min(t, limit) for t in token_counts)
    over = sum(1 for t in token_counts if t > limit)
    price = lookup_price(model)
    if price is None or price.training is None:
        usd = None
        source = (
            f"no per-token training price for '{model}' in the price table of "
            f"{price_table_checked()}"
        )
    else:
        usd = training_cost_usd(per_epoch, price, epochs=epochs)
        source = (
            f"{price.training:g} USD per 1M training tokens: price table of "
            f"{price_table_checked()}, {price.source}"
        )
    return TrainingCost(
        epochs=epochs,
        billed_tokens=per_epoch * epochs,
        usd=usd,
        cap=limit,
        source=source,
        tokens_per_epoch=per_epoch,
        over_cap=over,
    )


__all__ = [
    "DEFAULT_MAX_TOKENS_PER_EXAMPLE",
    "MAX_EPOCHS",
    "MAX_TOKENS_PER_EXAMPLE",
    "TrainingCost",
    "base_model_id",
    "default_epochs",
    "estimate_training_cost",
    "max_tokens_per_example",
]
