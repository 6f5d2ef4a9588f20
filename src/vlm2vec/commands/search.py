"""`vlm2vec search`: top-k results for query vectors, texts or images over an index or embed output folder."""

from __future__ import annotations

from pathlib import Path

from ..config import Config


def run(cfg: Config, explicit: set[str] | None = None) -> Path | None:
    """Search as configured; returns the results file on the main process (None elsewhere)."""
    from ..corpus.retrieval import run_search

    return run_search(cfg, explicit)
