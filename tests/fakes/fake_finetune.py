"""A fake OpenAI that fine-tunes: files, fine-tuning jobs and the tuned model's chat.

:class:`FakeFinetuneServer` is a :class:`~tests.fakes.fake_llm.FakeLLMServer`
(so chat completions, faults and usage work as documented there) that also serves,
with the shapes of the real API so the official ``openai`` client parses them:

* ``POST /v1/files`` (multipart, ``purpose=fine-tune``; every line must be a chat
  record ``{"messages": [...]}`` ending with an assistant message, else 400) and
  ``GET /v1/files/{id}``;
* ``POST /v1/fine_tuning/jobs``, ``GET /v1/fine_tuning/jobs`` (newest first,
  ``after``/``limit`` paging, ``metadata[k]=v`` filter), ``GET …/jobs/{id}``,
  ``GET …/jobs/{id}/events`` (newest first, as the real API lists them),
  ``GET …/jobs/{id}/checkpoints`` and ``POST …/jobs/{id}/cancel``.

A job moves by the clock: ``validating_files`` for ``validate_s``, ``queued`` for
``queue_s``, then ``running`` one step every ``step_s`` (steps = epochs ×
ceil(examples / batch size); ``"auto"`` is 3 epochs and batch size 1), with a
metrics event per step (``train_loss`` and, with a validation file, ``valid_loss``)
and a checkpoint per epoch. What happens then is the server's ``scenario`` (or the
job's when ``scenario`` is a callable of the create body):

``"succeed"``
    ``succeeded`` with ``fine_tuned_model = "ft:MODEL:adaptlab:SUFFIX:ID"`` and
    ``trained_tokens`` = epochs × the training file's tokens (words + 3 a message,
    the chat server's rule).
``"fail"``
    ``failed`` after half the steps, with ``error`` = :attr:`FakeFinetuneServer.error`.
``"hang"``
    stays ``running`` after its first step until cancelled.

A fine-tuned model "learned" its training file: asked about a user message it was
trained on, it answers that record's assistant message; asked anything else, the
most frequent one. Other models answer through ``responder`` as usual.

Inspection: :attr:`jobs_created` (create requests that made a job), :attr:`uploads`
(``(file id, time.time())`` per upload), :meth:`job` and :meth:`cancel`.
"""

from __future__ import annotations

import email.parser
import email.policy
import json
import math
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from tests.fakes.fake_llm import (
    ChatCall,
    FakeLLMServer,
    Responder,
    _Handler,
    _text_of,
    default_responder,
)

__all__ = ["FakeFinetuneServer", "FakeJob", "Scenario"]

Scenario = str  # "succeed", "fail" or "hang"
_TERMINAL = ("succeeded", "failed", "cancelled")
_DEFAULT_ERROR = {
    "code": "invalid_training_file",
    "message": "The job failed due to an invalid training file. (injected fault)",
    "param": "training_file",
}


def _record_tokens(record: Mapping[str, Any]) -> int:
    return sum(len(_text_of(m.get("content")).split()) + 3 for m in record["messages"])


@dataclass
class _File:
    id: str
    filename: str
    purpose: str
    data: bytes
    created_at: int
    records: list[dict[str, Any]]

    def body(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": len(self.data),
            "created_at": self.created_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
            "expires_at": None,
        }


