"""Typed configuration: dataclasses for model / data / train / eval, YAML files and `--a.b=value` overrides.

One config system for the whole project. Every entry point (train.py, evaluate.py, scripts) builds a
`Config` with `load_config(path, overrides)`; every output folder gets the resolved config written
beside it with `save_config`, so any run can be reproduced from its folder alone.

Unknown keys (with a did-you-mean), values of the wrong type and out-of-range numbers raise
`ConfigError`, which names the key and where it was set: `file:line` for a YAML key, the flag for a
command-line override. `parse_cli` also reports which keys were set explicitly (`ParsedCLI.explicit`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
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
    """A configuration key or value is invalid; the message names the key (and, once located by
    `load_config`, the file:line or flag that set it). `key`: the dotted key, when there is one."""

    def __init__(self, message: str, key: str | None = None):
        super().__init__(message)
        self.key = key


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

    backbone: str = opt(
        "", "registry key: qwen2_vl, qwen2_5_vl, qwen3_vl, phi3_v, llava_next; empty: detect from config.json"
    )
    path: str | None = opt(None, "local folder of the base model (official layout)")
    checkpoint: str | None = opt(
        None, "our saved model or a PEFT adapter folder, loaded on top of model.path"
    )
    dtype: str = opt("float32", "weights dtype: float32 | bfloat16 | float16")
    attn_implementation: str = opt("sdpa", "attention kernel: sdpa | eager | flash_attention_2")
    normalize: bool = opt(True, "L2-normalise the pooled representation")
    temperature: float = opt(0.02, "InfoNCE temperature (logits = similarity / temperature)")
    max_length: int | None = opt(
        None,
        "text tokens per item (null: no truncation, as the reference at inference); image tokens are never cut",
    )
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
    image_paths_outside_root: bool = opt(
        False, "allow absolute image paths and paths that leave the image root (../)"
    )


@dataclass
class TrainConfig:
    """Optimisation, batch layout, GradCache, checkpoints and logging."""

    output_dir: str = opt("runs/default", "run folder: config, metrics, checkpoints, final model")
    seed: int = opt(42, "seed of the data order, initialisation and dropout")
    per_device_batch_size: int = opt(8, "query-target pairs per process per step")
    qry_chunk_size: int | None = opt(None, "GradCache chunk rows on the query side (null: no chunking)")
    tgt_chunk_size: int | None = opt(None, "GradCache chunk rows on the target side (null: no chunking)")
    qry_chunk_tokens: int | None = opt(
        None, "GradCache query chunk budget in padded tokens, rows x longest row (null: none)"
    )
    tgt_chunk_tokens: int | None = opt(
        None, "GradCache target/negative chunk budget in padded tokens, rows x longest row (null: none)"
    )
    chunk_by_length: bool = opt(True, "GradCache: group rows by length before chunking (false: batch order)")
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
    hardness_alpha: float = opt(
        0.0, "hardness weighting (LLaVE): add alpha * stop_grad(similarity) to every negative logit; 0: off"
    )
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
    resume: bool = opt(False, "continue from the newest complete checkpoint in output_dir (none: an error)")
    resume_if_present: bool = opt(
        False, "resume when output_dir holds a complete checkpoint, else start (schedulers, requeue)"
    )
    allow_changed: list[str] = opt(
        help="run-defining keys (e.g. train.lr) that may differ from the checkpoint's on resume",
        factory=list,
    )
    deepspeed_config: str | None = opt(None, "DeepSpeed JSON config (null: plain DDP / single process)")
    stop_at_step: int | None = opt(None, "leave early after this step with a checkpoint (time-limited jobs)")


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
    batch_tokens: int | None = opt(
        None, "size batches by padded tokens (rows x longest row) instead of batch_size; null: rows"
    )
    skip_missing: bool = opt(
        False,
        "allow a partial run: list absent datasets as missing (means marked partial) instead of failing",
    )
    max_queries: int | None = opt(None, "evaluate only the first N queries of each dataset (null: all)")
    top_k_predictions: int = opt(10, "candidates kept per query in predictions files")
    ties: str = opt(
        "reference", "tie with the positive: reference (a hit, as the published numbers) | strict (a miss)"
    )
    num_workers: int = opt(
        0, "DataLoader workers that read images and run the processor while the model encodes"
    )
    cache_chunk_items: int = opt(1024, "items per cache chunk file: the work an interrupted run can lose")
    dim: int | None = opt(None, "score with reps cut to their first N dims, re-normalised (Matryoshka)")


@dataclass
class EmbedConfig:
    """Corpus embedding (`vlm2vec embed`): which items, and where the vectors and their metadata go."""

    source: str = opt(
        "train", "what to embed: train (the data section's sources) | images (a folder) | texts (a file)"
    )
    side: str = opt(
        "tgt", "train source: which side of each row: tgt (positives) | qry (queries) | neg (hard negatives)"
    )
    path: str | None = opt(
        None,
        "images: a folder (recursive; a sub-folder's name is the class label); texts: .txt (one a line) or .jsonl",
    )
    image_text: str = opt("<|image_1|>\nRepresent the given image.", "images: the text of every image item")
    label_column: str | None = opt(None, "train source: column holding the class label of the embedded side")
    output_dir: str = opt("embeddings", "folder for vectors-*.safetensors, items.parquet and manifest.json")
    cache_dir: str | None = opt(None, "rep cache that makes a killed run resumable; null: <output_dir>/cache")
    batch_size: int = opt(16, "items per encoding batch")
    chunk_items: int = opt(1024, "items per cache chunk file: the work a killed run can lose")
    shard_rows: int = opt(100_000, "vectors per safetensors shard")
    num_workers: int = opt(0, "DataLoader workers that read images and run the processor")


@dataclass
class MineConfig:
    """Hard-negative mining (`vlm2vec mine`): top-k targets per training query, filtered, picked, written."""

    output_dir: str = opt("mined", "folder for train/<source>/*.parquet (MMEB-train layout), report.md/png")
    corpus_dir: str | None = opt(None, "candidates: an `embed` output folder; null: the training targets")
    scope: str = opt("source", "candidates of a query: source (targets of its own source) | all")
    top_k: int = opt(50, "candidates retrieved per query before filtering")
    num_negatives: int = opt(3, "negatives written per row")
    strategy: str = opt(
        "top", "top (the best n) | range (best n of ranks rank_start..rank_end) | sample (n drawn)"
    )
    rank_start: int = opt(1, "range: first rank kept, 1-based, counted after filtering")
    rank_end: int = opt(50, "range: last rank kept, 1-based, counted after filtering")
    margin: float | None = opt(
        0.1, "drop candidates scoring above positive + margin (may be negative); null: off"
    )
    filter_class: bool = opt(
        True, "drop candidates with the positive's class name (label, or text of a text item)"
    )
    label_column: str | None = opt(None, "column of the training rows holding the positive's class label")
    keep_short: bool = opt(
        False, "keep rows with fewer than num_negatives negatives (else dropped and counted)"
    )
    seed: int = opt(0, "seed of the sample strategy")
    device: str = opt("auto", "similarity matmul device: auto | cpu | cuda")
    backend: str = opt("exact", "exact (blockwise matmul) | faiss (flat inner-product index; needs faiss)")
    query_block: int = opt(4096, "queries per matmul block")
    corpus_block: int = opt(65536, "corpus rows per matmul block")


@dataclass
class Config:
    """The whole resolved configuration of a run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    mine: MineConfig = field(default_factory=MineConfig)


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
        raise ConfigError(f"{key}: expected {_type_name(tp)}, got {value!r}", key=key)
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping for {tp.__name__}, got {value!r}", key=key)
        return from_dict(tp, value, prefix=key)
    if origin in (list, tuple):
        (item_tp,) = typing.get_args(tp)[:1] or (Any,)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}: expected a list, got {value!r}", key=key)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        k_tp, v_tp = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}", key=key)
        return {_coerce(k, k_tp, key): _coerce(v, v_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected bool (true/false), got {value!r}", key=key)
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected int, got {value!r}", key=key)
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{key}: expected float, got {value!r}", key=key)
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{key}: expected str, got {value!r}", key=key)
    raise ConfigError(f"{key}: unsupported annotation {tp!r}", key=key)


def from_dict(cls: type, data: dict[str, Any], prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping; unknown keys and wrong types raise `ConfigError`."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            close = difflib.get_close_matches(str(key), names, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise ConfigError(
                f"unknown config key '{full}'; {hint}valid keys{' of ' + prefix if prefix else ''}: {', '.join(names)}",
                key=full,
            )
        kwargs[key] = _coerce(value, hints[key], full)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Dataclass -> plain nested dict (YAML/JSON-serialisable)."""
    return dataclasses.asdict(cfg)


# --------------------------------------------------------------------------------------------------
# Files and overrides
# --------------------------------------------------------------------------------------------------


_POSITIVE = (lambda v: v > 0, "must be > 0")
_AT_LEAST_1 = (lambda v: v >= 1, "must be >= 1")
_AT_LEAST_0 = (lambda v: v >= 0, "must be >= 0")
_UNIT = (lambda v: 0 <= v < 1, "must be in [0, 1)")

#: range of every numeric setting (None values of optional keys are always allowed)
NUMERIC_RULES: dict[str, tuple[Any, str]] = {
    "model.temperature": _POSITIVE,
    "model.max_length": _AT_LEAST_1,
    "model.num_crops": _AT_LEAST_1,
    "model.max_pixels": _AT_LEAST_1,
    "model.min_pixels": _AT_LEAST_1,
    "model.lora_r": _AT_LEAST_1,
    "model.lora_alpha": _POSITIVE,
    "model.lora_dropout": _UNIT,
    "data.max_rows_per_subset": _AT_LEAST_1,
    "data.num_workers": _AT_LEAST_0,
    "data.num_hard_negatives": _AT_LEAST_0,
    "train.seed": _AT_LEAST_0,
    "train.per_device_batch_size": _AT_LEAST_1,
    "train.qry_chunk_size": _AT_LEAST_1,
    "train.tgt_chunk_size": _AT_LEAST_1,
    "train.qry_chunk_tokens": _AT_LEAST_1,
    "train.tgt_chunk_tokens": _AT_LEAST_1,
    "train.hardness_alpha": (lambda v: True, "must be finite"),
    "train.max_steps": _AT_LEAST_1,
    "train.lr": _POSITIVE,
    "train.weight_decay": _AT_LEAST_0,
    "train.adam_beta1": _UNIT,
    "train.adam_beta2": _UNIT,
    "train.adam_eps": _POSITIVE,
    "train.warmup_steps": _AT_LEAST_0,
    "train.max_grad_norm": _POSITIVE,
    "train.save_every": _AT_LEAST_0,
    "train.keep_last": _AT_LEAST_0,
    "train.log_every": _AT_LEAST_1,
    "train.stop_at_step": _AT_LEAST_1,
    "eval.batch_size": _AT_LEAST_1,
    "eval.batch_tokens": _AT_LEAST_1,
    "eval.max_queries": _AT_LEAST_1,
    "eval.top_k_predictions": _AT_LEAST_1,
    "eval.num_workers": _AT_LEAST_0,
    "eval.cache_chunk_items": _AT_LEAST_1,
    "eval.dim": _AT_LEAST_1,
    "embed.batch_size": _AT_LEAST_1,
    "embed.chunk_items": _AT_LEAST_1,
    "embed.shard_rows": _AT_LEAST_1,
    "embed.num_workers": _AT_LEAST_0,
}

#: settings with a fixed set of values
CHOICES: dict[str, tuple[str, ...]] = {
    "model.dtype": ("float32", "bfloat16", "float16"),
    "model.prompt_format": ("vlm2vec", "native", "qwen3_vl_embedding"),
    "model.image_resolution": ("high", "low", "native"),
    "data.split": ("original", "diverse_instruction"),
    "train.scheduler": ("linear", "cosine", "constant"),
    "train.mixed_precision": ("no", "bf16", "fp16"),
    "train.report_to": ("auto", "wandb", "tensorboard", "none"),
}


def _check_number(key: str, value: Any, rule: tuple[Any, str]) -> None:
    if value is None:
        return
    test, wants = rule
    if (isinstance(value, float) and not math.isfinite(value)) or not test(value):
        raise ConfigError(f"{key} {wants}, got {value!r}", key=key)


def validate_config(cfg: Config) -> Config:
    """Check every numeric setting's range and every fixed choice; raise `ConfigError` naming the key.

    Runs when a config is parsed (`load_config`) and again when training starts (configs built in code).
    """
    for key, rule in NUMERIC_RULES.items():
        section, name = key.split(".")
        _check_number(key, getattr(getattr(cfg, section), name), rule)
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise ConfigError(f"{key} must be one of {', '.join(allowed)}; got {value!r}", key=key)
    for name, weight in cfg.data.subset_weights.items():
        _check_number(f"data.subset_weights.{name}", weight, _AT_LEAST_0)
    for i, pair in enumerate(cfg.data.pairs):
        _check_number(f"data.pairs[{i}].weight", pair.weight, _AT_LEAST_0)
    dims = cfg.train.matryoshka_dims
    for i, dim in enumerate(dims):
        _check_number(f"train.matryoshka_dims[{i}]", dim, _AT_LEAST_1)
    if len(set(dims)) != len(dims):
        raise ConfigError(f"train.matryoshka_dims repeats a size: {dims}", key="train.matryoshka_dims")
    return cfg


def describe_fields(cls: type = Config, prefix: str = "") -> list[tuple[str, str, Any, str]]:
    """Every config key as (dotted key, type, default, help), walking the dataclasses (for `--help`)."""
    rows = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            rows += describe_fields(tp, f"{key}.")
            continue
        if f.default is not dataclasses.MISSING:
            default = f.default
        elif f.default_factory is not dataclasses.MISSING:
            default = f.default_factory()
        else:
            default = None
        rows.append((key, _type_name(tp), default, f.metadata.get("help", "")))
        item = (typing.get_args(tp) or (None,))[0]
        if typing.get_origin(tp) is list and dataclasses.is_dataclass(item):
            rows += describe_fields(item, f"{key}[i].")
    return rows


# --------------------------------------------------------------------------------------------------
# Files, overrides and where each key came from
# --------------------------------------------------------------------------------------------------


def _parse_override(item: str) -> tuple[list[str], Any]:
    if not item.startswith("--") or "=" not in item:
        raise ConfigError(f"command-line argument {item!r} must look like --section.key=value")
    key, raw = item[2:].split("=", 1)
    try:
        return key.split("."), _yaml_load(raw) if raw != "" else ""
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise ConfigError(f"command-line flag {item}: value is not valid YAML ({problem})") from None


def apply_overrides(
    data: dict[str, Any], overrides: list[str], sources: dict[str, str] | None = None
) -> dict[str, Any]:
    """Apply `--a.b=value` strings (values parsed as YAML) onto a nested dict; record each key's flag
    in `sources` (dotted key -> "command-line flag --a.b=value")."""
    for item in overrides:
        path, value = _parse_override(item)
        node = data
        for part in path[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"command-line flag {item}: '{part}' is not a section")
        node[path[-1]] = value
        if sources is not None:
            dotted = ".".join(path)
            for key in [k for k in sources if k == dotted or k.startswith(dotted + ".")]:
                del sources[key]
            _record_flag(sources, dotted, value, f"command-line flag {item}")
    return data


def _record_flag(sources: dict[str, str], dotted: str, value: Any, flag: str) -> None:
    """A flag's value replaces the node at `dotted`; a mapping value sets each of its keys."""
    sources[dotted] = flag
    if isinstance(value, dict):
        for key, sub in value.items():
            _record_flag(sources, f"{dotted}.{key}", sub, flag)


def _yaml_lines(node: Any, path: str, prefix: str, out: dict[str, str]) -> None:
    """Dotted key -> "file:line" for every key of a composed YAML node tree."""
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = f"{prefix}.{key_node.value}" if prefix else str(key_node.value)
            out[key] = f"{path}:{key_node.start_mark.line + 1}"
            _yaml_lines(value_node, path, key, out)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            key = f"{prefix}[{i}]"
            out[key] = f"{path}:{item.start_mark.line + 1}"
            _yaml_lines(item, path, key, out)


def _source_of(key: str | None, sources: dict[str, str]) -> str | None:
    """Where `key` (or the nearest enclosing key) was set."""
    while key:
        if key in sources:
            return sources[key]
        cut = max(key.rfind("."), key.rfind("["))
        key = key[:cut] if cut > 0 else ""
    return None


def _read_yaml(path: str | os.PathLike, sources: dict[str, str]) -> dict[str, Any]:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from None
    try:
        data = _yaml_load(text) or {}
        _yaml_lines(yaml.compose(text, Loader=_Yaml12Loader), str(path), "", sources)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping with sections model/data/train/eval")
    return data


def _load(path: str | os.PathLike | None, overrides: list[str]) -> tuple[Config, dict[str, str]]:
    sources: dict[str, str] = {}
    data = _read_yaml(path, sources) if path is not None else {}
    apply_overrides(data, overrides, sources)
    try:
        return validate_config(from_dict(Config, data)), sources
    except ConfigError as exc:
        where = _source_of(exc.key, sources) or (str(path) if path is not None and exc.key is None else None)
        if where is None:
            raise
        raise ConfigError(f"{where}: {exc}", key=exc.key) from None


def load_config(path: str | os.PathLike | None = None, overrides: list[str] | None = None) -> Config:
    """Read a YAML config (or start from defaults), apply overrides, validate every key, type and range.

    Errors name where the offending key was set: `file:line` or the command-line flag."""
    return _load(path, list(overrides or []))[0]


def explicit_keys(path: str | os.PathLike | None, overrides: list[str] | None = None) -> set[str]:
    """The `section.key`s set by the YAML file or a flag (the rest are defaults)."""
    return _keys_of(_load(path, list(overrides or []))[1])


def _keys_of(sources: dict[str, str]) -> set[str]:
    return {".".join(k.split("[")[0].split(".")[:2]) for k in sources if "." in k.split("[")[0]}


def dump_config(cfg: Config) -> str:
    return yaml.safe_dump(to_dict(cfg), sort_keys=False)


def save_config(cfg: Config, path: str | os.PathLike) -> Path:
    """Write the resolved config as YAML, atomically."""
    from .files import atomic_write_text

    return atomic_write_text(path, dump_config(cfg))


#: command-line flags that are not config keys, and what they stand for
FLAG_OVERRIDES = {
    "--resume": "--train.resume=true",
    "--resume-if-present": "--train.resume_if_present=true",
}
#: flags that change what the command does, not the config (read by `vlm2vec.cli`)
ACTION_FLAGS = ("--help", "-h", "--print-config", "--debug")


class ParsedCLI(tuple):
    """What `parse_cli` returns: unpacks as `(config, overrides)` (as it always did) and also carries
    `config_path`, `explicit` (the `section.key`s the YAML file or a flag set), `sources` (key ->
    file:line or flag) and `flags` (the action flags given: --print-config, --debug)."""

    config: Config
    overrides: list[str]
    config_path: str | None
    explicit: set[str]
    sources: dict[str, str]
    flags: set[str]

    def __new__(cls, config, overrides, config_path, sources, flags):
        self = super().__new__(cls, (config, overrides))
        self.config, self.overrides, self.config_path = config, overrides, config_path
        self.sources, self.explicit, self.flags = sources, _keys_of(sources), flags
        return self


def split_cli(argv: list[str]) -> tuple[str | None, list[str], set[str]]:
    """argv -> (config file, `--a.b=value` overrides, action flags). Flag aliases become overrides:
    `--resume`, `--resume-if-present`, `--allow-changed=a,b`."""
    path = None
    overrides: list[str] = []
    flags: set[str] = set()
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
        elif arg in FLAG_OVERRIDES:
            overrides.append(FLAG_OVERRIDES[arg])
        elif arg.startswith("--allow-changed="):
            keys = [k.strip() for k in arg.split("=", 1)[1].split(",") if k.strip()]
            overrides.append(f"--train.allow_changed=[{', '.join(json.dumps(k) for k in keys)}]")
        elif arg in ACTION_FLAGS:
            flags.add("--help" if arg == "-h" else arg)
        else:
            overrides.append(arg)
        i += 1
    return path, overrides, flags


def parse_cli(argv: list[str]) -> ParsedCLI:
    """`--config FILE` plus `--a.b=value` overrides -> `ParsedCLI` (unpacks as config, raw overrides)."""
    path, overrides, flags = split_cli(argv)
    cfg, sources = _load(path, overrides)
    return ParsedCLI(cfg, overrides, path, sources, flags)
