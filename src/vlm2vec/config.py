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

from .errors import UserError


class ConfigError(UserError, ValueError):
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


def opt(default: Any = dataclasses.MISSING, help: str = "", *, factory: Any = dataclasses.MISSING) -> Any:
    """A config field with its one-line description (shown by ``--help``; every field must have one).

    ``factory`` builds mutable defaults (lists, dicts) as ``dataclasses.field(default_factory=...)``.
    """
    if not help:
        raise TypeError("every config field needs a one-line help text")
    if factory is not dataclasses.MISSING:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


@dataclass
class ModelConfig:
    """Which backbone, which weights, how to pool, and how to adapt (LoRA)."""

    backbone: str = opt("qwen2_vl", "registry key: qwen2_vl, qwen2_5_vl, qwen3_vl, phi3_v, llava_next")
    path: str | None = opt(None, "local folder of the base model (official layout)")
    checkpoint: str | None = opt(
        None, "our saved model or a PEFT adapter folder, loaded on top of model.path"
    )
    dtype: str = opt("float32", "weights dtype: float32 | bfloat16 | float16")
    attn_implementation: str = opt("sdpa", "attention kernel: sdpa | eager | flash_attention_2")
    normalize: bool = opt(True, "L2-normalise the pooled representation")
    temperature: float = opt(0.02, "InfoNCE temperature (logits = similarity / temperature)")
    max_length: int = opt(256, "text tokens per item; image tokens are never truncated")
    prompt_format: str = opt(
        "vlm2vec",
        "Qwen-VL only: vlm2vec (image pads, 1-D positions) | native | qwen3_vl_embedding (Qwen3-VL)",
    )
    system_instruction: str = opt(
        "Represent the user's input.", "prompt_format qwen3_vl_embedding: the system message of every item"
    )
    image_resolution: str = opt(
        "high",
        "LLaVA-NeXT: resize images to high (1344x1344) or low (336x336) first, as VLM2Vec; native: keep",
    )
    num_crops: int = opt(4, "Phi-3.5-V HD transform: maximum number of 336px crops per image")
    max_pixels: int | None = opt(None, "Qwen-VL image processor cap on pixels per image")
    min_pixels: int | None = opt(None, "Qwen-VL image processor floor on pixels per image")
    gradient_checkpointing: bool = opt(False, "recompute activations in backward to save memory")
    lora: bool = opt(False, "train LoRA adapters instead of all weights")
    lora_r: int = opt(8, "LoRA rank")
    lora_alpha: int = opt(16, "LoRA scaling numerator (scale = alpha / r)")
    lora_dropout: float = opt(0.1, "dropout on the LoRA branch")
    lora_target_modules: list[str] | None = opt(
        None, "LoRA target module names; null: the backbone's LM defaults"
    )
    lora_vision: bool = opt(False, "also adapt the vision tower")
    use_dora: bool = opt(False, "DoRA (weight-decomposed LoRA), as the reference's released adapters")


@dataclass
class PairSourceConfig:
    """A custom pair file (JSONL, CSV or parquet) used as a training source."""

    name: str = opt("pairs", "source name used in logs, errors and data.subset_weights")
    path: str = opt("", "the pair file (.jsonl, .csv or .parquet)")
    image_root: str = opt("", "folder that relative image paths are joined onto")
    weight: float = opt(1.0, "sampling weight of this source in the mixture")
    qry_text: str = opt("qry", "column holding the query text")
    qry_image: str | None = opt("qry_image_path", "column holding the query image path (null: none)")
    pos_text: str = opt("pos_text", "column holding the positive's text")
    pos_image: str | None = opt("pos_image_path", "column holding the positive's image path (null: none)")
    neg_text: str | None = opt(None, "column holding hard-negative text(s) (null: none)")
    neg_image: str | None = opt(None, "column holding hard-negative image path(s) (null: none)")


@dataclass
class DataConfig:
    """Training data: MMEB-train subsets from a local clone and/or custom pair files."""

    mmeb_train_dir: str | None = opt(None, "local MMEB-train clone (one folder per subset)")
    subsets: list[str] = opt(help="MMEB-train subsets to use; []: all found", factory=list)
    split: str = opt("original", "MMEB-train split: original | diverse_instruction")
    image_root: str | None = opt(None, "image folder of MMEB-train; null: <mmeb_train_dir>")
    max_rows_per_subset: int | None = opt(None, "use at most this many rows of each subset (null: all)")
    subset_weights: dict[str, float] = opt(
        help="sampling weight per source name (default 1 each)", factory=dict
    )
    pairs: list[PairSourceConfig] = opt(
        help="custom pair files, each a PairSourceConfig mapping", factory=list
    )
    per_source_batches: bool = opt(False, "draw every batch from a single source")
    num_workers: int = opt(0, "DataLoader worker processes that read images and collate")
    skip_bad_rows: bool = opt(False, "skip and count unusable rows instead of stopping")
    num_hard_negatives: int = opt(0, "hard negatives per query read from the neg_* columns")


