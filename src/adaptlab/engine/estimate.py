"""Time before work: each candidate's wall time on this machine, from a measured probe.

``adaptlab run --dry-run`` and the start of ``adaptlab run`` call :func:`estimate_times`.
Nothing is extrapolated from another machine: every rate comes from a few real units of
the candidate's own work, timed here and scaled by what the run will do.

- An encoder (frozen): one forward pass over a sample of the project's inputs (64, the
  encoder's batch) gives seconds per text; three inputs alone give one request's time.
  Fitting and answering are the texts the run embeds (train; validation and test once
  per run, shared by every candidate that uses the frozen encoder, see
  :mod:`adaptlab.engine.embeddings`), the timing passes on their sample and the
  latency requests.
- The encoder fine-tune: three training steps of the real trainer
  (:func:`~adaptlab.train.encoder.probe_encoder_steps`), scaled to an epoch by padded
  tokens, plus each epoch's validation; early stopping can end it sooner, which is the
  low end of the range (``1 + patience`` epochs).
- A local generative model (``hf``): the candidate's own prompts answered past the
  response cache, one input alone (the latency requests) and one batch of the model's
  ``batch_size`` (seconds per answer), times the answers the run needs.
- A LoRA fine-tune: three optimizer steps of the real trainer
  (:func:`~adaptlab.train.trainer.probe_causal_lm`) give seconds per trained token,
  times the tokens of all epochs, plus its validation passes (a forward pass costs about
  a third of a training step's forward, backward and update) and the answers.
- A classifier without an encoder (TF-IDF): a real fit on up to 300 train examples,
  scaled linearly to the split, and its answers, timed.

A model a candidate shares with the run is loaded once (the run's
:class:`~adaptlab.engine.runner.Models`), and its load is counted for the first
candidate only. A remote model's time is its provider's: no probe is sent (it would be
paid), so it is not estimated. A ``tune:`` search is bounded by its ``max_minutes``, a
prompt search by its own caps.

The range is the point estimate x [:data:`LOW`, :data:`HIGH`] (what the same probe
moves between runs on a busy machine, see ``bench/time_estimates.py``), widened below by
early stopping.
"""

from __future__ import annotations

import math
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from adaptlab.backends.gguf import resolve_model
from adaptlab.core.format import duration
from adaptlab.core.progress import ProgressSink
from adaptlab.engine import cv
from adaptlab.engine.runner import (
    LOCAL_LATENCY_SAMPLES,
    TIMING_SAMPLE,
    Models,
    make_context,
)
from adaptlab.strategies import get_strategy
from adaptlab.strategies.finetune.strategy import Finetune
from adaptlab.strategies.llm_finetune.strategy import LLMFinetune
from adaptlab.strategies.prompt_search import PromptSearch
from adaptlab.strategies.prompting import PromptStrategy
from adaptlab.train.encoder import probe_encoder_steps
from adaptlab.train.trainer import probe_causal_lm

if TYPE_CHECKING:
    from collections.abc import Sequence

    from adaptlab.config import CandidateConfig
    from adaptlab.data import Split
    from adaptlab.engine.project import Project
    from adaptlab.strategies import Strategy

#: The range around a point estimate: the same probe, repeated on a machine with other
#: work on it, moved by about this much (bench/time_estimates.py).
LOW, HIGH = 0.75, 1.35
#: Inputs a frozen encoder embeds for its rate (one batch).
ENCODER_SAMPLE = 64
#: Train examples a classifier without an encoder fits on for its rate (TF-IDF's fit is
#: about linear in the examples; a full fit of 1,440 German requests took 8.7 s).
CLASSICAL_SAMPLE = 300
#: Training steps a probe times (after one untimed warm-up step).
PROBE_STEPS = 3
#: Backends whose time is a provider's: never probed (a probe would be a paid call).
REMOTE = frozenset({"openai", "anthropic"})


