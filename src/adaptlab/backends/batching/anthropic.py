"""Anthropic's Message Batches through the official ``anthropic`` client.

``POST /v1/messages/batches`` takes the requests themselves, each a ``custom_id`` (here
the request's response-cache key: 64 hex digits, within the API's 64-character
``^[a-zA-Z0-9_-]+$``) and the ``params`` the Anthropic backend would send
(:meth:`AnthropicBackend.arguments`); ``GET /v1/messages/batches/{id}`` is polled until
its ``processing_status`` is ``ended``; then each line of ``results_url`` is
``succeeded`` (with the message), ``errored``, ``canceled`` or ``expired``. Documented at
https://docs.anthropic.com/en/docs/build-with-claude/batch-processing; one batch takes
up to 100,000 requests (and 256 MB).

Anthropic batches carry no metadata, so a batch whose create answer was lost (a kill
between the send and storing its id) is found by time and size: one created since the
send, holding as many requests as were sent, is adopted when it is the only one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.backends.anthropic import AnthropicBackend, read_message
from adaptlab.backends.batching.base import (
    BatchAPI,
    BatchError,
    LineResult,
    Snapshot,
    api_error,
)
from adaptlab.llm.types import ChatRequest, ChatResponse, LLMCallError

if TYPE_CHECKING:
    from adaptlab.backends.base import GenerativeBackend

#: Seconds of clock difference allowed between this machine and the provider when a
#: batch whose create answer was lost is looked for.
_CLOCK_SLACK_S = 120.0


def _api_error(exc: Exception, doing: str, batch_id: str | None = None) -> BatchError:
    import anthropic

    return api_error(
        anthropic,
        exc,
        doing,
        batch_id,
        key_hint="ANTHROPIC_API_KEY or api_key_env",
        not_found_fix="this endpoint has no Message Batches API: set evaluation.batch: "
        "false, or check base_url",
    )


def _snapshot(batch: Any) -> Snapshot:
    c = batch.request_counts
    total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
    return Snapshot(
        id=batch.id,
        status=batch.processing_status,
        ended=batch.processing_status == "ended",
        done=total - c.processing,
        total=total,
        raw=batch,
    )


class AnthropicBatchAPI(BatchAPI):
    """The Message Batches API of one Anthropic endpoint, for one ``llms:`` entry."""

    provider: ClassVar[str] = "anthropic"
    max_lines: ClassVar[int] = 100_000

    def __init__(self, backend: GenerativeBackend) -> None:
        super().__init__(backend)
        if not isinstance(backend, AnthropicBackend):
            raise TypeError("AnthropicBatchAPI needs an AnthropicBackend")
        self.chat = backend
        import anthropic

        self._anthropic = anthropic
        config = backend.config
        base_url = config.base_url
        if base_url is not None:  # as the backend: the client appends /v1 itself
            base_url = base_url.rstrip("/").removesuffix("/v1")
        self.client = anthropic.Anthropic(
            api_key=backend.api_key or "not-needed",
            base_url=base_url,
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )

    def close(self) -> None:
        self.client.close()

    def _params(self, request: ChatRequest) -> dict[str, Any]:
        args = self.chat.arguments(request)
        return {k: v for k, v in args.items() if not isinstance(v, self._anthropic.Omit)}

    def find(self, key: str, since: float, lines: int) -> Snapshot | None:
        found = []
        try:
            for batch in self.client.messages.batches.list(limit=100):
                if batch.created_at.timestamp() < since - _CLOCK_SLACK_S:
                    break  # listed newest first
                snap = _snapshot(batch)
                if snap.total == lines and batch.processing_status != "canceling":
                    found.append(snap)
        except Exception as exc:
            raise _api_error(exc, "listing message batches") from None
        return found[0] if len(found) == 1 else None

    def create(
        self, key: str, items: Sequence[tuple[str, ChatRequest]], file_id: str | None
    ) -> Snapshot:
        requests: Any = [{"custom_id": cid, "params": self._params(r)} for cid, r in items]
        try:
            batch = self.client.with_options(max_retries=0).messages.batches.create(
                requests=requests
            )
        except Exception as exc:
            raise _api_error(exc, "creating the message batch") from None
        return _snapshot(batch)

    def retrieve(self, batch_id: str) -> Snapshot:
        try:
            return _snapshot(self.client.messages.batches.retrieve(batch_id))
        except Exception as exc:
            raise _api_error(exc, f"looking up message batch {batch_id}", batch_id) from None

    def results(self, batch: Snapshot, requests: dict[str, ChatRequest]) -> Iterator[LineResult]:
        try:
            lines = list(self.client.messages.batches.results(batch.id))
        except Exception as exc:
            raise _api_error(exc, f"reading the results of batch {batch.id}", batch.id) from None
        for line in lines:
            cid, result = line.custom_id, line.result
            if result.type == "succeeded":
                request = requests.get(cid)
                if request is None:
                    yield LineResult(cid, "errored", error="no request of this run has this id")
                    continue
                try:
                    text, usage, finish = read_message(result.message, request)
                except LLMCallError as exc:
                    yield LineResult(cid, "errored", error=str(exc))
                    continue
                answer = ChatResponse(text=text, usage=usage, latency_ms=0.0, finish_reason=finish)
                yield LineResult(cid, "succeeded", response=answer)
            elif result.type == "errored":
                err = result.error.error
                yield LineResult(cid, "errored", error=f"{err.type}: {err.message}")
            else:  # "canceled" or "expired"
                yield LineResult(cid, result.type)


__all__ = ["AnthropicBatchAPI"]
