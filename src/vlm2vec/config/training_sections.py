"""The sections that define a training run (model, data, train): what the resume check compares with
a checkpoint's saved config. Each field declares its help, range and choices (`fields.opt`); each
section's `validate()` holds its cross-field rules.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .fields import (
    AT_LEAST_0,
    AT_LEAST_1,
    FINITE,
    POSITIVE,
    UNIT,
    ConfigError,
    Section,
    check_fields,
    check_no_unused_settings,
    check_number,
    opt,
)

#: backbones whose processor reads each backbone-specific model setting (`applies_when`)
_QWEN = {"backbone": ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")}
_LORA = {"lora": (True,)}
#: the named run lengths of `data.sub_batch`, as functions of the global batch G
SUB_BATCH_PRESETS: dict[str, Callable[[int], int]] = {
    "iid": lambda g: 1,  # every row's source drawn on its own
    "paper": lambda g: 64,  # VLM2Vec-V2 paper, section 4.3: sub-batches of 64 (16 runs per 1,024)
    "release": lambda g: g // 2,  # the V2.0 launch line: 2 sources x 512 per 1,024
    "source": lambda g: g,  # every global batch from one source
}
#: how the LLaVA-Hound caption file is read: video -> caption, caption -> video
LLAVAHOUND_DIRECTIONS = ("caption_retrieval", "video_retrieval")


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
        applies_when=_QWEN,
    )
    system_instruction: str = opt(
        "Represent the user's input.",
        "prompt_format qwen3_vl_embedding: the system message of every item",
        applies_when={"backbone": ("qwen3_vl",), "prompt_format": ("qwen3_vl_embedding",)},
    )
    image_resolution: str = opt(
        "high",
        "LLaVA-NeXT: resize images to high (1344x1344) or low (336x336) first, as VLM2Vec; native: keep",
        choices=("high", "low", "native"),
        applies_when={"backbone": ("llava_next",)},
    )
    video_as_images: bool = opt(
        False,
        "give a video's frames as images (<|video_k|> becomes one image placeholder per frame): needed by "
        "phi3_v and llava_next, which have no video input; allowed on Qwen-VL",
    )
    num_crops: int = opt(
        4,
        "Phi-3.5-V HD transform: maximum number of 336px crops per image",
        check=AT_LEAST_1,
        applies_when={"backbone": ("phi3_v",)},
    )
    max_pixels: int | None = opt(
        None, "Qwen-VL image processor cap on pixels per image", check=AT_LEAST_1, applies_when=_QWEN
    )
    min_pixels: int | None = opt(
        None, "Qwen-VL image processor floor on pixels per image", check=AT_LEAST_1, applies_when=_QWEN
    )
    gradient_checkpointing: bool = opt(False, "recompute activations in backward to save memory")
    lora: bool = opt(False, "train LoRA adapters instead of all weights")
    lora_r: int = opt(8, "LoRA rank", check=AT_LEAST_1, applies_when=_LORA)
    lora_alpha: int = opt(
        16, "LoRA scaling numerator (scale = alpha / r)", check=POSITIVE, applies_when=_LORA
    )
    lora_dropout: float = opt(0.1, "dropout on the LoRA branch", check=UNIT, applies_when=_LORA)
    lora_target_modules: list[str] | None = opt(
        None, "LoRA target module names; null: the backbone's LM defaults", applies_when=_LORA
    )
    lora_vision: bool = opt(False, "also adapt the vision tower", applies_when=_LORA)
    use_dora: bool = opt(
        False, "DoRA (weight-decomposed LoRA), as the reference's released adapters", applies_when=_LORA
    )

    def validate(self) -> None:
        check_no_unused_settings(self, "model")  # backbone rules wait for a detected backbone


@dataclass
class PairSourceConfig(Section):
    """A custom pair file (JSONL, CSV or parquet) used as a training source."""

    name: str = opt("pairs", "source name used in logs, errors and data.subset_weights")
    path: str = opt("", "the pair file (.jsonl, .csv or .parquet)")
    image_root: str = opt("", "folder that relative image paths are joined onto")
    weight: float = opt(1.0, "sampling weight of this source in the mixture", check=POSITIVE)
    qry_text: str = opt("qry", "column holding the query text")
    qry_image: str | None = opt("qry_image_path", "column holding the query image path (null: none)")
    pos_text: str = opt("pos_text", "column holding the positive's text")
    pos_image: str | None = opt("pos_image_path", "column holding the positive's image path (null: none)")
    neg_text: str | None = opt(None, "column holding hard-negative text(s) (null: none)")
    neg_image: str | None = opt(None, "column holding hard-negative image path(s) (null: none)")
    qry_video: str | None = opt(
        None, "column holding the query video: a frame folder or a list of frame files (null: none)"
    )
    pos_video: str | None = opt(
        None, "column holding the positive's video: a frame folder or a list of frame files (null: none)"
    )


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
    subset_max_rows: dict[str, int] = opt(
        help="per MMEB-train subset: use at most this many rows (overrides max_rows_per_subset)", factory=dict
    )
    subset_weights: dict[str, float] = opt(
        help="sampling weight per source name (default 1 each)", factory=dict
    )
    pairs: list[PairSourceConfig] = opt(
        help="custom pair files, each a PairSourceConfig mapping", factory=list
    )
    sub_batch: int | str = opt(
        "iid",
        "same-source runs per global batch: iid (1 row) | paper (64) | release (half the batch) | "
        "source (the whole batch) | a row count dividing the global batch",
    )
    weight_mode: str = opt(
        "rows",
        "what a source weight means: rows (a multiple of its rows per epoch) | share (its share of the "
        "epoch's rows, the reference's sampling weights, whatever the source's size)",
        choices=("rows", "share"),
    )
    num_workers: int = opt(0, "DataLoader worker processes that read images and collate", check=AT_LEAST_0)
    skip_bad_rows: bool = opt(False, "skip and count unusable rows instead of stopping")
    num_hard_negatives: int = opt(0, "hard negatives per query read from the neg_* columns", check=AT_LEAST_0)
    image_paths_outside_root: bool = opt(
        False, "allow absolute image paths and paths that leave the image root (../)"
    )
    num_video_frames: int = opt(
        8, "frames per video, evenly spaced as MMEB-V2 (all when a video has fewer)", check=AT_LEAST_1
    )
    # the VLM2Vec-V2 training sources in their published layouts (docs/training.md); weights by source
    # name in data.subset_weights
    colpali_train_dir: str | None = opt(
        None, "clone of vidore/colpali_train_set (data/train-*.parquet): source colpali_train_set"
    )
    colpali_direction: str = opt(
        "reference",
        "colpali rows: reference (page + question -> answer, as the V2.0 release) | retrieval (question -> page)",
        choices=("reference", "retrieval"),
    )
    visrag_indomain_dir: str | None = opt(
        None,
        "clone of openbmb/VisRAG-Ret-Train-In-domain-data (data/train-*.parquet): source visrag-indomain",
    )
    visrag_synthetic_dir: str | None = opt(
        None,
        "clone of the VisRAG synthetic set (in the paper, not in the V2.0 recipe): source visrag-synthetic",
    )
    page_cache_dir: str | None = opt(
        None, "where pages stored in parquet are written, <dir>/<source>/ (null: <clone>/pages)"
    )
    llavahound_caption_file: str | None = opt(
        None,
        "LLaVA-Hound video_caption_300k.jsonl: sources video_caption_300k (video -> caption) and "
        "video_caption_300k-video (caption -> video)",
    )
    llavahound_caption_directions: list[str] = opt(
        help="directions the caption file is trained in: caption_retrieval, video_retrieval (both: the reference)",
        factory=lambda: list(LLAVAHOUND_DIRECTIONS),
    )
    llavahound_qa_file: str | None = opt(
        None, "LLaVA-Hound QA jsonl (video_240k_caption_15k.jsonl in the V2.0 recipe): source video_qa_240k"
    )
    llavahound_qa_max_rows: int | None = opt(
        None,
        "first N rows of the QA file (240000: the download script's subset; null: all, as the recipe)",
        check=AT_LEAST_1,
    )
    llavahound_frames_dir: str | None = opt(
        None, "frame root of the LLaVA-Hound videos: <dir>/<video>/ holds each video's JPEG frames"
    )

    def validate(self) -> None:
        if isinstance(self.sub_batch, str) and self.sub_batch not in SUB_BATCH_PRESETS:
            presets = ", ".join(SUB_BATCH_PRESETS)
            raise ConfigError(
                f"data.sub_batch must be one of {presets} or a row count, got {self.sub_batch!r}",
                key="data.sub_batch",
            )
        if isinstance(self.sub_batch, int):
            check_number("data.sub_batch", self.sub_batch, AT_LEAST_1)
        for name, weight in self.subset_weights.items():
            check_number(f"data.subset_weights.{name}", weight, POSITIVE)
        for name, rows in self.subset_max_rows.items():
            check_number(f"data.subset_max_rows.{name}", rows, AT_LEAST_1)
        for i, pair in enumerate(self.pairs):
            check_fields(pair, f"data.pairs[{i}]")
        wrong = [d for d in self.llavahound_caption_directions if d not in LLAVAHOUND_DIRECTIONS]
        if wrong or not self.llavahound_caption_directions:
            raise ConfigError(
                f"data.llavahound_caption_directions must be a non-empty list of {list(LLAVAHOUND_DIRECTIONS)}, "
                f"got {self.llavahound_caption_directions}",
                key="data.llavahound_caption_directions",
            )
        if (self.llavahound_caption_file or self.llavahound_qa_file) and not self.llavahound_frames_dir:
            raise ConfigError(
                "data.llavahound_frames_dir is not set: the LLaVA-Hound files name frame folders under it",
                key="data.llavahound_frames_dir",
            )

    def run_length(self, global_batch_size: int) -> int:
        """Rows per same-source run in a global batch of `global_batch_size` (`data.sub_batch`); a
        `ConfigError` when the run is longer than the batch or does not divide it."""
        setting = self.sub_batch
        size = SUB_BATCH_PRESETS[setting](global_batch_size) if isinstance(setting, str) else setting
        named = f"{setting} ({size} rows)" if isinstance(setting, str) else f"{size} rows"
        if size < 1 or size > global_batch_size or global_batch_size % size:
            problem = "is larger than" if size > global_batch_size else "does not divide"
            raise ConfigError(
                f"data.sub_batch: a run of {named} {problem} the global batch of {global_batch_size} "
                "(train.per_device_batch_size x processes)",
                key="data.sub_batch",
            )
        return size


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
    multi_positive: str = opt(
        "sample",
        "rows with several positives: sample (one per query per step, seeded, as the reference) | all "
        "(every positive counts, none is a negative for its query)",
        choices=("sample", "all"),
    )
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
    run_name: str | None = opt(
        None,
        "run name for wandb / TensorBoard (null: the output folder's name)",
        applies_when={"report_to": ("auto", "wandb", "tensorboard")},
    )
    resume: bool = opt(False, "continue from the newest complete checkpoint in output_dir (none: an error)")
    resume_if_present: bool = opt(
        False, "resume when output_dir holds a complete checkpoint, else start (schedulers, requeue)"
    )
    allow_changed: list[str] = opt(
        help="run-defining keys (e.g. train.lr) that may differ from the checkpoint's on resume",
        factory=list,
    )
    deepspeed_config: str | None = opt(None, "DeepSpeed JSON config (null: plain DDP / single process)")
    engine: str = opt(
        "auto",
        "auto: DDP, or DeepSpeed with train.deepspeed_config; fsdp2: torch FSDP2 (fully_shard) "
        "(also chosen by configs/accelerate/fsdp2.yaml)",
        choices=("auto", "fsdp2"),
    )
    stop_at_step: int | None = opt(
        None, "leave early after this step with a checkpoint (time-limited jobs)", check=AT_LEAST_1
    )

    def validate(self) -> None:
        check_no_unused_settings(self, "train")
        if self.warmup_steps > self.max_steps:
            raise ConfigError(
                f"train.warmup_steps ({self.warmup_steps}) is longer than the run (train.max_steps="
                f"{self.max_steps}): the learning rate would never reach train.lr",
                key="train.warmup_steps",
            )
        if self.engine == "fsdp2" and self.deepspeed_config:
            raise ConfigError(
                "train.engine is fsdp2 but train.deepspeed_config is set: pick one engine", key="train.engine"
            )
        if self.engine == "fsdp2" and self.mixed_precision == "fp16":
            raise ConfigError(
                "train.engine fsdp2 takes train.mixed_precision bf16 or no (fp16 needs a loss scaler)",
                key="train.engine",
            )
        dims = self.matryoshka_dims
        for i, dim in enumerate(dims):
            check_number(f"train.matryoshka_dims[{i}]", dim, AT_LEAST_1)
        if len(set(dims)) != len(dims):
            raise ConfigError(f"train.matryoshka_dims repeats a size: {dims}", key="train.matryoshka_dims")
