"""`vlm2vec embed`: encode the configured corpus into vector shards and an items table."""

from __future__ import annotations

from pathlib import Path

from ..config import Config
from .corpus_claims import claim_embed


def run(cfg: Config, explicit: set[str] | None = None) -> Path:
    """Embed as configured into the claimed `embed.output_dir`; returns the output folder."""
    from ..corpus.embed import run_embed
    from ..corpus.store import read_manifest
    from ..outputs import print_summary

    with claim_embed(cfg) as claim:
        claim.record()
        out = run_embed(cfg, explicit)
    if claim.lock is not None:  # the main process
        manifest = read_manifest(out)
        print_summary(
            f"embed: vectors in {out}",
            [
                ("vectors", out / "vectors-*.safetensors"),
                ("items", out / "items.parquet"),
                ("manifest", out / "manifest.json"),
            ],
            [f"{manifest.get('num_items', '?')} items", f"dim {manifest.get('dim', '?')}"],
            f"vlm2vec mine --config YOUR_TRAIN.yaml --mine.corpus_dir={out}",
        )
    return out
