"""Training speed of adaptlab's local LoRA trainer against plain Trainer and trl's SFTTrainer.

Same model (SmolLM2-135M-Instruct, the bundled GGUF converted once), same chats,
same hyperparameters (LoRA r=16/alpha=32/dropout 0.05 on all linear layers, lr 2e-4,
8 examples per step, one epoch, seed 0), on two data sets:

- ``short``: adaptlab's support-ticket example (user = instruction + ticket, assistant =
  label): ~87 tokens a chat, 56 of them a prompt every chat shares;
- ``long``: the shared German request-routing set (``shared/data/german_intents``,
  MASSIVE de-DE, CC BY 4.0), rendered through adaptlab's own German ``classify-short``
  template; each chat's input joins requests of one domain until it holds 180-240
  tokens, so a chat is ~250-300 tokens and shares nothing beyond the system prompt
  (the shape of a user's German support tickets).

Each run is a child process (so its peak resident memory, ``ru_maxrss``, is its own),
timed inside ``Trainer.train`` (a final validation pass included, as adaptlab does
one) and counting the non-padding tokens Trainer reports seen
(``num_input_tokens_seen``). The validation loss of every run is computed afterwards
by one function here (token-weighted cross-entropy over the answers' tokens), so the
losses compare.

Runs per data set: adaptlab's default (``batching: auto``, fp32 on a CPU; ``--all``
adds every batching mode and bf16); a plain ``Trainer`` + PEFT script with padded
random batches in fp32 (transformers' defaults); ``SFTTrainer`` with padded,
padding-free and packed batches (``--sft-precisions``: bf16, its fastest on a CPU with
AMX, by default; the fastest is the reference).

    python bench/train_speed.py [--datasets short,long] [--short-examples 128]
        [--long-examples 48] [--only adaptlab,trainer,sft] [--all] [--json FILE]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import random
import shutil
import subprocess
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


Batching = Literal["auto", "shared-prefix", "padding-free", "length-grouped"]
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
GERMAN = Path(__file__).resolve().parents[2] / "shared/data/german_intents"
NEVER = 10**6  # eval/save every NEVER steps: only the final-step evaluation happens


def load_chats(dataset: str, n_train: int, n_val: int) -> tuple[list[Any], list[Any]]:
    """``n_train`` and ``n_val`` chats of data set ``dataset`` ("short" or "long")."""
    if dataset == "long":
        return german_chats(n_train, n_val)
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


def german_chats(n_train: int, n_val: int) -> tuple[list[Any], list[Any]]:
    """Long German chats: requests of one MASSIVE domain joined to 180-240 tokens, rendered
    by adaptlab's German ``classify-short`` template (system: the 18 domains), answered
    with the domain. Train inputs come from train.csv, validation inputs from test.csv."""
    import csv

    from adaptlab.prompts import PromptTemplate

    if not GERMAN.is_dir():
        sys.exit(f"{GERMAN} not found: the long chats need shared/data beside the checkout")
    template = PromptTemplate("classify-short", language="de")

    def read(name: str) -> dict[str, list[str]]:
        by: dict[str, list[str]] = {}
        with (GERMAN / name).open(encoding="utf-8") as fh:
            for row in csv.DictReader(fh):
                by.setdefault(row["label"], []).append(row["text"])
        return by

    def make(by: dict[str, list[str]], n: int, rng: random.Random) -> list[Any]:
        labels = sorted(by)
        out = []
        for _ in range(n):
            label = rng.choice(labels)
            pool = by[label][:]
            rng.shuffle(pool)
            target, parts = rng.randint(180, 240), list[str]()
            while pool and len(TOK(". ".join(parts))["input_ids"]) < target:
                parts.append(pool.pop())
            variables = {
                "input": ". ".join(parts) + ".",
                "labels": {name: "" for name in labels},
                "examples": [],
                "context": "",
                "output": "label",
                "reasoning": False,
                "schema_json": "",
                "instruction": "",
                "cite": False,
            }
            messages = template.render(variables).messages
            out.append(
                [{"role": m.role, "content": m.content} for m in messages]
                + [{"role": "assistant", "content": label}]
            )
        return out

    rng = random.Random(0)
    return make(read("train.csv"), n_train, rng), make(read("test.csv"), n_val, rng)


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


def peak_rss() -> int:
    """This process's peak resident memory so far, bytes (each run is its own process)."""
    from adaptlab.train.collate import peak_rss_bytes

    return peak_rss_bytes()


