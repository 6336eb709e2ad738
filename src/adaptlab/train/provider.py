"""Provider fine-tuning jobs (OpenAI's fine-tuning API) through the official ``openai`` SDK.

Upload the training and validation JSONL, create the job (hyperparameters, seed,
suffix, metadata), follow its status and events, cancel it, read the fine-tuned
model id. :func:`run_job` does all of it and never pays for a job twice:

* the job id is written to a state file (atomically) the moment ``create`` returns,
  and a rerun re-attaches to the job it names, whatever its status;
* the window between sending ``create`` and storing its answer (a crash, ``kill -9``,
  a lost response) is closed by the job's ``metadata``: every job carries
  ``adaptlab_key`` (a hash of the model, both files and every setting, see
  :attr:`JobSpec.key`), and before creating one the jobs with that key are listed
  (``GET /fine_tuning/jobs?metadata[adaptlab_key]=…``). A job found there that is
  still running or has succeeded is adopted instead of creating another. OpenAI
  documents no idempotency key for this endpoint (the SDK sends none), so ``create``
  itself is sent with the SDK's retries off and, when its answer is lost, the list
  decides whether it arrived.

Failed and cancelled jobs are never adopted from the list (only re-attached through
the state file, which reports them), so a fresh start (``adaptlab run --force``,
which empties the candidate's folder) creates a new job.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from adaptlab.backends import llm_key_var
from adaptlab.core.errors import AdaptlabError, ConfigError
from adaptlab.core.files import write_text_atomically
from adaptlab.llm.keys import find_key, keys_file, redact

if TYPE_CHECKING:
    from openai import OpenAI
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent
    from openai.types.fine_tuning.jobs import FineTuningJobCheckpoint

    from adaptlab.config import LLMConfig

__all__ = [
    "ACTIVE",
    "TERMINAL",
    "JobError",
    "JobSpec",
    "JobWatcher",
    "OpenAIJobs",
    "load_state",
    "run_job",
    "save_state",
    "to_jsonl",
]

#: Statuses of a job that is still working (and billing) at the provider.
ACTIVE = frozenset({"validating_files", "queued", "running"})
#: Statuses after which a job never changes.
TERMINAL = frozenset({"succeeded", "failed", "cancelled"})
#: The metadata key every job adaptlab creates carries (see :attr:`JobSpec.key`).
METADATA_KEY = "adaptlab_key"

Auto = Literal["auto"]


class JobError(AdaptlabError):
    """A provider job failed, was cancelled, or the provider could not be reached."""


def to_jsonl(records: Sequence[Any]) -> bytes:
    """Chat records as JSONL bytes: one ``{"messages": [...]}`` object a line.

    ``records`` are lists of ``{"role", "content"}`` messages (what
    ``PromptStrategy.chat_records`` returns). Keys are sorted so the same records
    always give the same bytes (and so the same :attr:`JobSpec.key`).
    """
    lines = [json.dumps({"messages": r}, ensure_ascii=False, sort_keys=True) for r in records]
    return ("\n".join(lines) + "\n").encode("utf-8")


@dataclass(frozen=True)
class JobSpec:
    """One fine-tuning job as adaptlab would create it.

    ``model``: the provider's base model id; ``train``/``val``: the JSONL bytes
    (``val`` None sends no validation file); ``n_epochs`` (1-50), ``batch_size`` and
    ``learning_rate_multiplier``: a value or "auto" (the provider picks);
    ``suffix``: up to 64 characters in the tuned model's name; ``seed``: the job's seed
    (None lets the provider pick one).
    """

    model: str
    train: bytes
    val: bytes | None = None
    n_epochs: int | Auto = "auto"
    batch_size: int | Auto = "auto"
    learning_rate_multiplier: float | Auto = "auto"
    suffix: str | None = None
    seed: int | None = None

    @property
    def hyperparameters(self) -> dict[str, Any]:
        return {
            "n_epochs": self.n_epochs,
            "batch_size": self.batch_size,
            "learning_rate_multiplier": self.learning_rate_multiplier,
        }

    @property
    def key(self) -> str:
        """32 hex digits of sha256 over everything the job depends on.

        Two specs with the same key would train the same model, so a job carrying it
        (in ``metadata.adaptlab_key``) can stand in for creating another.
        """
        blob = json.dumps(
            {
                "model": self.model,
                "train": hashlib.sha256(self.train).hexdigest(),
                "val": hashlib.sha256(self.val).hexdigest() if self.val is not None else None,
                "hyperparameters": self.hyperparameters,
                "suffix": self.suffix,
                "seed": self.seed,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:32]


def load_state(path: Path) -> dict[str, Any]:
    """The state file's mapping (empty when absent); a damaged file is an error."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise JobError(
            "the provider job's state file is damaged",
            file=path,
            fix="look up the job with 'adaptlab jobs list'; remove the file to start over "
            "(a job still running at the provider is found again by its metadata)",
            code="job-state",
        )
    return data


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``state`` as JSON so a crash leaves the old file or the new one, never half."""

    write_text_atomically(path, json.dumps(state, indent=2, sort_keys=True))


class JobWatcher:
    """What :meth:`OpenAIJobs.follow` reports; every method does nothing here.

    ``attached(job, created)`` once (``created`` False: a rerun found it);
    ``event(event)`` per new event, oldest first; ``status(job)`` after every poll.
    """

    def attached(self, job: FineTuningJob, created: bool) -> None:
        """The job this run follows."""

    def event(self, event: FineTuningJobEvent) -> None:
        """One event the provider logged (``type`` "metrics" carries ``data.step``…)."""

    def status(self, job: FineTuningJob) -> None:
        """The job as the last poll found it."""


def _api_error(exc: Exception, doing: str, *, job_id: str | None = None) -> JobError:
    """An SDK exception as a JobError that says what was being done and what to check."""
    import openai

    msg = redact(f"{type(exc).__name__}: {exc}")
    running = (
        f"; job {job_id} keeps running at the provider and a rerun re-attaches to it"
        if job_id
        else ""
    )
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        fix = (
            "check the key (OPENAI_API_KEY or api_key_env) and base_url of the candidate's "
            "llm; a server other than the provider's own gets a key only where the keys "
            "file binds it ('send: {OPENAI_API_KEY: [https://HOST:PORT]}')"
        )
    elif isinstance(exc, openai.NotFoundError):
        fix = (
            "the provider does not know it: check base_url and that the key belongs to the "
            "organisation and project that made it; 'adaptlab run --force -c CANDIDATE' "
            "starts over"
        )
    elif isinstance(exc, openai.APIConnectionError):
        fix = f"check the network and base_url, then run again{running}"
    elif isinstance(exc, openai.APIStatusError) and exc.status_code < 500:
        fix = f"the provider's message says what it refused{running}"
    else:
        fix = f"the provider had a problem; run again later{running}"
    return JobError(f"{doing} failed: {msg}", fix=fix, code="provider-job")


@dataclass
class OpenAIJobs:
    """Files and fine-tuning jobs on one OpenAI (or compatible) endpoint.

    ``client`` is an ``openai.OpenAI``; ``poll_s`` the seconds between polls while
    following a job; ``sleep`` is what waits them (tests may speed it up).
    """

    client: OpenAI
    poll_s: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep)

    @classmethod
    def for_llm(cls, config: LLMConfig, *, poll_s: float = 10.0) -> OpenAIJobs:
        """A client for an ``llms:`` entry: its base_url, key, timeout and retries.

        The key is the one :func:`adaptlab.backends.llm_key_var` lets go to this
        endpoint (the variable, then the keys file), as for :func:`load_llm`; raises
        ConfigError for an ``api_key_env`` the keys file does not bind to ``base_url``,
        and when no key is set and no base_url is.
        """
        import openai

        if config.backend != "openai":
            raise ConfigError(
                f"provider fine-tuning needs an OpenAI model; '{config.name}' uses backend "
                f"'{config.backend}'",
                fix="point the candidate's llm at an entry with backend: openai",
            )
        var = llm_key_var(config)
        key = find_key(var) if var else None
        if key is None and config.base_url is None:
            raise ConfigError(
                f"no API key for openai model '{config.name}'",
                fix=f"export {var}=... or add '{var}: ...' to the keys file ({keys_file()})",
            )
        client = openai.OpenAI(
            # Never empty (the client refuses that), so never read from the environment.
            api_key=key or "not-needed",
            base_url=config.base_url,
            timeout=config.timeout_s,
            max_retries=config.max_retries,
        )
        return cls(client, poll_s=poll_s)

    # ------------------------------------------------------------ files

    def upload(self, data: bytes, filename: str) -> str:
        """Upload JSONL with purpose ``fine-tune``; returns the file id."""
        try:
            file = self.client.files.create(
                file=(filename, data, "application/jsonl"), purpose="fine-tune"
            )
        except Exception as exc:
            raise _api_error(exc, f"uploading {filename}") from None
        return file.id

    def file_exists(self, file_id: str) -> bool:
        """Whether the provider still holds this file (an upload a rerun may reuse)."""
        import openai

        try:
            self.client.files.retrieve(file_id)
        except openai.NotFoundError:
            return False
        except Exception as exc:
            raise _api_error(exc, f"looking up file {file_id}") from None
        return True

    # ------------------------------------------------------------ jobs

    def find(self, key: str) -> FineTuningJob | None:
        """The newest job carrying ``metadata.adaptlab_key == key`` that is running or
        has succeeded; None when there is none."""
        try:
            page = self.client.fine_tuning.jobs.list(metadata={METADATA_KEY: key}, limit=100)
            jobs = list(page)
        except Exception as exc:
            raise _api_error(exc, "listing fine-tuning jobs") from None
        # Checked here too: a server that ignores the filter lists every job.
        mine = [
            j
            for j in jobs
            if (j.metadata or {}).get(METADATA_KEY) == key
            and j.status not in ("failed", "cancelled")
        ]
        return max(mine, key=lambda j: j.created_at) if mine else None

    def create(self, spec: JobSpec, training_file: str, validation_file: str | None) -> Any:
        """Create the job with the SDK's retries off (see the module docstring); a lost
        answer is looked for with :meth:`find` before this gives up."""
        import openai

        jobs = self.client.with_options(max_retries=0).fine_tuning.jobs
        kwargs: dict[str, Any] = {
            "model": spec.model,
            "training_file": training_file,
            "method": {
                "type": "supervised",
                "supervised": {"hyperparameters": spec.hyperparameters},
            },
            "metadata": {METADATA_KEY: spec.key},
        }
        if validation_file is not None:
            kwargs["validation_file"] = validation_file
        if spec.suffix:
            kwargs["suffix"] = spec.suffix
        if spec.seed is not None:
            kwargs["seed"] = spec.seed
        try:
            return jobs.create(**kwargs)
        except (openai.APIConnectionError, openai.InternalServerError) as exc:
            # The request may have arrived: only the list can tell.
            found = self.find(spec.key)
            if found is not None:
                return found
            raise _api_error(exc, "creating the fine-tuning job") from None
        except Exception as exc:
            raise _api_error(exc, "creating the fine-tuning job") from None

    def retrieve(self, job_id: str) -> FineTuningJob:
        try:
            return self.client.fine_tuning.jobs.retrieve(job_id)
        except Exception as exc:
            raise _api_error(exc, f"looking up job {job_id}", job_id=job_id) from None

    def cancel(self, job_id: str) -> FineTuningJob:
        """Cancel a job; one that already ended is returned as it is."""
        job = self.retrieve(job_id)
        if job.status in TERMINAL:
            return job
        try:
            return self.client.fine_tuning.jobs.cancel(job_id)
        except Exception as exc:
            raise _api_error(exc, f"cancelling job {job_id}") from None

    def checkpoints(self, job_id: str) -> list[FineTuningJobCheckpoint]:
        """The job's checkpoints (one per epoch at OpenAI, the last few kept), oldest first."""
        try:
            items = list(self.client.fine_tuning.jobs.checkpoints.list(job_id, limit=100))
        except Exception as exc:
            raise _api_error(exc, f"listing the checkpoints of job {job_id}") from None
        return sorted(items, key=lambda c: c.step_number)

    def new_events(self, job_id: str, seen: set[str]) -> list[FineTuningJobEvent]:
        """Events not in ``seen``, oldest first; their ids are added to ``seen``.

        The API lists events newest first and ``after`` pages towards older ones, so
        pages are read until an event already seen (or the first event) is reached.
        """
        fresh: list[FineTuningJobEvent] = []
        after: str | None = None
        try:
            while True:
                kw: dict[str, Any] = {"limit": 100}
                if after is not None:
                    kw["after"] = after
                page = self.client.fine_tuning.jobs.list_events(job_id, **kw)
                stop = False
                for event in page.data:
                    if event.id in seen:
                        stop = True
                        break
                    fresh.append(event)
                if stop or not page.has_more or not page.data:
                    break
                after = page.data[-1].id
        except Exception as exc:
            raise _api_error(exc, f"reading the events of job {job_id}", job_id=job_id) from None
        fresh.reverse()
        seen.update(e.id for e in fresh)
        return fresh

    def follow(self, job_id: str, watcher: JobWatcher | None = None) -> FineTuningJob:
        """Poll every ``poll_s`` until the job ends; returns it as it ended.

        Reports every event (from the job's first, so a re-attached run sees the whole
        history) and every status to ``watcher``. Ctrl-C stops following, not the job.
        """
        watcher = watcher or JobWatcher()
        seen: set[str] = set()
        while True:
            job = self.retrieve(job_id)
            for event in self.new_events(job_id, seen):
                watcher.event(event)
            watcher.status(job)
            if job.status in TERMINAL:
                return job
            self.sleep(self.poll_s)


