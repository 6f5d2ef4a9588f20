"""The whole configuration: one section per concern (model, data, train, eval, embed, mine, index,
search), each field with its help, range, choices and the mode it belongs to (`fields.opt`), and one
`validate()` per section for the rules that tie several fields together. `validate_config` runs the field checks
generically, then every section's `validate()`; `load_config` calls it once, when a config is read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .encoding_sections import EmbedConfig, EvalConfig, IndexConfig, MineConfig, SearchConfig
from .fields import check_fields
from .training_sections import DataConfig, ModelConfig, PairSourceConfig, TrainConfig

__all__ = [
    "Config",
    "DataConfig",
    "EmbedConfig",
    "EvalConfig",
    "IndexConfig",
    "MineConfig",
    "ModelConfig",
    "PairSourceConfig",
    "SearchConfig",
    "TrainConfig",
    "validate_config",
]


@dataclass
class Config:
    """The whole resolved configuration of a run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    mine: MineConfig = field(default_factory=MineConfig)
    index: IndexConfig = field(default_factory=IndexConfig)
    search: SearchConfig = field(default_factory=SearchConfig)


def validate_config(cfg: Config) -> Config:
    """Check every field's declared range and choices, then each section's cross-field rules; raise
    `ConfigError` naming the key. `load_config` runs it on every config it reads."""
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        check_fields(section, f.name)
        section.validate()
    return cfg
