"""Read one MMEB-eval dataset folder: `<data_dir>/<Dataset>/test-*.parquet` + images under an image root.

Columns: `qry_text`, `qry_img_path` (str, empty or null = no image), `tgt_text` (list) and
`tgt_img_path` (list, parallel to tgt_text). Candidate 0 of every query is its positive.

Image paths are relative to an image root. With `image_root` unset we try `<data_dir>/images`,
`<data_dir>/eval_images` and `<data_dir>` (the layouts an unzipped `images.zip` leaves) and keep the
first one holding the dataset's first image. Every referenced image is checked up front, so a missing
file fails before any encoding with its dataset, row, column and path in the message.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from ..backbones.base import check_placeholders
from ..errors import UserError

COLUMNS = ("qry_text", "qry_img_path", "tgt_text", "tgt_img_path")
DEFAULT_IMAGE_SUBDIRS = ("images", "eval_images", "")


class DatasetError(UserError, ValueError):
    """Bad or missing evaluation data; the message names the dataset, file, row or column."""


class MissingDatasetError(DatasetError):
    """The dataset's folder (or its parquet files) does not exist."""


@dataclass(frozen=True)
class EvalExample:
    """One query and its own candidate list; image paths are relative ('' = no image)."""

    qry_text: str
    qry_img: str
    tgt_texts: tuple[str, ...]
    tgt_imgs: tuple[str, ...]


@dataclass
class EvalDataset:
    name: str
    examples: list[EvalExample]
    image_root: Path
    files: list[Path]


def parquet_files(data_dir: str | Path, name: str) -> list[Path]:
    """The parquet files of dataset `name` (test split preferred); empty when the folder is absent."""
    folder = Path(data_dir) / name
    if not folder.is_dir():
        return []
    return sorted(folder.rglob("test*.parquet")) or sorted(folder.rglob("*.parquet"))


def find_datasets(data_dir: str | Path) -> list[str]:
    """Names of the folders under `data_dir` that hold parquet files (image folders are skipped)."""
    root = Path(data_dir)
    if not root.is_dir():
        raise MissingDatasetError(f"eval data_dir {str(root)!r} does not exist")
    skip = {d for d in DEFAULT_IMAGE_SUBDIRS if d}
    return sorted(
        p.name for p in root.iterdir() if p.is_dir() and p.name not in skip and parquet_files(root, p.name)
    )


def _as_path(value: object) -> str:
    return "" if value is None else str(value)


def _check_placeholders(name: str, row: int, column: str, text: str, has_image: bool) -> None:
    """The processors' own placeholder check, run up front so a bad row fails before any encoding."""
    try:
        check_placeholders(text, int(has_image))
    except ValueError as exc:
        raise DatasetError(f"dataset {name!r}, row {row}, column {column!r}: {exc}") from None


def _read_examples(name: str, files: list[Path]) -> list[EvalExample]:
    examples: list[EvalExample] = []
    for file in files:
        schema_names = pq.read_schema(file).names
        missing = [c for c in COLUMNS if c not in schema_names]
        if missing:
            raise DatasetError(
                f"dataset {name!r}, file {str(file)!r}: missing column(s) {missing}; found {schema_names}"
            )
        table = pq.read_table(file, columns=list(COLUMNS)).to_pydict()
        for i in range(len(table["qry_text"])):
            row = len(examples)
            texts, imgs = table["tgt_text"][i], table["tgt_img_path"][i]
            if not isinstance(texts, list) or not isinstance(imgs, list):
                raise DatasetError(f"dataset {name!r}, row {row}: tgt_text and tgt_img_path must be lists")
            if len(texts) != len(imgs) or not texts:
                raise DatasetError(
                    f"dataset {name!r}, row {row}: tgt_text has {len(texts)} entries, tgt_img_path {len(imgs)}; "
                    "they must be equal and non-zero"
                )
            qry_text = _as_path(table["qry_text"][i])
            qry_img = _as_path(table["qry_img_path"][i])
            tgt_texts = tuple(_as_path(t) for t in texts)
            tgt_imgs = tuple(_as_path(p) for p in imgs)
            _check_placeholders(name, row, "qry_text", qry_text, bool(qry_img))
            for j, (t, p) in enumerate(zip(tgt_texts, tgt_imgs)):
                _check_placeholders(name, row, f"tgt_text[{j}]", t, bool(p))
            examples.append(EvalExample(qry_text, qry_img, tgt_texts, tgt_imgs))
    return examples


def resolve_image_root(
    name: str, data_dir: str | Path, image_root: str | Path | None, examples: list[EvalExample]
) -> Path:
    """The configured root, or the first default root that holds the dataset's first image."""
    if image_root is not None:
        return Path(image_root)
    candidates = [Path(data_dir) / sub if sub else Path(data_dir) for sub in DEFAULT_IMAGE_SUBDIRS]
    first = next((p for ex in examples for p in (ex.qry_img, *ex.tgt_imgs) if p), None)
    if first is None:
        return candidates[-1]
    for root in candidates:
        if (root / first).is_file():
            return root
    raise DatasetError(
        f"dataset {name!r}: image {first!r} not found under any of {[str(c) for c in candidates]}; "
        "set eval.image_root"
    )


def check_images(ds: EvalDataset) -> None:
    """Fail on the first referenced image that does not exist, naming dataset, row, column and path."""
    seen: set[str] = set()
    for row, ex in enumerate(ds.examples):
        for column, path in (
            ("qry_img_path", ex.qry_img),
            *((f"tgt_img_path[{j}]", p) for j, p in enumerate(ex.tgt_imgs)),
        ):
            if not path or path in seen:
                continue
            if not (ds.image_root / path).is_file():
                raise DatasetError(
                    f"dataset {ds.name!r}, row {row}, column {column!r}: image {path!r} not found under "
                    f"{str(ds.image_root)!r}"
                )
            seen.add(path)


def load_eval_dataset(
    data_dir: str | Path,
    name: str,
    *,
    image_root: str | Path | None = None,
    max_queries: int | None = None,
    check: bool = True,
) -> EvalDataset:
    """Read, validate and (optionally) truncate one dataset; raises `MissingDatasetError` if absent."""
    files = parquet_files(data_dir, name)
    if not files:
        raise MissingDatasetError(f"dataset {name!r}: no parquet files under {str(Path(data_dir) / name)!r}")
    examples = _read_examples(name, files)
    if not examples:
        raise DatasetError(f"dataset {name!r}: no rows in {[str(f) for f in files]}")
    if max_queries is not None:
        examples = examples[:max_queries]
    ds = EvalDataset(name, examples, resolve_image_root(name, data_dir, image_root, examples), files)
    if check:
        check_images(ds)
    return ds
