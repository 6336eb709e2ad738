"""Constrained answers of the local 'hf' backend: each label scored as the answer.

Tiny random-weight Llama checkpoints built through the real load path (``load_llm``
from a folder), as in tests/test_hf_backend.py; expected log-likelihoods come from
calling the model directly on prompt + label, one label at a time.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from adaptlab.backends import GenerativeBackend, load_llm
from adaptlab.backends.runner import LLMRunner
from adaptlab.config import LLMConfig
from adaptlab.data import Example
from adaptlab.llm.types import ChatRequest, GenerationParams, Message, read_choice_answer
from adaptlab.strategies import StrategyContext
from adaptlab.strategies.prompting import LLMFewShot, LLMZeroShot
from adaptlab.strategies.prompting.config import FewShotPromptOptions, ZeroShotPromptOptions
from tests.test_hf_backend import save, tiny_llama

# A template whose assistant turn ends with an end-of-turn token ([SEP], the eos).
EOT_TEMPLATE = (
    "{% for m in messages %}{{ m['role'] }}: {{ m['content'] }} [SEP] {% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
# "bill" is a prefix of "bill me"; "technical_issue" is several word pieces.
CHOICES = ("bill", "bill me", "technical_issue", "shipping")
TEXTS = ["hi", "my invoice shows a charge twice and I want it back", "where is my parcel?"]


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("constrained")
    model = tiny_llama(1)
    return {"plain": save(model, root / "plain"), "eot": save(model, root / "eot", EOT_TEMPLATE)}


def _backend(path: Path, **kw: Any) -> GenerativeBackend:
    return load_llm(LLMConfig(backend="hf", name=str(path), **kw))


def _request(text: str) -> ChatRequest:
    messages = (Message("system", "Sort the ticket."), Message("user", text))
    return ChatRequest(messages, GenerationParams(max_tokens=8, choices=CHOICES))


def _direct_logprob(model: Any, prompt: list[int], cont: list[int]) -> float:
    import torch

    ids = torch.tensor([prompt + cont])
    with torch.inference_mode():
        logp = model(ids).logits.float().log_softmax(-1)[0]
    return float(sum(logp[len(prompt) - 1 + j, t] for j, t in enumerate(cont)))


@pytest.mark.parametrize("variant", ["plain", "eot"])
def test_scores_are_the_log_likelihoods_of_each_label(
    folders: dict[str, Path], variant: str
) -> None:
    from adaptlab.backends.hf_scoring import choice_ids

    backend: Any = _backend(folders[variant], precision="fp32")
    lm = backend._lm
    # float64: the packed pass and the direct one add up in different orders, which in
    # float32 differs by up to 1e-3 on some tokens; in float64 any real error shows.
    lm.model.double()
    requests = [_request(t) for t in TEXTS]  # prompts of different lengths: padding
    answers = backend.generate_batch(requests)
    for request, answer in zip(requests, answers, strict=True):
        label, scores = read_choice_answer(answer.text, CHOICES)
        assert label in CHOICES and scores is not None
        prompt = backend._encode(request)
        conts = choice_ids(lm.tokenizer, backend.render, request, lm.eos_ids)
        for k, cont in enumerate(conts):
            # Every label's tokens end with the end-of-turn token, so "bill" pays for
            # stopping where "bill me" goes on.
            assert cont[-1] in lm.eos_ids
            assert scores.tokens[k] == len(cont)
            assert scores.logprobs[k] == pytest.approx(
                _direct_logprob(lm.model, prompt, cont), abs=1e-5
            )
        per_token = [lp / n for lp, n in zip(scores.logprobs, scores.tokens, strict=True)]
        assert label == CHOICES[per_token.index(max(per_token))]
        assert answer.usage.output_tokens == 0
        assert answer.usage.input_tokens == len(prompt) + sum(scores.tokens)
    lm.model.float()
    assert len(conts[2]) > 2  # technical_issue: several tokens and the end of turn
    assert conts[1][: len(conts[0]) - 1] == conts[0][:-1]  # "bill" prefixes "bill me"


def test_the_prompt_is_computed_once_per_input(folders: dict[str, Path]) -> None:
    backend: Any = _backend(folders["eot"], batch_size=2)
    model = backend._lm.model
    calls: list[tuple[int, int]] = []

    def hook(_module: Any, _args: Any, kwargs: dict[str, Any]) -> None:
        rows, width = kwargs["input_ids"].shape
        calls.append((int(rows), int(width)))

    handle = model.register_forward_pre_hook(hook, with_kwargs=True)
    try:
        requests = [_request(t) for t in [*TEXTS, "cancel it"]]
        LLMRunner(backend).run_sync(requests)
    finally:
        handle.remove()
    # batch_size 2: one forward pass per batch of two inputs, none per label.
    assert len(calls) == 2 and all(rows == 2 for rows, _ in calls)
    from adaptlab.backends.hf_scoring import choice_ids

    lm = backend._lm
    widths = [max(len(backend._encode(r)) for r in pair) for pair in (requests[:2], requests[2:])]
    labels = sum(len(c) for c in choice_ids(lm.tokenizer, backend.render, requests[0], lm.eos_ids))
    # Each row is its prompt once plus every label once, not the prompt once per label.
    assert [w for _, w in calls] == [p + labels for p in widths]


def _ctx(tmp_path: Path, backend: GenerativeBackend) -> StrategyContext:
    labels = {lab: f"about {lab}" for lab in CHOICES}
    return StrategyContext(
        backend=None, labels=labels, seed=0, workdir=tmp_path, root=tmp_path,
        llm=LLMRunner(backend),
    )  # fmt: skip


def test_constrained_answers_are_always_labels_with_a_probability(
    folders: dict[str, Path], tmp_path: Path
) -> None:
    backend = _backend(folders["eot"])
    train = [Example(f"ticket {i} text", CHOICES[i % 4], "t.jsonl", i + 1) for i in range(8)]
    val = [Example(f"val {i} words", CHOICES[i % 4], "v.jsonl", i + 1) for i in range(8)]
    zero = LLMZeroShot(ZeroShotPromptOptions(), _ctx(tmp_path, backend))
    few = LLMFewShot(FewShotPromptOptions(shots=4), _ctx(tmp_path, backend))
    for strategy in (zero, few):
        strategy.fit(train, val)
        preds = strategy.predict(TEXTS)
        assert strategy.info["answer"] == "constrained"
        assert all(p.label in CHOICES and p.status == "constrained" for p in preds)
        assert all(0 < p.score <= 1 for p in preds)
        # Calibration was chosen on validation, with every normalisation's figure.
        cal: Any = strategy.info["calibration"]
        assert cal["chosen"] in ("none", "contextual")
        assert set(cal["val_accuracy"]) == {"token", "char", "none"}
    free = LLMZeroShot(ZeroShotPromptOptions(answer="free"), _ctx(tmp_path, backend))
    free.fit(train, val)
    free.predict(TEXTS[:1])
    assert free.info["answer"] == "free"
    assert free.requests(TEXTS[:1])[0].params.choices == ()
