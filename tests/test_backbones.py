"""The properties every registered backbone must have, checked on each one's tiny checkpoint.

Parametrised over `available_backbones()` (the `tiny_backbone` fixture): adding a backbone (a module,
its line in the registry's module list, a tiny builder in `vlm2vec.testing`) puts it under these tests
with no edit here.
"""

from __future__ import annotations

import json

import pytest
import torch

from gradcache_reference import gradcache_plan, reps_in_row_order
from lockstep_checks import gradient_ready_order
from vlm2vec import EmbeddingModel
from vlm2vec.backbones import MMEB_IMAGE_PLACEHOLDER
from vlm2vec.backbones.placeholders import (
    Placeholder,
    expand_within_budget,
    media_expansion,
    scatter_features,
    split_at_placeholders,
    split_at_token,
)
from vlm2vec.gradcache import GradCache
from vlm2vec.losses import ContrastiveLoss
from vlm2vec.testing import tiny_model_config

TEXTS = [
    "<|image_1|> Represent the given image for classification",
    "a red circle on a striped background",
    "<|image_1|> Find a caption. <|image_2|> and compare",
    "blue",
]
LOSS = ContrastiveLoss(temperature=0.05)


def _model(tiny_backbone, **kw) -> EmbeddingModel:
    name, folder = tiny_backbone
    torch.manual_seed(0)
    return EmbeddingModel.from_config(tiny_model_config(name, folder, **kw)).eval()


def _image_positions(name: str, processor, ids: torch.Tensor) -> torch.Tensor:
    return ids < 0 if name == "phi3_v" else ids == processor.image_token_id


def test_pooling_and_reps_do_not_depend_on_padding_side_or_batch_mates(tiny_backbone, image_rows):
    model = _model(tiny_backbone)
    images = image_rows
    proc = model.processor
    with torch.no_grad():
        right = model.encode(proc(TEXTS, images))
        left_inputs = proc(TEXTS, images, padding_side="left")
        left = model.encode(left_inputs)
        single = torch.cat([model.encode(proc([t], [i])) for t, i in zip(TEXTS, images)])
    assert (left_inputs["attention_mask"][:, 0] == 0).any()  # some row really is left-padded
    assert torch.allclose(right, single, atol=1e-5, rtol=0)
    assert torch.allclose(left, single, atol=1e-5, rtol=0)
    assert torch.allclose(right.norm(dim=-1), torch.ones(len(TEXTS)), atol=1e-5)


def test_mmeb_placeholders_become_the_backbones_image_tokens_in_place(tiny_backbone, tiny_images):
    name, _ = tiny_backbone
    proc = _model(tiny_backbone).processor
    ids = proc(["a red circle <|image_1|> striped background <|image_2|> blue"], [tiny_images[:2]])[
        "input_ids"
    ][0]
    is_image = _image_positions(name, proc, ids)
    starts = (is_image[1:] & ~is_image[:-1]).nonzero().flatten() + 1
    ends = (~is_image[1:] & is_image[:-1]).nonzero().flatten() + 1
    assert len(starts) == 2 and len(ends) == 2  # two contiguous image runs, one per placeholder

    def text(span: torch.Tensor) -> str:
        return proc.tokenizer.decode(span[span >= 0].tolist(), skip_special_tokens=True)

    assert "red circle" in text(ids[: starts[0]])
    assert "striped background" in text(ids[ends[0] : starts[1]])
    assert "blue" in text(ids[ends[1] :])
    assert not MMEB_IMAGE_PLACEHOLDER.search(proc.tokenizer.decode(ids[ids >= 0].tolist()))
    with pytest.raises(ValueError, match=r"row 1: prompt has 1 image placeholder\(s\) but 0 image"):
        proc(["plain", "<|image_1|> x"], [[], []])


