"""`vlm2vec compare RUN_A RUN_B [...] [--output-dir DIR]`: per-dataset deltas of eval result folders."""

from __future__ import annotations

import argparse
from pathlib import Path


def run(argv: list[str] | None = None) -> int:
    """Write the comparison of the given result folders and print its table."""
    parser = argparse.ArgumentParser(
        prog="vlm2vec compare", description="Per-dataset MMEB deltas of two or more result folders."
    )
    parser.add_argument(
        "runs",
        nargs="+",
        type=Path,
        help="eval output folders (each holds summary.json); the first is the baseline",
    )
    parser.add_argument(
        "--output-dir",
        "-o",
        type=Path,
        default=Path("compare"),
        help="where to write compare.md/.csv/.png (default: ./compare)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="write over an output folder that holds another comparison (or another command's output)",
    )
    args = parser.parse_args(argv)
    from ..evaluation.compare import run_compare
    from ..outputs import claim_output

    runs = [str(p.resolve()) for p in args.runs]
    with claim_output(
        args.output_dir, "compare", {"runs": runs}, key="--output-dir", overwrite=args.overwrite
    ) as claim:
        claim.record()
        md = run_compare(args.runs, args.output_dir)
    print(md.read_text(), end="")
    print(
        f"wrote {md}, {md.with_suffix('.csv')}, {md.with_name('compare_groups.csv')}, {md.with_suffix('.png')}"
    )
    return 0
