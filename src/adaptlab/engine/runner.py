"""Run every candidate of a project on the same holdout and store each prediction.

A candidate whose result key (options, model, labels, split, seed) is already in
the store is not recomputed; this is what makes a killed ``adaptlab run`` resume.
A candidate cheap to refit is then cross-validated over train+val (see
:mod:`adaptlab.engine.cv`), once per result and folds, whether it was computed now or
reused.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adaptlab.backends import (
    BACKENDS,
    EncoderBackend,
    GenerativeBackend,
    load_backend,
    load_llm,
)
from adaptlab.backends.availability import llm_unavailable
from adaptlab.backends.gguf import resolve_model
from adaptlab.backends.quiet import quiet_library_progress
from adaptlab.backends.runner import LLMRunner, RunnerStats
from adaptlab.core.errors import AdaptlabError, ConfigError
from adaptlab.core.progress import ProgressSink
from adaptlab.data.split import save_split
from adaptlab.engine import cv
from adaptlab.engine.batching import prefetch
from adaptlab.engine.embeddings import MeteredEncoder, SharedEmbeddings
from adaptlab.engine.project import Project
from adaptlab.evaluation.answer_scores import answer_scores
from adaptlab.evaluation.machine import LoadMeter
from adaptlab.llm.cache import ResponseCache
from adaptlab.rag.project import ProjectRetrieval, docs_fingerprint
from adaptlab.store import PredictionRow, ResultRow, RunStore
from adaptlab.store.files import os_error
from adaptlab.store.lock import RunLock
from adaptlab.strategies import Strategy, StrategyContext, get_strategy

if TYPE_CHECKING:
    from adaptlab.backends.base import EncoderBackend
    from adaptlab.config import CandidateConfig
    from adaptlab.data import Example, Split


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RunEvents:
    """Hooks the CLI uses to print what happens; all optional."""

    on_skip: Callable[[str], None] = lambda name: None
    on_unavailable: Callable[[str, str], None] = lambda name, reason: None
    on_start: Callable[[str], None] = lambda name: None
    on_done: Callable[[str, float], None] = lambda name, seconds: None
    # another run holds the project's lock (who: "pid 123 on host"); this one waits for it
    on_wait: Callable[[str], None] = lambda holder: None
    # cross-validation of a candidate starts: its name, folds, estimated wall seconds (the
    # estimate is also printed through the progress sink; a bar advances per fold)
    on_cv: Callable[[str, int, float], None] = lambda name, folds, seconds: None
    # before anything is computed: the candidates about to be computed (not stored) and
    # the run's models and split; returns the ones not to run this time, with why
    # (``adaptlab run`` estimates their time here and asks about the long ones)
    before_compute: Callable[[Sequence[CandidateConfig], Models, Split], Mapping[str, str]] = (
        lambda candidates, models, split: {}
    )


@dataclass
class RunOutcome:
    run_id: str
    split: Split
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    unavailable: dict[str, str] = field(default_factory=dict)  # name -> why it did not run


# 2: only what each strategy reads (Strategy.reads); 3: validation answers are stored
# beside the test answers (candidates are chosen on val). Older keys are recomputed.
KEY_VERSION = 3


def _llm_identity(llm: Any) -> dict[str, Any]:
    """What of an ``llms:`` entry decides its answers: limits and retries change how
    answers are fetched, not what they are."""
    out: dict[str, Any] = llm.model_dump(
        mode="json", include={"backend", "name", "base_url", "adapter", "precision", "stream"}
    )
    if llm.answers is not None:  # a fake model's script is what it answers
        out["answers"] = llm.answers
    return out


def result_key(project: Project, cand: CandidateConfig, split: Split) -> str:
    """A hash of exactly what changes this candidate's answers.

    Always its strategy and options, the split and the seed; of the project, only what
    the strategy declares in :attr:`Strategy.reads` (label names in order, or names and
    descriptions; the encoder when it uses one), the task, and for a generative
    candidate its model (and any other entry of ``llms:`` it uses, a proposer) and
    prompt template. So a label description edited for
    zero-shot keeps the fine-tune's stored result.

    Measurement settings are not answers. ``latency_samples`` enters no key: a stored
    result keeps the latencies it was measured with (``--force`` measures again). The
    consistency settings enter generative candidates' keys only, where a change is
    cheap (the answers come back from the response cache; only new samples are sent);
    for an encoder, repeated answers are identical by construction.
    """
    cfg = project.config
    cls = get_strategy(cand.strategy)
    options = cls.Options.model_validate(cand.params)
    ev = cfg.evaluation
    payload: dict[str, Any] = {
        "version": KEY_VERSION,
        "strategy": cand.strategy,
        "options": options.model_dump(mode="json"),
        "split": split.fingerprint,
        "seed": cfg.seed,
    }
    if cls.revision:
        payload["revision"] = cls.revision
    # Lists, not dicts: _hash sorts dict keys, and label order is the class index order.
    if "label_descriptions" in cls.reads:
        payload["labels"] = [[name, desc] for name, desc in cfg.labels.items()]
    elif "label_names" in cls.reads:
        payload["labels"] = list(cfg.labels)
    if "encoder" in cls.reads and cls.needs_encoder(options):
        payload["model"] = cfg.model.model_dump(mode="json")
    if cfg.task != "classification":
        payload["task"] = [cfg.task, cfg.schema_, cfg.instruction]
    if cls.generative and ev.consistency_samples >= 2:
        payload["consistency"] = [ev.consistency_samples, ev.consistency_inputs]
    if cand.llm is not None:
        payload["llm"] = _llm_identity(cfg.llms[cand.llm])
    others = [name for name in cls.other_llms(options) if name in cfg.llms]
    if others:  # a prompt-search's proposer
        payload["other_llms"] = {name: _llm_identity(cfg.llms[name]) for name in others}
    extra = cls.key_extra(options, project.root, cfg.task, _prompt_language(project, cls))
    if extra:
        payload["prompt"] = extra
    if getattr(options, "context_k", 0) and cfg.rag is not None:
        payload["documents"] = docs_fingerprint(project)
        payload["sources_field"] = cfg.data.sources_field
    return _hash(payload)


def _prompt_language(project: Project, cls: type[Strategy]) -> str:
    """The data's language for a generative strategy (its built-in templates); English for
    the others, so an encoder candidate never waits on the language guess."""
    return project.language().code if cls.generative else "en"


def _predict_timed(
    strategy: Strategy,
    texts: Sequence[str],
    batch_size: int,
    progress: ProgressSink,
    description: str = "predicting",
    *,
    val: bool = False,
) -> tuple[list[Any], float, float]:
    preds: list[Any] = []
    predict = strategy.predict_val if val else strategy.predict
    wall, cpu = time.perf_counter(), time.process_time()
    with progress.task(description, len(texts)) as advance:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            out = predict(batch)
            if len(out) != len(batch):
                raise RuntimeError(
                    f"strategy '{strategy.name}' returned {len(out)} predictions for "
                    f"{len(batch)} inputs; it must return exactly one per input"
                )
            preds.extend(out)
            advance(len(batch))
    return preds, time.perf_counter() - wall, time.process_time() - cpu


def _latencies(
    strategy: Strategy,
    texts: Sequence[str],
    n: int,
    progress: ProgressSink,
    meter: MeteredEncoder | None = None,
) -> list[float | None]:
    """Milliseconds for single-input requests, for the first ``n`` test inputs; with a
    ``meter``, each request's encoder seconds measured for an earlier candidate count."""
    out: list[float | None] = [None] * len(texts)
    todo = min(n, len(texts))
    with progress.task("latency (one request at a time)", todo) as advance:
        for i in range(todo):
            t0 = time.perf_counter()
            strategy.predict([texts[i]])
            own = time.perf_counter() - t0
            out[i] = (own + (meter.take()[0] if meter is not None else 0.0)) * 1000
            advance(1)
    return out


