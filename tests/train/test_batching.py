"""The batching chosen by cost, the row cap, and padding-free attention without a mask."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from adaptlab.train.collate import (
    IGNORE,
    attention_pair_cost,
    encode_chat,
    make_collator,
    plan_batching,
)
from tests.train.conftest import MEMO_TRAIN, chats, memorise_options

# SmolLM2-135M-Instruct's config.json sizes (the bundled model the defaults are set for).
SMOLLM2 = {
    "hidden_size": 576,
    "intermediate_size": 1536,
    "num_hidden_layers": 30,
    "num_attention_heads": 9,
    "num_key_value_heads": 3,
}


def synthetic(n: int, prefix: int, suffix: tuple[int, int], seed: int = 0) -> list[dict[str, Any]]:
    """``n`` encoded examples: ``prefix`` tokens every example shares, then ``suffix`` (a
    range) tokens of its own, the last 3 of them trained (the answer)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        own = [rng.randrange(1000, 30000) for _ in range(rng.randint(*suffix))]
        ids = list(range(10, 10 + prefix)) + own
        out.append({"input_ids": ids, "labels": [IGNORE] * (len(ids) - 3) + ids[-3:]})
    return out


def plan(feats: list[dict[str, Any]], **kw: Any) -> Any:
    args = {"batching": "auto", "batch_size": 8, "max_row_tokens": 1024}
    return plan_batching(feats, pair_cost=attention_pair_cost(SMOLLM2), **{**args, **kw})


def test_short_chats_from_one_template_share_their_prefix() -> None:
    """The support-ticket shape: 87 tokens, 56 of them the shared prompt."""
    p = plan(synthetic(64, 56, (25, 37)))
    assert p.mode == "shared-prefix"
    assert p.costs["shared-prefix"] < 0.6 * p.costs["padding-free"]
    assert p.examples_per_row == 8 and p.passes_per_batch == 1  # one row of ~300 tokens
    assert "56 of them a prompt prefix" in p.describe() and "costs 0.4" in p.describe()


def test_long_chats_that_share_little_are_packed_without_a_mask() -> None:
    """The German-ticket shape: ~270 tokens, a 30-token shared prompt."""
    p = plan(synthetic(64, 30, (220, 280)))
    assert p.mode == "padding-free"
    assert p.costs["padding-free"] < p.costs["shared-prefix"]
    assert p.costs["padding-free"] < p.costs["length-grouped"]
    # 8 x 310 tokens would be 2,480 in one row; the cap splits the batch into passes
    assert p.examples_per_row == 2 and p.passes_per_batch == 4 and p.row_tokens <= 1024


@pytest.mark.parametrize("cap", [8, 300, 700, 1024, 5000])
@pytest.mark.parametrize("mode", ["auto", "shared-prefix", "padding-free", "length-grouped"])
def test_a_pass_never_exceeds_the_row_cap(mode: str, cap: int) -> None:
    feats = synthetic(40, 20, (40, 120), seed=3)
    longest = max(len(f["input_ids"]) for f in feats)
    p = plan(feats, batching=mode, max_row_tokens=cap)
    assert p.examples_per_row * p.passes_per_batch == 8
    if cap >= longest:
        assert p.row_tokens <= cap
    else:  # one example alone is longer than the cap: one example per pass, never more
        assert p.examples_per_row == 1
    # what the collator actually builds stays within the plan's row
    collate = make_collator(p.mode, tokenizer=None) if p.mode != "length-grouped" else None
    for i in range(0, len(feats), p.examples_per_row):
        chunk = feats[i : i + p.examples_per_row]
        if collate is not None:
            assert collate(chunk)["input_ids"].numel() <= max(p.row_tokens, longest)
        else:
            assert len(chunk) * max(len(f["input_ids"]) for f in chunk) <= max(
                p.row_tokens, longest
            )


def test_an_unknown_batching_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown batching 'packed'"):
        plan(synthetic(4, 5, (5, 9)), batching="packed")


@pytest.fixture(scope="module")
def tok(tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="module")
def varlen_model(tiny_base: Path) -> Any:
    """The tiny float32 Llama under the varlen attention the trainer loads."""
    from transformers import AutoModelForCausalLM

    from adaptlab.train.attention import register

    return AutoModelForCausalLM.from_pretrained(  # type: ignore[no-untyped-call]
        tiny_base, attn_implementation=register(), dtype="float32"
    ).eval()


def _packed_feats(tok: Any) -> list[dict[str, list[int]]]:
    feats = [encode_chat(tok, c) for c in chats(3)]
    feats.insert(
        1,
        encode_chat(
            tok, [{"role": "user", "content": "x " * 40}, {"role": "assistant", "content": "y"}]
        ),
    )
    return feats


