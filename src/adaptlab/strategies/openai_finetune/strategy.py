"""Fine-tune the candidate's OpenAI model with a provider job, then prompt the result.

``fit`` turns the training split into chat records with this candidate's own
template (:meth:`PromptStrategy.chat_records`: the request it sends, plus the target
as the assistant's answer), prints the estimated training cost, uploads the files,
creates the job and follows it (:func:`adaptlab.train.provider.run_job`: never a
second paid job, a rerun re-attaches). ``predict`` then asks the fine-tuned model id
through the project's runner (cache, retries, rate limits), exactly as a prompting
candidate asks its model.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.core.errors import AdaptlabError, ConfigError
from adaptlab.core.types import CurvePoint
from adaptlab.llm.prices import lookup_price
from adaptlab.llm.tokens import openai_token_count
from adaptlab.strategies.base import StrategyContext, StrategyOptions
from adaptlab.strategies.openai_finetune.config import OpenAIFinetuneOptions
from adaptlab.strategies.prompting.strategy import PromptStrategy
from adaptlab.train.cost import estimate_training_cost
from adaptlab.train.provider import JobSpec, JobWatcher, OpenAIJobs, run_job, to_jsonl

if TYPE_CHECKING:
    from openai.types.fine_tuning import FineTuningJob, FineTuningJobEvent

    from adaptlab.backends.runner import LLMRunner
    from adaptlab.config import LLMConfig
    from adaptlab.data import Example
    from adaptlab.train.cost import TrainingCost


class OpenAIFinetune(PromptStrategy):
    """A provider fine-tuning job on the candidate's OpenAI model, evaluated like a prompt.

    ``info`` records the job (id, status, hyperparameters the provider chose,
    checkpoints), the fine-tuned model id, ``trained_tokens`` and the estimated and
    actual training cost in USD; ``curves`` the training and validation loss of every
    step the provider reported.
    """

    name: ClassVar[str] = "openai-finetune"
    Options: ClassVar[type[StrategyOptions]] = OpenAIFinetuneOptions
    trains_weights: ClassVar[bool] = True
    route: ClassVar[str] = "finetune"

    def __init__(self, options: StrategyOptions, ctx: StrategyContext) -> None:
        super().__init__(options, ctx)
        assert isinstance(options, OpenAIFinetuneOptions)
        self.ft: OpenAIFinetuneOptions = options
        self._tuned: LLMRunner | None = None

    # ------------------------------------------------------------ training

    def _llm_config(self) -> LLMConfig:
        if self.ctx.llm is None or self.ctx.llm_variant is None:
            raise ConfigError(
                f"strategy '{self.name}' needs an llm",
                fix="set 'llm:' on the candidate to an entry of llms: with backend: openai",
            )
        config: LLMConfig = self.ctx.llm.backend.config
        return config

    def _say(self, message: str) -> None:
        self.ctx.progress.info(message)

    def estimate(self, records: Sequence[list[dict[str, str]]], model: str) -> TrainingCost:
        """The training bill of ``records`` (chat records, as :meth:`chat_records` makes).

        See :func:`adaptlab.train.cost.estimate_training_cost`; tokens are counted with
        the model's tokenizer where it is cached, else estimated (4 characters a token).
        """

        counts = [
            openai_token_count(model, [(m["role"], m["content"]) for m in r])[0] for r in records
        ]
        return estimate_training_cost(counts, model, self.ft.n_epochs)

    def _before_upload(self, cost: TrainingCost, n_train: int, model: str) -> None:
        usd = "unknown" if cost.usd is None else f"about {cost.usd:.4f} USD"
        self._say(
            f"fine-tuning {model} at the provider on {n_train} examples: {cost.billed_tokens:,} "
            f"billed tokens ({cost.tokens_per_epoch:,} × {cost.epochs} epochs), {usd} "
            f"({cost.source}); uploading the data now"
        )
        limit = self.ft.max_usd
        if limit is not None and (cost.usd is None or cost.usd > limit):
            raise ConfigError(
                f"the estimated training cost ({usd}) is above max_usd ({limit} USD); "
                "nothing was uploaded",
                fix="raise or remove 'max_usd' under the candidate's params, or train on "
                "fewer or shorter examples",
            )

    def fit(self, train: Sequence[Example], val: Sequence[Example]) -> None:
        self.select_shots(train)
        if self.ctx.llm is None and self.ctx.llm_variant is None:
            # Built to render prompts (a dry run, 'adaptlab prompt render'): no model to
            # call, so picking the examples is all of fitting; never start a paid job here.
            return
        config = self._llm_config()
        train_records = self.chat_records(train)
        val_records = self.chat_records(val) if self.ft.validation and val else None
        spec = JobSpec(
            model=config.name,
            train=to_jsonl(train_records),
            val=to_jsonl(val_records) if val_records else None,
            n_epochs=self.ft.n_epochs,
            batch_size=self.ft.batch_size,
            learning_rate_multiplier=self.ft.learning_rate_multiplier,
            suffix=self.ft.suffix,
            seed=self.ctx.seed if self.ft.seed is None else self.ft.seed,
        )
        cost = self.estimate(train_records, config.name)
        self.info.update(
            provider_job={"base_model": config.name, "adaptlab_key": spec.key},
            train_examples=len(train_records),
            val_examples=len(val_records or []),
            estimated_epochs=cost.epochs,
            estimated_billed_tokens=cost.billed_tokens,
            estimated_cost_usd=cost.usd,
        )
        jobs = OpenAIJobs.for_llm(config, poll_s=self.ft.poll_interval_s)
        watcher = _Watcher(self, cost.epochs)
        try:
            job = run_job(
                jobs,
                spec,
                self.ctx.workdir / "job.json",
                watcher,
                before_upload=lambda: self._before_upload(cost, len(train_records), config.name),
            )
        except KeyboardInterrupt:
            if watcher.job_id is not None:
                self._say(
                    f"fine-tuning job {watcher.job_id} keeps running at the provider (and is "
                    f"billed): 'adaptlab run -p {self.ctx.root}' re-attaches to it, "
                    f"'adaptlab jobs cancel -p {self.ctx.root} CANDIDATE' cancels it"
                )
            raise
        finally:
            watcher.close()
        self._record(job, jobs.checkpoints(job.id))
        assert job.fine_tuned_model is not None
        tuned = self.ctx.llm_variant(name=job.fine_tuned_model)  # type: ignore[misc]
        if self.ctx.llm is not None:
            # The runner reads the candidate's request counts from its base model's runner.
            tuned.stats = self.ctx.llm.stats
        self._tuned = tuned

    def _record(self, job: FineTuningJob, checkpoints: Sequence[Any]) -> None:
        price = lookup_price(job.model)
        trained = job.trained_tokens
        actual = (
            trained * price.training / 1_000_000
            if trained is not None and price is not None and price.training is not None
            else None
        )
        hp = job.hyperparameters
        self.info["provider_job"] = {
            **dict(self.info.get("provider_job") or {}),  # type: ignore[call-overload]
            "id": job.id,
            "status": job.status,
            "fine_tuned_model": job.fine_tuned_model,
            "hyperparameters": {
                "n_epochs": hp.n_epochs,
                "batch_size": hp.batch_size,
                "learning_rate_multiplier": hp.learning_rate_multiplier,
            },
            "seed": job.seed,
            "checkpoints": [
                {
                    "step": c.step_number,
                    "model": c.fine_tuned_model_checkpoint,
                    "train_loss": c.metrics.train_loss,
                    "valid_loss": c.metrics.valid_loss,
                }
                for c in checkpoints
            ],
        }
        self.info.update(
            fine_tuned_model=job.fine_tuned_model,
            trained_tokens=trained,
            actual_cost_usd=actual,
        )

    # ------------------------------------------------------------ export

    def restore_fit(
        self, train: Sequence[Example], val: Sequence[Example], info: dict[str, Any]
    ) -> None:
        """The provider's fine-tuned model named in the stored result; no job is started."""

        self.select_shots(train)
        model = info.get("fine_tuned_model")
        if not isinstance(model, str) or not model:
            raise AdaptlabError(
                "the stored result names no fine-tuned model",
                fix="run the candidate (adaptlab run -c NAME) until its job succeeds, then export",
                code="no-checkpoint",
            )
        if self.ctx.llm_variant is None:
            raise RuntimeError("openai-finetune needs StrategyContext.llm_variant")
        self._tuned = self.ctx.llm_variant(name=model)

    # ------------------------------------------------------------ answers

    @property
    def runner(self) -> LLMRunner:
        """The fine-tuned model's runner (after :meth:`fit`)."""
        if self._tuned is None:
            raise RuntimeError(f"strategy '{self.name}' predicts only after fit()")
        return self._tuned


