"""Training speed of adaptlab's local LoRA trainer against plain Trainer and trl's SFTTrainer.

Same model (SmolLM2-135M-Instruct, the bundled GGUF converted once), same chats
(support tickets: user = instruction + ticket, assistant = label), same
hyperparameters (LoRA r=16/alpha=32/dropout 0.05 on all linear layers, lr 2e-4,
8 examples per step, one epoch, seed 0). Each run is timed inside
``Trainer.train`` (a final validation pass included, as adaptlab does one) and
counts the non-padding tokens Trainer reports seen (``num_input_tokens_seen``).
The validation loss of every run is computed afterwards by one function here
(token-weighted cross-entropy over the answers' tokens), so the losses compare.

Runs: adaptlab with each batching mode (shared-prefix, its default, then
padding-free and length-grouped) and precision; a plain ``Trainer`` + PEFT script with
padded random batches in fp32 (transformers' defaults); ``SFTTrainer`` with
padded, padding-free or packed batches, in bf16 and fp32 (the fastest is the
reference).

    python bench/train_speed.py [--examples 256] [--val 32] [--only adaptlab,trainer,sft]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Literal, TypedDict

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


class Hyperparameters(TypedDict):
    lora_r: int
    lora_alpha: int
    lora_dropout: float
    lr: float
    batch_size: int
    epochs: float


Batching = Literal["shared-prefix", "padding-free", "length-grouped"]
Precision = Literal["bf16", "fp32"]

HP: Hyperparameters = {
    "lora_r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "lr": 2e-4,
    "batch_size": 8,
    "epochs": 1.0,
}
TICKETS = (
    Path(__file__).resolve().parents[1] / "src/adaptlab/examples/support_tickets/tickets.jsonl"
)
NEVER = 10**6  # eval/save every NEVER steps: only the final-step evaluation happens


def load_chats(n_train: int, n_val: int) -> tuple[list[Any], list[Any]]:
    rows = [json.loads(line) for line in TICKETS.read_text().splitlines() if line.strip()]
    random.Random(0).shuffle(rows)
    labels = sorted({r["label"] for r in rows})
    instruction = (
        f"Sort this support ticket into one label ({', '.join(labels)}). Reply with the label only."
    )

    def chat(r: dict[str, str]) -> list[dict[str, str]]:
        return [
            {"role": "user", "content": f"{instruction}\n\nTicket: {r['text']}"},
            {"role": "assistant", "content": r["label"]},
        ]

    return [chat(r) for r in rows[:n_train]], [chat(r) for r in rows[n_train : n_train + n_val]]


def lora_config() -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=HP["lora_r"],
        lora_alpha=HP["lora_alpha"],
        lora_dropout=HP["lora_dropout"],
        target_modules="all-linear",
        task_type="CAUSAL_LM",
    )


def val_loss(model: Any, feats: list[dict[str, list[int]]]) -> float:
    """Mean cross-entropy (nats) over every trained (answer) token of the validation set."""
    import torch

    from adaptlab.train.collate import make_collator

    collate = make_collator("padded", TOK)
    model.eval()
    total, count = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(feats), 8):
            batch = collate(feats[i : i + 8])
            labels = batch.pop("labels")
            del batch["logits_to_keep"], batch["shift_labels"]  # every position's logits
            logits = model(**batch).logits.float()
            shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
            mask = shift_labels != -100
            loss = torch.nn.functional.cross_entropy(
                shift_logits[mask], shift_labels[mask], reduction="sum"
            )
            total += float(loss)
            count += int(mask.sum())
    return total / count


#: What both baselines (Trainer and SFTTrainer) are given alike, besides output_dir.
BASELINE_ARGS: dict[str, Any] = {
    "per_device_train_batch_size": HP["batch_size"],
    "per_device_eval_batch_size": HP["batch_size"],
    "num_train_epochs": HP["epochs"],
    "learning_rate": HP["lr"],
    "warmup_steps": 0.05,
    "eval_strategy": "steps",
    "eval_steps": NEVER,
    "save_strategy": "no",
    "report_to": "none",
    "use_cpu": True,
    "seed": 0,
    "disable_tqdm": True,
    "log_level": "error",
    "include_num_input_tokens_seen": "non_padding",
}


def measure(trainer: Any, model: Any) -> dict[str, Any]:
    """Train a baseline, timed inside ``Trainer.train``; its tokens/s, val loss and steps."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    tokens = int(trainer.state.num_input_tokens_seen)
    return {
        "tokens": tokens,
        "tokens_per_s": tokens / wall,
        "val_loss": val_loss(model, VAL_FEATS),
        "steps": trainer.state.global_step,
    }


