"""The local trainer on a tiny random Llama: learning, what changes, outputs, merge, resume."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from adaptlab.core.errors import ConfigError
from adaptlab.train import trainer as trainer_mod
from adaptlab.train.options import TrainOptions
from tests.train.conftest import MEMO_TRAIN, SEED, RecordingProgress, Trained, memorise_options

# peft reads a property transformers 5 deprecated; nothing here can change that.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")


def test_loss_falls_on_a_memorisation_set(trained: Trained) -> None:
    r = trained.result
    val = [p.value for p in r.curves if p.split == "val"]
    train = [p.value for p in r.curves if p.split == "train"]
    assert len(train) == r.last_step == 24  # one train point per optimizer step
    assert [p.step for p in r.curves if p.split == "val"] == [8, 16, 24]
    assert val[-1] < 0.5 * train[0], (train[0], val)
    assert r.best_val_loss == min(val) and r.last_val_loss == val[-1]
    assert r.best_step in (8, 16, 24) and not r.stopped_early
    assert r.precision == "fp32" and r.method == "lora" and r.truncated == 0


def test_every_lora_parameter_changed_and_no_base_parameter(trained: Trained) -> None:
    lora = [k for k in trained.before if "lora_" in k]
    assert lora and len(lora) == 2 * 7 * 2  # A and B of 7 linear layers in 2 blocks ('all-linear')
    unchanged = [k for k in lora if trained.before[k].equal(trained.after[k])]
    assert not unchanged
    base = [k for k in trained.before if "lora_" not in k]
    assert base and all(trained.before[k].equal(trained.after[k]) for k in base)
    from safetensors.torch import load_file

    saved = load_file(trained.result.last_dir / "adapter_model.safetensors")
    assert saved and all("lora_" in k for k in saved)


def test_outputs_card_tokenizer_and_nothing_else(trained: Trained) -> None:
    r, out = trained.result, trained.out
    assert sorted(p.name for p in out.iterdir()) == [
        "best",
        "last",
        "result.json",
    ]  # checkpoints removed
    for folder in (r.best_dir, r.last_dir):
        names = {p.name for p in folder.iterdir()}
        assert {
            "adapter_config.json",
            "adapter_model.safetensors",
            "README.md",
            "tokenizer.json",
        } <= names
        assert not names & {"training_args.bin", "optimizer.pt", "rng_state.pth"}
        card = (folder / "README.md").read_text()
        assert str(trained.base) in card and "val_loss" in card and "tokens_per_second" in card
    assert f"| best_step | {r.best_step} |" in (r.best_dir / "README.md").read_text()
    assert trained.cwd_files == []  # no runs/, trainer_output/ or caches beside the caller
    assert r.train_tokens > 0 and r.tokens_per_second > 0
    assert trained.progress == [("fine-tuning (lora)", 24, 24)]
    assert trainer_mod.TrainResult.from_json(json.loads((out / "result.json").read_text())) == r


def test_best_is_the_checkpoint_with_the_lowest_val_loss(trained: Trained) -> None:
    from safetensors.torch import load_file

    best = load_file(trained.result.best_dir / "adapter_model.safetensors")
    last = load_file(trained.result.last_dir / "adapter_model.safetensors")
    same = all(best[k].equal(last[k]) for k in best)
    assert same == (trained.result.best_step == trained.result.last_step)


def test_a_finished_run_is_returned_without_training(
    trained: Trained, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*a: Any, **kw: Any) -> None:
        raise AssertionError("trained again")

    monkeypatch.setattr("transformers.Trainer.train", boom)
    again = trainer_mod.train_causal_lm(
        trained.base, MEMO_TRAIN, MEMO_TRAIN, trained.out, memorise_options(), seed=SEED
    )
    assert again == trained.result


def test_merged_model_gives_the_logits_of_base_plus_adapter(
    trained: Trained, tmp_path: Path
) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    merged_dir = trainer_mod.merge_adapter(
        trained.base, trained.result.best_dir, tmp_path / "merged"
    )
    assert (merged_dir / "model.safetensors").is_file() and (
        merged_dir / "tokenizer.json"
    ).is_file()
    ids = torch.tensor([[1, 9690, 198, 2683, 359, 253, 5356, 2, 198, 1, 520, 9531, 198]])
    merged = AutoModelForCausalLM.from_pretrained(merged_dir).eval()  # type: ignore[no-untyped-call]
    peft = PeftModel.from_pretrained(
        AutoModelForCausalLM.from_pretrained(trained.base), trained.result.best_dir
    ).eval()
    plain = AutoModelForCausalLM.from_pretrained(trained.base).eval()  # type: ignore[no-untyped-call]
    with torch.inference_mode():
        a, b, c = (m(input_ids=ids).logits for m in (merged, peft, plain))
    torch.testing.assert_close(a, b, atol=1e-4, rtol=0)
    assert (a - c).abs().max() > 1e-2  # the adapter did change the outputs


class Killed(Exception):
    pass


@pytest.fixture(scope="module")
def killed(trained: Trained, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ``out`` of the shared run's arguments, crashed right after its step-8 checkpoint."""
    from transformers import TrainerCallback

    class KillAfterFirstCheckpoint(TrainerCallback):
        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            raise Killed

    real = trainer_mod._callbacks
    out = tmp_path_factory.mktemp("killed") / "out"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(trainer_mod, "_callbacks", lambda *a: [*real(*a), KillAfterFirstCheckpoint()])
        with pytest.raises(Killed):
            trainer_mod.train_causal_lm(
                trained.base, MEMO_TRAIN, MEMO_TRAIN, out, memorise_options(), seed=SEED
            )
    assert [p.name for p in (out / "checkpoints").glob("checkpoint-*")] == ["checkpoint-8"]
    assert not (out / "result.json").exists()
    return out


