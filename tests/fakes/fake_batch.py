"""A fake OpenAI and Anthropic that answer in batches: files, ``/v1/batches`` and
``/v1/messages/batches``, with the documented shapes, so the official clients parse them.

:class:`FakeBatchServer` is a :class:`~tests.fakes.fake_finetune.FakeFinetuneServer`
(chat, faults, files and fine-tuning work as documented there) that also serves:

* OpenAI (https://platform.openai.com/docs/api-reference/batch): ``POST /v1/files``
  with ``purpose=batch``, ``GET /v1/files`` (``purpose`` filter), ``GET
  /v1/files/{id}/content``; ``POST /v1/batches`` (``input_file_id``, ``endpoint``,
  ``completion_window: 24h``, ``metadata``), ``GET /v1/batches`` (newest first),
  ``GET /v1/batches/{id}`` and ``POST /v1/batches/{id}/cancel``. A batch is
  ``validating`` when made, ``in_progress`` from its first look, and ends
  ``completed`` (``output_file_id`` for the answered lines, ``error_file_id`` for the
  rest), ``failed`` (a file that is not a batch file: ``errors`` name the line),
  ``expired`` or ``cancelled``; ``request_counts`` count ``completed``/``failed``/``total``.
* Anthropic (https://docs.anthropic.com/en/api/creating-message-batches): ``POST
  /v1/messages/batches`` (``requests`` of ``custom_id`` + ``params``), ``GET
  /v1/messages/batches`` (newest first), ``GET …/{id}`` (``processing_status``
  ``in_progress`` → ``ended``, ``request_counts`` by outcome, ``results_url``) and
  ``GET …/{id}/results`` (JSONL: ``succeeded`` with the message, ``errored``,
  ``canceled``, ``expired``).

Every line is answered as the chat endpoints would answer it (same responder, same
token counts), and recorded in :attr:`calls` like a chat request. What happens is set
on the server: ``complete_after`` looks at a batch before it ends (0: it ends at the
first look); ``hold = True`` keeps every batch in progress until set back;
``line_fault(custom_id, body)`` returns ``"expired"``, ``"errored"`` or ``"canceled"``
for a line that should end so (None: answered); ``scenario`` "expire" ends a batch
``expired`` with only its first half answered.

Inspection: :attr:`batches_created`, :attr:`uploads` (every file uploaded, any
purpose), :attr:`batch_polls`, :meth:`batch_uploads` (uploads with purpose batch).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.fake_finetune import FakeFinetuneServer, _File, _FinetuneHandler
from tests.fakes.fake_llm import _answer, honour_schema

__all__ = ["FakeBatch", "FakeBatchServer", "LineFault"]

LineFault = Callable[[str, dict[str, Any]], str | None]
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
_OPENAI_ENDED = ("completed", "failed", "expired", "cancelled")
_NOT_RUN = {
    "expired": (
        "batch_expired",
        "This request could not be executed before the completion window expired.",
    ),
    "canceled": (
        "batch_cancelled",
        "This request was not executed because the batch was cancelled.",
    ),
}


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class FakeBatch:
    """One batch: its lines (custom_id, request body), where it stands, its outcomes."""

    id: str
    api: str  # "openai" or "anthropic"
    created: float
    lines: list[tuple[str, dict[str, Any]]]
    input_file_id: str | None = None
    metadata: dict[str, str] | None = None
    status: str = "validating"  # OpenAI's words; Anthropic's are derived
    looks: int = 0
    ended_at: float | None = None
    # custom_id -> ("succeeded", chat body) or (outcome, error message or None)
    outcomes: dict[str, tuple[str, Any]] = field(default_factory=dict)
    errors: list[dict[str, Any]] = field(default_factory=list)
    output_file_id: str | None = None
    error_file_id: str | None = None

    @property
    def ended(self) -> bool:
        return self.status in _OPENAI_ENDED

    def counts(self) -> dict[str, int]:
        return dict(Counter(o for o, _ in self.outcomes.values()))

    # ------------------------------------------------------------ shapes

    def openai(self) -> dict[str, Any]:
        done = self.counts()
        total = len(self.lines)
        completed = done.get("succeeded", 0)
        failed = sum(n for o, n in done.items() if o != "succeeded")
        if not self.ended and self.status == "in_progress":
            completed = min(total, self.looks - 1)  # in progress: a line a look
        stamp = int(self.ended_at) if self.ended_at else None
        return {
            "id": self.id,
            "object": "batch",
            "endpoint": "/v1/chat/completions",
            "errors": {"object": "list", "data": self.errors} if self.errors else None,
            "input_file_id": self.input_file_id,
            "completion_window": "24h",
            "status": self.status,
            "output_file_id": self.output_file_id,
            "error_file_id": self.error_file_id,
            "created_at": int(self.created),
            "in_progress_at": int(self.created) if self.looks else None,
            "expires_at": int(self.created) + 86400,
            "finalizing_at": stamp if self.status == "completed" else None,
            "completed_at": stamp if self.status == "completed" else None,
            "failed_at": stamp if self.status == "failed" else None,
            "expired_at": stamp if self.status == "expired" else None,
            "cancelling_at": None,
            "cancelled_at": stamp if self.status == "cancelled" else None,
            "request_counts": {"total": total, "completed": completed, "failed": failed},
            "metadata": self.metadata,
        }

    def anthropic(self, root_url: str) -> dict[str, Any]:
        done = self.counts()
        processing = 0 if self.ended else len(self.lines)
        return {
            "id": self.id,
            "type": "message_batch",
            "processing_status": "ended" if self.ended else "in_progress",
            "request_counts": {
                "processing": processing,
                "succeeded": done.get("succeeded", 0),
                "errored": done.get("errored", 0),
                "canceled": done.get("canceled", 0),
                "expired": done.get("expired", 0),
            },
            "ended_at": _iso(self.ended_at) if self.ended_at else None,
            "created_at": _iso(self.created),
            "expires_at": _iso(self.created + 86400),
            "archived_at": None,
            "cancel_initiated_at": None,
            "results_url": f"{root_url}/v1/messages/batches/{self.id}/results"
            if self.ended
            else None,
        }


class _BatchHandler(_FinetuneHandler):
    server: Any

    def _bowner(self) -> FakeBatchServer:
        owner = self.server.owner
        assert isinstance(owner, FakeBatchServer)
        return owner

    def _segments(self) -> tuple[list[str], dict[str, str]]:
        parts = urlsplit(self.path)
        segments = [s for s in parts.path.split("/") if s]
        if segments[:1] == ["v1"]:
            segments = segments[1:]
        return segments, dict(parse_qsl(parts.query, keep_blank_values=True))

    def _anthropic_error(
        self, status: int, message: str, kind: str = "invalid_request_error"
    ) -> None:
        self._send_json(status, {"type": "error", "error": {"type": kind, "message": message}})

    # ------------------------------------------------------------ routing

    def do_GET(self) -> None:
        segments, query = self._segments()
        owner = self._bowner()
        if segments == ["files"]:
            with owner._lock:
                files = [
                    f.body()
                    for f in sorted(owner.files.values(), key=lambda f: f.created_at, reverse=True)
                    if not query.get("purpose") or f.purpose == query["purpose"]
                ]
            self._send_json(200, {"object": "list", "data": files, "has_more": False})
            return
        if len(segments) == 3 and segments[0] == "files" and segments[2] == "content":
            with owner._lock:
                file = owner.files.get(segments[1])
            if file is None:
                self._not_found("file")
            else:
                self._send_bytes(200, file.data, "application/octet-stream")
            return
        if segments[:1] == ["batches"]:
            self._openai_get(segments[1:])
            return
        if segments[:2] == ["messages", "batches"]:
            self._anthropic_get(segments[2:])
            return
        super().do_GET()

    def do_POST(self) -> None:
        segments, _ = self._segments()
        if segments[:1] == ["batches"] or segments[:2] == ["messages", "batches"]:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            try:
                body = json.loads(raw or b"null")
            except ValueError:
                body = None
            if segments[:1] == ["batches"]:
                self._openai_post(segments[1:], body)
            else:
                self._anthropic_post(segments[2:], body)
            return
        super().do_POST()

    # ------------------------------------------------------------ OpenAI

    def _openai_post(self, rest: list[str], body: Any) -> None:
        owner = self._bowner()
        if len(rest) == 2 and rest[1] == "cancel":
            with owner._lock:
                batch = owner.batches.get(rest[0])
                if batch is None:
                    self._not_found("batch")
                    return
                if not batch.ended:
                    owner._finish(batch, self, cancel=True)
                self._send_json(200, batch.openai())
            return
        if rest or not isinstance(body, dict):
            self._not_found("route")
            return
        if body.get("completion_window") != "24h":
            self._invalid("completion_window must be '24h'", "completion_window")
            return
        if body.get("endpoint") != "/v1/chat/completions":
            self._invalid("this fake batches /v1/chat/completions only", "endpoint")
            return
        with owner._lock:
            file = owner.files.get(str(body.get("input_file_id")))
            if file is None or file.purpose != "batch":
                self._invalid("input_file_id: no such file with purpose 'batch'", "input_file_id")
                return
            lines, errors = _read_batch_file(file.data)
            batch = FakeBatch(
                id=f"batch_{uuid.uuid4().hex[:24]}",
                api="openai",
                created=time.time(),
                lines=lines,
                input_file_id=file.id,
                metadata=body.get("metadata"),
            )
            batch.errors = errors
            owner.batches[batch.id] = batch
            owner.batches_created += 1
        self._send_json(200, batch.openai())

    def _openai_get(self, rest: list[str]) -> None:
        owner = self._bowner()
        with owner._lock:
            if not rest:
                items = [
                    b.openai()
                    for b in sorted(owner.batches.values(), key=lambda b: b.created, reverse=True)
                    if b.api == "openai"
                ]
                self._send_json(200, {"object": "list", "data": items, "has_more": False})
                return
            batch = owner.batches.get(rest[0])
            if batch is None or batch.api != "openai" or len(rest) > 1:
                self._not_found("batch")
                return
            owner._look(batch, self)
            self._send_json(200, batch.openai())

    # ------------------------------------------------------------ Anthropic

    def _anthropic_post(self, rest: list[str], body: Any) -> None:
        owner = self._bowner()
        if rest or not isinstance(body, dict) or not isinstance(body.get("requests"), list):
            self._anthropic_error(400, "requests: Field required")
            return
        lines: list[tuple[str, dict[str, Any]]] = []
        seen: set[str] = set()
        for n, item in enumerate(body["requests"]):
            cid = item.get("custom_id") if isinstance(item, dict) else None
            params = item.get("params") if isinstance(item, dict) else None
            if not isinstance(cid, str) or not _CUSTOM_ID.match(cid):
                self._anthropic_error(
                    400,
                    f"requests.{n}.custom_id: String should match pattern "
                    "'^[a-zA-Z0-9_-]{1,64}$'",
                )
                return
            if cid in seen:
                self._anthropic_error(400, f"requests.{n}.custom_id: duplicate custom_id '{cid}'")
                return
            if not isinstance(params, dict) or not all(
                k in params for k in ("model", "max_tokens", "messages")
            ):
                self._anthropic_error(
                    400, f"requests.{n}.params: model, max_tokens and messages are required"
                )
                return
            seen.add(cid)
            lines.append((cid, params))
        with owner._lock:
            batch = FakeBatch(
                id=f"msgbatch_{uuid.uuid4().hex[:24]}",
                api="anthropic",
                created=time.time(),
                lines=lines,
            )
            owner.batches[batch.id] = batch
            owner.batches_created += 1
        self._send_json(200, batch.anthropic(owner.root_url))

    def _anthropic_get(self, rest: list[str]) -> None:
        owner = self._bowner()
        with owner._lock:
            if not rest:
                items = [
                    b.anthropic(owner.root_url)
                    for b in sorted(owner.batches.values(), key=lambda b: b.created, reverse=True)
                    if b.api == "anthropic"
                ]
                first = items[0]["id"] if items else None
                last = items[-1]["id"] if items else None
                self._send_json(
                    200, {"data": items, "has_more": False, "first_id": first, "last_id": last}
                )
                return
            batch = owner.batches.get(rest[0])
            if batch is None or batch.api != "anthropic":
                self._anthropic_error(404, f"message batch {rest[0]} not found", "not_found_error")
                return
            if rest[1:] == ["results"]:
                if not batch.ended:
                    self._anthropic_error(400, "the batch is still processing")
                    return
                self._send_bytes(200, _anthropic_results(batch), "application/binary")
                return
            owner._look(batch, self)
            self._send_json(200, batch.anthropic(owner.root_url))


def _read_batch_file(data: bytes) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    """The lines of an OpenAI batch input file, and the validation errors (as the API
    reports them: code, message, param, line) that fail the batch."""
    lines: list[tuple[str, dict[str, Any]]] = []
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for n, text in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
        if not text.strip():
            continue
        try:
            line = json.loads(text)
        except ValueError:
            errors.append(
                {
                    "code": "invalid_json_line",
                    "message": "This line is not parseable as valid JSON.",
                    "param": None,
                    "line": n,
                }
            )
            continue
        cid = line.get("custom_id") if isinstance(line, dict) else None
        body = line.get("body") if isinstance(line, dict) else None
        if not isinstance(cid, str) or cid in seen:
            errors.append(
                {
                    "code": "duplicate_custom_id" if cid in seen else "missing_required_parameter",
                    "message": "custom_id must be a unique string.",
                    "param": "custom_id",
                    "line": n,
                }
            )
            continue
        if line.get("method") != "POST" or line.get("url") != "/v1/chat/completions":
            errors.append(
                {
                    "code": "invalid_url",
                    "message": "The URL provided for this request does not match the "
                    "batch endpoint.",
                    "param": "url",
                    "line": n,
                }
            )
            continue
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            errors.append(
                {
                    "code": "missing_required_parameter",
                    "message": "body.model is required.",
                    "param": "body",
                    "line": n,
                }
            )
            continue
        seen.add(cid)
        lines.append((cid, body))
    return lines, errors


def _anthropic_results(batch: FakeBatch) -> bytes:
    out = []
    for cid, _ in batch.lines:
        outcome, detail = batch.outcomes[cid]
        if outcome == "succeeded":
            result: dict[str, Any] = {"type": "succeeded", "message": detail}
        elif outcome == "errored":
            result = {
                "type": "errored",
                "error": {
                    "type": "error",
                    "error": {"type": "invalid_request_error", "message": detail},
                },
            }
        else:
            result = {"type": outcome}
        out.append(json.dumps({"custom_id": cid, "result": result}))
    return ("\n".join(out) + "\n").encode()


class FakeBatchServer(FakeFinetuneServer):
    """:class:`FakeFinetuneServer` plus the OpenAI and Anthropic batch endpoints (see the
    module docstring for ``complete_after``, ``hold``, ``line_fault`` and ``scenario``)."""

    handler_class = _BatchHandler

    def __init__(
        self,
        *args: Any,
        complete_after: int = 0,
        hold: bool = False,
        line_fault: LineFault | None = None,
        scenario: str = "complete",
        **kw: Any,
    ) -> None:
        super().__init__(*args, **kw)
        self.complete_after = complete_after
        self.hold = hold
        self.line_fault = line_fault
        self.batch_scenario = scenario
        self.batches: dict[str, FakeBatch] = {}
        self.batches_created = 0
        self.batch_polls = 0

    def batch_uploads(self) -> list[str]:
        """Ids of the files uploaded with purpose ``batch``, in upload order."""
        with self._lock:
            return [fid for fid, _ in self.uploads if self.files[fid].purpose == "batch"]

    # ------------------------------------------------------------ used by the handler

    def _look(self, batch: FakeBatch, handler: _BatchHandler) -> None:
        """One retrieve: the batch moves on (validating -> in_progress -> ended)."""
        self.batch_polls += 1
        if batch.ended:
            return
        batch.looks += 1
        if batch.errors:
            batch.status = "failed"
            batch.ended_at = time.time()
            return
        batch.status = "in_progress"
        if self.hold or batch.looks <= self.complete_after:
            return
        self._finish(batch, handler)

    def _finish(self, batch: FakeBatch, handler: _BatchHandler, cancel: bool = False) -> None:
        n = len(batch.lines)
        for i, (cid, body) in enumerate(batch.lines):
            fault = (
                "canceled" if cancel else self.line_fault(cid, body) if self.line_fault else None
            )
            if fault is None and self.batch_scenario == "expire" and i >= n // 2:
                fault = "expired"
            if fault is None:
                batch.outcomes[cid] = ("succeeded", self._answer_line(batch, body, handler))
            elif fault == "errored":
                batch.outcomes[cid] = ("errored", "Invalid request (injected fault).")
            elif fault in ("expired", "canceled"):
                batch.outcomes[cid] = (fault, None)
            else:
                raise ValueError(f"unknown line fault {fault!r}: expired, errored or canceled")
        batch.status = (
            "cancelled" if cancel else "expired" if self.batch_scenario == "expire" else "completed"
        )
        batch.ended_at = time.time()
        if batch.api == "openai":
            self._openai_files(batch)

    def _answer_line(self, batch: FakeBatch, body: dict[str, Any], handler: _BatchHandler) -> Any:
        path = "/v1/chat/completions" if batch.api == "openai" else "/v1/messages"
        call = self._record(batch.api, path, body, {"x-batch-id": batch.id})
        # As the chat endpoints answer it (a structured request gets its schema's JSON).
        answer = _answer(call, honour_schema(call, self.responder(call)))
        if batch.api == "openai":
            return handler._openai_body(call, answer)
        return handler._anthropic_body(call, answer)

    def _openai_files(self, batch: FakeBatch) -> None:
        output, errors = [], []
        for cid, _ in batch.lines:
            outcome, detail = batch.outcomes[cid]
            rid = f"batch_req_{uuid.uuid4().hex[:24]}"
            if outcome == "succeeded":
                response = {"status_code": 200, "request_id": rid, "body": detail}
                output.append({"id": rid, "custom_id": cid, "response": response, "error": None})
            elif outcome == "errored":
                body = {
                    "error": {
                        "message": detail,
                        "type": "invalid_request_error",
                        "param": None,
                        "code": None,
                    }
                }
                response = {"status_code": 400, "request_id": rid, "body": body}
                errors.append({"id": rid, "custom_id": cid, "response": response, "error": None})
            else:
                code, message = _NOT_RUN[outcome]
                errors.append(
                    {
                        "id": rid,
                        "custom_id": cid,
                        "response": None,
                        "error": {"code": code, "message": message},
                    }
                )
        for rows, attr in ((output, "output_file_id"), (errors, "error_file_id")):
            if not rows:
                continue
            data = ("".join(json.dumps(r) + "\n" for r in rows)).encode()
            file = _File(
                id=f"file-{uuid.uuid4().hex[:24]}",
                filename=f"{batch.id}_{attr.split('_')[0]}.jsonl",
                purpose="batch_output",
                data=data,
                created_at=int(time.time()),
                records=[],
            )
            self.files[file.id] = file
            setattr(batch, attr, file.id)
