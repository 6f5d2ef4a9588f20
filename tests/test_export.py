"""`vlm2vec export`: the exported folder, loaded by sentence-transformers, embeds as our model does
(cosine >= 0.9999 in fp32 on tiny models), for text, image and image+text wherever the export declares
them; what a target cannot reproduce is refused with one line, and nothing half-written is left.

transformers' Qwen-VL processors need torchvision for their video processor even for images; torchvision
has no CPU build here, so `no_torchvision_video` lets them load with the PIL image processor standing in
for the (unused) video processor. Everything else is the exported folder as a user loads it.
"""

from __future__ import annotations

import importlib.util
import json
import shutil

import pytest
import torch
from PIL import Image

from vlm2vec.commands import main
from vlm2vec.export import ExportError, export_model_folder
from vlm2vec.model import EmbeddingModel
from vlm2vec.testing.tiny import tiny_model_config

sentence_transformers = pytest.importorskip("sentence_transformers")

PARITY = 0.9999
TEXTS = ["a red square", "hello there world, this one is a little longer"]


@pytest.fixture
def no_torchvision_video(monkeypatch):
    """Without torchvision, give Qwen-VL processors the PIL image processor as their video processor."""
    if importlib.util.find_spec("torchvision") is not None:
        return
    import transformers
    import transformers.models.auto.video_processing_auto as video_auto
    import transformers.processing_utils as processing

    monkeypatch.setattr(
        video_auto.AutoVideoProcessor,
        "from_pretrained",
        classmethod(lambda cls, path, *a, **k: transformers.AutoImageProcessor.from_pretrained(path)),
    )
    monkeypatch.setitem(processing.MODALITY_TO_BASE_CLASS_MAPPING, "video_processor", "ImageProcessingMixin")


def _images():
    return Image.new("RGB", (64, 48), (200, 30, 30)), Image.new("RGB", (40, 72), (20, 130, 30))


def _saved(
    tmp_path, tiny_checkpoint, backbone: str, name: str = "saved", **settings
) -> tuple[EmbeddingModel, str]:
    model = EmbeddingModel.from_config(tiny_model_config(backbone, tiny_checkpoint(backbone), **settings))
    return model, str(model.save_pretrained(tmp_path / name))


def _cosines(ours: torch.Tensor, theirs) -> list[float]:
    return torch.nn.functional.cosine_similarity(ours, torch.as_tensor(theirs).float()).tolist()


def _assert_parity(model: EmbeddingModel, out, modalities: set[str]) -> None:
    st = sentence_transformers.SentenceTransformer(str(out), device="cpu")
    assert set(st[0].modality_config) == modalities
    assert min(_cosines(model.embed(TEXTS), st.encode(TEXTS))) >= PARITY
    if "image" not in modalities:
        long = [" ".join(["word"] * 300)]  # cut at model.max_length text tokens, as our processor cuts
        assert min(_cosines(model.embed(long), st.encode(long))) >= PARITY
        with pytest.raises(ValueError, match="image"):  # refused by sentence-transformers, not embedded
            st.encode([_images()[0]])
        return
    images = _images()
    ours = model.embed(["<|image_1|>", "<|image_1|>"], [[im] for im in images])
    assert min(_cosines(ours, st.encode(list(images)))) >= PARITY
    pairs = [{"image": images[0], "text": "a red square"}, {"image": images[1], "text": "green"}]
    ours = model.embed(["<|image_1|>a red square", "<|image_1|>green"], [[im] for im in images])
    assert min(_cosines(ours, st.encode(pairs))) >= PARITY


def test_qwen3_vl_embedding_export_matches_ours_for_text_image_and_image_text_in_sentence_transformers(
    tmp_path, tiny_checkpoint, no_torchvision_video
):
    model, saved = _saved(tmp_path, tiny_checkpoint, "qwen3_vl", prompt_format="qwen3_vl_embedding")
    out = export_model_folder(saved, tmp_path / "st", target="sentence-transformers")
    _assert_parity(model, out, {"text", "image", "message"})
    # the query prompt is the system message, as Qwen3-VL-Embedding's own code writes it
    query = "Retrieve images or text relevant to the user's query."
    ours = EmbeddingModel.from_pretrained(saved, system_instruction=query).embed(TEXTS)
    st = sentence_transformers.SentenceTransformer(str(out), device="cpu")
    assert min(_cosines(ours, st.encode(TEXTS, prompt_name="query"))) >= PARITY
    assert (out / "README.md").read_text().count("qwen3_vl_embedding") >= 1


