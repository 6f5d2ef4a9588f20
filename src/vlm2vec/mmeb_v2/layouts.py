"""Finding and reading the annotation files of a local clone of a Hugging Face dataset repo.

Nothing is fetched: a task's annotations are read from a clone in one of the layouts the hub
publishes: `<config>/<split>-*.parquet` (named configs, as BEIR sets' `queries`/`corpus`/`qrels`),
`data/<split>-*.parquet` (the default config), `<config>/<split>/*.parquet` (the hub's parquet
conversion), or `<split>*.parquet` / `<split>*.jsonl` at the top of the clone. The clone's identity
(which hub repo it is a copy of) comes from its git remote when it has one, else from its folder name.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from ..errors import DataError, DataNotFoundError

_SUFFIXES = (".parquet", ".jsonl", ".json")
_REMOTE = re.compile(r"url\s*=\s*\S*?huggingface\.co/(?:datasets/)?([\w.-]+/[\w.-]+?)(?:\.git)?\s*$", re.M)


def _split_files(folder: Path, split: str) -> list[Path]:
    if not folder.is_dir():
        return []
    named = [
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix in _SUFFIXES and (p.stem == split or p.name.startswith(f"{split}-"))
    ]
    if named:
        return sorted(named)
    sub = folder / split
    return sorted(p for p in sub.glob("*") if p.suffix in _SUFFIXES) if sub.is_dir() else []


def split_files(clone: Path, config: str | None, split: str) -> list[Path]:
    """Annotation files of (`config`, `split`) in the first published layout that has them."""
    folders = [clone / config] if config else []
    folders += [clone / "data", clone] if not config else [clone / "data" / config]
    for folder in folders:
        files = _split_files(folder, split)
        if files:
            return files
    return []


def configs_with_split(clone: Path, split: str) -> list[str]:
    """Config folders of the clone that hold `split` files (for tasks that concatenate configs)."""
    if not clone.is_dir():
        return []
    return sorted(p.name for p in clone.iterdir() if p.is_dir() and _split_files(p, split))


def read_rows(files: list[Path], columns: list[str] | None = None) -> list[dict[str, Any]]:
    """Rows of parquet / JSON-lines files, in file order; a file that fails to parse is named."""
    rows: list[dict[str, Any]] = []
    for path in files:
        try:
            if path.suffix == ".parquet":
                rows += pq.read_table(path, columns=columns).to_pylist()
            else:
                with path.open(encoding="utf-8") as f:
                    rows += [json.loads(line) for line in f if line.strip()]
        except (OSError, ValueError) as exc:
            raise DataError(f"cannot read annotation file {str(path)!r}: {exc}") from exc
    return rows


def read_split(task: str, clone: Path, config: str | None, split: str) -> tuple[list[dict], list[Path]]:
    """All rows of one split of a clone; none found raises naming the task and the folders searched."""
    files = split_files(clone, config, split)
    if not files:
        raise DataNotFoundError(
            f"task {task!r}: no {split!r} annotation files (config {config or 'default'}) in {str(clone)!r}; "
            f"looked for {config or 'data'}/{split}-*.parquet, {split}/*.parquet and {split}*.jsonl"
        )
    return read_rows(files), files


def require_columns(task: str, rows: list[dict], columns: tuple[str, ...], files: list[Path]) -> None:
    """Raise naming the task, file and missing columns when the first row lacks any of `columns`."""
    missing = [c for c in columns if rows and c not in rows[0]]
    if missing:
        raise DataError(f"task {task!r}: {str(files[0])!r} lacks columns {missing}; it has {sorted(rows[0])}")


def clone_identity(clone: Path) -> str:
    """`owner/name` of the hub repo a clone was made from (git remote), else the folder's name."""
    config = clone / ".git" / "config"
    if config.is_file():
        match = _REMOTE.search(config.read_text(encoding="utf-8", errors="replace"))
        if match:
            return match.group(1)
    return clone.name
