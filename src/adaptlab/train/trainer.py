"""Fine-tune a local causal LM on chats with transformers' Trainer and PEFT.

The training loop, checkpoints, resume (RNG states included), evaluation and
early stopping are Trainer's; this module chooses their settings, encodes the
chats (:mod:`adaptlab.train.collate`), and turns the run into two folders
(``best/``, ``last/``) and a ``result.json``. torch and transformers are
imported inside the functions, so importing this module stays light.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from adaptlab.backends.quiet import quiet_library_progress
from adaptlab.backends.sentence_transformers import bf16_supported
from adaptlab.core.errors import ConfigError, DataError
from adaptlab.core.progress import ProgressSink
from adaptlab.core.types import CurvePoint
from adaptlab.train.attention import register as register_varlen_attention
from adaptlab.train.card import write_card
from adaptlab.train.collate import (
    BatchingPlan,
    Encoded,
    encode_chats,
    make_collator,
    peak_rss_bytes,
    plan_for_model,
)
from adaptlab.train.options import TrainOptions

Chat = list[dict[str, str]]

RESULT = "result.json"
RUN_KEY = "adaptlab-run.json"  # in out/checkpoints: which run the checkpoints belong to
# Files of a checkpoint folder that make up the model (adapter or full weights);
# optimizer, scheduler, RNG states and the pickled training_args.bin stay behind.
_MODEL_FILES = (
    "*.safetensors",
    "*.safetensors.index.json",
    "config.json",
    "generation_config.json",
    "adapter_config.json",
)


@dataclass
class TrainResult:
    """What a fine-tune produced; persisted as ``out/result.json``.

    ``best_dir``/``last_dir`` hold an adapter (lora/qlora: ``adapter_config.json``
    + ``adapter_model.safetensors``) or a full model (``method == 'full'``), a
    tokenizer and a ``README.md`` card. Losses are mean token cross-entropy (nats)
    over assistant tokens; steps count optimizer steps. ``train_tokens`` counts
    non-padding tokens fed to training (prompt tokens included, as they are
    computed on); ``tokens_per_second`` divides the tokens of this process's
    session by its wall time in ``Trainer.train`` (evaluations included).
    ``truncated`` counts training and validation examples cut at ``max_length``.
    ``extra`` holds the batching used (``batching``; ``batching_reason``, the line the
    progress output shows; ``batching_costs``, each mode's estimated compute per epoch;
    ``examples_per_pass``; ``max_row_tokens``) and ``peak_rss_bytes``, this process's
    peak resident memory at the end of training (``ru_maxrss``: since the process
    started, so earlier work in the same process counts too).
    """

    best_dir: Path
    last_dir: Path
    curves: list[CurvePoint]
    best_step: int
    last_step: int
    best_val_loss: float
    last_val_loss: float
    train_tokens: int
    tokens_per_second: float
    stopped_early: bool
    precision: str
    method: str
    truncated: int
    dropped: int = 0
    max_steps: int = 0
    run_key: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (paths as strings, curves as dicts)."""
        data = asdict(self)
        data["best_dir"] = str(self.best_dir)
        data["last_dir"] = str(self.last_dir)
        data["curves"] = [asdict(p) for p in self.curves]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TrainResult:
        """Inverse of :meth:`to_json`; raises ``KeyError``/``TypeError`` on a malformed dict."""

        kw = dict(data)
        kw["best_dir"] = Path(kw["best_dir"])
        kw["last_dir"] = Path(kw["last_dir"])
        kw["curves"] = [CurvePoint(**p) for p in kw["curves"]]
        return cls(**kw)


def resolve_precision(precision: str, device: str) -> str:
    """'bf16' or 'fp32' for ``precision`` ('auto', 'bf16' or 'fp32') on ``device``.

    'auto' is bf16 mixed precision on a GPU that computes bf16 natively and fp32
    everywhere else. On a CPU with AMX, bf16 autocast was measured to pay only on long
    inputs: LoRA on SmolLM2-135M, 2 cores (``bench/train_speed.py``,
    ``--adaptlab-precisions bf16``): 128 support-ticket chats of ~87 tokens, 16 steps,
    1.08x the tokens/s of fp32 but a validation loss 10% higher (1.156 vs 1.051; earlier
    runs: 1.13-1.16x, 1.5-5.6% higher); 32 German chats of ~300 tokens, 1.25x at +0.3%.
    ``precision: bf16`` uses it on such a CPU.

    Raises:
        ConfigError: ``precision: bf16`` on a device without native bf16.
    """

    native = bf16_supported(device)
    if precision == "auto":
        return "bf16" if native and not device.startswith("cpu") else "fp32"
    if precision == "bf16" and not native:
        raise ConfigError(
            f"precision bf16 asked for, but {device} has no native bf16 "
            "(it would be emulated, slower than fp32)",
            fix="set precision: auto or fp32 in the fine-tuning options",
        )
    return precision


