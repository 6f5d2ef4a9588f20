"""The output claims of `vlm2vec embed`, `mine`, `index` and `search`: what makes a re-run the same job (its model
settings, its corpus or training data, its settings), so that a re-run reuses the folder's cache and a
different job is refused instead of replacing the earlier vectors or mined set (see
`outputs.claim_output`). Only where and how fast to write is left out."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from ..config import Config
from ..outputs import OutputClaim, claim_output, digest

#: settings that change where or how fast the work is done, not its result
_NOT_IDENTITY = {
    "output_dir",
    "cache_dir",
    "batch_size",
    "num_workers",
    "chunk_items",
    "shard_rows",
    "device",
    "query_block",
    "corpus_block",
}


def _settings(section: Any) -> dict[str, Any]:
    return {k: v for k, v in dataclasses.asdict(section).items() if k not in _NOT_IDENTITY}


def _model(cfg: Config) -> str:
    model = dataclasses.asdict(cfg.model)
    if model.get("path"):
        model["path"] = os.path.abspath(model["path"])
    return digest(model)


def _main() -> bool:
    return os.environ.get("RANK", "0") == "0"


def claim_embed(cfg: Config) -> OutputClaim:
    """Claim `embed.output_dir` for this model and corpus."""
    out = Path(cfg.embed.output_dir)
    corpus = {"embed": _settings(cfg.embed)}
    if cfg.embed.source == "train":
        corpus["data"] = _settings(cfg.data)
    return claim_output(
        out,
        "embed",
        {"model": _model(cfg), "corpus": digest(corpus)},
        details={"model": cfg.model.path, "corpus": cfg.embed.path or cfg.data.mmeb_train_dir},
        key="embed.output_dir",
        main=_main(),
        continue_hint=f"the encoded items are cached in {out}; run the same command again to continue",
    )


def claim_mine(cfg: Config) -> OutputClaim:
    """Claim `mine.output_dir` for this model, training data and mining settings."""
    out = Path(cfg.mine.output_dir)
    settings = {"mine": _settings(cfg.mine), "embed": _settings(cfg.embed)}
    return claim_output(
        out,
        "mine",
        {"model": _model(cfg), "data": digest(_settings(cfg.data)), "settings": digest(settings)},
        details={"model": cfg.model.path, "data": cfg.data.mmeb_train_dir},
        key="mine.output_dir",
        main=_main(),
        continue_hint=f"the encoded queries and targets are cached in {out / 'embeddings'}; run the same command again to continue",
    )


def claim_index(cfg: Config) -> OutputClaim:
    """Claim `index.output_dir` for this vector folder and index settings (a rebuild replaces its own
    parts; another index's folder is refused instead)."""
    out = Path(cfg.index.output_dir)
    corpus = os.path.abspath(cfg.index.corpus_dir) if cfg.index.corpus_dir else None
    return claim_output(
        out,
        "index",
        {"corpus": corpus, "settings": digest(_settings(cfg.index))},
        details={"corpus": cfg.index.corpus_dir},
        key="index.output_dir",
        main=_main(),
        continue_hint=f"the index in {out} is written at the end; run the same command again to build it",
    )


def claim_search(cfg: Config) -> OutputClaim:
    """Claim `search.output_dir` for this model, target and queries (the same search again rewrites its
    results; another search's folder is refused instead)."""
    out = Path(cfg.search.output_dir)
    return claim_output(
        out,
        "search",
        {"model": _model(cfg), "search": digest(_settings(cfg.search))},
        details={"target": cfg.search.target, "queries": cfg.search.queries},
        key="search.output_dir",
        main=_main(),
        continue_hint=f"the encoded queries are cached in {out}; run the same command again to continue",
    )


__all__ = ["claim_embed", "claim_index", "claim_mine", "claim_search"]
