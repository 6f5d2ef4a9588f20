"""Test setup: everything offline, small thread counts, shared tiny fixtures."""

import os

for _var, _val in {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "WANDB_MODE": "offline",
    "TOKENIZERS_PARALLELISM": "false",
    "TRANSFORMERS_VERBOSITY": "error",
}.items():
    os.environ.setdefault(_var, _val)

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_qwen_dir(tmp_path_factory):
    """A tiny Qwen2-VL checkpoint folder in the official layout, built once per session."""
    from vlm2vec.testing import make_tiny_checkpoint

    return make_tiny_checkpoint("qwen2_vl", tmp_path_factory.mktemp("tiny_qwen2_vl"))


@pytest.fixture(scope="session")
def tiny_images():
    """A few small RGB images of different sizes and colours."""
    from PIL import Image, ImageDraw

    images = []
    for i, (size, colour) in enumerate([((64, 64), "red"), ((80, 56), "blue"), ((56, 90), "green")]):
        im = Image.new("RGB", size, "white")
        ImageDraw.Draw(im).ellipse([8 + i, 8, size[0] - 8, size[1] - 8 - i], fill=colour)
        images.append(im)
    return images
