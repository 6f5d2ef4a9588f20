"""Qwen2-VL and Qwen2.5-VL backbones on transformers' own classes.

Two prompt formats (``ModelConfig.prompt_format``):

- ``vlm2vec`` (default): each MMEB ``<|image_k|>`` becomes N ``<|image_pad|>`` tokens with no
  ``<|vision_start|>``/``<|vision_end|>``, and every token gets a plain 1-D position. This is how
  VLM2Vec's released Qwen checkpoints were trained (REFERENCE §6), so it is what they need.
- ``native``: ``<|vision_start|>`` + N pads + ``<|vision_end|>`` with the model's 3-D M-RoPE
  positions, as the base model was pre-trained.

A ``<|video_k|>`` (a list of frames) is one video input (`qwen_video`), written as the images are
but with ``<|video_pad|>`` tokens; the vision tower still runs once per forward, on the image and
video patches together.

Position ids are always computed here from the attention mask, so left and right padding give the
same hidden states and no state is carried between calls (the HF model caches ``rope_deltas``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from PIL import Image
from transformers import AutoImageProcessor, AutoTokenizer, PreTrainedTokenizerBase

from ..config import ConfigError, ModelConfig
from ..weight_files import from_pretrained_strict
from .base import (
    Backbone,
    ImagesInput,
    TextInput,
    pad_rows,
    padded_positions,
    to_rgb,
    torch_dtype,
    unwrap_peft,
)
from .media import VideosInput, prepare_media
from .placeholders import (
    VIDEO_TYPE,
    Expansion,
    expand_within_budget,
    media_expansion,
    split_at_placeholders,
)
from .qwen_video import temporal_groups, video_patches
from .qwen_vision import MEDIA_KEYS, has_media, input_embeddings
from .registry import register_backbone


class QwenVLProcessor:
    """Turns (text with MMEB placeholders, images) into Qwen-VL model inputs.

    Text pieces between placeholders are tokenised on their own (the special tokens around them make
    this identical to tokenising the expanded string) so that truncation can cut text tokens without
    ever cutting an image's tokens: ``max_length`` bounds the *text* tokens of a row.
    """

    def __init__(
        self,
        tokenizer: PreTrainedTokenizerBase,
        image_processor: Any,
        prompt_format: str = "vlm2vec",
        max_length: int | None = None,
        video_as_images: bool = False,
    ):
        if prompt_format not in ("vlm2vec", "native"):
            raise ConfigError(
                f"model.prompt_format must be 'vlm2vec' or 'native' for Qwen2-VL, got {prompt_format!r}"
                + (
                    " (a Qwen3-VL format: model.backbone=qwen3_vl)"
                    if prompt_format == "qwen3_vl_embedding"
                    else ""
                ),
                key="model.prompt_format",
            )
        self.tokenizer = tokenizer
        self.image_processor = image_processor
        self.prompt_format = prompt_format
        self.max_length = max_length
        self.video_as_images = video_as_images
        self.image_token = "<|image_pad|>"
        vocab = tokenizer.get_vocab()
        special = ("<|image_pad|>", "<|video_pad|>", "<|vision_start|>", "<|vision_end|>")
        missing = [t for t in special if t not in vocab]
        if missing:
            raise ValueError(f"tokenizer lacks Qwen-VL special tokens {missing}")
        self.image_token_id = vocab["<|image_pad|>"]
        self.video_token_id = vocab["<|video_pad|>"]
        self.vision_start_id = vocab["<|vision_start|>"]
        self.vision_end_id = vocab["<|vision_end|>"]
        self.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
        self.merge_size = int(getattr(image_processor, "merge_size", 2))

    def num_image_tokens(self, image: Image.Image) -> int:
        """Positions image `image` takes in the prompt (its merged patches; plus vision start / end in
        the native format), from its size alone: what `eval.batch_tokens` sizes batches by."""
        w, h = image.size
        n = int(self.image_processor.get_number_of_image_patches(h, w)) // self.merge_size**2
        return n + 2 if self.prompt_format == "native" else n

    def num_video_tokens(self, num_frames: int, size: tuple[int, int]) -> int:
        """Positions a video of `num_frames` frames of `size` (width, height) takes in the prompt: its
        temporal groups times one frame's merged patches (plus the markers of the prompt format)."""
        w, h = size
        per_group = int(self.image_processor.get_number_of_image_patches(h, w)) // self.merge_size**2
        groups = temporal_groups(self.image_processor, num_frames)
        return len(self.video_expansion(groups, groups * per_group).ids)

    def video_expansion(self, groups: int, count: int) -> Expansion:
        """The tokens of a video of `count` merged patches in `groups` temporal groups."""
        native = self.prompt_format == "native"
        markers = (self.vision_start_id, self.vision_end_id) if native else (None, None)
        return media_expansion(self.video_token_id, count, *markers, media_type=VIDEO_TYPE)

    def _row_ids(
        self,
        text: str,
        n_tokens_per_image: list[int],
        max_text: int | None,
        videos: Sequence[Expansion] = (),
    ) -> tuple[list[int], list[int]]:
        texts, found = split_at_placeholders(text)
        encoded = [self.tokenizer(t, add_special_tokens=False)["input_ids"] if t else [] for t in texts]
        native = self.prompt_format == "native"
        markers = (self.vision_start_id, self.vision_end_id) if native else (None, None)
        expansions = [
            media_expansion(self.image_token_id, n_tokens_per_image[p.number - 1], *markers)
            if p.kind == "image"
            else videos[p.number - 1]
            for p in found
        ]
        row = expand_within_budget(encoded, expansions, max_text)
        return row.ids, row.types

    def _video_inputs(self, per_video: list[list[list[Image.Image]]]) -> tuple[dict[str, torch.Tensor], list]:
        """`pixel_values_videos` and `video_grid_thw` of all videos, and each row's video expansions."""
        flat = [video for row in per_video for video in row]
        if not flat:
            return {}, [[] for _ in per_video]
        patches = [video_patches(self.image_processor, frames) for frames in flat]
        grids = torch.stack([g for _, g in patches])
        counts = (grids.prod(-1) // self.merge_size**2).tolist()
        expansions = iter(self.video_expansion(int(g[0]), n) for g, n in zip(grids, counts))
        tensors = {"pixel_values_videos": torch.cat([p for p, _ in patches]), "video_grid_thw": grids}
        return tensors, [[next(expansions) for _ in row] for row in per_video]

    def __call__(
        self,
        text: TextInput,
        images: ImagesInput = None,
        max_length: int | None = None,
        padding_side: str = "right",
        videos: VideosInput = None,
    ) -> dict[str, torch.Tensor]:
        texts, per_row, per_video = prepare_media(
            text, images, videos, backbone="Qwen-VL", video_input=True, video_as_images=self.video_as_images
        )
        max_text = max_length if max_length is not None else self.max_length
        flat = [to_rgb(im) for row in per_row for im in row]
        out: dict[str, torch.Tensor] = {}
        n_tokens: list[int] = []
        if flat:
            pix = self.image_processor(images=flat, return_tensors="pt")
            out["pixel_values"] = pix["pixel_values"]
            out["image_grid_thw"] = pix["image_grid_thw"]
            n_tokens = (pix["image_grid_thw"].prod(-1) // self.merge_size**2).tolist()
        video_tensors, video_rows = self._video_inputs(per_video)
        out.update(video_tensors)
        rows, row_types = [], []
        start = 0
        for r, (t, imgs) in enumerate(zip(texts, per_row)):
            ids, types = self._row_ids(t, n_tokens[start : start + len(imgs)], max_text, video_rows[r])
            start += len(imgs)
            if not ids:
                raise ValueError(f"row {r}: empty prompt (no text and no image)")
            rows.append(ids)
            row_types.append(types)
        input_ids, mask = pad_rows(rows, self.pad_token_id, padding_side)
        mm_types, _ = pad_rows(row_types, 0, padding_side, dtype=torch.int)
        out.update(
            input_ids=input_ids,
            attention_mask=mask,
            mm_token_type_ids=mm_types,
            num_images=torch.tensor([len(r) for r in per_row], dtype=torch.long),
        )
        if video_tensors:
            out["num_videos"] = torch.tensor([len(r) for r in per_video], dtype=torch.long)
        return out

    def save_pretrained(self, path: str) -> None:
        self.tokenizer.save_pretrained(path)
        self.image_processor.save_pretrained(path)


class _QwenVLBase(Backbone):
    lora_targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    vision_lora_targets = ["qkv", "proj", "fc1", "fc2", "gate_proj", "up_proj", "down_proj"]
    language_model_pattern = r"language_model\."
    vision_pattern = r"visual\.blocks\."
    model_class_name: str = ""

    def _model_class(self) -> type:
        import transformers

        return getattr(transformers, self.model_class_name)

    def _finish(self, model: torch.nn.Module, cfg: ModelConfig) -> torch.nn.Module:
        # Only hidden states are used: the LM head would get no gradient and break DDP, so freeze it
        # unless it is tied to the input embeddings (then it is the embedding and is used).
        head, emb = model.get_output_embeddings(), model.get_input_embeddings()
        if head is not None and head.weight is not emb.weight:
            head.weight.requires_grad_(False)
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
        return model

    def load_model(self, path: str, cfg: ModelConfig) -> torch.nn.Module:
        """transformers' own loading (safetensors or ``pytorch_model-*.bin`` shards, read with
        ``weights_only``, old 4.4x key names renamed by its registered rules); an adapter beside the
        weights is ignored here (see `EmbeddingModel.from_pretrained`), and any key that does not match
        is an error naming it."""
        model = from_pretrained_strict(
            self._model_class(),
            path,
            dtype=torch_dtype(cfg.dtype),
            attn_implementation=cfg.attn_implementation,
        )
        return self._finish(model, cfg).eval()

    def model_from_config(self, hf_config: Any, cfg: ModelConfig) -> torch.nn.Module:
        hf_config._attn_implementation = cfg.attn_implementation
        model = self._model_class()._from_config(hf_config, dtype=torch_dtype(cfg.dtype))
        return self._finish(model, cfg)

    def load_processor(self, path: str, cfg: ModelConfig) -> QwenVLProcessor:
        tokenizer = AutoTokenizer.from_pretrained(path)
        kwargs = {}
        if cfg.max_pixels is not None or cfg.min_pixels is not None:
            size = {}
            if cfg.min_pixels is not None:
                size["shortest_edge"] = cfg.min_pixels
            if cfg.max_pixels is not None:
                size["longest_edge"] = cfg.max_pixels
            kwargs["size"] = size
        image_processor = AutoImageProcessor.from_pretrained(path, **kwargs)
        return QwenVLProcessor(
            tokenizer, image_processor, cfg.prompt_format, cfg.max_length, cfg.video_as_images
        )

    def position_ids(self, inner: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """3-D M-RoPE positions for a native-format batch with images or videos, else 1-D positions over the real
        tokens (image pads of the vlm2vec format included)."""
        mask = inputs["attention_mask"]
        if has_media(inputs) and _is_native(inputs, inner.config):
            position_ids, _ = inner.get_rope_index(
                inputs["input_ids"],
                mm_token_type_ids=inputs["mm_token_type_ids"],
                image_grid_thw=inputs.get("image_grid_thw"),
                video_grid_thw=inputs.get("video_grid_thw"),
                attention_mask=mask,
            )
            return position_ids
        return padded_positions(mask)

    def last_hidden_state(self, model: torch.nn.Module, inputs: Mapping[str, torch.Tensor]) -> torch.Tensor:
        inner = unwrap_peft(model).model  # Qwen2VLModel: no LM head, no logits
        out = inner(
            inputs_embeds=input_embeddings(inner, inputs),
            attention_mask=inputs["attention_mask"],
            position_ids=self.position_ids(inner, inputs),
            use_cache=False,
        )
        return out.last_hidden_state

    def row_spans(self, inputs: Mapping[str, torch.Tensor]) -> dict[str, list[int]]:
        """A grid key has one row per image (video), its patches key one per patch (grid t*h*w); the
        rows own them as ``num_images`` (``num_videos``) say."""
        spans: dict[str, list[int]] = {}
        for (pixels, grid_key), count in zip(MEDIA_KEYS, ("num_images", "num_videos")):
            grid = inputs.get(grid_key)
            if grid is None:
                continue
            per_row = inputs[count].tolist()
            patches = grid.prod(-1).tolist()
            starts = [sum(per_row[:r]) for r in range(len(per_row))]
            spans[grid_key] = per_row
            spans[pixels] = [sum(patches[s : s + k]) for s, k in zip(starts, per_row)]
        return spans


def _is_native(inputs: Mapping[str, torch.Tensor], config: Any) -> bool:
    """A batch uses the native format when its prompts carry <|vision_start|> tokens."""
    return bool((inputs["input_ids"] == config.vision_start_token_id).any())


@register_backbone
class Qwen2VLBackbone(_QwenVLBase):
    name = "qwen2_vl"
    model_class_name = "Qwen2VLForConditionalGeneration"


@register_backbone
class Qwen25VLBackbone(_QwenVLBase):
    name = "qwen2_5_vl"
    model_class_name = "Qwen2_5_VLForConditionalGeneration"


__all__: Sequence[str] = [
    "QwenVLProcessor",
    "Qwen2VLBackbone",
    "Qwen25VLBackbone",
]
