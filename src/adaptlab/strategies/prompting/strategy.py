"""Prompting a generative model: zero-shot, few-shot (four selectors), chain-of-thought,
system-prompt variants and structured output, for all three task types.

The prompt comes from a :class:`~adaptlab.prompts.PromptTemplate`; the requests go
through the project's :class:`~adaptlab.backends.runner.LLMRunner` (concurrency, rate
limits, retries, cache); every answer is parsed, and one that cannot be read is
kept with status ``unparsed`` (or ``invalid`` against the schema) and scored wrong.
An input the provider refused (a content filter, too long for the context) is kept
with status ``filtered``, ``too_long`` or ``error`` and the provider's message as its
raw answer, and scored wrong. Reasoning blocks (``<think>…</think>``) are removed
before parsing and kept in the raw answer.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.core.errors import ConfigError
from adaptlab.core.types import Prediction
from adaptlab.data import Example
from adaptlab.data.json_fields import validate_json
from adaptlab.llm.parse import extract_answer, parse_label, strip_reasoning
from adaptlab.llm.types import (
    ChatRequest,
    ChatResponse,
    ChoiceScores,
    GenerationParams,
    Message,
    choice_schema,
    failure_status,
    read_choice_answer,
)
from adaptlab.prompts import PromptTemplate
from adaptlab.rag.context import format_context, make_passages, passages_json, strip_citations
from adaptlab.strategies.base import Strategy, StrategyContext, StrategyOptions
from adaptlab.strategies.prompting import constrained
from adaptlab.strategies.prompting import tune as retrieval_tune
from adaptlab.strategies.prompting.config import (
    ANSWER_OPTIONS,
    ContextTunedOptions,
    CoTPromptOptions,
    FewShotPromptOptions,
    PromptOptions,
    ZeroShotPromptOptions,
)
from adaptlab.strategies.state import check, load_arrays, save_arrays

if TYPE_CHECKING:
    import numpy as np

    from adaptlab.backends.runner import LLMRunner
    from adaptlab.rag.context import Passage

_TEMPLATES = {"classification": "classify", "extraction": "extract", "generation": "generate"}


def label_schema(labels: Sequence[str]) -> dict[str, Any]:
    """The JSON schema of a label answer (:func:`~adaptlab.llm.types.choice_schema`)."""
    return choice_schema(labels)


def mmr(query: np.ndarray, pool: np.ndarray, k: int, lam: float, candidates: int = 50) -> list[int]:
    """Maximal marginal relevance: ``k`` pool rows near ``query`` and unlike each other."""
    import numpy as np

    sims = pool @ query
    shortlist = list(np.argsort(-sims, kind="stable")[: max(candidates, k)])
    chosen: list[int] = []
    while shortlist and len(chosen) < k:
        if chosen:
            redundancy = (pool[shortlist] @ pool[chosen].T).max(axis=1)
        else:
            redundancy = np.zeros(len(shortlist))
        scores = lam * sims[shortlist] - (1 - lam) * redundancy
        best = int(np.argmax(scores))
        chosen.append(int(shortlist.pop(best)))
    return chosen


PROMPT_EXAMPLE_CHARS = 20_000  # per message, of the prompt kept for the report


class PromptStrategy(Strategy):
    """Prompt the candidate's ``llm`` with a template; every option in one place."""

    name: ClassVar[str] = "prompt"
    Options: ClassVar[type[StrategyOptions]] = ContextTunedOptions
    generative: ClassVar[bool] = True
    tasks: ClassVar[tuple[str, ...]] = ("classification", "extraction", "generation")

    def __init__(self, options: StrategyOptions, ctx: StrategyContext) -> None:
        super().__init__(options, ctx)
        assert isinstance(options, PromptOptions)
        self.opts: PromptOptions = options
        self.template = self.template_for(options, ctx.root, ctx.task, ctx.language)
        self.info.update(template=self.template.name, template_version=self.template.version)
        if self.template.language is not None:  # a built-in, in the data's language or English
            self.info["template_language"] = self.template.language
        self._pool: list[Example] = []
        self._fixed: list[Example] = []
        self._pool_vectors: np.ndarray | None = None
        self._retrieval_ms: list[float] = []
        # The retrieval setting ``tune:`` chose (context_k, and hybrid_weight and
        # reranker where searched); empty: the candidate's context_k and rag:'s.
        self.retrieval_setting: dict[str, Any] = {}
        # Contextual calibration of scored answers: each label's log content-free
        # probability (subtracted), once decided; None: not calibrated.
        self._offsets: list[float] | None = None
        self._calibrated: bool | None = None  # None: not decided yet

    @classmethod
    def needs_encoder(cls, options: StrategyOptions) -> bool:
        assert isinstance(options, PromptOptions)
        return options.shots > 0 and options.selector in ("similar", "mmr")

    @classmethod
    def template_for(
        cls, options: PromptOptions, root: Path, task: str, language: str = "en"
    ) -> PromptTemplate:
        """The candidate's template: a built-in in the data's ``language`` (English where
        there is none), or the user's own file, which the language never changes."""
        name = _TEMPLATES[task] if options.template == "auto" else options.template
        return PromptTemplate(name, root, language=language)

    @classmethod
    def key_extra(
        cls, options: StrategyOptions, root: Path, task: str, language: str = "en"
    ) -> dict[str, object]:
        assert isinstance(options, PromptOptions)
        # The version hashes the template's text, so the German built-in makes other keys.
        template = cls.template_for(options, root, task, language)
        extra: dict[str, object] = {"template": template.name, "version": template.version}
        if not cls.trains_weights:
            # Constrained answers became the default of prompted candidates: their keys
            # hold the answer options, so a result answered free is not reused.
            extra["answer"] = {n: getattr(options, n) for n in ANSWER_OPTIONS}
        return extra

    # ------------------------------------------------------------ examples

    def fit(self, train: Sequence[Example], val: Sequence[Example]) -> None:
        self.select_shots(train)
        if self.ctx.llm is not None and self.scored:
            self.choose_calibration(val)
        if isinstance(self.opts, ContextTunedOptions) and self.opts.tune is not None:
            retrieval_tune.tune_retrieval(self, val)

    # ------------------------------------------------------------ constrained answers

    def _content_free_scores(self) -> list[ChoiceScores] | None:
        """Each label's scores for this prompt around each content-free input
        (:data:`constrained.CONTENT_FREE`); None where the examples are picked per input
        (each input would need content-free prompts of its own) or one did not fit."""
        if self._pool_vectors is not None:
            return None
        requests = self.requests(list(constrained.CONTENT_FREE), contexts=None)
        found = []
        for resp in self.runner.run_sync(requests, description="content-free inputs"):
            _label, scores = read_choice_answer(resp.text, self.label_names)
            if scores is None:
                return None
            found.append(scores)
        return found

    def choose_calibration(self, val: Sequence[Example]) -> None:
        """Decide contextual calibration (``calibrate``): 'auto' keeps it only where it
        answers more validation inputs right than no calibration. ``info["calibration"]``
        gets the validation accuracy of every length normalisation with and without it.
        """
        choice = self.opts.calibrate
        norm = self.opts.length_norm
        self._offsets, self._calibrated = None, False
        if choice == "none" or (choice == "auto" and not val):
            return  # nothing to choose on: no content-free requests either
        cf = self._content_free_scores()
        if cf is None:
            if choice == "contextual":
                self.info["calibration_skipped"] = (
                    "examples are picked per input (selector similar or mmr), or a "
                    "content-free prompt does not fit the context"
                )
            return
        if choice == "contextual":
            self._offsets = constrained.content_free_offsets(cf, self.label_names, norm)
            self._calibrated = True
            return
        requests = self.requests([ex.text for ex in val])
        responses = self.runner.run_sync(requests, description="choosing calibration (val)")
        val_scores = [read_choice_answer(r.text, self.label_names)[1] for r in responses]
        figures: dict[str, dict[str, float]] = {}
        for n in ("token", "char", "none"):
            offsets = constrained.content_free_offsets(cf, self.label_names, n)
            for name, use in (("none", None), ("contextual", offsets)):
                right = sum(
                    scores is not None
                    and constrained.decide(scores, self.label_names, n, use)[0] == ex.label
                    for scores, ex in zip(val_scores, val, strict=True)
                )
                figures.setdefault(n, {})[name] = right / len(val)
        own = figures[norm]
        self._calibrated = own["contextual"] > own["none"]
        if self._calibrated:
            self._offsets = constrained.content_free_offsets(cf, self.label_names, norm)
        self.info["calibration"] = {
            "chosen": "contextual" if self._calibrated else "none",
            "val_accuracy": figures,
            "n_val": len(val),
        }

    def select_shots(self, train: Sequence[Example]) -> None:
        """Pick the examples the prompts show (a fixed set, or a pool to search per input)."""
        self._pool = list(train)
        k = min(self.opts.shots, len(self._pool))
        if not k:
            return
        rng = random.Random(self.ctx.seed)
        if self.opts.selector == "random" or self.ctx.task != "classification":
            if self.opts.selector in ("similar", "mmr"):
                self._pool_vectors = self.ctx.embed([ex.text for ex in self._pool])
            else:
                self._fixed = rng.sample(self._pool, k)
        elif self.opts.selector == "stratified":
            by_label: dict[str, list[Example]] = {}
            for ex in self._pool:
                by_label.setdefault(ex.label, []).append(ex)
            for group in by_label.values():
                rng.shuffle(group)
            order = [lab for lab in self.label_names if lab in by_label]
            picked: list[Example] = []
            while len(picked) < k and any(by_label[lab] for lab in order):
                for lab in order:
                    if by_label[lab] and len(picked) < k:
                        picked.append(by_label[lab].pop())
            rng.shuffle(picked)  # no label-order pattern for the model to copy
            self._fixed = picked
        else:
            self._pool_vectors = self.ctx.embed([ex.text for ex in self._pool])
        self.info["examples"] = len(self._fixed) or k

    def examples_for(self, texts: Sequence[str]) -> list[list[Example]]:
        if self._pool_vectors is None:
            return [self._fixed for _ in texts]
        import numpy as np

        k = min(self.opts.shots, len(self._pool))
        queries = self.ctx.embed(list(texts), description="embedding inputs")
        out = []
        for q in queries:
            if self.opts.selector == "mmr":
                idx = mmr(q, self._pool_vectors, k, self.opts.mmr_lambda)
            else:
                idx = list(np.argsort(-(self._pool_vectors @ q), kind="stable")[:k])
            # Most similar last, nearest the input.
            out.append([self._pool[int(i)] for i in reversed(idx)])
        return out

    # ------------------------------------------------------------ requests

    @property
    def schema(self) -> dict[str, Any] | None:
        if self.ctx.task == "extraction":
            schema = self.ctx.task_options.get("schema")
            return schema if isinstance(schema, dict) else None
        if self.opts.output == "json":
            return label_schema(self.label_names)
        return None

    @property
    def answer_mode(self) -> str:
        """The answer mode, "constrained" or "free" (:func:`constrained.answer_mode`);
        raises ConfigError for ``answer: constrained`` where it cannot be."""
        if self.ctx.llm is not None:
            name, supports = self.ctx.llm.backend.name, self.ctx.llm.backend.constrained
        elif self.ctx.llm_backend is not None:  # a dry run: the backend is not loaded
            name, supports = self.ctx.llm_backend
        else:
            return "free"
        has_schema = isinstance(self.ctx.task_options.get("schema"), dict)
        mode, why = constrained.answer_mode(self.opts, self.ctx.task, name, supports, has_schema)
        if self.trains_weights and self.opts.answer == "auto":
            # A fine-tune answers as it was trained to (free text) unless told otherwise.
            mode, why = "free", None
        if why is not None and self.opts.answer == "constrained":
            raise ConfigError(
                f"'{self.name}' has answer: constrained, but {why}",
                fix="set answer: free (or auto) on this candidate, or use a backend that "
                "constrains answers (hf for labels; openai or anthropic for labels and schemas)",
            )
        if why is not None:
            self.info["answer_free_because"] = why
        return mode

    @property
    def scored(self) -> bool:
        """Constrained labels scored by a local model (per-label log-likelihoods)."""
        return (
            self.ctx.task == "classification"
            and self.answer_mode == "constrained"
            and self.runner.backend.local
        )

    def params(self) -> GenerationParams:
        provider_schema = self.schema if self.opts.output == "json" else None
        max_tokens = self.opts.answer_tokens(self.ctx.task)
        choices: tuple[str, ...] = ()
        if self.answer_mode == "constrained":
            if self.ctx.task == "classification":
                # The label set travels as choices: each backend constrains to it its own way.
                choices, provider_schema = tuple(self.label_names), None
                if self.opts.max_tokens is None:
                    # Room for '{"label": "..."}' around the longest label.
                    longest = max((len(lab) for lab in self.label_names), default=0)
                    max_tokens = max(max_tokens, 16 + longest)
            else:
                provider_schema = self.schema
        return GenerationParams(
            temperature=self.opts.temperature,
            max_tokens=max_tokens,
            seed=self.ctx.seed,
            json_schema=provider_schema,
            choices=choices,
        )

    def variables(self, text: str, examples: Sequence[Example]) -> dict[str, Any]:
        schema = self.schema
        return {
            "input": text,
            "labels": self.ctx.labels,
            "examples": [{"input": ex.text, "output": ex.label} for ex in examples],
            "context": "",
            "output": self.opts.output,
            "reasoning": self.opts.reasoning,
            "schema_json": json.dumps(schema, indent=2) if schema else "",
            "instruction": self.ctx.task_options.get("instruction") or "",
            "cite": False,
        }

    # ------------------------------------------------------------ retrieval

    def contexts(self, texts: Sequence[str]) -> list[list[Passage]] | None:
        """The passages each input's prompt holds (``context_k`` > 0), else None.

        Sets ``self._retrieval_ms``: the retrieval time of each input, query embedding
        included, which :meth:`predict` adds to the answer's latency.
        """

        if not self.opts.context_k:
            return None
        if self.ctx.retrieve is None:
            raise ConfigError(
                f"'{self.name}' has context_k: {self.opts.context_k}, but the project has no "
                "documents to retrieve from",
                fix="add a 'rag:' section to adaptlab.yaml (rag: {docs: docs}) pointing at a "
                "folder of .md, .txt, .html or .pdf files, or set context_k: 0",
            )
        setting = self.retrieval_setting
        k = int(setting.get("context_k", self.opts.context_k))
        if "hybrid_weight" in setting or "reranker" in setting:
            hits, ms = self.ctx.retrieve(
                list(texts),
                k,
                weight=setting.get("hybrid_weight"),
                rerank=setting.get("reranker"),
            )
        else:
            hits, ms = self.ctx.retrieve(list(texts), k)
        self._retrieval_ms = ms
        return [make_passages(h) for h in hits]

    def requests(
        self,
        texts: Sequence[str],
        sample: int = 0,
        contexts: Sequence[Sequence[Passage]] | None = None,
    ) -> list[ChatRequest]:
        params = self.params()
        if contexts is None:
            contexts = self.contexts(texts)
        out = []
        for i, (text, examples) in enumerate(zip(texts, self.examples_for(texts), strict=True)):
            variables = self.variables(text, examples)
            if contexts is not None:
                variables["context"] = format_context(contexts[i])
                variables["cite"] = self.opts.cite
            rendered = self.template.render(variables, system=self.opts.system)
            messages = rendered.messages
            if self.opts.prefill:
                messages = (*messages, Message("assistant", self.opts.prefill))
            out.append(ChatRequest(messages, params, sample))
        return out

    def chat_records(self, examples: Sequence[Example]) -> list[list[dict[str, str]]]:
        """Each example as the chat a model would be fine-tuned on: ``[{role, content}, …]``.

        The messages are exactly the request this candidate sends for the example's
        input (template, system prompt, shots picked by :meth:`select_shots`), followed
        by one assistant message holding the target (label, JSON or reference answer).
        """
        texts = [ex.text for ex in examples]
        contexts = self.contexts(texts)
        requests = self.requests(texts, contexts=contexts)
        return [
            # A prefill is the start of the answer: the target holds it already.
            [{"role": m.role, "content": m.content} for m in req.messages if m.role != "assistant"]
            + [{"role": "assistant", "content": self.target(ex, contexts[i] if contexts else None)}]
            for i, (req, ex) in enumerate(zip(requests, examples, strict=True))
        ]

    def target(self, example: Example, passages: Sequence[Passage] | None) -> str:
        """What the model should answer for ``example``: the label or reference, and with
        ``cite`` led by the id of the first passage from a document the example names as
        its source, as the template asks (none when no such passage was retrieved)."""
        if not passages or not self.opts.cite or not example.sources:
            return example.label
        cited = next((p.n for p in passages if p.doc_id in example.sources), None)
        return example.label if cited is None else f"[{cited}] {example.label}"

    # ------------------------------------------------------------ answers

    def parse(self, raw: str) -> tuple[str | None, str]:
        """(prediction, status) for one answer; see :mod:`adaptlab.llm.parse`."""
        answer = strip_reasoning(raw)
        if self.opts.reasoning:
            found = extract_answer(answer)
            if found is None:
                return None, "unparsed"
            answer = found
        task = self.ctx.task
        if task == "generation":
            if self.opts.context_k:
                return strip_citations(answer), "ok"
            return answer.strip(), "ok"
        schema = self.schema
        if task == "classification" and self.answer_mode == "constrained":
            label, _scores = read_choice_answer(answer, self.label_names)
            if label is not None:
                return label, "constrained"
            # The server answered in free text (it refused or ignored the schema).
            self.info["answer_fallback"] = self.info.get("answer_fallback", 0) + 1  # type: ignore[operator]
            return parse_label(answer, self.label_names, self.opts.parse)
        if task == "classification" and schema is None:
            return parse_label(answer, self.label_names, self.opts.parse)

        obj, errors = validate_json(answer, schema or {})
        if obj is None:
            return None, "unparsed"
        if task == "classification":
            label = obj.get("label") if isinstance(obj, dict) else None
            if errors or not isinstance(label, str):
                return None, "invalid"
            return label, "json"
        return json.dumps(obj, sort_keys=True, ensure_ascii=False), "invalid" if errors else "json"

    def _prediction(self, resp: ChatResponse) -> Prediction:
        failed = failure_status(resp.finish_reason)
        if failed is not None:
            # The provider refused this input: nothing to parse, nothing billed.
            return Prediction(
                label=None,
                score=0.0,
                raw=resp.text,
                status=failed,
                latency_ms=resp.latency_ms,
                finish_reason=resp.finish_reason,
            )
        value, status = self.parse(resp.text)
        score = 1.0 if value is not None and status not in ("unparsed", "invalid") else 0.0
        if status == "constrained":
            _label, scores = read_choice_answer(resp.text, self.label_names)
            if scores is not None:
                value, score = constrained.decide(
                    scores, self.label_names, self.opts.length_norm, self._offsets
                )
        return Prediction(
            label=value,
            score=score,
            raw=resp.text,
            status=status,
            input_tokens=resp.usage.input_tokens,
            output_tokens=resp.usage.output_tokens,
            cached_tokens=resp.usage.cached_input_tokens,
            tokens_exact=resp.usage.exact,
            latency_ms=resp.latency_ms,
            finish_reason=resp.finish_reason,
        )

    @property
    def runner(self) -> LLMRunner:
        if self.ctx.llm is None:
            raise RuntimeError(f"strategy '{self.name}' needs an llm; set 'llm:' on the candidate")
        return self.ctx.llm

    def predict(self, texts: Sequence[str]) -> list[Prediction]:
        if self.opts.prefill and self.runner.config.backend != "hf":
            raise ConfigError(
                f"prefill is set, but llm '{self.runner.config.name}' uses backend "
                f"'{self.runner.config.backend}', which does not continue a started answer",
                fix="use prefill with a local (backend: hf) model, or remove it",
            )
        contexts = self.contexts(texts)
        requests = self.requests(texts, contexts=contexts)
        if requests and "prompt_example" not in self.info:
            # The report shows a prompt as sent: the first one answered (a test input).
            self.info["prompt_example"] = [
                {"role": m.role, "content": m.content[:PROMPT_EXAMPLE_CHARS]}
                for m in requests[0].messages
            ]
        mode = self.answer_mode
        self.info["answer"] = mode
        if mode == "constrained" and self.scored and self._calibrated is None:
            self.choose_calibration([])  # predict without fit: 'contextual' only
        responses = self.runner.run_sync(requests)
        preds = [self._prediction(r) for r in responses]
        self._answer_notes()
        if contexts is None:
            return preds
        return with_context(preds, contexts, self._retrieval_ms)

    def _answer_notes(self) -> None:
        """The run's notes on how constrained answers went (fallbacks to free text)."""
        notes = list(self.runner.backend.notes)
        fallback = self.info.get("answer_fallback")
        if fallback:
            notes.append(
                f"{fallback} answers of '{self.runner.config.name}' came back as free text, "
                "not the structured output asked for; they were parsed as free text"
            )
        if notes:
            self.info["answer_notes"] = sorted(set(notes))

    # ------------------------------------------------------------ export

    def serving_llm(self) -> LLMRunner:
        """The runner that answers :meth:`predict` (a fine-tune's tuned model, after fit)."""
        return self.runner

    def save_state(self, folder: Path) -> dict[str, Any]:
        """The shots (fixed, or the pool searched per input with its vectors)."""

        def rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
            return [{"id": ex.id, "text": ex.text, "label": ex.label} for ex in examples]

        state: dict[str, Any] = {"fixed": rows(self._fixed)}
        if self.retrieval_setting:
            state["retrieval"] = dict(self.retrieval_setting)
        if self._offsets is not None:
            state["calibration_offsets"] = list(self._offsets)
        if self._pool_vectors is not None:
            state["pool"] = rows(self._pool)
            state["pool_arrays"] = save_arrays(folder, "shot_pool.npz", vectors=self._pool_vectors)
        return state

    def load_state(self, folder: Path, state: dict[str, Any]) -> None:
        def examples(rows: list[dict[str, Any]]) -> list[Example]:
            out = []
            for row in rows:
                file, _, line = str(row["id"]).rpartition(":")
                out.append(Example(str(row["text"]), str(row["label"]), file, int(line or 0)))
            return out

        self._fixed = examples(state.get("fixed") or [])
        retrieval = state.get("retrieval") or {}
        check(_retrieval_setting(retrieval), folder, "retrieval setting")
        self.retrieval_setting = dict(retrieval)
        offsets = state.get("calibration_offsets")
        if isinstance(offsets, list) and len(offsets) == len(self.label_names):
            self._offsets, self._calibrated = [float(x) for x in offsets], True
        else:
            self._offsets, self._calibrated = None, False
        if state.get("pool_arrays"):
            self._pool = examples(state.get("pool") or [])
            vectors = load_arrays(
                folder, state["pool_arrays"], ("vectors",), {"vectors": (None, None)}
            )["vectors"]
            self._pool_vectors = vectors
        else:
            self._pool = list(self._fixed)

    def predict_samples(self, texts: Sequence[str], n: int) -> list[list[Prediction]]:
        # All samples in one batch of requests, so they run concurrently.
        requests = [r for s in range(n) for r in self.requests(texts, sample=s)]
        responses = self.runner.run_sync(requests, description="consistency samples")
        preds = [self._prediction(r) for r in responses]
        return [preds[s * len(texts) : (s + 1) * len(texts)] for s in range(n)]


