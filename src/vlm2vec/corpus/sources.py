"""What `embed` and `mine` encode: distinct items (the evaluator's `Item`) with where each came from.

A corpus is built from the training data of the `data` section (one side of every row: queries,
positives or hard negatives), from a folder of images (a sub-folder's name is the class label, as in
an ImageFolder), or from a text file. Items are deduplicated by content (text + image path) exactly as
the evaluator does, so each is encoded once and the evaluator's cache can hold it.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import ConfigError, DataConfig, EmbedConfig, choices_of
from ..data import BadRowError, PairSource, Side, build_sources
from ..data.mmeb_train import subset_files
from ..data.pairs import read_table
from ..encoding.items import Item, ItemSource, item_key
from ..errors import UserError
from ..evaluation.mmeb_eval import file_stamp
from ..text_files import utf8_lines

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")
_PLACEHOLDER = re.compile(r"<\|image_\d+\|>")


class CorpusError(UserError, ValueError):
    """A corpus cannot be built or read as asked; the message names the file, row or key."""


@dataclass
class Corpus:
    """Distinct items in first-seen order, with the first place each was seen and its class label."""

    name: str
    side: str
    image_root: Path
    items: list[Item] = field(default_factory=list)
    source: list[str] = field(default_factory=list)
    row: list[int] = field(default_factory=list)
    label: list[str | None] = field(default_factory=list)
    count: list[int] = field(default_factory=list)
    members: dict[str, dict[int, None]] = field(default_factory=dict)  # source -> its items (ordered set)
    _index: dict[Item, int] = field(default_factory=dict, repr=False)

    def add(self, item: Item, source: str, row: int, label: str | None = None) -> int:
        idx = self._index.get(item)
        if idx is None:
            idx = self._index[item] = len(self.items)
            self.items.append(item)
            self.source.append(source)
            self.row.append(row)
            self.label.append(label)
            self.count.append(0)
        self.count[idx] += 1
        self.members.setdefault(source, {})[idx] = None
        return idx

    def __len__(self) -> int:
        return len(self.items)

    @property
    def keys(self) -> list[str]:
        return [item_key(it) for it in self.items]

    @property
    def corpus_id(self) -> str:
        """Hash of the image root and the items in order: the cache folder of this corpus (same items
        under the same root -> same folder; two image folders with equal relative names never share)."""
        root = str(self.image_root.resolve())
        return hashlib.sha1("\n".join([root, *self.keys]).encode()).hexdigest()[:16]

    def describe(self, i: int) -> str:
        """Where item `i` was first seen, for error messages: the training source and row (from 1)
        and the side, the line of a text file, or the file of an image folder."""
        if self.side == "texts":
            return f"{self.name}: line {self.row[i]}"
        if self.side == "images":
            return f"image folder {self.name}"
        side = {"qry": "query", "tgt": "target", "neg": "hard negative"}.get(self.side, self.side)
        return f"source {self.source[i]!r} row {self.row[i] + 1}, {side} image"

    def item_source(self) -> CorpusItemSource:
        """The encoder's `ItemSource` for this corpus: its errors name source, row and side."""
        return CorpusItemSource(self.name, corpus=self)

    def image_stamps(self) -> dict[str, str]:
        """Image path -> "size:mtime_ns": a replaced image file gives new cache keys (as in evaluation)."""
        stamps: dict[str, str] = {}
        for item in self.items:
            if item.image and item.image not in stamps:
                stamps[item.image] = file_stamp(self.image_root / item.image) or "missing"
        return stamps

    def table(self) -> pa.Table:
        """The metadata table written beside the vectors (row i <-> vector i)."""
        return pa.table(
            {
                "row": pa.array(np.arange(len(self.items)), pa.int64()),
                "key": self.keys,
                "text": [it.text for it in self.items],
                "image": [it.image for it in self.items],
                "label": pa.array(self.label, pa.string()),
                "source": self.source,
                "source_row": pa.array(self.row, pa.int64()),
                "count": pa.array(self.count, pa.int64()),
            }
        )


@dataclass
class CorpusItemSource(ItemSource):
    """`ItemSource` over a `Corpus`: an unreadable image names where the item came from."""

    corpus: Corpus | None = None

    def describe(self, i: int) -> str:
        return self.corpus.describe(i) if self.corpus is not None else super().describe(i)


def side_item(side: Side, source: str, row: int, what: str) -> Item:
    """A record side as an `Item` (the evaluator's unit: one text, at most one image)."""
    if len(side.images) > 1:
        raise BadRowError(source, row, f"{what} has {len(side.images)} images; embed handles one per item")
    return Item(side.text, side.images[0] if side.images else "")


def normalize_text(text: str) -> str:
    """Text without image placeholders, lower-case, single spaces: the class name of a text item."""
    return " ".join(_PLACEHOLDER.sub(" ", text).lower().split()).strip(" .")


def content_of(item: Item) -> str:
    """Content identity for false-negative filtering: the image file when there is one, else the text
    (so the same image under another instruction, or the same text, counts as the same content)."""
    return f"img:{item.image}" if item.image else f"txt:{normalize_text(item.text)}"


def class_of(item: Item, label: str | None) -> str | None:
    """Class name: the label when known, else the normalised text of a text-only item, else none."""
    if label:
        return f"lbl:{label.strip().lower()}"
    return f"txt:{normalize_text(item.text)}" if not item.image else None


# --------------------------------------------------------------------------------------------------
# training data
# --------------------------------------------------------------------------------------------------


