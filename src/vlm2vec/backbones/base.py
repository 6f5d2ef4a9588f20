"""The backbone interface: the one seam between a vision-language model family and the rest.

A backbone knows how to load itself from a local folder (official layout) or build itself from a
config, which image token its prompts use, how to turn records (text with MMEB `<|image_k|>` and
`<|video_k|>` placeholders + PIL images and frame lists) into model inputs, and how to return final
hidden states for a batch without computing LM logits. It knows nothing about pooling, losses or
training.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from PIL import Image
from torch.distributed.tensor import DTensor

from ..chunking import TOKEN_KEYS, split_rows

if TYPE_CHECKING:
    from ..config import ModelConfig

TextInput = str | Sequence[str]
ImagesInput = Image.Image | Sequence[Image.Image] | Sequence[Sequence[Image.Image] | None] | None


def normalize_batch(text: TextInput, images: ImagesInput) -> tuple[list[str], list[list[Image.Image]]]:
    """Accept `processor("one text", [img])` as well as `processor([t1, t2], [[img], []])`.

    Returns parallel lists: texts and, per row, the list of its images (possibly empty).
    """
    if isinstance(text, str):
        texts = [text]
        if images is None:
            per_row: list[list[Image.Image]] = [[]]
        elif isinstance(images, Image.Image):
            per_row = [[images]]
        else:
            per_row = [[im for im in images if im is not None]]  # type: ignore[union-attr]
        return texts, per_row
    texts = list(text)
    if images is None:
        return texts, [[] for _ in texts]
    if len(images) != len(texts):  # type: ignore[arg-type]
        raise ValueError(f"got {len(texts)} texts but {len(images)} image entries")  # type: ignore[arg-type]
    per_row = []
    for row in images:  # type: ignore[union-attr]
        if row is None:
            per_row.append([])
        elif isinstance(row, Image.Image):
            per_row.append([row])
        else:
            per_row.append([im for im in row if im is not None])
    return texts, per_row


#: torch dtype of every `model.dtype` choice (a test holds the keys to the field's choices)
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """Map a config dtype string to torch, with a clear error."""
    if name not in DTYPES:
        raise ValueError(f"model.dtype must be one of {sorted(DTYPES)}, got {name!r}")
    return DTYPES[name]


def pad_rows(
    rows: Sequence[Sequence[int]], pad: int, padding_side: str = "right", dtype: torch.dtype = torch.long
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token rows as one [B, T] tensor padded with `pad` on `padding_side`, and its attention mask
    (the batch layout every processor returns)."""
    if padding_side not in ("right", "left"):
        raise ValueError(f"padding_side must be 'right' or 'left', got {padding_side!r}")
    width = max(len(r) for r in rows)
    out = torch.full((len(rows), width), pad, dtype=dtype)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        span = slice(0, len(row)) if padding_side == "right" else slice(width - len(row), width)
        out[i, span] = torch.tensor(row, dtype=dtype)
        mask[i, span] = 1
    return out, mask


def padded_positions(attention_mask: torch.Tensor) -> torch.Tensor:
    """1-D positions 0..n-1 over the real tokens of each row, whatever the padding side."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def unwrap_peft(model: torch.nn.Module) -> torch.nn.Module:
    """The HF model under a PEFT wrapper (LoRA layers are injected in place, so they stay active)."""
    get_base = getattr(model, "get_base_model", None)
    return get_base() if callable(get_base) else model


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert to RGB; an alpha channel is dropped (not composited), as the official processors do."""
    return image if image.mode == "RGB" else image.convert("RGB")


def vision_dummy_needed(model: torch.nn.Module, vision: torch.nn.Module) -> bool:
    """Whether a text-only batch must run the vision path on a dummy image (see the backbones).

    Only in training mode, and only when some vision parameter is trainable (its gradient must become
    ready at the same point of every backward on every rank: ZeRO-2 fills its reduction buckets in that
    order, DDP needs every gradient) or sharded by ZeRO-3 or FSDP2 (a DTensor: every rank must run
    the same modules, since running one gathers its parameters with a collective).
    """
    if not model.training:
        return False
    return any(p.requires_grad or hasattr(p, "ds_id") or isinstance(p, DTensor) for p in vision.parameters())


def embed_with_images(
    embed_tokens: Callable[[], torch.Tensor],
    model: torch.nn.Module,
    vision: torch.nn.Module,
    image_args: tuple | None,
    dummy_args: Callable[[torch.Tensor], tuple],
    place: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    select: Callable[[Any], torch.Tensor] = lambda out: out,
) -> torch.Tensor:
    """Input embeddings with image features in place: the one vision path every backbone goes through.

    The lockstep rule of the backbone interface: a training forward runs the same modules in the same
    order, and each module returns the same number of tensors, whatever images the batch holds (none,
    one, several per row). DeepSpeed ZeRO-3 fetches a module's partitioned parameters with a
    collective when it runs and once more in backward for every tensor it returned, so two ranks whose
    chunks differ in images must record identical traces; DDP and ZeRO-2 need every trainable vision
    parameter to get its gradient at the same point of every backward. Hence always: token embeddings
    first (`embed_tokens()`), then exactly one call of `vision` whose output, after `select`, is one
    tensor of all image tokens of the batch in order: on the real images (`image_args`, None for a
    text-only batch) or, when `vision_dummy_needed`, on the smallest image it accepts
    (`dummy_args(embeds)`), whose features times zero join the embeddings where real features would
    (`place(embeds, features)` writes the real ones). `module_trace` (tests/lockstep_checks.py) checks the rule.
    """
    embeds = embed_tokens()
    if image_args is None and not vision_dummy_needed(model, vision):
        return embeds
    features = select(vision(*(image_args if image_args is not None else dummy_args(embeds))))
    if not isinstance(features, torch.Tensor):
        raise TypeError(
            f"{type(vision).__name__} must return one tensor of image tokens (not one per image), "
            f"got {type(features).__name__}"
        )
    if image_args is None:
        return embeds + (features.to(embeds.dtype) * 0.0).sum()
    return place(embeds, features.to(embeds.dtype))


