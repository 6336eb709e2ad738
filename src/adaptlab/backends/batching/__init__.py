"""The providers' batch APIs for evaluation: half the price, answers within 24 hours.

:mod:`~adaptlab.backends.batching.base` holds the contract (:class:`BatchAPI`), the
request :class:`Collector`, the :class:`BatchStore` and :func:`run_batches`; one module
per provider implements the contract (:mod:`~adaptlab.backends.batching.openai`,
:mod:`~adaptlab.backends.batching.anthropic`), and :func:`batch_api` picks it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from adaptlab.backends.batching.anthropic import AnthropicBatchAPI
from adaptlab.backends.batching.base import (
    COLLECTOR,
    METADATA_KEY,
    RETRYABLE,
    BatchAPI,
    BatchError,
    BatchOutcome,
    BatchStore,
    Collected,
    Collector,
    LineResult,
    Snapshot,
    batch_api_name,
    batch_key,
    run_batches,
)
from adaptlab.backends.batching.openai import OpenAIBatchAPI

if TYPE_CHECKING:
    from adaptlab.backends.base import GenerativeBackend

#: The batch API of each provider, by backend name.
APIS: dict[str, type[BatchAPI]] = {"openai": OpenAIBatchAPI, "anthropic": AnthropicBatchAPI}


def batch_api(backend: GenerativeBackend) -> BatchAPI:
    """The :class:`BatchAPI` of ``backend``'s provider; BatchError when it has none."""
    name = batch_api_name(backend)
    if name is None or name not in APIS:
        raise BatchError(
            f"backend '{backend.name}' has no batch API",
            fix="evaluation.batch applies to llms with backend openai or anthropic; others "
            "are answered one request at a time",
            code="batch-unsupported",
        )
    return APIS[name](backend)


__all__ = [
    "APIS",
    "COLLECTOR",
    "METADATA_KEY",
    "RETRYABLE",
    "AnthropicBatchAPI",
    "BatchAPI",
    "BatchError",
    "BatchOutcome",
    "BatchStore",
    "Collected",
    "Collector",
    "LineResult",
    "OpenAIBatchAPI",
    "Snapshot",
    "batch_api",
    "batch_api_name",
    "batch_key",
    "run_batches",
]
