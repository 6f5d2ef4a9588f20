"""The VLM2Vec-V2 training sources a `DataConfig` asks for, by their recipe names.

Names follow the V2.0 recipe's keys, so `data.subset_weights` reads like the reference's mix:
`colpali_train_set`, `visrag-indomain` (`visrag-synthetic`: the paper's extra set), `video_caption_300k`
(video -> caption), `video_caption_300k-video` (caption -> video) and `video_qa_240k`. Readers:
`page_sources` (document pages) and `video_sources` (LLaVA-Hound).
"""

from __future__ import annotations

from ..config import DataConfig
from ..config.training_sections import LLAVAHOUND_DIRECTIONS
from .page_files import default_page_dir
from .page_sources import read_colpali, read_visrag
from .records import PairSource
from .video_sources import read_llavahound_caption, read_llavahound_qa

#: source name of each direction of the caption file
CAPTION_SOURCE_NAMES = dict(zip(LLAVAHOUND_DIRECTIONS, ("video_caption_300k", "video_caption_300k-video")))
QA_SOURCE_NAME = "video_qa_240k"
COLPALI_SOURCE_NAME = "colpali_train_set"
VISRAG_SOURCE_NAMES = {"visrag_indomain_dir": "visrag-indomain", "visrag_synthetic_dir": "visrag-synthetic"}


def v2_source_names(cfg: DataConfig) -> list[str]:
    """The names of the V2 sources `cfg` configures, in the order `read_v2_sources` returns them."""
    names = [COLPALI_SOURCE_NAME] if cfg.colpali_train_dir else []
    names += [name for key, name in VISRAG_SOURCE_NAMES.items() if getattr(cfg, key)]
    if cfg.llavahound_caption_file:
        names += [CAPTION_SOURCE_NAMES[d] for d in cfg.llavahound_caption_directions]
    return names + ([QA_SOURCE_NAME] if cfg.llavahound_qa_file else [])


def read_v2_sources(cfg: DataConfig) -> list[PairSource]:
    """Document sources, then video sources, each weighted by `data.subset_weights[name]` (default 1)."""

    def weight(name: str) -> float:
        return cfg.subset_weights.get(name, 1.0)

    skip = cfg.skip_bad_rows
    sources = []
    if cfg.colpali_train_dir:
        name = COLPALI_SOURCE_NAME
        pages = default_page_dir(cfg.colpali_train_dir, cfg.page_cache_dir, name)
        sources.append(
            read_colpali(cfg.colpali_train_dir, pages, name=name, direction=cfg.colpali_direction,
                         weight=weight(name), skip_bad_rows=skip)
        )  # fmt: skip
    for key, name in VISRAG_SOURCE_NAMES.items():
        clone = getattr(cfg, key)
        if clone:
            pages = default_page_dir(clone, cfg.page_cache_dir, name)
            sources.append(read_visrag(clone, pages, name=name, weight=weight(name), skip_bad_rows=skip))
    frames = cfg.llavahound_frames_dir or ""
    if cfg.llavahound_caption_file:
        for direction in cfg.llavahound_caption_directions:
            name = CAPTION_SOURCE_NAMES[direction]
            sources.append(
                read_llavahound_caption(cfg.llavahound_caption_file, frames, direction=direction, name=name,
                                        weight=weight(name))
            )  # fmt: skip
    if cfg.llavahound_qa_file:
        sources.append(
            read_llavahound_qa(cfg.llavahound_qa_file, frames, name=QA_SOURCE_NAME, weight=weight(QA_SOURCE_NAME),
                               max_rows=cfg.llavahound_qa_max_rows)
        )  # fmt: skip
    return sources