def test_full_adapter_and_merged_exports_reload_to_the_same_embeddings(tiny_backbone, image_rows, tmp_path):
    images = image_rows
    full = _model(tiny_backbone)
    with torch.no_grad():
        for p in full.encoder.parameters():
            p.add_(0.01 * torch.randn_like(p))
    before = full.embed(TEXTS, images)
    again = EmbeddingModel.from_pretrained(full.save_pretrained(tmp_path / "full"))
    assert torch.equal(before, again.embed(TEXTS, images))

    lora = _model(tiny_backbone, lora=True, lora_r=4, lora_alpha=8)
    with torch.no_grad():  # LoRA B starts at zero: give the adapters an effect to round-trip
        for n, p in lora.encoder.named_parameters():
            if "lora_" in n:
                p.copy_(0.05 * torch.randn_like(p))
    base = _model(tiny_backbone).embed(TEXTS, images)
    tuned = lora.embed(TEXTS, images)
    assert not torch.allclose(base, tuned, atol=1e-4)
    adapter = lora.save_pretrained(tmp_path / "adapter")
    assert json.loads((adapter / "vlm2vec.json").read_text())["kind"] == "adapter"
    assert torch.allclose(tuned, EmbeddingModel.from_pretrained(adapter).embed(TEXTS, images), atol=1e-6)
    merged = EmbeddingModel.from_pretrained(lora.save_pretrained(tmp_path / "merged", merged=True))
    assert not merged.is_lora
    assert torch.allclose(tuned, merged.embed(TEXTS, images), atol=1e-5)


def test_gradcache_gives_the_full_batch_loss_and_gradients(tiny_backbone, tiny_images, image_rows):
    """The loss of the full batch; the gradients of plain autograd through the same chunks (GradCache
    groups rows by length: chunk composition moves fp32 rounding, and with dropout the masks)."""
    model = _model(tiny_backbone).train()
    im = tiny_images
    qry = model.processor(TEXTS, image_rows)
    tgt = model.processor(
        ["red", "<|image_1|> the picture", "a caption", "<|image_1|> blue"], [[], [im[0]], [], [im[1]]]
    )
    params = [p for p in model.parameters() if p.requires_grad]

    model.zero_grad()
    full_loss = LOSS(model(qry=qry)["qry_reps"], model(tgt=tgt)["tgt_reps"]).detach()
    # gradients: plain autograd through the chunks GradCache forwards (rows grouped by length)
    ref_loss = LOSS(
        reps_in_row_order(model, qry, gradcache_plan(qry, 1), "qry"),
        reps_in_row_order(model, tgt, gradcache_plan(tgt, 3), "tgt"),
    )
    ref_loss.backward()
    ref = [p.grad.clone() for p in params]
    model.zero_grad()
    loss = GradCache(LOSS, 1, 3, split_fn=model.split_batch).step(model, qry, tgt)
    assert torch.allclose(loss, full_loss, rtol=1e-5)
    for p, g in zip(params, ref):
        assert torch.allclose(p.grad, g, rtol=1e-4, atol=1e-6)


def test_text_only_chunks_run_the_vision_path_with_an_exact_zero_in_the_same_gradient_order(
    tiny_backbone, tiny_images
):
    """DDP, ZeRO-2 (bucket order) and ZeRO-3 (gathers) need every rank to make the same gradients ready
    in the same order whatever mix of images its chunk holds (full fine-tuning, vision trainable)."""
    model = _model(tiny_backbone).train()
    proc = model.processor

    def order(texts, images=None):
        return gradient_ready_order(model.encoder, lambda: model.encode(proc(texts, images)).sum())

    with_image = order(["<|image_1|> a red circle", "blue"], [[tiny_images[0]], []])
    trainable = [n for n, p in model.encoder.named_parameters() if p.requires_grad]
    assert sorted(with_image) == sorted(trainable)
    assert order(["a red circle", "blue"]) == with_image
    text_only = proc(["a red circle", "blue"])
    train_reps = model.encode(text_only).detach()
    model.eval()
    with torch.no_grad():
        assert torch.equal(model.encode(text_only), train_reps)  # the dummy adds an exact zero