def _same_adapter(a: Path, b: Path) -> bool:
    from safetensors.torch import load_file

    want, got = (
        load_file(a / "adapter_model.safetensors"),
        load_file(b / "adapter_model.safetensors"),
    )
    return want.keys() == got.keys() and all(want[k].equal(got[k]) for k in want)


def _rerun(trained: Trained, out: Path) -> tuple[Any, RecordingProgress, list[str]]:
    """The shared run's call again into ``out``: its result, progress and notes."""
    notes: list[str] = []
    progress = RecordingProgress()

    def note(message: str) -> None:
        notes.append(message)

    progress.note = note  # type: ignore[method-assign]
    result = trainer_mod.train_causal_lm(
        trained.base,
        MEMO_TRAIN,
        MEMO_TRAIN,
        out,
        memorise_options(),
        seed=SEED,
        progress=progress,  # type: ignore[arg-type]
    )
    return result, progress, notes


def test_kill_and_rerun_resumes_to_the_same_weights(
    trained: Trained, killed: Path, tmp_path: Path
) -> None:
    """The same call again after a crash ends where an uninterrupted run (the shared
    fixture, same arguments) ends, bit for bit."""
    out = tmp_path / "out"
    shutil.copytree(killed, out)
    resumed, progress, notes = _rerun(trained, out)
    assert not notes
    assert progress.tasks == [["fine-tuning (lora)", 24, 24]]  # 8 done before, 16 now
    assert _same_adapter(trained.result.last_dir, resumed.last_dir)
    assert _same_adapter(trained.result.best_dir, resumed.best_dir)
    assert resumed.curves == trained.result.curves
    assert resumed.best_step == trained.result.best_step
    assert resumed.train_tokens == trained.result.train_tokens
    assert not (out / "checkpoints").exists()


def test_a_crafted_checkpoint_is_never_unpickled(
    trained: Trained, killed: Path, tmp_path: Path
) -> None:
    """A checkpoint whose RNG file would run code when unpickled is dropped, with a note;
    training starts over and (same seed) still ends with the uninterrupted weights."""
    import torch

    out = tmp_path / "out"
    shutil.copytree(killed, out)
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self) -> tuple[Any, ...]:
            return (Path.touch, (marker,))

    torch.save({"python": Payload()}, out / "checkpoints/checkpoint-8/rng_state.pth")
    result, _, notes = _rerun(trained, out)
    assert not marker.exists()
    assert len(notes) == 1 and "checkpoint-8" in notes[0] and "training from the start" in notes[0]
    assert _same_adapter(trained.result.last_dir, result.last_dir)


def test_every_batching_mode_trains_alike(tiny_base: Path, tmp_path: Path) -> None:
    """Two optimizer steps over the same four chats: shared-prefix, packed and padded
    batches give the same losses and count the same tokens seen."""
    losses, tokens = {}, {}
    for batching in ("shared-prefix", "padding-free", "length-grouped"):
        opts = memorise_options(
            epochs=2, batch_size=4, eval_steps=1, lora_dropout=0.0, batching=batching
        )
        r = trainer_mod.train_causal_lm(
            tiny_base, MEMO_TRAIN, MEMO_TRAIN, tmp_path / batching, opts, seed=1
        )
        losses[batching] = [p.value for p in r.curves]
        tokens[batching] = r.train_tokens
    assert len(losses["shared-prefix"]) == 4  # train and val loss at steps 1 and 2
    assert losses["shared-prefix"] == pytest.approx(losses["length-grouped"], rel=1e-4)
    assert losses["padding-free"] == pytest.approx(losses["length-grouped"], rel=1e-4)
    assert tokens["shared-prefix"] == tokens["padding-free"] == tokens["length-grouped"] > 0


def test_checkpoints_of_other_arguments_are_not_resumed(trained: Trained, tmp_path: Path) -> None:
    out = tmp_path / "out"
    stale = out / "checkpoints" / "checkpoint-8"
    stale.mkdir(parents=True)
    (stale / "trainer_state.json").write_text("{}")
    start = time.perf_counter()
    trainer_mod.train_causal_lm(
        trained.base, MEMO_TRAIN[:2], MEMO_TRAIN[:2], out, memorise_options(epochs=1), seed=SEED
    )
    assert time.perf_counter() - start < 60
    assert (out / "result.json").is_file() and not (out / "checkpoints").exists()


def test_qlora_on_cpu_is_a_clear_config_error(tiny_base: Path, tmp_path: Path) -> None:
    with pytest.raises(
        ConfigError, match="QLoRA needs a CUDA GPU and bitsandbytes; use method: lora on CPU"
    ):
        trainer_mod.train_causal_lm(
            tiny_base, MEMO_TRAIN, MEMO_TRAIN, tmp_path, TrainOptions(method="qlora"), seed=0
        )


def test_options_refuse_unknown_keys_and_pick_the_learning_rate() -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError):
        TrainOptions(lora_rank=8)  # type: ignore[call-arg]
    assert TrainOptions().lr == 2e-4 and TrainOptions(method="full").lr == 2e-5
    assert TrainOptions(eval_steps=5).checkpoint_steps == 5
    assert all(f.description for f in TrainOptions.model_fields.values())
