"""A local Hugging Face causal LM, optionally with a PEFT (LoRA) adapter on top.

The model is loaded from a local folder through the ordinary
``AutoModelForCausalLM.from_pretrained`` path (a user's own checkpoint takes the
same one), once per process; a GGUF file or the bundled ``smollm2-135m-instruct``
is first converted to such a folder (:mod:`adaptlab.backends.gguf`). Requests are
rendered with the tokenizer's chat template when it has one, left-padded and
answered by one ``generate`` call per batch. Each sampled request draws from its
own generator seeded by ``(params.seed, request.sample)``, so a draw depends
neither on the other requests in the batch nor on earlier calls; token counts are
exact.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.backends.base import GenerativeBackend, fingerprint
from adaptlab.backends.gguf import resolve_model
from adaptlab.backends.hf_scoring import choice_ids, score_choices
from adaptlab.backends.sentence_transformers import bf16_supported, resolve_device
from adaptlab.core.errors import ConfigError, MissingDependencyError
from adaptlab.llm.types import (
    ChatRequest,
    ChatResponse,
    InputError,
    PermanentError,
    Usage,
    choice_answer,
)

if TYPE_CHECKING:
    import torch

    from adaptlab.config import LLMConfig


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    fingerprint: str
    eos_ids: frozenset[int] = field(init=False)
    pad_id: int = field(init=False)
    context: int | None = field(init=False)  # positions the model was trained on
    # Two generate() calls on one model would only compete for the same cores.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.eos_ids = _eos_ids(self.model, self.tokenizer)
        pad_id = self.tokenizer.pad_token_id
        # Any id will do for padding, since the attention mask hides it.
        self.pad_id = pad_id if pad_id is not None else min(self.eos_ids, default=0)
        config = self.model.config
        self.context = getattr(config, "max_position_embeddings", None) or getattr(
            config, "n_positions", None
        )


_LOADED: dict[tuple[str, str | None, str, str, str], _Loaded] = {}
_LOAD_LOCK = threading.Lock()


def _import(module: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise MissingDependencyError(module, "local") from None


def _folder(path: str, what: str, marker: str) -> Path:
    """The resolved folder; a ConfigError unless it exists and holds ``marker``."""
    folder = Path(path).expanduser()
    if not folder.is_dir():
        raise ConfigError(
            f"{what} folder '{path}' does not exist",
            fix="point it at a local folder saved with save_pretrained() (the 'hf' backend "
            "never downloads from the hub)",
        )
    if (folder / marker).is_file():
        return folder.resolve()
    if what == "model" and (folder / "adapter_config.json").is_file():
        raise ConfigError(
            f"'{path}' holds a PEFT adapter, not a model",
            fix="set name: to the base model's folder and adapter: to this one",
        )
    raise ConfigError(
        f"{what} folder '{path}' has no {marker}",
        fix=f"point it at a folder written by save_pretrained() of a {what}",
    )


def _eos_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    ids: set[int] = set()
    configured = model.generation_config.eos_token_id
    if isinstance(configured, int):
        ids.add(configured)
    elif configured is not None:
        ids.update(configured)
    if tokenizer.eos_token_id is not None:
        ids.add(tokenizer.eos_token_id)
    return frozenset(ids)


def load_causal_lm(
    name: str, adapter: str | None, device: str, precision: str, *, progress: Any = None
) -> tuple[_Loaded, str]:
    """Load (once per process) the model, adapter and tokenizer; return them and the dtype name.

    ``name`` is a model folder, a ``.gguf`` file or a bundled alias (see
    :mod:`adaptlab.backends.gguf`); a GGUF source is converted once, with progress.
    """

    model_dir = _folder(str(resolve_model(name, progress=progress)), "model", "config.json")
    adapter_dir = _folder(adapter, "adapter", "adapter_config.json") if adapter else None
    torch = _import("torch")
    transformers = _import("transformers")
    if adapter_dir is not None:
        _import("peft")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device '{device}' was asked for, but no CUDA GPU is visible",
            fix="set device: cpu (or auto) under this llms: entry",
        )
    use_bf16 = precision == "bf16" or (precision == "auto" and bf16_supported(device))
    dtype_name = "bf16" if use_bf16 else "fp32"
    folders = [model_dir] if adapter_dir is None else [model_dir, adapter_dir]
    stamp = fingerprint(*folders)
    key = (str(model_dir), str(adapter_dir) if adapter_dir else None, device, dtype_name, stamp)
    with _LOAD_LOCK:
        if key not in _LOADED:
            # A checkpoint changed on disk: let go of the copy loaded before.
            for stale in [k for k in _LOADED if k[:4] == key[:4]]:
                del _LOADED[stale]
            model, tokenizer = _load(transformers, torch, model_dir, adapter_dir, device, use_bf16)
            _LOADED[key] = _Loaded(model, tokenizer, stamp)
    return _LOADED[key], dtype_name


def _load(
    transformers: Any,
    torch: Any,
    model_dir: Path,
    adapter_dir: Path | None,
    device: str,
    use_bf16: bool,
) -> tuple[Any, Any]:
    from packaging.version import Version

    dtype = torch.bfloat16 if use_bf16 else torch.float32
    # transformers 4.56 renamed torch_dtype to dtype and warns about the old name.
    new_name = Version(transformers.__version__) >= Version("4.56")
    dtype_kw = {"dtype" if new_name else "torch_dtype": dtype}
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        # A fresh base model per entry: PeftModel injects its layers into the model in place.
        model = transformers.AutoModelForCausalLM.from_pretrained(
            model_dir, local_files_only=True, **dtype_kw
        )
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"cannot load a causal language model from '{model_dir}': {exc}",
            fix="use a folder saved with save_pretrained() that holds a decoder-only model "
            "(config.json, weights and tokenizer files)",
        ) from None
    if adapter_dir is not None:
        from peft import PeftModel

        try:
            model = PeftModel.from_pretrained(model, adapter_dir)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ConfigError(
                f"cannot load the adapter in '{adapter_dir}' onto '{model_dir}': {exc}",
                fix="use a folder written by save_pretrained() of a PEFT model trained on "
                "this base model",
            ) from None
    model.to(device)
    model.eval()
    return model, tokenizer


class _RowSampler:
    """A logits processor that samples each row with its own generator.

    A sampled row's scores become -inf except for the drawn token, so the greedy
    step of ``generate`` picks it; greedy rows (temperature 0) pass through.
    """

    def __init__(self, requests: Sequence[ChatRequest]) -> None:
        self.params = [r.params for r in requests]
        self.seeds = [_seed(r.params.seed or 0, r.sample) for r in requests]
        self.generators: list[Any] = [None] * len(requests)

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        import torch

        scores = scores.clone()
        for i, params in enumerate(self.params):
            if not params.temperature:  # 0 or None: greedy
                continue
            if self.generators[i] is None:
                gen = torch.Generator(device=scores.device)
                self.generators[i] = gen.manual_seed(self.seeds[i])
            probs = torch.softmax(scores[i].float() / params.temperature, dim=-1)
            if params.top_p is not None and params.top_p < 1:
                ranked, order = probs.sort(descending=True)
                keep = ranked.cumsum(0) - ranked < params.top_p
                keep[0] = True
                probs = torch.zeros_like(probs).scatter(0, order[keep], ranked[keep])
            token = torch.multinomial(probs, 1, generator=self.generators[i])
            scores[i] = float("-inf")
            scores[i, token] = 0.0
        return scores


class _RowStops:
    """A stopping criterion that ends each row at eos, a stop string or its own max_tokens.

    It records where and why each row ended, since after that ``generate`` pads the
    row (and does not at all when the model has no eos token).
    """

    def __init__(
        self,
        requests: Sequence[ChatRequest],
        prompt_len: int,
        eos_ids: frozenset[int],
        tokenizer: Any,
    ) -> None:
        self.limits = [r.params.max_tokens for r in requests]
        self.stops = [r.params.stop for r in requests]
        self.prompt_len = prompt_len
        self.eos_ids = eos_ids
        self.tokenizer = tokenizer
        self.lengths: list[int | None] = [None] * len(requests)
        self.reasons: list[str] = ["length"] * len(requests)

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        import torch

        new = input_ids[:, self.prompt_len :]
        n = new.shape[1]
        last = new[:, -1].tolist()
        for i, length in enumerate(self.lengths):
            if length is not None:
                continue
            if last[i] in self.eos_ids:
                self.lengths[i], self.reasons[i] = n, "eos"
            elif self.stops[i] and _find_stop(self._decode(new[i].tolist()), self.stops[i]) >= 0:
                self.lengths[i], self.reasons[i] = n, "stop"
            elif n >= self.limits[i]:
                self.lengths[i] = n
        done = [length is not None for length in self.lengths]
        return torch.tensor(done, dtype=torch.bool, device=input_ids.device)

    def _decode(self, ids: list[int]) -> str:
        text: str = self.tokenizer.decode(ids, skip_special_tokens=True)
        return text


def _seed(seed: int, sample: int) -> int:
    blob = hashlib.sha256(f"{seed}:{sample}".encode()).digest()
    return int.from_bytes(blob[:8], "big") >> 1


def _find_stop(text: str, stops: Sequence[str]) -> int:
    """Index of the earliest stop string in ``text``, or -1."""
    found = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    return min(found, default=-1)


def _prefill(request: ChatRequest) -> str:
    """The start of the answer given as a last assistant message, or ''."""
    last = request.messages[-1] if request.messages else None
    return last.content if last is not None and last.role == "assistant" else ""


class HFBackend(GenerativeBackend):
    """A local causal LM (``transformers``) from a folder, with an optional PEFT adapter."""

    name: ClassVar[str] = "hf"
    local: ClassVar[bool] = True
    needs_key: ClassVar[bool] = False
    constrained: ClassVar[frozenset[str]] = frozenset({"choices"})

    def __init__(self, config: LLMConfig, api_key: str | None = None) -> None:
        super().__init__(config, api_key)

        if config.device == "auto":
            _import("torch")
        self.device = resolve_device(config.device)
        self._lm, self.dtype_name = load_causal_lm(
            config.name, config.adapter, self.device, config.precision
        )

    # -- rendering ----------------------------------------------------------------

    def render(self, request: ChatRequest) -> str:
        """The prompt text: the tokenizer's chat template, or a plain role-labelled format.

        A last message from the assistant is a prefill: the answer continues it
        (``continue_final_message``), and :meth:`generate_batch` returns it in front.
        """
        tokenizer = self._lm.tokenizer
        prefill = _prefill(request)
        if getattr(tokenizer, "chat_template", None):
            messages = [{"role": m.role, "content": m.content} for m in request.messages]
            try:
                text: str = tokenizer.apply_chat_template(
                    messages,
                    tokenize=False,
                    add_generation_prompt=not prefill,
                    continue_final_message=bool(prefill),
                )
            except Exception as exc:  # jinja2 raises TemplateError, templates raise anything
                raise PermanentError(
                    f"the chat template of '{self.model_id}' refused the request: {exc}",
                    kind="template",
                ) from None
            return text
        parts = [f"{m.role.capitalize()}: {m.content}" for m in request.messages]
        return "\n\n".join(parts if prefill else [*parts, "Assistant:"])

    def _encode(self, request: ChatRequest) -> list[int]:
        tokenizer = self._lm.tokenizer
        # A chat template writes its own special tokens (BOS included); plain text gets the
        # tokenizer's, as apply_chat_template(tokenize=True) and a plain call would.
        chat = bool(getattr(tokenizer, "chat_template", None))
        ids: list[int] = tokenizer(self.render(request), add_special_tokens=not chat)["input_ids"]
        return ids

    def count_tokens(self, request: ChatRequest) -> tuple[int, bool]:
        return len(self._encode(request)), True

    # -- generation ---------------------------------------------------------------

    def generate_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        """Answer the requests in one left-padded ``generate`` call, in order; those with
        ``params.choices`` are scored instead (:meth:`score_batch`)."""
        if not requests:
            return []
        scored = [i for i, r in enumerate(requests) if r.params.choices]
        if scored:
            free = [i for i in range(len(requests)) if i not in set(scored)]
            out: dict[int, ChatResponse] = dict(
                zip(scored, self.score_batch([requests[i] for i in scored]), strict=True)
            )
            if free:
                answers = self.generate_batch([requests[i] for i in free])
                out.update(zip(free, answers, strict=True))
            return [out[i] for i in range(len(requests))]
        start = time.perf_counter()
        prompts = [self._encode(r) for r in requests]
        context = self._lm.context
        # A prompt that does not fit is that input's answer (status too_long), not the
        # end of the batch: the others are generated as usual.
        refused: dict[int, ChatResponse] = {}
        for i, (request, prompt) in enumerate(zip(requests, prompts, strict=True)):
            if context is not None and len(prompt) + request.params.max_tokens > context:
                refused[i] = InputError(
                    f"a prompt of {len(prompt)} tokens plus max_tokens "
                    f"{request.params.max_tokens} exceeds the {context}-token context of "
                    f"'{self.model_id}'; shorten the input, use fewer examples or passages, "
                    "or lower max_tokens",
                    status="too_long",
                ).response()
        keep = [i for i in range(len(requests)) if i not in refused]
        if not keep:
            return [refused[i] for i in range(len(requests))]
        requests = [requests[i] for i in keep]
        prompts = [prompts[i] for i in keep]
        with self._lm.lock:
            stops, new = self._generate(requests, prompts)
        latency_ms = (time.perf_counter() - start) * 1000
        answered = self._answers(requests, prompts, stops, new, latency_ms)
        by_index = dict(zip(keep, answered, strict=True))
        return [
            refused[i] if i in refused else by_index[i] for i in range(len(refused) + len(keep))
        ]

    def score_batch(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        """Answer closed questions (``params.choices``) by scoring every choice.

        Each answer is :func:`~adaptlab.llm.types.choice_answer` JSON: the choice with
        the highest log-likelihood per token, and every choice's summed log-probability
        and token count (:mod:`adaptlab.backends.hf_scoring`), computed in one forward
        pass for the batch with each prompt once. Usage: the tokens computed (prompt and
        every choice) as input, none as output. A prompt that does not fit the context
        with its longest choice is that input's ``too_long`` answer.
        """
        if not requests:
            return []
        start = time.perf_counter()
        lm = self._lm
        prompts = [self._encode(r) for r in requests]
        conts = [choice_ids(lm.tokenizer, self.render, r, lm.eos_ids) for r in requests]
        refused: dict[int, ChatResponse] = {}
        for i, (prompt, cs) in enumerate(zip(prompts, conts, strict=True)):
            need = len(prompt) + max(len(c) for c in cs)
            if lm.context is not None and need > lm.context:
                refused[i] = InputError(
                    f"a prompt of {len(prompt)} tokens plus its longest choice exceeds the "
                    f"{lm.context}-token context of '{self.model_id}'; shorten the input or "
                    "use fewer examples or passages",
                    status="too_long",
                ).response()
        keep = [i for i in range(len(requests)) if i not in refused]
        scores = {}
        if keep:
            try:
                with self._lm.lock:
                    found = score_choices(
                        lm.model,
                        self.device,
                        [prompts[i] for i in keep],
                        [conts[i] for i in keep],
                        lm.pad_id,
                    )
            except (RuntimeError, ValueError) as exc:
                raise PermanentError(
                    f"scoring the choices with '{self.model_id}' on {self.device} failed: "
                    f"{exc}; lower batch_size, or set answer: free on the candidate",
                    kind="local",
                ) from None
            scores = dict(zip(keep, found, strict=True))
        latency_ms = (time.perf_counter() - start) * 1000
        out = []
        for i, request in enumerate(requests):
            if i in refused:
                out.append(refused[i])
                continue
            s = scores[i]
            per_token = [lp / n for lp, n in zip(s.logprobs, s.tokens, strict=True)]
            best = max(range(len(per_token)), key=per_token.__getitem__)
            computed = len(prompts[i]) + sum(s.tokens)
            out.append(
                ChatResponse(
                    text=choice_answer(request.params.choices[best], s),
                    usage=Usage(input_tokens=computed, output_tokens=0),
                    latency_ms=latency_ms,
                    finish_reason="stop",
                )
            )
        return out

    def _answers(
        self,
        requests: Sequence[ChatRequest],
        prompts: list[list[int]],
        stops: _RowStops,
        new: list[list[int]],
        latency_ms: float,
    ) -> list[ChatResponse]:
        responses = []
        for i, prompt in enumerate(prompts):
            length = stops.lengths[i]
            if length is None:  # ended by a criterion of the model's own generation config
                length = len(new[i])
            ids = new[i][:length]
            reason = stops.reasons[i]
            # The eos token counts as output but is no part of the text.
            text: str = self._lm.tokenizer.decode(
                ids[:-1] if reason == "eos" else ids, skip_special_tokens=True
            )
            text = _prefill(requests[i]) + text
            cut = _find_stop(text, requests[i].params.stop)
            if cut >= 0:
                text, reason = text[:cut], "stop"
            responses.append(
                ChatResponse(
                    text=text,
                    usage=Usage(input_tokens=len(prompt), output_tokens=length),
                    latency_ms=latency_ms,
                    finish_reason="length" if reason == "length" else "stop",
                )
            )
        return responses

    def _generate(
        self, requests: Sequence[ChatRequest], prompts: list[list[int]]
    ) -> tuple[_RowStops, list[list[int]]]:
        import torch
        from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

        lm = self._lm
        width = max(len(p) for p in prompts)
        # Left padding keeps every prompt's last token at the end, where generation starts.
        input_ids = torch.tensor([[lm.pad_id] * (width - len(p)) + p for p in prompts])
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        stops = _RowStops(requests, width, lm.eos_ids, lm.tokenizer)
        sampled = any(r.params.temperature for r in requests)
        sampler = [_RowSampler(requests)] if sampled else []
        config = GenerationConfig(  # type: ignore[no-untyped-call]
            max_new_tokens=max(r.params.max_tokens for r in requests),
            do_sample=False,  # _RowSampler draws the sampled rows
            num_beams=1,
            # The library defaults, so a model's own sampling defaults (which greedy decoding
            # ignores anyway) are not merged in and warned about.
            temperature=1.0,
            top_p=1.0,
            top_k=50,
            pad_token_id=lm.pad_id,
            eos_token_id=sorted(lm.eos_ids) or None,
        )
        try:
            with torch.inference_mode():
                out = lm.model.generate(
                    input_ids=input_ids.to(self.device),
                    attention_mask=mask.to(self.device),
                    generation_config=config,
                    logits_processor=LogitsProcessorList(sampler),
                    stopping_criteria=StoppingCriteriaList([stops]),
                )
        except torch.cuda.OutOfMemoryError as exc:
            raise PermanentError(
                f"'{self.model_id}' ran out of memory on {self.device} generating "
                f"{len(requests)} answers: {exc}; lower batch_size or max_tokens, or set "
                "precision: bf16",
                kind="oom",
            ) from None
        except (RuntimeError, ValueError) as exc:
            raise PermanentError(
                f"local generation with '{self.model_id}' on {self.device} failed: {exc}",
                kind="local",
            ) from None
        new: list[list[int]] = out[:, width:].tolist()
        return stops, new

    # -- identity -----------------------------------------------------------------

    def identity(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model_id,
            "adapter": self.config.adapter,
            "fingerprint": self._lm.fingerprint,
            "precision": self.dtype_name,
        }

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.model_id,
            "adapter": self.config.adapter,
            "device": self.device,
            "precision": self.dtype_name,
        }
