"""MMEB-train-like folders: `<root>/<Subset>/<split>-00000-of-00001.parquet`, images under
`<root>/images/<Subset>/`, paths relative to `<root>` (the default image root)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
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
from .kinds import DEFAULT_TRAIN_SUBSETS

TRAIN_SPLITS: tuple[str, ...] = ("original", "diverse_instruction")
TRAIN_COLUMNS: tuple[str, ...] = tuple(
    "qry qry_image_path pos_text pos_image_path neg_text neg_image_path".split()
)


def write_synthetic_mmeb_train(
    root: str | Path,
    *,
    subsets: Mapping[str, str] | None = None,
    rows_per_subset: int = 64,
    splits: Iterable[str] = TRAIN_SPLITS,
    seed: int = 0,
) -> Path:
    """Write an MMEB-train-like folder at `root` and return `root` (also the image root).

    `subsets` maps subset name -> kind (see `KINDS`; default `DEFAULT_TRAIN_SUBSETS`). Every row has a
    hard negative. `diverse_instruction` rows hold the same queries, targets and negatives as
    `original` with other instruction wordings. Existing files of the same names are replaced.
    """
    subsets = check_kinds(DEFAULT_TRAIN_SUBSETS if subsets is None else subsets, "subsets")
    check_positive(rows_per_subset, "rows_per_subset", 1)
    splits = list(splits)
    if not splits or len(set(splits)) != len(splits) or not set(splits) <= set(TRAIN_SPLITS):
        raise ValueError(f"splits must be distinct names from {TRAIN_SPLITS}, got {splits!r}")
    root = Path(root)
    schema = pa.schema([(c, pa.string()) for c in TRAIN_COLUMNS])
    for subset, kind in subsets.items():
        rng = seeded_rng(seed, "train", subset)
        store = ImageStore(root, f"images/{subset}", "img", "tgt")
        examples, pool = BUILDERS[kind](rng, store, rows_per_subset, 2, None)
        negatives = [pick_negatives(rng, ex.pos, pool, 1, hard=True)[0] for ex in examples]
        for split in splits:
            wording = seeded_rng(seed, "train-wording", subset, split)
            columns: dict[str, list[str]] = {c: [] for c in TRAIN_COLUMNS}
            for ex, neg in zip(examples, negatives):
                q_index, t_index = 0, 0
                if split != "original":
                    q_index = wording.randrange(1, len(QUERY_TEMPLATES[kind]))
                    t_index = wording.randrange(1, len(TARGET_TEMPLATES.get(kind, ("", ""))))
                target_template = TARGET_TEMPLATES[kind][t_index] if kind in TARGET_TEMPLATES else None
                columns["qry"].append(QUERY_TEMPLATES[kind][q_index].format(ex.content))
                columns["qry_image_path"].append(ex.image)
                columns["pos_text"].append(target_text(ex.pos, target_template))
                columns["pos_image_path"].append(ex.pos.image)
                columns["neg_text"].append(target_text(neg, target_template))
                columns["neg_image_path"].append(neg.image)
            write_parquet(root / subset / f"{split}-00000-of-00001.parquet", columns, schema)
    return root
