"""Matryoshka embeddings: the first `dim` coordinates of a rep, re-normalised, are a smaller embedding.

One helper used by `EmbeddingModel.encode(..., dim=d)`, the Matryoshka training loss and the evaluator
(`eval.dim`), so the three truncate the same way (as Qwen3-VL-Embedding's MRL dims are used: slice, then
L2-normalise).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def truncate_reps(reps: torch.Tensor, dim: int | None, key: str | None = None) -> torch.Tensor:
    """`reps[..., :dim]` L2-normalised; `dim=None` returns `reps` unchanged.

    A dim outside 1..size is a ValueError, a `ConfigError` naming `key` when the dim came from a config.
    """
    if dim is None:
        return reps
    size = reps.shape[-1]
    if isinstance(dim, bool) or not isinstance(dim, int) or not 1 <= dim <= size:
        msg = f"Matryoshka dim must be an int in 1..{size} (the embedding size), got {dim!r}"
        if key is not None:
            from .config import ConfigError

            raise ConfigError(f"{key}: {msg}")
        raise ValueError(msg)
    return F.normalize(reps[..., :dim], dim=-1)
