from adaptlab.strategies.finetune.config import FinetuneOptions
from adaptlab.strategies.finetune.strategy import Finetune

__all__ = ["Finetune", "FinetuneOptions"]
