"""The configuration schema: one dataclass per section (model, data, train, eval, embed, mine), each
field with its help, range, choices and the mode it belongs to (`fields.opt`), and one `validate()`
per section for the rules that tie several fields together. `validate_config` runs the field checks
generically, then every section's `validate()`; `load_config` calls it once, when a config is read.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from .fields import (
    AT_LEAST_0,
    AT_LEAST_1,
    FINITE,
    POSITIVE,
    UNIT,
    ConfigError,
    check_fields,
    check_no_unused_settings,
    check_number,
    opt,
)


class Section:
    """Base of the config sections: `validate()` holds the rules that tie several of its fields
    together (each field's own range and choices are checked from its declaration)."""

    def validate(self) -> None:
        """Raise `ConfigError` naming the key when fields contradict each other; none by default."""


@dataclass
class ModelConfig(Section):
    """Which backbone, which weights, how to pool, and how to adapt (LoRA)."""

    backbone: str = opt(
        "", "registry key: qwen2_vl, qwen2_5_vl, qwen3_vl, phi3_v, llava_next; empty: detect from config.json"
    )
    path: str | None = opt(None, "local folder of the base model (official layout)")
    checkpoint: str | None = opt(
        None, "our saved model or a PEFT adapter folder, loaded on top of model.path"
    )
    dtype: str = opt(
        "float32", "weights dtype: float32 | bfloat16 | float16", choices=("float32", "bfloat16", "float16")
    )
    attn_implementation: str = opt("sdpa", "attention kernel: sdpa | eager | flash_attention_2")
    normalize: bool = opt(True, "L2-normalise the pooled representation")
    temperature: float = opt(0.02, "InfoNCE temperature (logits = similarity / temperature)", check=POSITIVE)
    max_length: int | None = opt(
        None,
        "text tokens per item (null: no truncation, as the reference at inference); image tokens are never cut",
        check=AT_LEAST_1,
    )
    prompt_format: str = opt(
        "vlm2vec",
        "Qwen-VL only: vlm2vec (image pads, 1-D positions) | native | qwen3_vl_embedding (Qwen3-VL)",
        choices=("vlm2vec", "native", "qwen3_vl_embedding"),
    )
    system_instruction: str = opt(
        "Represent the user's input.",
        "prompt_format qwen3_vl_embedding: the system message of every item",
        applies_when={"prompt_format": ("qwen3_vl_embedding",)},
    )
    image_resolution: str = opt(
        "high",
        "LLaVA-NeXT: resize images to high (1344x1344) or low (336x336) first, as VLM2Vec; native: keep",
        choices=("high", "low", "native"),
    )
    num_crops: int = opt(
        4, "Phi-3.5-V HD transform: maximum number of 336px crops per image", check=AT_LEAST_1
    )
    max_pixels: int | None = opt(None, "Qwen-VL image processor cap on pixels per image", check=AT_LEAST_1)
    min_pixels: int | None = opt(None, "Qwen-VL image processor floor on pixels per image", check=AT_LEAST_1)
    gradient_checkpointing: bool = opt(False, "recompute activations in backward to save memory")
    lora: bool = opt(False, "train LoRA adapters instead of all weights")
    lora_r: int = opt(8, "LoRA rank", check=AT_LEAST_1)
    lora_alpha: int = opt(16, "LoRA scaling numerator (scale = alpha / r)", check=POSITIVE)
    lora_dropout: float = opt(0.1, "dropout on the LoRA branch", check=UNIT)
    lora_target_modules: list[str] | None = opt(
        None, "LoRA target module names; null: the backbone's LM defaults"
    )
    lora_vision: bool = opt(False, "also adapt the vision tower")
    use_dora: bool = opt(False, "DoRA (weight-decomposed LoRA), as the reference's released adapters")


@dataclass
class PairSourceConfig(Section):
    """A custom pair file (JSONL, CSV or parquet) used as a training source."""

    name: str = opt("pairs", "source name used in logs, errors and data.subset_weights")
    path: str = opt("", "the pair file (.jsonl, .csv or .parquet)")
    image_root: str = opt("", "folder that relative image paths are joined onto")
    weight: float = opt(1.0, "sampling weight of this source in the mixture", check=AT_LEAST_0)
    qry_text: str = opt("qry", "column holding the query text")
    qry_image: str | None = opt("qry_image_path", "column holding the query image path (null: none)")
    pos_text: str = opt("pos_text", "column holding the positive's text")
    pos_image: str | None = opt("pos_image_path", "column holding the positive's image path (null: none)")
    neg_text: str | None = opt(None, "column holding hard-negative text(s) (null: none)")
    neg_image: str | None = opt(None, "column holding hard-negative image path(s) (null: none)")


@dataclass
class DataConfig(Section):
    """Training data: MMEB-train subsets from a local clone and/or custom pair files."""

    mmeb_train_dir: str | None = opt(None, "local MMEB-train clone (one folder per subset)")
    subsets: list[str] = opt(help="MMEB-train subsets to use; []: all found", factory=list)
    split: str = opt(
        "original",
        "MMEB-train split: original | diverse_instruction",
        choices=("original", "diverse_instruction"),
    )
    image_root: str | None = opt(None, "image folder of MMEB-train; null: <mmeb_train_dir>")
    max_rows_per_subset: int | None = opt(
        None, "use at most this many rows of each subset (null: all)", check=AT_LEAST_1
    )
    subset_weights: dict[str, float] = opt(
        help="sampling weight per source name (default 1 each)", factory=dict
    )
    pairs: list[PairSourceConfig] = opt(
        help="custom pair files, each a PairSourceConfig mapping", factory=list
    )
    per_source_batches: bool = opt(False, "draw every batch from a single source")
    num_workers: int = opt(0, "DataLoader worker processes that read images and collate", check=AT_LEAST_0)
    skip_bad_rows: bool = opt(False, "skip and count unusable rows instead of stopping")
    num_hard_negatives: int = opt(0, "hard negatives per query read from the neg_* columns", check=AT_LEAST_0)
    image_paths_outside_root: bool = opt(
        False, "allow absolute image paths and paths that leave the image root (../)"
    )

    def validate(self) -> None:
        for name, weight in self.subset_weights.items():
            check_number(f"data.subset_weights.{name}", weight, AT_LEAST_0)
        for i, pair in enumerate(self.pairs):
            check_fields(pair, f"data.pairs[{i}]")


@dataclass
class TrainConfig(Section):
    """Optimisation, batch layout, GradCache, checkpoints and logging."""

    output_dir: str = opt("runs/default", "run folder: config, metrics, checkpoints, final model")
    seed: int = opt(42, "seed of the data order, initialisation and dropout", check=AT_LEAST_0)
    per_device_batch_size: int = opt(8, "query-target pairs per process per step", check=AT_LEAST_1)
    qry_chunk_size: int | None = opt(
        None, "GradCache chunk rows on the query side (null: no chunking)", check=AT_LEAST_1
    )
    tgt_chunk_size: int | None = opt(
        None, "GradCache chunk rows on the target side (null: no chunking)", check=AT_LEAST_1
    )
    qry_chunk_tokens: int | None = opt(
        None,
        "GradCache query chunk budget in padded tokens, rows x longest row (null: none)",
        check=AT_LEAST_1,
    )
    tgt_chunk_tokens: int | None = opt(
        None,
        "GradCache target/negative chunk budget in padded tokens, rows x longest row (null: none)",
        check=AT_LEAST_1,
    )
    chunk_by_length: bool = opt(True, "GradCache: group rows by length before chunking (false: batch order)")
    max_steps: int = opt(100, "optimiser steps of the run", check=AT_LEAST_1)
    lr: float = opt(2e-5, "peak learning rate", check=POSITIVE)
    weight_decay: float = opt(0.0, "AdamW weight decay (not on biases and norms)", check=AT_LEAST_0)
    adam_beta1: float = opt(0.9, "AdamW beta1", check=UNIT)
    adam_beta2: float = opt(0.999, "AdamW beta2", check=UNIT)
    adam_eps: float = opt(1e-8, "AdamW epsilon", check=POSITIVE)
    scheduler: str = opt(
        "linear",
        "learning-rate schedule after warm-up: linear | cosine | constant",
        choices=("linear", "cosine", "constant"),
    )
    warmup_steps: int = opt(0, "linear warm-up steps", check=AT_LEAST_0)
    max_grad_norm: float | None = opt(
        1.0, "clip the gradient norm to this (null: no clipping)", check=POSITIVE
    )
    mixed_precision: str = opt("no", "autocast: no | bf16 | fp16", choices=("no", "bf16", "fp16"))
    hard_negatives: bool = opt(False, "add the rows' hard negatives to the loss")
    mask_false_negatives: bool = opt(False, "mask in-batch candidates with the positive's content")
    symmetric_loss: bool = opt(False, "add the target-to-query InfoNCE term")
    hardness_alpha: float = opt(
        0.0,
        "hardness weighting (LLaVE): add alpha * stop_grad(similarity) to every negative logit; 0: off",
        check=FINITE,
    )
    matryoshka_dims: list[int] = opt(
        help="Matryoshka loss: sum the InfoNCE over reps cut to these sizes, re-normalised; []: off",
        factory=list,
    )
    save_every: int = opt(0, "checkpoint every N steps (0: only the final export)", check=AT_LEAST_0)
    keep_last: int = opt(2, "checkpoints to keep", check=AT_LEAST_0)
    save_merged: bool = opt(False, "also export final_merged/ with LoRA merged into the weights")
    log_every: int = opt(1, "log metrics every N steps", check=AT_LEAST_1)
    report_to: str = opt(
        "auto",
        "metrics backend besides metrics.jsonl: auto | wandb | tensorboard | none",
        choices=("auto", "wandb", "tensorboard", "none"),
    )
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
    stop_at_step: int | None = opt(
        None, "leave early after this step with a checkpoint (time-limited jobs)", check=AT_LEAST_1
    )

    def validate(self) -> None:
        dims = self.matryoshka_dims
        for i, dim in enumerate(dims):
            check_number(f"train.matryoshka_dims[{i}]", dim, AT_LEAST_1)
        if len(set(dims)) != len(dims):
            raise ConfigError(f"train.matryoshka_dims repeats a size: {dims}", key="train.matryoshka_dims")


@dataclass
class EvalConfig(Section):
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
    batch_size: int = opt(16, "items per encoding batch", check=AT_LEAST_1)
    batch_tokens: int | None = opt(
        None,
        "size batches by padded tokens (rows x longest row) instead of batch_size; null: rows",
        check=AT_LEAST_1,
    )
    skip_missing: bool = opt(
        False,
        "allow a partial run: list absent datasets as missing (means marked partial) instead of failing",
    )
    max_queries: int | None = opt(
        None, "evaluate only the first N queries of each dataset (null: all)", check=AT_LEAST_1
    )
    top_k_predictions: int = opt(10, "candidates kept per query in predictions files", check=AT_LEAST_1)
    ties: str = opt(
        "reference",
        "tie with the positive: reference (a hit, as the published numbers) | strict (a miss)",
        choices=("reference", "strict"),
    )
    num_workers: int = opt(
        0,
        "DataLoader workers that read images and run the processor while the model encodes",
        check=AT_LEAST_0,
    )
    cache_chunk_items: int = opt(
        1024, "items per cache chunk file: the work an interrupted run can lose", check=AT_LEAST_1
    )
    dim: int | None = opt(
        None, "score with reps cut to their first N dims, re-normalised (Matryoshka)", check=AT_LEAST_1
    )


@dataclass
class EmbedConfig(Section):
    """Corpus embedding (`vlm2vec embed`): which items, and where the vectors and their metadata go."""

    source: str = opt(
        "train",
        "what to embed: train (the data section's sources) | images (a folder) | texts (a file)",
        choices=("train", "images", "texts"),
    )
    side: str = opt(
        "tgt",
        "train source: which side of each row: tgt (positives) | qry (queries) | neg (hard negatives)",
        choices=("qry", "tgt", "neg"),
        applies_when={"source": ("train",)},
    )
    path: str | None = opt(
        None,
        "images: a folder (recursive; a sub-folder's name is the class label); texts: .txt (one a line) or .jsonl",
    )
    image_text: str = opt(
        "<|image_1|>\nRepresent the given image.",
        "images: the text of every image item",
        applies_when={"source": ("images",)},
    )
    label_column: str | None = opt(
        None,
        "train source: column holding the class label of the embedded side",
        applies_when={"source": ("train",)},
    )
    output_dir: str = opt("embeddings", "folder for vectors-*.safetensors, items.parquet and manifest.json")
    cache_dir: str | None = opt(None, "rep cache that makes a killed run resumable; null: <output_dir>/cache")
    batch_size: int = opt(16, "items per encoding batch", check=AT_LEAST_1)
    chunk_items: int = opt(
        1024, "items per cache chunk file: the work a killed run can lose", check=AT_LEAST_1
    )
    shard_rows: int = opt(100_000, "vectors per safetensors shard", check=AT_LEAST_1)
    num_workers: int = opt(0, "DataLoader workers that read images and run the processor", check=AT_LEAST_0)

    def validate(self) -> None:
        check_no_unused_settings(self, "embed")
        if self.source != "train" and not self.path:
            raise ConfigError(f"embed.source={self.source} needs embed.path", key="embed.path")


@dataclass
class MineConfig(Section):
    """Hard-negative mining (`vlm2vec mine`): top-k targets per training query, filtered, picked, written."""

    output_dir: str = opt("mined", "folder for train/<source>/*.parquet (MMEB-train layout), report.md/png")
    corpus_dir: str | None = opt(None, "candidates: an `embed` output folder; null: the training targets")
    scope: str = opt(
        "source", "candidates of a query: source (targets of its own source) | all", choices=("source", "all")
    )
    top_k: int = opt(50, "candidates retrieved per query before filtering")
    num_negatives: int = opt(3, "negatives written per row", check=AT_LEAST_1)
    strategy: str = opt(
        "top",
        "top (the best n) | range (best n of ranks rank_start..rank_end) | sample (n drawn)",
        choices=("top", "range", "sample"),
    )
    rank_start: int = opt(
        1, "range: first rank kept, 1-based, counted after filtering", applies_when={"strategy": ("range",)}
    )
    rank_end: int = opt(
        50, "range: last rank kept, 1-based, counted after filtering", applies_when={"strategy": ("range",)}
    )
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
    seed: int = opt(0, "seed of the sample strategy", applies_when={"strategy": ("sample",)})
    device: str = opt("auto", "similarity matmul device: auto | cpu | cuda")
    backend: str = opt(
        "exact",
        "exact (blockwise matmul) | faiss (flat inner-product index; needs faiss)",
        choices=("exact", "faiss"),
    )
    query_block: int = opt(4096, "queries per matmul block")
    corpus_block: int = opt(65536, "corpus rows per matmul block")

    def validate(self) -> None:
        check_no_unused_settings(self, "mine")
        if self.top_k < self.num_negatives:
            raise ConfigError(
                f"mine.top_k ({self.top_k}) must be >= mine.num_negatives ({self.num_negatives})",
                key="mine.top_k",
            )
        if self.strategy == "range" and not 1 <= self.rank_start <= self.rank_end:
            raise ConfigError(
                f"mine.rank_start..rank_end must satisfy 1 <= start <= end, got {self.rank_start}..{self.rank_end}",
                key="mine.rank_start",
            )
        if self.scope == "source" and self.corpus_dir:
            raise ConfigError(
                "mine.scope=source needs the training targets as candidates; with mine.corpus_dir use scope=all",
                key="mine.corpus_dir",
            )


@dataclass
class Config:
    """The whole resolved configuration of a run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    embed: EmbedConfig = field(default_factory=EmbedConfig)
    mine: MineConfig = field(default_factory=MineConfig)


def validate_config(cfg: Config) -> Config:
    """Check every field's declared range and choices, then each section's cross-field rules; raise
    `ConfigError` naming the key. `load_config` runs it on every config it reads."""
    for f in dataclasses.fields(cfg):
        section = getattr(cfg, f.name)
        check_fields(section, f.name)
        section.validate()
    return cfg
