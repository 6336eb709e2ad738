"""``adaptlab run --dry-run``: what each candidate would send and cost, calling nothing.

For every generative candidate the prompts are rendered exactly as a run would
render them; input tokens come from the model's tokenizer where one is available
offline (else an estimate, and the plan says so), answers already in the response
cache are free, and output tokens are projected from the answer format: a bare
label costs its own tokens plus one, anything longer is counted at ``max_tokens``
(an upper bound; a reasoning model's at its whole output limit).

Each test input whose prompt plus output limit will not fit the model's context
window (from the price table, or an ``hf`` model's ``config.json``) is listed by
example id (:func:`context_checks`, also what ``adaptlab data check`` prints): such an
input would be refused and stored as ``too_long``.

A fine-tuned candidate also shows what fitting it trains on (:class:`TrainingPlan`):
an ``openai-finetune`` job's epochs, billed tokens and USD before anything is uploaded
(:meth:`~adaptlab.strategies.openai_finetune.OpenAIFinetune.estimate`), and for an
``llm-finetune`` candidate the tokens per epoch its local trainer will see, counted by
the trainer's own encoding (:func:`adaptlab.train.collate.encode_chats`). A fine-tuned
candidate's answers are priced as the fine-tuned model, and none of them can be in the
response cache yet (no tuned model has answered).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from adaptlab.backends import load_llm
from adaptlab.backends.availability import llm_unavailable
from adaptlab.backends.base import GenerativeBackend
from adaptlab.backends.gguf import resolve_model
from adaptlab.core.errors import AdaptlabError, ConfigError
from adaptlab.core.format import usd as fmt_usd
from adaptlab.core.progress import ProgressSink
from adaptlab.engine.runner import Models, make_context
from adaptlab.llm.cache import ResponseCache
from adaptlab.llm.prices import capabilities_for, price_for, price_kind
from adaptlab.llm.tokens import estimate_tokens, openai_token_count
from adaptlab.strategies import get_strategy
from adaptlab.strategies.llm_finetune.strategy import LLMFinetune
from adaptlab.strategies.openai_finetune.strategy import OpenAIFinetune
from adaptlab.strategies.prompt_search import PromptSearch
from adaptlab.strategies.prompting import PromptStrategy
from adaptlab.strategies.prompting.config import ContextTunedOptions
from adaptlab.strategies.prompting.tune import tuning_requests
from adaptlab.strategies.tuning import tuning_plan
from adaptlab.train.collate import IGNORE, encode_chats

if TYPE_CHECKING:
    from collections.abc import Sequence

    from adaptlab.config import CandidateConfig, LLMConfig
    from adaptlab.data import Example, Split
    from adaptlab.engine.project import Project
    from adaptlab.llm.types import ChatRequest


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
    context: ContextCheck | None = None  # test inputs too long for the model, if known
    training: TrainingPlan | None = None  # a fine-tuned candidate: what fitting trains on
    proposer: ProposerPlan | None = None  # a prompt-search's proposer, another model

    @property
    def own_cost_usd(self) -> float | None:
        """USD of the candidate's own model's requests (None: no price known)."""
        return _tokens_usd(self)

    @property
    def cost_usd(self) -> float | None:
        """USD of every request the candidate sends, its proposer's included (None: a
        price is not known)."""
        own = self.own_cost_usd
        if self.proposer is None or own is None:
            return own
        other = self.proposer.cost_usd
        return None if other is None else own + other


@dataclass
class ProposerPlan:
    """A prompt-search's calls to its proposer, when that is another ``llms:`` entry:
    priced at the proposer's own price. ``output_tokens`` is a bound (``max_tokens`` of
    each call); ``tokens_exact``: counted with the proposer's tokenizer."""

    name: str
    model: str  # "openai:gpt-4o"
    requests: int
    cached: int
    input_tokens: int
    output_tokens: int
    tokens_exact: bool
    input_usd_per_1m: float | None
    output_usd_per_1m: float | None

    @property
    def cost_usd(self) -> float | None:
        return _tokens_usd(self)


def _tokens_usd(plan: CandidatePlan | ProposerPlan) -> float | None:
    """A plan's tokens at its prices per million (None: a price is not known)."""
    if plan.input_usd_per_1m is None or plan.output_usd_per_1m is None:
        return None
    return (
        plan.input_tokens * plan.input_usd_per_1m + plan.output_tokens * plan.output_usd_per_1m
    ) / 1e6


