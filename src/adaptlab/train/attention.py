"""Padding-free ("varlen") attention on any device: one causal attention per packed example.

A padding-free batch is one row of shape ``[1, sum(len_i)]`` whose ``position_ids``
restart at 0 where each example starts (transformers' ``DataCollatorWithFlattening``).
FlashAttention-2 reads those boundaries (``cu_seq_lens_q``) and attends within each
example; it needs a CUDA GPU. With ``sdpa`` transformers instead builds a boolean
block-diagonal ``[1, 1, L, L]`` mask over the whole row, and the kernel then computes
all ``L**2`` query-key pairs (on a CPU the mask also rules out the fused causal path):
eight 270-token chats make ``L = 2,160``, 9 heads x 30 layers of 2,160 x 2,160 scores.

:data:`VARLEN_SDPA` is an attention implementation registered with transformers'
``AttentionInterface`` (and its mask builder with ``AttentionMaskInterface``): for a
packed row it builds no mask and calls ``torch.nn.functional.scaled_dot_product_attention``
with ``is_causal=True`` once per example, so attention costs ``sum(len_i**2)`` and may
use the fused kernels; any other batch (a padded batch, a 4-D mask such as the
shared-prefix row's) goes to transformers' own ``sdpa`` unchanged. This is the
semantics of FlashAttention-2's ``flash_attn_varlen_func`` (Dao 2023), computed one
segment at a time.
"""

from __future__ import annotations

import itertools
from typing import Any

VARLEN_SDPA = "adaptlab_varlen_sdpa"

_registered = False


def register() -> str:
    """Register :data:`VARLEN_SDPA` with transformers (idempotent); return its name.

    Pass the name as ``attn_implementation`` to ``from_pretrained`` (or
    ``model.set_attn_implementation``). Imports torch and transformers.
    """
    global _registered
    if not _registered:
        from transformers import AttentionInterface
        from transformers.masking_utils import AttentionMaskInterface

        AttentionInterface.register(VARLEN_SDPA, varlen_sdpa_attention)
        AttentionMaskInterface.register(VARLEN_SDPA, _varlen_mask)
        _registered = True
    return VARLEN_SDPA


def _varlen_mask(*args: Any, attention_mask: Any = None, **kwargs: Any) -> Any:
    """No mask for an unpadded batch (packed or not: the attention finds the examples
    from ``position_ids``); transformers' sdpa mask where there is padding."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None:
        return None
    kwargs["attention_mask"] = attention_mask
    return sdpa_mask(*args, **kwargs)


def segment_bounds(position_ids: Any) -> list[list[int]]:
    """Start offsets of the examples in each row, plus the row's length, from
    ``position_ids`` of shape ``[batch, L]`` (an example starts where its position is 0,
    or where the position does not follow the previous one).

    Returns one list per row, e.g. ``[[0, 90, 175, 260]]`` for three packed examples.
    """
    import torch

    pos = position_ids
    breaks = torch.ones_like(pos, dtype=torch.bool)
    breaks[:, 1:] = pos[:, 1:] != pos[:, :-1] + 1
    length = pos.shape[1]
    return [[*row.nonzero().flatten().tolist(), length] for row in breaks]


def varlen_sdpa_attention(
    module: Any,
    query: Any,
    key: Any,
    value: Any,
    attention_mask: Any,
    dropout: float = 0.0,
    scaling: float | None = None,
    **kwargs: Any,
) -> tuple[Any, None]:
    """transformers' attention-function contract: ``query`` ``[B, H, L, D]``, ``key`` and
    ``value`` ``[B, H_kv, L, D]``; returns ``([B, L, H, D], None)``.

    Without a mask, each row is split at its example boundaries (``cu_seq_lens_q`` when
    the collator gave them for a one-row batch, else from ``position_ids``) and each
    example attends causally to itself only. With a mask, or with a cache (generation),
    this is transformers' ``sdpa_attention_forward``.
    """
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    q_len = query.shape[2]
    if attention_mask is not None or position_ids is None or key.shape[2] != q_len:
        return sdpa_attention_forward(
            module, query, key, value, attention_mask, dropout=dropout, scaling=scaling, **kwargs
        )
    import torch
    import torch.nn.functional as F

    cu = kwargs.get("cu_seq_lens_q")
    if cu is not None and query.shape[0] == 1:
        bounds = [[int(x) for x in cu]]
    else:
        bounds = segment_bounds(position_ids.expand(query.shape[0], -1))
    gqa = query.shape[1] != key.shape[1]
    rows = []
    for b, cuts in enumerate(bounds):
        parts = [
            F.scaled_dot_product_attention(
                query[b : b + 1, :, s:e],
                key[b : b + 1, :, s:e],
                value[b : b + 1, :, s:e],
                dropout_p=dropout,
                scale=scaling,
                is_causal=True,
                enable_gqa=gqa,
            )
            for s, e in itertools.pairwise(cuts)
        ]
        rows.append(parts[0] if len(parts) == 1 else torch.cat(parts, dim=2))
    out = rows[0] if len(rows) == 1 else torch.cat(rows, dim=0)
    return out.transpose(1, 2).contiguous(), None
