"""`vlm2vec embed`: encode a corpus into safetensors shards + an items parquet, sharded and resumable.

The encoding is the evaluator's (`evaluation.encode.plan_encoding` / `run_plan` over
`evaluation.cache.RepCache`, keyed by `evaluation.fingerprint.model_fingerprint`), not a second copy:
batches are cut from the full length-sorted item list, dealt to the processes chunk by chunk, and
every finished chunk is written to the cache. A killed run re-encodes only the chunks no file holds,
and one process, several processes and a resumed run give bitwise the same vectors.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from ..config import Config, EmbedConfig, save_config
from ..evaluation.cache import RepCache
from ..evaluation.encode import ProcessState, SingleProcess, plan_encoding, run_plan
from ..evaluation.fingerprint import model_fingerprint
from .sources import Corpus, image_folder_corpus, read_train_corpora, text_file_corpus
from .store import read_manifest, write_store

logger = logging.getLogger(__name__)


def _barrier(state: ProcessState) -> None:
    wait = getattr(state, "wait_for_everyone", None)
    if state.num_processes > 1 and wait is not None:
        wait()


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
    state = state or SingleProcess()
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
    plan = plan_encoding(corpus.items, ecfg.batch_size, cache, image_stamps=stamps)
    done = len(corpus) - plan.num_todo_items
    if done and state.is_main_process:
        logger.info("embed: resuming, %d of %d items already in %s", done, len(corpus), cache.folder)
    desc = f"embed {corpus.side}"
    with tqdm(total=plan.num_todo_items, desc=desc, unit="item", disable=not state.is_main_process) as bar:
        reps = run_plan(
            model,
            plan,
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
    _barrier(state)
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


def process_state() -> ProcessState:
    """accelerate's process state (CPU when no GPU): one process, or every rank of a launch."""
    import torch
    from accelerate import PartialState

    return PartialState(cpu=not torch.cuda.is_available())


def load_model(cfg: Config, state: ProcessState, explicit: set[str] | None = None) -> Any:
    """The model with the settings evaluate.py would use: a saved folder's own, unless `explicit`
    (the keys set by the config file or a flag) overrides them."""
    from ..evaluation.runner import load_model_for_eval

    model, _ = load_model_for_eval(cfg.model, explicit)
    return model.to(state.device)


def run_embed(cfg: Config, explicit: set[str] | None = None) -> Path:
    """Entry point of `vlm2vec embed`: build the corpus, load the model, encode, write the folder."""
    state = process_state()
    corpus = build_corpus(cfg)
    model = load_model(cfg, state, explicit)
    out = Path(cfg.embed.output_dir)
    if state.is_main_process:
        save_config(dataclasses.replace(cfg, model=model.cfg), out / "config.yaml")  # what ran
    embed_corpus(model, corpus, out, cfg.embed, state=state)
    if state.is_main_process:
        print(f"embedded {len(corpus)} items into {out}")
    return out
