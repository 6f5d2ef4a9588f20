"""Videos as a model input: Qwen-VL's temporal patching done from the image processor's output, the
video tokens in the prompt, and the one vision call that serves images and videos together."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from vlm2vec import EmbeddingModel
from vlm2vec.backbones.base import padded_positions, unwrap_peft
from vlm2vec.backbones.qwen_video import video_patches
from vlm2vec.backbones.qwen_vision import in_position_order, vision_args
from vlm2vec.testing import tiny_model_config


def _frames(n: int, size: tuple[int, int] = (84, 56), seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)) for _ in range(n)]


@pytest.fixture(scope="module")
def qwen(tiny_qwen_dir) -> EmbeddingModel:
    torch.manual_seed(0)
    return EmbeddingModel.from_config(tiny_model_config("qwen2_vl", tiny_qwen_dir)).eval()


def _documented_patches(frames, proc) -> tuple[torch.Tensor, list[int]]:
    """Qwen2-VL's documented video patching, by hand: rescale and normalise each frame (sides already
    multiples of 28 inside the pixel limits: no resize), repeat the last frame to an even count, cut
    (t, tp, C, h/m, m, p, w/m, m, p) and order (t, h/m, w/m, m, m | C, tp, p, p)."""
    ip = proc.image_processor
    mean, std = np.array(ip.image_mean).reshape(3, 1, 1), np.array(ip.image_std).reshape(3, 1, 1)
    arrays = [((np.asarray(f, dtype=np.float64).transpose(2, 0, 1) / 255.0) - mean) / std for f in frames]
    arrays += [arrays[-1]] * (len(arrays) % 2)
    x = np.stack(arrays)  # [F, C, H, W]
    p, m, tp = 14, 2, 2
    f, c, h, w = x.shape
    t, gh, gw = f // tp, h // p, w // p
    x = x.reshape(t, tp, c, gh // m, m, p, gw // m, m, p).transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return torch.from_numpy(x.reshape(t * gh * gw, c * tp * p * p)).float(), [t, gh, gw]


@pytest.mark.parametrize("count", [3, 4])
def test_qwen2vl_video_tensors_and_token_count_follow_the_documented_patching(qwen, count):
    proc = qwen.processor
    frames = _frames(count)
    batch = proc(["<|video_1|> what happens"], videos=[[frames]])
    expected, grid = _documented_patches(frames, proc)
    assert batch["video_grid_thw"].tolist() == [grid] == [[2, 4, 6]]
    assert torch.allclose(batch["pixel_values_videos"], expected, atol=1e-5)
    tokens = 2 * 4 * 6 // 4  # t * h * w / merge^2
    assert int((batch["input_ids"] == proc.video_token_id).sum()) == tokens
    assert proc.num_video_tokens(count, (84, 56)) == tokens
    assert "pixel_values" not in batch and batch["num_videos"].tolist() == [1]


def test_a_two_frame_video_of_one_frame_patches_like_that_image(qwen):
    proc = qwen.processor
    frame = _frames(1, seed=3)[0]
    pixels, grid = video_patches(proc.image_processor, [frame, frame])
    image = proc.image_processor(images=[frame], return_tensors="pt")
    assert torch.equal(pixels, image["pixel_values"]) and torch.equal(grid, image["image_grid_thw"][0])


def test_video_placeholders_are_checked_against_the_videos_given(qwen):
    proc = qwen.processor
    with pytest.raises(ValueError, match=r"row 1: prompt has 1 video placeholder\(s\) but 0 video"):
        proc(["a", "<|video_1|> b"], videos=[[], []])
    with pytest.raises(ValueError, match="row 0: video placeholders must be"):
        proc(["<|video_2|> a"], videos=[[_frames(2)]])


def test_truncation_cuts_text_never_a_video_token(qwen):
    proc = qwen.processor
    batch = proc(["<|video_1|> " + "many words here " * 20], videos=[[_frames(2)]], max_length=3)
    assert int((batch["input_ids"] == proc.video_token_id).sum()) == proc.num_video_tokens(2, (84, 56))
    assert int(batch["attention_mask"].sum()) == proc.num_video_tokens(2, (84, 56)) + 3


def test_images_and_videos_share_one_vision_call_and_match_transformers_own_forward(qwen, tiny_images):
    """Our one-call path (patches concatenated, features put back in pad order) gives the hidden states
    of transformers' own model, which runs images and videos through separate calls."""
    proc = qwen.processor
    batch = proc(
        ["<|video_1|> then <|image_1|>", "<|image_1|> and <|video_1|> <|video_2|>", "text"],
        [[tiny_images[0]], [tiny_images[1]], []],
        videos=[[_frames(3)], [_frames(2, seed=1), _frames(4, seed=2)], []],
    )
    inner = unwrap_peft(qwen.encoder).model
    with torch.no_grad():
        ours = qwen.backbone.last_hidden_state(qwen.encoder, batch)
        theirs = inner(
            **batch_without_counts(batch),
            position_ids=padded_positions(batch["attention_mask"]),
            use_cache=False,
        ).last_hidden_state
    assert torch.allclose(ours, theirs, atol=1e-5)


def batch_without_counts(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k not in ("num_images", "num_videos")}


def test_a_batch_without_videos_takes_the_image_path_unchanged(qwen, tiny_images):
    batch = qwen.processor(["<|image_1|> a", "b"], [[tiny_images[0]], []])
    assert not any("video" in k for k in batch)
    inner = unwrap_peft(qwen.encoder).model
    args, _ = vision_args(inner, batch)
    assert args[0] is batch["pixel_values"] and args[1] is batch["image_grid_thw"]
    features = torch.randn(int((batch["input_ids"] == proc_image_id(qwen)).sum()), 4)
    where, ordered = in_position_order(inner.config, batch["input_ids"], features)
    assert ordered is features and torch.equal(where, batch["input_ids"] == proc_image_id(qwen))


def proc_image_id(model: EmbeddingModel) -> int:
    return model.processor.image_token_id


def test_video_as_images_enters_the_fingerprint_only_when_set():
    from vlm2vec.config import ModelConfig
    from vlm2vec.encoding.fingerprint import model_fingerprint

    module = torch.nn.Linear(2, 2)
    with torch.no_grad():
        module.weight.copy_(torch.arange(4.0).view(2, 2))
        module.bias.zero_()
    module.cfg = ModelConfig(max_length=64)
    assert model_fingerprint(module) == "8733067690553cbef0f51a377faab1f0"  # as before the setting existed
    module.cfg = ModelConfig(max_length=64, video_as_images=True)
    assert model_fingerprint(module) != "8733067690553cbef0f51a377faab1f0"
