from __future__ import annotations

from pydantic import Field

from adaptlab.strategies.base import StrategyOptions


class ZeroShotOptions(StrategyOptions):
    label_template: str = Field(
        default="{label}: {description}",
        description="How each label is written before it is embedded; {label} and "
        "{description} are filled in. This is the prompt you engineer.",
    )
