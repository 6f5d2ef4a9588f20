"""Video items through the encoding layer: frames read in DataLoader workers and given as `videos=`,
video tokens counted for token-budget batches, and `EmbeddingModel.embed(videos=)`."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from vlm2vec import EmbeddingModel
from vlm2vec.config import ConfigError
from vlm2vec.encoding.items import Item, ItemSource
from vlm2vec.encoding.loader import batch_loader
from vlm2vec.encoding.token_counts import item_token_counts
from vlm2vec.errors import DatasetError
from vlm2vec.testing import tiny_model_config


def _write_frames(folder, count: int, size=(84, 56)) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        Image.new("RGB", size, (30 * k % 256, 120, 60)).save(folder / f"frame_{k}.jpg")
        paths.append(f"{folder.name}/frame_{k}.jpg")
    return paths


@pytest.fixture
def qwen(tiny_qwen_dir) -> EmbeddingModel:
    torch.manual_seed(0)
    return EmbeddingModel.from_config(tiny_model_config("qwen2_vl", tiny_qwen_dir)).eval()


def _load(root, rel) -> Image.Image:
    return Image.open(root / rel).convert("RGB")


@pytest.mark.parametrize("workers", [0, 1])
def test_a_video_item_is_encoded_end_to_end_through_the_loader(qwen, tmp_path, tiny_images, workers):
    frames = _write_frames(tmp_path / "vid_a", 5)
    absolute = tuple(str(tmp_path / f) for f in _write_frames(tmp_path / "vid_b", 2))  # absolute paths too
    tiny_images[0].save(tmp_path / "im.png")
    items = [
        Item("<|video_1|> what happens", video=tuple(frames)),
        Item("<|image_1|> a picture", "im.png"),
        Item("plain text"),
        Item("<|video_1|>", video=absolute),
    ]
    loader = batch_loader(
        [[0, 1], [2, 3]],
        items,
        ItemSource("vids"),
        model=qwen,
        image_root=tmp_path,
        device=torch.device("cpu"),
        num_workers=workers,
    )
    with torch.no_grad():
        reps = torch.cat([qwen.encode(inputs) for _, inputs in loader])
    expected = qwen.embed(
        [it.text for it in items],
        [[_load(tmp_path, it.image)] if it.image else [] for it in items],
        videos=[[[_load(tmp_path, f) for f in it.video]] if it.video else [] for it in items],
        batch_size=1,
    )
    torch.testing.assert_close(reps, expected, atol=1e-5, rtol=0)


def test_an_unreadable_frame_is_a_dataset_error_naming_its_file(qwen, tmp_path):
    frames = _write_frames(tmp_path / "vid", 3)
    (tmp_path / frames[1]).write_bytes(b"not a jpeg")
    loader = batch_loader(
        [[0]],
        [Item("<|video_1|>", video=tuple(frames))],
        ItemSource("vids", [(4, "qry_video")]),
        model=qwen,
        image_root=tmp_path,
        device=torch.device("cpu"),
    )
    ((_, error),) = list(loader)
    assert isinstance(error, DatasetError)
    assert "row 4" in str(error) and "video frame" in str(error) and "frame_1.jpg" in str(error)


def test_video_token_counts_match_the_processed_lengths(tiny_backbone, tmp_path):
    name, folder = tiny_backbone
    model = EmbeddingModel.from_config(
        tiny_model_config(name, folder, video_as_images=name.startswith(("phi", "llava")))
    )
    items = [
        Item("<|video_1|> what happens here", video=tuple(_write_frames(tmp_path / "a", 3))),
        Item("<|video_1|>", video=tuple(_write_frames(tmp_path / "b", 8, size=(56, 112)))),
    ]
    counts = item_token_counts(model.processor, items, tmp_path, model.cfg.max_length)
    for it, est in zip(items, counts):
        frames = [[_load(tmp_path, f) for f in it.video]]
        true = int(model.processor([it.text], None, videos=[frames])["attention_mask"].sum())
        slack = 2 + (len(it.video) if model.cfg.video_as_images else 0)  # text pieces between the frames
        assert abs(est - true) <= slack, (name, est, true)


def test_video_tokens_cannot_be_counted_for_a_backbone_without_video_input(tiny_checkpoint, tmp_path):
    model = EmbeddingModel.from_config(tiny_model_config("llava_next", tiny_checkpoint("llava_next")))
    items = [Item("<|video_1|>", video=tuple(_write_frames(tmp_path / "a", 2)))]
    with pytest.raises(ConfigError, match="cannot count video tokens"):
        item_token_counts(model.processor, items, tmp_path, None)
