"""Test setup: everything offline, small thread counts, and the fixtures many test modules share (tiny
checkpoints of every backbone, small images, a fresh accelerate state)."""

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

from vlm2vec.backbones import available_backbones  # noqa: E402


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """`tiny_checkpoint(backbone)`: that backbone's tiny checkpoint folder (official layout), built once
    per session."""
    from vlm2vec.testing import make_tiny_checkpoint

    built = {}

    def get(backbone: str):
        if backbone not in built:
            built[backbone] = make_tiny_checkpoint(backbone, tmp_path_factory.mktemp(f"tiny_{backbone}"))
        return built[backbone]

    return get


@pytest.fixture(scope="session")
def tiny_qwen_dir(tiny_checkpoint):
    """A tiny Qwen2-VL checkpoint folder in the official layout, built once per session."""
    return tiny_checkpoint("qwen2_vl")


@pytest.fixture(params=available_backbones())
def tiny_backbone(request, tiny_checkpoint):
    """(backbone name, its tiny checkpoint folder) for every registered backbone: the one way a test
    runs over "every backbone", so a new backbone is covered with no edit to the tests."""
    return request.param, tiny_checkpoint(request.param)


@pytest.fixture
def fresh_accelerate():
    """`train` builds an Accelerator; accelerate keeps process-wide state between calls in one process,
    so a test that trains in-process starts and ends with it reset."""
    from training_setup import reset_accelerate

    reset_accelerate()
    yield
    reset_accelerate()


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


@pytest.fixture(scope="session")
def image_rows(tiny_images):
    """The images of a four-row batch: one image, none, two, none."""
    return [[tiny_images[0]], [], [tiny_images[1], tiny_images[2]], []]
