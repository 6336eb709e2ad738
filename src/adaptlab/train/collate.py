"""Chats to token ids with assistant-only labels, and the collators that batch them.

A chat is a list of ``{"role", "content"}`` messages whose last one is the
assistant's answer. Only that answer (and the template's end-of-turn tokens after
it) is trained; every other position gets the label -100, which the loss ignores.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from adaptlab.core.errors import DataError

IGNORE = -100  # the label PyTorch's cross-entropy and transformers' losses skip

Chat = list[dict[str, str]]


@dataclass
class Encoded:
    """Token ids and labels of a set of chats.

    ``features`` holds one ``{"input_ids": [...], "labels": [...]}`` per kept
    chat; ``truncated`` counts chats cut at ``max_length``; ``dropped`` counts
    those left without a single trained token by the cut (not in ``features``).
    """

    features: list[dict[str, list[int]]] = field(default_factory=list)
    truncated: int = 0
    dropped: int = 0

    @property
    def tokens(self) -> int:
        """Tokens in all kept chats (none of them padding)."""
        return sum(len(f["input_ids"]) for f in self.features)


def _ids(rendered: Any) -> list[int]:
    # transformers 5 returns a BatchEncoding from a tokenizing apply_chat_template, 4.x a list.
    ids = rendered["input_ids"] if hasattr(rendered, "keys") else rendered
    return [int(i) for i in ids]


def encode_chat(tokenizer: Any, chat: Chat, *, index: int = 0) -> dict[str, list[int]]:
    """Token ids of one chat, labelled for loss on the last (assistant) message only.

    The prompt (every message before the answer, rendered with
    ``add_generation_prompt=True``) must be a token prefix of the whole chat's
    rendering, so the answer's span is exactly what follows it.

    Raises:
        DataError: the chat is empty, its last message is not the assistant's,
            the tokenizer has no chat template, or the template renders the
            prompt differently inside the whole chat (the span is unknowable).
    """
    if not chat or chat[-1].get("role") != "assistant":
        raise DataError(
            f"training example {index} does not end with an assistant message",
            fix="each training chat must be a list of {role, content} messages "
            "whose last role is 'assistant'",
        )
    if not getattr(tokenizer, "chat_template", None):
        raise DataError(
            "the base model's tokenizer has no chat template",
            fix="use an instruction-tuned base model (its tokenizer_config.json has a "
            "chat_template) or add one to the tokenizer",
        )
    full = _ids(tokenizer.apply_chat_template(chat, tokenize=True))
    prompt = _ids(
        tokenizer.apply_chat_template(chat[:-1], tokenize=True, add_generation_prompt=True)
    )
    if len(prompt) >= len(full) or full[: len(prompt)] != prompt:
        raise DataError(
            f"training example {index}: the chat template renders the prompt differently when the "
            "answer follows, so the answer's tokens cannot be found",
            fix="use a chat template whose generation prompt is a prefix of the rendered chat "
            "(ChatML, Llama 3 and most instruction templates are)",
        )
    return {"input_ids": full, "labels": [IGNORE] * len(prompt) + full[len(prompt) :]}


def encode_chats(tokenizer: Any, chats: Sequence[Chat], max_length: int) -> Encoded:
    """Encode every chat, cutting each at ``max_length`` tokens (the end goes).

    A chat whose cut leaves no trained token is dropped and counted in
    ``dropped`` (it would only add a zero-weight row).
    """
    out = Encoded()
    for i, chat in enumerate(chats):
        feat = encode_chat(tokenizer, chat, index=i)
        if len(feat["input_ids"]) > max_length:
            out.truncated += 1
            feat = {k: v[:max_length] for k, v in feat.items()}
            if all(label == IGNORE for label in feat["labels"]):
                out.dropped += 1
                continue
        out.features.append(feat)
    return out


class TrainCollator:
    """Wraps a transformers collator for causal-LM training on answers only.

    Adds to each batch:

    - ``use_cache=False``. transformers 5 builds a ``DynamicCache`` whenever
      ``use_cache`` is on, and it defaults to ``config.use_cache`` (True for chat
      models) even in training. With a cache present, ``masking_utils`` skips the
      packed-sequence check, so a padding-free row becomes one long causal
      sequence and each example attends to the ones before it (measured: logits
      off by 20 on a tiny Llama; ``tests/train/test_collate.py``).
    - ``logits_to_keep`` (the positions whose next token is trained, shape
      ``[K]``) and ``shift_labels`` (those next tokens, ``[batch, K]``; -100
      where a row's position is not trained). The model then projects only K
      hidden states onto the vocabulary instead of every token, and its own loss
      (``ForCausalLMLoss``) uses the given shifted labels. A ticket chat trains
      about 4 of its 90 tokens, and SmolLM2's 49,152-word head is a fifth of its
      forward cost, so this is most of that fifth saved, with the same loss.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __call__(self, features: list[dict[str, Any]], return_tensors: str | None = None) -> Any:
        import torch

        batch = self.inner(features, return_tensors) if return_tensors else self.inner(features)
        labels = batch["labels"]
        shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE)
        keep = (shifted != IGNORE).any(dim=0).nonzero().flatten()
        batch["logits_to_keep"] = keep
        batch["shift_labels"] = shifted[:, keep].contiguous()
        batch["use_cache"] = False
        return batch