@dataclass
class TrainConfig:
    """Optimisation, batch layout, GradCache, checkpoints and logging."""

    output_dir: str = opt("runs/default", "run folder: config, metrics, checkpoints, final model")
    seed: int = opt(42, "seed of the data order, initialisation and dropout")
    per_device_batch_size: int = opt(8, "query-target pairs per process per step")
    qry_chunk_size: int | None = opt(None, "GradCache chunk rows on the query side (null: no chunking)")
    tgt_chunk_size: int | None = opt(None, "GradCache chunk rows on the target side (null: no chunking)")
    max_steps: int = opt(100, "optimiser steps of the run")
    lr: float = opt(2e-5, "peak learning rate")
    weight_decay: float = opt(0.0, "AdamW weight decay (not on biases and norms)")
    adam_beta1: float = opt(0.9, "AdamW beta1")
    adam_beta2: float = opt(0.999, "AdamW beta2")
    adam_eps: float = opt(1e-8, "AdamW epsilon")
    scheduler: str = opt("linear", "learning-rate schedule after warm-up: linear | cosine | constant")
    warmup_steps: int = opt(0, "linear warm-up steps")
    max_grad_norm: float | None = opt(1.0, "clip the gradient norm to this (null: no clipping)")
    mixed_precision: str = opt("no", "autocast: no | bf16 | fp16")
    hard_negatives: bool = opt(False, "add the rows' hard negatives to the loss")
    mask_false_negatives: bool = opt(False, "mask in-batch candidates with the positive's content")
    symmetric_loss: bool = opt(False, "add the target-to-query InfoNCE term")
    matryoshka_dims: list[int] = opt(
        help="Matryoshka loss: sum the InfoNCE over reps cut to these sizes, re-normalised; []: off",
        factory=list,
    )
    save_every: int = opt(0, "checkpoint every N steps (0: only the final export)")
    keep_last: int = opt(2, "checkpoints to keep")
    save_merged: bool = opt(False, "also export final_merged/ with LoRA merged into the weights")
    log_every: int = opt(1, "log metrics every N steps")
    report_to: str = opt("auto", "metrics backend besides metrics.jsonl: auto | wandb | tensorboard | none")
    run_name: str | None = opt(None, "run name for wandb / TensorBoard (null: the output folder's name)")
    resume: bool = opt(False, "continue from the newest complete checkpoint in output_dir")
    deepspeed_config: str | None = opt(None, "DeepSpeed JSON config (null: plain DDP / single process)")
    stop_at_step: int | None = opt(None, "leave early after this step with a checkpoint (time-limited jobs)")
    prepare_demo: bool = opt(
        False, "create the tiny model / synthetic data at the configured paths if missing"
    )


@dataclass
class EvalConfig:
    """MMEB evaluation: which datasets, where they are, batching and caching."""

    data_dir: str | None = opt(None, "local MMEB-eval clone (one folder per dataset)")
    image_root: str | None = opt(
        None, "image folder; null: first of <data_dir>/images, <data_dir>/eval_images, <data_dir>"
    )
    datasets: list[str] = opt(
        help="datasets to evaluate; [] and no meta_tasks: all in data_dir", factory=list
    )
    meta_tasks: list[str] = opt(
        help="meta-tasks to evaluate: Classification, VQA, Retrieval, Grounding", factory=list
    )
    output_dir: str = opt("eval_out", "results folder")
    cache_dir: str | None = opt(None, "embedding cache folder; null: <output_dir>/cache")
    batch_size: int = opt(16, "items per encoding batch")
    skip_missing: bool = opt(False, "report absent datasets as missing instead of failing")
    max_queries: int | None = opt(None, "evaluate only the first N queries of each dataset (null: all)")
    top_k_predictions: int = opt(10, "candidates kept per query in predictions files")
    num_workers: int = opt(
        0, "DataLoader workers that read images and run the processor while the model encodes"
    )
    cache_chunk_items: int = opt(1024, "items per cache chunk file: the work an interrupted run can lose")
    dim: int | None = opt(None, "score with reps cut to their first N dims, re-normalised (Matryoshka)")


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
