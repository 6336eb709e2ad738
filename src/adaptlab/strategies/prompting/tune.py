"""``tune:`` of a prompted RAG candidate: how its passages are retrieved, chosen on val.

The setting searched is ``context_k`` (passages per prompt) and, where ``tune:`` lists
them, the project's ``rag.hybrid_weight`` and ``rag.reranker`` on/off, which the
retrieval takes as per-call overrides (:class:`~adaptlab.strategies.base.Retrieve`).
The driver is :func:`adaptlab.strategies.tuning.successive_halving`; its resource here
is the number of validation inputs a setting answers, since each answer is a paid call:
a trial of fraction ``f`` answers the first ``ceil(f x n_val)`` inputs of one seeded
shuffle of the validation split, so a setting that moves up a rung answers a longer
prefix of the same order and its earlier answers come back from the response cache.
The candidate's own setting answers the whole split (the paired baseline), and ties
keep it. Every answer goes through the candidate's :meth:`PromptStrategy.predict` (the
project's runner: concurrency, retries, the response cache), so a rerun pays nothing;
the test split is never read here. The chosen setting answers the test split through
the same ``predict``.

Not reused: :func:`adaptlab.rag.evaluate.tune_weight` scores hybrid weights by nDCG@10
on judged queries (``adaptlab rag eval --tune``), which a run does not have; and a
weight ranked by retrieval is not ranked by the answers it leads to, which is what is
chosen here. Its cheap-first-filter role is played by the short prefixes of the
first rung.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from adaptlab.core.errors import ConfigError
from adaptlab.llm.prices import cost_usd, price_for
from adaptlab.llm.types import Usage
from adaptlab.strategies.prompting.config import ContextTunedOptions
from adaptlab.strategies.tuning import (
    Outcome,
    TrialStore,
    grid,
    planned_trials,
    rungs_for,
    successive_halving,
)

if TYPE_CHECKING:
    from adaptlab.backends.runner import LLMRunner
    from adaptlab.core.types import Prediction
    from adaptlab.data import Example, Split
    from adaptlab.llm.types import ChatRequest
    from adaptlab.strategies.base import StrategyContext
    from adaptlab.strategies.prompting.config import PromptOptions


class Prompted(Protocol):
    """What the search needs of a prompted candidate (the prompting strategy, which
    imports this module)."""

    ctx: StrategyContext
    info: dict[str, object]
    retrieval_setting: dict[str, Any]

    @property
    def name(self) -> str: ...

    @property
    def opts(self) -> PromptOptions: ...

    @property
    def runner(self) -> LLMRunner: ...

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...

    def requests(self, texts: Sequence[str]) -> list[ChatRequest]: ...


def val_order(n: int, seed: int) -> list[int]:
    """The validation inputs in the order the prefixes take them (seeded, as
    prompt-search's minibatches)."""
    order = list(range(n))
    random.Random(seed + 1).shuffle(order)
    return order


def prefix_size(fraction: float, n_val: int) -> int:
    """Validation inputs a trial of ``fraction`` answers: all at 1, else at least one."""
    if fraction >= 1.0:
        return n_val
    return max(1, min(n_val, math.ceil(fraction * n_val - 1e-9)))


def search_space(strategy: Prompted) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """(the default setting, the values searched), the default's retrieval at the
    project's ``rag:``. Raises :class:`ConfigError` where there is nothing to retrieve
    from, or where ``tune:`` asks for what ``rag:`` cannot do."""
    opts = strategy.opts
    assert isinstance(opts, ContextTunedOptions)
    retrieve = strategy.ctx.retrieve
    project = getattr(retrieve, "config", None)
    if retrieve is None or project is None or project.rag is None:
        raise ConfigError(
            f"'{strategy.name}' has tune:, which searches how passages are retrieved, and "
            "the project has no documents to retrieve from",
            fix="add a 'rag:' section to adaptlab.yaml (rag: {docs: docs}), or remove tune:",
        )
    problem = opts.check_project(project)
    if problem is not None:
        _where, what, fix = problem
        raise ConfigError(what, fix=fix)
    return opts.tuning_space(project)


@contextlib.contextmanager
def retrieving(strategy: Prompted, setting: dict[str, Any]) -> Iterator[None]:
    """While inside, ``strategy`` retrieves with ``setting``; its own setting and info
    come back after (the info's prompt example is a test input's, set by the test
    answers)."""
    saved, info = strategy.retrieval_setting, dict(strategy.info)
    strategy.retrieval_setting = dict(setting)
    try:
        yield
    finally:
        strategy.retrieval_setting, strategy.info = saved, info


def scorer(
    strategy: Prompted,
) -> Callable[[Sequence[Prediction], Sequence[Example]], tuple[str, list[float]]]:
    """The run's per-example score of answers on the project's metric (``ctx.score``)."""
    if strategy.ctx.score is None:
        raise ConfigError(
            f"tune: of '{strategy.name}' compares settings on the project's metric, and "
            "this strategy was set up without one",
            fix="run the candidate with 'adaptlab run', or remove tune:",
        )
    return strategy.ctx.score


def tune_retrieval(strategy: Prompted, val: Sequence[Example]) -> None:
    """Search ``tune:`` on ``val`` (see the module) and keep the best setting.

    Sets ``strategy.retrieval_setting`` to the chosen setting and ``strategy.info["tuning"]``
    to the driver's record, with ``resource`` and ``inputs_per_rung`` added. Raises
    :class:`ConfigError` when ``val`` is empty or ``rag:`` cannot do what is asked.
    """
    opts = strategy.opts
    assert isinstance(opts, ContextTunedOptions) and opts.tune is not None
    tune = opts.tune
    default, space = search_space(strategy)
    runner = strategy.runner
    price = price_for(runner.config)
    score = scorer(strategy)
    metric, _ = score([], [])
    n_val = len(val)
    order = val_order(n_val, strategy.ctx.seed)

    def evaluate(params: dict[str, Any], fraction: float, folder: Path) -> Outcome:
        idx = sorted(order[: prefix_size(fraction, n_val)])  # scored in the split's order
        examples = [val[i] for i in idx]
        stats = runner.stats
        asked, hits, sent = stats.requests, stats.cache_hits, stats.sent
        with retrieving(strategy, params):
            preds = strategy.predict([ex.text for ex in examples])
        _name, scores = score(preds, examples)
        fresh = (stats.requests - asked) - (stats.cache_hits - hits)
        usd = 0.0
        if price is not None and preds and fresh > 0:
            # The answers' cost, pro rata of those not in the response cache.
            total = sum(
                cost_usd(
                    Usage(p.input_tokens or 0, p.output_tokens or 0, p.cached_tokens or 0), price
                )
                for p in preds
            )
            usd = total * min(fresh, len(preds)) / len(preds)
        return Outcome(scores, calls=stats.sent - sent, usd=usd)

    data = json.dumps([[ex.text, ex.label] for ex in val] + [order])
    search = successive_halving(
        default,
        space,
        evaluate,
        TrialStore(strategy.ctx.workdir / "tuning", hashlib.sha256(data.encode()).hexdigest()),
        max_minutes=tune.max_minutes,
        eta=tune.eta,
        units=lambda p, f: float(prefix_size(f, n_val)),
        n_val=n_val,
        metric=metric,
        note=strategy.ctx.progress.note,
        answered=lambda f: prefix_size(f, n_val),
    )
    record = search.record
    record["resource"] = "validation inputs answered"
    record["inputs_per_rung"] = [
        prefix_size(float(tune.eta) ** (r - record["rungs"] + 1), n_val)
        for r in range(record["rungs"])
    ]
    strategy.info["tuning"] = record
    strategy.retrieval_setting = dict(search.tuned)


def tuning_requests(strategy: Prompted, split: Split) -> list[ChatRequest]:
    """The requests the search may send at most, for the dry run: the default on the
    whole validation split, and every other setting on the longest prefix it can reach
    (the settings with most passages counted at the deepest rungs: the longest
    prompts). Identical requests, and those in the response cache, are sent once or not
    at all, so the run sends no more."""
    opts = strategy.opts
    assert isinstance(opts, ContextTunedOptions) and opts.tune is not None
    default, space = search_space(strategy)
    others = sorted(grid(space, default)[1:], key=lambda p: -int(p["context_k"]))
    n_val = len(split.val)
    if not n_val:
        return []  # the run stops before sending: tune: needs a validation split
    order = val_order(n_val, strategy.ctx.seed)
    eta = opts.tune.eta
    rungs = rungs_for(len(others), eta)
    per_rung = [*planned_trials(len(others), eta), 0]

    def asked(setting: dict[str, Any], m: int) -> list[ChatRequest]:
        with retrieving(strategy, setting):
            return strategy.requests([split.val[i].text for i in sorted(order[:m])])

    out = asked(default, n_val)
    if not others:
        return out
    for r in reversed(range(rungs)):
        stop_here = per_rung[r] - per_rung[r + 1]
        m = prefix_size(float(eta) ** (r - rungs + 1), n_val)
        for setting in others[:stop_here]:
            out += asked(setting, m)
        others = others[stop_here:]
    return out
