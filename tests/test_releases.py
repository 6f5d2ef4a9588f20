"""VLM2Vec's released checkpoint layouts open exactly, and loaded models are ready for inference.

Each release layout is rebuilt around a tiny base (`release_layouts`); the expected
embeddings come from a plain base model whose weights this file edits by hand from the adapter file
(W + scale * B @ A, then DoRA's m * V / ||V|| per output row), with the old key names mapped by hand.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from release_layouts import write_vlm2vec_lora, write_vlm2vec_qwen2vl
from vlm2vec import EmbeddingModel
from vlm2vec.config import Config, ModelConfig, load_config, save_config
from vlm2vec.encoding import load_embedding_model
from vlm2vec.errors import ModelLoadError
from vlm2vec.testing import make_tiny_checkpoint

TEXTS = ["<|image_1|> Represent the given image for classification", "a red circle on a striped background"]
PEFT = "base_model.model."


def _images(tiny_images):
    return [[tiny_images[0]], []]


def qwen_new_name(old: str) -> str:
    """By hand, from REFERENCE §8: 4.4x `model.*` / `visual.*` -> 5.x `model.language_model.*` / `model.visual.*`."""
    if old.startswith("visual."):
        return "model." + old
    if old.startswith("model."):
        return "model.language_model." + old.removeprefix("model.")
    return old


def hand_applied(base: Path, folder: Path, new_name=lambda k: k) -> EmbeddingModel:
    """The base model with the adapter folded into its weights by hand, in fp32."""
    model = EmbeddingModel.from_config(ModelConfig(path=str(base)))
    settings = json.loads((folder / "adapter_config.json").read_text())
    scale = settings["lora_alpha"] / settings["r"]
    adapter = torch.load(folder / "adapter_model.bin", map_location="cpu", weights_only=True)
    adapter = {k.removeprefix(PEFT): v.float() for k, v in adapter.items()}
    params = dict(model.encoder.named_parameters())
    modules = sorted({k.split(".lora_")[0] for k in adapter})
    with torch.no_grad():
        for mod in modules:
            a, b = adapter[f"{mod}.lora_A.weight"], adapter[f"{mod}.lora_B.weight"]
            weight = params[new_name(mod) + ".weight"]
            merged = weight + scale * b @ a
            magnitude = adapter.get(f"{mod}.lora_magnitude_vector")
            if magnitude is not None:
                merged = magnitude[:, None] * merged / merged.norm(dim=1, keepdim=True)
            weight.copy_(merged)
    return model


@pytest.fixture(scope="module")
def phi_base(tmp_path_factory):
    return make_tiny_checkpoint("phi3_v", tmp_path_factory.mktemp("phi35v") / "base")


@pytest.fixture(scope="module")
def qwen2b(tmp_path_factory, tiny_qwen_dir):
    return write_vlm2vec_qwen2vl(tmp_path_factory.mktemp("rel") / "VLM2Vec-Qwen2VL-2B", tiny_qwen_dir)


@pytest.fixture(scope="module")
def qwen7b(tmp_path_factory, tiny_qwen_dir):
    folder = tmp_path_factory.mktemp("rel") / "VLM2Vec-Qwen2VL-7B"
    return write_vlm2vec_qwen2vl(folder, tiny_qwen_dir, merged_shards=True, seed=1)


def test_qwen2vl_adapter_with_old_key_names_equals_the_hand_applied_adapter(
    tiny_qwen_dir, qwen2b, tiny_images
):
    keys = torch.load(qwen2b / "adapter_model.bin", weights_only=True)
    assert all(k.startswith(PEFT + "model.layers.") for k in keys)  # the released (old) names
    expected_model = hand_applied(tiny_qwen_dir, qwen2b, qwen_new_name)
    expected = expected_model.embed(TEXTS, _images(tiny_images))
    base = EmbeddingModel.from_pretrained(tiny_qwen_dir).embed(TEXTS, _images(tiny_images))
    assert not torch.allclose(expected, base, atol=1e-3)  # the adapter does something
    opened = EmbeddingModel.from_pretrained(qwen2b, path=str(tiny_qwen_dir))
    torch.testing.assert_close(opened.embed(TEXTS, _images(tiny_images)), expected, atol=1e-5, rtol=0)
    # the evaluator's route: --model.path=<base> --model.checkpoint=<release>
    evaluated, _ = load_embedding_model(ModelConfig(path=str(tiny_qwen_dir), checkpoint=str(qwen2b)))
    torch.testing.assert_close(evaluated.embed(TEXTS, _images(tiny_images)), expected, atol=1e-5, rtol=0)


def test_phi35v_bf16_dora_adapter_on_clip_and_lm_equals_the_hand_applied_adapter(
    tmp_path, phi_base, tiny_images
):
    folder = write_vlm2vec_lora(tmp_path / "VLM2Vec-LoRA", phi_base)
    tensors = torch.load(folder / "adapter_model.bin", weights_only=True)
    assert {t.dtype for t in tensors.values()} == {torch.bfloat16}
    assert any("img_processor.vision_model.encoder.layers.0.self_attn.q_proj" in k for k in tensors)
    assert any(k.endswith("lora_magnitude_vector") for k in tensors)
    expected_model = hand_applied(phi_base, folder)
    expected = expected_model.embed(TEXTS, _images(tiny_images))
    opened = EmbeddingModel.from_pretrained(folder, path=str(phi_base))
    torch.testing.assert_close(opened.embed(TEXTS, _images(tiny_images)), expected, atol=1e-5, rtol=0)
    # the CLIP adapters matter: folding only the LM's in gives other image embeddings
    lm_only = dict(tensors)
    for key in [k for k in lm_only if "vision_model" in k]:
        del lm_only[key]
    torch.save(lm_only, folder / "adapter_model.bin")
    partial = hand_applied(phi_base, folder).embed(TEXTS, _images(tiny_images))
    assert not torch.allclose(partial[0], expected[0], atol=1e-4)


def test_qwen2vl_7b_root_opens_as_adapter_or_as_its_merged_old_name_shards(
    tiny_qwen_dir, qwen7b, tiny_images
):
    with pytest.raises(ModelLoadError, match=r"Qwen/Qwen2-VL-7B-Instruct.*pass path=.*weights='full'"):
        EmbeddingModel.from_pretrained(qwen7b)
    with pytest.raises(ModelLoadError, match=r"adapter over 'Qwen/Qwen2-VL-7B-Instruct'; model\.path"):
        load_embedding_model(ModelConfig(path=None, checkpoint=str(qwen7b)))  # the evaluator's route
    expected_model = hand_applied(tiny_qwen_dir, qwen7b, qwen_new_name)
    expected = expected_model.embed(TEXTS, _images(tiny_images))
    adapter = EmbeddingModel.from_pretrained(qwen7b, path=str(tiny_qwen_dir))  # the default: the adapter
    assert adapter.is_lora
    torch.testing.assert_close(adapter.embed(TEXTS, _images(tiny_images)), expected, atol=1e-5, rtol=0)

    full = EmbeddingModel.from_pretrained(qwen7b, weights="full")
    assert not full.is_lora
    shards = {}
    for file in sorted(qwen7b.glob("pytorch_model-*-of-00004.bin")):
        shards.update(torch.load(file, weights_only=True))
    assert any(k.startswith("visual.") for k in shards) and any(k.startswith("model.layers.") for k in shards)
    params = full.encoder.state_dict()
    assert {qwen_new_name(k) for k in shards} == set(params)
    for old, tensor in shards.items():
        assert torch.equal(params[qwen_new_name(old)], tensor.float()), old
    evaluated, _ = load_embedding_model(ModelConfig(path=str(qwen7b)))  # --model.path=<7B root>: its weights
    assert not evaluated.is_lora
    assert all(torch.equal(params[k], v) for k, v in evaluated.encoder.state_dict().items())
    # the shards hold base + adapter merged, to bf16 precision
    for name, value in expected_model.encoder.state_dict().items():
        torch.testing.assert_close(params[name], value, rtol=2**-7, atol=1e-6)


def test_a_removed_or_renamed_adapter_tensor_is_an_error_naming_it(tmp_path, tiny_qwen_dir, qwen2b):
    tensors = torch.load(qwen2b / "adapter_model.bin", weights_only=True)
    victim = PEFT + "model.layers.1.self_attn.v_proj.lora_B.weight"
    assert victim in tensors
    removed = shutil.copytree(qwen2b, tmp_path / "removed")
    torch.save({k: v for k, v in tensors.items() if k != victim}, removed / "adapter_model.bin")
    with pytest.raises(
        ModelLoadError, match=r"does not hold: .*layers\.1\.self_attn\.v_proj\.lora_B\.default\.weight"
    ):
        EmbeddingModel.from_pretrained(removed, path=str(tiny_qwen_dir))
    renamed = shutil.copytree(qwen2b, tmp_path / "renamed")
    wrong = victim.replace("v_proj", "w_proj")
    torch.save({(wrong if k == victim else k): v for k, v in tensors.items()}, renamed / "adapter_model.bin")
    with pytest.raises(ModelLoadError, match=r"land on no adapter parameter: " + wrong.replace(".", r"\.")):
        EmbeddingModel.from_pretrained(renamed, path=str(tiny_qwen_dir))


def test_adapter_model_opens_in_eval_mode_and_identical_calls_are_bit_identical(
    tiny_qwen_dir, qwen2b, tiny_images
):
    model = EmbeddingModel.from_pretrained(qwen2b, path=str(tiny_qwen_dir))
    assert json.loads((qwen2b / "adapter_config.json").read_text())["lora_dropout"] == 0.1
    assert not any(m.training for m in model.modules())
    inputs = model.processor(TEXTS, _images(tiny_images))
    with torch.inference_mode():  # as the README's model-card example
        first = model(qry=inputs)["qry_reps"]
        assert torch.equal(first, model(qry=inputs)["qry_reps"])
        model.embed(TEXTS, _images(tiny_images))
        assert torch.equal(first, model(qry=inputs)["qry_reps"])


def test_a_released_adapter_uses_its_bases_processor_as_the_reference(tmp_path, tiny_qwen_dir, qwen2b):
    folder = shutil.copytree(qwen2b, tmp_path / "release")
    settings = json.loads((folder / "preprocessor_config.json").read_text())
    base_max = settings["size"]["longest_edge"]
    settings["size"]["longest_edge"] = base_max * 4
    (folder / "preprocessor_config.json").write_text(json.dumps(settings))
    model = EmbeddingModel.from_pretrained(folder, path=str(tiny_qwen_dir))
    assert model.processor.image_processor.size["longest_edge"] == base_max


def test_embed_restores_every_submodules_own_mode(tiny_qwen_dir, qwen2b, tiny_images):
    model = EmbeddingModel.from_pretrained(qwen2b, path=str(tiny_qwen_dir)).train()
    model.encoder.get_base_model().model.visual.eval()  # a mixed state: must come back as it was
    before = {name: m.training for name, m in model.named_modules()}
    assert any(before.values()) and not all(before.values())
    model.embed(TEXTS, _images(tiny_images))
    assert {name: m.training for name, m in model.named_modules()} == before


def test_phi35v_folder_opens_without_naming_the_backbone(phi_base):
    model = EmbeddingModel.from_config(ModelConfig(path=str(phi_base)))
    assert model.backbone.name == "phi3_v" and model.cfg.backbone == "phi3_v"
    assert EmbeddingModel.from_pretrained(phi_base).backbone.name == "phi3_v"  # VLM2Vec-Full's layout


def test_a_400_token_text_is_not_truncated_at_inference(tmp_path, tiny_qwen_dir, phi_base):
    text = " ".join(["red circle on a blue square"] * 70)
    for base in (tiny_qwen_dir, phi_base):
        model = EmbeddingModel.from_pretrained(base)
        assert model.cfg.max_length is None
        tok = model.processor.tokenizer
        n = len(tok(text)["input_ids"])
        assert n >= 400
        assert int(model.processor([text])["attention_mask"].sum()) == n
    saved = EmbeddingModel.from_pretrained(tiny_qwen_dir).save_pretrained(tmp_path / "saved")
    assert json.loads((saved / "vlm2vec.json").read_text())["model"]["max_length"] is None
    assert EmbeddingModel.from_pretrained(saved).cfg.max_length is None
    save_config(Config(), tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml").model.max_length is None


class _Touch:
    """Unpickling this runs code (creates a file): a `weights_only` reader must refuse it."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.touch, (self.path,))


def test_bin_files_are_read_with_weights_only(tmp_path, tiny_qwen_dir, qwen2b, qwen7b):
    marker = tmp_path / "code_ran"
    adapter = shutil.copytree(qwen2b, tmp_path / "adapter")
    tensors = torch.load(adapter / "adapter_model.bin", weights_only=True)
    torch.save({**tensors, "payload": _Touch(marker)}, adapter / "adapter_model.bin")
    with pytest.raises(
        ModelLoadError, match=r"adapter_model\.bin: not a tensor file readable with weights_only"
    ):
        EmbeddingModel.from_pretrained(adapter, path=str(tiny_qwen_dir))
    assert not marker.exists()
    root = shutil.copytree(qwen7b, tmp_path / "root")
    shard = root / "pytorch_model-00002-of-00004.bin"
    torch.save({**torch.load(shard, weights_only=True), "payload": _Touch(marker)}, shard)
    with pytest.raises(ModelLoadError, match=r"a \.bin file holds more than tensors"):
        EmbeddingModel.from_pretrained(root, weights="full")
    assert not marker.exists()
