"""A deterministic stand-in encoder with EmbeddingModel's `processor` + `encode` contract (eval tests).

Features: a mean of hashed word embeddings plus the image's (and a video's frames') channel means,
projected and normalised.
It counts the rows it encodes and can raise after a given number of `encode` calls, to simulate a
crash in the middle of an evaluation.
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

VOCAB = 997


def _token_id(word: str) -> int:
    return 1 + int(hashlib.md5(word.encode()).hexdigest(), 16) % (VOCAB - 1)


class FakeProcessor:
    """Word ids + each row's image (and videos' frames') channel means; an image takes one token
    (`num_image_tokens`). `videos`, as the backbone processors take it: per row a list of videos, each
    a list of frames."""

    def num_image_tokens(self, image) -> int:
        return 1

    def __call__(self, texts, images=None, max_length=None, videos=None):
        rows = [[_token_id(w) for w in t.split()][: max_length or None] or [0] for t in texts]
        width = max(len(r) for r in rows)
        ids = torch.zeros(len(rows), width, dtype=torch.long)
        mask = torch.zeros(len(rows), width, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        pixels = torch.zeros(len(rows), 3)
        for i, imgs in enumerate(images or [[] for _ in rows]):
            if imgs:
                pixels[i] = torch.from_numpy(np.asarray(imgs[0], dtype=np.float32).mean(axis=(0, 1)) / 255.0)
        for i, row_videos in enumerate(videos or [[] for _ in rows]):
            for frames in (
                row_videos or []
            ):  # a video: the mean colour of its frames, added to the row's image part
                means = [np.asarray(f, dtype=np.float32).mean(axis=(0, 1)) / 255.0 for f in frames]
                pixels[i] += torch.from_numpy(np.mean(means, axis=0))
        return {"input_ids": ids, "attention_mask": mask, "pixel_means": pixels, "texts": list(texts)}


class FakeEncoder(nn.Module):
    def __init__(self, dim: int = 16, seed: int = 0, fail_after_calls: int | None = None) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        self.embed = nn.Embedding(VOCAB, dim)
        self.proj = nn.Linear(dim + 3, dim)
        with torch.no_grad():
            self.embed.weight.copy_(torch.randn(VOCAB, dim, generator=gen))
            self.proj.weight.copy_(torch.randn(dim, dim + 3, generator=gen))
            self.proj.bias.zero_()
        self.calls = 0
        self.rows_encoded = 0
        self.encoded_texts: list[str] = []
        self.fail_after_calls = fail_after_calls
        self.processor = FakeProcessor()

    def encode(self, inputs):
        if self.fail_after_calls is not None and self.calls >= self.fail_after_calls:
            raise RuntimeError("injected failure")
        self.calls += 1
        mask = inputs["attention_mask"].float().unsqueeze(-1)
        bag = (self.embed(inputs["input_ids"]) * mask).sum(1) / mask.sum(1)
        reps = self.proj(torch.cat([bag, inputs["pixel_means"]], dim=-1))
        self.rows_encoded += reps.shape[0]
        self.encoded_texts += inputs["texts"]
        return F.normalize(reps, dim=-1)