@pytest.mark.slow
@pytest.mark.parametrize(
    "backbone, prompt_format, modalities",
    [
        ("qwen2_vl", "vlm2vec", {"text"}),
        ("qwen2_vl", "native", {"text", "image", "message"}),
        ("qwen2_5_vl", "native", {"text", "image", "message"}),
        ("qwen2_5_vl", "vlm2vec", {"text"}),
        ("qwen3_vl", "native", {"text", "image", "message"}),
        ("llava_next", "vlm2vec", {"text"}),
    ],
)
def test_export_matches_ours_in_sentence_transformers_for_each_backbone_and_prompt_format(
    tmp_path, tiny_checkpoint, request, backbone, prompt_format, modalities
):
    if "image" in modalities:  # a text-only export loads its tokenizer alone: no stand-in needed
        request.getfixturevalue("no_torchvision_video")
    model, saved = _saved(tmp_path, tiny_checkpoint, backbone, prompt_format=prompt_format)
    out = export_model_folder(saved, tmp_path / "st", target="sentence-transformers")
    _assert_parity(model, out, modalities)


@pytest.mark.slow
@pytest.mark.parametrize("use_dora", [False, True])
def test_an_adapter_is_merged_and_the_export_matches_the_adapter_model(
    tmp_path, tiny_checkpoint, no_torchvision_video, use_dora
):
    model, saved = _saved(
        tmp_path, tiny_checkpoint, "qwen2_vl", prompt_format="native", lora=True, use_dora=use_dora
    )
    with torch.no_grad():  # B starts at zero: make the adapter change the embeddings
        for name, param in model.encoder.named_parameters():
            if "lora_B" in name:
                param.normal_(std=0.2)
    saved = str(model.save_pretrained(tmp_path / "adapter"))
    base = EmbeddingModel.from_config(
        tiny_model_config("qwen2_vl", tiny_checkpoint("qwen2_vl"), prompt_format="native")
    )
    assert max(_cosines(base.embed(TEXTS), model.embed(TEXTS))) < PARITY  # the adapter matters
    if not use_dora:  # plain LoRA: the merged hf export reopens with the adapter model's embeddings
        out = export_model_folder(saved, tmp_path / "hf", target="hf")
        assert not (out / "adapter_config.json").exists()
        merged = EmbeddingModel.from_pretrained(out).embed(TEXTS)
        assert min(_cosines(model.embed(TEXTS), merged)) >= PARITY
        return
    out = export_model_folder(saved, tmp_path / "st", target="sentence-transformers")
    assert not (out / "adapter_config.json").exists()
    _assert_parity(model, out, {"text", "image", "message"})


def test_hf_export_reopens_with_the_same_embeddings_and_writes_the_chat_template(tmp_path, tiny_checkpoint):
    model, saved = _saved(tmp_path, tiny_checkpoint, "qwen3_vl", prompt_format="qwen3_vl_embedding")
    out = export_model_folder(saved, tmp_path / "hf", target="hf")
    assert "<|im_start|>assistant" in (out / "chat_template.jinja").read_text()
    assert not (out / "modules.json").exists()
    assert min(_cosines(model.embed(TEXTS), EmbeddingModel.from_pretrained(out).embed(TEXTS))) >= PARITY


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["phi3_v", "llava_next"])
def test_hf_export_of_phi3v_and_llava_next_reopens_with_the_same_embeddings(
    tmp_path, tiny_checkpoint, backbone
):
    model, saved = _saved(tmp_path, tiny_checkpoint, backbone)
    out = export_model_folder(saved, tmp_path / "hf", target="hf")
    images = [[im] for im in _images()]
    texts = ["<|image_1|> a red square", "<|image_1|> green"]
    reopened = EmbeddingModel.from_pretrained(out)
    assert min(_cosines(model.embed(texts, images), reopened.embed(texts, images))) >= PARITY


