"""``adaptlab run --dry-run``: what each candidate would send and cost, calling nothing.

For every generative candidate the prompts are rendered exactly as a run would
render them; input tokens come from the model's tokenizer where one is available
offline (else an estimate, and the plan says so), answers already in the response
cache are free, and output tokens are projected from the answer format: a bare
label costs its own tokens plus one, anything longer is counted at ``max_tokens``
(an upper bound).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from adaptlab.strategies import ProgressSink, get_strategy

if TYPE_CHECKING:
    from adaptlab.config import CandidateConfig
    from adaptlab.data import Split
    from adaptlab.llm.types import ChatRequest
    from adaptlab.project import Project
    from adaptlab.strategies.prompting import PromptStrategy


@dataclass
class CandidatePlan:
    name: str
    model: str  # "openai:gpt-4o-mini", or "local" for the encoder strategies
    requests: int
    cached: int
    input_tokens: int
    output_tokens: int
    output_is_bound: bool  # output counted at max_tokens: an upper bound
    tokens_exact: bool
    input_usd_per_1m: float | None
    output_usd_per_1m: float | None
    note: str = ""

    @property
    def cost_usd(self) -> float | None:
        if self.input_usd_per_1m is None or self.output_usd_per_1m is None:
            return None
        return (
            self.input_tokens * self.input_usd_per_1m + self.output_tokens * self.output_usd_per_1m
        ) / 1e6


def plan_project(project: Project) -> list[CandidatePlan]:
    """A plan row per candidate; nothing is sent and nothing is written."""
    from adaptlab.runner import llm_unavailable

    cfg = project.config
    split = project.split()
    texts = [ex.text for ex in split.test]
    plans = []
    for cand in cfg.candidates:
        cls = get_strategy(cand.strategy)
        if not cls.generative or cand.llm is None:
            plans.append(
                CandidatePlan(
                    name=cand.name,
                    model="local encoder",
                    requests=len(texts),
                    cached=0,
                    input_tokens=0,
                    output_tokens=0,
                    output_is_bound=False,
                    tokens_exact=True,
                    input_usd_per_1m=None,
                    output_usd_per_1m=None,
                    note="runs on this machine: compute cost only",
                )
            )
            continue
        reason = llm_unavailable(cfg.llms[cand.llm])
        plan = _plan_generative(project, cand, split, texts)
        if reason:
            plan.note = f"would be skipped: {reason}"
        plans.append(plan)
    return plans


def fitted_prompt_strategy(project: Project, cand: CandidateConfig, split: Split) -> PromptStrategy:
    """A generative candidate's strategy, fitted (examples picked) but with no model to call:
    what renders the exact prompts of a dry run and of ``adaptlab prompt render``."""
    from adaptlab.runner import _Models, make_context
    from adaptlab.strategies.prompting import PromptStrategy

    strategy, _ = make_context(
        project, cand, project.state_dir, _Models(project), ProgressSink(), with_llm=False
    )
    assert isinstance(strategy, PromptStrategy)
    strategy.fit(split.train, split.val)
    return strategy


def _plan_generative(
    project: Project, cand: CandidateConfig, split: Split, texts: list[str]
) -> CandidatePlan:
    from adaptlab.backends import load_llm
    from adaptlab.llm.cache import ResponseCache
    from adaptlab.llm.prices import price_for

    cfg = project.config
    assert cand.llm is not None
    llm_cfg = cfg.llms[cand.llm]
    backend = load_llm(llm_cfg, require_key=False)
    strategy = fitted_prompt_strategy(project, cand, split)
    requests: list[ChatRequest] = strategy.requests(texts)
    n_cons = cfg.evaluation.consistency_samples
    if n_cons >= 2:
        subset = texts[: cfg.evaluation.consistency_inputs]
        for s in range(1, n_cons):  # sample 0 is the main prediction
            requests += strategy.requests(subset, sample=s)
    identity = backend.identity()
    cached: set[int] = set()
    if project.llm_cache_path.exists():
        cache = ResponseCache(project.llm_cache_path)
        cached = {i for i, r in enumerate(requests) if cache.get(r.cache_key(identity))}
        cache.close()
    todo = [r for i, r in enumerate(requests) if i not in cached]
    counts = [backend.count_tokens(r) for r in todo]
    per_answer, bound = _answer_tokens(strategy, backend)
    price = price_for(llm_cfg)
    return CandidatePlan(
        name=cand.name,
        model=f"{llm_cfg.backend}:{llm_cfg.name}",
        requests=len(requests),
        cached=len(cached),
        input_tokens=sum(n for n, _ in counts),
        output_tokens=per_answer * len(todo),
        output_is_bound=bound,
        tokens_exact=all(exact for _, exact in counts),
        input_usd_per_1m=price.input if price else None,
        output_usd_per_1m=price.output if price else None,
        note="" if price else "no price known: set llms.<name>.prices",
    )


def _answer_tokens(strategy: object, backend: object) -> tuple[int, bool]:
    """Output tokens per answer, and whether that is the max_tokens upper bound."""
    from adaptlab.llm.tokens import estimate_tokens
    from adaptlab.strategies.prompting import PromptStrategy

    assert isinstance(strategy, PromptStrategy)
    limit = strategy.opts.answer_tokens(strategy.ctx.task)
    if strategy.ctx.task == "classification" and not strategy.opts.reasoning:
        labels = strategy.label_names
        if strategy.opts.output == "json":
            sizes = [estimate_tokens(f'{{"label": "{lab}"}}') for lab in labels]
        else:
            sizes = [estimate_tokens(lab) for lab in labels]
        return min(limit, max(sizes) + 1), False
    return limit, True