class _Watcher(JobWatcher):
    """Job events as progress (steps), notes (status changes) and loss curves."""

    def __init__(self, strategy: OpenAIFinetune, epochs: int) -> None:
        self.strategy = strategy
        self.epochs = epochs
        self.job_id: str | None = None
        self.last_status: str | None = None
        self.step = 0
        self._bars = contextlib.ExitStack()
        self._advance: Any = None

    def attached(self, job: FineTuningJob, created: bool) -> None:
        self.job_id = job.id
        if created:
            self.strategy._say(
                f"fine-tuning job {job.id} created; Ctrl-C stops watching, not the job "
                "(a rerun re-attaches)"
            )
        else:
            self.strategy._say(
                f"re-attached to fine-tuning job {job.id} ({job.status}); no new job is made"
            )

    def status(self, job: FineTuningJob) -> None:
        if isinstance(job.hyperparameters.n_epochs, int):
            self.epochs = job.hyperparameters.n_epochs
        if job.status != self.last_status:
            if self.last_status is not None:
                self.strategy._say(f"fine-tuning job {job.id}: {job.status}")
            self.last_status = job.status

    def event(self, event: FineTuningJobEvent) -> None:
        data = event.data if isinstance(event.data, dict) else {}
        if event.type != "metrics" or not isinstance(data.get("step"), int | float):
            return
        step = int(data["step"])
        total = data.get("total_steps")
        if self._advance is None:
            label = f"fine-tuning job {self.job_id}"
            self._advance = self._bars.enter_context(
                self.strategy.ctx.progress.task(label, int(total) if total else None)
            )
        if step > self.step:
            self._advance(step - self.step)
            self.step = step
        per_epoch = (int(total) / self.epochs) if total and self.epochs else None
        epoch = step / per_epoch if per_epoch else 0.0
        for key, split in (("train_loss", "train"), ("valid_loss", "val")):
            value = data.get(key)
            if isinstance(value, int | float):
                self.strategy.curves.append(CurvePoint(step, epoch, split, "loss", float(value)))

    def close(self) -> None:
        self._bars.close()
