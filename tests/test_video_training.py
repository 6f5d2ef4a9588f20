"""Training rows with videos: a side's frame folder or frame list loaded and sampled as MMEB-V2 does,
collated into the backbone's video inputs, and kept whole with its row by the GradCache splitter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image

from vlm2vec import EmbeddingModel
from vlm2vec.config import PairSourceConfig
from vlm2vec.data import BadRowError, PairCollator, PairDataset, read_pairs
from vlm2vec.testing import tiny_model_config


def _frames(folder: Path, count: int, size=(84, 56)) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        path = folder / f"frame_{k}.jpg"
        Image.new("RGB", size, (20 * k % 256, 100, 50)).save(path)
        paths.append(path)
    return paths


def _source(tmp_path: Path, rows: list[dict]):
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    cfg = PairSourceConfig(
        name="vids",
        path=str(path),
        qry_text="q",
        qry_image=None,
        pos_text="t",
        pos_image=None,
        qry_video="qv",
        pos_video="tv",
    )
    return read_pairs(cfg)


@pytest.fixture(scope="module")
def qwen(tiny_qwen_dir) -> EmbeddingModel:
    torch.manual_seed(0)
    return EmbeddingModel.from_config(tiny_model_config("qwen2_vl", tiny_qwen_dir)).eval()


def test_a_frame_folder_is_sampled_like_mmeb_v2_and_a_frame_list_is_taken_in_order(tmp_path):
    _frames(tmp_path / "clip", 12)
    listed = [f"clip/frame_{k}.jpg" for k in (3, 1, 2)]
    source = _source(
        tmp_path,
        [
            {"q": "what happens", "qv": "clip", "t": "a caption", "tv": None},
            {"q": "which", "t": "<|video_1|> other", "tv": listed},
        ],
    )
    ds = PairDataset([source], num_video_frames=4)
    first, second = ds[0], ds[1]
    assert first.qry.text == "<|video_1|>\nwhat happens"  # a video without its placeholder gets one
    assert [Path(p).name for p in first.qry.paths] == [f"frame_{k}.jpg" for k in (0, 3, 7, 11)]
    assert len(first.qry.videos) == 1 and len(first.qry.videos[0]) == 4 and not first.pos.videos
    assert [Path(p).name for p in second.pos.paths] == ["frame_3.jpg", "frame_1.jpg", "frame_2.jpg"]
    assert second.pos.text == "<|video_1|> other" and not second.qry.videos


def test_a_missing_or_empty_frame_folder_is_a_bad_row_naming_source_row_and_path(tmp_path):
    (tmp_path / "empty").mkdir()
    source = _source(
        tmp_path,
        [{"q": "a", "qv": "nowhere", "t": "x", "tv": None}, {"q": "b", "t": "y", "tv": "empty", "qv": None}],
    )
    ds = PairDataset([source])
    with pytest.raises(
        BadRowError, match=r"source 'vids' row 1: query video: .*frame folder not found.*nowhere"
    ):
        ds[0]
    with pytest.raises(BadRowError, match=r"source 'vids' row 2: target video: .*holds no"):
        ds[1]


def test_collated_video_rows_are_kept_whole_by_the_splitter(tmp_path, qwen, tiny_images):
    _frames(tmp_path / "a", 5)
    _frames(tmp_path / "b", 2, size=(56, 84))
    tiny_images[0].save(tmp_path / "im.png")
    source = _source(
        tmp_path,
        [
            {"q": "first video", "qv": "a", "t": "caption a", "tv": None},
            {"q": "plain text", "t": "caption b"},
            {"q": "second video", "qv": "b", "t": "caption c", "tv": "a"},
            {"q": "more text", "t": "caption d"},
        ],
    )
    ds = PairDataset([source])
    batch = PairCollator(qwen.processor)([ds[i] for i in range(4)])
    qry = batch["qry"]
    assert qry["num_videos"].tolist() == [1, 0, 1, 0]
    assert batch["qry_keys"][0] != batch["qry_keys"][2]
    patches = qry["video_grid_thw"].prod(-1).tolist()
    own = list(torch.split(qry["pixel_values_videos"], patches))
    plan = [[2, 1], [0], [3]]
    chunks = qwen.split_batch(qry, plan)
    assert torch.equal(chunks[0]["pixel_values_videos"], own[1])
    assert torch.equal(chunks[1]["pixel_values_videos"], own[0])
    assert "pixel_values_videos" not in chunks[2] and chunks[2]["num_videos"].tolist() == [0]
    with torch.no_grad():
        full = qwen.encode(qry)
        parts = torch.cat([qwen.encode(c) for c in chunks])
    torch.testing.assert_close(parts, full[[2, 1, 0, 3]], atol=1e-5, rtol=0)
