"""``strategy: prompt-search``: a budget-true search for a classification prompt.

What it searches (:class:`~adaptlab.strategies.prompt_search.config.SearchSpace`):
instruction variants (the built-in templates in the data's language, and in English
where the data is not English; the user's templates and system prompts),
demonstrations (how many, and how they are picked, always from the train split),
the answer mode (constrained / free) and the temperature of free answers.

How: the candidate's own prompt options are the unoptimised prompt (the *default*),
answered first on the whole validation split. Up to ``max_trials`` settings, the
default among them, then go through successive halving (Jamieson & Talwalkar, "Non-
stochastic Best Arm Identification and Hyperparameter Optimization", AISTATS 2016) on
nested minibatches of the shuffled validation split (a survivor's earlier answers
come back from the response cache, so each round pays only for its new inputs); the
shortlist is answered on the whole validation split, and its best replaces the
default only where an exact McNemar test on those paired answers gives p < ``alpha``.
Otherwise the default stays, and ``info["prompt_search"]["decision"]`` says why.

With ``space.rewrites: N``, a proposer LLM writes N more system instructions, each
one more setting (:mod:`.propose`): the first from a summary of the task before the
first round, the rest after it as rewrites of the best prompt from its validation
failures (GEPA-style); those join the second round on its whole minibatch.

Budget-true: before anything is sent, the maximum calls, tokens and USD of the search
(the proposer's N calls at ``proposer_max_tokens`` included) are printed
(:meth:`PromptSearch.bound`); ``max_calls``, ``max_usd`` and ``max_minutes`` are enforced
on every attempt the runner makes (:mod:`.budget`). The chosen prompt is then answered
like any prompted candidate (:class:`PromptStrategy.predict`), so its tokens per
request enter its cost. The search is recorded in ``info["tuning"]``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import itertools
import math
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from adaptlab.backends import BACKENDS, GenerativeBackend
from adaptlab.backends.runner import LLMRunError
from adaptlab.core.errors import AdaptlabError, ConfigError
from adaptlab.core.format import usd as fmt_usd
from adaptlab.llm.prices import price_for
from adaptlab.prompts import is_builtin
from adaptlab.strategies.base import StrategyContext, StrategyOptions
from adaptlab.strategies.prompt_search import propose
from adaptlab.strategies.prompt_search.budget import Budget, BudgetSpent, capped
from adaptlab.strategies.prompt_search.config import PromptSearchOptions
from adaptlab.strategies.prompt_search.propose import Proposal
from adaptlab.strategies.prompting import PromptStrategy, constrained
from adaptlab.strategies.prompting.config import PromptOptions

if TYPE_CHECKING:
    from adaptlab.backends.runner import LLMRunner
    from adaptlab.config import CandidateConfig, ProjectConfig
    from adaptlab.data import Example, Split
    from adaptlab.llm.prices import Price
    from adaptlab.llm.types import ChatRequest

#: The dimensions of a setting, as ``info["tuning"]["space"]`` and each trial name them.
DIMENSIONS = ("template", "language", "system", "shots", "selector", "answer", "temperature")


def successive_halving(
    n_trials: int, n_val: int, first: int, eta: int, shortlist: int
) -> list[tuple[int, int]]:
    """The rounds of the search: ``(settings answered, validation inputs)`` each.

    Round 0 answers every setting on ``first`` inputs; each next round keeps the best
    ``max(shortlist, ceil(n / eta))`` and answers them on ``eta`` times the inputs;
    the last round answers the remaining settings (at most ``shortlist``, or all of
    them where the validation split is too small to halve on) on all ``n_val``.
    """
    rounds: list[tuple[int, int]] = []
    n, m = n_trials, min(first, n_val)
    while n > shortlist and m < n_val:
        rounds.append((n, m))
        n, m = max(shortlist, math.ceil(n / eta)), min(m * eta, n_val)
    rounds.append((n, n_val))
    return rounds


def mcnemar_exact(a: Sequence[float], b: Sequence[float]) -> float:
    """Two-sided exact McNemar p-value of paired per-example correctness ``a`` vs ``b``.

    The discordant pairs are binomial(b + c, 1/2) under the null (McNemar 1947; the
    exact form, as statsmodels' ``mcnemar(exact=True)``): p = min(1, 2 P[X <= min(b, c)]).
    """
    wins = sum(1 for x, y in zip(a, b, strict=True) if x > y)
    losses = sum(1 for x, y in zip(a, b, strict=True) if y > x)
    m = wins + losses
    if m == 0:
        return 1.0
    tail = sum(math.comb(m, i) for i in range(min(wins, losses) + 1)) / float(2**m)
    return min(1.0, 2 * tail)


@dataclass
class Trial:
    """One setting of the search: its dimensions, options, and answers so far."""

    params: dict[str, Any]
    options: PromptOptions
    strategy: PromptStrategy
    correct: dict[int, float] = field(default_factory=dict)  # val index -> 1.0 / 0.0
    got: dict[int, str] = field(default_factory=dict)  # val index -> the answer, as read
    fitted: bool = False
    proposal: Proposal | None = None  # the proposer call that wrote its instruction

    def score(self, idx: Sequence[int]) -> float:
        return sum(self.correct[i] for i in idx) / max(len(idx), 1)


@dataclass
class Bound:
    """The most a search can send: calls, prompt and output tokens, USD (None: no price).

    ``requests`` are the worst-case requests themselves (for a dry run).
    """

    calls: int
    input_tokens: int
    output_tokens: int
    usd: float | None
    requests: list[ChatRequest]


@dataclass
class PlannedRequests:
    """What a dry run counts for a prompt-search: ``own``, the candidate's model's
    requests (the search at its worst within the caps, then the test answers);
    ``proposer``, the proposer's calls among them (a summary request each, and the
    bound request of each reflection); ``proposer_slack_tokens``, what the reflections'
    prompts may hold beyond their bound request (the failures they quote)."""

    own: list[ChatRequest]
    proposer: list[ChatRequest]
    proposer_slack_tokens: int


@dataclass
class RewritePlan:
    """The proposer calls of a search (nothing sent yet): the summary requests, exact;
    how many reflections follow the first round, each bounded by ``reflect_request``'s
    prompt tokens plus ``reflect_slack``; the proposer's backend (to count tokens) and
    price."""

    summary: list[ChatRequest]
    reflect: int
    reflect_request: ChatRequest
    reflect_slack: int
    backend: GenerativeBackend
    price: Price | None

    @property
    def calls(self) -> int:
        return len(self.summary) + self.reflect


def _usd(tok_in: int, tok_out: int, price: Price | None) -> float:
    return 0.0 if price is None else (tok_in * price.input + tok_out * price.output) / 1e6


def _is_remote(backend: str) -> bool:
    """Whether an ``llms:`` backend answers through an API (not a local model)."""
    cls = BACKENDS.get(backend)
    return not (isinstance(cls, type) and issubclass(cls, GenerativeBackend) and cls.local)


class PromptSearch(PromptStrategy):
    """Prompt optimisation within hard caps; answers with the prompt it kept."""

    name: ClassVar[str] = "prompt-search"
    Options: ClassVar[type[StrategyOptions]] = PromptSearchOptions
    tasks: ClassVar[tuple[str, ...]] = ("classification",)

    def __init__(self, options: StrategyOptions, ctx: StrategyContext) -> None:
        super().__init__(options, ctx)
        assert isinstance(options, PromptSearchOptions)
        self.search = options
        # The unoptimised prompt: the candidate's own prompt options, without the search's.
        fields = set(PromptOptions.model_fields)
        self.base = PromptOptions.model_validate(
            {k: getattr(options, k) for k in fields if k in options.model_fields_set}
        )
        self.opts = self.base
        self._chosen: dict[str, Any] | None = None
        self._proposals: list[Proposal] = []
        self._calibrate_choice: str | None = None  # "auto" as the default decided it

    @classmethod
    def needs_encoder(cls, options: StrategyOptions) -> bool:
        assert isinstance(options, PromptSearchOptions)
        space = options.space
        searched = any(k > 0 for k in space.shots) and any(
            s in ("similar", "mmr") for s in space.selectors
        )
        return searched or super().needs_encoder(options)

    @classmethod
    def key_extra(
        cls, options: StrategyOptions, root: Path, task: str, language: str = "en"
    ) -> dict[str, object]:
        assert isinstance(options, PromptSearchOptions)
        extra = super().key_extra(options, root, task, language)
        # Every template the search may choose enters the key by its content hash.
        versions = {}
        for name in options.space.templates:
            for lang in {language, "en"}:
                opts = PromptOptions(template=name)
                versions[f"{name}:{lang}"] = cls.template_for(opts, root, task, lang).version
        extra["search_templates"] = versions
        return extra

    # ------------------------------------------------------------ the settings

    def _supports(self) -> tuple[str, frozenset[str]]:
        if self.ctx.llm is not None:
            return self.ctx.llm.backend.name, self.ctx.llm.backend.constrained
        if self.ctx.llm_backend is not None:
            return self.ctx.llm_backend
        return "none", frozenset()

    def _mode(self, opts: PromptOptions) -> str:
        name, supports = self._supports()
        return constrained.answer_mode(opts, self.ctx.task, name, supports, False)[0]

    def _trial(self, params: dict[str, Any], default: bool = False) -> Trial:
        """The trial of ``params`` (its options built on the unoptimised prompt's)."""
        if default:
            options = self.base
        else:
            update = {k: params[k] for k in DIMENSIONS if k != "language"}
            if update["selector"] is None:
                update["selector"] = self.base.selector
            if update["temperature"] is None:
                update["temperature"] = self.base.temperature
            # Calibration chosen on validation would answer it whole for every setting: the
            # settings take the default's choice once it is made (see fit).
            calibrate = "none" if self.base.calibrate == "auto" else self.base.calibrate
            dump = {k: getattr(self.base, k) for k in self.base.model_fields_set}
            options = PromptOptions.model_validate({**dump, **update, "calibrate": calibrate})
        ctx = dataclasses.replace(self.ctx, language=params["language"])
        return Trial(dict(params), options, PromptStrategy(options, ctx))

    def default_params(self) -> dict[str, Any]:
        b = self.base
        return {
            "template": "classify" if b.template == "auto" else b.template,
            "language": self.ctx.language,
            "system": b.system,
            "shots": b.shots,
            "selector": b.selector if b.shots else None,
            "answer": self._mode(b),
            "temperature": b.temperature if self._mode(b) == "free" else None,
        }

    def space(self) -> dict[str, list[Any]]:
        """Each dimension's values (what ``info["tuning"]["space"]`` records)."""
        s = self.search.space
        langs = [self.ctx.language] + (["en"] if self.ctx.language != "en" else [])
        answers = []
        for a in s.answers:
            if a == "constrained" and self._mode(self.base.model_copy(update={"answer": a})) != a:
                name, _ = self._supports()
                self.info["prompt_search_note"] = (
                    f"answer 'constrained' left out of the search: backend '{name}' cannot "
                    "constrain its answers to the labels"
                )
                continue
            answers.append(a)
        systems = list(dict.fromkeys([self.base.system, *s.instructions]))
        templates = ["classify" if t == "auto" else t for t in s.templates]
        return {
            "template": list(dict.fromkeys(templates)),
            "language": langs,
            "system": systems,
            "shots": list(s.shots),
            "selector": list(s.selectors),
            "answer": answers or [self._mode(self.base)],
            "temperature": list(s.temperatures),
        }

    def settings(self) -> tuple[list[dict[str, Any]], int]:
        """The settings tried, the default first, and the size of the whole grid."""
        space = self.space()
        grid: list[dict[str, Any]] = []
        seen = set()
        for tpl, lang, system, shots, selector, answer, temp in itertools.product(
            *(space[d] for d in DIMENSIONS)
        ):
            if lang != self.ctx.language and not is_builtin(tpl):
                continue  # a user's template is in whatever language it is written in
            params = {
                "template": tpl,
                "language": lang,
                "system": system,
                "shots": shots,
                "selector": selector if shots else None,
                "answer": answer,
                "temperature": temp if answer == "free" else None,
            }
            key = repr(sorted(params.items(), key=lambda kv: kv[0]))
            if key not in seen:
                seen.add(key)
                grid.append(params)
        default = self.default_params()
        others = [p for p in grid if p != default]
        random.Random(self.ctx.seed).shuffle(others)
        return [default, *others[: self.search.max_trials - 1]], len(grid) + (default not in grid)

    def trials(self, train: Sequence[Example]) -> list[Trial]:
        """The trials, with their demonstrations picked from ``train`` (nothing is sent)."""
        found = []
        for i, params in enumerate(self.settings()[0]):
            trial = self._trial(params, default=i == 0)
            trial.strategy.select_shots(train)
            found.append(trial)
        return found

    # ------------------------------------------------------------ the bound

    def bound(
        self,
        trials: Sequence[Trial],
        val: Sequence[Example],
        backend: GenerativeBackend,
        price: Price | None,
        rewrites: RewritePlan | None = None,
    ) -> Bound:
        """The most the search sends, for these trials on ``val`` (nothing is sent).

        Every answer is counted as not cached. The default is answered on all of ``val``
        (plus the content-free inputs of calibration, for a local scored model); in
        round r, at most n_r other settings answer the round's new inputs, and the
        bound takes the n_r costliest (by prompt tokens, by output tokens and by USD,
        each its own maximum). A rewrite (``rewrites``) is one proposer call and one
        setting whose prompt is, per input, at most the costliest setting's plus the
        longest instruction kept (:data:`~.propose.INSTRUCTION_BYTES`; a token covers a
        byte at least); a reflection joins round 1 on its whole minibatch, which the
        schedule of ``len(trials) + rewrites`` settings pays for in rounds 0 and 1.
        """
        n_rw = rewrites.calls if rewrites is not None else 0
        order = self.val_order(len(val))
        rounds = successive_halving(
            len(trials) + n_rw,
            len(val),
            self.search.min_examples,
            self.search.eta,
            self.search.shortlist,
        )
        texts = [ex.text for ex in val]

        per_trial = []  # (requests in val order, prompt tokens, output tokens)
        for trial in trials:
            reqs = trial.strategy.requests(texts)
            per_trial.append(
                (
                    reqs,
                    [backend.count_tokens(r)[0] for r in reqs],
                    [r.params.max_tokens for r in reqs],
                )
            )
        default_reqs, d_in, d_out = per_trial[0]
        requests = list(default_reqs)
        calls, tok_in, tok_out = len(val), sum(d_in), sum(d_out)
        money = _usd(sum(d_in), sum(d_out), price)
        cal: list[tuple[list[ChatRequest], int, int]] = []  # each calibrating trial's
        for trial in trials:
            if not self._calibrates(trial, backend.local):
                continue
            extra = trial.strategy.requests(list(constrained.CONTENT_FREE), contexts=None)
            cf = [backend.count_tokens(r)[0] for r in extra]
            cal.append((extra, sum(cf), sum(r.params.max_tokens for r in extra)))
        if cal and n_rw:  # a proposed setting may calibrate as the costliest one does
            cal += [max(cal, key=lambda c: (len(c[0]), c[1] + c[2]))] * n_rw
        for extra, c_in, c_out in cal:
            requests += extra
            calls += len(extra)
            tok_in, tok_out, money = (
                tok_in + c_in,
                tok_out + c_out,
                money + _usd(c_in, c_out, price),
            )
        if rewrites is not None and n_rw:
            every = range(len(val))
            worst_in = [max(t[1][i] for t in per_trial) + propose.INSTRUCTION_BYTES for i in every]
            worst_out = [max(t[2][i] for t in per_trial) for i in every]
            top = max(range(len(per_trial)), key=lambda j: sum(per_trial[j][1]))
            per_trial += [(per_trial[top][0], worst_in, worst_out)] * n_rw
            p_back, p_price, most = rewrites.backend, rewrites.price, rewrites.summary
            for r in most:
                p_in = p_back.count_tokens(r)[0]
                out = r.params.max_tokens
                calls, tok_in, tok_out = calls + 1, tok_in + p_in, tok_out + out
                money += _usd(p_in, out, p_price)
            requests += most
        done = 0
        for r_i, (n, m) in enumerate(rounds):
            new = order[done:m]
            done = m
            k = min(n, len(per_trial) - 1)
            costs = [
                (sum(t_in[i] for i in new), sum(t_out[i] for i in new), j)
                for j, (_reqs, t_in, t_out) in enumerate(per_trial[1:], start=1)
            ]
            calls += k * len(new)
            tok_in += sum(sorted((c[0] for c in costs), reverse=True)[:k])
            tok_out += sum(sorted((c[1] for c in costs), reverse=True)[:k])
            money += sum(sorted((_usd(c[0], c[1], price) for c in costs), reverse=True)[:k])
            ranked = sorted(costs, key=lambda c: _usd(c[0], c[1], price) + c[0], reverse=True)
            for _a, _b, j in ranked[:k]:
                requests += [per_trial[j][0][i] for i in new]
            if r_i == 0 and rewrites is not None and rewrites.reflect:
                one = rewrites.reflect_request
                p_in = rewrites.backend.count_tokens(one)[0] + rewrites.reflect_slack
                out = one.params.max_tokens
                calls += rewrites.reflect
                tok_in, tok_out = tok_in + rewrites.reflect * p_in, tok_out + rewrites.reflect * out
                money += rewrites.reflect * _usd(p_in, out, rewrites.price)
                requests += [one] * rewrites.reflect
        priced = price is not None or (rewrites is not None and rewrites.price is not None)
        return Bound(calls, tok_in, tok_out, money if priced else None, requests)

    def _calibrates(self, trial: Trial, local: bool) -> bool:
        """Whether ``trial`` asks for the content-free inputs of contextual calibration
        (a local model's constrained answers, one fixed set of demonstrations)."""
        p = trial.params
        return (
            local
            and self.base.calibrate != "none"
            and p["answer"] == "constrained"
            and not (p["shots"] and p["selector"] in ("similar", "mmr"))
        )

    def val_order(self, n: int) -> list[int]:
        """The validation inputs in the order the minibatches take them (seeded)."""
        order = list(range(n))
        random.Random(self.ctx.seed + 1).shuffle(order)
        return order

    def planned_requests(
        self,
        split: Split,
        backend: GenerativeBackend,
        proposer: tuple[GenerativeBackend, Price | None] | None = None,
    ) -> PlannedRequests:
        """A dry run's requests: the search's worst case within its caps, then the test
        split answered by the setting with the longest prompts (nothing is sent).

        ``proposer``: a named proposer's backend (to count its tokens) and price, when it
        is another entry than the candidate's own llm; without it the proposer's calls
        are the candidate's model's. The caps admit each call at its own model's price,
        as the search does.
        """
        if not split.val:
            return PlannedRequests(self.requests([ex.text for ex in split.test]), [], 0)
        trials = self.trials(split.train)
        price = price_for(backend.config)
        p_backend, p_price = proposer if proposer is not None else (backend, price)
        plan = self.rewrite_plan(trials, split.train, len(split.val), p_backend, p_price)
        bound = self.bound(trials, split.val, backend, price, plan)
        asks = {id(r) for r in plan.summary} | {id(plan.reflect_request)} if plan else set()
        budget = Budget(self.search.max_calls, self.search.max_usd, None)
        search: list[ChatRequest] = []
        asked: list[ChatRequest] = []
        for r in bound.requests:
            mine = id(r) in asks
            who, cost = (p_backend, p_price) if mine else (backend, price)
            try:
                budget.admit(1, budget.worst_usd(who, r, cost))
            except BudgetSpent:  # the caps end the search here
                break
            (asked if mine else search).append(r)
        texts = [ex.text for ex in split.test]
        answers = [t.strategy.requests(texts) for t in trials]
        longest = max(answers, key=lambda reqs: sum(backend.count_tokens(r)[0] for r in reqs))
        reflections = sum(1 for r in asked if plan is not None and r is plan.reflect_request)
        slack = reflections * plan.reflect_slack if plan is not None else 0
        return PlannedRequests(search + longest, asked, slack)

    # ------------------------------------------------------------ the rewrites

    @classmethod
    def check_project(
        cls, options: StrategyOptions, config: ProjectConfig, candidate: CandidateConfig
    ) -> tuple[tuple[str | int, ...], str, str] | None:
        """The proposer of ``space.rewrites`` is an entry under ``llms:``; without one
        named, the candidate's own llm must be an API model (a local one is not asked to
        write prompts unless named)."""
        assert isinstance(options, PromptSearchOptions)
        problem = super().check_project(options, config, candidate)
        space = options.space
        if problem is not None or not space.rewrites:
            return problem
        remote = {name: _is_remote(llm.backend) for name, llm in config.llms.items()}
        own = candidate.llm
        listed = f" ({', '.join(remote)})" if remote else ""
        name = space.proposer
        if name is None:
            if own is not None and remote.get(own, False):
                return None
            return (
                ("space", "rewrites"),
                f"{space.rewrites} rewrites need a proposer, and the candidate's llm "
                f"'{own}' is a local model, not asked to write prompts unless named",
                f"set space.proposer to an entry under 'llms:'{listed}, or remove rewrites",
            )
        if name not in remote:
            close = difflib.get_close_matches(name, list(remote), n=1)
            return (
                ("space", "proposer"),
                f"proposer '{name}' is not under 'llms:'",
                (f"did you mean '{close[0]}'? " if close else "")
                + f"name an entry under 'llms:'{listed}, or define '{name}' there",
            )
        return None

    @classmethod
    def other_llms(cls, options: StrategyOptions) -> tuple[str, ...]:
        """The proposer that writes the rewrites, when one is named: its model decides
        which instructions are tried."""
        assert isinstance(options, PromptSearchOptions)
        space = options.space
        return (space.proposer,) if space.rewrites and space.proposer is not None else ()

    def rewrite_split(self, n_trials: int, n_val: int) -> tuple[int, int]:
        """How many rewrites come from the task summary, and how many by reflection after
        the first round: at most half reflect, and at most as many as leave the first
        round one survivor beside them (so the schedule stays that of ``n_trials +
        rewrites`` settings, which the printed maximum counts)."""
        n = self.search.space.rewrites
        s = self.search
        rounds = successive_halving(n_trials + n, n_val, s.min_examples, s.eta, s.shortlist)
        if len(rounds) < 2:
            return n, 0
        reflect = min(n // 2, rounds[1][0] - 1)
        return n - reflect, reflect

    def proposer(self) -> tuple[LLMRunner, str]:
        """The runner that writes the rewrites, and its name for the record."""
        name = self.search.space.proposer
        if name is None:
            if self.runner.backend.local:
                raise ConfigError(
                    "space.rewrites needs a proposer, and the candidate's llm is a local model",
                    fix="set space.proposer to an API model under 'llms:', or remove rewrites",
                )
            return self.runner, "own"
        if self.ctx.llm_named is None:
            raise AdaptlabError(
                f"prompt-search was set up without its proposer '{name}'",
                fix="run it through adaptlab run (or make_context with with_llm=True)",
            )
        return self.ctx.llm_named(name), name

    def instruction(self, trial: Trial) -> str:
        """The system instruction ``trial`` sends: its own, else its template's."""
        if trial.params["system"] is not None:
            return str(trial.params["system"])
        strategy = trial.strategy
        return strategy.template.render(strategy.variables("", [])).parts["system"]

    def rewrite_plan(
        self,
        trials: Sequence[Trial],
        train: Sequence[Example],
        n_val: int,
        backend: GenerativeBackend,
        price: Price | None,
    ) -> RewritePlan | None:
        """The proposer's calls, for the bound and the search (None: no rewrites)."""
        space = self.search.space
        if not space.rewrites:
            return None
        n_summary, n_reflect = self.rewrite_split(len(trials), n_val)
        examples = propose.summary_examples(train, self.label_names, self.ctx.seed)
        summary = propose.summary_requests(
            self.ctx.labels,
            examples,
            self.instruction(trials[0]),
            self.ctx.language,
            n_summary,
            seed=self.ctx.seed,
            max_tokens=space.proposer_max_tokens,
        )
        labels, language = self.ctx.labels, self.ctx.language
        return RewritePlan(
            summary=summary,
            reflect=n_reflect,
            reflect_request=propose.reflect_bound(
                labels, language, max_tokens=space.proposer_max_tokens
            ),
            reflect_slack=propose.reflect_slack(labels),
            backend=backend,
            price=price,
        )

    def _propose(
        self, runner: LLMRunner, requests: Sequence[ChatRequest], phase: str
    ) -> list[Proposal]:
        """Ask the proposer; the proposals with an instruction that is new (the others are
        recorded with why they were skipped). A cap that stops it skips the rest."""
        proposals = [Proposal(phase, r) for r in requests]
        self._proposals += proposals
        if not proposals:
            return []
        try:
            answers = runner.run_sync(requests, description=f"proposer: {phase} instructions")
        except LLMRunError as exc:
            if exc.kind != "budget":
                raise
            for p in proposals:
                p.skipped = f"not sent: {exc.issue.message}"
            return []
        seen = {t.strip() for t in self.space()["system"] if t}
        seen |= {p.instruction for p in self._proposals if p.instruction and p not in proposals}
        kept = []
        for p, answer in zip(proposals, answers, strict=True):
            p.reply = answer.text
            p.instruction, p.skipped = propose.read_instruction(answer)
            if p.instruction is not None and p.instruction in seen:
                p.instruction, p.skipped = None, "the same as an instruction already tried"
            if p.instruction is not None:
                seen.add(p.instruction)
                kept.append(p)
        return kept

    def _proposed_trials(
        self, proposals: Sequence[Proposal], params: dict[str, Any], train: Sequence[Example]
    ) -> list[Trial]:
        """One trial per proposal: ``params`` with the proposed system instruction."""
        out = []
        for p in proposals:
            trial = self._trial({**params, "system": p.instruction})
            if self._calibrate_choice is not None:
                trial.options = trial.options.model_copy(
                    update={"calibrate": self._calibrate_choice}
                )
                trial.strategy.opts = trial.options
            trial.strategy.select_shots(train)
            trial.proposal = p
            out.append(trial)
        return out

    def _reflect(
        self,
        runner: LLMRunner,
        best: Trial,
        plan: RewritePlan,
        val: Sequence[Example],
        idx: Sequence[int],
        train: Sequence[Example],
    ) -> list[Trial]:
        """Rewrites of ``best``'s instruction from its failures on the minibatch ``idx``."""
        failures = [(val[i].text, val[i].label, best.got[i]) for i in idx if not best.correct[i]]
        if not failures:
            self.info["prompt_search_reflect"] = "no reflection: the best setting made no error"
            return []
        space = self.search.space
        requests = propose.reflect_requests(
            self.ctx.labels,
            self.instruction(best),
            failures,
            self.ctx.language,
            plan.reflect,
            seed=self.ctx.seed,
            max_tokens=space.proposer_max_tokens,
        )
        return self._proposed_trials(self._propose(runner, requests, "reflect"), best.params, train)

    # ------------------------------------------------------------ the search

    def fit(self, train: Sequence[Example], val: Sequence[Example]) -> None:
        if not val:
            raise ConfigError(
                "prompt-search chooses a prompt on the validation split, which is empty",
                fix="set data.val_size in adaptlab.yaml (e.g. 0.2), or use llm-zero-shot / "
                "llm-few-shot for a prompt that is not searched",
            )
        t0 = time.monotonic()  # max_minutes counts the planning too
        progress = self.ctx.progress
        runner = self.runner
        price = price_for(runner.config)
        grid = self.settings()[1]
        trials = self.trials(train)
        self._proposals = []
        writer, writer_name = self.proposer() if self.search.space.rewrites else (runner, "")
        writer_price = price_for(writer.config)
        plan = self.rewrite_plan(trials, train, len(val), writer.backend, writer_price)
        n_rw = plan.calls if plan is not None else 0
        bound = self.bound(trials, val, runner.backend, price, plan)
        rounds = successive_halving(
            len(trials) + n_rw,
            len(val),
            self.search.min_examples,
            self.search.eta,
            self.search.shortlist,
        )
        self._announce(bound, rounds, grid, len(val), price, (writer_name, n_rw) if n_rw else None)
        self._check_minimum(trials[0], val, price)

        cap_calls, cap_usd, cap_min = (
            self.search.max_calls,
            self.search.max_usd,
            self.search.max_minutes,
        )
        budget = Budget(cap_calls, cap_usd, None if cap_min is None else t0 + 60 * cap_min)
        records: list[dict[str, Any]] = []
        order = self.val_order(len(val))
        full = list(range(len(val)))
        default = trials[0]
        with contextlib.ExitStack() as stack:
            stack.enter_context(capped(runner, budget, price))
            if writer.backend is not runner.backend:  # the proposer pays from the same caps
                stack.enter_context(capped(writer, budget, writer_price))
            try:
                self._evaluate(default, train, val, full, 0, budget, records)
            except LLMRunError as exc:
                if exc.kind != "budget":
                    raise
                raise AdaptlabError(
                    f"prompt-search stopped before the unoptimised prompt was answered on the "
                    f"whole validation split ({len(val)} inputs): {exc.issue.message}",
                    fix="raise the cap, or rerun: the answers received are cached and a rerun "
                    "does not pay for them again",
                    code="prompt-search-budget",
                ) from None
            if self.base.calibrate == "auto":
                # Every setting is calibrated as the default chose on validation, so the
                # comparison is between prompts, not between calibrations.
                found = default.strategy.info.get("calibration")
                choice = found.get("chosen", "none") if isinstance(found, dict) else "none"
                self._calibrate_choice = choice
                for trial in trials[1:]:
                    trial.options = trial.options.model_copy(update={"calibrate": choice})
                    trial.strategy.opts = trial.options
            if runner.backend.local and budget.seconds_per_call:
                per = budget.expected_seconds()
                rest = (bound.calls - budget.calls) * per / 60
                capped_at = f" (max_minutes caps it at {cap_min:g})" if cap_min else ""
                progress.info(
                    f"prompt search: {per:.2f} s per answer on this machine; the rest of the "
                    f"search takes at most about {rest:.1f} min{capped_at}"
                )
            if plan is not None:
                kept = self._propose(writer, plan.summary, "summary")
                trials += self._proposed_trials(kept, default.params, train)
            survivors = list(trials)
            try:
                for r, (_n, m) in enumerate(rounds):
                    idx = order[:m]
                    for trial in survivors:
                        self._evaluate(trial, train, val, idx, r, budget, records)
                    if m == len(val):
                        break
                    # The schedule's sizes, not the survivors': a reflection takes a place.
                    keep = rounds[r + 1][0]
                    reflect = plan.reflect if plan is not None and r == 0 else 0
                    survivors = sorted(survivors, key=lambda t: -t.score(idx))[
                        : max(1, keep - reflect)
                    ]
                    if reflect and plan is not None:
                        new = self._reflect(writer, survivors[0], plan, val, idx, train)
                        trials += new
                        survivors += new
            except LLMRunError as exc:
                if exc.kind != "budget":
                    raise
            # A cap may have stopped a round: only settings answered on all of val compete.
            finals = [t for t in trials if len(t.correct) == len(val)]
        for t in trials:
            if t.proposal is not None and t.correct:
                t.proposal.val_score = t.score(list(t.correct))
        self._choose(default, finals, full, val, budget, records, t0, bound)

    def _evaluate(
        self,
        trial: Trial,
        train: Sequence[Example],
        val: Sequence[Example],
        idx: Sequence[int],
        rung: int,
        budget: Budget,
        records: list[dict[str, Any]],
    ) -> None:
        """Answer ``trial`` on the validation inputs ``idx`` it has not answered yet."""
        todo = [i for i in idx if i not in trial.correct]
        t0, calls0, usd0 = time.monotonic(), budget.calls, budget.usd
        if todo:
            if not trial.fitted:
                trial.strategy.fit(train, val)  # demonstrations from train; calibration
                trial.fitted = True
            preds = trial.strategy.predict([val[i].text for i in todo])
            for i, p in zip(todo, preds, strict=True):
                trial.correct[i] = float(p.label == val[i].label)
                trial.got[i] = p.label if p.label is not None else f"(unreadable) {p.raw or ''}"
        records.append(
            {
                "params": dict(trial.params),
                "rung": rung,
                "n_val": len(idx),
                "val_score": trial.score(idx),
                "seconds": round(time.monotonic() - t0, 3),
                "calls": budget.calls - calls0,
                "usd": round(max(0.0, budget.usd - usd0), 8),
            }
        )

    def _choose(
        self,
        default: Trial,
        finals: list[Trial],
        full: list[int],
        val: Sequence[Example],
        budget: Budget,
        records: list[dict[str, Any]],
        t0: float,
        bound: Bound,
    ) -> None:
        """Keep the best full-validation setting if a paired test says it beats the default."""
        best = max(finals, key=lambda t: (t.score(full), t is default))
        d_scores = [default.correct[i] for i in full]
        b_scores = [best.correct[i] for i in full]
        p = mcnemar_exact(b_scores, d_scores)
        alpha = self.search.alpha
        if best is default:
            chosen, why = default, "no setting tried beat the unoptimised prompt on validation"
        elif best.score(full) > default.score(full) and p < alpha:
            chosen, why = best, f"more accurate on validation, McNemar p = {p:.3g} < {alpha:g}"
        else:
            chosen = default
            why = (
                f"the best setting's validation accuracy {best.score(full):.3f} vs "
                f"{default.score(full):.3f} is not significant (McNemar p = {p:.3g} >= "
                f"{alpha:g}); the unoptimised prompt is kept"
            )
        self._adopt(chosen)
        minutes = (time.monotonic() - t0) / 60
        space = self.space()
        space["system"] += [q.instruction for q in self._proposals if q.instruction is not None]
        self.info["tuning"] = {
            "method": "successive halving",
            "metric": "accuracy",
            "space": space,
            "default": {
                "params": dict(default.params),
                "val_score": default.score(full),
                "val_per_example": d_scores,
            },
            "tuned": {
                "params": dict(chosen.params),
                "val_score": chosen.score(full),
                "val_per_example": [chosen.correct[i] for i in full],
            },
            "trials": records,
            "budget": {
                "max_minutes": self.search.max_minutes,
                "max_calls": self.search.max_calls,
                "max_usd": self.search.max_usd,
                "minutes": round(minutes, 3),
                "calls": budget.calls,
                "usd": round(budget.usd, 8),
                "stopped_by": budget.stopped_by,
            },
        }
        self.info["prompt_search"] = {
            "decision": {
                "kept": "tuned" if chosen is not default else "default",
                "best_params": dict(best.params),
                "best_val_score": best.score(full),
                "p_value": p,
                "alpha": alpha,
                "why": why,
                # The system instruction answering from now on, as sent; and whether
                # the proposer wrote it ("summary" / "reflect") or not (None).
                "instruction": self.instruction(chosen),
                "written_by": chosen.proposal.phase if chosen.proposal is not None else None,
            },
            # Each proposer call: its prompt, its answer, the instruction read (or why it
            # was skipped) and that instruction's validation accuracy where it was tried.
            "proposals": [q.record() for q in self._proposals],
            # As decided ("contextual" or "none"; "auto" resolved), for restore_fit.
            "calibrate": "contextual" if chosen.strategy._calibrated else "none",
            "planned": {
                "calls": bound.calls,
                "input_tokens": bound.input_tokens,
                "output_tokens": bound.output_tokens,
                "usd": bound.usd,
            },
        }
        stopped = f"; stopped by {budget.stopped_by}" if budget.stopped_by else ""
        self.ctx.progress.info(
            f"prompt search: {len(records)} evaluations, {budget.calls} calls, "
            f"{minutes:.1f} min{stopped}; {why}"
        )

    def _adopt(self, trial: Trial) -> None:
        """Answer from now on with ``trial``'s prompt and demonstrations."""
        chosen = trial.strategy
        self.opts = trial.options
        self.template = chosen.template
        self._pool, self._fixed = chosen._pool, chosen._fixed
        self._pool_vectors = chosen._pool_vectors
        self._offsets, self._calibrated = chosen._offsets, chosen._calibrated
        self._chosen = dict(trial.params)
        self.info.update(template=self.template.name, template_version=self.template.version)
        if self.template.language is not None:
            self.info["template_language"] = self.template.language
        if "examples" in chosen.info:
            self.info["examples"] = chosen.info["examples"]
        for key in ("calibration", "answer_notes"):
            if key in chosen.info:
                self.info[key] = chosen.info[key]

    # ------------------------------------------------------------ before anything is sent

    def _announce(
        self,
        bound: Bound,
        rounds: list[tuple[int, int]],
        grid: int,
        n_val: int,
        price: Price | None,
        proposer: tuple[str, int] | None = None,
    ) -> None:
        s = self.search
        sizes = " -> ".join(str(m) for _n, m in rounds)
        if bound.usd is None:
            money = "no API bill (self-hosted)" if self.runner.backend.local else "USD unknown"
        else:
            source = price.source if price is not None else "the proposer's price"
            money = f"at most {fmt_usd(bound.usd)} ({source})"
        writes = ""
        if proposer is not None:
            name, n = proposer
            who = "the candidate's own llm" if name == "own" else f"llm '{name}'"
            writes = f" ({n} of them rewrites, {n} proposer calls to {who})"
        caps = ", ".join(
            f"{name} {'none' if v is None else f'{v:g}'}"
            for name, v in (
                ("max_calls", s.max_calls),
                ("max_usd", s.max_usd),
                ("max_minutes", s.max_minutes),
            )
        )
        calls = bound.calls if s.max_calls is None else min(bound.calls, s.max_calls)
        wall = (
            "; wall time is estimated after the unoptimised prompt's answers"
            if self.runner.backend.local
            else ""
        )
        self.ctx.progress.info(
            f"prompt search: {rounds[0][0]} settings (of {grid}){writes}, successive halving on "
            f"validation inputs {sizes} (the unoptimised prompt on all {n_val}); at most "
            f"{calls:,} calls, {bound.input_tokens:,} prompt + {bound.output_tokens:,} output "
            f"tokens, {money}; caps: {caps}. Retries count as calls; cached answers are free"
            f"{wall}"
        )

    def _check_minimum(self, default: Trial, val: Sequence[Example], price: Price | None) -> None:
        """Refuse, before sending anything, caps that cannot pay for the default on ``val``
        (the comparison every setting is judged by)."""
        runner = self.runner
        reqs = default.strategy.requests([ex.text for ex in val])
        todo = [
            r
            for r in reqs
            if runner.cache is None or runner.cache.get(r.cache_key(runner.identity)) is None
        ]
        if self.search.max_calls is not None and len(todo) > self.search.max_calls:
            raise ConfigError(
                f"max_calls: {self.search.max_calls} cannot pay for the unoptimised prompt on "
                f"the validation split ({len(todo)} requests not in the response cache), which "
                "every searched prompt is compared with",
                fix=f"raise max_calls to at least {len(todo)} (more leaves room to search), "
                "or make the validation split smaller (data.val_size)",
            )
        worst = sum(Budget.worst_usd(runner.backend, r, price) for r in todo)
        if self.search.max_usd is not None and worst > self.search.max_usd:
            raise ConfigError(
                f"max_usd: {self.search.max_usd:g} cannot pay for the unoptimised prompt on the "
                f"validation split (up to {fmt_usd(worst)} for {len(todo)} requests), which "
                "every searched prompt is compared with",
                fix=f"raise max_usd above {worst:.4f}, or make the validation split smaller "
                "(data.val_size)",
            )

    # ------------------------------------------------------------ export

    def restore_fit(
        self, train: Sequence[Example], val: Sequence[Example], info: dict[str, Any]
    ) -> None:
        """The kept prompt again, from the stored search (nothing is searched or sent)."""
        tuning = info.get("tuning")
        params = tuning.get("tuned", {}).get("params") if isinstance(tuning, dict) else None
        if not isinstance(params, dict):
            raise AdaptlabError(
                "this prompt-search result holds no searched prompt (info['tuning'])",
                fix="run the candidate again (adaptlab run -c NAME --force)",
            )
        search = info.get("prompt_search")
        calibrate = search.get("calibrate") if isinstance(search, dict) else None
        self._restore(params, train, calibrate if isinstance(calibrate, str) else None)

    def _restore(
        self, params: dict[str, Any], train: Sequence[Example], calibrate: str | None = None
    ) -> None:
        trial = self._trial(params, default=params == self.default_params())
        if calibrate is not None and trial.options.calibrate != calibrate:
            trial.options = trial.options.model_copy(update={"calibrate": calibrate})
            trial.strategy.opts = trial.options
        trial.strategy.select_shots(train)
        self._adopt(trial)

    def save_state(self, folder: Path) -> dict[str, Any]:
        state = super().save_state(folder)
        state["tuned"] = self._chosen
        return state

    def load_state(self, folder: Path, state: dict[str, Any]) -> None:
        params = state.get("tuned")
        if isinstance(params, dict):
            self._restore(params, [])
        super().load_state(folder, state)