@dataclass
class TrainingPlan:
    """What fitting a fine-tuned candidate will train on (and bill), before it starts.

    ``where``: "provider" (a paid job) or "local" (this machine: compute cost only);
    ``examples``: training chats; ``epochs``: passes over them (``epochs_from`` says
    whether the candidate set them or the provider's "auto" rule picked them);
    ``tokens_per_epoch``: a provider's billed tokens per pass (each example up to its
    cap), or the tokens a local trainer feeds per pass (each chat cut at ``max_length``);
    ``tokens``: ``tokens_per_epoch`` x ``epochs`` (locally an upper bound: early stopping
    may end sooner, and a fractional epoch is approximate); ``exact``: counted with the
    model's tokenizer, not estimated; ``usd``: a provider's training bill (None: local,
    or no training price); ``source``: where that price comes from, or why there is
    none; ``cut``: examples over the cap (provider) or cut at ``max_length`` (local);
    ``loss_tokens_per_epoch``: locally, the answer tokens the loss is computed on;
    ``problem``: why no estimate could be made (then the counts are 0).
    """

    where: Literal["provider", "local"]
    examples: int
    epochs: float
    epochs_from: str
    tokens_per_epoch: int
    tokens: int
    exact: bool
    usd: float | None = None
    source: str = ""
    cut: int = 0
    cap: int = 0
    loss_tokens_per_epoch: int | None = None
    problem: str = ""

    def line(self) -> str:
        """One sentence for the terminal."""
        if self.problem:
            return f"training: no estimate, {self.problem}"
        approx = "" if self.exact else "~"
        epochs = f"{self.epochs:g} epoch{'s' if self.epochs != 1 else ''} ({self.epochs_from})"
        if self.where == "provider":
            usd = "USD unknown" if self.usd is None else fmt_usd(self.usd)
            cut = (
                f"; {self.cut} example(s) over the {self.cap:,}-token cap are cut"
                if self.cut
                else ""
            )
            return (
                f"training at the provider on {self.examples} examples: {epochs} x "
                f"{approx}{self.tokens_per_epoch:,} tokens = {approx}{self.tokens:,} billed "
                f"tokens, {usd} ({self.source}){cut}"
            )
        loss = (
            f", {self.loss_tokens_per_epoch:,} of them answer tokens the loss is on"
            if self.loss_tokens_per_epoch is not None
            else ""
        )
        cut = (
            f"; {self.cut} example(s) longer than max_length={self.cap:,} are cut"
            if self.cut
            else ""
        )
        return (
            f"training on this machine on {self.examples} examples: {epochs} x "
            f"{self.tokens_per_epoch:,} tokens{loss} = at most about {self.tokens:,} tokens "
            f"trained on, compute cost only (no API bill){cut}"
        )


@dataclass(frozen=True)
class Overflow:
    """A test input whose prompt will not fit: its example id and prompt tokens."""

    example_id: str
    tokens: int
    exact: bool


@dataclass
class ContextCheck:
    candidate: str
    model: str  # "openai:gpt-4o-mini"
    window: int  # tokens of prompt + answer the model takes
    output_tokens: int  # the output limit sent with each request
    overflows: list[Overflow]

    def lines(self) -> list[str]:
        """One sentence for the terminal, with the fix; none when every input fits."""
        if not self.overflows:
            return []
        shown = ", ".join(
            f"{o.example_id} ({'' if o.exact else '~'}{o.tokens:,} tokens)"
            for o in self.overflows[:5]
        )
        more = f" and {len(self.overflows) - 5} more" if len(self.overflows) > 5 else ""
        return [
            f"{self.candidate}: {len(self.overflows)} input(s) will not fit the "
            f"{self.window:,}-token context of {self.model} with {self.output_tokens:,} "
            f"output tokens: {shown}{more}; they would be stored as too_long and scored "
            "wrong. fix: shorten those inputs, use fewer examples (shots), or a model with a "
            "larger context window"
        ]


def _overflows(
    ids: list[str], counts: list[tuple[int, bool]], window: int, output: int
) -> list[Overflow]:
    return [
        Overflow(ex_id, n, exact)
        for ex_id, (n, exact) in zip(ids, counts, strict=True)
        if n + output > window
    ]