def check_method(method: str, device: str) -> None:
    """Refuse QLoRA where it cannot run.

    Raises:
        ConfigError: method 'qlora' without a CUDA device or bitsandbytes.
    """
    if method != "qlora":
        return
    import importlib.util

    import torch

    if not (
        device.startswith("cuda")
        and torch.cuda.is_available()
        and importlib.util.find_spec("bitsandbytes")
    ):
        raise ConfigError(
            "QLoRA needs a CUDA GPU and bitsandbytes; use method: lora on CPU",
            fix="set method: lora (or full) in the fine-tuning options, or run on a CUDA GPU "
            "with bitsandbytes installed",
        )


def run_key(
    base: Path,
    train: Sequence[Chat],
    val: Sequence[Chat],
    options: TrainOptions,
    seed: int,
    data_fingerprint: str,
) -> str:
    """Hash of everything that decides the trained weights (sha256 hex, 16 chars).

    Checkpoints and a result are reused only under the same key.
    """
    h = hashlib.sha256()
    meta = {
        "base": str(base.resolve()),
        "options": options.model_dump(mode="json"),
        "seed": seed,
        "data": data_fingerprint,
    }
    h.update(json.dumps(meta, sort_keys=True).encode())
    h.update(json.dumps([list(train), list(val)], sort_keys=True).encode())
    return h.hexdigest()[:16]


