"""Trainers: LLM fine-tuning (chat data, the local trainer, provider jobs) and the
encoder fine-tune (:mod:`adaptlab.train.encoder`, its resume checkpoints in
:mod:`adaptlab.train.checkpoint`).

Importing this package loads neither torch nor transformers; the trainers import
them when they run. Trainers take texts, label ids and options, never a strategy.
"""

from adaptlab.train.encoder import EncoderTrainResult, train_encoder
from adaptlab.train.options import EncoderTrainOptions, TrainOptions
from adaptlab.train.trainer import TrainResult, merge_adapter, train_causal_lm

__all__ = [
    "EncoderTrainOptions",
    "EncoderTrainResult",
    "TrainOptions",
    "TrainResult",
    "merge_adapter",
    "train_causal_lm",
    "train_encoder",
]
