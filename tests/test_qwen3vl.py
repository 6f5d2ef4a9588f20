"""Qwen3-VL: our backbone against transformers' own class and processor, and the Qwen3-VL-Embedding format."""

from __future__ import annotations

import json

import pytest
import torch
from transformers import AutoImageProcessor, AutoTokenizer, Qwen3VLForConditionalGeneration
from transformers.models.qwen3_vl.processing_qwen3_vl import Qwen3VLProcessor as HFQwen3VLProcessor

from vlm2vec import EmbeddingModel
from vlm2vec.testing import tiny_model_config

TEXTS = ["<|image_1|> Represent the given image", "a red circle", "<|image_1|> x <|image_2|> and", "blue"]


class ImageOnlyProcessor(HFQwen3VLProcessor):
    """transformers' Qwen3VLProcessor without its video processor (which needs torchvision)."""

    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, chat_template=chat_template, **kwargs)


@pytest.fixture(scope="module")
def folder(tiny_checkpoint):
    return tiny_checkpoint("qwen3_vl")


@pytest.fixture(scope="module")
def hf_processor(folder):
    return ImageOnlyProcessor(
        AutoImageProcessor.from_pretrained(folder), AutoTokenizer.from_pretrained(folder)
    )


def _model(folder, **kw):
    return EmbeddingModel.from_config(tiny_model_config("qwen3_vl", folder, **kw)).eval()


def _native(text: str) -> str:
    return text.replace("<|image_1|>", "<|vision_start|><|image_pad|><|vision_end|>").replace(
        "<|image_2|>", "<|vision_start|><|image_pad|><|vision_end|>"
    )


def _chat(text: str, instruction: str = "Represent the user's input.") -> str:
    """The Qwen3-VL chat template with a system message and the generation prompt, written out."""
    return (
        f"<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{_native(text)}<|im_end|>\n"
        "<|im_start|>assistant\n"
    )


@pytest.mark.parametrize("prompt_format, layout", [("native", _native), ("qwen3_vl_embedding", _chat)])
def test_placeholder_rewrite_gives_the_processors_own_token_layout(
    folder, hf_processor, image_rows, prompt_format, layout
):
    ours = _model(folder, prompt_format=prompt_format).processor
    images = image_rows
    mine = ours(TEXTS, images)
    ref = hf_processor(
        text=[layout(t) for t in TEXTS],
        images=[i for row in images for i in row],
        padding=True,
        return_tensors="pt",
    )
    for key in ("input_ids", "attention_mask", "mm_token_type_ids", "pixel_values", "image_grid_thw"):
        assert torch.equal(mine[key].to(ref[key].dtype), ref[key]), key


@pytest.mark.parametrize("prompt_format", ["vlm2vec", "native", "qwen3_vl_embedding"])
def test_hidden_states_equal_transformers_class_run_directly(folder, image_rows, prompt_format):
    model = _model(folder, prompt_format=prompt_format)
    inputs = model.processor(TEXTS, image_rows)
    reference = Qwen3VLForConditionalGeneration.from_pretrained(folder, dtype=torch.float32).eval()
    kwargs = {k: inputs[k] for k in ("input_ids", "attention_mask", "pixel_values", "image_grid_thw")}
    kwargs["mm_token_type_ids"] = inputs["mm_token_type_ids"]
    if prompt_format == "vlm2vec":  # image pads with plain 1-D positions, given explicitly
        kwargs["position_ids"] = (inputs["attention_mask"].cumsum(-1) - 1).clamp(min=0)
    with torch.no_grad():
        ref = reference(**kwargs, output_hidden_states=True).hidden_states[-1]
        ours = model.backbone.last_hidden_state(model.encoder, inputs)
    mask = inputs["attention_mask"].bool()
    assert torch.allclose(ours[mask], ref[mask], atol=1e-5, rtol=0)


def test_qwen3_vl_embedding_folder_opens_in_its_own_format(folder, tmp_path, tiny_images):
    """A folder whose config.json names the embedding class embeds with the system-message format and
    the final token; an explicit override still wins."""
    import shutil

    release = tmp_path / "Qwen3-VL-Embedding-tiny"
    shutil.copytree(folder, release)
    cfg = json.loads((release / "config.json").read_text())
    (release / "config.json").write_text(json.dumps({**cfg, "architectures": ["Qwen3VLForEmbedding"]}))
    model = EmbeddingModel.from_pretrained(release, dtype="float32")
    assert model.cfg.prompt_format == "qwen3_vl_embedding"
    ids = model.processor(["a red circle"])["input_ids"][0].tolist()
    assert model.processor.tokenizer.decode(ids) == _chat("a red circle")
    assert EmbeddingModel.from_pretrained(folder).cfg.prompt_format == "vlm2vec"
    assert EmbeddingModel.from_pretrained(release, prompt_format="native").cfg.prompt_format == "native"
    custom = _model(
        folder, prompt_format="qwen3_vl_embedding", system_instruction="Find the matching caption"
    )
    text = custom.processor.tokenizer.decode(custom.processor(["blue"])["input_ids"][0].tolist())
    assert text == _chat("blue", "Find the matching caption.")  # a full stop is added, as the card's code


def test_lora_defaults_to_the_language_model_and_can_reach_the_vision_blocks(folder):
    lm_only = _model(folder, lora=True)
    names = [n for n, _ in lm_only.encoder.named_parameters() if "lora_" in n]
    assert names and all("language_model" in n for n in names)
    assert any(".mlp.gate_proj." in n for n in names)  # attention and MLP projections
    both = _model(folder, lora=True, lora_vision=True)
    assert any("visual.blocks" in n and "lora_" in n for n, _ in both.encoder.named_parameters())


def test_unknown_prompt_format_is_a_clear_error(folder):
    with pytest.raises(ValueError, match="model.prompt_format must be one of"):
        _model(folder, prompt_format="chatml")
