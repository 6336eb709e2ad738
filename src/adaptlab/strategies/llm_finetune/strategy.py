"""Fine-tune the candidate's local generative model (LoRA by default), then prompt it.

The training chats are exactly the requests the candidate sends at test time (the
same template, system prompt and shots; see
:meth:`~adaptlab.strategies.prompting.PromptStrategy.chat_records`) with the target
as the assistant's answer, so the model learns the prompt it will be asked with.
``fit`` trains on the train split with early stopping on the val split
(:func:`adaptlab.train.train_causal_lm`); the test split is answered by the
checkpoint with the best validation loss and, for the overfitting report, by the
last one. Answers are parsed and scored like any prompted candidate's.

A killed run resumes: training from its last checkpoint to the same weights, and a
finished training is reused (the candidate's checkpoint folder keeps it).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.backends.gguf import resolve_model
from adaptlab.backends.runner import RunnerStats
from adaptlab.core.errors import ConfigError
from adaptlab.core.types import Prediction
from adaptlab.prompts import PromptTemplate
from adaptlab.strategies.base import StrategyContext, StrategyOptions
from adaptlab.strategies.llm_finetune.config import LLMFinetuneOptions
from adaptlab.strategies.prompting.config import PromptOptions
from adaptlab.strategies.prompting.strategy import PromptStrategy
from adaptlab.strategies.tuning import Outcome, TrialStore, successive_halving
from adaptlab.train.options import TrainOptions
from adaptlab.train.trainer import train_causal_lm

if TYPE_CHECKING:
    from adaptlab.backends.runner import LLMRunner
    from adaptlab.data import Example
    from adaptlab.train.trainer import TrainResult


class LLMFinetune(PromptStrategy):
    """LoRA / full / QLoRA fine-tuning of a local (``hf``) model, answered through a prompt."""

    name: ClassVar[str] = "llm-finetune"
    Options: ClassVar[type[StrategyOptions]] = LLMFinetuneOptions
    trains_weights: ClassVar[bool] = True
    route: ClassVar[str] = "finetune"

    def __init__(self, options: StrategyOptions, ctx: StrategyContext) -> None:
        super().__init__(options, ctx)
        assert isinstance(options, LLMFinetuneOptions)
        self.ft: LLMFinetuneOptions = options
        self._last: LLMRunner | None = None
        self.training: TrainResult | None = None

    @classmethod
    def template_for(
        cls, options: PromptOptions, root: Path, task: str, language: str = "en"
    ) -> PromptTemplate:
        if options.template == "auto" and task == "classification":
            return PromptTemplate("classify-short", root, language=language)
        return super().template_for(options, root, task, language)

    def train_options(self) -> TrainOptions:
        """The training half of this candidate's options."""
        fields = set(TrainOptions.model_fields)
        return TrainOptions.model_validate(self.ft.model_dump(include=fields))

    # ------------------------------------------------------------ training

    def fit(self, train: Sequence[Example], val: Sequence[Example]) -> None:
        config = self.runner.config
        if config.backend != "hf":
            raise ConfigError(
                f"llm-finetune trains a local model, but llm '{config.name}' uses backend "
                f"'{config.backend}'",
                fix="point the candidate's llm at an 'hf' entry (e.g. name: "
                "smollm2-135m-instruct), or use strategy openai-finetune for a provider job",
            )
        if config.adapter is not None:
            raise ConfigError(
                f"llm-finetune trains a new adapter, but llm '{config.name}' already loads "
                f"adapter '{config.adapter}'",
                fix="use an llms: entry without adapter: (merge that adapter into a model "
                "folder first to train on top of it)",
            )
        if not val:
            raise ConfigError(
                "llm-finetune needs a validation split for early stopping and the "
                "overfitting report, and this project's is empty",
                fix="set data.val_size (e.g. 0.1) in adaptlab.yaml",
            )
        self.select_shots(train)
        records = self.chat_records(train)
        val_records = self.chat_records(val)
        fingerprint = hashlib.sha256(
            json.dumps([records, val_records], ensure_ascii=False).encode()
        ).hexdigest()[:16]
        backend: Any = self.runner.backend
        base = resolve_model(config.name, progress=self.ctx.progress)

        def train_with(options: TrainOptions, out: Path) -> TrainResult:
            return train_causal_lm(
                base,
                records,
                val_records,
                out,
                options,
                seed=self.ctx.seed,
                device=getattr(backend, "device", "cpu"),
                progress=self.ctx.progress,
                data_fingerprint=fingerprint,
            )

        if self.ft.tune is None:
            result = train_with(self.train_options(), self.ctx.workdir / "train")
        else:
            result = self._tune(train_with, val, len(records), fingerprint)
        self.training = result
        self.curves = list(result.curves)
        best = self._variant(result.best_dir)
        # The runner reads token and cache statistics from ctx.llm after predicting.

        best.stats = RunnerStats()
        self.ctx.llm = best
        if self.ft.evaluate == "best-and-last" and result.last_step != result.best_step:
            self._last = self._variant(result.last_dir)
        self.info["training"] = training_info(result, fingerprint, len(records), len(val_records))

    # ------------------------------------------------------------ tuning

    def tuned_options(self, params: dict[str, Any]) -> TrainOptions:
        """The training options of one setting of the search (``learning_rate``,
        ``epochs``, ``lora_r``); ``lora_alpha`` scales with the rank so alpha/r stays."""
        own = self.train_options()
        update: dict[str, Any] = {
            "learning_rate": params["learning_rate"],
            "epochs": params["epochs"],
        }
        if "lora_r" in params:
            update["lora_r"] = params["lora_r"]
            update["lora_alpha"] = max(1, round(own.lora_alpha * params["lora_r"] / own.lora_r))
        return TrainOptions.model_validate({**own.model_dump(), **update})

    def _tune(
        self,
        train_with: Callable[[TrainOptions, Path], TrainResult],
        val: Sequence[Example],
        n_train: int,
        fingerprint: str,
    ) -> TrainResult:
        """Successive halving over ``tune:`` (:mod:`adaptlab.strategies.tuning`); every
        trial trains into its own folder and answers the validation split; returns the
        training of the setting with the best validation accuracy."""
        tune = self.ft.tune
        assert tune is not None
        if self.ctx.task != "classification":
            raise ConfigError(
                f"tune: chooses by validation accuracy, which a '{self.ctx.task}' task has not",
                fix="remove tune: from this candidate (tuning covers classification for now)",
            )
        default, space = self.ft.tuning_space()
        texts = [ex.text for ex in val]

        def evaluate(params: dict[str, Any], fraction: float, folder: Path) -> Outcome:
            options = self.tuned_options({**params, "epochs": params["epochs"] * fraction})
            result = train_with(options, folder / "train")
            preds = self._answers(self._variant(result.best_dir), texts)
            right = [1.0 if p.label == ex.label else 0.0 for p, ex in zip(preds, val, strict=True)]
            return Outcome(
                right,
                extra={"best_step": result.best_step, "best_val_loss": result.best_val_loss},
            )

        search = successive_halving(
            default,
            space,
            evaluate,
            TrialStore(self.ctx.workdir / "tuning", fingerprint),
            max_minutes=tune.max_minutes,
            eta=tune.eta,
            units=lambda p, f: p["epochs"] * f * n_train,
            n_val=len(val),
            note=self.ctx.progress.note,
        )
        self.info["tuning"] = search.record
        return train_with(self.tuned_options(search.tuned), search.tuned_folder / "train")

    def _answers(self, runner: LLMRunner, texts: Sequence[str]) -> list[Prediction]:
        """``texts`` answered by ``runner`` as :meth:`predict` would, leaving this candidate's
        model and info as they were (the info's prompt example is a test input's)."""
        llm, info = self.ctx.llm, dict(self.info)
        self.ctx.llm = runner
        try:
            return PromptStrategy.predict(self, texts)
        finally:
            self.ctx.llm, self.info = llm, info

    def _variant(self, folder: Path) -> LLMRunner:
        if self.ctx.llm_variant is None:
            raise RuntimeError("llm-finetune needs StrategyContext.llm_variant")
        if self.ft.method == "full":
            return self.ctx.llm_variant(name=str(folder), adapter=None)
        return self.ctx.llm_variant(adapter=str(folder))

    # ------------------------------------------------------------ answers

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        preds = super().predict(texts)
        if self._last is not None and self.training is not None:
            responses = self._last.run_sync(
                self.requests(texts), description="answers of the last checkpoint"
            )
            last = [self._prediction(r) for r in responses]
            self.info["last_checkpoint"] = {
                "step": self.training.last_step,
                "predictions": [p.label for p in last],
                "unparsed": sum(p.status in ("unparsed", "invalid") for p in last),
            }
        return preds


def training_info(
    result: TrainResult, fingerprint: str, n_train: int, n_val: int
) -> dict[str, object]:
    """What the overfitting report needs, JSON-ready: losses at the best step and the gap.

    The gap is validation loss minus the training loss logged nearest before the best
    step (both mean cross-entropy over assistant tokens, nats).
    """
    train_points = [p for p in result.curves if p.split == "train" and p.metric == "loss"]
    before = [p for p in train_points if p.step <= result.best_step] or train_points[:1]
    train_loss = before[-1].value if before else None
    return {
        "method": result.method,
        "precision": result.precision,
        "best_step": result.best_step,
        "last_step": result.last_step,
        "max_steps": result.max_steps,  # the steps planned (epochs x batches)
        "best_val_loss": result.best_val_loss,
        "last_val_loss": result.last_val_loss,
        "train_loss_at_best": train_loss,
        "gap_at_best": None if train_loss is None else result.best_val_loss - train_loss,
        "stopped_early": result.stopped_early,
        "train_tokens": result.train_tokens,
        "tokens_per_second": result.tokens_per_second,
        "truncated": result.truncated,
        "examples": {"train": n_train, "val": n_val},
        "data_fingerprint": fingerprint,
    }
