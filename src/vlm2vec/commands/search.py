"""`vlm2vec search`: top-k results for query vectors, texts or images over an index or embed output folder."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from .corpus_claims import claim_search


def run(cfg: Config, explicit: set[str] | None = None) -> Path | None:
    """Search as configured into the claimed `search.output_dir`; returns the results file on the main process (None elsewhere)."""
    from ..corpus.retrieval import run_search

    with claim_search(cfg) as claim:
        claim.record()
        return run_search(cfg, explicit)
