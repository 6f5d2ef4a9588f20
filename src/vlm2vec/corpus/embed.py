"""`vlm2vec embed`: encode a corpus into safetensors shards + an items parquet, streamed and resumable.

The encoding is the one evaluation uses too (`encoding.schedule_encoding` / `encode_schedule` over
`encoding.RepCache`, keyed by `encoding.model_fingerprint`): batches are cut from the full
length-sorted item list and grouped into shards; each shard's batches are dealt to the processes chunk
by chunk, every finished chunk goes to the cache, and the finished shard is written and dropped, so
memory holds one shard whatever the corpus size. A killed run keeps every written shard and re-encodes
only the chunks no file holds; one process, several processes and a resumed run give bitwise the same
vectors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..config import Config, EmbedConfig, save_config
from ..distributed import ProcessState, barrier, process_state
from ..encoding import RepCache, encode_schedule, load_embedding_model, model_fingerprint, schedule_encoding
from ..encoding.schedule import EncodeSchedule
from .sources import Corpus, image_folder_corpus, read_train_corpora, text_file_corpus
from .store import (
    MANIFEST,
    read_manifest,
    remove_stale_shards,
    shard_dim,
    shard_metadata,
    shard_name,
    write_items,
    write_manifest,
    write_shard,
)

logger = logging.getLogger(__name__)


def shard_plan(batches: list[list[int]], shard_rows: int) -> list[list[list[int]]]:
    """The schedule's batches grouped into shards, in encoding order: a shard holds the batches that start
    within its `shard_rows` positions (so a batch is never split, and no shard is empty)."""
    shards: dict[int, list[list[int]]] = {}
    position = 0
    for batch in batches:
        shards.setdefault(position // shard_rows, []).append(batch)
        position += len(batch)
    return [shards[j] for j in sorted(shards)]


def _keys_id(keys: list[str], batches: list[list[int]]) -> str:
    """Names the items of one shard, in order (their keys hold the image files' stamps)."""
    return hashlib.sha1("\n".join(keys[i] for b in batches for i in b).encode()).hexdigest()[:20]


def _shard_schedule(plan: EncodeSchedule, batches: list[list[int]], cache: RepCache) -> EncodeSchedule:
    """One shard's part of the full schedule, re-indexed to the shard's rows, against its own cache."""
    rows = [i for batch in batches for i in batch]
    keys = [plan.keys[i] for i in rows]
    local, start = [], 0
    for batch in batches:
        local.append(list(range(start, start + len(batch))))
        start += len(batch)
    cached = cache.load()
    todo = [b for b in local if any(keys[i] not in cached for i in b)]
    return EncodeSchedule(
        [plan.items[i] for i in rows], keys, local, todo, cached, cache, plan.source.subset(rows)
    )


def _identity(corpus_id: str, stamps: dict[str, str], fingerprint: str, dtype: str) -> dict[str, str]:
    """What makes a finished folder up to date: the model, the items, the image files, the dtype."""
    images = "\n".join(f"{p}:{s}" for p, s in sorted(stamps.items()))
    images_id = hashlib.sha1(images.encode()).hexdigest()[:16]
    return {"model_fingerprint": fingerprint, "corpus_id": corpus_id, "images_id": images_id, "dtype": dtype}


def _encode_shard(
    model: Any, corpus: Corpus, shard: EncodeSchedule, ecfg: EmbedConfig, state: ProcessState, bar: Any
) -> torch.Tensor:
    """One shard's reps, in its rows' order, through the shared encoder (collective)."""
    bar.update(len(shard.items) - shard.num_todo_items)
    return encode_schedule(
        model,
        shard,
        image_root=corpus.image_root,
        state=state,
        chunk_items=ecfg.chunk_items,
        num_workers=ecfg.num_workers,
        bar=bar,
    )


def embed_corpus(
    model: Any,
    corpus: Corpus,
    folder: str | Path,
    ecfg: EmbedConfig,
    *,
    state: ProcessState | None = None,
    fingerprint: str | None = None,
    info: dict[str, Any] | None = None,
) -> Path:
    """Encode `corpus` with `model` and write it to `folder`, shard by shard. Collective under several
    processes; memory holds one shard of vectors whatever the corpus size.

    The batches are cut from the whole length-sorted corpus (the vectors do not depend on the shard
    size) and grouped into shards (`shard_plan`); a shard already on disk for this model and these
    items is kept, so a killed run resumes at the first missing shard, and within it from the rep cache
    `<ecfg.cache_dir or folder/cache>/<fingerprint>/<layout>/corpus-<id>/<side>`. An up-to-date folder
    (same fingerprint, corpus, images and dtype in its manifest) is left as it is.
    """
    state = state or process_state()
    folder = Path(folder)
    model.eval()
    fingerprint = fingerprint or model_fingerprint(model)
    corpus_id = corpus.corpus_id
    stamps = corpus.image_stamps()  # a replaced image file: its item is encoded afresh, the folder rewritten
    ident = _identity(corpus_id, stamps, fingerprint, ecfg.dtype)
    try:
        manifest = read_manifest(folder)
    except ValueError:
        manifest = {}
    if all(manifest.get(k) == v for k, v in ident.items()):
        logger.info("embed: %s is up to date (%d items)", folder, len(corpus))
        return folder
    cache_dir = Path(ecfg.cache_dir) if ecfg.cache_dir else folder / "cache"
    plan = schedule_encoding(
        corpus.items, ecfg.batch_size, None, image_stamps=stamps, source=corpus.item_source()
    )
    groups = shard_plan(plan.batches, ecfg.shard_rows)
    names = [shard_name(j, len(groups)) for j in range(len(groups))]
    if state.is_main_process:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).unlink(missing_ok=True)  # the folder is incomplete until the new manifest lands
    metas = [
        {"model_fingerprint": fingerprint, "keys_id": _keys_id(plan.keys, g), "dtype": ecfg.dtype}
        for g in groups
    ]
    done = [shard_metadata(folder / name) == meta for name, meta in zip(names, metas)]
    barrier(state)  # every process decided which shards to encode before any is written
    if any(done) and state.is_main_process:
        logger.info("embed: resuming, %d of %d shards already in %s", sum(done), len(groups), folder)
    layout = f"rows-{ecfg.batch_size}-shards-{ecfg.shard_rows}"
    todo_items = sum(len(b) for g, d in zip(groups, done) if not d for b in g)
    with tqdm(
        total=todo_items, desc=f"embed {corpus.side}", unit="item", disable=not state.is_main_process
    ) as bar:
        for j, group in enumerate(groups):
            if done[j]:
                continue
            cache = RepCache.for_dataset(
                cache_dir, fingerprint, f"corpus-{corpus_id}/shard-{j:05d}", corpus.side, layout
            )
            reps = _encode_shard(model, corpus, _shard_schedule(plan, group, cache), ecfg, state, bar)
            if state.is_main_process:
                rows = torch.tensor([i for b in group for i in b], dtype=torch.int64)
                write_shard(folder / names[j], reps, rows, metas[j])
    if state.is_main_process:
        remove_stale_shards(folder, names)
        write_items(folder, corpus.table())
        meta = {**ident, "side": corpus.side, "corpus": corpus.name, "image_root": str(corpus.image_root)}
        dim = shard_dim(folder / names[0]) if names else 0
        meta = {**meta, "batch_size": ecfg.batch_size, **(info or {})}
        write_manifest(folder, len(corpus), dim, ecfg.dtype, names, meta)
    barrier(state)
    return folder


def build_corpus(cfg: Config) -> Corpus:
    """The corpus the `embed` section asks for (validated by `load_config`: a known source, a path
    where the source needs one)."""
    e = cfg.embed
    if e.source == "train":
        _, corpora, _ = read_train_corpora(cfg.data, (e.side,), label_column=e.label_column)
        return corpora[e.side]
    if e.source == "images":
        return image_folder_corpus(e.path, e.image_text)
    return text_file_corpus(e.path)


def run_embed(cfg: Config, explicit: set[str] | None = None) -> Path:
    """Entry point of `vlm2vec embed`: build the corpus, load the model, encode, write the folder."""
    state = process_state(join_launch=True)
    corpus = build_corpus(cfg)
    model, _ = load_embedding_model(cfg.model, explicit, state.device)
    out = Path(cfg.embed.output_dir)
    if state.is_main_process:
        save_config(dataclasses.replace(cfg, model=model.cfg), out / "config.yaml")  # what ran
    embed_corpus(model, corpus, out, cfg.embed, state=state)
    return out
