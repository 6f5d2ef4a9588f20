"""EmbeddingModel: a vision-language backbone used as an embedding model.

encode = backbone final hidden states -> hidden state of the last real token -> L2 norm. The same
module embeds queries and targets (the instruction makes them asymmetric; no projection head).
The call shape follows the VLM2Vec model card: ``model(qry=inputs)["qry_reps"]``,
``model(tgt=inputs)["tgt_reps"]``, ``model.compute_similarity(q, t)``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .atomic_files import replace_dir
from .backbones import Backbone, detect_backbone, get_backbone
from .backbones.base import ImagesInput, TextInput, normalize_batch
from .backbones.media import VideosInput, normalize_videos
from .base_identity import base_record, check_adapter_base
from .config import ModelConfig, from_dict
from .config.fields import check_no_unused_settings, without_unused_settings
from .embed_arguments import check_embed_arguments
from .errors import ModelLoadError, ModelNotFoundError
from .matryoshka import truncate_reps
from .weight_files import adapter_base, has_adapter, has_full_weights, load_adapter

#: file that marks a folder saved by `EmbeddingModel.save_pretrained`
META_FILE = "vlm2vec.json"


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """Hidden state of each row's last real token; correct for left and right padding."""
    width = attention_mask.shape[1]
    last = width - 1 - attention_mask.flip(1).long().argmax(dim=1)
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def move_batch(
    inputs: Mapping[str, Any], device: torch.device, float_dtype: torch.dtype | None = None
) -> dict[str, Any]:
    """A processed batch on `device`; float tensors (pixels) also cast to `float_dtype` in the same copy."""
    out = {}
    for key, value in inputs.items():
        if isinstance(value, torch.Tensor):
            dtype = float_dtype if value.is_floating_point() else None
            value = value.to(device, dtype=dtype, non_blocking=True)
        out[key] = value
    return out


def load_processor(cfg: ModelConfig) -> Any:
    """The backbone processor for a model config (reads tokenizer and image settings from `cfg.path`).

    A checkpoint we saved (it holds `vlm2vec.json`) brings its own processor files; a released adapter's
    copies are not used: the reference builds the processor from the base model (so the base's
    `preprocessor_config.json` limits apply).
    """
    name = cfg.backbone or detect_backbone(cfg.path)
    path = cfg.path
    ckpt = Path(cfg.checkpoint) if cfg.checkpoint else None
    if ckpt is not None and (ckpt / META_FILE).is_file() and _has_processor_files(ckpt):
        path = cfg.checkpoint
    return get_backbone(name).load_processor(str(path), cfg)


def _has_processor_files(folder: Path) -> bool:
    return any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))


#: what `from_pretrained(weights=...)` accepts for a folder that holds an adapter and full weights
WEIGHTS_CHOICES = ("adapter", "full")


