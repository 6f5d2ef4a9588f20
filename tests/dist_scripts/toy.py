"""A toy embedding model with EmbeddingModel's forward contract, and deterministic batches.

Shared by the single-process GradCache tests, the distributed worker and the benchmark-free checks:
an embedding over `input_ids` (mean-pooled with `attention_mask`), an optional linear branch over a
float `pixel_values`, an MLP with dropout, L2-normalised output.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

VOCAB, HIDDEN, PIXELS, SEQ = 40, 16, 12, 5


class ToyEmbeddingModel(nn.Module):
    def __init__(self, dropout: float = 0.1, checkpointing: bool = False) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.pixel_proj = nn.Linear(PIXELS, HIDDEN)
        self.drop = nn.Dropout(dropout)
        self.mlp = nn.Sequential(nn.Linear(HIDDEN, 32), nn.GELU(), nn.Dropout(dropout), nn.Linear(32, HIDDEN))
        self.checkpointing = checkpointing

    def encode(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        mask = inputs["attention_mask"].unsqueeze(-1).to(self.embed.weight.dtype)
        x = self.drop(self.embed(inputs["input_ids"]))
        pooled = (x * mask).sum(1) / mask.sum(1)
        if "pixel_values" in inputs:
            pooled = pooled + self.pixel_proj(inputs["pixel_values"].to(pooled.dtype))
        if self.checkpointing and torch.is_grad_enabled():
            hidden = checkpoint(self.mlp, pooled, use_reentrant=False)
        else:
            hidden = self.mlp(pooled)
        return F.normalize(hidden, dim=-1)

    def forward(self, qry=None, tgt=None, neg=None) -> dict[str, torch.Tensor | None]:
        out = {
            "qry_reps": self.encode(qry) if qry is not None else None,
            "tgt_reps": self.encode(tgt) if tgt is not None else None,
        }
        if neg is not None:
            out["neg_reps"] = self.encode(neg)
        return out


def make_model(dropout: float = 0.1, checkpointing: bool = False, seed: int = 0) -> ToyEmbeddingModel:
    torch.manual_seed(seed)
    return ToyEmbeddingModel(dropout=dropout, checkpointing=checkpointing)


def make_batch(rows: int, seed: int, pixels: bool = True) -> dict[str, torch.Tensor]:
    """Deterministic batch: random ids, ragged attention masks, optional pixel vectors."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, SEQ + 1, (rows,), generator=g)
    batch = {
        "input_ids": torch.randint(0, VOCAB, (rows, SEQ), generator=g),
        "attention_mask": (torch.arange(SEQ)[None, :] < lengths[:, None]).long(),
    }
    if pixels:
        batch["pixel_values"] = torch.randn(rows, PIXELS, generator=g)
    return batch


def take(batch: dict[str, torch.Tensor], start: int, stop: int) -> dict[str, torch.Tensor]:
    return {k: v[start:stop] for k, v in batch.items()}
