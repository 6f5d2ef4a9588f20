"""`vlm2vec embed`: encode a corpus into safetensors shards + an items parquet, sharded and resumable.

The encoding is the one evaluation uses too (`encoding.schedule_encoding` / `encode_schedule` over
`encoding.RepCache`, keyed by `encoding.model_fingerprint`): batches are cut from the full
length-sorted item list, dealt to the processes chunk by chunk, and every finished chunk is written
to the cache. A killed run re-encodes only the chunks no file holds, and one process, several
processes and a resumed run give bitwise the same vectors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..config import Config, EmbedConfig, save_config
from ..distributed import ProcessState, barrier, process_state
from ..encoding import RepCache, encode_schedule, load_embedding_model, model_fingerprint, schedule_encoding
from .sources import Corpus, image_folder_corpus, read_train_corpora, text_file_corpus
from .store import read_manifest, write_store

logger = logging.getLogger(__name__)


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
    """Encode `corpus` with `model` and write it to `folder`. Collective under several processes.

    The rep cache lives in `<ecfg.cache_dir or folder/cache>/<fingerprint>/corpus-<id>/<side>`; an
    up-to-date folder (same fingerprint and corpus id in its manifest) is left as it is.
    """
    state = state or process_state()
    folder = Path(folder)
    model.eval()
    fingerprint = fingerprint or model_fingerprint(model)
    corpus_id = corpus.corpus_id
    stamps = corpus.image_stamps()  # a replaced image file: its item is encoded afresh, the folder rewritten
    images_id = hashlib.sha1("\n".join(f"{p}:{s}" for p, s in sorted(stamps.items())).encode()).hexdigest()[
        :16
    ]
    try:
        manifest = read_manifest(folder)
    except ValueError:
        manifest = {}
    if (
        manifest.get("model_fingerprint") == fingerprint
        and manifest.get("corpus_id") == corpus_id
        and manifest.get("images_id") == images_id
    ):
        logger.info("embed: %s is up to date (%d items)", folder, len(corpus))
        return folder
    cache_dir = Path(ecfg.cache_dir) if ecfg.cache_dir else folder / "cache"
    cache = RepCache.for_dataset(cache_dir, fingerprint, f"corpus-{corpus_id}", corpus.side)
    schedule = schedule_encoding(corpus.items, ecfg.batch_size, cache, image_stamps=stamps)
    done = len(corpus) - schedule.num_todo_items
    if done and state.is_main_process:
        logger.info("embed: resuming, %d of %d items already in %s", done, len(corpus), cache.folder)
    desc = f"embed {corpus.side}"
    with tqdm(
        total=schedule.num_todo_items, desc=desc, unit="item", disable=not state.is_main_process
    ) as bar:
        reps = encode_schedule(
            model,
            schedule,
            image_root=corpus.image_root,
            state=state,
            chunk_items=ecfg.chunk_items,
            num_workers=ecfg.num_workers,
            bar=bar,
        )
    if state.is_main_process:
        meta = {
            "model_fingerprint": fingerprint,
            "corpus_id": corpus_id,
            "images_id": images_id,
            "side": corpus.side,
            "corpus": corpus.name,
            "image_root": str(corpus.image_root),
            "batch_size": ecfg.batch_size,
            **(info or {}),
        }
        write_store(folder, reps, corpus.table(), meta, ecfg.shard_rows)
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