class EmbeddingModel(nn.Module):
    """A backbone (``encoder``, an HF module or a PEFT wrapper of one) plus pooling and similarity."""

    def __init__(self, backbone: Backbone, encoder: nn.Module, processor: Any, cfg: ModelConfig):
        super().__init__()
        self.backbone = backbone
        self.encoder = encoder
        self.processor = processor
        self.cfg = cfg

    # ---------------------------------------------------------------------------------------- build
    @classmethod
    def from_config(cls, cfg: ModelConfig) -> EmbeddingModel:
        """Load the base model from ``cfg.path``; add LoRA if ``cfg.lora``; load ``cfg.checkpoint``.

        ``cfg.checkpoint`` may be a PEFT adapter folder (applied over the base; a folder holding an
        adapter *and* full weights counts as the adapter here) or a full model folder in the backbone's
        official layout (used instead of the base weights). The model comes back in eval mode, as
        transformers' ``from_pretrained`` returns it; training calls ``.train()`` itself.
        """
        if cfg.checkpoint and has_adapter(cfg.checkpoint) and not (cfg.path and Path(cfg.path).is_dir()):
            raise ModelLoadError(
                f"model.checkpoint {cfg.checkpoint} is a PEFT adapter over {adapter_base(cfg.checkpoint)!r}; "
                f"model.path ({cfg.path!r}) must be a local copy of that base"
            )
        if not cfg.path:
            raise ModelLoadError("model.path must name a local model folder (no hub downloads)")
        if not Path(cfg.path).is_dir():
            raise ModelNotFoundError(f"model.path {cfg.path!r} is not a folder")
        name = cfg.backbone or detect_backbone(cfg.path)
        if name != cfg.backbone:
            cfg = replace(cfg, backbone=name)
        backbone = get_backbone(name)
        # the backbone (and a prompt format a folder implies) is final only here: the one rule again
        check_no_unused_settings(cfg, "model")
        ckpt = Path(cfg.checkpoint) if cfg.checkpoint else None
        if ckpt is not None and not ckpt.is_dir():
            raise ModelNotFoundError(f"model.checkpoint {cfg.checkpoint!r} is not a folder")
        adapter = ckpt is not None and has_adapter(ckpt)
        if adapter:  # refused before any weight is read: an adapter over a base it was not trained on
            check_adapter_base((_saved_meta(ckpt) or {}).get("base"), ckpt, cfg.path)
        weights = str(ckpt) if ckpt is not None and not adapter else cfg.path
        encoder = backbone.load_model(weights, cfg)
        if adapter:
            encoder = load_adapter(encoder, ckpt, trainable=cfg.lora)
        elif cfg.lora:
            encoder = apply_lora(backbone, encoder, cfg)
        return cls(backbone, encoder, load_processor(cfg), cfg).eval()

    @classmethod
    def from_pretrained(
        cls, folder: str | os.PathLike, *, weights: str | None = None, **overrides: Any
    ) -> EmbeddingModel:
        """Open a model folder: one written by ``save_pretrained`` (full, merged or adapter), a released
        PEFT adapter (its base given as ``path=``), or a model folder in the official layout.

        A folder holding both an adapter and full weights (VLM2Vec-Qwen2VL-7B) opens as the adapter over
        ``path=`` by default, as the reference evaluates it; ``weights="full"`` opens its merged weights
        instead. Keyword arguments override fields of the ModelConfig (e.g. ``dtype="bfloat16"``).
        """
        folder = Path(folder)
        if weights is not None and weights not in WEIGHTS_CHOICES:
            raise ModelLoadError(f"weights must be one of {WEIGHTS_CHOICES} or None, got {weights!r}")
        if not folder.is_dir():
            raise ModelNotFoundError(f"{folder} is not a folder")
        adapter, full = has_adapter(folder), has_full_weights(folder)
        if weights == "adapter" and not adapter:
            raise ModelLoadError(f"{folder}: weights='adapter' but the folder holds no adapter_config.json")
        if weights == "full" and not full:
            raise ModelLoadError(
                f"{folder}: weights='full' but the folder holds no config.json + model weights"
            )
        use_adapter = adapter and weights != "full"
        meta = _saved_meta(folder)
        if meta is not None:
            cfg = from_dict(ModelConfig, meta["model"], prefix="model")
            if meta.get("kind") == "adapter":
                cfg = replace(cfg, checkpoint=str(folder))
            else:
                cfg = without_unused_settings(
                    replace(cfg, path=str(folder), checkpoint=None, lora=False), "lora"
                )
        elif use_adapter:
            cfg = ModelConfig(path=adapter_base(folder), checkpoint=str(folder))
        else:
            name = detect_backbone(folder)
            cfg = ModelConfig(
                backbone=name, path=str(folder), **get_backbone(name).folder_defaults(str(folder))
            )
        cfg = replace(cfg, **overrides)
        if cfg.checkpoint and (not cfg.path or not Path(cfg.path).is_dir()):
            hint = ", or weights='full' to open the merged weights beside it" if full else ""
            raise ModelLoadError(
                f"{folder} is a PEFT adapter over base model {cfg.path!r}, which is not a local folder; "
                f"pass path=<local copy of {cfg.path}>{hint}"
            )
        return cls.from_config(cfg)

    # -------------------------------------------------------------------------------------- encode
    def encode(self, inputs: Mapping[str, torch.Tensor], dim: int | None = None) -> torch.Tensor:
        """[B, H] embeddings of a processed batch: last-token pooling, then L2 norm if configured.

        ``dim``: keep the first ``dim`` coordinates and re-normalise (Matryoshka), [B, dim].
        """
        hidden = self.backbone.last_hidden_state(self.encoder, inputs)
        reps = last_token_pool(hidden, inputs["attention_mask"])
        reps = F.normalize(reps, dim=-1) if self.cfg.normalize else reps
        return truncate_reps(reps, dim)

    def forward(
        self,
        qry: Mapping[str, torch.Tensor] | None = None,
        tgt: Mapping[str, torch.Tensor] | None = None,
        neg: Mapping[str, torch.Tensor] | None = None,
    ) -> dict[str, torch.Tensor | None]:
        """Reps of whichever sides are given (hard negatives are encoded like targets); others None."""
        return {
            "qry_reps": self.encode(qry) if qry is not None else None,
            "tgt_reps": self.encode(tgt) if tgt is not None else None,
            "neg_reps": self.encode(neg) if neg is not None else None,
        }

    @staticmethod
    def compute_similarity(q: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Dot-product similarity (cosine for normalised reps): [Nq, Nt]."""
        return q @ t.transpose(-1, -2)

    def split_batch(
        self, inputs: Mapping[str, torch.Tensor], chunks: int | list[list[int]]
    ) -> list[dict[str, torch.Tensor]]:
        """Cut a processed batch into chunks of rows (`chunks` rows each, or each chunk's row indices),
        images following their rows, each trimmed to its own width; used by GradCache."""
        return self.backbone.split_batch(inputs, chunks)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.inference_mode()
    def embed(
        self,
        texts: TextInput,
        images: ImagesInput = None,
        videos: VideosInput = None,
        batch_size: int = 8,
        dim: int | None = None,
    ) -> torch.Tensor:
        """Embed raw items (texts with `<|image_k|>` / `<|video_k|>` placeholders + PIL images, and
        videos as lists of PIL frames: per text a list of videos) in eval mode; ``dim`` as in `encode`.
        A bad argument is a `ValueError` (`ArgumentError`) naming it."""
        check_embed_arguments(texts, images, videos, batch_size)
        all_texts, all_images = normalize_batch(texts, images)
        all_videos = normalize_videos(texts, videos, len(all_texts))
        modes = [(module, module.training) for module in self.modules()]  # each submodule's own mode
        self.eval()
        out = []
        try:
            for s in range(0, len(all_texts), batch_size):
                part = slice(s, s + batch_size)
                media = {"videos": all_videos[part]} if any(all_videos[part]) else {}
                batch = self.processor(all_texts[part], all_images[part], **media)
                batch = move_batch(batch, self.device)
                out.append(self.encode(batch, dim=dim).float().cpu())
        finally:
            for module, training in modes:
                module.training = training
        return torch.cat(out)

    # ---------------------------------------------------------------------------------------- save
    @property
    def is_lora(self) -> bool:
        return hasattr(self.encoder, "peft_config")

    def save_pretrained(self, folder: str | os.PathLike, merged: bool = False) -> Path:
        """Save atomically. LoRA models write a PEFT adapter folder (or, with ``merged``, a full model
        with the adapters merged); full models write the backbone's official layout. Either way the
        processor files and ``vlm2vec.json`` (our ModelConfig) go beside them."""
        folder = Path(folder)
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
        try:
            cfg = self.cfg
            if self.is_lora and not merged:
                self.encoder.save_pretrained(str(tmp))
                kind = "adapter"
                # the adapter needs its base: record it absolute so the folder opens from any cwd
                cfg = replace(
                    cfg, path=str(Path(cfg.path).resolve()) if cfg.path else cfg.path, checkpoint=None
                )
            else:
                module = self.encoder
                if self.is_lora:
                    module = _merged_copy(self.encoder)
                self.backbone.save_model(module, str(tmp))
                kind = "merged" if self.is_lora else "full"
                cfg = replace(cfg, lora=False, checkpoint=None)
            if hasattr(self.processor, "save_pretrained"):
                self.processor.save_pretrained(str(tmp))
            meta = {"format": 1, "kind": kind, "model": asdict(cfg)}
            if kind == "adapter":  # the base it was trained on, refused under another (`base_identity`)
                meta["base"] = base_record(cfg.path)
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
            replace_dir(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder


def _saved_meta(folder: Path) -> dict[str, Any] | None:
    """The `vlm2vec.json` of a folder we saved (None for other folders), or one line naming the file."""
    file = folder / META_FILE
    if not file.is_file():
        return None
    try:
        meta = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{file}: not a readable vlm2vec model file ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("model"), dict):
        raise ModelLoadError(f"{file}: not a vlm2vec model file (no 'model' settings)")
    return meta


def apply_lora(backbone: Backbone, encoder: nn.Module, cfg: ModelConfig) -> nn.Module:
    """Wrap `encoder` in a PEFT LoRA (or DoRA) model as `cfg` says (in place, as peft does)."""
    from peft import LoraConfig, get_peft_model

    lora_cfg = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=backbone.lora_target_modules(cfg),
        use_dora=cfg.use_dora,
        init_lora_weights="gaussian" if cfg.use_dora else True,
    )
    return get_peft_model(encoder, lora_cfg)


def _merged_copy(peft_model: nn.Module) -> nn.Module:
    """A merged copy of a PEFT model, leaving the trainable adapter model untouched."""
    import copy

    return copy.deepcopy(peft_model).merge_and_unload()


__all__: Sequence[str] = [
    "EmbeddingModel",
    "apply_lora",
    "last_token_pool",
    "load_processor",
    "move_batch",
    "META_FILE",
]