def train_causal_lm(
    base: Path,
    train: Sequence[Chat],
    val: Sequence[Chat],
    out: Path,
    options: TrainOptions,
    *,
    seed: int,
    device: str = "cpu",
    progress: ProgressSink | None = None,
    data_fingerprint: str = "",
) -> TrainResult:
    """Fine-tune the causal LM in folder ``base`` on chats; write ``out/{best,last,result.json}``.

    Each chat is a list of ``{"role", "content"}`` messages ending with the
    assistant's answer; only the answer's tokens are trained. Validation loss is
    computed every ``options.eval_steps`` optimizer steps and at the end; a
    checkpoint goes to ``out/checkpoints/`` every ``options.checkpoint_steps``
    steps and whenever the validation loss improves. Rerunning with the same
    arguments after a kill resumes from the latest checkpoint (weights, optimizer,
    scheduler, data order and RNG states, so the end weights equal an
    uninterrupted run's); once ``out/result.json`` exists for the same arguments it
    is returned without training. ``out/checkpoints/`` is removed at the end.

    Works unchanged under ``accelerate launch`` (each process trains its shard;
    the main process writes the folders).

    Raises:
        ConfigError: ``base`` is not a model folder, QLoRA without CUDA and
            bitsandbytes, bf16 asked for where it is not native.
        DataError: no training or validation chats, a chat not ending with the
            assistant, a template whose prompt is not a prefix of the chat, or
            every example cut to nothing by ``max_length``.
    """

    progress = progress or ProgressSink()
    base, out = Path(base), Path(out).absolute()
    if not (base / "config.json").is_file():
        raise ConfigError(
            f"{base} is not a model folder (no config.json)",
            fix="point the fine-tune at a local Hugging Face model folder "
            "(config.json, safetensors, tokenizer)",
        )
    if not train or not val:
        raise DataError(
            f"fine-tuning needs training and validation chats (got {len(train)} and {len(val)})",
            fix="add examples to the data file, or lower the validation share of the split",
        )
    for path in (out, out / "checkpoints", out / "best", out / "last"):
        if path.is_symlink():
            raise ConfigError(
                f"{path} is a symbolic link; adaptlab writes and deletes there, "
                "so it refuses links",
                fix=f"remove the link {path} and run again",
            )
    key = run_key(base, train, val, options, seed, data_fingerprint)
    done = _finished(out, key)
    if done is not None:
        shutil.rmtree(out / "checkpoints", ignore_errors=True)
        return done
    check_method(options.method, device)
    precision = resolve_precision(options.precision, device)

    tokenizer, enc_train, enc_val = _encode(base, train, val, options, need_val=True)
    from transformers import set_seed
    from transformers.trainer_utils import get_last_checkpoint

    truncated = enc_train.truncated + enc_val.truncated
    dropped = enc_train.dropped + enc_val.dropped
    if truncated:
        progress.note(
            f"{truncated} fine-tuning examples are longer than max_length="
            f"{options.max_length} tokens and were cut ({dropped} lost their whole answer "
            "and were left out); raise max_length to keep them"
        )

    # The batching is chosen for this data by estimated compute, each pass capped so
    # its activations (and so peak memory) stay bounded; the plan depends only on the
    # data and options, so a resumed run gets the same one.
    plan = plan_for_model(
        base,
        enc_train.features,
        batching=options.batching,
        batch_size=options.batch_size,
        max_row_tokens=options.max_row_tokens,
    )
    progress.info(f"fine-tuning: {plan.describe()}")
    ckdir = out / "checkpoints"
    args = _training_args(options, ckdir, seed=seed, device=device, precision=precision, plan=plan)
    # Under `accelerate launch` every process runs this; the main one decides about
    # stale checkpoints before the others look.
    with args.main_process_first(desc="checkpoints", local=False):
        _claim_checkpoints(ckdir, key)
    set_seed(seed)  # LoRA's A matrices are drawn at wrapping
    model = _load_model(base, options, device)
    trainer = _trainer_class()(
        model=model,
        args=args,
        train_dataset=enc_train.features,
        eval_dataset=enc_val.features,
        data_collator=make_collator(plan.mode, tokenizer),
        callbacks=_callbacks(options, progress),
    )
    _silence(trainer)
    # The checkpoint with the highest step; Trainer loads it tensor-only (weights_only=True,
    # safetensors) and restores optimizer, scheduler, data order and RNG states.
    resume = get_last_checkpoint(str(ckdir))  # type: ignore[no-untyped-call]
    problem = _checkpoint_problem(Path(resume)) if resume else None
    if problem:
        # A project folder is untrusted: a damaged or crafted checkpoint costs a
        # fresh start (same seed, so the same end weights), never a crash or worse.
        progress.note(f"checkpoint {resume} is not usable ({problem}); training from the start")
        trainer.accelerator.wait_for_everyone()
        if trainer.is_world_process_zero():
            shutil.rmtree(resume, ignore_errors=True)
        trainer.accelerator.wait_for_everyone()
        resume = get_last_checkpoint(str(ckdir))  # type: ignore[no-untyped-call]
        if resume and _checkpoint_problem(Path(resume)):
            resume = None
    start = time.perf_counter()
    trainer.train(resume_from_checkpoint=resume)
    wall = time.perf_counter() - start
    state = trainer.state
    session_tokens = state.num_input_tokens_seen - getattr(
        trainer, "_initial_num_input_tokens_seen", 0
    )

    evals = [(int(e["step"]), float(e["eval_loss"])) for e in state.log_history if "eval_loss" in e]
    best_step = int(state.best_global_step or evals[-1][0])
    result = TrainResult(
        best_dir=out / "best",
        last_dir=out / "last",
        curves=_curves(state.log_history),
        best_step=best_step,
        last_step=int(state.global_step),
        best_val_loss=float(state.best_metric if state.best_metric is not None else evals[-1][1]),
        last_val_loss=evals[-1][1],
        train_tokens=int(state.num_input_tokens_seen),
        tokens_per_second=session_tokens / wall if wall > 0 else 0.0,
        stopped_early=state.global_step < state.max_steps,
        precision=precision,
        method=options.method,
        truncated=truncated,
        dropped=dropped,
        max_steps=int(state.max_steps),
        run_key=key,
        extra={
            "batching": plan.mode,
            "batching_reason": plan.describe(),
            "batching_costs": plan.costs,
            "examples_per_pass": plan.examples_per_row,
            "max_row_tokens": plan.max_row_tokens,
            "peak_rss_bytes": peak_rss_bytes(),
        },
    )
    if result.extra["peak_rss_bytes"]:
        progress.info(
            f"fine-tuning: peak resident memory {result.extra['peak_rss_bytes'] / 1e9:.2f} GB "
            f"({plan.examples_per_row} examples per pass)"
        )
    if trainer.is_world_process_zero():
        _save_outputs(
            trainer,
            tokenizer,
            result,
            ckdir,
            base=base,
            options=options,
            data_fingerprint=data_fingerprint,
        )
    trainer.accelerator.wait_for_everyone()
    return result