def measure(trainer: Any, model: Any) -> dict[str, Any]:
    """Train a baseline, timed inside ``Trainer.train``; its tokens/s, val loss and steps."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    peak = peak_rss()
    tokens = int(trainer.state.num_input_tokens_seen)
    return {
        "peak_rss": peak,
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
        peak = peak_rss()
        model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(base), r.last_dir)
        loss = val_loss(model, VAL_FEATS)
    finally:
        shutil.rmtree(out, ignore_errors=True)
    return {
        "tokens": r.train_tokens,
        "tokens_per_s": r.tokens_per_second,
        "val_loss": loss,
        "steps": r.last_step,
        "peak_rss": peak,
        "batching": r.extra.get("batching_reason", ""),
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
    from trl.trainer.sft_config import SFTConfig
    from trl.trainer.sft_trainer import SFTTrainer

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


#: Every run the bench knows: name -> (kind, setting, precision).
def all_runs(
    native_bf16: bool,
    every: bool,
    sft_precisions: list[str],
    adaptlab_precisions: list[str] = (),  # type: ignore[assignment]
) -> dict[str, tuple[str, str, str]]:
    precisions = ["bf16", "fp32"] if native_bf16 else ["fp32"]
    from adaptlab.train import TrainOptions
    from adaptlab.train.trainer import resolve_precision

    runs: dict[str, tuple[str, str, str]] = {}
    default = (TrainOptions().batching, resolve_precision("auto", "cpu"))
    runs[f"adaptlab {default[0]} {default[1]} (default)"] = ("adaptlab", *default)
    for precision in adaptlab_precisions:
        if precision != default[1] and (precision == "fp32" or native_bf16):
            runs[f"adaptlab {default[0]} {precision}"] = ("adaptlab", default[0], precision)
    if every:
        for batching in ("shared-prefix", "padding-free", "length-grouped"):
            for precision in precisions:
                runs[f"adaptlab {batching} {precision}"] = ("adaptlab", batching, precision)
    runs["Trainer+PEFT padded fp32"] = ("trainer", "padded", "fp32")
    for mode in ("padded", "padding-free", "packing"):
        for precision in sft_precisions:
            if precision == "fp32" or native_bf16:
                runs[f"SFTTrainer {mode} {precision}"] = ("sft", mode, precision)
    return runs


def prepare(dataset: str, n_train: int, n_val: int) -> tuple[Path, list[Any], list[Any]]:
    """Load the tokenizer, chats and encoded features of ``dataset`` into the globals."""
    global TOK, TRAIN_FEATS, VAL_FEATS, MAX_LENGTH
    from adaptlab.backends.gguf import resolve_model
    from adaptlab.backends.quiet import quiet_library_progress

    quiet_library_progress()
    import datasets
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    datasets.disable_progress_bars()
    hf_logging.set_verbosity_error()  # type: ignore[no-untyped-call]
    base = resolve_model("smollm2-135m-instruct")
    TOK = AutoTokenizer.from_pretrained(base)
    MAX_LENGTH = 512 if dataset == "long" else 256
    train, val = load_chats(dataset, n_train, n_val)
    from adaptlab.train.collate import encode_chats

    TRAIN_FEATS = encode_chats(TOK, train, MAX_LENGTH).features
    VAL_FEATS = encode_chats(TOK, val, MAX_LENGTH).features
    return base, train, val


def child(dataset: str, n_train: int, n_val: int, spec: tuple[str, str, str]) -> dict[str, Any]:
    """One measured run, in this (child) process."""
    base, train, val = prepare(dataset, n_train, n_val)
    kind, setting, precision = spec
    if kind == "adaptlab":
        return run_adaptlab(base, train, val, setting, precision)  # type: ignore[arg-type]
    if kind == "trainer":
        return run_trainer_padded(base)
    return run_sft(base, train, val, setting, precision == "bf16")


def spawn(
    dataset: str, n_train: int, n_val: int, spec: tuple[str, str, str], threads: int, timeout: float
) -> dict[str, Any]:
    """Run :func:`child` in a fresh process; its JSON result, or ``{"error": ...}``."""
    cmd = [
        sys.executable,
        __file__,
        "--child",
        json.dumps({"dataset": dataset, "n_train": n_train, "n_val": n_val, "spec": spec}),
        "--threads",
        str(threads),
    ]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [x for x in done.stdout.splitlines() if x.startswith("RESULT ")]
    if done.returncode or not lines:
        tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {done.returncode}: {tail}"}
    result: dict[str, Any] = json.loads(lines[-1][len("RESULT ") :])
    return result


def report(dataset: str, runs: dict[str, dict[str, Any]], goal_trainer: float) -> bool:
    """Print the ratios of adaptlab's default to the baselines; True if every goal is met."""
    ok = {k: v for k, v in runs.items() if "error" not in v}
    default_name = next((k for k in ok if k.endswith("(default)")), None)
    if default_name is None:
        print(f"[{dataset}] adaptlab's default failed; no ratios")
        return False
    default = ok[default_name]
    met = bool(default["peak_rss"] <= 4e9)
    print(
        f"[{dataset}] {default_name}: peak RSS {default['peak_rss'] / 1e9:.2f} GB (goal <= 4 GB)"
        f"; {default.get('batching', '')}"
    )
    ref = ok.get("Trainer+PEFT padded fp32")
    if ref:
        speedup = default["tokens_per_s"] / ref["tokens_per_s"]
        loss = 100 * (default["val_loss"] / ref["val_loss"] - 1)
        met = met and speedup >= goal_trainer and loss <= 2
        print(
            f"[{dataset}] default / Trainer+PEFT padded fp32: {speedup:.2f}x tokens/s "
            f"(goal >= {goal_trainer}x); val loss {loss:+.1f}% (goal: at most +2%)"
        )
    sft = {k: v for k, v in ok.items() if k.startswith("SFTTrainer")}
    if sft:
        name, best = max(sft.items(), key=lambda kv: kv[1]["tokens_per_s"])
        speedup = default["tokens_per_s"] / best["tokens_per_s"]
        loss = 100 * (default["val_loss"] / best["val_loss"] - 1)
        met = met and speedup >= 1.3 and loss <= 2
        print(
            f"[{dataset}] default / fastest SFTTrainer ({name}): {speedup:.2f}x tokens/s "
            f"(goal >= 1.3x); val loss {loss:+.1f}% (goal: at most +2%)"
        )
    return met


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="short,long", help="comma-separated: short,long")
    ap.add_argument("--short-examples", type=int, default=32, help="short training chats")
    ap.add_argument("--long-examples", type=int, default=16, help="long training chats")
    ap.add_argument("--val", type=int, default=16, help="validation chats per data set")
    ap.add_argument(
        "--only", default="adaptlab,trainer,sft", help="comma-separated: adaptlab,trainer,sft"
    )
    ap.add_argument("--all", action="store_true", help="every adaptlab batching and precision")
    ap.add_argument(
        "--sft-precisions",
        default="bf16",
        help="SFTTrainer precisions to try (bf16,fp32); bf16 was its fastest here",
    )
    ap.add_argument(
        "--adaptlab-precisions",
        default="",
        help="adaptlab's default batching at these precisions too (bf16,fp32)",
    )
    ap.add_argument("--timeout", type=float, default=900, help="seconds per run")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="torch threads (0: torch's default); on a machine other work also uses, "
        "fewer threads than cores avoids OpenMP threads spinning against it",
    )
    args = ap.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    if args.child:
        job = json.loads(args.child)
        result = child(job["dataset"], job["n_train"], job["n_val"], tuple(job["spec"]))
        print("RESULT " + json.dumps(result), flush=True)
        return

    from adaptlab.backends.sentence_transformers import bf16_supported
    from adaptlab.train.collate import shared_prefix_length

    native_bf16 = bf16_supported("cpu")
    only = set(args.only.split(","))
    specs = {
        name: spec
        for name, spec in all_runs(
            native_bf16,
            args.all,
            args.sft_precisions.split(","),
            [p for p in args.adaptlab_precisions.split(",") if p],
        ).items()
        if spec[0] in only
    }
    print(
        f"SmolLM2-135M-Instruct, torch threads {torch.get_num_threads()}, native CPU bf16: "
        f"{native_bf16}; command: python bench/train_speed.py {' '.join(sys.argv[1:])}",
        flush=True,
    )
    everything: dict[str, dict[str, Any]] = {}
    verdicts = {}
    for dataset in args.datasets.split(","):
        n_train = args.long_examples if dataset == "long" else args.short_examples
        prepare(dataset, n_train, args.val)
        lengths = [len(f["input_ids"]) for f in TRAIN_FEATS]
        prefix = shared_prefix_length(
            [f["input_ids"] for f in TRAIN_FEATS], [f["labels"] for f in TRAIN_FEATS]
        )
        print(
            f"[{dataset}] {len(TRAIN_FEATS)} train / {len(VAL_FEATS)} val chats, "
            f"{sum(lengths)} train tokens (length {min(lengths)}-{max(lengths)}, mean "
            f"{sum(lengths) / len(lengths):.0f}; prompt prefix all share: {prefix} tokens)",
            flush=True,
        )
        runs: dict[str, dict[str, Any]] = {}
        for name, spec in specs.items():
            gc.collect()
            r = spawn(dataset, n_train, args.val, spec, args.threads, args.timeout)
            runs[name] = r
            if "error" in r:
                print(f"[{dataset}] {name:38s} failed: {r['error']}", flush=True)
            else:
                print(
                    f"[{dataset}] {name:38s} {r['tokens_per_s']:7.1f} tokens/s  val loss "
                    f"{r['val_loss']:.4f}  peak RSS {r['peak_rss'] / 1e9:.2f} GB  steps "
                    f"{r['steps']}  tokens {r['tokens']}",
                    flush=True,
                )
        verdicts[dataset] = report(dataset, runs, 2.0 if dataset == "short" else 1.5)
        everything[dataset] = runs
    print("goals met: " + ", ".join(f"{k} {'yes' if v else 'no'}" for k, v in verdicts.items()))
    if args.json:
        args.json.write_text(
            json.dumps(
                {"args": vars(args) | {"json": str(args.json)}, "runs": everything}, indent=1
            )
        )
    sys.exit(0 if verdicts and all(verdicts.values()) else 1)


TOK: Any = None
TRAIN_FEATS: list[dict[str, list[int]]] = []
VAL_FEATS: list[dict[str, list[int]]] = []
MAX_LENGTH = 256

if __name__ == "__main__":
    main()