@dataclass
class TimeEstimate:
    """One candidate's estimated wall time on this machine.

    ``seconds`` (None: not estimated, ``note`` says why) with its range ``low`` ..
    ``high`` (seconds); ``parts``: seconds by stage ("load", "fit", "answers",
    "measurement" for the timing passes and latency requests, "search" for a bounded
    search, "cross-validation"); ``basis``: what was measured, in words;
    ``probe_seconds``: what measuring it took.
    """

    candidate: str
    seconds: float | None
    low: float = 0.0
    high: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)
    basis: str = ""
    note: str = ""
    probe_seconds: float = 0.0

    def said(self) -> str:
        """The point estimate as a person reads it: "about 4 min", or "under 1 s" where
        the whole range is (a probe does not measure finer than that)."""
        if self.seconds is None:
            return "unknown"
        return "under 1 s" if self.high < 1 else f"about {duration(self.seconds)}"

    def line(self) -> str:
        """``finetune: about 4 min (3 min–6 min; fit 3 min, answers 40 s), from …``."""
        if self.seconds is None:
            return f"{self.candidate}: no time estimate, {self.note}"
        if self.high < 1:  # not measured finer than the probe's own second or so
            text = f"{self.candidate}: {self.said()}"
            text += f", from {self.basis}" if self.basis else ""
            return text + (f"; {self.note}" if self.note else "")
        parts = ", ".join(f"{k} {duration(v)}" for k, v in self.parts.items() if v >= 0.5)
        text = (
            f"{self.candidate}: {self.said()} "
            f"({duration(self.low)}–{duration(self.high)}" + (f"; {parts}" if parts else "") + ")"
        )
        if self.basis:
            text += f", from {self.basis}"
        if self.note:
            text += f"; {self.note}"
        return text

    def as_json(self) -> dict[str, Any]:
        """JSON-ready, for the run's notes."""
        return {
            "seconds": None if self.seconds is None else round(self.seconds, 1),
            "low": round(self.low, 1),
            "high": round(self.high, 1),
            "parts": {k: round(v, 1) for k, v in self.parts.items()},
            "basis": self.basis,
            "note": self.note,
        }


def estimate_times(
    project: Project,
    candidates: Sequence[CandidateConfig],
    models: Models,
    split: Split | None = None,
    progress: ProgressSink | None = None,
    *,
    count_loads: bool = True,
) -> list[TimeEstimate]:
    """A :class:`TimeEstimate` per candidate, in order, each from a probe run here.

    ``models`` is the run's (models loaded here stay loaded for it, so a run that
    estimates first passes ``count_loads=False``: the loads are behind it). A candidate whose
    probe fails gets ``seconds=None`` and the failure as its note; the run itself then
    says what is wrong. Never sends a paid request.
    """
    progress = progress or ProgressSink()
    est = _Estimator(project, split or project.split(), models, progress)
    if not count_loads:
        est._paid.update(("encoder", *(f"llm:{c.llm}" for c in candidates)))
    out = []
    for cand in candidates:
        t0 = time.perf_counter()
        try:
            estimate = est.estimate(cand)
        except Exception as exc:  # a probe must never stop the run that asked for it
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            estimate = TimeEstimate(cand.name, None, note=f"the probe failed ({first})")
        estimate.probe_seconds = time.perf_counter() - t0
        out.append(estimate)
    return out