def context_checks(
    project: Project, split: Split | None = None, examples: Sequence[Example] | None = None
) -> list[ContextCheck]:
    """Generative candidates' inputs (``examples``, default the test split's) that will not
    fit their model's context window.

    Nothing is sent and no local model is loaded: prompts are counted with the model's
    tokenizer where one is available offline, else estimated. Candidates whose model has
    no known context window, or whose examples are picked by an encoder, are not checked
    (the dry run checks the latter).
    """

    cfg = project.config
    split = split or project.split()
    checks = []
    for cand in cfg.candidates:
        cls = get_strategy(cand.strategy)
        if not cls.generative or cand.llm is None or cand.llm not in cfg.llms:
            continue
        llm_cfg = cfg.llms[cand.llm]
        caps = capabilities_for(llm_cfg)
        if caps.context_window is None or cls.needs_encoder(
            cls.Options.model_validate(cand.params)
        ):
            continue
        strategy = fitted_prompt_strategy(project, cand, split)
        inputs = list(split.test if examples is None else examples)
        requests = strategy.requests([ex.text for ex in inputs])
        if llm_cfg.backend == "openai":
            counts = [
                openai_token_count(llm_cfg.name, [(m.role, m.content) for m in r.messages])
                for r in requests
            ]
        else:
            counts = [(estimate_tokens(r.prompt_text()), False) for r in requests]
        output = caps.output_room(strategy.opts.answer_tokens(strategy.ctx.task))
        checks.append(
            ContextCheck(
                candidate=cand.name,
                model=f"{llm_cfg.backend}:{llm_cfg.name}",
                window=caps.context_window,
                output_tokens=output,
                overflows=_overflows([ex.id for ex in inputs], counts, caps.context_window, output),
            )
        )
    return checks


def plan_project(project: Project) -> list[CandidatePlan]:
    """A plan row per candidate; nothing is sent and nothing is written."""

    cfg = project.config
    split = project.split()
    # A run answers the test split and the validation split (candidates are chosen on
    # val, reported on test), so both are planned and paid for.
    texts = [ex.text for ex in (*split.test, *split.val)]
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
    by_name = {cand.name: cand for cand in cfg.candidates}
    for plan in plans:  # a tuned candidate: its trials and cap (strategies/tuning.py)
        cand = by_name[plan.name]
        options = get_strategy(cand.strategy).Options.model_validate(cand.params)
        line = tuning_plan(options, cfg)
        if line:
            plan.note = f"{plan.note}; {line}" if plan.note else line
    return plans


def fitted_prompt_strategy(project: Project, cand: CandidateConfig, split: Split) -> PromptStrategy:
    """A generative candidate's strategy, fitted (examples picked) but with no model to call:
    what renders the exact prompts of a dry run and of ``adaptlab prompt render``."""

    strategy, _ = make_context(
        project, cand, project.state_dir, Models(project), ProgressSink(), with_llm=False
    )
    assert isinstance(strategy, PromptStrategy)
    # Picking the shots is all of a prompt's fitting; a fine-tuning strategy's fit() would
    # train (or start a paid job), and its prompts need only the shots too.
    strategy.select_shots(split.train)
    return strategy