@dataclass
class FakeJob:
    """One job and what has happened to it so far (advanced by :meth:`advance`)."""

    id: str
    body: dict[str, Any]  # the create request
    created: float  # time.time()
    scenario: Scenario
    total_steps: int
    epochs: int
    batch_size: int
    train_tokens: int
    has_validation: bool
    status: str = "validating_files"
    step: int = 0
    finished_at: int | None = None
    fine_tuned_model: str | None = None
    error: dict[str, Any] | None = None
    events: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    checkpoints: list[dict[str, Any]] = field(default_factory=list)

    def _event(self, message: str, data: Any = None, kind: str = "message") -> None:
        level = "error" if self.status == "failed" else "info"
        self.events.append(
            {
                "id": f"ftevent-{self.id[6:]}-{len(self.events):04d}",
                "object": "fine_tuning.job.event",
                "created_at": int(time.time()),
                "level": level,
                "message": message,
                "data": data,
                "type": kind,
            }
        )

    def advance(self, server: FakeFinetuneServer) -> None:
        """Bring the job to where the clock says it is."""
        if self.status in _TERMINAL:
            return
        elapsed = time.time() - self.created
        if self.status == "validating_files" and elapsed >= server.validate_s:
            self.status = "queued"
            self._event("Files validated, moving job to queued state")
        start = server.validate_s + server.queue_s
        if self.status == "queued" and elapsed >= start:
            self.status = "running"
            self._event("Fine-tuning job started")
        if self.status != "running":
            return
        due = min(self.total_steps, int((elapsed - start) / server.step_s))
        fail_at = max(1, self.total_steps // 2)
        steps_per_epoch = self.total_steps // self.epochs
        while self.step < due:
            if self.scenario == "hang" and self.step >= 1:
                return
            self.step += 1
            loss = round(2.0 / (1 + self.step), 4)
            data: dict[str, Any] = {
                "step": self.step,
                "train_loss": loss,
                "train_mean_token_accuracy": round(1 - loss / 2, 4),
                "total_steps": self.total_steps,
            }
            message = f"Step {self.step}/{self.total_steps}: training loss={loss:.4f}"
            if self.has_validation:
                data["valid_loss"] = round(loss * 1.1, 4)
                data["valid_mean_token_accuracy"] = round(1 - loss * 1.1 / 2, 4)
                message += f", validation loss={loss * 1.1:.4f}"
            self._event(message, data, "metrics")
            if self.step % steps_per_epoch == 0:
                self._checkpoint(data)
            if self.scenario == "fail" and self.step >= fail_at:
                self._finish("failed")
                self.error = dict(server.error)
                self._event(f"Fine-tuning job failed: {self.error['message']}")
                return
        if self.step >= self.total_steps:
            self._finish("succeeded")
            suffix = self.body.get("suffix") or ""
            self.fine_tuned_model = f"ft:{self.body['model']}:adaptlab:{suffix}:{self.id[6:14]}"
            self._event(f"New fine-tuned model created: {self.fine_tuned_model}")
            self._event("The job has successfully completed")

    def _checkpoint(self, metrics: dict[str, Any]) -> None:
        n = len(self.checkpoints) + 1
        self.checkpoints.append(
            {
                "id": f"ftckpt-{self.id[6:]}-{n}",
                "object": "fine_tuning.job.checkpoint",
                "created_at": int(time.time()),
                "fine_tuned_model_checkpoint": (
                    f"ft:{self.body['model']}:adaptlab::{self.id[6:14]}:ckpt-step-{self.step}"
                ),
                "fine_tuning_job_id": self.id,
                "step_number": self.step,
                "metrics": {k: v for k, v in metrics.items() if k != "total_steps"},
            }
        )

    def _finish(self, status: str) -> None:
        self.status = status
        self.finished_at = int(time.time())

    def cancel(self) -> None:
        self.status = "cancelled"
        self.finished_at = int(time.time())
        self._event("Fine-tuning job cancelled")

    @property
    def trained_tokens(self) -> int | None:
        return self.train_tokens * self.epochs if self.status == "succeeded" else None

    def to_api(self) -> dict[str, Any]:
        hp = (
            ((self.body.get("method") or {}).get("supervised") or {}).get("hyperparameters")
            or self.body.get("hyperparameters")
            or {}
        )
        lr = hp.get("learning_rate_multiplier", "auto")
        hyper = {
            "n_epochs": self.epochs,
            "batch_size": self.batch_size,
            "learning_rate_multiplier": 1.8 if lr == "auto" else lr,  # "auto" resolved
        }
        return {
            "id": self.id,
            "object": "fine_tuning.job",
            "created_at": int(self.created),
            "error": self.error,
            "fine_tuned_model": self.fine_tuned_model,
            "finished_at": self.finished_at,
            "hyperparameters": hyper,
            "model": self.body["model"],
            "organization_id": "org-adaptlab",
            "result_files": [],
            "seed": int(self.body.get("seed") or 42),
            "status": self.status,
            "trained_tokens": self.trained_tokens,
            "training_file": self.body["training_file"],
            "validation_file": self.body.get("validation_file"),
            "estimated_finish": None,
            "integrations": [],
            "metadata": self.body.get("metadata"),
            "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
            "user_provided_suffix": self.body.get("suffix"),
        }


def _page(items: list[dict[str, Any]], query: Mapping[str, str]) -> dict[str, Any]:
    """A cursor page over ``items`` (already in list order): ``after`` an id, ``limit``."""
    start = 0
    after = query.get("after")
    if after:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    limit = int(query.get("limit") or 20)
    chunk = items[start : start + limit]
    return {"object": "list", "data": chunk, "has_more": start + limit < len(items)}


class _FinetuneHandler(_Handler):
    server: Any

    def _owner(self) -> FakeFinetuneServer:
        owner = self.server.owner
        assert isinstance(owner, FakeFinetuneServer)
        return owner

    def _not_found(self, what: str) -> None:
        self._send_json(
            404,
            {
                "error": {
                    "message": f"No such {what}: '{self.path}'",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": None,
                }
            },
        )

    def _invalid(self, message: str, param: str | None = None, status: int = 400) -> None:
        self._send_json(
            status,
            {
                "error": {
                    "message": message,
                    "type": "invalid_request_error",
                    "param": param,
                    "code": None,
                }
            },
        )

    def _route(self) -> tuple[list[str], dict[str, str]] | None:
        parts = urlsplit(self.path)
        segments = [s for s in parts.path.split("/") if s]
        if segments[:1] == ["v1"]:
            segments = segments[1:]
        if segments[:1] == ["files"] or segments[:2] == ["fine_tuning", "jobs"]:
            return segments, dict(parse_qsl(parts.query, keep_blank_values=True))
        return None

    def do_GET(self) -> None:
        route = self._route()
        if route is None:
            super().do_GET()
            return
        segments, query = route
        owner = self._owner()
        with owner._lock:
            if segments[0] == "files":
                file = owner.files.get(segments[1]) if len(segments) == 2 else None
                if file is None:
                    self._not_found("file")
                else:
                    self._send_json(200, file.body())
                return
            rest = segments[2:]
            if not rest:
                self._send_json(200, _page(owner._list_jobs(query), query))
                return
            job = owner.jobs.get(rest[0])
            if job is None:
                self._not_found("job")
                return
            job.advance(owner)
            if len(rest) == 1:
                self._send_json(200, job.to_api())
            elif rest[1:] == ["events"]:
                self._send_json(200, _page(list(reversed(job.events)), query))
            elif rest[1:] == ["checkpoints"]:
                self._send_json(200, _page(list(reversed(job.checkpoints)), query))
            else:
                self._not_found("route")

    def do_POST(self) -> None:
        route = self._route()
        if route is None:
            super().do_POST()
            return
        segments, _ = route
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        owner = self._owner()
        if owner.require_key and not self.headers.get("Authorization", "").strip():
            self._invalid("no API key was sent", status=401)
            return
        if segments == ["files"]:
            self._upload(raw)
            return
        with owner._lock:
            rest = segments[2:]
            if not rest:
                self._create(raw)
            elif len(rest) == 2 and rest[1] == "cancel":
                job = owner.jobs.get(rest[0])
                if job is None:
                    self._not_found("job")
                    return
                job.advance(owner)
                if job.status in _TERMINAL:
                    self._invalid(f"Job has already {job.status}; it cannot be cancelled.")
                    return
                job.cancel()
                self._send_json(200, job.to_api())
            else:
                self._not_found("route")

    def _upload(self, raw: bytes) -> None:
        head = f"Content-Type: {self.headers.get('Content-Type', '')}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + raw)
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts() if message.is_multipart() else []:
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True)
            if isinstance(name, str) and isinstance(payload, bytes):
                fields[name] = (part.get_filename(), payload)
        if "file" not in fields or "purpose" not in fields:
            self._invalid("multipart body needs 'file' and 'purpose'", "file")
            return
        filename, data = fields["file"]
        purpose = fields["purpose"][1].decode()
        records: list[dict[str, Any]] = []
        if purpose == "fine-tune":
            for n, line in enumerate(data.decode("utf-8", "replace").splitlines(), 1):
                if not line.strip():
                    continue
                try:
                    record = json.loads(line)
                except ValueError:
                    self._invalid(f"Invalid file format: line {n} is not JSON", "file")
                    return
                messages = record.get("messages") if isinstance(record, dict) else None
                if (
                    not isinstance(messages, list)
                    or not messages
                    or not all(isinstance(m, dict) and "role" in m for m in messages)
                    or messages[-1].get("role") != "assistant"
                ):
                    self._invalid(
                        f"Invalid file format: line {n} must hold 'messages' ending with an "
                        "assistant message",
                        "file",
                    )
                    return
                records.append(record)
            if not records:
                self._invalid("Invalid file format: the file holds no examples", "file")
                return
        owner = self._owner()
        with owner._lock:
            file = _File(
                id=f"file-{uuid.uuid4().hex[:24]}",
                filename=filename or "upload.jsonl",
                purpose=purpose,
                data=data,
                created_at=int(time.time()),
                records=records,
            )
            owner.files[file.id] = file
            owner.uploads.append((file.id, time.time()))
        self._send_json(200, file.body())

    def _create(self, raw: bytes) -> None:
        owner = self._owner()
        try:
            body = json.loads(raw or b"null")
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("model"), str):
            self._invalid("the request needs 'model' and 'training_file'", "model")
            return
        train = owner.files.get(str(body.get("training_file")))
        if train is None or train.purpose != "fine-tune":
            self._invalid("invalid training_file: no such file", "training_file")
            return
        val_id = body.get("validation_file")
        if val_id is not None and val_id not in owner.files:
            self._invalid("invalid validation_file: no such file", "validation_file")
            return
        meta = body.get("metadata")
        if meta is not None and not (
            isinstance(meta, dict) and all(isinstance(v, str) for v in meta.values())
        ):
            self._invalid("metadata values must be strings", "metadata")
            return
        hp = (
            ((body.get("method") or {}).get("supervised") or {}).get("hyperparameters")
            or body.get("hyperparameters")
            or {}
        )
        epochs = hp.get("n_epochs", "auto")
        epochs = 3 if epochs == "auto" else int(epochs)
        batch = hp.get("batch_size", "auto")
        batch = 1 if batch == "auto" else int(batch)
        scenario = owner.scenario(body) if callable(owner.scenario) else owner.scenario
        job = FakeJob(
            id=f"ftjob-{uuid.uuid4().hex[:24]}",
            body=body,
            created=time.time(),
            scenario=scenario,
            total_steps=epochs * math.ceil(len(train.records) / batch),
            epochs=epochs,
            batch_size=batch,
            train_tokens=sum(_record_tokens(r) for r in train.records),
            has_validation=val_id is not None,
        )
        job._event(f"Created fine-tuning job: {job.id}")
        job._event(f"Validating training file: {train.id}")
        owner.jobs[job.id] = job
        owner.jobs_created += 1
        if owner.lose_create_answers > 0:
            # The job exists, the client never hears of it (a crash, a cut connection).
            owner.lose_create_answers -= 1
            self._drop()
            return
        self._send_json(200, job.to_api())


