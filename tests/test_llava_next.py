"""LLaVA-NeXT: our backbone against transformers' own class and processor; anyres and the resolutions."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from transformers import LlavaNextForConditionalGeneration, LlavaNextProcessor

from vlm2vec import EmbeddingModel
from vlm2vec.testing import tiny_model_config

TEXTS = ["<|image_1|> Represent the given image", "a red circle", "<|image_1|> x <|image_2|> and", "blue"]


@pytest.fixture(scope="module")
def folder(tiny_checkpoint):
    return tiny_checkpoint("llava_next")


@pytest.fixture(scope="module")
def model(folder):
    return EmbeddingModel.from_config(tiny_model_config("llava_next", folder)).eval()


def _llava(text: str) -> str:
    return text.replace("<|image_1|>", "<image>").replace("<|image_2|>", "<image>")


def test_placeholder_rewrite_gives_the_processors_own_token_layout(folder, model, image_rows):
    images = image_rows
    mine = model.processor(TEXTS, images)
    ref = LlavaNextProcessor.from_pretrained(folder)(
        text=[_llava(t) for t in TEXTS],
        images=[i for row in images for i in row],
        padding=True,
        return_tensors="pt",
    )
    for key in ("input_ids", "attention_mask", "pixel_values", "image_sizes"):
        assert torch.equal(mine[key], ref[key]), key
    counts = (mine["input_ids"] == model.processor.image_token_id).sum(-1).tolist()
    assert counts[1] == counts[3] == 0 and len(set(counts)) == 3  # anyres: the count follows each size


def test_hidden_states_equal_transformers_class_run_directly(folder, model, image_rows):
    inputs = model.processor(TEXTS, image_rows)
    reference = LlavaNextForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    kwargs = {k: inputs[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_sizes")}
    with torch.no_grad():
        ref = reference(**kwargs, output_hidden_states=True).hidden_states[-1]
        ours = model.backbone.last_hidden_state(model.encoder, inputs)
    mask = inputs["attention_mask"].bool()
    assert torch.allclose(ours[mask], ref[mask], atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    "resolution, size", [("high", [1344, 1344]), ("low", [336, 336]), ("native", [90, 56])]
)
def test_resolution_settings_resize_as_the_vlm2vec_code(folder, resolution, size):
    proc = EmbeddingModel.from_config(
        tiny_model_config("llava_next", folder, image_resolution=resolution)
    ).processor
    out = proc(["<|image_1|> x"], [[Image.new("RGB", (56, 90), "red")]])
    assert out["image_sizes"].tolist() == [size]


def test_unknown_resolution_is_a_clear_error(folder):
    with pytest.raises(ValueError, match="model.image_resolution must be one of"):
        EmbeddingModel.from_config(tiny_model_config("llava_next", folder, image_resolution="medium"))


def test_truncation_cuts_text_never_image_tokens(model, tiny_images):
    long_text = "<|image_1|> " + "red circle " * 40
    full = model.processor([long_text], [[tiny_images[0]]], max_length=1000)["input_ids"]
    cut = model.processor([long_text], [[tiny_images[0]]], max_length=5)["input_ids"]
    n_img = int((full == model.processor.image_token_id).sum())
    assert int((cut == model.processor.image_token_id).sum()) == n_img
    assert cut.shape[1] == n_img + 5 < full.shape[1]


def test_unused_clip_layers_are_frozen_and_lora_reaches_only_used_ones(folder, model):
    tower = model.encoder.model.vision_tower
    assert not any(p.requires_grad for p in tower.encoder.layers[-1].parameters())  # feature layer -2
    assert all(p.requires_grad for p in tower.encoder.layers[0].parameters())
    lora = EmbeddingModel.from_config(tiny_model_config("llava_next", folder, lora=True, lora_vision=True))
    names = [n for n, _ in lora.encoder.named_parameters() if "lora_" in n]
    assert any("language_model" in n for n in names)
    assert any("vision_tower.encoder.layers.0." in n for n in names)
    assert not any("vision_tower.encoder.layers.1." in n for n in names)