def _encode(
    base: Path, train: Sequence[Chat], val: Sequence[Chat], options: TrainOptions, *, need_val: bool
) -> tuple[Any, Encoded, Encoded]:
    """The base model's tokenizer (a pad token set) and the chats encoded as training
    does; raises DataError when every training (or, with ``need_val``, validation)
    example is cut to nothing by ``max_length``."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a local folder needs nothing from the hub
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    quiet_library_progress()
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    enc_train = encode_chats(tokenizer, train, options.max_length)
    enc_val = encode_chats(tokenizer, val, options.max_length)
    if not enc_train.features or (need_val and not enc_val.features):
        raise DataError(
            f"every {'training' if not enc_train.features else 'validation'} example is "
            f"longer than max_length={options.max_length} tokens before its answer",
            fix="raise max_length in the fine-tuning options",
        )
    return tokenizer, enc_train, enc_val


@dataclass
class StepProbe:
    """A few real training steps, timed: what a time estimate of a fit scales up.

    ``seconds``: wall seconds of each timed optimizer step (the first, warm-up step is
    not timed); ``tokens``: the non-padding tokens each of them trained on, in the
    same order; ``load_seconds``: reading the model (and, locally, wrapping it for
    LoRA) before the first step; ``tokens_per_epoch``: non-padding tokens of one pass
    over the training chats (after ``max_length``); ``val_tokens``: the same for the
    validation chats; ``steps_per_epoch``: optimizer steps of one pass.
    """

    seconds: list[float]
    tokens: list[int]
    load_seconds: float
    tokens_per_epoch: int
    val_tokens: int
    steps_per_epoch: int

    @property
    def seconds_per_token(self) -> float:
        """Wall seconds per trained token over the timed steps."""
        return sum(self.seconds) / max(1, sum(self.tokens))


def probe_causal_lm(
    base: Path,
    train: Sequence[Chat],
    val: Sequence[Chat],
    options: TrainOptions,
    *,
    seed: int,
    device: str = "cpu",
    steps: int = 3,
) -> StepProbe:
    """Time ``steps`` optimizer steps of :func:`train_causal_lm` on this machine.

    The same tokenizer, encoding, batching plan, model (LoRA wrapped), precision and
    Trainer as a real fit, with ``max_steps = steps + 1`` and no evaluation or
    checkpoint; the first step warms up (thread pools, kernels) and is not timed.
    Nothing is written but a temporary folder, removed at the end. Raises what
    :func:`train_causal_lm` raises on a bad model folder or chats.
    """
    import tempfile

    if not (Path(base) / "config.json").is_file():
        raise ConfigError(
            f"{base} is not a model folder (no config.json)",
            fix="point the fine-tune at a local Hugging Face model folder",
        )
    check_method(options.method, device)
    precision = resolve_precision(options.precision, device)
    tokenizer, enc_train, enc_val = _encode(base, train, val, options, need_val=False)
    from transformers import TrainerCallback, set_seed

    plan = plan_for_model(
        base,
        enc_train.features,
        batching=options.batching,
        batch_size=options.batch_size,
        max_row_tokens=options.max_row_tokens,
    )
    marks: list[tuple[float, int]] = []

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            marks.append((time.perf_counter(), int(state.num_input_tokens_seen)))

    with tempfile.TemporaryDirectory(prefix="adaptlab-probe-") as tmp:
        args = _training_args(
            options, Path(tmp), seed=seed, device=device, precision=precision, plan=plan
        )
        args.max_steps = steps + 1
        args.eval_strategy = args.save_strategy = "no"
        set_seed(seed)
        t0 = time.perf_counter()
        model = _load_model(base, options, device)
        load = time.perf_counter() - t0
        trainer = _trainer_class()(
            model=model,
            args=args,
            train_dataset=enc_train.features,
            data_collator=make_collator(plan.mode, tokenizer),
            callbacks=[Clock()],
        )
        _silence(trainer)
        trainer.train()
    per_step = options.batch_size * options.gradient_accumulation_steps
    return StepProbe(
        seconds=[b[0] - a[0] for a, b in itertools.pairwise(marks)],
        tokens=[b[1] - a[1] for a, b in itertools.pairwise(marks)],
        load_seconds=load,
        tokens_per_epoch=enc_train.tokens,
        val_tokens=enc_val.tokens,
        steps_per_epoch=-(-len(enc_train.features) // per_step),
    )


def _trainer_class() -> Any:
    """transformers' ``Trainer``, taught the ``num_example_tokens`` a shared-prefix batch
    carries: it counts as the tokens seen (Trainer would sum the 4D attention mask)
    and is removed before the batch reaches the model."""
    from transformers import Trainer

    class _Trainer(Trainer):
        def _track_num_input_tokens(self, inputs: dict[str, Any]) -> None:
            if "num_example_tokens" not in inputs:
                super()._track_num_input_tokens(inputs)  # type: ignore[no-untyped-call]
                return
            import torch

            n = torch.tensor(int(inputs["num_example_tokens"]), device=self.args.device)
            self.state.num_input_tokens_seen += int(self.accelerator.gather(n).sum().item())

        def compute_loss(self, model: Any, inputs: dict[str, Any], *a: Any, **kw: Any) -> Any:
            inputs.pop("num_example_tokens", None)
            return super().compute_loss(model, inputs, *a, **kw)

    return _Trainer


def _finished(out: Path, key: str) -> TrainResult | None:
    path = out / RESULT
    if not path.is_file():
        return None
    try:
        result = TrainResult.from_json(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, KeyError, TypeError):
        return None  # a damaged result is redone, not trusted
    result.best_dir, result.last_dir = out / "best", out / "last"  # the folder may have moved
    if result.run_key != key or not (result.best_dir.is_dir() and result.last_dir.is_dir()):
        return None
    return result


def _claim_checkpoints(ckdir: Path, key: str) -> None:
    """Keep ``ckdir`` only if its checkpoints belong to this run (same key)."""
    marker = ckdir / RUN_KEY
    if ckdir.is_dir():
        try:
            same = json.loads(marker.read_text(encoding="utf-8")).get("run_key") == key
        except (OSError, ValueError, AttributeError):
            same = False
        if not same:
            shutil.rmtree(ckdir)
    ckdir.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        marker.write_text(json.dumps({"run_key": key}), encoding="utf-8")


def _checkpoint_problem(folder: Path) -> str | None:
    """Why Trainer must not resume from ``folder``, or None.

    Reads every file Trainer will: JSON state, safetensors weights, and each
    ``.pt``/``.pth`` with ``torch.load(weights_only=True)`` under the same numpy
    allowlist Trainer uses for RNG states, so nothing in it can run code. A
    pickled ``.bin`` weight file is refused outright (this trainer writes
    safetensors; ``training_args.bin`` is never read and is ignored).
    """
    import torch
    from safetensors import safe_open
    from transformers.trainer_pt_utils import safe_globals

    try:
        state = json.loads((folder / "trainer_state.json").read_text(encoding="utf-8"))
        if not isinstance(state, dict) or not isinstance(state.get("global_step"), int):
            return "trainer_state.json holds no step"
        weights = [*folder.glob("*.safetensors")]
        if not weights:
            return "no safetensors weights"
        if any(f.name != "training_args.bin" for f in folder.glob("*.bin")):
            return "pickled .bin weights"
        for f in weights:
            with safe_open(str(f), framework="pt") as fh:
                fh.keys()
        for f in [*folder.glob("*.pt"), *folder.glob("*.pth")]:
            with safe_globals():  # type: ignore[no-untyped-call]
                torch.load(f, map_location="cpu", weights_only=True)
    except Exception as exc:  # any failure to read means: do not resume
        return f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
    return None


def _load_model(base: Path, options: TrainOptions, device: str) -> Any:
    import torch
    from transformers import AutoModelForCausalLM

    # sdpa, except that a padding-free row attends one example at a time without a mask.
    kw: dict[str, Any] = {
        "dtype": torch.float32,
        "attn_implementation": register_varlen_attention(),
    }
    if options.method == "qlora":
        from transformers import BitsAndBytesConfig

        # NF4 with double quantisation and bf16 compute: the QLoRA paper's recipe
        # (Dettmers et al. 2023, section 3).
        kw["quantization_config"] = BitsAndBytesConfig(  # type: ignore[no-untyped-call]
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=torch.bfloat16,
        )
        kw["device_map"] = {"": torch.cuda.current_device()}
    model = AutoModelForCausalLM.from_pretrained(base, **kw)
    if options.method == "full":
        return model
    from peft import LoraConfig, get_peft_model, prepare_model_for_kbit_training

    if options.method == "qlora":
        model = prepare_model_for_kbit_training(  # type: ignore[no-untyped-call]
            model, use_gradient_checkpointing=_checkpointing(options, device)
        )
    config = LoraConfig(
        r=options.lora_r,
        lora_alpha=options.lora_alpha,
        lora_dropout=options.lora_dropout,
        target_modules=options.target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def _checkpointing(options: TrainOptions, device: str) -> bool:
    if options.gradient_checkpointing is not None:
        return options.gradient_checkpointing
    # Recomputing activations costs about a third more compute; worth it only where
    # memory is short: a GPU holding every weight's gradient (full) or a 4-bit base.
    return device.startswith("cuda") and options.method in ("full", "qlora")


def _training_args(
    options: TrainOptions,
    ckdir: Path,
    *,
    seed: int,
    device: str,
    precision: str,
    plan: BatchingPlan,
) -> Any:
    from transformers import TrainingArguments

    return TrainingArguments(
        output_dir=str(ckdir),
        num_train_epochs=options.epochs,
        # A batch of batch_size runs as passes_per_batch passes of examples_per_row;
        # Trainer divides each pass's summed token loss by the whole batch's trained
        # tokens, so the loss and gradient are those of the batch in one pass.
        # Evaluation keeps whole batches: it stores no activations, and Trainer averages
        # its loss per batch, so the batch decides what the val loss means.
        per_device_train_batch_size=plan.examples_per_row,
        per_device_eval_batch_size=options.batch_size,
        gradient_accumulation_steps=options.gradient_accumulation_steps * plan.passes_per_batch,
        learning_rate=options.lr,
        weight_decay=options.weight_decay,
        warmup_steps=options.warmup_ratio,  # a float in [0, 1) is a ratio of all steps
        lr_scheduler_type="linear",
        eval_strategy="steps",
        eval_steps=options.eval_steps,
        save_strategy="steps",
        save_steps=options.checkpoint_steps,
        save_total_limit=2,  # the latest (to resume) and the best (kept apart by Trainer)
        metric_for_best_model="eval_loss",
        greater_is_better=False,
        # Both the last and the best weights are kept: best/ is copied from its checkpoint.
        load_best_model_at_end=False,
        restore_callback_states_from_checkpoint=True,  # early stopping's counter resumes too
        logging_strategy="steps",
        logging_steps=1,
        include_num_input_tokens_seen="non_padding",
        bf16=precision == "bf16",
        use_cpu=device == "cpu",
        activation_checkpointing=_checkpointing(options, device),
        activation_checkpointing_kwargs={"use_reentrant": False},
        train_sampling_strategy="group_by_length" if plan.mode == "length-grouped" else "random",
        seed=seed,
        data_seed=seed,
        dataloader_num_workers=0,
        remove_unused_columns=False,
        ddp_find_unused_parameters=False,
        report_to="none",
        push_to_hub=False,
        disable_tqdm=True,
        log_level="error",
        log_level_replica="error",
    )


def _callbacks(options: TrainOptions, progress: ProgressSink) -> list[Any]:
    from transformers import EarlyStoppingCallback, TrainerCallback

    class SaveOnImprovement(TrainerCallback):
        """Checkpoint each step with a new best validation loss, to copy best/ from."""

        def on_evaluate(
            self, args: Any, state: Any, control: Any, metrics: Any = None, **kw: Any
        ) -> None:
            loss = (metrics or {}).get("eval_loss")
            if loss is not None and (state.best_metric is None or loss < state.best_metric):
                control.should_save = True

    class Progress(TrainerCallback):
        """Advance the caller's progress task once per optimizer step."""

        def __init__(self) -> None:
            self.stack = contextlib.ExitStack()
            self.advance: Any = None

        def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if state.is_world_process_zero:
                self.advance = self.stack.enter_context(
                    progress.task(f"fine-tuning ({options.method})", state.max_steps)
                )
                if state.global_step:
                    self.advance(state.global_step)

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            if self.advance is not None:
                self.advance(1)

        def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.stack.close()
            self.advance = None

    callbacks: list[Any] = [SaveOnImprovement(), Progress()]
    if options.early_stopping_patience is not None:
        callbacks.append(
            EarlyStoppingCallback(early_stopping_patience=options.early_stopping_patience)
        )
    return callbacks


