"""Typed configuration: dataclasses for model / data / train / eval, YAML files and `--a.b=value` overrides.

One config system for the whole project. Every entry point (train.py, evaluate.py, scripts) builds a
`Config` with `load_config(path, overrides)`; every output folder gets the resolved config written
beside it with `save_config`, so any run can be reproduced from its folder alone.

Unknown keys and values of the wrong type raise `ConfigError`, which names the key and lists the
valid ones.
"""

from __future__ import annotations

import dataclasses
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

import yaml


class ConfigError(ValueError):
    """A configuration key or value is invalid; the message names the key."""


class _Yaml12Loader(yaml.SafeLoader):
    """YAML with 1.2 scalars: only true/false are booleans (so `mixed_precision: no` stays the string
    "no") and `1e-5` is a float, as a researcher writing a config expects."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [
        (tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:bool", "tag:yaml.org,2002:float")
    ]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"^[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?$|^[-+]?\d+[eE][-+]?\d+$|^[-+]?\.(?:inf|Inf|INF)$|^\.(?:nan|NaN|NAN)$"
    ),
    list("-+0123456789."),
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_Yaml12Loader)  # a SafeLoader subclass: no arbitrary objects


# --------------------------------------------------------------------------------------------------
# Sections
# --------------------------------------------------------------------------------------------------


@dataclass
class ModelConfig:
    """Which backbone, which weights, how to pool, and how to adapt (LoRA)."""

    backbone: str = "qwen2_vl"  # registry key: qwen2_vl, qwen2_5_vl, phi3_v
    path: str | None = None  # local folder of the base model (official layout)
    checkpoint: str | None = None  # our saved model / PEFT adapter folder to load on top of `path`
    dtype: str = "float32"  # float32 | bfloat16 | float16
    attn_implementation: str = "sdpa"  # sdpa | eager | flash_attention_2
    normalize: bool = True  # L2-normalise the pooled representation
    temperature: float = 0.02
    max_length: int = 256  # text tokens; image tokens are never truncated
    prompt_format: str = "vlm2vec"  # Qwen-VL only: vlm2vec (image pads, 1-D positions) | native
    num_crops: int = 4  # Phi-3.5-V HD transform
    max_pixels: int | None = None  # Qwen-VL image processor cap
    min_pixels: int | None = None
    gradient_checkpointing: bool = False
    lora: bool = False
    lora_r: int = 8
    lora_alpha: int = 16
    lora_dropout: float = 0.1
    lora_target_modules: list[str] | None = None  # None -> the backbone's language-model defaults
    lora_vision: bool = False  # also adapt the vision tower
    use_dora: bool = False


@dataclass
class PairSourceConfig:
    """A custom pair file (JSONL, CSV or parquet) used as a training source."""

    name: str = "pairs"
    path: str = ""
    image_root: str = ""
    weight: float = 1.0
    qry_text: str = "qry"
    qry_image: str | None = "qry_image_path"
    pos_text: str = "pos_text"
    pos_image: str | None = "pos_image_path"
    neg_text: str | None = None
    neg_image: str | None = None


@dataclass
class DataConfig:
    """Training data: MMEB-train subsets from a local clone and/or custom pair files."""

    mmeb_train_dir: str | None = None
    subsets: list[str] = field(default_factory=list)  # empty -> all found
    split: str = "original"  # original | diverse_instruction
    image_root: str | None = None  # default: <mmeb_train_dir>
    max_rows_per_subset: int | None = None
    subset_weights: dict[str, float] = field(default_factory=dict)
    pairs: list[PairSourceConfig] = field(default_factory=list)
    per_source_batches: bool = False
    num_workers: int = 0
    skip_bad_rows: bool = False
    num_hard_negatives: int = 0


@dataclass
class TrainConfig:
    """Optimisation, batch layout, GradCache, checkpoints and logging."""

    output_dir: str = "runs/default"
    seed: int = 42
    per_device_batch_size: int = 8
    qry_chunk_size: int | None = None  # None -> no GradCache chunking on the query side
    tgt_chunk_size: int | None = None
    max_steps: int = 100
    lr: float = 2e-5
    weight_decay: float = 0.0
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    scheduler: str = "linear"  # linear | cosine | constant
    warmup_steps: int = 0
    max_grad_norm: float | None = 1.0
    mixed_precision: str = "no"  # no | bf16 | fp16
    hard_negatives: bool = False
    mask_false_negatives: bool = False
    symmetric_loss: bool = False
    save_every: int = 0  # 0 -> only the final export
    keep_last: int = 2
    save_merged: bool = False
    log_every: int = 1
    report_to: str = "auto"  # auto | wandb | tensorboard | none
    run_name: str | None = None
    resume: bool = False
    deepspeed_config: str | None = None
    stop_at_step: int | None = None  # leave early after this step with a checkpoint (time-limited jobs)
    prepare_demo: bool = False  # create the tiny model / synthetic data at the configured paths if missing


@dataclass
class EvalConfig:
    """MMEB evaluation: which datasets, where they are, batching and caching."""

    data_dir: str | None = None  # local MMEB-eval clone (one folder per dataset)
    image_root: str | None = None  # default: first of <data_dir>/images, <data_dir>/eval_images, <data_dir>
    datasets: list[str] = field(default_factory=list)  # [] and no meta_tasks -> all in data_dir
    meta_tasks: list[str] = field(default_factory=list)
    output_dir: str = "eval_out"
    cache_dir: str | None = None  # default: <output_dir>/cache
    batch_size: int = 16
    skip_missing: bool = False
    max_queries: int | None = None
    top_k_predictions: int = 10
    num_workers: int = 0  # DataLoader workers that read images and run the processor while the model encodes
    cache_chunk_items: int = 1024  # items per cache chunk file: the work an interrupted run can lose


@dataclass
class Config:
    """The whole resolved configuration of a run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# --------------------------------------------------------------------------------------------------