def run_job(
    jobs: OpenAIJobs,
    spec: JobSpec,
    state_path: Path,
    watcher: JobWatcher | None = None,
    *,
    before_upload: Callable[[], None] | None = None,
) -> FineTuningJob:
    """Start ``spec`` (or re-attach to it), follow it to the end, return the job.

    ``state_path`` (a JSON file) records the uploaded file ids and the job id as soon
    as each exists; ``before_upload`` runs only when a new job is about to be made,
    before anything is sent (print the cost estimate there, or raise to stop).
    Returns a succeeded job (``fine_tuned_model`` set); raises :class:`JobError` for
    a failed or cancelled one, or when the provider cannot be reached.
    """
    watcher = watcher or JobWatcher()
    state = load_state(state_path)
    if state.get("key") != spec.key:
        state = {}  # another spec's file (the folder is per result, so only by hand)
    created = False
    # The state file first; else a job this spec's create may have made before a crash.
    job = jobs.retrieve(str(state["job_id"])) if state.get("job_id") else jobs.find(spec.key)
    if job is None:
        if before_upload is not None:
            before_upload()
        state = {"key": spec.key, "model": spec.model, **state}
        files: dict[str, str | None] = {}
        for name, data in (("training_file", spec.train), ("validation_file", spec.val)):
            file_id = state.get(name)
            if data is None:
                file_id = None
            elif not (isinstance(file_id, str) and jobs.file_exists(file_id)):
                # Uploaded by an interrupted run and still there: free to reuse.
                file_id = jobs.upload(data, f"{name.split('_')[0]}.jsonl")
                state[name] = file_id
                save_state(state_path, state)
            files[name] = file_id
        train_id = files["training_file"]
        assert train_id is not None
        job = jobs.create(spec, train_id, files["validation_file"])
        created = True
    state.update(key=spec.key, model=spec.model, job_id=job.id, status=job.status)
    save_state(state_path, state)
    watcher.attached(job, created)
    job = jobs.follow(job.id, watcher)
    state.update(status=job.status, fine_tuned_model=job.fine_tuned_model)
    save_state(state_path, state)
    if job.status == "succeeded" and job.fine_tuned_model:
        return job
    if job.status == "failed":
        err = job.error
        why = f"{err.code}: {err.message}" if err is not None else "no reason given"
        raise JobError(
            f"fine-tuning job {job.id} failed at the provider ({why})",
            file=state_path,
            fix="fix what the provider names (data, settings or quota), then "
            "'adaptlab run --force -c CANDIDATE' starts a new job (a new charge)",
            code="provider-job-failed",
        )
    raise JobError(
        f"fine-tuning job {job.id} was {job.status} (with 'adaptlab jobs cancel' or at the "
        "provider); no model was made",
        file=state_path,
        fix="'adaptlab run --force -c CANDIDATE' starts a new job (a new charge)",
        code="provider-job-cancelled",
    )