class Backbone(ABC):
    """A model family. Instances are stateless helpers; the weights live in the nn.Module they build.

    Lockstep contract (what distributed training relies on): `last_hidden_state` in training mode runs
    the same module sequence, with the same number of outputs per module, for any mix of images in the
    batch. Build the input embeddings with `embed_with_images`; check a new backbone with
    `module_trace` in tests/lockstep_checks.py (the shared backbone tests do).
    """

    #: registry key, also written to saved folders
    name: ClassVar[str]
    #: LoRA targets in the language model (default) and in the vision tower (with lora_vision)
    lora_targets: ClassVar[list[str]] = ["q_proj", "k_proj", "v_proj", "o_proj"]
    vision_lora_targets: ClassVar[list[str]] = []
    #: regex fragments locating the language model / vision tower in module names (None: plain names)
    language_model_pattern: ClassVar[str | None] = None
    vision_pattern: ClassVar[str | None] = None
    #: batch keys whose first dimension runs over images, not rows; routed to chunks by `num_images`
    per_image_keys: ClassVar[tuple[str, ...]] = ()
    #: [B, T] batch keys trimmed to a chunk's own width when a batch is split
    token_keys: ClassVar[tuple[str, ...]] = TOKEN_KEYS

    @abstractmethod
    def load_model(self, path: str, cfg: ModelConfig) -> torch.nn.Module:
        """Load the HF model (weights, config) from a local folder in the official layout."""

    @abstractmethod
    def model_from_config(self, hf_config: Any, cfg: ModelConfig) -> torch.nn.Module:
        """Build a randomly initialised model from a transformers config object."""

    @abstractmethod
    def load_processor(self, path: str, cfg: ModelConfig) -> Any:
        """Return a callable processor: `processor(texts, images, max_length=..., videos=...) -> dict of
        tensors` (`media.prepare_media` reads its images and videos)."""

    @abstractmethod
    def last_hidden_state(self, model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Final-layer hidden states [B, T, H] for a processed batch, without computing LM logits."""

    def folder_defaults(self, path: str) -> dict[str, Any]:
        """ModelConfig fields a base model folder implies (e.g. a release's own prompt format); applied by
        `EmbeddingModel.from_pretrained` before the caller's overrides."""
        return {}

    def save_model(self, model: torch.nn.Module, path: str) -> None:
        """Write the model in the official layout (config.json + safetensors)."""
        model.save_pretrained(path, safe_serialization=True)

    def row_spans(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, list[int]]:
        """For each batch key whose dim 0 does not run over rows: how many entries each row owns.

        Default: the `per_image_keys` hold one entry per image, counted per row by `num_images`.
        """
        if not self.per_image_keys:
            return {}
        n = inputs["input_ids"].shape[0]
        counts = inputs["num_images"].tolist() if "num_images" in inputs else [0] * n
        return {key: counts for key in self.per_image_keys if key in inputs}

    def split_batch(
        self, inputs: Mapping[str, torch.Tensor], chunks: int | list[list[int]]
    ) -> list[dict[str, torch.Tensor]]:
        """Cut a processed batch into chunks (GradCache): `chunks` rows each, or the row indices of each
        chunk (a `chunking.plan_chunks` plan). Image tensors follow their rows (`row_spans`); every
        chunk is trimmed to the token columns its own rows use. The one splitter of every backbone."""
        return split_rows(inputs, chunks, self.row_spans(inputs), self.token_keys)

    def lora_target_modules(self, cfg: ModelConfig) -> list[str] | str:
        """peft targets: the language model's projections, plus the vision tower's with ``lora_vision``.

        When the backbone names its sub-module patterns, a regex (peft full-matches it against module
        names) keeps the adapters inside the intended towers even where leaf names are shared.
        """
        lm = list(cfg.lora_target_modules or self.lora_targets)
        vision = list(self.vision_lora_targets) if cfg.lora_vision else []
        if self.language_model_pattern is None:
            return lm + [t for t in vision if t not in lm]
        alternatives = [rf".*{self.language_model_pattern}.*\.({'|'.join(map(re.escape, lm))})"]
        if vision:
            alternatives.append(rf".*{self.vision_pattern}.*\.({'|'.join(map(re.escape, vision))})")
        return "|".join(f"(?:{a})" for a in alternatives)

    def hidden_size(self, model: torch.nn.Module) -> int:
        config = model.config
        text = getattr(config, "text_config", None) or config
        return int(text.hidden_size)
