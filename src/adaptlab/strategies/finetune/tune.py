"""``tune:`` of the encoder fine-tune: its learning rate by successive halving on val.

Each trial trains with :func:`adaptlab.train.encoder.train_encoder` in its own folder
(``<checkpoint>/tuning/<trial>``; a killed trial resumes from its ``last.pt``) and
answers the validation split; a full-epoch trial keeps its model there, so the
winner is loaded, never trained again, and a rerun reads every finished trial back.
Epochs are the resource: a lower rung trains ``round(epochs x fraction)`` of them.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from adaptlab.core.types import CurvePoint
from adaptlab.strategies.tuning import Outcome, TrialStore, successive_halving
from adaptlab.train.checkpoint import remove
from adaptlab.train.encoder import train_encoder
from adaptlab.train.options import EncoderTrainOptions

if TYPE_CHECKING:
    from adaptlab.core.types import Prediction
    from adaptlab.data import Example
    from adaptlab.strategies.base import StrategyContext
    from adaptlab.strategies.finetune.config import FinetuneOptions
    from adaptlab.train.encoder import EncoderTrainResult


class Finetune(Protocol):
    """What the search needs of the finetune strategy (which imports this module)."""

    ctx: StrategyContext
    info: dict[str, object]
    curves: list[CurvePoint]

    @property
    def opts(self) -> FinetuneOptions: ...

    @property
    def label_names(self) -> list[str]: ...

    def adopt(self, result: EncoderTrainResult) -> None: ...

    def save_model(self, model: Any, out: Path) -> None: ...

    def predict(self, texts: Sequence[str]) -> list[Prediction]: ...

    def restore_fit(
        self, train: Sequence[Example], val: Sequence[Example], info: dict[str, Any]
    ) -> None: ...


def trial_options(
    strategy: Finetune, params: dict[str, Any], fraction: float
) -> EncoderTrainOptions:
    """The trainer's options of one trial: the setting's learning rate, a share of epochs."""
    own = strategy.opts.model_dump(include=set(EncoderTrainOptions.model_fields))
    epochs = max(1, round(params["epochs"] * fraction))
    return EncoderTrainOptions.model_validate(
        {**own, "learning_rate": params["learning_rate"], "epochs": epochs}
    )


def fit_tuned(strategy: Finetune, train: Sequence[Example], val: Sequence[Example]) -> None:
    """Search ``tune:``, then become the winning trial's model (loaded from its folder).

    Sets ``strategy.info["tuning"]`` (the record of :mod:`adaptlab.strategies.tuning`),
    the winner's curves and training info.
    """
    tune = strategy.opts.tune
    assert tune is not None
    names = strategy.label_names
    backend: Any = strategy.ctx.encoder
    x_train, y_train = [ex.text for ex in train], [names.index(ex.label) for ex in train]
    x_val, y_val = [ex.text for ex in val], [names.index(ex.label) for ex in val]
    default, space = strategy.opts.tuning_space()

    def frozen_embed(texts: list[str]) -> Any:
        return strategy.ctx.embed(texts, description="embedding train split")

    def evaluate(params: dict[str, Any], fraction: float, folder: Path) -> Outcome:
        folder.mkdir(parents=True, exist_ok=True)
        result = train_encoder(
            backend,
            trial_options(strategy, params, fraction),
            x_train,
            y_train,
            x_val,
            y_val,
            n_labels=len(names),
            seed=strategy.ctx.seed,
            workdir=folder,
            frozen_embed=frozen_embed,
            progress=strategy.ctx.progress,
        )
        strategy.adopt(result)
        preds = strategy.predict(x_val)
        right = [1.0 if p.label == ex.label else 0.0 for p, ex in zip(preds, val, strict=True)]
        if fraction == 1.0:  # a winner is loaded from here, never trained again
            strategy.save_model(result.model, folder / "model")
        for name in ("last.pt", "best.pt"):
            remove(folder / name)
        return Outcome(
            right,
            extra={
                "training": result.info,
                "curves": [asdict(p) for p in result.curves],
            },
        )

    data = hashlib.sha256(json.dumps([x_train, y_train, x_val, y_val]).encode()).hexdigest()
    store = TrialStore(strategy.ctx.workdir / "tuning", data[:16])
    search = successive_halving(
        default,
        space,
        evaluate,
        store,
        max_minutes=tune.max_minutes,
        eta=tune.eta,
        units=lambda p, f: max(1, round(p["epochs"] * f)) * len(train),
        n_val=len(val),
        note=strategy.ctx.progress.note,
    )
    strategy.info["tuning"] = search.record
    won = store.get(search.tuned, 1.0)
    assert won is not None
    out = strategy.ctx.workdir / "model"
    remove(out)
    shutil.copytree(search.tuned_folder / "model", out, symlinks=True)
    strategy.restore_fit(train, val, {})
    strategy.curves = [CurvePoint(**c) for c in won.get("curves", [])]
    strategy.info.update(won.get("training", {}))
    if strategy.opts.save_model:
        strategy.info["checkpoint"] = str(out)
    else:
        remove(out)
