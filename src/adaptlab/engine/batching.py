"""A candidate's answers through its provider's batch API (``evaluation.batch``).

:func:`prefetch` runs before a candidate's answers are computed: it lets the strategy
ask for its test, validation and consistency answers once with a
:class:`~adaptlab.backends.batch.Collector` active (nothing is sent), sends the
requests not yet in the response cache as one batch per model
(:func:`~adaptlab.backends.batch.run_batches`), and returns what happened. The
candidate is then computed as always, and every answer the batch gave comes from the
cache. Requests the batch did not answer (expired, failed, cancelled lines) are asked
once more through the normal path at the standard price when
``evaluation.batch_retry`` is ``sync`` (the default: the run ends with every answer,
and only these few lines pay full price, instead of another wait of up to 24 hours);
with ``none`` the candidate stops, and a rerun sends only them in a new batch.

The first ``evaluation.latency_samples`` test requests are not batched: they go one
by one in the normal path, so the candidate still has a measured latency (a batch
answer has none).
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from adaptlab.backends.batching import (
    BatchError,
    BatchStore,
    Collector,
    batch_api,
    run_batches,
)
from adaptlab.core.format import plural

if TYPE_CHECKING:
    from adaptlab.backends.batching import Collected
    from adaptlab.backends.batching.base import Runner
    from adaptlab.core.progress import ProgressSink
    from adaptlab.engine.project import Project
    from adaptlab.llm.types import ChatRequest
    from adaptlab.strategies import Strategy, StrategyContext

#: Errors of unanswered lines kept in a result's ``info["batch"]``, per candidate.
KEPT_ERRORS = 5


def batches_path(project: Project) -> Any:
    """The project's batch state file: ``.adaptlab/batches.db`` beside the response cache."""
    return project.llm_cache_path.with_name("batches.db")


def _collect(
    strategy: Strategy, texts: Sequence[str], val_texts: Sequence[str], ev: Any
) -> Collector:
    collector = Collector()
    with collector.active():
        collector.phase = "test"
        strategy.predict(list(texts))
        if val_texts:
            collector.phase = "val"
            strategy.predict_val(list(val_texts))
        if ev.consistency_samples >= 2:
            collector.phase = "consistency"
            strategy.predict_samples(list(texts[: ev.consistency_inputs]), ev.consistency_samples)
    return collector


def _to_batch(
    calls: list[Collected], latency_samples: int, store: BatchStore, retry: str
) -> tuple[dict[int, tuple[Runner, list[tuple[str, ChatRequest]]]], int, int]:
    """Per runner (by id), the uncached requests that go in its batch, once each; and how
    many stay out: the first ``latency_samples`` test requests (sent one by one to measure
    latency), and with ``retry`` "sync" those a batch already failed to answer."""
    latency_keys: set[str] = set()
    first_test = next((c for c in calls if c.phase == "test"), None)
    if first_test is not None:
        pairs = list(zip(first_test.keys, first_test.cached, strict=True))[:latency_samples]
        latency_keys = {k for k, hit in pairs if not hit}
    out: dict[int, tuple[Runner, list[tuple[str, ChatRequest]]]] = {}
    seen: set[str] = set()
    for call in calls:
        runner_items = out.setdefault(id(call.runner), (call.runner, []))[1]
        for key, request, hit in zip(call.keys, call.requests, call.cached, strict=True):
            if hit or key in seen or key in latency_keys:
                continue
            seen.add(key)
            runner_items.append((key, request))
    failed: set[str] = set()
    if retry == "sync":
        failed = store.failed_before(sorted(seen))
        for runner_id, (runner, items) in list(out.items()):
            out[runner_id] = (runner, [(k, r) for k, r in items if k not in failed])
    return {k: v for k, v in out.items() if v[1]}, len(latency_keys), len(failed)


def prefetch(
    project: Project,
    name: str,
    strategy: Strategy,
    ctx: StrategyContext,
    texts: Sequence[str],
    val_texts: Sequence[str],
    progress: ProgressSink,
) -> dict[str, Any] | None:
    """Send candidate ``name``'s uncached requests as one batch per model and wait for it.

    Returns what to keep in the result's ``info["batch"]`` (the provider, each batch's
    id and status, the lines by outcome, how many go one by one, and the first errors),
    or None when ``evaluation.batch`` is off or the candidate's model has no batch API
    (it is then answered one request at a time, as always). Raises
    :class:`~adaptlab.backends.batch.BatchError` when the provider refuses, and, with
    ``evaluation.batch_retry: none``, when lines were left without an answer.
    """
    ev = project.config.evaluation
    if not ev.batch or ctx.llm is None or not type(strategy).generative:
        return None
    if not Collector.takes(ctx.llm):
        progress.info(
            f"{name}: evaluation.batch is on, but backend '{ctx.llm.backend.name}' has no batch "
            "API; its requests are sent one at a time"
        )
        return None
    collector = _collect(strategy, texts, val_texts, ev)
    store = BatchStore(batches_path(project))
    with contextlib.closing(store):
        groups, n_latency, n_failed_before = _to_batch(
            collector.calls, ev.latency_samples, store, ev.batch_retry
        )
        info: dict[str, Any] = {
            "retry": ev.batch_retry,
            "latency_one_by_one": n_latency,
            "failed_before": n_failed_before,
            "batches": [],
            "lines": {},
        }
        lines: Counter[str] = Counter()
        unanswered: list[str] = []
        errors: dict[str, str] = {}
        for runner, items in groups.values():
            api = batch_api(runner.backend)
            info["provider"] = api.provider
            assert runner.cache is not None  # the run's runners always have the cache
            try:
                outcome = run_batches(
                    api,
                    items,
                    store=store,
                    cache=runner.cache,
                    identity=runner.identity,
                    progress=progress,
                    poll_s=ev.batch_poll_s,
                    label=name,
                )
            finally:
                api.close()
            info["batches"] += [
                {k: b.get(k) for k in ("id", "status", "lines", "reattached")}
                for b in outcome.batches
            ]
            lines.update(outcome.lines)
            unanswered += outcome.unanswered
            errors.update(outcome.errors)
    info["lines"] = {"sent": sum(lines.values()), **dict(sorted(lines.items()))}
    info["unanswered"] = len(unanswered)
    info["errors"] = [errors[k] for k in unanswered if k in errors][:KEPT_ERRORS]
    if unanswered:
        how = ", ".join(f"{s} {n}" for s, n in sorted(lines.items()) if s != "succeeded")
        if ev.batch_retry == "none":
            raise BatchError(
                f"{name}: {plural(len(unanswered), 'batch line')} got no answer ({how}); "
                "the answers received are cached",
                fix="run again: only those lines go in a new batch; or set "
                "evaluation.batch_retry: sync to ask them one by one at the standard price",
                code="batch-unanswered",
            )
        progress.info(
            f"{name}: {plural(len(unanswered), 'batch line')} got no answer ({how}); each is "
            "asked once more one by one, at the standard price (evaluation.batch_retry: sync)"
        )
    info["retried_one_by_one"] = len(unanswered) + n_failed_before
    return info


__all__ = ["KEPT_ERRORS", "batches_path", "prefetch"]