# Conversion with type checking
# --------------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp` and convert YAML-ish values; raise naming `key`."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, prefix=key)
    if origin in (list, tuple):
        (item_tp,) = typing.get_args(tp)[:1] or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        k_tp, v_tp = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return {_coerce(k, k_tp, key): _coerce(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected bool (true/false), got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected int, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected float, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected str, got {value!r}")
    raise ConfigError(f"{key}: unsupported annotation {tp!r}")


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types raise `ConfigError`."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            raise ConfigError(
                f"unknown config key '{full}'; valid keys{' of ' + prefix if prefix else ''}: {', '.join(names)}"
            )
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain nested dict (YAML/JSON-serialisable)."""
    return dataclasses.asdict(cfg)


# --------------------------------------------------------------------------------------------------
# Files and overrides
# --------------------------------------------------------------------------------------------------


def _parse_override(item: str) -> tuple[list[str], Any]:
    if not item.startswith("--") or "=" not in item:
        raise ConfigError(f"override {item!r} must look like --section.key=value")
    key, raw = item[2:].split("=", 1)
    return key.split("."), _yaml_load(raw) if raw != "" else ""


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply `--a.b=value` strings (values parsed as YAML) onto a nested dict."""
    for item in overrides:
        path, value = _parse_override(item)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: '{part}' is not a section")
        node[path[-1]] = value
    return data


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults), apply overrides, validate every key and type."""
    data: dict[str, Any] = {}
    if path is not None:
        text = Path(path).read_text()
        try:
            data = _yaml_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML: {exc}") from exc
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: top level must be a mapping with sections model/data/train/eval")
    apply_overrides(data, list(overrides or []))
    try:
        return from_dict(Config, data)
    except ConfigError as exc:
        where = f"{path}: " if path is not None else ""
        raise ConfigError(f"{where}{exc}") from None


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically."""
    from .files import atomic_write_text

    return atomic_write_text(path, dump_config(cfg))


def parse_cli(argv: list[str]) -> tuple[Config, list[str]]:
    """`--config FILE` plus `--a.b=value` overrides -> Config. Returns the config and the raw overrides."""
    path = None
    overrides: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--config":
            if i + 1 >= len(argv):
                raise ConfigError("--config needs a file path")
            path = argv[i + 1]
            i += 2
            continue
        if arg.startswith("--config="):
            path = arg.split("=", 1)[1]
        elif arg == "--resume":
            overrides.append("--train.resume=true")
        else:
            overrides.append(arg)
        i += 1
    return load_config(path, overrides), overrides
