"""Options of the local trainers (the causal LM's and the encoder's); pydantic only, so
reading a config never imports torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Method = Literal["lora", "full", "qlora"]
EncoderMethod = Literal["head", "setfit"]


class TrainOptions(BaseModel):
    """How :func:`adaptlab.train.trainer.train_causal_lm` fine-tunes a causal LM.

    Defaults follow common LoRA practice for small instruction models (r=16,
    alpha=32, lr 2e-4; the QLoRA paper, Dettmers et al. 2023, uses lr 2e-4 for
    adapters and full fine-tunes take about a tenth of it).
    """

    model_config = ConfigDict(extra="forbid")

    method: Method = Field(
        "lora",
        description="'lora' trains low-rank adapters, 'full' every weight, 'qlora' adapters on a "
        "4-bit base (CUDA GPU and bitsandbytes only).",
    )
    lora_r: int = Field(16, ge=1, description="Rank of each LoRA update matrix.")
    lora_alpha: int = Field(
        32, ge=1, description="LoRA scale numerator: updates are scaled by alpha/r."
    )
    lora_dropout: float = Field(0.05, ge=0.0, lt=1.0, description="Dropout on the LoRA input.")
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear",
        description="Module names LoRA wraps, or 'all-linear' for every linear layer "
        "but the output head.",
    )
    epochs: float = Field(3, gt=0, description="Passes over the training set (may be fractional).")
    learning_rate: float | None = Field(
        None, gt=0, description="Peak learning rate; None: 2e-4 for lora/qlora, 2e-5 for full."
    )
    batch_size: int = Field(8, ge=1, description="Examples per device step.")
    gradient_accumulation_steps: int = Field(
        1, ge=1, description="Device steps summed into one optimizer step."
    )
    max_length: int = Field(
        512, ge=8, description="Tokens per example; longer examples are cut at the end and counted."
    )
    batching: Literal["auto", "shared-prefix", "padding-free", "length-grouped", "padded"] = Field(
        "auto",
        description="'auto' picks shared-prefix or padding-free by their estimated compute on "
        "the data at hand (adaptlab.train.collate.plan_batching; the choice and why are in "
        "the progress output and result.json); "
        "'shared-prefix' packs a batch into one row holding the prompt prefix its "
        "examples share once (fastest where that prefix is most of each example: short "
        "chats from one template); "
        "'padding-free' packs a batch into one row with position ids restarting per example, "
        "each attending to itself only (fastest for long examples that share little); "
        "'length-grouped' pads batches of examples of similar length; 'padded' pads random "
        "batches. All give the same loss.",
    )
    max_row_tokens: int | None = Field(
        None,
        ge=8,
        description="Most tokens one forward/backward pass computes; a batch that would "
        "exceed it runs as several passes with summed gradients (same loss), which bounds "
        "peak memory. None: what fits a 2 GiB activation budget for the model's size "
        "(about 1,000 tokens for SmolLM2-135M).",
    )
    eval_steps: int = Field(
        20, ge=1, description="Evaluate on the validation set every N optimizer steps."
    )
    save_steps: int | None = Field(
        None, ge=1, description="Checkpoint every N optimizer steps; None: every eval_steps."
    )
    early_stopping_patience: int | None = Field(
        3,
        ge=1,
        description="Stop after this many evaluations without a lower validation loss; "
        "None: never.",
    )
    warmup_ratio: float = Field(
        0.05, ge=0.0, le=1.0, description="Fraction of steps of linear warm-up."
    )
    weight_decay: float = Field(0.0, ge=0.0, description="AdamW weight decay.")
    precision: Literal["auto", "bf16", "fp32"] = Field(
        "auto",
        description="'auto': bf16 mixed precision on a GPU that computes bf16 natively, else "
        "fp32 (on a CPU with AMX bf16 measured 1.08x faster but 10% worse in val loss at equal "
        "steps on ~87-token chats, 1.25x faster at +0.3% on ~300-token chats, "
        "bench/train_speed.py); 'bf16' on a CPU needs AMX/avx512_bf16.",
    )
    gradient_checkpointing: bool | None = Field(
        None,
        description="Recompute activations to save memory; None: on for full/qlora on a GPU, "
        "off otherwise.",
    )

    @model_validator(mode="after")
    def _check(self) -> TrainOptions:
        if isinstance(self.target_modules, list) and not self.target_modules:
            raise ValueError("target_modules is empty; name modules or use 'all-linear'")
        return self

    @property
    def lr(self) -> float:
        """The learning rate in effect (the method's default when unset)."""
        if self.learning_rate is not None:
            return self.learning_rate
        return 2e-5 if self.method == "full" else 2e-4

    @property
    def checkpoint_steps(self) -> int:
        """Optimizer steps between checkpoints."""
        return self.save_steps if self.save_steps is not None else self.eval_steps


class EncoderTrainOptions(BaseModel):
    """How :func:`adaptlab.train.encoder.train_encoder` fine-tunes a sentence encoder."""

    model_config = ConfigDict(extra="forbid")

    method: EncoderMethod = Field(
        default="head",
        description="'head': train encoder and a softmax head end to end (cross-entropy); "
        "'setfit': contrastive pairs tune the encoder, then a logistic-regression head.",
    )
    epochs: int = Field(default=8, ge=1, description="Maximum epochs over the train split.")
    batch_size: int = Field(default=16, ge=2, description="Examples (or pairs) per step.")
    learning_rate: float = Field(default=5e-5, gt=0, description="Encoder learning rate.")
    head_learning_rate: float = Field(default=2e-3, gt=0, description="Head learning rate.")
    warmup_ratio: float = Field(default=0.1, ge=0, lt=1, description="Share of linear warm-up.")
    weight_decay: float = Field(default=0.01, ge=0, description="AdamW weight decay.")
    patience: int = Field(
        default=2, ge=1, description="Epochs without a better val accuracy before stopping."
    )
    pair_iterations: int = Field(
        default=5, ge=1, description="setfit only: positive and negative pairs per example."
    )
