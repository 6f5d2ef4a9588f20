"""Readers of the two visual-document training sets of VLM2Vec-V2 in their hub layouts.

`vidore/colpali_train_set` and `openbmb/VisRAG-Ret-Train-In-domain-data` (and the VisRAG synthetic set
of the paper, same layout) are parquet shards `data/train-*.parquet` whose `image` column holds the
page. Pages are written once to content-named files (`page_files`); the rows become a `PairSource`
with the reference's texts (`v2_prompts`). ColPali rows train page + question -> answer, as the
released recipe does; `retrieval` turns them into question -> page with the MMEB-V2 visdoc strings.
"""

from __future__ import annotations

import os
from pathlib import Path

import pyarrow as pa

from ..config import DataConfig, choices_of
from ..errors import DataNotFoundError
from . import v2_prompts as prompts
from .page_files import PAGE_COLUMN, read_page_table
from .records import ColumnMap, PairSource

_COLUMNS = ColumnMap(
    qry_text="qry", pos_text="pos_text", qry_image="qry_image_path", pos_image="pos_image_path"
)


def train_shards(clone: str | os.PathLike, source: str) -> list[Path]:
    """The `data/train-*.parquet` shards of a hub clone, in name order."""
    shards = sorted(Path(clone).glob("data/train-*.parquet"))
    if not shards:
        raise DataNotFoundError(f"source '{source}': no data/train-*.parquet under {clone}")
    return shards


def _pair_source(
    name: str, columns: dict[str, list], page_dir: Path, weight: float, origin: str
) -> PairSource:
    table = pa.table({k: pa.array(v, pa.string()) for k, v in columns.items()})
    return PairSource(name, table, _COLUMNS, image_root=page_dir, weight=weight, origin=origin)


def read_colpali(
    clone: str | os.PathLike,
    page_dir: Path,
    *,
    name: str = "colpali_train_set",
    direction: str = "reference",
    weight: float = 1.0,
    skip_bad_rows: bool = False,
) -> PairSource:
    """ColPali train rows: `reference`: `<|image_1|> {query}` + page -> `{answer}` (the row's own
    `prompt` column is ignored, as the reference does); `retrieval`: query -> page."""
    directions = choices_of(DataConfig, "colpali_direction")
    if direction not in directions:
        raise ValueError(f"direction must be one of {directions}, got {direction!r}")
    table = read_page_table(
        name, train_shards(clone, name), ["query", "answer"], page_dir, skip_bad_rows=skip_bad_rows
    )
    queries = [q or "" for q in table.column("query").to_pylist()]
    pages = table.column(PAGE_COLUMN).to_pylist()
    nothing = [None] * len(pages)
    if direction == "reference":
        columns = {
            "qry": [prompts.COLPALI_REFERENCE_QUERY.format(query=q) for q in queries],
            "qry_image_path": pages,
            "pos_text": [a or "" for a in table.column("answer").to_pylist()],
            "pos_image_path": nothing,
        }
    else:
        columns = {
            "qry": [prompts.COLPALI_RETRIEVAL_QUERY.format(query=q) for q in queries],
            "qry_image_path": nothing,
            "pos_text": [prompts.COLPALI_RETRIEVAL_TARGET] * len(pages),
            "pos_image_path": pages,
        }
    return _pair_source(name, columns, page_dir, weight, str(clone))


def read_visrag(
    clone: str | os.PathLike,
    page_dir: Path,
    *,
    name: str = "visrag-indomain",
    weight: float = 1.0,
    skip_bad_rows: bool = False,
) -> PairSource:
    """VisRAG rows: `{prompt of source} {query} ` -> `{target prompt}  <|image_1|>` + page."""
    table = read_page_table(
        name, train_shards(clone, name), ["query", "source"], page_dir, skip_bad_rows=skip_bad_rows
    )
    texts = [
        prompts.visrag_texts(s or "", q or "")
        for q, s in zip(table.column("query").to_pylist(), table.column("source").to_pylist())
    ]
    pages = table.column(PAGE_COLUMN).to_pylist()
    columns = {
        "qry": [q for q, _ in texts],
        "qry_image_path": [None] * len(pages),
        "pos_text": [t for _, t in texts],
        "pos_image_path": pages,
    }
    return _pair_source(name, columns, page_dir, weight, str(clone))
