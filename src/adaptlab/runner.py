"""Run every candidate of a project on the same holdout and store each prediction.

A candidate whose result key (options, model, labels, split, seed) is already in
the store is not recomputed; this is what makes a killed ``adaptlab run`` resume.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from adaptlab.data.split import save_split
from adaptlab.project import Project
from adaptlab.store import PredictionRow, ResultRow, RunStore
from adaptlab.strategies import ProgressSink, Strategy, StrategyContext, get_strategy

if TYPE_CHECKING:
    from adaptlab.backends.base import EncoderBackend
    from adaptlab.config import CandidateConfig
    from adaptlab.data import Split


def _hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RunEvents:
    """Hooks the CLI uses to print what happens; all optional."""

    on_skip: Callable[[str], None] = lambda name: None
    on_start: Callable[[str], None] = lambda name: None
    on_done: Callable[[str, float], None] = lambda name, seconds: None


@dataclass
class RunOutcome:
    run_id: str
    split: Split
    computed: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)


def result_key(project: Project, cand: CandidateConfig, split: Split) -> str:
    cfg = project.config
    options = get_strategy(cand.strategy).Options.model_validate(cand.params)
    return _hash(
        {
            "strategy": cand.strategy,
            "options": options.model_dump(mode="json"),
            "model": cfg.model.model_dump(mode="json"),
            "labels": cfg.labels,
            "split": split.fingerprint,
            "seed": cfg.seed,
            "latency_samples": cfg.evaluation.latency_samples,
        }
    )


def _predict_timed(
    strategy: Strategy, texts: Sequence[str], batch_size: int, progress: ProgressSink
) -> tuple[list[Any], float, float]:
    preds: list[Any] = []
    wall, cpu = time.perf_counter(), time.process_time()
    with progress.task("predicting", len(texts)) as advance:
        for start in range(0, len(texts), batch_size):
            batch = texts[start : start + batch_size]
            out = strategy.predict(batch)
            if len(out) != len(batch):
                raise RuntimeError(
                    f"strategy '{strategy.name}' returned {len(out)} predictions for "
                    f"{len(batch)} inputs; it must return exactly one per input"
                )
            preds.extend(out)
            advance(len(batch))
    return preds, time.perf_counter() - wall, time.process_time() - cpu


def _latencies(
    strategy: Strategy, texts: Sequence[str], n: int, progress: ProgressSink
) -> list[float | None]:
    """Milliseconds for single-input requests, for the first ``n`` test inputs."""
    out: list[float | None] = [None] * len(texts)
    todo = min(n, len(texts))
    with progress.task("latency (one request at a time)", todo) as advance:
        for i in range(todo):
            t0 = time.perf_counter()
            strategy.predict([texts[i]])
            out[i] = (time.perf_counter() - t0) * 1000
            advance(1)
    return out


def run_candidate(
    project: Project,
    cand: CandidateConfig,
    split: Split,
    key: str,
    backend: EncoderBackend,
    store: RunStore,
    progress: ProgressSink,
    cache: dict[str, Any],
    force: bool = False,
) -> float:
    cfg = project.config
    cls = get_strategy(cand.strategy)
    options = cls.Options.model_validate(cand.params)
    workdir = project.checkpoint_dir(key)
    if force and workdir.exists():
        shutil.rmtree(workdir)  # --force means from scratch, not from the last checkpoint
    workdir.mkdir(parents=True, exist_ok=True)
    ctx = StrategyContext(
        backend=backend,
        labels=dict(cfg.labels),
        seed=cfg.seed,
        workdir=workdir,
        progress=progress,
        _cache=cache,
    )
    strategy = cls(options, ctx)
    wall, cpu = time.perf_counter(), time.process_time()
    strategy.fit(split.train, split.val)
    fit_wall, fit_cpu = time.perf_counter() - wall, time.process_time() - cpu

    texts = [ex.text for ex in split.test]
    preds, pred_wall, pred_cpu = _predict_timed(strategy, texts, backend.batch_size, progress)
    lat = _latencies(strategy, texts, cfg.evaluation.latency_samples, progress)
    rows = [
        PredictionRow(ex.id, ex.text, ex.label, p.label, p.score, ms)
        for ex, p, ms in zip(split.test, preds, lat, strict=True)
    ]
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
    store.save_result(result, rows, curves)
    # The result is stored; resume checkpoints are no longer needed (the model stays).
    for name in ("last.pt", "best.pt"):
        (workdir / name).unlink(missing_ok=True)
    return fit_wall + pred_wall


def run_project(
    project: Project,
    *,
    only: Sequence[str] | None = None,
    force: bool = False,
    progress: ProgressSink | None = None,
    events: RunEvents | None = None,
) -> RunOutcome:
    """Validate data, split, run every (selected) candidate, record a run."""
    progress = progress or ProgressSink()
    events = events or RunEvents()
    cfg = project.config
    split = project.split()  # raises on bad data before anything is written
    candidates = [c for c in cfg.candidates if not only or c.name in only]
    if only:
        unknown = sorted(set(only) - {c.name for c in cfg.candidates})
        if unknown:
            from adaptlab.errors import ConfigError

            raise ConfigError(
                f"no candidate named {', '.join(unknown)}",
                file=project.root / "adaptlab.yaml",
                fix="choose from: " + ", ".join(c.name for c in cfg.candidates),
            )

    save_split(split, project.splits_dir)
    keys = {c.name: result_key(project, c, split) for c in candidates}
    config_json = cfg.model_dump(mode="json")
    run_id = _hash({"config": config_json, "split": split.fingerprint, "t": time.time_ns()})
    outcome = RunOutcome(run_id=run_id, split=split)
    backend: EncoderBackend | None = None
    cache: dict[str, Any] = {}
    with RunStore(project.store_path) as store:
        store.start_run(
            run_id,
            project=cfg.name,
            config=config_json,
            data_fingerprint=split.fingerprint,
            seed=cfg.seed,
            model=cfg.model.model_dump(mode="json"),
            split=split.counts(),
        )
        for pos, cand in enumerate(candidates):
            key = keys[cand.name]
            if store.has_result(key) and not force:
                events.on_skip(cand.name)
                store.link(run_id, pos, cand.name, key, reused=True)
                outcome.reused.append(cand.name)
                continue
            if backend is None:
                backend = _load_backend(project)
            events.on_start(cand.name)
            seconds = run_candidate(
                project, cand, split, key, backend, store, progress, cache, force
            )
            store.link(run_id, pos, cand.name, key, reused=False)
            outcome.computed.append(cand.name)
            events.on_done(cand.name, seconds)
        store.finish_run(run_id)
    return outcome


def _load_backend(project: Project) -> EncoderBackend:
    from adaptlab.backends import EncoderBackend, load_backend

    backend = load_backend(project.config.model)
    if not isinstance(backend, EncoderBackend):
        from adaptlab.errors import ConfigError

        raise ConfigError(
            f"backend '{project.config.model.backend}' is not an encoder; the classification "
            "strategies here need embeddings",
            file=project.root / "adaptlab.yaml",
            fix="set model.backend: sentence-transformers",
        )
    return backend
