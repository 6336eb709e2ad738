from adaptlab.strategies.few_shot.config import FewShotOptions
from adaptlab.strategies.few_shot.strategy import FewShot

__all__ = ["FewShot", "FewShotOptions"]
