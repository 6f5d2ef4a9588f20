"""The one search layer: top-k of queries over an index folder or an `embed` output folder.

`Target.open` takes either folder (an index knows the shard folder it was built from, refused if the
two disagree in size); `Target.search` streams an embed folder exactly, shard by shard, or an index
part by part, with a merged top-k, and refuses queries of another model or width than the target's.
`vlm2vec search` (`run_search`) and `vlm2vec mine` (a `mine.corpus_dir`) search through it; a library
user embeds queries with `EmbeddingModel.embed` and calls `search_topk` with the model's fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from ..atomic_files import atomic_path
from ..config import Config, ConfigError, save_config
from ..distributed import process_state
from ..encoding import load_embedding_model
from .embed import embed_corpus
from .index import INDEX_FILE, IndexFolder
from .search import check_k, check_same_model, resolve_device, search_shards
from .shards import ShardFolder, read_store
from .sources import image_folder_corpus, text_file_corpus
from .store import MANIFEST


@dataclass
class Target:
    """What a search runs over: the corpus's shard folder (items, identity) and, maybe, an index of it."""

    path: Path
    shards: ShardFolder
    index: IndexFolder | None

    @classmethod
    def open(cls, path: str | Path) -> Target:
        path = Path(path)
        if (path / INDEX_FILE).is_file():
            index = IndexFolder.open(path)
            return cls(path, index.corpus(), index)
        return cls(path, ShardFolder.open(path), None)

    @property
    def where(self) -> Path:
        """The file that describes the target (named by its errors)."""
        return self.path / (INDEX_FILE if self.index is not None else MANIFEST)

    @property
    def identity(self) -> tuple[str | None, int]:
        """(model fingerprint, width) of the vectors searched."""
        if self.index is not None:
            return self.index.meta["model_fingerprint"], int(self.index.meta["dim"])
        return self.shards.fingerprint, self.shards.dim

    def search(
        self,
        queries: torch.Tensor,
        k: int,
        *,
        query_fingerprint: str | None = None,
        allow_other_model: bool = False,
        clamp_k: bool = False,
        backend: str = "exact",
        nprobe: int | None = None,
        ef_search: int | None = None,
        **exact: Any,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(scores, item rows) [Nq, min(k, items)], best first. `exact`: `topk_exact`'s device and blocks.
        k above the corpus size is refused unless `clamp_k`; another model's queries unless
        `allow_other_model` (the width must match whatever)."""
        where = self.path / (INDEX_FILE if self.index is not None else "manifest.json")
        if not clamp_k:
            check_k(k, self.shards.num_items, where)
        fp, dim = self.identity
        check_same_model(
            (None if allow_other_model else query_fingerprint, queries.shape[1]), (fp, dim), where
        )
        if self.index is not None:
            return self.index.search(queries, k, nprobe=nprobe, ef_search=ef_search)
        return search_shards(queries, self.shards, k, backend=backend, **exact)


def search_topk(
    queries: torch.Tensor, target: str | Path, k: int, *, query_fingerprint: str | None = None, **kwargs: Any
) -> tuple[torch.Tensor, torch.Tensor]:
    """Library call: top-k (scores, item rows of the target's items.parquet) of `queries` [Nq, dim] over
    an index folder or an embed output folder (see `Target.search` for the keyword arguments)."""
    return Target.open(target).search(queries, k, query_fingerprint=query_fingerprint, **kwargs)


def _query_folder(cfg: Config, explicit: set[str] | None) -> Path:
    """The queries as an embed output folder: the given one, or texts / images encoded into one."""
    s = cfg.search
    if s.query_source == "embeddings":
        return Path(s.queries)
    state = process_state(join_launch=True)
    corpus = (
        text_file_corpus(s.queries)
        if s.query_source == "texts"
        else image_folder_corpus(s.queries, s.image_text)
    )
    model, _ = load_embedding_model(cfg.model, explicit, state.device)
    folder = Path(s.output_dir) / "queries"
    return embed_corpus(model, corpus, folder, cfg.embed, state=state)


def results_table(queries: pa.Table, items: pa.Table, scores: torch.Tensor, rows: torch.Tensor) -> pa.Table:
    """One row per (query, rank): the query's row and text, the item's row, score, key, text and image."""
    nq, k = rows.shape
    flat = rows.reshape(-1).numpy()
    keep = flat >= 0
    q_rows = torch.arange(nq).repeat_interleave(k).numpy()[keep]
    found = items.take(pa.array(flat[keep]))
    return pa.table(
        {
            "query_row": q_rows,
            "query_text": queries.column("text").take(pa.array(q_rows)),
            "rank": torch.arange(1, k + 1).repeat(nq).numpy()[keep],
            "item_row": flat[keep],
            "score": scores.reshape(-1).numpy()[keep],
            "key": found.column("key"),
            "text": found.column("text"),
            "image": found.column("image"),
        }
    )


def run_search(cfg: Config, explicit: set[str] | None = None) -> Path | None:
    """Entry point of `vlm2vec search`: top-k per query into `<output_dir>/results.parquet`."""
    s = cfg.search
    if not s.target or not s.queries:
        raise ConfigError("vlm2vec search needs search.target and search.queries", key="search.target")
    target = Target.open(s.target)
    check_k(s.k, target.shards.num_items, target.where)  # before any query is encoded
    folder = _query_folder(cfg, explicit)
    if not process_state().is_main_process:
        return None
    qv, qtable, qmanifest = read_store(folder)
    scores, rows = target.search(
        qv,
        s.k,
        query_fingerprint=qmanifest.get("model_fingerprint"),
        backend=s.backend,
        nprobe=s.nprobe,
        ef_search=s.ef_search,
        device=resolve_device(s.device, "search.device"),
        query_block=s.query_block,
        corpus_block=s.corpus_block,
    )
    out = Path(s.output_dir)
    save_config(cfg, out / "config.yaml")
    with atomic_path(out / "results.parquet") as tmp:
        pq.write_table(results_table(qtable, target.shards.items_table(), scores, rows), tmp)
    print(
        f"searched {qv.shape[0]} queries over {target.shards.num_items} items (k={s.k}): {out / 'results.parquet'}"
    )
    return out / "results.parquet"
