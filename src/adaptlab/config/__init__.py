"""``adaptlab.yaml``: the schema (:mod:`.schema`), safe YAML (:mod:`.yaml_safe`) and
loading with every cross-field check (:mod:`.load`)."""

from adaptlab.config.load import DATA_DIRS_ENV, dump_config, load_config
from adaptlab.config.schema import (
    BUNDLED_MODEL,
    CONFIG_FILE,
    CandidateConfig,
    CostConfig,
    DataConfig,
    EvaluationConfig,
    LLMConfig,
    ModelConfig,
    PriceConfig,
    ProfileConfig,
    ProjectConfig,
    RagConfig,
)
from adaptlab.config.yaml_safe import format_validation_error, key_line, parse_yaml

__all__ = [
    "BUNDLED_MODEL",
    "CONFIG_FILE",
    "DATA_DIRS_ENV",
    "CandidateConfig",
    "CostConfig",
    "DataConfig",
    "EvaluationConfig",
    "LLMConfig",
    "ModelConfig",
    "PriceConfig",
    "ProfileConfig",
    "ProjectConfig",
    "RagConfig",
    "dump_config",
    "format_validation_error",
    "key_line",
    "load_config",
    "parse_yaml",
]
