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

from .backbones import Backbone, detect_backbone, get_backbone
from .backbones.base import ImagesInput, TextInput, normalize_batch
from .config import ModelConfig, from_dict
from .files import replace_dir
from .matryoshka import truncate_reps

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
    """The backbone processor for a model config (reads tokenizer and image settings from `cfg.path`)."""
    name = cfg.backbone or detect_backbone(cfg.path)
    path = cfg.path
    if cfg.checkpoint and _has_processor_files(Path(cfg.checkpoint)):
        path = cfg.checkpoint
    return get_backbone(name).load_processor(str(path), cfg)


def _has_processor_files(folder: Path) -> bool:
    return any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json"))


def _is_adapter(folder: Path) -> bool:
    return (folder / "adapter_config.json").is_file()


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

        ``cfg.checkpoint`` may be a PEFT adapter folder (applied over the base) or a full model folder
        in the backbone's official layout (used instead of the base weights).
        """
        if not cfg.path:
            raise ValueError("model.path must name a local model folder (no hub downloads)")
        if not Path(cfg.path).is_dir():
            raise FileNotFoundError(f"model.path {cfg.path!r} is not a folder")
        name = cfg.backbone or detect_backbone(cfg.path)
        backbone = get_backbone(name)
        ckpt = Path(cfg.checkpoint) if cfg.checkpoint else None
        if ckpt is not None and not ckpt.is_dir():
            raise FileNotFoundError(f"model.checkpoint {cfg.checkpoint!r} is not a folder")
        weights = str(ckpt) if ckpt is not None and not _is_adapter(ckpt) else cfg.path
        encoder = backbone.load_model(weights, cfg)
        if ckpt is not None and _is_adapter(ckpt):
            from peft import PeftModel

            encoder = PeftModel.from_pretrained(encoder, str(ckpt), is_trainable=cfg.lora)
        elif cfg.lora:
            encoder = apply_lora(backbone, encoder, cfg)
        return cls(backbone, encoder, load_processor(cfg), cfg)

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike, **overrides: Any) -> EmbeddingModel:
        """Open a folder written by ``save_pretrained`` (full, merged or adapter) or a base model folder.

        Keyword arguments override fields of the stored ModelConfig (e.g. ``dtype="bfloat16"``).
        """
        folder = Path(folder)
        meta_file = folder / META_FILE
        if meta_file.is_file():
            meta = json.loads(meta_file.read_text())
            cfg = from_dict(ModelConfig, meta["model"], prefix="model")
            if meta.get("kind") == "adapter":
                if not cfg.path or not Path(cfg.path).is_dir():
                    raise FileNotFoundError(
                        f"{folder} is a LoRA adapter over base model {cfg.path!r}, which is not a folder here; "
                        "pass path=<local base folder>"
                    )
                cfg = replace(cfg, checkpoint=str(folder))
            else:
                cfg = replace(cfg, path=str(folder), checkpoint=None, lora=False)
        elif _is_adapter(folder):
            base = json.loads((folder / "adapter_config.json").read_text()).get("base_model_name_or_path")
            cfg = ModelConfig(backbone="", path=base, checkpoint=str(folder))
        else:
            name = detect_backbone(folder)
            cfg = ModelConfig(
                backbone=name, path=str(folder), **get_backbone(name).folder_defaults(str(folder))
            )
        cfg = replace(cfg, **overrides)
        if not cfg.backbone:
            cfg = replace(cfg, backbone=detect_backbone(cfg.path))
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
        self, inputs: Mapping[str, torch.Tensor], chunk_size: int
    ) -> list[dict[str, torch.Tensor]]:
        """Cut a processed batch into row chunks (images follow their rows); used by GradCache."""
        return self.backbone.split_batch(inputs, chunk_size)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @torch.inference_mode()
    def embed(
        self, texts: TextInput, images: ImagesInput = None, batch_size: int = 8, dim: int | None = None
    ) -> torch.Tensor:
        """Embed raw items (texts with `<|image_k|>` placeholders + PIL images) in eval mode; ``dim`` as
        in `encode`."""
        all_texts, all_images = normalize_batch(texts, images)
        was_training = self.training
        self.eval()
        out = []
        try:
            for s in range(0, len(all_texts), batch_size):
                batch = self.processor(all_texts[s : s + batch_size], all_images[s : s + batch_size])
                batch = move_batch(batch, self.device)
                out.append(self.encode(batch, dim=dim).float().cpu())
        finally:
            self.train(was_training)
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
            (tmp / META_FILE).write_text(json.dumps(meta, indent=2))
            replace_dir(tmp, folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return folder


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