def test_a_weight_file_key_that_lands_on_no_parameter_is_an_error_naming_it(tiny_backbone, tmp_path):
    """Loud loading: one tensor renamed in the model file (so one parameter gets no weights and one
    tensor has no home) makes opening the folder fail with both keys named."""
    import shutil

    from safetensors.torch import load_file, save_file

    from vlm2vec.errors import ModelLoadError

    name, folder = tiny_backbone
    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    file, key = next(
        (f, k)
        for f in sorted(broken.glob("*.safetensors"))
        for k in sorted(load_file(str(f)))
        if "down_proj" in k
    )
    tensors = load_file(str(file))
    tensors[key.replace("down_proj", "down_projection")] = tensors.pop(key)
    save_file(tensors, str(file), metadata={"format": "pt"})
    with pytest.raises(ModelLoadError, match="down_projection") as info:
        EmbeddingModel.from_config(tiny_model_config(name, broken))
    assert "down_proj" in str(info.value).replace("down_projection", "")


def test_placeholder_kit_cuts_text_tokens_only_and_keeps_every_media_run_whole():
    pieces, found = split_at_placeholders("a <|image_1|> b<|image_2|>")
    assert pieces == ["a ", " b", ""] and found == [Placeholder("image", 1), Placeholder("image", 2)]
    assert split_at_token([5, 9, 6, 9], 9) == [[5], [6], []]
    runs = [media_expansion(9, 2), media_expansion(8, 3, start=7, end=6)]
    row = expand_within_budget([[1, 2, 3], [4, 5], [6]], runs, max_text=4)
    assert row.ids == [1, 2, 3, 9, 9, 4, 7, 8, 8, 8, 6]
    assert row.types == [0, 0, 0, 1, 1, 0, 0, 1, 1, 1, 0]
    assert expand_within_budget([[1, 2, 3], [4, 5], [6]], runs, max_text=None).ids.count(5) == 1
    assert expand_within_budget([[1], [2], [3]], runs, max_text=0).ids == [9, 9, 7, 8, 8, 8, 6]
    with pytest.raises(ValueError, match="2 placeholder expansion"):
        expand_within_budget([[1], [2]], runs, max_text=None)


def test_feature_scatter_fills_media_positions_in_order_and_checks_the_count():
    embeds = torch.zeros(2, 3, 2)
    where = torch.tensor([[False, True, True], [True, False, False]])
    features = torch.arange(6.0).view(3, 2)
    out = scatter_features(embeds, where, features)
    assert torch.equal(out[where], features) and not out[~where].any()
    with pytest.raises(ValueError, match="3 media token positions in input_ids but 2 features"):
        scatter_features(embeds, where, features[:2])


def _video_frames(n: int, size: tuple[int, int] = (84, 56)) -> list:
    from PIL import Image

    return [Image.new("RGB", size, (40 * i % 256, 90, 200 - 20 * i)) for i in range(n)]


def test_a_video_is_one_input_on_qwen_and_an_error_naming_the_backbone_elsewhere(tiny_backbone):
    from vlm2vec.config import ConfigError

    name, _ = tiny_backbone
    proc = _model(tiny_backbone).processor
    call = lambda: proc(["<|video_1|> what happens", "text"], videos=[[_video_frames(3)], []])  # noqa: E731
    if hasattr(proc, "num_video_tokens"):  # a backbone with a video input says what a video costs
        batch = call()
        assert int((batch["input_ids"] == proc.video_token_id).sum()) == proc.num_video_tokens(3, (84, 56))
        return
    with pytest.raises(ConfigError, match=rf"row 0: the {name} backbone has no video input.*video_as_images"):
        call()


def test_video_as_images_gives_the_frames_as_images_in_placeholder_order(tiny_backbone, tiny_images):
    model = _model(tiny_backbone, video_as_images=True)
    frames = _video_frames(3)
    as_video = model.processor(
        ["<|image_1|> then <|video_1|> and <|image_2|>", "text"],
        [[tiny_images[0], tiny_images[1]], []],
        videos=[[frames], []],
    )
    as_images = model.processor(
        ["<|image_1|> then <|image_2|><|image_3|><|image_4|> and <|image_5|>", "text"],
        [[tiny_images[0], *frames, tiny_images[1]], []],
    )
    assert as_video.keys() == as_images.keys()
    for key in as_images:
        assert torch.equal(as_video[key], as_images[key]), key


