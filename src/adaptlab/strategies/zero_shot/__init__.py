from adaptlab.strategies.zero_shot.config import ZeroShotOptions
from adaptlab.strategies.zero_shot.strategy import ZeroShot

__all__ = ["ZeroShot", "ZeroShotOptions"]
