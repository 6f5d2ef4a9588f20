"""EmbeddingModel on the tiny Qwen2-VL: pooling, batch invariance, processor rules, save/load, LoRA."""

import json
from pathlib import Path

import pytest
import torch

from lockstep_checks import gradient_ready_order
from vlm2vec import EmbeddingModel, last_token_pool
from vlm2vec.backbones import detect_backbone, get_backbone
from vlm2vec.errors import ModelLoadError
from vlm2vec.testing import make_tiny_checkpoint, tiny_model_config

TEXTS = [
    "<|image_1|> Represent the given image for classification",
    "a red circle on a striped background",
    "<|image_1|> Find a caption. <|image_2|> and compare",
    "blue",
]


def _model(folder, **kw):
    torch.manual_seed(0)
    return EmbeddingModel.from_config(tiny_model_config("qwen2_vl", folder, **kw)).eval()


def test_last_token_pool_matches_hand_gather_under_left_and_right_padding():
    hidden = torch.randn(3, 5, 4)
    right = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1], [1, 0, 0, 0, 0]])
    left = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 1]])
    expected_right = torch.stack([hidden[0, 2], hidden[1, 4], hidden[2, 0]])
    expected_left = torch.stack([hidden[0, 4], hidden[1, 4], hidden[2, 4]])
    assert torch.equal(last_token_pool(hidden, right), expected_right)
    assert torch.equal(last_token_pool(hidden, left), expected_left)


def test_detect_backbone_reads_model_type(tiny_qwen_dir):
    assert detect_backbone(tiny_qwen_dir) == "qwen2_vl"
    with pytest.raises(ModelLoadError, match="unknown backbone 'nope'"):
        get_backbone("nope")


@pytest.mark.parametrize("prompt_format", ["vlm2vec", "native"])
def test_batch_invariance_mixed_image_text_batch(tiny_qwen_dir, image_rows, prompt_format):
    model = _model(tiny_qwen_dir, prompt_format=prompt_format)
    images = image_rows
    with torch.no_grad():
        batch = model.encode(model.processor(TEXTS, images))
        single = torch.cat([model.encode(model.processor([t], [i])) for t, i in zip(TEXTS, images)])
        left = model.encode(model.processor(TEXTS, images, padding_side="left"))
    assert torch.allclose(batch, single, atol=1e-5, rtol=0)
    assert torch.allclose(left, single, atol=1e-5, rtol=0)
    assert torch.allclose(batch.norm(dim=-1), torch.ones(len(TEXTS)), atol=1e-5)


def test_prompt_formats_expand_placeholders_as_documented(tiny_qwen_dir, tiny_images):
    ours = _model(tiny_qwen_dir).processor
    native = _model(tiny_qwen_dir, prompt_format="native").processor
    a = ours([TEXTS[0]], [[tiny_images[0]]])
    b = native([TEXTS[0]], [[tiny_images[0]]])
    n_tokens = int(a["image_grid_thw"][0].prod()) // 4
    ids_a, ids_b = a["input_ids"][0].tolist(), b["input_ids"][0].tolist()
    assert ids_a.count(ours.image_token_id) == n_tokens == ids_b.count(native.image_token_id)
    assert ours.vision_start_id not in ids_a and ours.vision_end_id not in ids_a
    assert ids_b[0] == native.vision_start_id and ids_b[n_tokens + 1] == native.vision_end_id
    assert ids_a[:n_tokens] == [ours.image_token_id] * n_tokens


def test_vlm2vec_format_uses_1d_positions_native_uses_3d(tiny_qwen_dir, tiny_images):
    """Image pads in the vlm2vec format get consecutive positions, so moving to native changes reps."""
    m1 = _model(tiny_qwen_dir)
    m2 = _model(tiny_qwen_dir, prompt_format="native")
    with torch.no_grad():
        r1 = m1.encode(m1.processor([TEXTS[0]], [[tiny_images[0]]]))
        r2 = m2.encode(m2.processor([TEXTS[0]], [[tiny_images[0]]]))
    assert not torch.allclose(r1, r2, atol=1e-4)


def test_placeholder_mismatch_is_a_clear_error(tiny_qwen_dir, tiny_images):
    proc = _model(tiny_qwen_dir).processor
    with pytest.raises(ValueError, match=r"row 1: prompt has 1 image placeholder\(s\) but 0 image"):
        proc(["plain", "<|image_1|> x"], [[], []])
    with pytest.raises(ValueError, match="row 0: image placeholders must be"):
        proc(["<|image_2|> x"], [[tiny_images[0]]])
    with pytest.raises(ValueError, match=r"row 0: image placeholders must be .* got \[2, 1\]"):
        proc(["<|image_2|> a <|image_1|> b"], [[tiny_images[0], tiny_images[1]]])


