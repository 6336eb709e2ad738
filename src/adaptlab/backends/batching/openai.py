"""OpenAI's Batch API through the official ``openai`` client (files + ``/v1/batches``).

A batch is a JSONL file of ``/v1/chat/completions`` requests, one a line with its
``custom_id`` (here the request's response-cache key) and the body the OpenAI backend
would send (:meth:`OpenAIBackend.payload`), uploaded with purpose ``batch``; then
``POST /v1/batches`` (``completion_window: 24h``, ``metadata.adaptlab_key``), polled
with ``GET /v1/batches/{id}`` until it is completed, failed, expired or cancelled. The
answers are in ``output_file_id``, the lines that failed or expired in
``error_file_id`` (both read with ``GET /v1/files/{id}/content``). Documented at
https://platform.openai.com/docs/guides/batch and
https://platform.openai.com/docs/api-reference/batch; one file takes up to 50,000
requests (and 200 MB).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.backends.batching.base import (
    METADATA_KEY,
    BatchAPI,
    BatchError,
    LineResult,
    Snapshot,
    api_error,
)
from adaptlab.backends.openai import OpenAIBackend, read_completion
from adaptlab.llm.keys import redact
from adaptlab.llm.types import ChatRequest, ChatResponse, LLMCallError

if TYPE_CHECKING:
    from adaptlab.backends.base import GenerativeBackend

#: Statuses after which a batch never changes.
ENDED = frozenset({"completed", "failed", "expired", "cancelled"})
#: Error codes of lines the batch did not run (the rest ran and failed).
_NOT_RUN = {"batch_expired": "expired", "batch_cancelled": "canceled"}
#: How far back the list of batches is searched for one whose create answer was lost.
_FIND_WINDOW_S = 3600.0


def _api_error(exc: Exception, doing: str, batch_id: str | None = None) -> BatchError:
    import openai

    return api_error(
        openai,
        exc,
        doing,
        batch_id,
        key_hint="OPENAI_API_KEY or api_key_env",
        not_found_fix="this endpoint has no batch API (an OpenAI-compatible server may "
        "serve chat only): set evaluation.batch: false for it, or check base_url",
    )


def _snapshot(batch: Any) -> Snapshot:
    counts = batch.request_counts
    done = (counts.completed + counts.failed) if counts is not None else 0
    total = counts.total if counts is not None else 0
    errors = None
    data = getattr(batch.errors, "data", None) if batch.errors is not None else None
    if data:
        errors = "; ".join(
            redact(f"{e.code or 'error'}: {e.message or ''}".strip())
            + (f" (line {e.line})" if e.line else "")
            for e in data[:5]
        )
    return Snapshot(
        id=batch.id,
        status=batch.status,
        ended=batch.status in ENDED,
        done=done,
        total=total,
        errors=errors,
        raw=batch,
    )


class OpenAIBatchAPI(BatchAPI):
    """The Batch API of one OpenAI (or compatible) endpoint, for one ``llms:`` entry."""

    provider: ClassVar[str] = "openai"
    max_lines: ClassVar[int] = 50_000

    def __init__(self, backend: GenerativeBackend) -> None:
        super().__init__(backend)
        if not isinstance(backend, OpenAIBackend):
            raise TypeError("OpenAIBatchAPI needs an OpenAIBackend")
        self.chat = backend
        import openai

        self._openai = openai
        config = backend.config
        # Polls and downloads are retried by the client; create is sent once (below).
        self.client = openai.OpenAI(
            api_key=backend.api_key or "not-needed",
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )

    def close(self) -> None:
        self.client.close()

    # ------------------------------------------------------------ the input file

    def _line(self, custom_id: str, request: ChatRequest) -> bytes:
        line = {
            "custom_id": custom_id,
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": self.chat.payload(request),
        }
        return json.dumps(line, ensure_ascii=False, sort_keys=True).encode() + b"\n"

    def find_upload(self, name: str) -> str | None:
        try:
            for f in self.client.files.list(purpose="batch"):
                if f.filename == name:
                    return str(f.id)
        except self._openai.NotFoundError:
            return None  # a server without a files list: nothing to find
        except Exception as exc:
            raise _api_error(exc, "listing uploaded batch files") from None
        return None

    def upload(self, name: str, items: Sequence[tuple[str, ChatRequest]]) -> str | None:
        data = b"".join(self._line(cid, request) for cid, request in items)
        try:
            file = self.client.files.create(file=(name, data, "application/jsonl"), purpose="batch")
        except Exception as exc:
            raise _api_error(exc, f"uploading the batch file {name}") from None
        return str(file.id)

    # ------------------------------------------------------------ batches

    def find(self, key: str, since: float, lines: int) -> Snapshot | None:
        try:
            for batch in self.client.batches.list(limit=100):
                if batch.created_at < since - _FIND_WINDOW_S:
                    break  # listed newest first: older ones were made before the send
                if (batch.metadata or {}).get(METADATA_KEY) == key and batch.status not in (
                    "failed",
                    "cancelled",
                ):
                    return _snapshot(batch)
        except Exception as exc:
            raise _api_error(exc, "listing batches") from None
        return None

    def create(
        self, key: str, items: Sequence[tuple[str, ChatRequest]], file_id: str | None
    ) -> Snapshot:
        oa = self._openai
        if file_id is None:
            raise BatchError("an OpenAI batch needs its uploaded file", code="batch-api")
        batches = self.client.with_options(max_retries=0).batches
        try:
            batch = batches.create(
                input_file_id=file_id,
                endpoint="/v1/chat/completions",
                completion_window="24h",
                metadata={METADATA_KEY: key},
            )
        except (oa.APIConnectionError, oa.InternalServerError) as exc:
            # The request may have arrived: only the list can tell.
            found = self.find(key, time.time(), len(items))
            if found is not None:
                return found
            raise _api_error(exc, "creating the batch") from None
        except Exception as exc:
            raise _api_error(exc, "creating the batch") from None
        return _snapshot(batch)

    def retrieve(self, batch_id: str) -> Snapshot:
        try:
            return _snapshot(self.client.batches.retrieve(batch_id))
        except Exception as exc:
            raise _api_error(exc, f"looking up batch {batch_id}", batch_id) from None

    # ------------------------------------------------------------ results

    def _content(self, file_id: str, batch_id: str) -> str:
        try:
            return str(self.client.files.content(file_id).text)
        except Exception as exc:
            raise _api_error(exc, f"reading file {file_id} of batch {batch_id}", batch_id) from None

    def results(self, batch: Snapshot, requests: dict[str, ChatRequest]) -> Iterator[LineResult]:
        raw = batch.raw
        for file_id in (raw.output_file_id, raw.error_file_id):
            if not file_id:
                continue
            for text in self._content(file_id, batch.id).splitlines():
                if not text.strip():
                    continue
                try:
                    line = json.loads(text)
                except ValueError:
                    continue  # not a line of the documented shape: its id is unknown
                if not isinstance(line, dict) or not isinstance(line.get("custom_id"), str):
                    continue
                yield self._read_line(line, requests.get(line["custom_id"]))

    def _read_line(self, line: dict[str, Any], request: ChatRequest | None) -> LineResult:
        cid = line["custom_id"]
        error = line.get("error")
        response = line.get("response")
        if isinstance(error, dict) and error:
            code = str(error.get("code") or "")
            message = f"{code}: {error.get('message') or ''}".strip(": ")
            return LineResult(cid, _NOT_RUN.get(code, "errored"), error=message)
        if not isinstance(response, dict):
            return LineResult(cid, "errored", error="the line holds neither response nor error")
        status = response.get("status_code")
        body = response.get("body")
        if status != 200 or not isinstance(body, dict):
            err = body.get("error") if isinstance(body, dict) else None
            detail = err.get("message") if isinstance(err, dict) else None
            return LineResult(cid, "errored", error=f"HTTP {status}: {detail or body}")
        if request is None:
            return LineResult(cid, "errored", error="no request of this run has this id")
        return self._answer(cid, body, request)

    def _answer(self, cid: str, body: dict[str, Any], request: ChatRequest) -> LineResult:
        try:
            completion = self._openai.types.chat.ChatCompletion.model_validate(body)
            text, usage, finish = read_completion(completion, self.chat.payload(request))
        except LLMCallError as exc:
            return LineResult(cid, "errored", error=str(exc))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
            return LineResult(cid, "errored", error=f"not a chat completion: {exc}"[:500])
        answer = ChatResponse(text=text, usage=usage, latency_ms=0.0, finish_reason=finish)
        return LineResult(cid, "succeeded", response=answer)


__all__ = ["ENDED", "OpenAIBatchAPI"]