def _llm_backend(name: str) -> tuple[str, frozenset[str]] | None:
    """A generative backend's name and the constrained answers it gives, from its class."""
    cls = BACKENDS.get(name)
    if not isinstance(cls, type) or not issubclass(cls, GenerativeBackend):
        return None
    return name, cls.constrained


def _named_llm(models: Models, progress: ProgressSink, name: str) -> LLMRunner:
    return models.llm(name, progress)


def make_context(
    project: Project,
    cand: CandidateConfig,
    workdir: Any,
    models: Models,
    progress: ProgressSink,
    *,
    with_llm: bool = True,
    encoder: EncoderBackend | None = None,
    embeddings: dict[str, Any] | None = None,
) -> tuple[Strategy, StrategyContext]:
    """Build a candidate's strategy with what it needs (encoder and/or llm runner).

    ``encoder`` and ``embeddings`` replace the run's encoder and its memo of fit
    embeddings (a cross-validation fold looks vectors up, and keeps its own memo).
    """
    cfg = project.config
    cls = get_strategy(cand.strategy)
    options = cls.Options.model_validate(cand.params)
    ctx = StrategyContext(
        backend=(models.encoder() if encoder is None else encoder)
        if cls.needs_encoder(options)
        else None,
        labels=dict(cfg.labels),
        seed=cfg.seed,
        workdir=workdir,
        progress=progress,
        _cache=models.embeddings if embeddings is None else embeddings,
        llm=models.llm(cand.llm, progress) if cand.llm is not None and with_llm else None,
        llm_variant=(
            functools.partial(models.llm_variant, cand.llm, progress)
            if cand.llm is not None and with_llm
            else None
        ),
        llm_named=functools.partial(_named_llm, models, progress) if with_llm else None,
        llm_backend=_llm_backend(cfg.llms[cand.llm].backend) if cand.llm is not None else None,
        task=cfg.task,
        root=project.root,
        task_options={"schema": cfg.schema_, "instruction": cfg.instruction},
        language=_prompt_language(project, cls),
        retrieve=models.retrieval(progress) if cfg.rag is not None else None,
        score=functools.partial(answer_scores, cfg),
    )
    strategy = cls(options, ctx)
    if cls.generative:  # the report says which language its prompt is in, and why
        strategy.info["data_language"] = project.language().as_info()
    return strategy, ctx


