"""Tiny randomly initialised checkpoints of the real architectures, written in the official layouts.

Tests and the demo cannot download weights, so they build a model folder here and then open it with
the real loading code (`EmbeddingModel.from_config`). Every `vlm2vec.testing.tiny_*` module offers its
backbones' builders in a `TINY_BUILDERS` table (backbone name -> writer); they are found by their
module name, so a new backbone's tiny module needs no edit here.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..config import ModelConfig


def tiny_builders() -> dict[str, Callable[..., Path]]:
    """Backbone name -> function(folder, **overrides) writing its tiny checkpoint, from every tiny module."""
    builders: dict[str, Callable[..., Path]] = {}
    for module in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if module.name.startswith("tiny_"):
            builders.update(importlib.import_module(f"{__package__}.{module.name}").TINY_BUILDERS)
    return builders


def make_tiny_checkpoint(backbone: str, folder: str | Path, **overrides: Any) -> Path:
    """Write a tiny randomly initialised checkpoint of `backbone` into `folder` (official layout)."""
    builders = tiny_builders()
    if backbone not in builders:
        raise KeyError(f"no tiny builder for backbone '{backbone}'; have {sorted(builders)}")
    return builders[backbone](folder, **overrides)


def tiny_model_config(backbone: str, folder: str | Path, **overrides: Any) -> ModelConfig:
    """A ModelConfig that opens the tiny folder in fp32 with settings suited to tiny models."""
    cfg = ModelConfig(backbone=backbone, path=str(folder), dtype="float32", max_length=64)
    if backbone == "phi3_v":
        cfg.num_crops = 4
    if backbone == "llava_next":
        cfg.image_resolution = "native"  # tiny tiles: let anyres pick the grid from the image's own size
    for key, value in overrides.items():
        if not hasattr(cfg, key):
            raise KeyError(f"ModelConfig has no field '{key}'")
        setattr(cfg, key, value)
    return cfg