def _silence(trainer: Any) -> None:
    # With tqdm off, Trainer prints every log dict to stdout through PrinterCallback.
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def _curves(log_history: list[dict[str, Any]]) -> list[CurvePoint]:
    points = []
    for entry in log_history:
        for key, split in (("loss", "train"), ("eval_loss", "val")):
            if key in entry:
                points.append(
                    CurvePoint(
                        int(entry["step"]),
                        float(entry.get("epoch", 0.0)),
                        split,
                        "loss",
                        float(entry[key]),
                    )
                )
    return points


def _save_outputs(
    trainer: Any,
    tokenizer: Any,
    result: TrainResult,
    ckdir: Path,
    *,
    base: Path,
    options: TrainOptions,
    data_fingerprint: str,
) -> None:
    out = result.last_dir.parent
    best_ck = ckdir / f"checkpoint-{result.best_step}"
    for folder in (result.last_dir, result.best_dir):
        if folder.exists():
            shutil.rmtree(folder)
    trainer.model.save_pretrained(result.last_dir, safe_serialization=True)
    if best_ck.is_dir():
        result.best_dir.mkdir(parents=True)
        for pattern in _MODEL_FILES:
            for f in best_ck.glob(pattern):
                shutil.copy2(f, result.best_dir / f.name)
    else:  # its checkpoint is gone (only if removed by hand): the last weights stand in
        shutil.copytree(result.last_dir, result.best_dir)
    hyper = {
        "method": options.method,
        **(
            {}
            if options.method == "full"
            else {
                "lora_r": options.lora_r,
                "lora_alpha": options.lora_alpha,
                "lora_dropout": options.lora_dropout,
                "target_modules": options.target_modules,
            }
        ),
        "epochs": options.epochs,
        "learning_rate": options.lr,
        "batch_size": options.batch_size,
        "gradient_accumulation_steps": options.gradient_accumulation_steps,
        "max_length": options.max_length,
        "batching": result.extra.get("batching", options.batching),
        "warmup_ratio": options.warmup_ratio,
        "weight_decay": options.weight_decay,
        "precision": result.precision,
    }
    for which, folder, step, loss in (
        ("best", result.best_dir, result.best_step, result.best_val_loss),
        ("last", result.last_dir, result.last_step, result.last_val_loss),
    ):
        tokenizer.save_pretrained(folder)
        metrics = {
            "step": step,
            "val_loss": loss,
            "best_step": result.best_step,
            "best_val_loss": result.best_val_loss,
            "last_step": result.last_step,
            "stopped_early": result.stopped_early,
            "train_tokens": result.train_tokens,
            "tokens_per_second": round(result.tokens_per_second, 1),
            "truncated_examples": result.truncated,
        }
        write_card(
            folder,
            which=which,
            base=base,
            method=options.method,
            data_fingerprint=data_fingerprint,
            hyperparameters=hyper,
            metrics=metrics,
        )
    tmp = out / (RESULT + ".tmp")
    tmp.write_text(json.dumps(result.to_json(), indent=1), encoding="utf-8")
    tmp.replace(out / RESULT)  # the result appears whole or not at all
    shutil.rmtree(ckdir, ignore_errors=True)


def merge_adapter(base: Path, adapter: Path, out: Path) -> Path:
    """Fold a LoRA adapter into its base model; save the full model to ``out``.

    Uses PEFT's ``merge_and_unload`` (W + B·A·alpha/r per wrapped layer), saves
    safetensors in fp32 and the adapter folder's tokenizer (else the base's).
    Returns ``out``.

    Raises:
        ConfigError: ``adapter`` has no ``adapter_config.json``.
    """
    base, adapter, out = Path(base), Path(adapter), Path(out)
    if not (adapter / "adapter_config.json").is_file():
        raise ConfigError(
            f"{adapter} is not a LoRA adapter folder (no adapter_config.json)",
            fix="pass the best/ or last/ folder of a lora fine-tune",
        )

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    quiet_library_progress()
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, adapter).merge_and_unload()
    out.mkdir(parents=True, exist_ok=True)
    merged.save_pretrained(out, safe_serialization=True)
    tok_src = adapter if (adapter / "tokenizer_config.json").is_file() else base
    AutoTokenizer.from_pretrained(tok_src).save_pretrained(out)
    return out