def run_candidate(
    project: Project,
    cand: CandidateConfig,
    split: Split,
    key: str,
    models: Models,
    store: RunStore,
    progress: ProgressSink,
    force: bool = False,
) -> float:
    cfg = project.config
    workdir = project.checkpoint_dir(key)
    if workdir.is_symlink() or (workdir.exists() and not workdir.is_dir()):
        # Never followed: --force would empty whatever folder the link points to.
        raise AdaptlabError(
            "this candidate's checkpoint folder is a link or a file, not a folder",
            file=workdir,
            fix=f"remove it (rm {workdir}) and run again; adaptlab makes a fresh folder",
            code="checkpoint-link",
        )
    if force and workdir.exists():
        shutil.rmtree(workdir)  # --force means from scratch, not from the last checkpoint
    workdir.mkdir(parents=True, exist_ok=True)
    strategy, ctx = make_context(project, cand, workdir, models, progress)
    cls, options = type(strategy), strategy.options
    if ctx.llm is not None:
        ctx.llm.stats = RunnerStats()  # per candidate, though the model's runner is shared
    wall, cpu = time.perf_counter(), time.process_time()
    strategy.fit(split.train, split.val)
    fit_wall, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu

    texts = [ex.text for ex in split.test]
    # evaluation.batch: the uncached requests go as one batch first; then every answer
    # below comes from the response cache.
    val = [ex.text for ex in split.val]
    batched = prefetch(project, cand.name, strategy, ctx, texts, val, progress)
    if batched is not None:
        strategy.info["batch"] = batched
    meter = LoadMeter()
    # Wall seconds of each stage after the fit, for the split of a run's time.
    seconds: dict[str, float] = {"fit": fit_wall}
    with meter:
        preds, pred_wall, pred_cpu, lat = _predict_test(
            strategy, ctx, texts, cfg, progress, models.embeddings, seconds, models.encoder_costs
        )
    if meter.as_info() is not None:
        strategy.info["machine_load"] = meter.as_info()
    rows = _rows(split.test, preds, lat)
    # The validation answers are what candidates are compared and chosen on; the test
    # answers above are only reported. Timed apart, so cost and latency stay test-only.
    val_texts = [ex.text for ex in split.val]
    t0 = time.perf_counter()
    if not val_texts:
        val_preds: list[Any] = []
    elif cls.generative:
        val_preds = strategy.predict_val(val_texts)
    else:
        batch = ctx.encoder.batch_size if ctx.backend is not None else 64
        with shared_embeddings(ctx, models.embeddings):
            val_preds = _predict_timed(
                strategy, val_texts, batch, progress, "predicting val", val=True
            )[0]
    seconds["val"] = time.perf_counter() - t0
    val_rows = _rows(split.val, val_preds, [None] * len(val_preds))
    t0 = time.perf_counter()
    consistency = _consistency(strategy, texts, cfg.evaluation)
    seconds["consistency"] = time.perf_counter() - t0
    strategy.info["seconds"] = {k: round(v, 3) for k, v in seconds.items()}
    if ctx.llm is not None:
        stats = ctx.llm.stats
        strategy.info["llm"] = {
            "requests": stats.requests,
            "sent": stats.sent,
            "cache_hits": stats.cache_hits,
            "retries": stats.retries,
            "retries_by_kind": dict(stats.retries_by_kind),
            "usage_exact": all(p.tokens_exact is not False for p in preds),
            "paid": stats.paid.as_json(),
        }
    result = ResultRow(
        key=key,
        candidate=cand.name,
        strategy=cand.strategy,
        params=options.model_dump(mode="json"),
        fit_seconds=fit_wall,
        fit_cpu_seconds=fit_cpu,
        predict_seconds=pred_wall,
        predict_cpu_seconds=pred_cpu,
        n_predictions=len(rows),
        trains_weights=cls.trains_weights,
        info=strategy.info,
    )
    curves = [(p.step, p.epoch, p.split, p.metric, p.value) for p in strategy.curves]
    store.save_result(result, rows, curves, consistency, val_predictions=val_rows)
    # The result is stored; resume checkpoints are no longer needed (the model stays).
    for name in ("last.pt", "best.pt"):
        (workdir / name).unlink(missing_ok=True)
    return fit_wall + pred_wall