def _video_model(tiny_backbone, **kw) -> EmbeddingModel:
    """The backbone's tiny model reading videos: as one video input where it has one, else as frames."""
    name, folder = tiny_backbone
    torch.manual_seed(0)
    as_images = name in ("phi3_v", "llava_next")
    return EmbeddingModel.from_config(tiny_model_config(name, folder, video_as_images=as_images, **kw)).eval()


VIDEO_TEXTS = ["<|video_1|> what happens", "a red circle", "<|image_1|> then <|video_1|>", "<|video_1|>"]


def _video_rows(tiny_images) -> tuple[list, list]:
    images = [[], [], [tiny_images[0]], []]
    videos = [[_video_frames(3)], [], [_video_frames(2, (56, 84))], [_video_frames(4)]]
    return images, videos


def test_video_rows_do_not_depend_on_padding_side_or_batch_mates(tiny_backbone, tiny_images):
    model = _video_model(tiny_backbone)
    proc = model.processor
    images, videos = _video_rows(tiny_images)
    with torch.no_grad():
        right = model.encode(proc(VIDEO_TEXTS, images, videos=videos))
        left = model.encode(proc(VIDEO_TEXTS, images, padding_side="left", videos=videos))
        single = torch.cat(
            [model.encode(proc([t], [i], videos=[v])) for t, i, v in zip(VIDEO_TEXTS, images, videos)]
        )
    assert torch.allclose(right, single, atol=1e-5, rtol=0)
    assert torch.allclose(left, single, atol=1e-5, rtol=0)


def test_text_image_video_and_mixed_batches_record_the_same_module_trace(tiny_backbone, tiny_images):
    """The lockstep rule with videos: one vision call per forward whatever the mix of rows, so ranks
    whose chunks differ in images, videos and text run the same modules (ZeRO-3) and make gradients
    ready in the same order (DDP, ZeRO-2)."""
    from lockstep_checks import assert_same_module_trace

    model = _video_model(tiny_backbone).train()
    proc = model.processor

    def run(texts, images=None, videos=None):
        return lambda: model.encode(proc(texts, images, videos=videos))

    runs = {
        "text only (dummy image)": run(["a red circle", "blue"]),
        "image + text": run(["<|image_1|> a red circle", "blue"], [[tiny_images[0]], []]),
        "video + text": run(["<|video_1|> a clip", "blue"], None, [[_video_frames(3)], []]),
        "image and video rows": run(
            ["<|image_1|> a", "<|video_1|> b"], [[tiny_images[1]], []], [[], [_video_frames(2)]]
        ),
        "image and video in one row": run(
            ["<|video_1|> <|image_1|>"], [[tiny_images[2]]], [[_video_frames(4)]]
        ),
    }
    assert_same_module_trace(model, runs)
    orders = {label: gradient_ready_order(model.encoder, lambda r=r: r().sum()) for label, r in runs.items()}
    first = next(iter(orders.values()))
    assert all(order == first for order in orders.values()), orders.keys()


def test_gradcache_keeps_video_rows_whole_and_gives_the_full_batch_loss(tiny_backbone, tiny_images):
    model = _video_model(tiny_backbone).train()
    images, videos = _video_rows(tiny_images)
    qry = model.processor(VIDEO_TEXTS, images, videos=videos)
    tgt = model.processor(
        ["red", "<|image_1|> the picture", "a caption", "blue"], [[], [tiny_images[1]], [], []]
    )
    full_loss = LOSS(model(qry=qry)["qry_reps"], model(tgt=tgt)["tgt_reps"]).detach()
    model.zero_grad()
    loss = GradCache(LOSS, 1, 3, split_fn=model.split_batch).step(model, qry, tgt)
    assert torch.allclose(loss, full_loss, rtol=1e-5)