def _row_logits(model: Any, feats: list[dict[str, list[int]]], tok: Any) -> Any:
    import torch

    batch = make_collator("padding-free", tok)(feats)
    assert "attention_mask" not in batch  # no [L, L] mask is built for the row
    inputs = {
        k: v for k, v in batch.items() if k not in ("labels", "shift_labels", "logits_to_keep")
    }
    with torch.inference_mode():
        return model(**inputs).logits[0]


def test_a_packed_row_gives_each_example_its_own_loss(tok: Any, varlen_model: Any) -> None:
    """Per-example loss from the packed row equals the example's loss alone (float32,
    to 1e-5), and the row's loss is their trained-token-weighted mean."""
    import torch

    feats = _packed_feats(tok)
    row = _row_logits(varlen_model, feats, tok)
    start, sums, counts = 0, [], []
    with torch.inference_mode():
        for f in feats:
            n = len(f["input_ids"])
            labels = torch.tensor(f["labels"])
            alone = varlen_model(input_ids=torch.tensor([f["input_ids"]]), labels=labels[None]).loss
            mask = labels[1:] != IGNORE
            packed = torch.nn.functional.cross_entropy(
                row[start : start + n - 1][mask], labels[1:][mask]
            )
            torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-5)
            sums.append(float(packed) * int(mask.sum()))
            counts.append(int(mask.sum()))
            start += n
        batch = make_collator("padding-free", tok)(feats)
        whole = varlen_model(**batch).loss
    assert start == row.shape[0]
    assert float(whole) == pytest.approx(sum(sums) / sum(counts), rel=1e-5)


def test_changing_one_example_leaves_the_others_logits_alone(tok: Any, varlen_model: Any) -> None:
    import torch

    feats = _packed_feats(tok)
    before = _row_logits(varlen_model, feats, tok)
    other = [dict(f) for f in feats]
    ids = list(other[1]["input_ids"])
    ids[5:25] = [ids[5] + 1] * 20  # a different text, same length
    other[1] = {"input_ids": ids, "labels": other[1]["labels"]}
    after = _row_logits(varlen_model, other, tok)
    a, b = len(feats[0]["input_ids"]), len(feats[0]["input_ids"]) + len(feats[1]["input_ids"])
    assert not torch.allclose(before[a + 6 : b], after[a + 6 : b], atol=1e-3)  # it did change
    torch.testing.assert_close(before[:a], after[:a], atol=1e-5, rtol=0)
    torch.testing.assert_close(before[b:], after[b:], atol=1e-5, rtol=0)


def test_padded_batches_still_use_their_padding_mask(tok: Any, varlen_model: Any) -> None:
    """Under the varlen attention a padded batch (evaluation, length-grouped) gives the
    packed row's loss: the padding mask is still built and applied."""
    import torch

    feats = _packed_feats(tok)
    with torch.inference_mode():
        packed = varlen_model(**make_collator("padding-free", tok)(feats)).loss
        padded = varlen_model(**make_collator("padded", tok)(feats)).loss
    torch.testing.assert_close(packed, padded, atol=1e-5, rtol=1e-5)


def test_a_batch_split_into_capped_passes_trains_like_one_pass(
    tiny_base: Path, tmp_path: Path
) -> None:
    """One optimizer step over a batch of 4, as one row or as 4 passes of one example (the
    cap below the two-example row; the mode may differ): the same train loss, and the
    same val loss after the update, so the same gradient; the result names the choice."""
    from adaptlab.train import trainer as trainer_mod

    curves, extras = {}, {}
    for cap in (None, 40):
        opts = memorise_options(
            epochs=1, batch_size=4, eval_steps=1, lora_dropout=0.0, max_row_tokens=cap
        )
        r = trainer_mod.train_causal_lm(
            tiny_base, MEMO_TRAIN, MEMO_TRAIN, tmp_path / str(cap), opts, seed=1
        )
        curves[cap] = [(p.step, p.split, p.value) for p in r.curves]
        extras[cap] = r.extra
    assert extras[None]["examples_per_pass"] == 4 and extras[40]["examples_per_pass"] == 1
    assert extras[40]["batching"] == "padding-free"  # one example a pass shares no prefix
    assert (
        extras[None]["peak_rss_bytes"] > 0 and "estimated compute" in extras[40]["batching_reason"]
    )
    assert [c[:2] for c in curves[None]] == [c[:2] for c in curves[40]]
    assert [c[2] for c in curves[None]] == pytest.approx([c[2] for c in curves[40]], rel=1e-4)
