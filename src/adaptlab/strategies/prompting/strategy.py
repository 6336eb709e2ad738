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
    GenerationParams,
    Message,
    failure_status,
)
from adaptlab.prompts import PromptTemplate
from adaptlab.rag.context import format_context, make_passages, passages_json, strip_citations
from adaptlab.strategies.base import Strategy, StrategyContext, StrategyOptions
from adaptlab.strategies.prompting.config import (
    CoTPromptOptions,
    FewShotPromptOptions,
    PromptOptions,
    ZeroShotPromptOptions,
)
from adaptlab.strategies.state import load_arrays, save_arrays

if TYPE_CHECKING:
    import numpy as np

    from adaptlab.backends.runner import LLMRunner
    from adaptlab.rag.context import Passage

_TEMPLATES = {"classification": "classify", "extraction": "extract", "generation": "generate"}


def label_schema(labels: Sequence[str]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(labels)}},
        "required": ["label"],
        "additionalProperties": False,
    }


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
    Options: ClassVar[type[StrategyOptions]] = PromptOptions
    generative: ClassVar[bool] = True
    tasks: ClassVar[tuple[str, ...]] = ("classification", "extraction", "generation")

    def __init__(self, options: StrategyOptions, ctx: StrategyContext) -> None:
        super().__init__(options, ctx)
        assert isinstance(options, PromptOptions)
        self.opts: PromptOptions = options
        self.template = self.template_for(options, ctx.root, ctx.task)
        self.info.update(template=self.template.name, template_version=self.template.version)
        self._pool: list[Example] = []
        self._fixed: list[Example] = []
        self._pool_vectors: np.ndarray | None = None
        self._retrieval_ms: list[float] = []

    @classmethod
    def needs_encoder(cls, options: StrategyOptions) -> bool:
        assert isinstance(options, PromptOptions)
        return options.shots > 0 and options.selector in ("similar", "mmr")

    @classmethod
    def template_for(cls, options: PromptOptions, root: Path, task: str) -> PromptTemplate:
        name = _TEMPLATES[task] if options.template == "auto" else options.template
        return PromptTemplate(name, root)

    @classmethod
    def key_extra(cls, options: StrategyOptions, root: Path, task: str) -> dict[str, object]:
        assert isinstance(options, PromptOptions)
        template = cls.template_for(options, root, task)
        return {"template": template.name, "version": template.version}

    # ------------------------------------------------------------ examples

    def fit(self, train: Sequence[Example], val: Sequence[Example]) -> None:
        self.select_shots(train)

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

    def params(self) -> GenerationParams:
        provider_schema = self.schema if self.opts.output == "json" else None
        return GenerationParams(
            temperature=self.opts.temperature,
            max_tokens=self.opts.answer_tokens(self.ctx.task),
            seed=self.ctx.seed,
            json_schema=provider_schema,
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
        hits, ms = self.ctx.retrieve(list(texts), self.opts.context_k)
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
        return Prediction(
            label=value,
            score=1.0 if value is not None and status not in ("unparsed", "invalid") else 0.0,
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
        responses = self.runner.run_sync(requests)
        preds = [self._prediction(r) for r in responses]
        if contexts is None:
            return preds
        return with_context(preds, contexts, self._retrieval_ms)

    # ------------------------------------------------------------ export

    def serving_llm(self) -> LLMRunner:
        """The runner that answers :meth:`predict` (a fine-tune's tuned model, after fit)."""
        return self.runner

    def save_state(self, folder: Path) -> dict[str, Any]:
        """The shots (fixed, or the pool searched per input with its vectors)."""

        def rows(examples: Sequence[Example]) -> list[dict[str, Any]]:
            return [{"id": ex.id, "text": ex.text, "label": ex.label} for ex in examples]

        state: dict[str, Any] = {"fixed": rows(self._fixed)}
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