class FakeFinetuneServer(FakeLLMServer):
    """:class:`FakeLLMServer` plus the files and fine-tuning-jobs endpoints.

    ``scenario`` is ``"succeed"``, ``"fail"`` or ``"hang"``, or a callable of the
    create request's body returning one; ``error`` is the error object a failed job
    carries; ``validate_s``, ``queue_s`` and ``step_s`` are the seconds a job spends
    validating, queued, and per training step; the first ``lose_create_answers``
    create requests make their job but close the connection without an answer.
    """

    handler_class = _FinetuneHandler

    def __init__(
        self,
        responder: Responder | None = None,
        *,
        scenario: Scenario | Callable[[dict[str, Any]], Scenario] = "succeed",
        error: Mapping[str, Any] | None = None,
        validate_s: float = 0.02,
        queue_s: float = 0.02,
        step_s: float = 0.01,
        lose_create_answers: int = 0,
        **kw: Any,
    ) -> None:
        self._base_responder = responder or default_responder
        super().__init__(self._respond, **kw)
        self.scenario = scenario
        self.error = dict(error or _DEFAULT_ERROR)
        self.validate_s, self.queue_s, self.step_s = validate_s, queue_s, step_s
        self.files: dict[str, _File] = {}
        self.jobs: dict[str, FakeJob] = {}
        self.jobs_created = 0
        self.lose_create_answers = lose_create_answers
        self.uploads: list[tuple[str, float]] = []

    def _list_jobs(self, query: Mapping[str, str]) -> list[dict[str, Any]]:
        wanted = {k[9:-1]: v for k, v in query.items() if k.startswith("metadata[")}
        out = []
        for job in sorted(self.jobs.values(), key=lambda j: j.created, reverse=True):
            job.advance(self)
            meta = job.body.get("metadata") or {}
            if all(meta.get(k) == v for k, v in wanted.items()):
                out.append(job.to_api())
        return out

    def job(self, job_id: str | None = None) -> FakeJob:
        """One job (the only or newest one when no id is given), brought up to date."""
        with self._lock:
            if job_id is None:
                job = max(self.jobs.values(), key=lambda j: j.created)
            else:
                job = self.jobs[job_id]
            job.advance(self)
            return job

    def cancel(self, job_id: str) -> None:
        """Cancel a job as the provider's dashboard would."""
        with self._lock:
            job = self.jobs[job_id]
            job.advance(self)
            if job.status not in _TERMINAL:
                job.cancel()

    def _learned(self, model: str) -> dict[str, str] | None:
        """user message -> assistant answer of the job that made ``model``, if any."""
        with self._lock:
            for job in self.jobs.values():
                if job.fine_tuned_model == model:
                    file = self.files[job.body["training_file"]]
                    table: dict[str, str] = {}
                    for record in file.records:
                        users = [m for m in record["messages"] if m.get("role") == "user"]
                        if users:
                            key = _text_of(users[-1].get("content"))
                            table[key] = _text_of(record["messages"][-1].get("content"))
                    return table
        return None

    def _respond(self, call: ChatCall) -> str:
        table = self._learned(call.model) if call.model.startswith("ft:") else None
        if table is None:
            return self._base_responder(call)
        if call.user_text in table:
            return table[call.user_text]
        return Counter(table.values()).most_common(1)[0][0] if table else ""
