"""LLM fine-tuning: chat data, the local trainer, provider jobs.

Importing this package loads neither torch nor transformers; the trainer imports
them when it runs.
"""

from adaptlab.train.options import TrainOptions
from adaptlab.train.trainer import TrainResult, merge_adapter, train_causal_lm

__all__ = ["TrainOptions", "TrainResult", "merge_adapter", "train_causal_lm"]
