"""Chats to token ids with assistant-only labels, and the collators that batch them.

A chat is a list of ``{"role", "content"}`` messages whose last one is the
assistant's answer. Only that answer (and the template's end-of-turn tokens after
it) is trained; every other position gets the label -100, which the loss ignores.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
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


#: What ``max_row_tokens: None`` budgets for the activations one pass keeps for the
#: backward pass (bytes); with the ~1.3 GB the process holds besides (Python, torch,
#: fp32 weights of a 135M model, tokenizer) that keeps a LoRA fine-tune of
#: SmolLM2-135M under 4 GB resident (measured: ``bench/train_speed.py``).
ACTIVATION_BUDGET = 2 * 1024**3


def activation_bytes_per_token(config: dict[str, Any]) -> int:
    """Bytes of fp32 activations a decoder keeps per token for the backward pass of a
    LoRA fine-tune, estimated from a ``config.json`` dict.

    Per layer and token: about 12 hidden-sized vectors (norms, q/k/v/o inputs and
    outputs, rotary copies, residuals, LoRA inputs) and 7 intermediate-sized ones (gate,
    up, activation, product and their LoRA paths), 4 bytes each. For SmolLM2-135M (30
    layers, hidden 576, intermediate 1536) that is 2.1 MB; measured: 2.2 MB of resident
    memory per token of a packed row (a 2,387-token row of LoRA on all linear layers,
    ``lora_dropout`` 0, torch 2.13 on CPU). Missing keys fall back to SmolLM2-135M's sizes.
    """
    hidden = int(config.get("hidden_size") or config.get("n_embd") or 576)
    inter = int(config.get("intermediate_size") or config.get("n_inner") or 4 * hidden)
    layers = int(config.get("num_hidden_layers") or config.get("n_layer") or 30)
    return 4 * layers * (12 * hidden + 7 * inter)


def attention_pair_cost(config: dict[str, Any]) -> float:
    """Cost of one query-key pair of attention relative to one token through the
    linear layers (forward FLOPs): ``4 * hidden`` (scores ``QK^T`` and ``AV``, a
    multiply-add each) over ``2 * (linear weights per layer)``. SmolLM2-135M: 3.3e-4,
    so a 2,200-token row's 2,200**2 pairs cost as much as 1,600 tokens.
    Kaplan et al., "Scaling Laws for Neural Language Models" (2020), table 1.
    """
    hidden = int(config.get("hidden_size") or config.get("n_embd") or 576)
    inter = int(config.get("intermediate_size") or config.get("n_inner") or 4 * hidden)
    heads = int(config.get("num_attention_heads") or config.get("n_head") or 9)
    kv = int(config.get("num_key_value_heads") or heads)
    head_dim = int(config.get("head_dim") or hidden // heads)
    linear = hidden * head_dim * (2 * heads + 2 * kv) + 3 * hidden * inter
    return 4 * hidden / (2 * linear)


BATCHINGS = ("shared-prefix", "padding-free", "length-grouped", "padded")
#: ``auto`` takes shared-prefix only when its estimated cost is at most this share of
#: padding-free's (ticket chats: 0.47; ~295-token German chats: 0.99).
SHARED_PREFIX_MARGIN = 0.8


@dataclass(frozen=True)
class BatchingPlan:
    """How a fine-tune lays out its batches; chosen by :func:`plan_batching`.

    ``mode``: the collator (:func:`make_collator`); ``examples_per_row``: examples per
    forward/backward pass (one packed row, or the rows of one padded pass);
    ``passes_per_batch``: passes whose gradients are summed into one batch of
    ``batch_size`` examples (Trainer's gradient accumulation, which divides every pass's
    summed token loss by the batch's trained tokens, so the loss is the batch's mean
    per-token loss whatever the split); ``max_row_tokens``: the cap on tokens per pass,
    ``row_tokens``: the most a pass of this data can hold (<= the cap unless one example
    alone is longer); ``costs``: estimated compute per epoch of each mode, in tokens
    through the linear layers (attention pairs converted by :func:`attention_pair_cost`);
    ``reason``: one sentence on why.
    """

    mode: str
    examples_per_row: int
    passes_per_batch: int
    max_row_tokens: int
    row_tokens: int
    costs: dict[str, float]
    reason: str

    def describe(self) -> str:
        """One line for progress output and the training result."""
        return (
            f"batching {self.mode}: {self.reason}; {self.examples_per_row} examples per "
            f"pass (rows of at most {self.row_tokens} tokens, cap {self.max_row_tokens}), "
            f"{self.passes_per_batch} passes per batch"
        )


def _rows(lengths: Sequence[int], m: int) -> list[list[int]]:
    return [list(lengths[i : i + m]) for i in range(0, len(lengths), m)]


def batching_costs(
    lengths: Sequence[int], prefix: int, m: int, pair_cost: float
) -> dict[str, float]:
    """Estimated compute of one epoch per mode, rows of ``m`` examples, in linear-token units.

    - ``padding-free``: every token once; attention ``len_i * (len_i + 1) / 2`` pairs per
      example (causal, no mask: :mod:`adaptlab.train.attention`);
    - ``shared-prefix``: a row of ``P + sum(len_i - P)`` tokens; its 4-D mask makes the
      kernel compute all ``L**2`` pairs of the row;
    - ``length-grouped``: rows sorted by length, each padded to its longest; a padding
      mask, so ``m * L_max**2`` pairs.
    """
    out = {"padding-free": 0.0, "shared-prefix": 0.0, "length-grouped": 0.0}
    for row in _rows(lengths, m):
        out["padding-free"] += sum(n + pair_cost * n * (n + 1) / 2 for n in row)
        p = min(prefix, *row)
        width = p + sum(n - p for n in row)
        out["shared-prefix"] += width + pair_cost * width * width
    for row in _rows(sorted(lengths), m):
        top = max(row)
        out["length-grouped"] += len(row) * (top + pair_cost * top * top)
    return out


def plan_batching(
    features: Sequence[dict[str, list[int]]],
    *,
    batching: str,
    batch_size: int,
    max_row_tokens: int,
    pair_cost: float,
) -> BatchingPlan:
    """Choose the batching of ``features`` (encoded chats) and the examples per pass.

    ``batching`` "auto" takes ``shared-prefix`` where :func:`batching_costs` puts it at
    most :data:`SHARED_PREFIX_MARGIN` of ``padding-free``'s cost, else ``padding-free``
    (both give the padded loss; ``padding-free`` never computes more than
    ``length-grouped`` or ``padded``); any other value is kept. Shared-prefix
    wins where the prompt every example shares is a large part of each example (the
    tokens it saves outweigh the square of the row's length), padding-free where
    examples are long and share little.

    Each pass holds ``m`` examples, the largest divisor of ``batch_size`` whose row
    (``m`` of the longest examples) fits ``max_row_tokens``, so a pass's activations,
    and with them peak memory, are bounded whatever the data; ``batch_size / m`` passes
    make one batch. Raises ValueError for an unknown ``batching`` or no features.
    """
    if batching != "auto" and batching not in BATCHINGS:
        raise ValueError(f"unknown batching {batching!r}; use auto or one of {BATCHINGS}")
    if not features:
        raise ValueError("no features to plan batches for")
    lengths = [len(f["input_ids"]) for f in features]
    sample = features[:256]
    prefix = shared_prefix_length([f["input_ids"] for f in sample], [f["labels"] for f in sample])
    longest = max(lengths)

    def row_width(mode: str, m: int) -> int:
        if mode == "shared-prefix":
            return prefix + m * (longest - prefix)
        return m * longest

    def per_row(mode: str) -> int:
        fits = [m for m in range(1, batch_size + 1) if batch_size % m == 0]
        ok = [m for m in fits if row_width(mode, m) <= max_row_tokens]
        return max(ok) if ok else 1

    costs = {
        mode: batching_costs(lengths, prefix, per_row(mode), pair_cost)[mode]
        for mode in ("shared-prefix", "padding-free", "length-grouped")
    }
    mean = sum(lengths) / len(lengths)
    if batching == "auto":
        # Padding-free computes each example exactly as alone (LoRA dropout included);
        # shared-prefix must be clearly cheaper to be worth its shared dropout mask and
        # its dense mask (whose kernel the FLOP count flatters).
        shared = costs["shared-prefix"] <= SHARED_PREFIX_MARGIN * costs["padding-free"]
        mode = "shared-prefix" if shared else "padding-free"
        reason = (
            f"chosen by estimated compute for this data (examples {mean:.0f} tokens on "
            f"average, {prefix} of them a prompt prefix all share): shared-prefix costs "
            f"{costs['shared-prefix'] / costs['padding-free']:.2f}x padding-free "
            f"(taken at <= {SHARED_PREFIX_MARGIN}x)"
        )
    else:
        mode, reason = batching, "as configured"
    m = per_row(mode)
    return BatchingPlan(
        mode=mode,
        examples_per_row=m,
        passes_per_batch=batch_size // m,
        max_row_tokens=max_row_tokens,
        row_tokens=row_width(mode, m),
        costs={k: round(v) for k, v in costs.items()},
        reason=reason,
    )


def plan_for_model(
    model_dir: Path,
    features: Sequence[dict[str, list[int]]],
    *,
    batching: str,
    batch_size: int,
    max_row_tokens: int | None,
) -> BatchingPlan:
    """:func:`plan_batching` with the model's sizes read from ``model_dir/config.json``:
    the attention pair cost, and the row cap (``max_row_tokens``, or None for what fits
    :data:`ACTIVATION_BUDGET`). An unreadable config falls back to SmolLM2-135M's sizes."""
    try:
        config = json.loads((Path(model_dir) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        config = {}
    if not isinstance(config, dict):
        config = {}
    config = (
        config.get("text_config", config) if isinstance(config.get("text_config"), dict) else config
    )
    cap = max_row_tokens or max(8, ACTIVATION_BUDGET // activation_bytes_per_token(config))
    return plan_batching(
        features,
        batching=batching,
        batch_size=batch_size,
        max_row_tokens=cap,
        pair_cost=attention_pair_cost(config),
    )


def peak_rss_bytes() -> int:
    """Peak resident memory of this process so far (bytes; ``getrusage``'s ``ru_maxrss``,
    which Linux gives in KiB and macOS in bytes); 0 where unavailable (Windows)."""
    try:
        import resource
    except ImportError:
        return 0
    peak = int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak if sys.platform == "darwin" else peak * 1024


def make_collator(batching: str, tokenizer: Any) -> TrainCollator | SharedPrefixCollator:
    """The data collator for a batching mode.

    ``shared-prefix``: :class:`SharedPrefixCollator` (one row, the batch's common
    prompt prefix computed once).
    ``padding-free``: transformers' ``DataCollatorWithFlattening`` joins a batch
    into one row of shape ``[1, total_tokens]`` with ``position_ids`` restarting
    at 0 per example, ``cu_seq_lens_q``/``cu_seq_lens_k`` (the examples' start offsets)
    and no attention mask. Under :data:`adaptlab.train.attention.VARLEN_SDPA` (what the
    trainer loads) each example attends causally to itself, without a mask; under plain
    ``sdpa`` transformers' mask builder (``masking_utils.find_packed_sequence_indices``)
    turns the restarts into a block-diagonal ``[L, L]`` mask, so no example attends to
    another either way, provided no cache is passed (see :class:`TrainCollator`).
    ``length-grouped``/``padded``: rows
    padded to the batch's longest, labels padded with -100.
    """
    from transformers import DataCollatorForSeq2Seq, DataCollatorWithFlattening

    if batching == "shared-prefix":
        return SharedPrefixCollator()
    if batching == "padding-free":
        flat = DataCollatorWithFlattening(  # type: ignore[no-untyped-call]
            return_position_ids=True, separator_id=IGNORE, return_flash_attn_kwargs=True
        )
        return TrainCollator(flat)
    return TrainCollator(DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE))