def test_truncation_cuts_text_never_image_tokens(tiny_qwen_dir, tiny_images):
    proc = _model(tiny_qwen_dir).processor
    long_text = "<|image_1|> " + "red circle " * 50
    full = proc([long_text], [[tiny_images[0]]], max_length=1000)
    cut = proc([long_text], [[tiny_images[0]]], max_length=5)
    n_img = int((full["input_ids"] == proc.image_token_id).sum())
    assert int((cut["input_ids"] == proc.image_token_id).sum()) == n_img
    assert cut["input_ids"].shape[1] == n_img + 5 < full["input_ids"].shape[1]


def test_split_batch_routes_images_to_their_rows(tiny_qwen_dir, image_rows):
    model = _model(tiny_qwen_dir)
    inputs = model.processor(TEXTS, image_rows)
    with torch.no_grad():
        whole = model.encode(inputs)
        parts = torch.cat([model.encode(c) for c in model.split_batch(inputs, 2)])
        ones = torch.cat([model.encode(c) for c in model.split_batch(inputs, 1)])
    assert torch.allclose(whole, parts, atol=1e-5) and torch.allclose(whole, ones, atol=1e-5)


def test_forward_and_similarity_follow_the_model_card_shape(tiny_qwen_dir, tiny_images):
    model = _model(tiny_qwen_dir)
    q = model(qry=model.processor(TEXTS[0], [tiny_images[0]]))["qry_reps"]
    t = model(tgt=model.processor(TEXTS[1]))["tgt_reps"]
    out = model(qry=model.processor(TEXTS[1]))
    assert out["tgt_reps"] is None and q.shape == t.shape == (1, 64)
    assert torch.allclose(model.compute_similarity(q, t), (q * t).sum(-1, keepdim=True))


def test_full_model_save_load_gives_identical_embeddings(tiny_qwen_dir, image_rows, tmp_path):
    model = _model(tiny_qwen_dir)
    with torch.no_grad():  # make sure we are not comparing against the untouched base weights
        for p in model.encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    before = model.embed(TEXTS, image_rows)
    out = model.save_pretrained(tmp_path / "full")
    assert json.loads((out / "vlm2vec.json").read_text())["kind"] == "full"
    assert detect_backbone(out) == "qwen2_vl"
    again = EmbeddingModel.from_pretrained(out)
    assert torch.equal(before, again.embed(TEXTS, image_rows))


def _lora_model(folder):
    model = _model(folder, lora=True, lora_r=4, lora_alpha=8)
    with torch.no_grad():  # LoRA B starts at zero: give the adapters an effect to round-trip
        for name, p in model.encoder.named_parameters():
            if "lora_" in name:
                p.copy_(0.05 * torch.randn_like(p))
    return model


def test_lora_targets_only_the_language_model_by_default(tiny_qwen_dir):
    model = _lora_model(tiny_qwen_dir)
    lora_names = [n for n, _ in model.encoder.named_parameters() if "lora_" in n]
    assert lora_names and all("language_model" in n for n in lora_names)
    trainable = [n for n, p in model.encoder.named_parameters() if p.requires_grad]
    assert set(trainable) == set(lora_names)
    with_vision = _model(tiny_qwen_dir, lora=True, lora_vision=True)
    assert any("visual.blocks" in n and "lora_" in n for n, _ in with_vision.encoder.named_parameters())


def test_lora_adapter_round_trip_and_merged_export(tiny_qwen_dir, image_rows, tmp_path):
    model = _lora_model(tiny_qwen_dir)
    base = _model(tiny_qwen_dir).embed(TEXTS, image_rows)
    before = model.embed(TEXTS, image_rows)
    assert not torch.allclose(before, base, atol=1e-4)  # the adapters do something
    adapter = model.save_pretrained(tmp_path / "adapter")
    assert (adapter / "adapter_config.json").is_file() and not (adapter / "model.safetensors").exists()
    reloaded = EmbeddingModel.from_pretrained(adapter)
    assert Path(json.loads((adapter / "vlm2vec.json").read_text())["model"]["path"]).is_absolute()
    assert torch.allclose(before, reloaded.embed(TEXTS, image_rows), atol=1e-6)
    merged = model.save_pretrained(tmp_path / "merged", merged=True)
    assert json.loads((merged / "vlm2vec.json").read_text())["kind"] == "merged"
    from_merged = EmbeddingModel.from_pretrained(merged)
    assert not from_merged.is_lora
    assert torch.allclose(before, from_merged.embed(TEXTS, image_rows), atol=1e-5)
    assert model.is_lora  # exporting merged did not merge the live model


