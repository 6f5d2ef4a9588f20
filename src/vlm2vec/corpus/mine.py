"""`vlm2vec mine`: hard negatives for every training query, written as MMEB-train files train.py reads.

Per query: the `top_k` candidates by similarity (exact, `search.topk`), minus false negatives -- the
positive itself, an item with the positive's content (same image file, or same text), an item with the
positive's class name (`mine.filter_class`), and any candidate scoring above the positive's score +
`mine.margin` (the margin may be negative) -- then `num_negatives` of what is left by `mine.strategy`:
`top` (the best n), `range` (the best n of ranks rank_start..rank_end) or `sample` (n drawn from the
rest, seeded per row). Output: `<output_dir>/train/<source>/<split>-00000-of-00001.parquet` in the
MMEB-train layout with `neg_text` / `neg_image_path` lists (k per row), and `report.md` / `report.png`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..atomic_files import atomic_path, atomic_write_json
from ..config import Config, ConfigError, MineConfig, choices_of, save_config
from ..data import PairSource, Side
from ..distributed import barrier, process_state
from ..encoding import Item, item_key, load_embedding_model
from .embed import embed_corpus
from .mine_stats import REASONS, MineStats
from .retrieval import Target
from .search import check_same_model, resolve_device, topk
from .shards import read_store
from .sources import CorpusError, class_of, content_of, read_train_corpora

logger = logging.getLogger(__name__)


class Interner:
    """Strings -> small ints, so candidate filters are vectorised integer comparisons (None -> -1)."""

    def __init__(self) -> None:
        self.ids: dict[str, int] = {}

    def __call__(self, values: list[str | None]) -> np.ndarray:
        return np.array(
            [-1 if v is None else self.ids.setdefault(v, len(self.ids)) for v in values], np.int64
        )


def filter_candidates(
    scores: np.ndarray,
    cand: np.ndarray,
    cand_key: np.ndarray,
    cand_content: np.ndarray,
    cand_class: np.ndarray,
    pos_key: np.ndarray,
    pos_content: np.ndarray,
    pos_class: np.ndarray,
    pos_score: np.ndarray,
    margin: float | None,
    filter_class: bool = True,
) -> np.ndarray:
    """Reason codes [Q, k]: -1 kept, -2 no candidate (padding, `cand < 0`), else an index into REASONS.

    `scores`/`cand` are the retrieved [Q, k] scores and candidate ids; the `cand_*` arrays map candidate
    id -> interned key / content / class (class -1: none); `pos_*` are per query. A candidate is dropped
    for the first reason that applies; "above_margin" means `score > pos_score + margin` (strictly).
    """
    valid = cand >= 0
    c = np.where(valid, cand, 0)
    reason = np.full(cand.shape, -1, np.int64)
    checks = [
        cand_key[c] == pos_key[:, None],
        cand_content[c] == pos_content[:, None],
        (cand_class[c] == pos_class[:, None]) & (pos_class[:, None] >= 0) if filter_class else None,
        scores > (pos_score[:, None] + margin) if margin is not None else None,
    ]
    for code, hit in enumerate(checks):
        if hit is not None:
            reason[(reason == -1) & hit] = code
    reason[~valid] = -2
    return reason


def pick(
    kept: np.ndarray, strategy: str, n: int, rank_start: int = 1, rank_end: int = 1, seed: int | None = None
) -> np.ndarray:
    """Positions (into one query's best-first candidate list) of the negatives to write, best first."""
    positions = np.flatnonzero(kept)
    if strategy == "top":
        return positions[:n]
    if strategy == "range":
        return positions[rank_start - 1 : rank_end][:n]
    if strategy == "sample":
        if len(positions) <= n:
            return positions
        rng = np.random.default_rng(seed)
        return np.sort(rng.choice(positions, size=n, replace=False))
    raise ConfigError(
        f"mine.strategy: {strategy!r} is not one of {', '.join(choices_of(MineConfig, 'strategy'))}"
    )


def row_seed(seed: int, source: str, row: int) -> list[int]:
    """Seed of one row's draw: independent of the order rows are mined in and of the process count."""
    return [seed, zlib.crc32(source.encode()), row]


class _Paths:
    """Image paths as written: relative to the output image root when under it, else absolute."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = os.path.abspath(root)

    def __call__(self, path: str, base: str | os.PathLike = ".") -> str:
        if not path:
            return ""
        full = os.path.abspath(os.path.join(base, path))
        if full.startswith(self.root + os.sep):
            return os.path.relpath(full, self.root)
        return full


def _absolute(item: Item, base: str | os.PathLike = ".") -> Item:
    """The item with its image as an absolute path, so the same file compares equal from any corpus
    (training items hold paths as the readers resolved them; an image folder's are relative to it)."""
    return Item(item.text, os.path.abspath(os.path.join(base, item.image))) if item.image else item


def _side_path(side: Side) -> str:
    return side.images[0] if side.images else ""


#: columns of a mined MMEB-train table
MINED_SCHEMA = pa.schema(
    [(c, pa.string()) for c in ("qry", "qry_image_path", "pos_text", "pos_image_path")]
    + [("neg_text", pa.list_(pa.string())), ("neg_image_path", pa.list_(pa.string()))]
    + [("neg_score", pa.list_(pa.float32())), ("pos_score", pa.float32()), ("source_row", pa.int64())]
)


@dataclass
class CandidateIndex:
    """The candidates, with their key, content and class interned (one id per candidate in `key_id`,
    `content_id`, `class_id`; -1: no class), so the false-negative filters compare integers."""

    items: list[Item]
    key_id: np.ndarray
    content_id: np.ndarray
    class_id: np.ndarray
    base: str  # the folder the candidates' image paths are relative to
    keys: Interner
    contents: Interner
    classes: Interner

    @classmethod
    def build(cls, table: pa.Table, base: str) -> CandidateIndex:
        keys, contents, classes = Interner(), Interner(), Interner()
        items = [
            Item(t, i) for t, i in zip(table.column("text").to_pylist(), table.column("image").to_pylist())
        ]
        labels = table.column("label").to_pylist()
        key_id = keys(table.column("key").to_pylist())
        content_id = contents([content_of(_absolute(it, base)) for it in items])
        class_id = classes([class_of(it, lbl) for it, lbl in zip(items, labels)])
        return cls(items, key_id, content_id, class_id, base, keys, contents, classes)

    def reasons(
        self,
        scores: np.ndarray,
        idx: np.ndarray,
        pos: list[Item],
        pos_labels: list,
        pos_score: np.ndarray,
        m: MineConfig,
    ) -> np.ndarray:
        """`filter_candidates` of the retrieved [Q, k] candidates against each query's positive."""
        return filter_candidates(
            scores,
            idx,
            self.key_id,
            self.content_id,
            self.class_id,
            self.keys([item_key(it) for it in pos]),
            self.contents([content_of(_absolute(it)) for it in pos]),
            self.classes([class_of(it, lbl) for it, lbl in zip(pos, pos_labels)]),
            pos_score,
            m.margin,
            m.filter_class,
        )


def retrieve(
    m: MineConfig, qry: torch.Tensor, cands: torch.Tensor | Target, members: np.ndarray | None, device: Any
) -> tuple[np.ndarray, np.ndarray]:
    """The `top_k` candidates of each query, best first: scores and candidate ids [Q, k] (-1: none), from
    the training targets' vectors (with `members`, only those are searched) or a corpus `Target`
    (streamed by the search layer; its model was checked when the mine began)."""
    blocks = {"device": device, "query_block": m.query_block, "corpus_block": m.corpus_block}
    if isinstance(cands, Target):
        scores, idx = cands.search(
            qry, m.top_k, allow_other_model=True, clamp_k=True, backend=m.backend, **blocks
        )
        return scores.numpy(), idx.numpy()
    pool = cands[torch.from_numpy(members)] if members is not None else cands
    scores, idx = topk(qry, pool, m.top_k, backend=m.backend, **blocks)
    scores, idx = scores.numpy(), idx.numpy()
    if members is not None:
        idx = np.where(idx >= 0, members[np.clip(idx, 0, None)], -1)
    return scores, idx


def mined_columns(
    m: MineConfig,
    src: PairSource,
    src_rows: np.ndarray,
    reason: np.ndarray,
    idx: np.ndarray,
    scores: np.ndarray,
    pos_score: np.ndarray,
    cands: CandidateIndex,
    out_path: _Paths,
) -> tuple[pa.Table, list[float], int]:
    """One source's mined table (`MINED_SCHEMA`), the scores of the negatives written, and how many
    rows had fewer than `num_negatives` kept candidates (written only with `keep_short`)."""
    columns: dict[str, list] = {name: [] for name in MINED_SCHEMA.names}
    neg_scores: list[float] = []
    short = 0
    for j, r in enumerate(src_rows.tolist()):
        chosen = pick(
            reason[j] == -1,
            m.strategy,
            m.num_negatives,
            m.rank_start,
            m.rank_end,
            row_seed(m.seed, src.name, r),
        )
        if len(chosen) < m.num_negatives:
            short += 1
            if not m.keep_short:
                continue
        rec = src.record(r)
        negs = [cands.items[int(idx[j, c])] for c in chosen]
        columns["qry"].append(rec.qry.text)
        columns["qry_image_path"].append(out_path(_side_path(rec.qry)))
        columns["pos_text"].append(rec.pos.text)
        columns["pos_image_path"].append(out_path(_side_path(rec.pos)))
        columns["neg_text"].append([n.text for n in negs])
        columns["neg_image_path"].append([out_path(n.image, cands.base) for n in negs])
        columns["neg_score"].append([float(scores[j, c]) for c in chosen])
        columns["pos_score"].append(float(pos_score[j]))
        columns["source_row"].append(r)
        neg_scores += [float(scores[j, c]) for c in chosen]
    return pa.table(columns, schema=MINED_SCHEMA), neg_scores, short


def mine_negatives(
    cfg: Config,
    sources: list[PairSource],
    rows: Any,
    qry_vectors: torch.Tensor,
    pos_vectors: torch.Tensor,
    pos_items: list[Item],
    cand_vectors: torch.Tensor | Target,
    cand_table: pa.Table,
    cand_members: dict[str, list[int]] | None,
    cand_base: str = ".",
) -> tuple[dict[str, pa.Table], MineStats]:
    """The mined tables per source (MMEB-train columns) and the statistics. Pure computation.
    `cand_base`: the folder the candidates' image paths are relative to."""
    m = cfg.mine
    stats = MineStats()
    cands = CandidateIndex.build(cand_table, cand_base)
    device = resolve_device(m.device)
    out_path = _Paths(cfg.data.image_root or cfg.data.mmeb_train_dir or ".")
    tables: dict[str, pa.Table] = {}
    for src in sources:
        src_rows, q_idx, p_idx = rows.rows[src.name], rows.qry[src.name], rows.pos[src.name]
        stats.queries += len(src_rows)
        if not len(src_rows):
            continue
        members = np.asarray(cand_members[src.name], np.int64) if cand_members is not None else None
        q = qry_vectors[torch.from_numpy(q_idx)]
        p = pos_vectors[torch.from_numpy(p_idx)]
        pos_score = (q.double() * p.double()).sum(1).float().numpy()
        scores, idx = retrieve(m, q, cand_vectors, members, device)
        pos = [pos_items[i] for i in p_idx]
        reason = cands.reasons(scores, idx, pos, rows.pos_label[src.name], pos_score, m)
        stats.retrieved += int((reason != -2).sum())
        for code, name in enumerate(REASONS):
            stats.filtered[name] += int((reason == code).sum())
        stats.dropped_scores += scores[reason == REASONS.index("above_margin")].tolist()
        table, neg_scores, short = mined_columns(
            m, src, src_rows, reason, idx, scores, pos_score, cands, out_path
        )
        written = table.num_rows
        stats.neg_scores += neg_scores
        stats.pos_scores += pos_score.tolist()
        stats.rows_written += written
        stats.rows_short += short
        stats.rows_dropped += 0 if m.keep_short else short
        stats.per_source[src.name] = {"rows": len(src_rows), "written": written, "short": short}
        tables[src.name] = table
    return tables, stats


def candidates(
    m: MineConfig, qmanifest: dict, tv: torch.Tensor, tt: pa.Table, members: dict[str, Any]
) -> tuple[torch.Tensor | Target, pa.Table, str, dict[str, list[int]] | None]:
    """(vectors or search target, items table, image base, members per source) of the candidates: the
    training targets, or `mine.corpus_dir` (an embed or index folder) when it was embedded by the
    same model as the queries (else refused naming both, unless `mine.allow_other_model`)."""
    if not m.corpus_dir:
        return tv, tt, ".", ({k: list(v) for k, v in members.items()} if m.scope == "source" else None)
    target = Target.open(m.corpus_dir)
    fp, dim = qmanifest.get("model_fingerprint"), int(qmanifest["dim"])
    hint = "; embed the corpus with this model, or set mine.allow_other_model=true"
    check_same_model((None if m.allow_other_model else fp, dim), target.identity, target.where, hint)
    base = target.shards.manifest.get("image_root", ".")
    return target, target.shards.items_table(), base, None


def training_overrides(cfg: Config) -> list[str]:
    """The overrides that train on the mined files (printed in the report)."""
    out = Path(cfg.mine.output_dir) / "train"
    root = cfg.data.image_root or cfg.data.mmeb_train_dir
    flags = [f"--data.mmeb_train_dir={out}", "--data.pairs=[]"]
    if root:
        flags.append(f"--data.image_root={os.path.abspath(root)}")
    flags += [f"--data.num_hard_negatives={cfg.mine.num_negatives}", "--train.hard_negatives=true"]
    return flags


def run_mine(cfg: Config, explicit: set[str] | None = None) -> MineStats | None:
    """Entry point of `vlm2vec mine`: embed the training queries and targets (resumable, sharded), mine
    on the main process, write the MMEB-train files and the report. Returns the stats on the main process."""
    from .report import write_report

    m = cfg.mine
    state = process_state(join_launch=True)
    sources, corpora, rows = read_train_corpora(cfg.data, ("qry", "tgt"), label_column=m.label_column)
    model, _ = load_embedding_model(cfg.model, explicit, state.device)
    out = Path(m.output_dir)
    if state.is_main_process:
        save_config(cfg, out / "config.yaml")
    ecfg = cfg.embed
    if not ecfg.cache_dir:
        ecfg = dataclasses.replace(ecfg, cache_dir=str(out / "embeddings" / "cache"))
    folders = {
        s: embed_corpus(model, corpora[s], out / "embeddings" / s, ecfg, state=state) for s in ("qry", "tgt")
    }
    stats = None
    if state.is_main_process:
        qv, _, qmanifest = read_store(folders["qry"])
        tv, tt, _ = read_store(folders["tgt"])
        cv, ct, base, members = candidates(m, qmanifest, tv, tt, corpora["tgt"].members)
        tables, stats = mine_negatives(
            cfg, sources, rows, qv, tv, corpora["tgt"].items, cv, ct, members, base
        )
        stats.skipped_rows = rows.skipped
        for name, table in tables.items():
            with atomic_path(out / "train" / name / f"{cfg.data.split}-00000-of-00001.parquet") as tmp:
                pq.write_table(table, tmp)
        record = {"settings": dataclasses.asdict(m), "model_fingerprint": qmanifest["model_fingerprint"]}
        atomic_write_json(out / "mine.json", {**record, "stats": stats.as_dict()})
        write_report(out, stats, cfg, training_overrides(cfg))
    barrier(state)
    if stats is not None and stats.rows_written == 0:  # files of zero rows would train on nothing
        raise CorpusError(
            f"mine: no row got {m.num_negatives} negatives ({stats.queries} queries, {stats.rows_dropped} "
            f"dropped as short); see {out / 'report.md'}: loosen mine.margin or mine.filter_class, raise "
            "mine.top_k, or set mine.keep_short=true"
        )
    return stats
