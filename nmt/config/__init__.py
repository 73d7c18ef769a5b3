"""Typed configuration: the schema (:mod:`~nmt.config.schema`, every key documented once),
reading YAML and overrides (:mod:`~nmt.config.load`) and the checks types cannot express
(:mod:`~nmt.config.validate`). Import from here: ``from nmt.config import Config``."""

from nmt.config.load import (
    AUTO_SWITCHES,
    apply_overrides,
    from_dict,
    load_config,
    parse_override,
    save_config,
    to_dict,
)
from nmt.config.schema import (
    CHOICES,
    AttentionConfig,
    Config,
    DataConfig,
    LSTMConfig,
    ModelConfig,
    SearchConfig,
    TokenizerConfig,
    TrainConfig,
    TransformerConfig,
)
from nmt.config.validate import get_path, validate
from nmt.errors import ConfigError

__all__ = [
    "AUTO_SWITCHES",
    "CHOICES",
    "AttentionConfig",
    "Config",
    "ConfigError",
    "DataConfig",
    "LSTMConfig",
    "ModelConfig",
    "SearchConfig",
    "TokenizerConfig",
    "TrainConfig",
    "TransformerConfig",
    "apply_overrides",
    "from_dict",
    "get_path",
    "load_config",
    "parse_override",
    "save_config",
    "to_dict",
    "validate",
]
