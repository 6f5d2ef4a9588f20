"""Typed configuration: one dataclass per section, read from YAML files and `--a.b=value` overrides.

One config system for the whole project. Every entry point builds a `Config` with
`load_config(path, overrides)`, which validates it once; every output folder gets the resolved config
written beside it with `save_config`, so any run can be reproduced from its folder alone. Unknown keys
(with a did-you-mean), values of the wrong type, out-of-range numbers and values outside a field's
choices raise `ConfigError`, which names the key and where it was set (`file:line` or the flag).
"""

from .fields import ConfigError, changed_fields, choices_of, describe_fields, opt, unused_settings
from .loading import (
    dump_config,
    from_dict,
    keys_set_in,
    load_config,
    load_with_sources,
    save_config,
    to_dict,
)
from .schema import (
    Config,
    DataConfig,
    EmbedConfig,
    EvalConfig,
    IndexConfig,
    MineConfig,
    ModelConfig,
    PairSourceConfig,
    SearchConfig,
    TrainConfig,
    validate_config,
)

__all__ = [
    "Config",
    "ConfigError",
    "DataConfig",
    "EmbedConfig",
    "EvalConfig",
    "IndexConfig",
    "MineConfig",
    "ModelConfig",
    "PairSourceConfig",
    "SearchConfig",
    "TrainConfig",
    "changed_fields",
    "choices_of",
    "describe_fields",
    "dump_config",
    "from_dict",
    "keys_set_in",
    "load_config",
    "load_with_sources",
    "opt",
    "save_config",
    "to_dict",
    "unused_settings",
    "validate_config",
]