def test_save_is_atomic_on_failure(tiny_qwen_dir, tmp_path, monkeypatch):
    model = _model(tiny_qwen_dir)
    out = model.save_pretrained(tmp_path / "m")
    before = sorted(p.name for p in out.iterdir())

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(model.backbone, "save_model", boom)
    with pytest.raises(RuntimeError, match="disk full"):
        model.save_pretrained(out)
    assert sorted(p.name for p in out.iterdir()) == before
    assert [p.name for p in tmp_path.iterdir()] == ["m"]


def test_qwen2_5_vl_tiny_model_is_batch_invariant(tmp_path, image_rows):
    folder = make_tiny_checkpoint("qwen2_5_vl", tmp_path / "q25")
    model = EmbeddingModel.from_config(tiny_model_config("qwen2_5_vl", folder)).eval()
    images = image_rows
    with torch.no_grad():
        batch = model.encode(model.processor(TEXTS, images))
        single = torch.cat([model.encode(model.processor([t], [i])) for t, i in zip(TEXTS, images)])
    assert torch.allclose(batch, single, atol=1e-5, rtol=0)


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a folder"):
        EmbeddingModel.from_config(tiny_model_config("qwen2_vl", tmp_path / "nowhere"))


def test_text_only_training_batch_still_runs_the_vision_tower(tiny_qwen_dir):
    """ZeRO-3 and DDP need every rank to run (and give gradients to) the vision tower every step; only
    in training (inference does not pay for the dummy image)."""
    model = _model(tiny_qwen_dir).train()
    visual = model.encoder.model.visual
    calls = []
    handle = visual.register_forward_pre_hook(lambda mod, args: calls.append(args[0].shape))
    try:
        inputs = model.processor(["a red circle", "blue"])
        reps = model.encode(inputs)
        reps.sum().backward()
        assert len(calls) == 1
        grads = [p.grad for p in visual.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.count_nonzero(g) == 0 for g in grads)
        model.eval()
        with torch.no_grad():
            assert torch.equal(model.encode(inputs), reps.detach())  # the zero is exact
        assert len(calls) == 1  # not run in eval mode
    finally:
        handle.remove()


@pytest.mark.parametrize(
    "name, checkpointing", [("qwen2_vl", False), ("qwen2_vl", True), ("qwen2_5_vl", False)]
)
def test_text_only_and_image_batches_make_gradients_ready_in_the_same_order(
    tmp_path, tiny_qwen_dir, tiny_images, name, checkpointing
):
    """ZeRO-2 fills its reduction buckets in this order on each rank: a rank with a text-only chunk must
    agree with a rank whose chunk has images (full fine-tuning, vision tower trainable)."""
    folder = tiny_qwen_dir if name == "qwen2_vl" else make_tiny_checkpoint(name, tmp_path / name)
    torch.manual_seed(0)
    cfg = tiny_model_config(name, folder, gradient_checkpointing=checkpointing)
    model = EmbeddingModel.from_config(cfg).train()
    proc = model.processor

    def order(texts, images=None):
        return gradient_ready_order(model.encoder, lambda: model.encode(proc(texts, images)).sum())

    with_image = order(["<|image_1|> a red circle", "blue"], [[tiny_images[0]], []])
    trainable = [n for n, p in model.encoder.named_parameters() if p.requires_grad]
    assert sorted(with_image) == sorted(trainable) and any(".visual." in n for n in trainable)
    assert order(["a red circle", "blue"]) == with_image
    assert order(["<|image_1|> x <|image_2|>"], [[tiny_images[1], tiny_images[2]]]) == with_image


@pytest.mark.parametrize(
    "setting, message",
    [
        ({"image_resolution": "low"}, r"model.image_resolution='low': the qwen2_vl backbone does not read"),
        ({"system_instruction": "Find it"}, r"model.system_instruction='Find it': the qwen2_vl backbone"),
    ],
)
def test_a_setting_the_backbone_would_ignore_is_an_error(tiny_qwen_dir, tmp_path, setting, message):
    from vlm2vec.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        EmbeddingModel.from_config(tiny_model_config("qwen2_vl", tiny_qwen_dir, **setting))
    if "system_instruction" in setting:  # Qwen3-VL reads it, but only in the qwen3_vl_embedding format
        qwen3 = make_tiny_checkpoint("qwen3_vl", tmp_path / "qwen3")
        with pytest.raises(ConfigError, match=r"system_instruction is read only with model.prompt_format"):
            EmbeddingModel.from_config(tiny_model_config("qwen3_vl", qwen3, **setting))