class _Estimator:
    """The probes of one estimate, sharing what candidates share in a run."""

    def __init__(
        self, project: Project, split: Split, models: Models, progress: ProgressSink
    ) -> None:
        self.project = project
        self.split = split
        self.models = models
        self.progress = progress
        self.ev = project.config.evaluation
        self._encoder_rate: tuple[float, float] | None = None  # s per text batched, alone
        self._paid: set[str] = set()  # what the run embeds or loads once, already counted
        texts = [ex.text for ex in (*split.train, *split.val, *split.test)]
        self._sample = random.Random(project.config.seed).sample(
            texts, min(ENCODER_SAMPLE, len(texts))
        )

    # ------------------------------------------------------------ shared once per run

    def _once(self, what: str, seconds: float) -> float:
        """``seconds`` the first time ``what`` is counted, 0 afterwards."""
        if what in self._paid:
            return 0.0
        self._paid.add(what)
        return seconds

    def encoder_rate(self) -> tuple[float, float, float]:
        """Seconds per text in a batch, seconds of one text alone, and the encoder's load
        (0 once counted)."""
        t0 = time.perf_counter()
        encoder = self.models.encoder()
        load = self._once("encoder", time.perf_counter() - t0)
        if self._encoder_rate is None:
            encoder.embed(self._sample[:2])  # warm-up: thread pools, first kernels
            t0 = time.perf_counter()
            encoder.embed(self._sample)
            batched = (time.perf_counter() - t0) / max(1, len(self._sample))
            t0 = time.perf_counter()
            for text in self._sample[:3]:
                encoder.embed([text])
            alone = (time.perf_counter() - t0) / max(1, min(3, len(self._sample)))
            self._encoder_rate = (batched, alone)
        return (*self._encoder_rate, load)

    def _measurement(self, per_text: float, alone: float) -> float:
        """The timing passes on their sample and the one-at-a-time latency requests of a
        classifier (:func:`adaptlab.engine.runner._predict_test`)."""
        n_test = len(self.split.test)
        timing = min(TIMING_SAMPLE, n_test) * self.ev.timing_repeats * per_text
        return timing + min(self.ev.latency_samples, n_test) * alone

    # ------------------------------------------------------------ per candidate

    def estimate(self, cand: CandidateConfig) -> TimeEstimate:
        cls = get_strategy(cand.strategy)
        options = cls.Options.model_validate(cand.params)
        if cls.generative:
            assert cand.llm is not None
            backend = self.project.config.llms[cand.llm].backend
            if backend in REMOTE:
                return TimeEstimate(
                    cand.name,
                    None,
                    note=f"the model answers through the {backend} API: its time is the "
                    "provider's, and a probe would be a paid call",
                )
            if cand.strategy == "openai-finetune":
                return TimeEstimate(cand.name, None, note="a provider's fine-tuning job")
            return self._generative(cand)
        if cls.needs_encoder(options):
            if issubclass(cls, Finetune):
                return self._encoder_finetune(cand)
            return self._frozen_encoder(cand, cls)
        return self._classical(cand)

    def _frozen_encoder(self, cand: CandidateConfig, cls: type[Strategy]) -> TimeEstimate:
        """A classifier on frozen embeddings: the texts it embeds."""
        per_text, alone, load = self.encoder_rate()
        n_train, n_val, n_test = (len(self.split.train), len(self.split.val), len(self.split.test))
        parts = {
            "load": load,
            "fit": self._once("train", n_train * per_text),
            "answers": self._once("test+val", (n_test + n_val) * per_text),
            # The frozen encoder's timing passes and latencies are measured once per run
            # and charged to the others (engine/embeddings.py MeteredEncoder).
            "measurement": self._once("frozen timing", self._measurement(per_text, alone)),
        }
        if cv.applies(cls, self.project.config.task, self.ev) and self.split.val:
            # The folds look up the train and val lists' vectors: the val list is
            # already answered, the train list embedded once per run (a kNN's too).
            parts["cross-validation"] = self._once("train", n_train * per_text)
        done = _done(cand.name, parts, f"{len(self._sample)} texts embedded")
        if not any(parts.values()):
            done.note = "its encoder work is counted with an earlier candidate's"
        return done

    def _encoder_finetune(self, cand: CandidateConfig) -> TimeEstimate:
        per_text, alone, load = self.encoder_rate()
        strategy = self._strategy(cand)
        assert isinstance(strategy, Finetune)
        opts = strategy.opts
        names = strategy.label_names
        train, val, test = self.split.train, self.split.val, self.split.test
        probe = probe_encoder_steps(
            self.models.encoder(),  # type: ignore[arg-type]
            opts,
            [ex.text for ex in train],
            [names.index(ex.label) for ex in train],
            [ex.text for ex in val],
            n_labels=len(names),
            seed=self.project.config.seed,
            steps=PROBE_STEPS,
        )
        epoch = probe.epoch_seconds + (probe.validation_seconds if val else 0.0)
        frozen = self._once("train", len(train) * per_text) if opts.method == "head" else 0.0
        least = min(opts.epochs, 1 + opts.patience) if val else opts.epochs
        # Early stopping ends it after `least` to `epochs` epochs, which is not known
        # before: the point is their geometric mean, at most sqrt(epochs / least) off
        # in ratio whichever it is (measured: 6 of 8 epochs on the support tickets, 3 of
        # 8 on 1,000 BANKING77 requests; every epoch assumed, the latter was 2.3x off).
        expected = math.sqrt(least * opts.epochs)
        fit = probe.load_seconds + frozen + expected * epoch
        parts = {
            "load": load,
            "fit": fit,
            "answers": (len(test) + len(val)) * per_text,
            "measurement": self._measurement(per_text, alone),
        }
        basis = f"{len(probe.seconds)} training steps timed"
        note = ""
        if opts.tune is not None:  # a search bounded by its cap, then the chosen fit
            parts["search"] = 60 * opts.tune.max_minutes
            note = f"tune: at most {opts.tune.max_minutes:g} min of search"
        saved = (expected - least) * epoch
        more = (opts.epochs - expected) * epoch
        return _done(cand.name, parts, basis, note=note, saved=saved, more=more)

    def _classical(self, cand: CandidateConfig) -> TimeEstimate:
        """No encoder, no model to call (TF-IDF): a real fit on up to
        :data:`CLASSICAL_SAMPLE` train examples, scaled linearly to the split, and its
        answers, timed."""
        train = list(self.split.train)
        sample = train
        if len(train) > CLASSICAL_SAMPLE:
            sample = random.Random(self.project.config.seed).sample(train, CLASSICAL_SAMPLE)
        with tempfile.TemporaryDirectory(prefix="adaptlab-probe-") as tmp:
            strategy, _ = make_context(
                self.project, cand, Path(tmp), self.models, ProgressSink(), with_llm=False
            )
            t0 = time.perf_counter()
            strategy.fit(sample, self.split.val)
            fit = (time.perf_counter() - t0) * len(train) / max(1, len(sample))
            t0 = time.perf_counter()
            strategy.predict(self._sample)
            per_text = (time.perf_counter() - t0) / max(1, len(self._sample))
        n = len(self.split.test) + len(self.split.val)
        parts = {"fit": fit, "answers": n * per_text}
        parts["measurement"] = self._measurement(per_text, per_text)
        if cv.applies(get_strategy(cand.strategy), self.project.config.task, self.ev):
            parts["cross-validation"] = self.ev.cv_folds * fit + n * per_text
        return _done(cand.name, parts, f"a fit on {len(sample)} examples timed")

    def _strategy(self, cand: CandidateConfig, *, with_llm: bool = False) -> Strategy:
        return make_context(
            self.project,
            cand,
            Path(tempfile.gettempdir()),
            self.models,
            ProgressSink(),
            with_llm=with_llm,
        )[0]

    def _generative(self, cand: CandidateConfig) -> TimeEstimate:
        """A local model: its own prompts answered past the cache; a LoRA fit's steps."""
        t0 = time.perf_counter()
        strategy = self._strategy(cand, with_llm=True)
        assert isinstance(strategy, PromptStrategy)
        runner = strategy.ctx.llm
        assert runner is not None
        load = self._once(f"llm:{cand.llm}", time.perf_counter() - t0)
        shots = 0.0
        if type(strategy).needs_encoder(strategy.options):
            per_text, _, enc_load = self.encoder_rate()
            shots = enc_load + self._once("train", len(self.split.train) * per_text)
        strategy.select_shots(self.split.train)
        batch = max(1, runner.config.batch_size)
        sample = self._sample[:batch]
        with runner.uncached():
            t0 = time.perf_counter()
            PromptStrategy.predict(strategy, sample[:1])  # alone; warms the model up
            alone = time.perf_counter() - t0
            t0 = time.perf_counter()
            PromptStrategy.predict(strategy, sample)
            per_answer = (time.perf_counter() - t0) / max(1, len(sample))
        cache = runner.cache
        n_val, n_test = len(self.split.val), len(self.split.test)
        answers = n_test + n_val
        if self.ev.consistency_samples >= 2:
            answers += (self.ev.consistency_samples - 1) * min(self.ev.consistency_inputs, n_test)
        cached = 0
        if cache is not None and not strategy.trains_weights:  # a new model has no answers yet
            texts = [ex.text for ex in (*self.split.test, *self.split.val)]
            identity = runner.backend.identity()
            cached = sum(
                cache.get(r.cache_key(identity)) is not None for r in strategy.requests(texts)
            )
        answers -= cached
        latency = min(self.ev.latency_samples, LOCAL_LATENCY_SAMPLES, n_test)
        parts = {
            "load": load + shots,
            "answers": answers * per_answer,
            "measurement": latency * alone,
        }
        basis = f"{len(sample) + 1} answers timed" + (f", {cached} cached" if cached else "")
        note = ""
        saved = 0.0
        if isinstance(strategy, PromptSearch):
            # The candidate's own answers; a proposer's calls are another model's.
            calls = len(strategy.planned_requests(self.split, runner.backend).own) - n_test
            search = calls * per_answer
            cap = strategy.search.max_minutes
            if cap is not None:
                search = min(search, 60 * cap)
            parts["search"] = search
            note = f"the search at its most ({calls} answers)"
        if isinstance(strategy, LLMFinetune):
            parts["fit"], saved, more, note = self._lora(strategy)
            basis += f", {more}"
        return _done(cand.name, parts, basis, note=note, saved=saved)

    def _lora(self, strategy: LLMFinetune) -> tuple[float, float, str, str]:
        """Seconds of a LoRA fit, what early stopping may save, and what was measured."""
        assert strategy.ctx.llm is not None
        options = strategy.train_options()
        records = strategy.chat_records(self.split.train)
        val_records = strategy.chat_records(self.split.val)
        base = resolve_model(strategy.ctx.llm.config.name)
        probe = probe_causal_lm(
            base,
            records,
            val_records,
            options,
            seed=self.project.config.seed,
            device=getattr(strategy.ctx.llm.backend, "device", "cpu"),
            steps=PROBE_STEPS,
        )
        rate = probe.seconds_per_token
        steps = probe.steps_per_epoch * options.epochs
        evaluations = int(steps // options.eval_steps) + 1
        evaluate = probe.val_tokens * rate / 3  # a forward pass: a third of a step's work
        fit = (
            probe.load_seconds
            + options.epochs * probe.tokens_per_epoch * rate
            + evaluations * evaluate
        )
        note = ""
        if strategy.ft.tune is not None:
            fit = max(fit, 60 * strategy.ft.tune.max_minutes)
            note = f"tune: at most {strategy.ft.tune.max_minutes:g} min of search"
        # Early stopping needs at least patience + 1 evaluations to stop.
        saved = 0.0
        if options.early_stopping_patience is not None:
            least = min(steps, (options.early_stopping_patience + 1) * options.eval_steps)
            saved = (steps - least) / max(steps, 1) * (fit - probe.load_seconds)
        return fit, saved, f"{len(probe.seconds)} training steps timed", note


def _done(
    name: str,
    parts: dict[str, float],
    basis: str,
    *,
    note: str = "",
    saved: float = 0.0,
    more: float = 0.0,
) -> TimeEstimate:
    """The estimate of ``parts`` (seconds by stage); ``saved``: seconds early stopping can
    save at most (the range reaches down to the total without them); ``more``: seconds
    the work can take beyond the point (every epoch run, where the point expects early
    stopping; the range reaches up to the total with them)."""
    total = sum(parts.values())
    return TimeEstimate(
        name,
        total,
        low=LOW * max(total - saved, 0.0),
        high=HIGH * (total + more),
        parts={k: v for k, v in parts.items() if v > 0},
        basis=basis,
        note=note,
    )