def test_bf16_export_holds_bf16_weights(tmp_path, tiny_checkpoint):
    _, saved = _saved(tmp_path, tiny_checkpoint, "qwen2_vl")
    out = export_model_folder(saved, tmp_path / "bf16", target="hf", dtype="bfloat16")
    from safetensors import safe_open

    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.bfloat16}


def test_a_training_run_exports_its_final_model_with_config_and_results_in_the_card(
    tmp_path, tiny_checkpoint
):
    _, saved = _saved(tmp_path, tiny_checkpoint, "qwen2_vl")
    run = tmp_path / "run"
    shutil.copytree(saved, run / "final")
    (run / "config.yaml").write_text("train:\n  lr: 0.000123\n")
    results = tmp_path / "eval"
    results.mkdir()
    (results / "summary.md").write_text("| overall | 12.3 |\n")
    out = export_model_folder(run, tmp_path / "st", target="sentence-transformers", results=results)
    card = (out / "README.md").read_text()
    assert "lr: 0.000123" in card and "| overall | 12.3 |" in card


def _fails_in_one_line(capsys, argv: list[str], match: str) -> None:
    capsys.readouterr()  # what loading earlier printed
    assert main(["export", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and match in err, err


def test_bad_exports_are_one_line_errors_and_leave_nothing_behind(tmp_path, tiny_checkpoint, capsys):
    model, saved = _saved(tmp_path, tiny_checkpoint, "qwen2_vl")
    out = tmp_path / "out"
    _fails_in_one_line(capsys, [saved, str(out), "--format", "onnx"], "--format")
    _fails_in_one_line(capsys, [saved, str(out), "--format", "hf", "--dtype", "int8"], "--dtype 'int8'")
    _fails_in_one_line(capsys, [str(tmp_path / "nowhere"), str(out), "--format", "hf"], "nowhere")
    # an adapter whose base is gone
    _, adapter = _saved(tmp_path, tiny_checkpoint, "qwen2_vl", "adapter", lora=True)
    adapter = tmp_path / adapter
    meta = json.loads((adapter / "vlm2vec.json").read_text())
    meta["model"]["path"] = str(tmp_path / "gone")
    (adapter / "vlm2vec.json").write_text(json.dumps(meta))
    _fails_in_one_line(capsys, [str(adapter), str(out), "--format", "hf"], "--base")
    # a folder of an unknown backbone
    unknown = tmp_path / "unknown"
    shutil.copytree(saved, unknown)
    (unknown / "vlm2vec.json").unlink()
    config = json.loads((unknown / "config.json").read_text())
    (unknown / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    _fails_in_one_line(capsys, [str(unknown), str(out), "--format", "hf"], "model_type 'bert'")
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]
    # an existing OUT: refused, untouched, replaced with --overwrite
    out.mkdir()
    (out / "keep").write_text("x")
    _fails_in_one_line(capsys, [saved, str(out), "--format", "hf"], "--overwrite")
    assert (out / "keep").is_file()
    assert main(["export", saved, str(out), "--format", "hf", "--overwrite"]) == 0
    assert not (out / "keep").exists() and (out / "vlm2vec.json").is_file()


def test_phi3v_is_refused_for_sentence_transformers_before_anything_is_written(tmp_path, tiny_checkpoint):
    _, saved = _saved(tmp_path, tiny_checkpoint, "phi3_v")
    with pytest.raises(ExportError, match="backbone 'phi3_v'.*--format hf"):
        export_model_folder(saved, tmp_path / "st", target="sentence-transformers")
    assert not (tmp_path / "st").exists() and not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


@pytest.mark.skipif(
    importlib.util.find_spec("vllm") is None, reason="vllm is not installed (GPU machines only)"
)
def test_vllm_pooling_runner_loads_the_export_and_matches_ours_for_text(tmp_path, tiny_checkpoint):
    from vllm import LLM

    model, saved = _saved(tmp_path, tiny_checkpoint, "qwen2_vl")
    out = export_model_folder(saved, tmp_path / "hf", target="hf")
    llm = LLM(model=str(out), runner="pooling", dtype="float32", enforce_eager=True)
    theirs = torch.stack([torch.as_tensor(o.outputs.embedding) for o in llm.embed(TEXTS)])
    assert min(_cosines(model.embed(TEXTS), theirs)) >= PARITY