def _retrieval_setting(value: Any) -> bool:
    """Whether an exported state's retrieval setting is one ``tune:`` can choose."""
    if not isinstance(value, dict) or not set(value) <= {"context_k", "hybrid_weight", "reranker"}:
        return False
    k, w, rerank = value.get("context_k", 1), value.get("hybrid_weight"), value.get("reranker")
    return (
        type(k) is int
        and 1 <= k <= 50
        and (w is None or (type(w) in (int, float) and 0 <= w <= 1))
        and (rerank is None or type(rerank) is bool)
    )


def with_context(
    preds: Sequence[Prediction], contexts: Sequence[Sequence[Passage]], ms: Sequence[float]
) -> list[Prediction]:
    """Predictions carrying their passages, retrieval time added to their latency."""
    import dataclasses

    return [
        dataclasses.replace(
            p,
            context=passages_json(c),
            latency_ms=None if p.latency_ms is None else p.latency_ms + t,
        )
        for p, c, t in zip(preds, contexts, ms, strict=True)
    ]


class LLMZeroShot(PromptStrategy):
    name: ClassVar[str] = "llm-zero-shot"
    Options: ClassVar[type[StrategyOptions]] = ZeroShotPromptOptions


class LLMFewShot(PromptStrategy):
    name: ClassVar[str] = "llm-few-shot"
    Options: ClassVar[type[StrategyOptions]] = FewShotPromptOptions


class LLMChainOfThought(PromptStrategy):
    name: ClassVar[str] = "llm-cot"
    Options: ClassVar[type[StrategyOptions]] = CoTPromptOptions