def run_adaptlab(
    base: Path, train: list[Any], val: list[Any], batching: Batching, precision: Precision
) -> dict[str, Any]:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from adaptlab.train import TrainOptions, train_causal_lm

    opts = TrainOptions(
        lora_r=HP["lora_r"],
        lora_alpha=HP["lora_alpha"],
        lora_dropout=HP["lora_dropout"],
        learning_rate=HP["lr"],
        batch_size=HP["batch_size"],
        epochs=HP["epochs"],
        max_length=MAX_LENGTH,
        batching=batching,
        eval_steps=NEVER,
        early_stopping_patience=None,
        precision=precision,
    )
    out = Path(tempfile.mkdtemp(prefix="adaptlab-bench-"))
    try:
        r = train_causal_lm(base, train, val, out, opts, seed=0)
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), r.last_dir)
        loss = val_loss(model, VAL_FEATS)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "tokens": r.train_tokens,
        "tokens_per_s": r.tokens_per_second,
        "val_loss": loss,
        "steps": r.last_step,
    }


def run_trainer_padded(base: Path) -> dict[str, Any]:
    """What a plain script does: Trainer + PEFT, padded random batches, fp32."""
    from peft import get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        DataCollatorForSeq2Seq,
        Trainer,
        TrainingArguments,
        set_seed,
    )

    set_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), lora_config())
    out = tempfile.mkdtemp(prefix="trainer-bench-")
    args = TrainingArguments(
        output_dir=out,
        **BASELINE_ARGS,
        remove_unused_columns=False,
    )
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=TRAIN_FEATS,
        eval_dataset=VAL_FEATS,
        data_collator=DataCollatorForSeq2Seq(TOK, padding=True, label_pad_token_id=-100),
    )
    try:
        return measure(trainer, model)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def run_sft(base: Path, train: list[Any], val: list[Any], mode: str, bf16: bool) -> dict[str, Any]:
    """trl's SFTTrainer on prompt/completion rows (loss on the completion only)."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, set_seed
    from trl import SFTConfig, SFTTrainer

    def rows(chats: list[Any]) -> Any:
        return Dataset.from_list([{"prompt": c[:-1], "completion": c[-1:]} for c in chats])

    set_seed(0)
    out = tempfile.mkdtemp(prefix="sft-bench-")
    args = SFTConfig(
        output_dir=out,
        **BASELINE_ARGS,
        bf16=bf16,
        gradient_checkpointing=False,  # trl turns it on by default; it only slows a CPU run
        # trl refuses max_length with padding_free and no packing; no chat here reaches it.
        max_length=None if mode == "padding-free" else MAX_LENGTH,
        padding_free=mode == "padding-free",
        packing=mode == "packing",
        completion_only_loss=True,
        dataset_num_proc=None,
    )
    model = AutoModelForCausalLM.from_pretrained(base)
    trainer = SFTTrainer(
        model=model,
        args=args,
        train_dataset=rows(train),
        eval_dataset=rows(val),
        processing_class=TOK,
        peft_config=lora_config(),
    )
    try:
        return measure(trainer, trainer.model)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    global TOK, TRAIN_FEATS, VAL_FEATS, MAX_LENGTH
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=256, help="training chats (default 256)")
    ap.add_argument("--val", type=int, default=32, help="validation chats (default 32)")
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument(
        "--only", default="adaptlab,trainer,sft", help="comma-separated: adaptlab,trainer,sft"
    )
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default); on a machine other work also uses, "
        "fewer threads than cores avoids OpenMP threads spinning against it",
    )
    args = ap.parse_args()
    MAX_LENGTH = args.max_length
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    only = set(args.only.split(","))

    from adaptlab.backends.gguf import resolve_model
    from adaptlab.backends.quiet import quiet_library_progress
    from adaptlab.backends.sentence_transformers import bf16_supported

    quiet_library_progress()
    import datasets
    import torch
    from transformers import AutoTokenizer

    datasets.disable_progress_bars()
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    base = resolve_model("smollm2-135m-instruct")
    TOK = AutoTokenizer.from_pretrained(base)
    train, val = load_chats(args.examples, args.val)
    from adaptlab.train.collate import encode_chats

    TRAIN_FEATS = encode_chats(TOK, train, MAX_LENGTH).features
    VAL_FEATS = encode_chats(TOK, val, MAX_LENGTH).features
    lengths = [len(f["input_ids"]) for f in TRAIN_FEATS]
    native_bf16 = bf16_supported("cpu")
    print(
        f"SmolLM2-135M-Instruct, {len(train)} train / {len(val)} val chats, "
        f"{sum(lengths)} train tokens (length {min(lengths)}-{max(lengths)}), "
        f"torch threads {torch.get_num_threads()}, native CPU bf16: {native_bf16}",
        flush=True,
    )

    runs: dict[str, dict[str, Any]] = {}

    def record(name: str, fn: Any, *a: Any) -> None:
        gc.collect()
        try:
            runs[name] = fn(*a)
        except Exception as exc:  # one baseline failing should not hide the others' figures
            runs[name] = {"error": f"{type(exc).__name__}: {exc}"}
        r = runs[name]
        if "error" in r:
            print(f"{name:34s} failed: {r['error']}", flush=True)
        else:
            print(
                f"{name:34s} {r['tokens_per_s']:8.1f} tokens/s  val loss {r['val_loss']:.4f}  "
                f"steps {r['steps']}  tokens {r['tokens']}",
                flush=True,
            )

    precisions = ["bf16", "fp32"] if native_bf16 else ["fp32"]
    if "adaptlab" in only:
        for batching in ("shared-prefix", "padding-free", "length-grouped"):
            for precision in precisions:
                record(
                    f"adaptlab {batching} {precision}",
                    run_adaptlab,
                    base,
                    train,
                    val,
                    batching,
                    precision,
                )
    if "trainer" in only:
        record("Trainer+PEFT padded fp32", run_trainer_padded, base)
    if "sft" in only:
        for mode in ("padded", "padding-free", "packing"):
            for precision in precisions:
                record(
                    f"SFTTrainer {mode} {precision}",
                    run_sft,
                    base,
                    train,
                    val,
                    mode,
                    precision == "bf16",
                )

    ok = {k: v for k, v in runs.items() if "error" not in v}
    ours = {k: v for k, v in ok.items() if k.startswith("adaptlab")}
    from adaptlab.train import TrainOptions
    from adaptlab.train.trainer import resolve_precision

    default_name = f"adaptlab {TrainOptions().batching} {resolve_precision('auto', 'cpu')}"
    default = ok.get(default_name)
    sft = {k: v for k, v in ok.items() if k.startswith("SFTTrainer")}
    print(f"command: python bench/train_speed.py {' '.join(sys.argv[1:])}")
    if default and "Trainer+PEFT padded fp32" in ok:
        ref = ok["Trainer+PEFT padded fp32"]
        speedup = default["tokens_per_s"] / ref["tokens_per_s"]
        print(
            f"{default_name} (the default) / padded fp32 Trainer: {speedup:.2f}x "
            f"(goal >= 2x); val loss {100 * (default['val_loss'] / ref['val_loss'] - 1):+.1f}%"
        )
    if default and sft:
        name, best = max(sft.items(), key=lambda kv: kv[1]["tokens_per_s"])
        print(
            f"{default_name} (the default) / fastest SFTTrainer ({name}): "
            f"{default['tokens_per_s'] / best['tokens_per_s']:.2f}x (goal >= 1.3x); "
            f"val loss {100 * (default['val_loss'] / best['val_loss'] - 1):+.1f}%"
        )
    batching = TrainOptions().batching
    bf, fp = ok.get(f"adaptlab {batching} bf16"), ok.get(f"adaptlab {batching} fp32")
    if bf and fp:  # what precision 'auto' is chosen on
        print(
            f"adaptlab {batching} bf16 / fp32: {bf['tokens_per_s'] / fp['tokens_per_s']:.2f}x "
            f"tokens/s; val loss {100 * (bf['val_loss'] / fp['val_loss'] - 1):+.1f}%"
        )
    if ours:
        name, best = max(ours.items(), key=lambda kv: kv[1]["tokens_per_s"])
        print(f"fastest adaptlab setting: {name} ({best['tokens_per_s']:.1f} tokens/s)")
    if args.json:
        args.json.write_text(
            json.dumps({"args": vars(args) | {"json": str(args.json)}, "runs": runs}, indent=1)
        )
    sys.exit(0 if default else 1)


TOK: Any = None
TRAIN_FEATS: list[dict[str, list[int]]] = []
VAL_FEATS: list[dict[str, list[int]]] = []
MAX_LENGTH = 256

if __name__ == "__main__":
    main()