class SharedPrefixCollator:
    """Packs a batch into one row that holds the batch's shared prompt prefix once.

    Chats rendered from one prompt template start with the same tokens (system
    prompt, instruction, label list): 56 of the 87 tokens of a support-ticket chat.
    Within one optimizer step every example computes exactly the same hidden states
    for that prefix, so this collator lays out ``prefix + suffix_1 + ... + suffix_n``
    in a single row of shape ``[1, L]`` with ``L = P + sum(len_i - P)``:

    - ``position_ids``: ``0..P-1`` for the prefix, then ``P..len_i-1`` for each
      suffix (each example sees the positions it would see alone);
    - ``attention_mask``: a boolean ``[1, 1, L, L]`` mask (True = attend; transformers
      passes a 4D mask through unchanged): a suffix attends to the prefix and
      causally to itself, never to another suffix;
    - ``shift_labels``/``logits_to_keep``: each position's next-token target within its
      own example, kept where an answer token follows, as in :class:`TrainCollator`;
    - ``num_example_tokens``: the batch's tokens counted per example (the prefix n
      times), which the trainer reports as tokens seen; it never reaches the model.

    ``P`` is the longest common token prefix of the batch that ends before every
    example's first trained token, so the prefix's own targets are all ignored
    and the loss and its gradient equal those of the examples packed separately
    (tested: logits per example, and the loss). The one difference: LoRA dropout
    draws one mask for the shared prefix instead of one per example; with
    ``lora_dropout: 0`` the computation is the same. This is prefix sharing as in
    Wang et al., "Accelerating Direct Preference Optimization with Prefix Sharing"
    (2024), applied to supervised fine-tuning.
    """

    def __call__(self, features: list[dict[str, Any]], return_tensors: str | None = None) -> Any:
        import torch

        ids = [list(f["input_ids"]) for f in features]
        labels = [list(f["labels"]) for f in features]
        p = shared_prefix_length(ids, labels)
        row, pos, seg, row_labels = ids[0][:p], list(range(p)), [0] * p, labels[0][:p]
        targets = [IGNORE] * p  # labels[i][p] is ignored for every i, so is the last one's
        for i, (x, lab) in enumerate(zip(ids, labels, strict=True), start=1):
            row += x[p:]
            row_labels += lab[p:]
            pos += range(p, len(x))
            seg += [i] * (len(x) - p)
            targets += [*lab[p + 1 :], IGNORE]
        segment = torch.tensor(seg)
        n = len(row)
        causal = torch.ones(n, n, dtype=torch.bool).tril()
        mask = causal & ((segment[None, :] == segment[:, None]) | (segment[None, :] == 0))
        shifted = torch.tensor([targets])
        keep = (shifted[0] != IGNORE).nonzero().flatten()
        return {
            "input_ids": torch.tensor([row]),
            "position_ids": torch.tensor([pos]),
            "attention_mask": mask[None, None],
            "labels": torch.tensor([row_labels]),
            "shift_labels": shifted[:, keep].contiguous(),
            "logits_to_keep": keep,
            "use_cache": False,
            "num_example_tokens": sum(len(x) for x in ids),
        }


def shared_prefix_length(ids: Sequence[Sequence[int]], labels: Sequence[Sequence[int]]) -> int:
    """Length ``P`` of the longest common prefix of ``ids`` such that position ``P`` is
    still untrained in every example (``labels[i][P] == IGNORE``); 0 when none.

    For a single example that is its prompt minus one token.
    """
    limit = min(
        next((j for j, lab in enumerate(labs) if lab != IGNORE), len(labs)) for labs in labels
    )
    p = 0
    first = ids[0]
    while p < limit - 1 and all(x[p] == first[p] for x in ids):
        p += 1
    return p


def make_collator(batching: str, tokenizer: Any) -> TrainCollator | SharedPrefixCollator:
    """The data collator for a batching mode.

    ``shared-prefix``: :class:`SharedPrefixCollator` (one row, the batch's common
    prompt prefix computed once).
    ``padding-free``: transformers' ``DataCollatorWithFlattening`` joins a batch
    into one row of shape ``[1, total_tokens]`` with ``position_ids`` restarting
    at 0 per example and no attention mask; transformers' mask builder
    (``masking_utils.find_packed_sequence_indices``) turns those restarts into a
    block-diagonal causal mask, so no example attends to another, provided no
    cache is passed (see :class:`TrainCollator`). ``length-grouped``/``padded``: rows
    padded to the batch's longest, labels padded with -100.
    """
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if batching == "shared-prefix":
        return SharedPrefixCollator()
    if batching == "padding-free":
        flat = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE)  # type: ignore[no-untyped-call]
        return TrainCollator(flat)
    return TrainCollator(DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE))