def _predict_test(
    strategy: Strategy,
    ctx: StrategyContext,
    texts: Sequence[str],
    cfg: Any,
    progress: ProgressSink,
    memo: dict[str, Any],
    seconds: dict[str, float],
    ledger: dict[Any, Any],
) -> tuple[list[Any], float, float, list[float | None]]:
    """The test answers, their wall and CPU seconds, and per-request latencies (ms).

    A classifier answers with the run's shared embeddings (``memo``) and is timed apart,
    on a sample (:data:`TIMING_SAMPLE`), its frozen encoder's cost measured once per run
    (``ledger``, :class:`~adaptlab.engine.embeddings.MeteredEncoder`); the wall seconds
    of each stage go into ``seconds`` ("answers", "timing", "latency").
    """
    if type(strategy).generative:
        # One call for the whole test set: the runner sends it concurrently, and
        # every answer carries the latency of its own request.
        wall, cpu = time.perf_counter(), time.process_time()
        preds = strategy.predict(texts)
        pred_wall, pred_cpu = time.perf_counter() - wall, time.process_time() - cpu
        seconds["answers"] = pred_wall
        lat = [p.latency_ms for p in preds]
        if ctx.llm is not None and ctx.llm.config.backend == "hf":
            # A local model answers a batch in one generate call, so each answer carries
            # its batch's time; what a user waits for is one request served alone.
            n = min(cfg.evaluation.latency_samples, LOCAL_LATENCY_SAMPLES)
            t0 = time.perf_counter()
            lat = _local_latencies(strategy, ctx.llm, texts, n, progress)
            seconds["latency"] = time.perf_counter() - t0
    else:
        batch = ctx.encoder.batch_size if ctx.backend is not None else 64
        t0 = time.perf_counter()
        with shared_embeddings(ctx, memo):
            preds = _predict_timed(strategy, texts, batch, progress)[0]
        seconds["answers"] = time.perf_counter() - t0
        # Timing passes on a sample, each calling the encoder itself: one pass of a
        # second or two moves by 10-20% with what else the machine does; the median of
        # several passes is reported with their range.
        # The run's frozen encoder is measured once per list and pass, and charged to
        # every candidate that asks for the same (MeteredEncoder).
        sample = texts[:TIMING_SAMPLE]
        t0 = time.perf_counter()
        passes = []
        charged = 0.0
        for j in range(cfg.evaluation.timing_repeats):
            with metered_encoder(ctx, ledger, f"timing {j}") as meter:
                _, wall_j, cpu_j = _predict_timed(strategy, sample, batch, progress, "timing")
            extra_wall, extra_cpu = meter.take() if meter is not None else (0.0, 0.0)
            charged += meter.charged_wall_s if meter is not None else 0.0
            passes.append((wall_j + extra_wall, cpu_j + extra_cpu))
        seconds["timing"] = time.perf_counter() - t0
        per = max(len(sample), 1)
        if len(passes) > 1:
            strategy.info["cpu_ms_per_request_passes"] = [1000 * c / per for _, c in passes]
        strategy.info["timing_sample"] = len(sample)
        wall_s, cpu_s = (sorted(x)[len(x) // 2] / per for x in zip(*passes, strict=True))
        # Per request on the sample, for the whole test split (cost and throughput).
        pred_wall, pred_cpu = wall_s * len(texts), cpu_s * len(texts)
        t0 = time.perf_counter()
        with metered_encoder(ctx, ledger, "latency") as meter:
            lat = _latencies(strategy, texts, cfg.evaluation.latency_samples, progress, meter)
            charged += meter.charged_wall_s if meter is not None else 0.0
        seconds["latency"] = time.perf_counter() - t0
        if charged:
            # Encoder seconds measured for an earlier candidate and charged to this one.
            strategy.info["encoder_seconds_charged"] = round(charged, 3)
    return preds, pred_wall, pred_cpu, lat


#: Test inputs the timing passes of a classifier answer (all of them when fewer). The
#: CPU cost per request is their mean: with per-input costs varying by a coefficient of
#: variation c, 256 inputs give it a standard error of c/16 (3% at c = 0.5, long and
#: short tickets mixed), below the 10-20% the passes move with the machine's load.
TIMING_SAMPLE = 256


@contextlib.contextmanager
def metered_encoder(
    ctx: StrategyContext, ledger: dict[Any, Any], tag: str
) -> Iterator[MeteredEncoder | None]:
    """While a timing pass runs, the candidate's frozen encoder is a
    :class:`~adaptlab.engine.embeddings.MeteredEncoder` over the run's ``ledger``
    (None for a candidate without one)."""
    encoder = ctx.backend
    if encoder is None:
        yield None
        return
    meter = MeteredEncoder(encoder, ledger, tag)
    ctx.backend = meter
    try:
        yield meter
    finally:
        ctx.backend = encoder


@contextlib.contextmanager
def shared_embeddings(ctx: StrategyContext, memo: dict[str, Any]) -> Iterator[None]:
    """While answering, the candidate's frozen encoder computes each list once per run
    (:class:`~adaptlab.engine.embeddings.SharedEmbeddings`); a candidate without an
    encoder is left as it is."""
    encoder = ctx.backend
    if encoder is None:
        yield
        return
    ctx.backend = SharedEmbeddings(encoder, memo)
    try:
        yield
    finally:
        ctx.backend = encoder


#: Test inputs a local generative model answers one at a time for its latency: each takes
#: a generate call of its own (a second or more on 2 cores for a 135M model).
LOCAL_LATENCY_SAMPLES = 10


def _local_latencies(
    strategy: Strategy, runner: LLMRunner, texts: Sequence[str], n: int, progress: ProgressSink
) -> list[float | None]:
    """Milliseconds for the first ``n`` test inputs, each sent alone past the response
    cache (a cached answer takes no time); the runner's counts are left as they were."""
    with runner.uncached():
        return _latencies(strategy, texts, n, progress)


def _rows(
    examples: Sequence[Example], preds: Sequence[Any], latencies: Sequence[float | None]
) -> list[PredictionRow]:
    return [
        PredictionRow(
            ex.id,
            ex.text,
            ex.label,
            p.label,
            p.score,
            ms,
            p.raw,
            p.status,
            p.input_tokens,
            p.output_tokens,
            p.cached_tokens,
            p.finish_reason,
            p.tokens_exact,
            p.context,
            None if ex.sources is None else json.dumps(list(ex.sources)),
        )
        for ex, p, ms in zip(examples, preds, latencies, strict=True)
    ]


def _consistency(strategy: Strategy, texts: Sequence[str], ev: Any) -> list[Any]:
    """The first inputs answered ``consistency_samples`` times: (idx, sample, pred, status)."""
    n = ev.consistency_samples
    if n < 2:
        return []
    subset = texts[: ev.consistency_inputs]
    samples = strategy.predict_samples(subset, n)
    return [
        (i, s, p.label, p.status) for s, preds in enumerate(samples) for i, p in enumerate(preds)
    ]


class Models:
    """The models of a run, each loaded at most once and only when a candidate needs it."""

    def __init__(self, project: Project) -> None:
        self.project = project
        self.embeddings: dict[str, Any] = {}
        #: The encoder's measured timing-pass and latency calls (MeteredEncoder).
        self.encoder_costs: dict[Any, Any] = {}
        self._encoder: EncoderBackend | None = None
        self._runners: dict[str, LLMRunner] = {}
        self._cache: ResponseCache | None = None
        self._retrieval: Any = None
        #: Where a model's load says what it changed (the run's progress note).
        self.note: Callable[[str], None] = lambda message: None

    def retrieval(self, progress: ProgressSink) -> Any:
        """The project's retrieval (index refreshed on first use), shared by candidates."""
        if self._retrieval is None:
            self._retrieval = ProjectRetrieval(self.project, progress)
        return self._retrieval

    def encoder(self) -> EncoderBackend:
        if self._encoder is None:
            quiet_library_progress()
            self._encoder = _load_backend(self.project)
            asked = getattr(self._encoder, "capped_from", None)
            if asked is not None:
                limit = self._encoder.options.max_seq_length  # type: ignore[attr-defined]
                self.note(
                    f"model.max_seq_length is {asked}, but the encoder has positions for "
                    f"{limit} tokens only: inputs are cut at {limit}; fix: set "
                    f"model.max_seq_length to at most {limit} in adaptlab.yaml"
                )
        return self._encoder

    def llm(self, name: str, progress: ProgressSink) -> LLMRunner:
        return self.llm_variant(name, progress)

    def llm_variant(self, llm: str, progress: ProgressSink, /, **update: Any) -> LLMRunner:
        """The runner of ``llms: <llm>`` with ``update`` applied (an adapter, a model id)."""
        runner_key = json.dumps([llm, update], sort_keys=True, default=str)
        if runner_key not in self._runners:
            if self._cache is None:
                self._cache = ResponseCache(self.project.llm_cache_path)
            quiet_library_progress()  # a local model (hf backend) loads through transformers
            config = self.project.config.llms[llm]
            if update:
                config = config.model_copy(update=update)
            if config.backend == "hf":
                resolve_model(config.name, progress=progress)  # a GGUF converts once, shown
            backend = load_llm(config)
            self._runners[runner_key] = LLMRunner(backend, cache=self._cache, progress=progress)
        return self._runners[runner_key]

    def close(self) -> None:
        if self._cache is not None:
            self._cache.close()


def run_project(
    project: Project,
    *,
    only: Sequence[str] | None = None,
    force: bool = False,
    progress: ProgressSink | None = None,
    events: RunEvents | None = None,
    leave_out: Mapping[str, str] | None = None,
) -> RunOutcome:
    """Validate data, split, run every (selected) candidate, record a run.

    ``leave_out`` maps candidate names to why they are not run this time (``demo``
    leaves out the LLM fine-tunes); they are reported like unavailable candidates.
    """
    progress = progress or ProgressSink()
    events = events or RunEvents()
    cfg = project.config
    split = project.split()  # raises on bad data before anything is written
    language = project.language_issue([ex.text for ex in split.train])
    if language is not None:
        progress.note(f"{language.message}; fix: {language.fix}")
    for kind, line in project.language_notes():
        (progress.info if kind == "info" else progress.note)(line)
    for weak in cfg.evaluation.weak_settings():
        progress.note(weak)
    candidates = [c for c in cfg.candidates if not only or c.name in only]
    if only:
        unknown = sorted(set(only) - {c.name for c in cfg.candidates})
        if unknown:
            raise ConfigError(
                f"no candidate named {', '.join(unknown)}",
                file=project.root / "adaptlab.yaml",
                fix="choose from: " + ", ".join(c.name for c in cfg.candidates),
            )

    unavailable: dict[str, str] = {
        c.name: leave_out[c.name] for c in candidates if leave_out and c.name in leave_out
    }
    for cand in candidates:
        if cand.name in unavailable:
            continue
        reason = llm_unavailable(cfg.llms[cand.llm]) if cand.llm is not None else None
        if reason is not None:
            if only:  # asked for by name: an error, not a skip
                raise ConfigError(
                    f"candidate '{cand.name}' cannot run: {reason}",
                    file=project.root / "adaptlab.yaml",
                    fix="configure its llm, or leave it out",
                )
            unavailable[cand.name] = reason
    candidates = [c for c in candidates if c.name not in unavailable]

    project.prepare_state()
    # One run per project at a time: a second one would pay for every uncached answer again.
    with RunLock(project.run_lock_path).acquire(events.on_wait):
        try:
            save_split(split, project.splits_dir)
        except OSError as exc:
            raise os_error(exc, "the data split") from exc
        keys = {c.name: result_key(project, c, split) for c in candidates}
        config_json = cfg.model_dump(mode="json")
        run_id = _hash({"config": config_json, "split": split.fingerprint, "t": time.time_ns()})
        outcome = RunOutcome(run_id=run_id, split=split, unavailable=unavailable)
        for name, reason in unavailable.items():
            events.on_unavailable(name, reason)
        models = Models(project)
        models.note = progress.note
        with RunStore(project.store) as store, contextlib.closing(models):
            # SQLite: we hold the lock, so any run still 'running' is dead; PostgreSQL: only
            # runs whose process is gone are marked (see RunStore.mark_interrupted).
            store.mark_interrupted()
            todo = [c for c in candidates if force or not store.has_result(keys[c.name])]
            for name, reason in events.before_compute(todo, models, split).items():
                unavailable[name] = reason
                events.on_unavailable(name, reason)
            candidates = [c for c in candidates if c.name not in unavailable]
            store.start_run(
                run_id,
                project=cfg.name,
                config=config_json,
                data_fingerprint=split.fingerprint,
                seed=cfg.seed,
                model=cfg.model.model_dump(mode="json"),
                split=split.counts(),
                notes={"not_run": unavailable},
            )
            try:
                _run_candidates(
                    project, candidates, keys, models, store, progress, events, force, outcome
                )
            except BaseException as exc:
                # Never leave a run 'running': Ctrl-C is an interruption, anything else a failure.
                status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                with contextlib.suppress(Exception):  # a full disk may refuse this too
                    store.finish_run(run_id, status)
                raise
            store.finish_run(run_id)
    return outcome


def _run_candidates(
    project: Project,
    candidates: Sequence[CandidateConfig],
    keys: dict[str, str],
    models: Models,
    store: RunStore,
    progress: ProgressSink,
    events: RunEvents,
    force: bool,
    outcome: RunOutcome,
) -> None:
    shared = _CVShared()  # made on first need, then the same for every candidate
    for pos, cand in enumerate(candidates):
        key = keys[cand.name]

        def waiting(holder: str, name: str = cand.name) -> None:
            progress.info(
                f"{name}: waiting for {holder}, which is computing this result in the shared "
                "store; it is reused once stored (Ctrl-C to stop waiting)"
            )

        # A shared (PostgreSQL) store: whoever claims a result first computes it, and its
        # cross-validation; another run waits here, then finds both stored.
        with store.claim(key, waiting):
            if store.has_result(key) and not force:
                events.on_skip(cand.name)
                store.link(outcome.run_id, pos, cand.name, key, reused=True)
                outcome.reused.append(cand.name)
            else:
                events.on_start(cand.name)
                seconds = run_candidate(
                    project, cand, outcome.split, key, models, store, progress, force
                )
                store.link(outcome.run_id, pos, cand.name, key, reused=False)
                outcome.computed.append(cand.name)
                events.on_done(cand.name, seconds)
            _cross_validate(
                project, cand, outcome.split, key, models, store, progress, events, shared
            )


@dataclass
class _CVShared:
    """What the cross-validations of a run share: the folds, and the encoder's train+val
    vectors (for candidates that embed)."""

    folds: cv.Folds | None = None
    table: cv.VectorTable | None = None


def _cross_validate(
    project: Project,
    cand: CandidateConfig,
    split: Split,
    key: str,
    models: Models,
    store: RunStore,
    progress: ProgressSink,
    events: RunEvents,
    shared: _CVShared,
) -> None:
    """Store out-of-fold answers over train+val for a stored result cheap to refit.

    Nothing happens when :func:`cv.applies` says no, or the result already holds answers
    from these folds (``--force`` stored it afresh, without them). A fold's failure is a
    warning, not the run's end: the candidate is then compared on the validation split.
    """
    cfg = project.config
    ev = cfg.evaluation
    # Without a validation split the run chooses on test, and out-of-fold answers would
    # go unused (test answers are all some candidates have then).
    if not split.val or not cv.applies(get_strategy(cand.strategy), cfg.task, ev):
        return
    result = store.result(key)
    reason = cv.skip_reason(ev, result.fit_seconds, split)
    if reason is not None:
        progress.info(
            f"{cand.name}: not cross-validated, {reason}; it is compared on the validation split"
        )
        return
    if shared.folds is None:
        shared.folds = cv.make_folds(split, ev.cv_folds, cfg.seed)
    folds = shared.folds
    if folds.same_as(result.info.get("cv")):
        return
    cls = get_strategy(cand.strategy)
    embeds = cls.needs_encoder(cls.Options.model_validate(cand.params))
    estimate = cv.estimate_seconds(
        result, len(split.train), folds, embeds=embeds, table_ready=shared.table is not None
    )
    events.on_cv(cand.name, folds.k, estimate)
    progress.info(f"cross-validating {cand.name}: {folds.k} folds, about {estimate:.0f} s")
    if shared.table is None and embeds:
        lists = [[ex.text for ex in split.train], [ex.text for ex in split.val]]
        memo = SharedEmbeddings(models.encoder(), models.embeddings)
        shared.table = cv.VectorTable.of(memo, lists, progress)
    table = shared.table

    def new_strategy(folder: Path, sink: ProgressSink) -> Strategy:
        return make_context(project, cand, folder, models, sink, encoder=table, embeddings={})[0]

    def predict(strategy: Strategy, texts: Sequence[str]) -> list[Any]:
        ctx = strategy.ctx
        batch = ctx.encoder.batch_size if ctx.backend is not None else 64
        return _predict_timed(strategy, texts, batch, ctx.progress)[0]

    key_dir = project.checkpoint_dir(key)
    had_dir = key_dir.exists()
    try:
        done = cv.cross_validate(folds, key_dir / "cv", new_strategy, predict, progress)
    except Exception as exc:
        progress.note(
            f"{cand.name}: cross-validation failed ({type(exc).__name__}: {exc}); it is "
            "compared on the validation split"
        )
        return
    finally:
        if not had_dir:  # a reused result whose folder is gone: leave none behind
            with contextlib.suppress(OSError):
                key_dir.rmdir()
    n = len(folds.examples)
    store.save_cv(key, _rows(folds.examples, done.predictions, [None] * n), done.info)


def _load_backend(project: Project) -> EncoderBackend:
    backend = load_backend(project.config.model)
    if not isinstance(backend, EncoderBackend):
        raise ConfigError(
            f"backend '{project.config.model.backend}' is not an encoder; the classification "
            "strategies here need embeddings",
            file=project.root / "adaptlab.yaml",
            fix="set model.backend: sentence-transformers",
        )
    return backend
