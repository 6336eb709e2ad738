"""Constrained answers of a local causal LM: each choice's log-likelihood as the answer.

For a closed question (``params.choices``) the model does not generate: each choice is
scored as the assistant's answer after the prompt, as lm-eval-harness scores multiple
choice (the log-likelihood of each continuation; Gao et al., "A framework for few-shot
language model evaluation", 2021-). A choice's tokens are what the chat template writes
for it as the assistant's turn: the label's text and the end-of-turn token, so a label
that is a prefix of another (``bill`` of ``billing``) cannot win by stopping early.

One forward pass per batch, in which each input's prompt appears once: a row holds
``prompt + choice_1 + ... + choice_n``, packed as the trainer's
:class:`~adaptlab.train.collate.SharedPrefixCollator` packs a shared prefix (Wang et
al., "Accelerating Direct Preference Optimization with Prefix Sharing", 2024): each
choice's position ids continue from the prompt's end, and a 4D attention mask lets a
choice's tokens see the prompt and themselves, never another choice. So the prompt is
computed once per input, not once per choice, and only the positions whose next token
belongs to a choice are projected onto the vocabulary (``logits_to_keep``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from adaptlab.llm.types import ChatRequest, ChoiceScores, PermanentError


def choice_ids(
    tokenizer: Any,
    render: Callable[[ChatRequest], str],
    request: ChatRequest,
    eos_ids: frozenset[int],
) -> list[list[int]]:
    """The token ids of each of ``request.params.choices`` as the assistant's answer.

    With a chat template: the rendering of the chat with the choice as the assistant's
    message, after the rendered prompt (``render(request)``, which ends with the
    template's assistant turn start), tokenized on its own and cut after the first
    end-of-sequence token. Without a template, or where the template renders the prompt
    differently once an answer follows: the choice's text (after a space when there is
    no template) and the tokenizer's end-of-sequence token.

    Raises:
        PermanentError: the request ends with an assistant message (a prefill), which a
            scored answer cannot continue.
    """
    messages = request.messages
    if messages and messages[-1].role == "assistant":
        raise PermanentError(
            "a constrained (scored) answer cannot continue an assistant prefill; remove "
            "prefill or set answer: free",
            kind="refused",
        )
    chat = bool(getattr(tokenizer, "chat_template", None))
    prompt = render(request)
    eos = (
        tokenizer.eos_token_id if tokenizer.eos_token_id is not None else min(eos_ids, default=None)
    )
    tail = [] if eos is None else [int(eos)]
    out = []
    for choice in request.params.choices:
        ids: list[int] | None = None
        if chat:
            turns = [{"role": m.role, "content": m.content} for m in messages]
            turns.append({"role": "assistant", "content": choice})
            full: str = tokenizer.apply_chat_template(turns, tokenize=False)
            if full.startswith(prompt) and len(full) > len(prompt):
                suffix = full[len(prompt) :]
                ids = _ids(tokenizer, suffix)
                end = next((j for j, t in enumerate(ids) if t in eos_ids), None)
                ids = ids[: end + 1] if end is not None else _ids(tokenizer, suffix.rstrip()) + tail
        if ids is None:
            ids = _ids(tokenizer, choice if chat else " " + choice) + tail
        out.append(ids)
    return out


def _ids(tokenizer: Any, text: str) -> list[int]:
    return [int(i) for i in tokenizer(text, add_special_tokens=False)["input_ids"]]


def score_choices(
    model: Any,
    device: str,
    prompts: Sequence[Sequence[int]],
    choices: Sequence[Sequence[Sequence[int]]],
    pad_id: int,
) -> list[ChoiceScores]:
    """Each choice's summed log-probability after its prompt, in one forward pass.

    ``prompts[i]``: input ``i``'s prompt ids; ``choices[i][k]``: the ids of its choice
    ``k`` (:func:`choice_ids`). Rows are left-padded to the longest; returns one
    :class:`ChoiceScores` per input (natural log, summed over the choice's tokens).
    """
    import torch

    rows: list[list[int]] = []
    positions: list[list[int]] = []
    segments: list[list[int]] = []
    starts: list[list[int]] = []
    for prompt, conts in zip(prompts, choices, strict=True):
        p = len(prompt)
        ids, pos, seg, begin = list(prompt), list(range(p)), [0] * p, []
        for k, cont in enumerate(conts, start=1):
            begin.append(len(ids))
            ids += cont
            pos += range(p, p + len(cont))
            seg += [k] * len(cont)
        rows.append(ids)
        positions.append(pos)
        segments.append(seg)
        starts.append(begin)
    width = max(len(r) for r in rows)
    offsets = [width - len(r) for r in rows]
    input_ids = torch.tensor([[pad_id] * o + r for o, r in zip(offsets, rows, strict=True)])
    position_ids = torch.tensor([[0] * o + q for o, q in zip(offsets, positions, strict=True)])
    seg_ids = torch.tensor([[-1] * o + s for o, s in zip(offsets, segments, strict=True)])
    real = seg_ids >= 0
    # query q may see key k: causal, both real, and k in the prompt or in q's own choice.
    same = (seg_ids[:, :, None] == seg_ids[:, None, :]) | (seg_ids[:, None, :] == 0)
    allowed = torch.ones(width, width, dtype=torch.bool).tril() & same
    allowed &= real[:, :, None] & real[:, None, :]
    allowed |= torch.eye(width, dtype=torch.bool)  # a padding row sees itself: no NaN
    dtype = next(model.parameters()).dtype
    # Additive, not boolean: eager attention adds the mask, sdpa takes either.
    mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)

    # (row, column whose logits predict the token, token, choice) for every choice token.
    wanted: list[tuple[int, int, int, int]] = []
    for i, (prompt, conts) in enumerate(zip(prompts, choices, strict=True)):
        o = offsets[i]
        for k, cont in enumerate(conts):
            for j, token in enumerate(cont):
                col = o + (len(prompt) - 1 if j == 0 else starts[i][k] + j - 1)
                wanted.append((i, col, int(token), k))
    columns = sorted({w[1] for w in wanted})
    where = {c: n for n, c in enumerate(columns)}
    with torch.inference_mode():
        out = model(
            input_ids=input_ids.to(device),
            attention_mask=mask[:, None].to(device),
            position_ids=position_ids.to(device),
            logits_to_keep=torch.tensor(columns, device=device),
            use_cache=False,
        )
        logp = out.logits.float().log_softmax(dim=-1)
        r = torch.tensor([w[0] for w in wanted], device=device)
        c = torch.tensor([where[w[1]] for w in wanted], device=device)
        t = torch.tensor([w[2] for w in wanted], device=device)
        picked = logp[r, c, t].tolist()
    sums = [[0.0] * len(conts) for conts in choices]
    for (i, _col, _tok, k), value in zip(wanted, picked, strict=True):
        sums[i][k] += value
    return [
        ChoiceScores(tuple(s), tuple(len(cont) for cont in conts))
        for s, conts in zip(sums, choices, strict=True)
    ]