def _label_column(cfg: DataConfig, source: PairSource, column: str) -> list[str | None]:
    """Values of a column the readers do not keep (a class label), re-read from the source's files."""
    if source.origin and Path(source.origin).is_file():
        table = read_table(source.origin)
    else:
        files = subset_files(Path(cfg.mmeb_train_dir or ""), source.name, cfg.split)
        try:
            table = pa.concat_tables([pq.read_table(f, columns=[column]) for f in files])
        except (KeyError, pa.ArrowException) as exc:
            raise CorpusError(
                f"source '{source.name}': no label column '{column}' in {files}: {exc}"
            ) from None
    if column not in table.column_names:
        raise CorpusError(
            f"source '{source.name}' ({source.origin}): no label column '{column}'; "
            f"available: {table.column_names}"
        )
    values = table.column(column).to_pylist()[: len(source)]
    return [None if v is None or v == "" else str(v) for v in values]


@dataclass
class TrainRows:
    """Per source: the rows kept and, per row, the index of its query and positive items."""

    rows: dict[str, np.ndarray]
    qry: dict[str, np.ndarray]
    pos: dict[str, np.ndarray]
    pos_label: dict[str, list[str | None]]
    skipped: list[str]


def read_train_corpora(
    cfg: DataConfig, sides: tuple[str, ...] = ("qry", "tgt"), label_column: str | None = None
) -> tuple[list[PairSource], dict[str, Corpus], TrainRows]:
    """One corpus per side over every row of the configured training sources, plus the row map.

    Bad rows raise `BadRowError` (source, row), or are skipped and counted with `data.skip_bad_rows`.
    """
    known = choices_of(EmbedConfig, "side")
    unknown = [s for s in sides if s not in known]
    if unknown:
        raise ConfigError(f"embed.side: {unknown[0]!r} is not one of {', '.join(known)}")
    try:
        sources = build_sources(cfg)
    except (FileNotFoundError, ValueError) as exc:
        if isinstance(exc, UserError):
            raise
        raise CorpusError(str(exc)) from exc
    root = Path(".")
    corpora = {s: Corpus(name="train", side=s, image_root=root) for s in sides}
    out = TrainRows({}, {}, {}, {}, [])
    for src in sources:
        labels = _label_column(cfg, src, label_column) if label_column else [None] * len(src)
        rows, qry, pos, pos_label = [], [], [], []
        for r in range(len(src)):
            try:
                rec = src.record(r)
                q = side_item(rec.qry, src.name, r, "query")
                p = side_item(rec.pos, src.name, r, "target")
                negs = [side_item(n, src.name, r, "negative") for n in rec.negs] if "neg" in sides else []
            except BadRowError as exc:
                if not cfg.skip_bad_rows:
                    raise
                out.skipped.append(str(exc))
                continue
            rows.append(r)
            pos_label.append(labels[r])
            if "qry" in corpora:
                qry.append(corpora["qry"].add(q, src.name, r))
            if "tgt" in corpora:
                pos.append(corpora["tgt"].add(p, src.name, r, labels[r]))
            for n in negs:
                corpora["neg"].add(n, src.name, r)
        out.rows[src.name] = np.asarray(rows, dtype=np.int64)
        out.qry[src.name] = np.asarray(qry, dtype=np.int64)
        out.pos[src.name] = np.asarray(pos, dtype=np.int64)
        out.pos_label[src.name] = pos_label
    return sources, corpora, out


# --------------------------------------------------------------------------------------------------
# a folder of images, a file of texts
# --------------------------------------------------------------------------------------------------


def image_folder_corpus(folder: str | Path, text: str) -> Corpus:
    """Every image under `folder` (sorted, recursive); an image in a sub-folder gets its name as label."""
    root = Path(folder)
    if not root.is_dir():
        raise CorpusError(f"embed.path: image folder not found: {root}")
    if not _PLACEHOLDER.search(text):
        raise CorpusError(f"embed.image_text must hold the placeholder <|image_1|>, got {text!r}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise CorpusError(f"embed.path: no images ({', '.join(IMAGE_SUFFIXES)}) under {root}")
    corpus = Corpus(name=str(root), side="images", image_root=root)
    for i, path in enumerate(files):
        rel = path.relative_to(root)
        corpus.add(Item(text, rel.as_posix()), "images", i, rel.parts[0] if len(rel.parts) > 1 else None)
    return corpus


def text_file_corpus(path: str | Path) -> Corpus:
    """A .txt file (one text a line) or a .jsonl file of objects with `text` (and optional `label`)."""
    path = Path(path)
    if not path.is_file():
        raise CorpusError(f"embed.path: text file not found: {path}")
    corpus = Corpus(name=str(path), side="texts", image_root=path.parent)
    for lineno, line in utf8_lines(path, CorpusError):
        if not line.strip():
            continue
        label = None
        if path.suffix.lower() == ".jsonl":
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CorpusError(f"{path}: line {lineno} is not valid JSON: {exc}") from None
            if not isinstance(obj, dict) or not isinstance(obj.get("text"), str):
                raise CorpusError(f"{path}: line {lineno} needs a string field 'text'")
            text, label = obj["text"], obj.get("label")
        else:
            text = line.rstrip("\r\n")
        corpus.add(Item(text), "texts", lineno, None if label is None else str(label))
    if not corpus.items:
        raise CorpusError(f"embed.path: {path} holds no texts")
    return corpus
