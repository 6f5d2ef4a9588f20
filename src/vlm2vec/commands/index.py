"""`vlm2vec index`: build a FAISS index over an embed output folder, with its recall against exact search."""

from __future__ import annotations

from pathlib import Path

from ..config import Config


def run(cfg: Config) -> Path:
    """Build the index as configured; returns its folder."""
    from ..corpus.index import run_index

    return run_index(cfg)
