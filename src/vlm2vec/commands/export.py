"""`vlm2vec export MODEL OUT --format sentence-transformers|hf`: a model folder for another library
that embeds as ours does (see docs/export.md)."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(argv: list[str] | None = None) -> int:
    """Export MODEL to OUT and print where it went."""
    from ..export import FORMATS

    parser = argparse.ArgumentParser(
        prog="vlm2vec export",
        description="Export a trained model for sentence-transformers or transformers/vLLM, atomically.",
    )
    parser.add_argument("model", type=Path, help="a training run, a saved model folder, or an adapter folder")
    parser.add_argument(
        "out", type=Path, help="the folder to write (refused if it exists, unless --overwrite)"
    )
    parser.add_argument("--format", required=True, help=f"target library: {' | '.join(FORMATS)}")
    parser.add_argument("--dtype", default="float32", help="weights dtype: float32 | bfloat16 | float16")
    parser.add_argument(
        "--base", help="local folder of the base model of an adapter (default: the recorded one)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUT if it exists")
    parser.add_argument(
        "--results", type=Path, help="an eval output folder whose summary.md goes into the card"
    )
    parser.add_argument("--query-prompt", help="named prompt 'query' (default: per prompt format, see docs)")
    parser.add_argument("--document-prompt", help="named prompt 'document' (default: per prompt format)")
    args = parser.parse_args(argv)
    from ..export import export_model_folder

    out = export_model_folder(
        args.model,
        args.out,
        target=args.format,
        dtype=args.dtype,
        base=args.base,
        overwrite=args.overwrite,
        results=args.results,
        query_prompt=args.query_prompt,
        document_prompt=args.document_prompt,
    )
    print(f"exported {args.model} to {out} ({args.format}, {args.dtype})")
    return 0