def _plan_generative(
    project: Project, cand: CandidateConfig, split: Split, texts: list[str]
) -> CandidatePlan:
    cfg = project.config
    assert cand.llm is not None
    llm_cfg = cfg.llms[cand.llm]
    backend = load_llm(llm_cfg, require_key=False)
    strategy = fitted_prompt_strategy(project, cand, split)
    requests: list[ChatRequest] = strategy.requests(texts)
    proposer: ProposerPlan | None = None
    slack = 0
    asks: set[int] = set()  # the own model's proposer calls: answers up to max_tokens
    if isinstance(strategy, PromptSearch):  # the search at its worst, then the test answers
        named = next(iter(type(strategy).other_llms(strategy.options)), None)
        other = cfg.llms[named] if named is not None and named != cand.llm else None
        # Another API model is loaded to count its tokens (no call); a local one is not
        # loaded for a dry run: its calls are counted with the candidate's tokenizer.
        p_backend = load_llm(other, require_key=False) if other is not None else backend
        if p_backend.local and other is not None:
            p_backend = backend
        planned = strategy.planned_requests(
            split, backend, (p_backend, price_for(other)) if other is not None else None
        )
        requests, slack = planned.own, planned.proposer_slack_tokens
        if other is not None:
            assert named is not None
            proposer = _proposer_plan(project, named, other, p_backend, planned.proposer, slack)
            slack = 0
        else:
            asks = {id(r) for r in planned.proposer}
            requests = requests + planned.proposer
    searched = 0
    if isinstance(strategy.opts, ContextTunedOptions) and strategy.opts.tune is not None:
        # The search at its worst, on val only; the run's validation answers are the
        # default's (or the chosen setting's, from the cache): not sent again.
        ids = backend.identity()
        search = tuning_requests(strategy, split)
        keys = {r.cache_key(ids) for r in search}
        searched = len(search)
        requests = search + [r for r in requests if r.cache_key(ids) not in keys]
    n_cons = cfg.evaluation.consistency_samples
    if n_cons >= 2:
        subset = texts[: cfg.evaluation.consistency_inputs]
        for s in range(1, n_cons):  # sample 0 is the main prediction
            requests += strategy.requests(subset, sample=s)
    # A fine-tuned candidate is answered by a model that does not exist yet: the base
    # model's cached answers (another candidate's, same prompt) are not its answers.
    cached = set() if strategy.trains_weights else _cached(project, backend, requests)
    todo = [r for i, r in enumerate(requests) if i not in cached]
    counts = [backend.count_tokens(r) for r in todo]
    per_answer, bound = _answer_tokens(strategy, backend)
    price = price_for(llm_cfg)
    training = training_plan(strategy, split, llm_cfg)
    if training is not None and training.where == "provider":
        # Answers come from the tuned model, which the provider prices above its base.
        price = price.finetuned if price is not None else None
    caps = capabilities_for(llm_cfg)
    context = None
    if caps.context_window is not None:
        main = strategy.requests(texts)
        output = caps.output_room(strategy.opts.answer_tokens(strategy.ctx.task))
        context = ContextCheck(
            candidate=cand.name,
            model=f"{llm_cfg.backend}:{llm_cfg.name}",
            window=caps.context_window,
            output_tokens=output,
            overflows=_overflows(
                [ex.id for ex in (*split.test, *split.val)],
                [backend.count_tokens(r) for r in main],
                caps.context_window,
                output,
            ),
        )
    plan = CandidatePlan(
        name=cand.name,
        model=f"{llm_cfg.backend}:{llm_cfg.name}",
        requests=len(requests),
        cached=len(cached),
        input_tokens=sum(n for n, _ in counts) + slack,
        output_tokens=sum(r.params.max_tokens if id(r) in asks else per_answer for r in todo),
        output_is_bound=bound,
        tokens_exact=all(exact for _, exact in counts),
        input_usd_per_1m=price.input if price else None,
        output_usd_per_1m=price.output if price else None,
        note=""
        if price
        else "runs on this machine: compute cost only"
        if price_kind(llm_cfg) == "self-hosted"
        else "no price known: set llms.<name>.prices",
        context=context,
        training=training,
        proposer=proposer,
    )
    if searched:
        line = f"the search answers validation inputs with at most {searched} calls"
        plan.note = f"{plan.note}; {line}" if plan.note else line
    return plan


def _cached(project: Project, backend: GenerativeBackend, requests: list[ChatRequest]) -> set[int]:
    """Positions in ``requests`` whose answer from ``backend`` is in the project's
    response cache (asked again, they cost nothing)."""
    if not project.llm_cache_path.exists():
        return set()
    identity = backend.identity()
    cache = ResponseCache(project.llm_cache_path)
    try:
        return {i for i, r in enumerate(requests) if cache.get(r.cache_key(identity))}
    finally:
        cache.close()


def _proposer_plan(
    project: Project,
    name: str,
    llm_cfg: LLMConfig,
    backend: GenerativeBackend,
    requests: list[ChatRequest],
    slack: int,
) -> ProposerPlan:
    """The proposer's calls of a prompt-search at the proposer's own price: answers in
    the response cache under its identity cost nothing; ``slack`` is what reflections
    may quote beyond their bound request (counted as input)."""
    cached = _cached(project, backend, requests)
    todo = [r for i, r in enumerate(requests) if i not in cached]
    counts = [backend.count_tokens(r) for r in todo]
    price = price_for(llm_cfg)
    return ProposerPlan(
        name=name,
        model=f"{llm_cfg.backend}:{llm_cfg.name}",
        requests=len(requests),
        cached=len(cached),
        input_tokens=sum(n for n, _ in counts) + (slack if todo else 0),
        output_tokens=sum(r.params.max_tokens for r in todo),
        tokens_exact=all(exact for _, exact in counts),
        input_usd_per_1m=price.input if price else None,
        output_usd_per_1m=price.output if price else None,
    )


