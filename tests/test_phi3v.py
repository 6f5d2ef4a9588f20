"""Phi-3.5-V written natively: processor facts, official layout, independent recomputation, round trips."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file
from tokenizers import Tokenizer
from transformers import CLIPVisionConfig, CLIPVisionModel, Phi3Config, Phi3Model

from vlm2vec.backbones import detect_backbone, get_backbone
from vlm2vec.backbones.phi3v_processor import CLIP_MEAN, CLIP_STD, Phi3VProcessor
from vlm2vec.config import ModelConfig
from vlm2vec.testing.tiny_phi3v import train_tokenizer

VISION_PREFIX = "model.vision_embed_tokens."
CLIP_PREFIX = VISION_PREFIX + "img_processor.vision_model."


def noise_image(width: int, height: int, seed: int = 0, mode: str = "RGB") -> Image.Image:
    channels = 4 if mode == "RGBA" else 3
    data = np.random.RandomState(seed).randint(0, 256, size=(height, width, channels), dtype=np.uint8)
    return Image.fromarray(data, mode)


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer()


@pytest.fixture(scope="module")
def folder(tiny_checkpoint) -> Path:
    return tiny_checkpoint("phi3_v")


@pytest.fixture(scope="module")
def backbone():
    return get_backbone("phi3_v")


@pytest.fixture(scope="module")
def cfg(folder) -> ModelConfig:
    return ModelConfig(backbone="phi3_v", path=str(folder), dtype="float32", num_crops=4, max_length=64)


@pytest.fixture(scope="module")
def model(backbone, folder, cfg):
    return backbone.load_model(str(folder), cfg)


@pytest.fixture(scope="module")
def processor(backbone, folder, cfg):
    return backbone.load_processor(str(folder), cfg)


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        state.update(load_file(str(file)))
    return state


# ------------------------------------------------------------------------------------- processor facts

REFERENCE_TOKENS = {
    4: {
        (336, 336): 757,
        (224, 224): 757,
        (640, 480): 757,
        (480, 640): 757,
        (1000, 200): 745,
        (150, 900): 781,
    },
    16: {(336, 336): 2509, (640, 480): 1921, (480, 640): 1933, (1000, 200): 2485, (150, 900): 2557},
}


@pytest.mark.parametrize("num_crops", [4, 16])
def test_token_counts_equal_formula_and_reference_numbers(tokenizer, num_crops):
    proc = Phi3VProcessor(tokenizer, num_crops=num_crops, crop_size=336, patch_size=14)
    for (w, h), expected in REFERENCE_TOKENS[num_crops].items():
        batch = proc("<|image_1|>", [Image.new("RGB", (w, h), (10, 20, 30))])
        got = int((batch["input_ids"] == -1).sum())
        H, W = batch["image_sizes"][0, 0].tolist()
        h_c, w_c = H // 336, W // 336
        assert got == expected == (h_c * w_c + 1) * 144 + 1 + (h_c + 1) * 12, (w, h)
        assert h_c * w_c <= num_crops and proc.num_image_tokens(Image.new("RGB", (w, h))) == expected


def expected_hd_crops(image: Image.Image, num_crops: int, crop: int):
    """The HD transform recomputed from REFERENCE §5 with plain numpy/PIL loops."""
    w, h = image.size
    portrait = w < h
    if portrait:
        image = image.transpose(Image.Transpose.TRANSPOSE)
        w, h = image.size
    ratio = w / h
    s = max(k for k in range(1, num_crops + 1) if k * math.ceil(k / ratio) <= num_crops)
    new_w, new_h = s * crop, int(s * crop / ratio)
    resized = np.asarray(image.resize((new_w, new_h), Image.Resampling.BILINEAR), dtype=np.float32) / 255
    pad_h = math.ceil(new_h / crop) * crop
    canvas = np.ones((pad_h, new_w, 3), dtype=np.float32)
    top = (pad_h - new_h) // 2
    canvas[top : top + new_h] = resized
    if portrait:
        canvas = canvas.transpose(1, 0, 2)
    hd = torch.from_numpy(((canvas - np.array(CLIP_MEAN)) / np.array(CLIP_STD)).astype(np.float32)).permute(
        2, 0, 1
    )
    H, W = hd.shape[1:]
    thumb = F.interpolate(hd[None], size=(crop, crop), mode="bicubic", align_corners=False, antialias=False)[
        0
    ]
    tiles = [
        hd[:, i * crop : (i + 1) * crop, j * crop : (j + 1) * crop]
        for i in range(H // crop)
        for j in range(W // crop)
    ]
    return hd, [thumb, *tiles], (H, W)


@pytest.mark.parametrize(
    ("size", "grid"), [((640, 480), (2, 2)), ((150, 900), (4, 1)), ((1000, 200), (1, 4))]
)
def test_pixel_tiles_match_hd_transform_geometry(tokenizer, size, grid):
    proc = Phi3VProcessor(tokenizer, num_crops=4, crop_size=336, patch_size=14)
    image = noise_image(*size, seed=3)
    batch = proc("<|image_1|> x", [image])
    _, crops, (H, W) = expected_hd_crops(image, 4, 336)
    assert batch["image_sizes"][0, 0].tolist() == [H, W] == [grid[0] * 336, grid[1] * 336]
    pixels = batch["pixel_values"][0, 0]
    assert pixels.shape == (5, 3, 336, 336)
    for i, crop in enumerate(crops):
        torch.testing.assert_close(pixels[i], crop, atol=1e-5, rtol=0)
    assert torch.count_nonzero(pixels[len(crops) :]) == 0
    # the padding is white and centred on the short side
    white = (1 - torch.tensor(CLIP_MEAN)) / torch.tensor(CLIP_STD)
    short_axis = 2 if size[0] < size[1] else 1
    edge = pixels[1].select(short_axis, 0)  # first tile's first row (landscape) or column (portrait)
    assert torch.allclose(edge, white.view(3, 1).expand_as(edge), atol=1e-5)


def test_rgba_alpha_is_dropped(tokenizer):
    proc = Phi3VProcessor(tokenizer, num_crops=4, crop_size=56, patch_size=14)
    rgba = noise_image(80, 60, seed=5, mode="RGBA")
    dropped = Image.fromarray(np.asarray(rgba)[..., :3], "RGB")
    a = proc("<|image_1|>", [rgba])["pixel_values"]
    assert torch.equal(a, proc("<|image_1|>", [dropped])["pixel_values"])


# ------------------------------------------------------------------------------------------- prompts


def test_prompt_layout_bos_per_piece_and_image_positions(processor, folder):
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))  # the tokenizer.json, independently
    image = noise_image(640, 480)
    n = processor.num_image_tokens(image)
    text = " Represent the given image."
    ids = processor("<|image_1|>" + text, [image])["input_ids"][0].tolist()
    piece = raw.encode(text).ids
    assert piece[0] == 1 and raw.id_to_token(piece[1]) == "▁" and raw.id_to_token(piece[2]).startswith("▁R")
    assert ids == [1] + [-1] * n + piece
    only = processor("<|image_1|>", [image])["input_ids"][0].tolist()
    assert only == [1] + [-1] * n + [1]
    text_only = processor("a red circle")["input_ids"][0].tolist()
    assert text_only == raw.encode("a red circle").ids and text_only.count(1) == 1


def test_multi_image_prompt_places_each_image_where_its_placeholder_is(processor, folder):
    raw = Tokenizer.from_file(str(folder / "tokenizer.json"))
    a, b = noise_image(640, 480, 1), noise_image(150, 900, 2)
    ids = processor("Left <|image_1|> right <|image_2|>", [a, b])["input_ids"][0].tolist()
    na, nb = processor.num_image_tokens(a), processor.num_image_tokens(b)
    assert na != nb
    expected = raw.encode("Left ").ids + [-1] * na + raw.encode(" right ").ids + [-2] * nb + [1]
    assert ids == expected


def test_placeholder_mismatch_is_a_value_error_naming_the_row(processor):
    image = noise_image(64, 64)
    with pytest.raises(ValueError, match="row 1"):
        processor(["<|image_1|> ok", "<|image_1|> two images"], [[image], [image, image]])
    with pytest.raises(ValueError, match="row 0"):
        processor(["<|image_2|> numbering"], [[image]])
    with pytest.raises(ValueError, match="row 0"):
        processor(["no placeholder"], [[image]])


def test_truncation_cuts_text_but_never_image_tokens(processor):
    image = noise_image(640, 480)
    n = processor.num_image_tokens(image)
    long = " ".join(["the red circle"] * 40)
    batch = processor(["<|image_1|> " + long, long], [[image], None], max_length=6)
    ids, mask = batch["input_ids"], batch["attention_mask"]
    assert int((ids[0] == -1).sum()) == n
    assert int(((ids[0] >= 0) & (mask[0] == 1)).sum()) == 6
    assert int(mask[1].sum()) == 6


# ----------------------------------------------------------------------------------- official layout


def test_tiny_folder_has_official_config_and_key_names(folder):
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "phi3_v" and detect_backbone(folder) == "phi3_v"
    assert config["rope_scaling"]["type"] == "su"
    assert len(config["rope_scaling"]["short_factor"]) == len(config["rope_scaling"]["long_factor"]) == 8
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    keys = set(index["weight_map"])
    assert len(set(index["weight_map"].values())) > 1  # sharded
    assert keys == set(read_state_dict(folder))
    v = config["vision_config"]
    expected_vision = {
        CLIP_PREFIX + "embeddings.class_embedding",
        CLIP_PREFIX + "embeddings.patch_embedding.weight",
        CLIP_PREFIX + "embeddings.position_embedding.weight",
        *(CLIP_PREFIX + f"{n}.{p}" for n in ("pre_layrnorm", "post_layernorm") for p in ("weight", "bias")),
        *(
            CLIP_PREFIX + f"encoder.layers.{i}.{m}.{p}"
            for i in range(v["num_hidden_layers"])
            for m in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.out_proj")
            + ("layer_norm1", "mlp.fc1", "mlp.fc2", "layer_norm2")
            for p in ("weight", "bias")
        ),
        VISION_PREFIX + "glb_GN",
        VISION_PREFIX + "sub_GN",
        *(VISION_PREFIX + f"img_projection.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")),
    }
    assert {k for k in keys if k.startswith(VISION_PREFIX)} == expected_vision
    state = read_state_dict(folder)
    d4 = 4 * v["hidden_size"]
    assert state[VISION_PREFIX + "glb_GN"].shape == (1, 1, d4)
    assert state[VISION_PREFIX + "sub_GN"].shape == (1, 1, 1, d4)
    assert state[VISION_PREFIX + "img_projection.0.weight"].shape == (config["hidden_size"], d4)
    text = {k for k in keys if not k.startswith(VISION_PREFIX)}
    assert {"model.embed_tokens.weight", "model.norm.weight", "lm_head.weight"} <= text
    assert (
        "model.layers.0.self_attn.qkv_proj.weight" in text
        and "model.layers.1.mlp.gate_up_proj.weight" in text
    )


def reference_hidden_states(folder: Path, text: str, images: list[Image.Image], processor) -> torch.Tensor:
    """One row computed step by step from the raw tensors with stock CLIPVisionModel and Phi3Model."""
    config = json.loads((folder / "config.json").read_text())
    state = read_state_dict(folder)
    vcfg = CLIPVisionConfig(**config["vision_config"])
    clip = CLIPVisionModel(vcfg).eval()
    clip.load_state_dict({k[len(CLIP_PREFIX) :]: t for k, t in state.items() if k.startswith(CLIP_PREFIX)})
    glb, sub = state[VISION_PREFIX + "glb_GN"].reshape(-1), state[VISION_PREFIX + "sub_GN"].reshape(-1)
    w0, b0 = state[VISION_PREFIX + "img_projection.0.weight"], state[VISION_PREFIX + "img_projection.0.bias"]
    w2, b2 = state[VISION_PREFIX + "img_projection.2.weight"], state[VISION_PREFIX + "img_projection.2.bias"]
    crop, g = vcfg.image_size, vcfg.image_size // vcfg.patch_size
    m = g // 2

    def merged(feat: torch.Tensor, i: int, j: int) -> torch.Tensor:  # feat [g, g, D]
        return torch.cat(
            [feat[2 * i, 2 * j], feat[2 * i, 2 * j + 1], feat[2 * i + 1, 2 * j], feat[2 * i + 1, 2 * j + 1]]
        )

    image_tokens = []
    for image in images:
        _, crops, (H, W) = expected_hd_crops(image, processor.num_crops, crop)
        h_c, w_c = H // crop, W // crop
        with torch.no_grad():
            hs = clip(torch.stack(crops), output_hidden_states=True).hidden_states[-2][:, 1:]
        feats = hs.reshape(len(crops), g, g, -1)
        tokens = []
        for r in range(h_c * m):
            for c in range(w_c * m):
                tile = 1 + (r // m) * w_c + c // m
                tokens.append(merged(feats[tile], r % m, c % m))
            tokens.append(sub)
        tokens.append(glb)
        for r in range(m):
            tokens.extend(merged(feats[0], r, c) for c in range(m))
            tokens.append(sub)
        x = torch.stack(tokens)
        image_tokens.append(F.linear(F.gelu(F.linear(x, w0, b0)), w2, b2))

    ids = processor(text, images)["input_ids"][0]
    rope = dict(config["rope_scaling"])
    rope["rope_type"] = "longrope" if rope.pop("type") == "su" else rope["rope_type"]
    keep = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads", "rms_norm_eps", "max_position_embeddings", "original_max_position_embeddings",
            "pad_token_id", "bos_token_id", "eos_token_id")  # fmt: skip
    pcfg = Phi3Config(**{k: config[k] for k in keep}, rope_scaling=rope, rope_theta=config["rope_theta"])
    lm = Phi3Model(pcfg).eval()
    lm.load_state_dict(
        {
            k[len("model.") :]: t
            for k, t in state.items()
            if k.startswith("model.") and not k.startswith(VISION_PREFIX)
        }
    )
    with torch.no_grad():
        embeds = lm.embed_tokens(ids.clamp(min=0))
        for k, toks in enumerate(image_tokens, start=1):
            where = (ids == -k).nonzero().squeeze(-1)
            assert len(where) == len(toks)
            embeds[where] = toks
        return lm(inputs_embeds=embeds[None]).last_hidden_state[0]


def test_outputs_equal_independent_step_by_step_computation(folder, backbone, model, processor):
    images = [noise_image(640, 480, 11), noise_image(150, 900, 12)]
    text = "Compare <|image_1|> with <|image_2|> and say which is red"
    with torch.no_grad():
        got = backbone.last_hidden_state(model, processor(text, images))[0]
    ref = reference_hidden_states(folder, text, images, processor)
    assert got.shape == ref.shape
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_clip_runs_only_on_real_crops(backbone, model, processor):
    seen = []
    clip = model.model.vision_embed_tokens.img_processor.vision_model
    handle = clip.embeddings.register_forward_hook(lambda mod, args, out: seen.append(args[0].shape[0]))
    try:
        batch = processor(
            ["<|image_1|> a", "text only", "<|image_1|><|image_2|>"],
            [[noise_image(200, 200)], None, [noise_image(1000, 200), noise_image(60, 60)]],
        )
        with torch.no_grad():
            backbone.last_hidden_state(model, batch)
    finally:
        handle.remove()
    sizes = batch["image_sizes"].reshape(-1, 2).tolist()
    real = sum(1 + (h // 56) * (w // 56) for h, w in sizes if h > 0)
    assert seen == [real] and real < batch["pixel_values"].shape[0] * batch["pixel_values"].shape[1] * 5


# -------------------------------------------------------------------------------------- invariances


def test_batch_invariance_mixed_rows_fp32(backbone, model, processor):
    texts = [
        "<|image_1|> Represent the given image.",
        "a red circle on the left",
        "<|image_1|> and <|image_2|>",
    ]
    images = [[noise_image(640, 480, 21)], None, [noise_image(150, 900, 22), noise_image(90, 90, 23, "RGBA")]]
    with torch.no_grad():
        for side in ("right", "left"):
            batch = processor(texts, images, padding_side=side)
            hidden = backbone.last_hidden_state(model, batch)
            for row in range(len(texts)):
                alone = processor([texts[row]], [images[row]])
                ref = backbone.last_hidden_state(model, alone)[0]
                mask = batch["attention_mask"][row].bool()
                torch.testing.assert_close(hidden[row][mask], ref, atol=1e-5, rtol=1e-5)
        # row chunks (GradCache) slice every key on dim 0: each chunk equals its rows of the full batch
        batch = processor(texts, images)
        hidden = backbone.last_hidden_state(model, batch)
        chunks = backbone.split_batch(batch, 2)
        assert [c["input_ids"].shape[0] for c in chunks] == [2, 1]
        for start, chunk in zip((0, 2), chunks):
            part = backbone.last_hidden_state(model, chunk)
            rows = hidden[start : start + part.shape[0], : part.shape[1]]
            mask = chunk["attention_mask"].bool()
            torch.testing.assert_close(part[mask], rows[mask], atol=1e-5, rtol=1e-5)


def test_save_load_round_trip_is_identical(tmp_path, folder, backbone, model, processor, cfg):
    out = tmp_path / "saved"
    backbone.save_model(model, str(out))
    reloaded = backbone.load_model(str(out), cfg)
    assert set(read_state_dict(out)) == set(read_state_dict(folder))
    assert json.loads((out / "config.json").read_text()) == json.loads((folder / "config.json").read_text())
    batch = processor(["<|image_1|> x", "y"], [[noise_image(300, 200)], None])
    with torch.no_grad():
        assert torch.equal(
            backbone.last_hidden_state(model, batch), backbone.last_hidden_state(reloaded, batch)
        )


def test_lora_targets_language_model_only_and_vision_feature_layers(backbone, cfg, model):
    import re

    names = [n for n, _ in model.named_modules()]
    lm_regex = backbone.lora_target_modules(cfg)
    hits = [n for n in names if re.fullmatch(lm_regex, n)]
    assert hits and all(n.startswith("model.layers.") for n in hits)
    assert {n.rsplit(".", 1)[1] for n in hits} == {"qkv_proj", "o_proj", "gate_up_proj", "down_proj"}
    vcfg = ModelConfig(**{**cfg.__dict__, "lora_vision": True})
    vision_hits = [n for n in names if re.fullmatch(backbone.lora_target_modules(vcfg), n) and "vision" in n]
    layers = {int(n.split("encoder.layers.")[1].split(".")[0]) for n in vision_hits}
    assert layers == {0}  # 2 CLIP layers, features from the second-to-last: the last one gets no adapter
    assert {n.rsplit(".", 1)[1] for n in vision_hits} == {
        "q_proj",
        "k_proj",
        "v_proj",
        "out_proj",
        "fc1",
        "fc2",
    }


def test_lora_adapter_round_trip_through_embedding_model(tmp_path, folder, cfg):
    from vlm2vec import EmbeddingModel

    lora_cfg = ModelConfig(**{**cfg.__dict__, "lora": True, "lora_dropout": 0.0})
    em = EmbeddingModel.from_config(lora_cfg)
    with torch.no_grad():
        for name, param in em.encoder.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    texts, images = (
        ["<|image_1|> Represent the given image.", "a blue square"],
        [[noise_image(120, 90)], None],
    )
    before = em.embed(texts, images)
    plain = EmbeddingModel.from_config(cfg).embed(texts, images)
    assert not torch.allclose(before, plain, atol=1e-4)  # the adapter changes the embeddings
    em.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    after = EmbeddingModel.from_pretrained(tmp_path / "adapter").embed(texts, images)
    torch.testing.assert_close(after, before, atol=0, rtol=0)


def test_bf16_checkpointing_every_trainable_parameter_gets_a_gradient(backbone, folder, cfg, processor):
    model = backbone.load_model(str(folder), ModelConfig(**{**cfg.__dict__, "gradient_checkpointing": True}))
    model.train()
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    text_only = processor(["only words here"])
    backbone.last_hidden_state(model, text_only).sum().backward()  # vision params still in the graph
    assert trainable and all(p.grad is not None for _, p in trainable)
    model.zero_grad(set_to_none=True)
    batch = processor(["<|image_1|> a red circle", "words"], [[noise_image(100, 70)], None])
    backbone.last_hidden_state(model, batch).sum().backward()
    assert all(p.grad is not None for _, p in trainable)
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert "lm_head.weight" in frozen and CLIP_PREFIX + "post_layernorm.weight" in frozen

    bf16 = backbone.load_model(str(folder), ModelConfig(**{**cfg.__dict__, "dtype": "bfloat16"}))
    assert {p.dtype for p in bf16.parameters()} == {torch.bfloat16}
    assert bf16.model.rotary_emb.inv_freq.dtype == torch.float32
    with torch.no_grad():
        out = backbone.last_hidden_state(bf16, batch)
    assert out.dtype == torch.bfloat16 and torch.isfinite(out.float()).all()


def test_text_only_training_batch_runs_the_image_embedding_with_an_exact_zero(
    backbone, folder, cfg, processor
):
    """In training a text-only batch runs the real image-embedding module (ZeRO-3 gathers follow module
    hooks): every trainable vision parameter gets an exactly-zero gradient and the outputs are those of
    the text alone. Inference does not run it."""
    model = backbone.load_model(str(folder), cfg).train()
    vision = model.model.vision_embed_tokens
    calls = []
    handle = vision.register_forward_pre_hook(lambda mod, args: calls.append(args[1].tolist()))
    try:
        batch = processor(["only words here", "and more words"])
        hidden = backbone.last_hidden_state(model, batch)
        hidden.sum().backward()
        assert len(calls) == 1
        grads = [p.grad for p in vision.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.count_nonzero(g) == 0 for g in grads)
        model.eval()
        with torch.no_grad():
            assert torch.equal(backbone.last_hidden_state(model, batch), hidden.detach())
        assert len(calls) == 1
    finally:
        handle.remove()


def test_text_only_and_image_batches_make_gradients_ready_in_the_same_order(backbone, folder, cfg, processor):
    """ZeRO-2 fills its reduction buckets in this order on each rank: a rank with a text-only chunk must
    agree with a rank whose chunk has images (full fine-tuning, vision trainable)."""
    from lockstep_checks import gradient_ready_order

    model = backbone.load_model(str(folder), cfg).train()

    def order(texts, images=None):
        return gradient_ready_order(
            model, lambda: backbone.last_hidden_state(model, processor(texts, images)).sum()
        )

    with_image = order(["<|image_1|> a red circle", "blue"], [[noise_image(100, 70)], None])
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert sorted(with_image) == sorted(trainable) and any(n.startswith(VISION_PREFIX) for n in trainable)
    assert order(["a red circle", "blue"]) == with_image
    assert (
        order(["<|image_1|> x <|image_2|>"], [[noise_image(640, 480, 3), noise_image(60, 60, 4)]])
        == with_image
    )


def test_official_config_json_reads_with_clip_vit_l_and_longrope(tmp_path):
    from vlm2vec.backbones.phi3v import official_config_dict, read_config

    official = {
        "_attn_implementation": "flash_attention_2",
        "architectures": ["Phi3VForCausalLM"],
        "auto_map": {"AutoConfig": "configuration_phi3_v.Phi3VConfig"},
        "bos_token_id": 1,
        "embd_layer": {"embedding_cls": "image", "hd_transform_order": "sub_glb", "projection_cls": "mlp",
                       "use_hd_transform": True, "with_learnable_separator": True},
        "eos_token_id": 2,
        "hidden_size": 3072,
        "img_processor": {"image_dim_out": 1024, "model_name": "openai/clip-vit-large-patch14-336",
                          "name": "clip_vision_model", "num_img_tokens": 144},
        "intermediate_size": 8192,
        "max_position_embeddings": 131072,
        "model_type": "phi3_v",
        "num_attention_heads": 32,
        "num_hidden_layers": 32,
        "num_key_value_heads": 32,
        "original_max_position_embeddings": 4096,
        "pad_token_id": 32000,
        "rms_norm_eps": 1e-05,
        "rope_scaling": {"long_factor": [1.5] * 48, "short_factor": [1.0] * 48, "type": "su"},
        "rope_theta": 10000.0,
        "sliding_window": 262144,
        "torch_dtype": "bfloat16",
        "vocab_size": 32064,
    }  # fmt: skip
    (tmp_path / "config.json").write_text(json.dumps(official))
    config = read_config(tmp_path)
    assert config._attn_implementation == "sdpa" and config.vision_config._attn_implementation == "sdpa"
    v = config.vision_config
    assert (v.hidden_size, v.num_hidden_layers, v.image_size, v.patch_size, v.hidden_act) == (
        1024, 24, 336, 14, "quick_gelu"
    )  # fmt: skip
    rope = config.rope_parameters
    assert rope["rope_type"] == "longrope" and rope["long_factor"] == [1.5] * 48
    assert rope["original_max_position_embeddings"] == 4096
    back = official_config_dict(config, torch.bfloat16)
    assert back["rope_scaling"] == {"type": "su", "short_factor": [1.0] * 48, "long_factor": [1.5] * 48}
    assert "vision_config" not in back and back["auto_map"] == official["auto_map"]
    for key in (
        "hidden_size",
        "num_hidden_layers",
        "pad_token_id",
        "sliding_window",
        "embd_layer",
        "img_processor",
    ):
        assert back[key] == official[key]


def test_model_from_config_builds_a_random_model_in_the_requested_dtype(backbone, model, cfg, processor):
    fresh = backbone.model_from_config(model.config, ModelConfig(**{**cfg.__dict__, "dtype": "bfloat16"}))
    assert {p.dtype for p in fresh.parameters()} == {torch.bfloat16}
    assert set(fresh.state_dict()) == set(model.state_dict())
    batch = processor(["<|image_1|> x"], [[noise_image(70, 70)]])
    with torch.no_grad():
        assert backbone.last_hidden_state(fresh, batch).shape == (1, batch["input_ids"].shape[1], 64)
