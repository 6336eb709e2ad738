"""Chat encoding (assistant-only labels) and the batches built from it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from adaptlab.core.errors import DataError
from adaptlab.train.collate import IGNORE, encode_chat, encode_chats, make_collator
from tests.train.conftest import chats


@pytest.fixture(scope="module")
def tok(tokenizer_dir: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(tokenizer_dir)


@pytest.fixture(scope="module")
def model(tiny_base: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_base, attn_implementation="sdpa").eval()  # type: ignore[no-untyped-call]


def test_only_the_answer_and_its_end_of_turn_are_trained(tok: Any) -> None:
    chat = [
        {"role": "system", "content": "Sort tickets."},
        {"role": "user", "content": "my card was charged twice"},
        {"role": "assistant", "content": "billing"},
        {"role": "user", "content": "and again"},
        {"role": "assistant", "content": "refund"},
    ]
    feat = encode_chat(tok, chat)
    ids, labels = feat["input_ids"], feat["labels"]
    assert len(ids) == len(labels)
    trained = [i for i, label in enumerate(labels) if label != IGNORE]
    # one contiguous span at the very end, labelled with the tokens themselves
    assert trained == list(range(trained[0], len(ids)))
    assert [labels[i] for i in trained] == ids[trained[0] :]
    assert tok.decode([ids[i] for i in trained]) == "refund<|im_end|>\n"
    assert "billing" in tok.decode(ids[: trained[0]])  # the earlier answer is context, not trained
    assert tok.decode(ids[: trained[0]]).endswith("<|im_start|>assistant\n")


def test_a_template_that_renders_the_prompt_differently_is_refused(tok: Any) -> None:
    odd = tok.__class__.from_pretrained(tok.name_or_path)
    # the generation prompt says 'Answer:' but a rendered answer follows 'assistant:'
    odd.chat_template = (
        "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
        "{% if add_generation_prompt %}Answer:{% endif %}"
    )
    with pytest.raises(DataError, match="renders the prompt differently"):
        encode_chat(odd, chats(1)[0], index=3)
    with pytest.raises(DataError, match="does not end with an assistant"):
        encode_chat(tok, chats(1)[0][:2])


def test_long_examples_are_cut_and_counted(tok: Any) -> None:
    data = chats(3)
    data[1][1]["content"] = "word " * 300
    full = [len(encode_chat(tok, c)["input_ids"]) for c in data]
    enc = encode_chats(tok, data, max_length=64)
    assert full[0] <= 64 and full[1] > 64
    assert (
        enc.truncated == 1 and enc.dropped == 1 and len(enc.features) == 2
    )  # answer lost: dropped
    enc = encode_chats(tok, data, max_length=full[1] - 2)
    assert (
        enc.truncated == 1 and enc.dropped == 0 and len(enc.features[1]["input_ids"]) == full[1] - 2
    )


def test_a_packed_batch_gives_each_example_its_own_logits(tok: Any, model: Any) -> None:
    """Padding-free rows must not attend across examples (sdpa on CPU, transformers 5)."""
    import torch

    feats = encode_chats(tok, chats(3), max_length=512).features
    feats[1] = encode_chat(
        tok, [{"role": "user", "content": "x " * 40}, {"role": "assistant", "content": "y"}]
    )
    batch = make_collator("padding-free", tok)(feats)
    assert batch["input_ids"].shape[0] == 1 and batch["use_cache"] is False
    assert "attention_mask" not in batch  # the restarts of position_ids are the only boundaries
    inputs = {
        k: v for k, v in batch.items() if k not in ("labels", "shift_labels", "logits_to_keep")
    }
    with torch.inference_mode():
        packed = model(**inputs).logits[0]  # every position's logits, as Trainer's batch gives them
        start = 0
        for f in feats:
            alone = model(input_ids=torch.tensor([f["input_ids"]])).logits[0]
            torch.testing.assert_close(
                packed[start : start + len(alone)], alone, atol=1e-4, rtol=1e-5
            )
            start += len(alone)
    assert start == packed.shape[0]


@pytest.mark.parametrize("batching", ["padded", "length-grouped"])
def test_padded_and_packed_batches_give_the_same_loss(tok: Any, model: Any, batching: str) -> None:
    import torch

    feats = encode_chats(tok, chats(4), max_length=512).features
    feats[2] = encode_chat(
        tok, [{"role": "user", "content": "z " * 25}, {"role": "assistant", "content": "billing"}]
    )
    packed = make_collator("padding-free", tok)(feats)
    padded = make_collator(batching, tok)(feats)
    assert padded["input_ids"].shape[0] == 4 and int((padded["attention_mask"] == 0).sum()) > 0
    assert int((padded["labels"] != IGNORE).sum()) == int((packed["labels"] != IGNORE).sum())
    with torch.inference_mode():
        a = model(**packed).loss  # as Trainer calls it: logits only where an answer token follows
        b = model(**padded).loss
        full = model(
            input_ids=padded["input_ids"],
            attention_mask=padded["attention_mask"],
            labels=padded["labels"],
        ).loss
    torch.testing.assert_close(a, full, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(b, full, atol=1e-5, rtol=1e-5)
    assert len(packed["logits_to_keep"]) == int((packed["labels"] != IGNORE).sum())
    with torch.inference_mode():
        assert model(**packed).logits.shape[1] == len(packed["logits_to_keep"])


def test_a_shared_prefix_batch_gives_each_example_its_own_logits(tok: Any, model: Any) -> None:
    """The batch's common prompt prefix is held once; every example still gets, at every one
    of its positions, the logits it gets alone (no suffix sees another)."""
    import torch

    from adaptlab.train.collate import shared_prefix_length

    feats = encode_chats(tok, chats(3), max_length=512).features
    ids, labels = [f["input_ids"] for f in feats], [f["labels"] for f in feats]
    p = shared_prefix_length(ids, labels)
    assert "Sort the ticket" in tok.decode(ids[0][:p])  # system prompt and more, shared
    assert len({x[p] for x in ids}) > 1  # the prefix is as long as it can be
    batch = make_collator("shared-prefix", tok)(feats)
    n = batch["input_ids"].shape[1]
    assert n == p + sum(len(x) - p for x in ids)
    assert batch["num_example_tokens"] == sum(map(len, ids))
    assert batch["attention_mask"].shape == (1, 1, n, n)
    with torch.inference_mode():
        row = model(
            input_ids=batch["input_ids"],
            position_ids=batch["position_ids"],
            attention_mask=batch["attention_mask"],
            use_cache=False,
        ).logits[0]
        start = p
        for x in ids:
            alone = model(input_ids=torch.tensor([x])).logits[0]
            torch.testing.assert_close(row[:p], alone[:p], atol=1e-4, rtol=1e-5)
            got = row[start : start + len(x) - p]
            torch.testing.assert_close(got, alone[p:], atol=1e-4, rtol=1e-5)
            start += len(x) - p
    assert start == n


def test_a_shared_prefix_batch_gives_the_padded_loss(tok: Any, model: Any) -> None:
    """Same loss as padded rows, including an example that shares little (a different system
    prompt) and a single-example batch."""
    import torch

    feats = encode_chats(tok, chats(4), max_length=512).features
    feats[2] = encode_chat(
        tok, [{"role": "user", "content": "z " * 25}, {"role": "assistant", "content": "billing"}]
    )
    for batch_feats in (feats, feats[:1], feats[:2]):
        shared = dict(make_collator("shared-prefix", tok)(batch_feats))
        shared.pop("num_example_tokens")
        padded = make_collator("padded", tok)(batch_feats)
        assert len(shared["logits_to_keep"]) == int((padded["labels"] != IGNORE).sum())
        with torch.inference_mode():
            a = model(**shared).loss
            b = model(**padded).loss
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)
