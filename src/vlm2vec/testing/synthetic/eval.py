"""MMEB-eval-like folders: `<root>/<Dataset>/test-00000-of-00001.parquet`, images under
`<root>/images/<Dataset>/`, paths relative to `<root>/images` (as in MMEB-eval's images.zip)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pyarrow as pa

from .examples import (
    BUILDERS,
    QUERY_TEMPLATES,
    TARGET_TEMPLATES,
    ImageStore,
    check_kinds,
    check_positive,
    pick_negatives,
    seeded_rng,
    target_text,
    write_parquet,
)
from .images import COLORS, COUNT_WORDS, SHAPES, WORDS
from .kinds import DEFAULT_EVAL_DATASETS

EVAL_COLUMNS: tuple[str, ...] = ("qry_text", "qry_img_path", "tgt_text", "tgt_img_path")

# Eval kinds whose negatives are chosen hard-first (same scene / same answer type).
_HARD_EVAL_KINDS = {"vqa", "grounding"}
# Kinds whose candidates come from a fixed vocabulary cap num_candidates (classes; answers).
_MAX_CANDIDATES = {
    "classification": len(COLORS) * len(SHAPES),
    "vqa": len(COLORS) + len(SHAPES) + len(COUNT_WORDS) + len(WORDS),
}


def write_synthetic_mmeb_eval(
    root: str | Path,
    *,
    datasets: Mapping[str, str] | None = None,
    num_queries: int = 20,
    num_candidates: int = 10,
    seed: int = 1,
) -> Path:
    """Write an MMEB-eval-like folder at `root` and return `root`; the image root is `root/images`.

    `datasets` maps dataset name -> kind (default `DEFAULT_EVAL_DATASETS`; `MMEB_EVAL_KINDS` has all
    36). Candidate 0 is the positive; candidates within a query are distinct and drawn from a pool
    shared by all queries (a classification dataset has `num_candidates` classes, all listed for
    every query), so distinct candidates are far fewer than query x candidate slots.
    """
    datasets = check_kinds(DEFAULT_EVAL_DATASETS if datasets is None else datasets, "datasets")
    check_positive(num_queries, "num_queries", 1)
    check_positive(num_candidates, "num_candidates", 2)
    for name, kind in datasets.items():
        if num_candidates > _MAX_CANDIDATES.get(kind, num_candidates):
            raise ValueError(
                f"{name!r} ({kind}) has only {_MAX_CANDIDATES[kind]} distinct candidates (classes or "
                f"answers), num_candidates={num_candidates}"
            )
    root = Path(root)
    schema = pa.schema(
        [
            ("qry_text", pa.string()),
            ("qry_img_path", pa.string()),
            ("tgt_text", pa.list_(pa.string())),
            ("tgt_img_path", pa.list_(pa.string())),
        ]
    )
    for name, kind in datasets.items():
        rng = seeded_rng(seed, "eval", name)
        store = ImageStore(root / "images", name, "q", "c")
        num_classes = num_candidates if kind == "classification" else None
        examples, pool = BUILDERS[kind](rng, store, num_queries, num_candidates, num_classes)
        # MMEB-eval writes "<|image_1|> Represent ..." with a space where train has a newline.
        query_template = QUERY_TEMPLATES[kind][0].replace("\n", " ")
        target_template = TARGET_TEMPLATES[kind][0].replace("\n", " ") if kind in TARGET_TEMPLATES else None
        columns: dict[str, list] = {c: [] for c in EVAL_COLUMNS}
        for ex in examples:
            negatives = pick_negatives(rng, ex.pos, pool, num_candidates - 1, hard=kind in _HARD_EVAL_KINDS)
            candidates = [ex.pos, *negatives]
            columns["qry_text"].append(query_template.format(ex.content))
            columns["qry_img_path"].append(ex.image)
            columns["tgt_text"].append([target_text(c, target_template) for c in candidates])
            columns["tgt_img_path"].append([c.image for c in candidates])
        write_parquet(root / name / "test-00000-of-00001.parquet", columns, schema)
    return root
