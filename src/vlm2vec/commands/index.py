"""`vlm2vec index`: build a FAISS index over an embed output folder, with its recall against exact search."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from .corpus_claims import claim_index


def run(cfg: Config) -> Path:
    """Build the index as configured into the claimed `index.output_dir`; returns its folder."""
    from ..corpus.index import run_index

    with claim_index(cfg) as claim:
        claim.record()
        return run_index(cfg)