def training_plan(
    strategy: PromptStrategy, split: Split, llm_cfg: LLMConfig
) -> TrainingPlan | None:
    """What fitting ``strategy`` on ``split.train`` will train on; None for a prompt.

    ``strategy`` is fitted for prompts only (:func:`fitted_prompt_strategy`): its
    training chats are the requests it will send, with the targets as answers.
    """

    if isinstance(strategy, OpenAIFinetune):
        return _provider_training(strategy, split, llm_cfg)
    if isinstance(strategy, LLMFinetune):
        return _local_training(strategy, split, llm_cfg)
    return None


def _provider_training(strategy: OpenAIFinetune, split: Split, llm_cfg: LLMConfig) -> TrainingPlan:
    records = strategy.chat_records(split.train)
    auto = strategy.ft.n_epochs == "auto"
    epochs_from = f"auto: OpenAI's rule for {len(records)} examples" if auto else "set"
    if not records:
        return TrainingPlan("provider", 0, 0, epochs_from, 0, 0, False, problem="no training split")
    cost = strategy.estimate(records, llm_cfg.name)
    # One model, one tokenizer: the first record says whether every count is exact.
    exact = openai_token_count(llm_cfg.name, [(m["role"], m["content"]) for m in records[0]])[1]
    return TrainingPlan(
        where="provider",
        examples=len(records),
        epochs=cost.epochs,
        epochs_from=epochs_from,
        tokens_per_epoch=cost.tokens_per_epoch,
        tokens=cost.billed_tokens,
        exact=bool(exact),
        usd=cost.usd,
        source=cost.source,
        cut=cost.over_cap,
        cap=cost.cap,
    )


def _local_training(strategy: LLMFinetune, split: Split, llm_cfg: LLMConfig) -> TrainingPlan:
    options = strategy.train_options()

    def problem(text: str) -> TrainingPlan:
        return TrainingPlan("local", 0, options.epochs, "set", 0, 0, False, problem=text)

    if llm_cfg.backend != "hf":
        return problem(
            f"llm-finetune trains a local model and llm '{llm_cfg.name}' uses backend "
            f"'{llm_cfg.backend}'; the run would stop (point the candidate at an 'hf' llm)"
        )
    if not split.val:
        return problem(
            "the validation split is empty and llm-finetune stops early on it; the run "
            "would stop (set data.val_size, e.g. 0.1)"
        )
    records = strategy.chat_records(split.train)
    if not records:
        return problem("no training split")
    try:
        tokenizer = _local_tokenizer(llm_cfg.name)
        enc = encode_chats(tokenizer, records, options.max_length)
    except AdaptlabError as exc:
        return problem(f"the run would stop: {exc.issue.message} ({exc.issue.fix})")
    loss = sum(sum(label != IGNORE for label in f["labels"]) for f in enc.features)
    return TrainingPlan(
        where="local",
        examples=len(enc.features),
        epochs=options.epochs,
        epochs_from="set",
        tokens_per_epoch=enc.tokens,
        tokens=round(enc.tokens * options.epochs),
        exact=True,
        cut=enc.truncated,
        cap=options.max_length,
        loss_tokens_per_epoch=loss,
    )


def _local_tokenizer(name: str) -> object:
    """The tokenizer :func:`adaptlab.train.train_causal_lm` loads for model ``name``.

    Offline only: a folder, a .gguf file or a bundled alias (converted once, as a run
    would). Raises ConfigError when no tokenizer can be read from it.
    """
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoTokenizer

    folder = resolve_model(name)
    try:
        return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as exc:  # a broken folder raises whatever its files make it raise
        raise ConfigError(
            f"cannot load a tokenizer from '{folder}': {str(exc).splitlines()[0]}",
            fix="name a model folder saved with save_pretrained() (with its tokenizer files)",
        ) from None


def _answer_tokens(strategy: object, backend: object) -> tuple[int, bool]:
    """Output tokens per answer, and whether that is the max_tokens upper bound."""

    assert isinstance(strategy, PromptStrategy)

    limit = strategy.opts.answer_tokens(strategy.ctx.task)
    if isinstance(backend, GenerativeBackend):
        caps = capabilities_for(backend.config)
        if caps.reasoning:
            # Hidden reasoning is billed as output: at most the whole limit sent.
            return caps.output_room(limit), True
    if strategy.ctx.task == "classification" and not strategy.opts.reasoning:
        labels = strategy.label_names
        if strategy.opts.output == "json":
            sizes = [estimate_tokens(f'{{"label": "{lab}"}}') for lab in labels]
        else:
            sizes = [estimate_tokens(lab) for lab in labels]
        return min(limit, max(sizes) + 1), False
    return limit, True
