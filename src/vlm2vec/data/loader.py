"""Build the training sources and this rank's DataLoader from a `DataConfig`."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import torch
from torch.utils.data import DataLoader

from ..config import ConfigError, DataConfig
from .collate import PairCollator
from .dataset import PairDataset
from .mixing import MixtureBatchSampler
from .mmeb_train import read_mmeb_train
from .pairs import read_pairs
from .records import PairSource
from .v2_sources import read_v2_sources, v2_source_names

logger = logging.getLogger(__name__)


def build_sources(cfg: DataConfig) -> list[PairSource]:
    """MMEB-train subsets (when `mmeb_train_dir` is set), the V2 sources, then the custom pair files."""
    sources: list[PairSource] = []
    v2_names = v2_source_names(cfg)
    mmeb_weights = {k: w for k, w in cfg.subset_weights.items() if k not in v2_names}
    if cfg.mmeb_train_dir:
        sources += read_mmeb_train(
            cfg.mmeb_train_dir,
            subsets=cfg.subsets,
            split=cfg.split,
            image_root=cfg.image_root,
            max_rows_per_subset=cfg.max_rows_per_subset,
            weights=mmeb_weights,
            max_rows=cfg.subset_max_rows,
            outside_root=cfg.image_paths_outside_root,
        )
    elif cfg.subsets or mmeb_weights or cfg.subset_max_rows:
        raise ConfigError(
            "data.subsets / data.subset_weights / data.subset_max_rows are set but data.mmeb_train_dir is not"
        )
    sources += read_v2_sources(cfg)
    sources += [read_pairs(p, outside_root=cfg.image_paths_outside_root) for p in cfg.pairs]
    if not sources:
        raise ConfigError("no training data: set data.mmeb_train_dir, a V2 source and/or data.pairs")
    return sources


def _worker_init(_: int) -> None:
    # processors are single-threaded work; several workers each using every core would thrash
    torch.set_num_threads(1)


def build_train_loader(
    cfg: DataConfig,
    sources: Sequence[PairSource],
    processor: Callable,
    *,
    per_device_batch_size: int,
    num_negatives: int = 0,
    max_length: int | None = None,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    start_step: int = 0,
    max_steps: int | None = None,
    multi_positive: str = "sample",
) -> tuple[DataLoader, MixtureBatchSampler]:
    """This rank's loader: each item is the collated batch of its shard of one global batch."""
    dataset = PairDataset(
        sources,
        num_negatives=num_negatives,
        skip_bad_rows=cfg.skip_bad_rows,
        num_video_frames=cfg.num_video_frames,
        multi_positive=multi_positive,
        seed=seed,
    )
    sampler = MixtureBatchSampler(
        [len(s) for s in sources],
        [s.weight for s in sources],
        per_device_batch_size * world_size,
        seed=seed,
        run_length=cfg.run_length(per_device_batch_size * world_size),
        weight_mode=cfg.weight_mode,
        num_replicas=world_size,
        rank=rank,
        start_step=start_step,
        max_steps=max_steps,
        names=[s.name for s in sources],
    )
    small = sampler.sources_without_batches()
    if small:
        logger.warning("data.sub_batch: source(s) %s have fewer rows than one run and are never used", small)
    loader = DataLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=PairCollator(processor, max_length=max_length, all_positives=multi_positive == "all"),
        num_workers=cfg.num_workers,
        worker_init_fn=_worker_init if cfg.num_workers else None,
        # own generator: creating the iterator must not consume the global torch RNG (resume equality)
        generator=torch.Generator().manual_seed(seed),
        persistent_workers=False,
    )
    return loader, sampler
