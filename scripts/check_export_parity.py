"""GPU check of `vlm2vec export`: the exported tiny models embed as ours in sentence-transformers (with
the real torchvision-backed processors, no CPU stand-in) and in vLLM's pooling runner, for text, image and
image+text inputs. Prints one JSON object: per backbone / prompt format / target / input, the lowest
cosine to our embeddings, or why a part could not run (no torchvision, no vllm). Exit 1 if a cosine that
ran is below 0.9999.

    python3 scripts/check_export_parity.py --device cuda
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
from pathlib import Path

import torch
from PIL import Image

from vlm2vec.export import export_model_folder
from vlm2vec.model import EmbeddingModel
from vlm2vec.testing import make_tiny_checkpoint
from vlm2vec.testing.tiny import tiny_model_config

PARITY = 0.9999
CASES = [("qwen2_vl", "vlm2vec"), ("qwen2_vl", "native"), ("qwen2_5_vl", "native"), ("qwen3_vl", "native")]
CASES += [("qwen3_vl", "qwen3_vl_embedding"), ("llava_next", "vlm2vec")]
TEXTS = ["a red square", "hello there world, this one is a little longer"]
IMAGES = [Image.new("RGB", (64, 48), (200, 30, 30)), Image.new("RGB", (40, 72), (20, 130, 30))]


def _low(ours: torch.Tensor, theirs) -> float:
    theirs = torch.as_tensor(theirs).float().to(ours.device)
    return round(torch.nn.functional.cosine_similarity(ours, theirs).min().item(), 6)


def _inputs(model: EmbeddingModel) -> dict[str, tuple[list, list | None, list]]:
    """input kind -> (our texts, our images, sentence-transformers inputs)."""
    rows = [[im] for im in IMAGES]
    pairs = [{"image": IMAGES[0], "text": "a red square"}, {"image": IMAGES[1], "text": "green"}]
    return {
        "text": (TEXTS, None, TEXTS),
        "image": (["<|image_1|>"] * 2, rows, list(IMAGES)),
        "image+text": (["<|image_1|>a red square", "<|image_1|>green"], rows, pairs),
    }


def check_sentence_transformers(model: EmbeddingModel, out: Path, device: str) -> dict[str, object]:
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(str(out), device=device)
    result: dict[str, object] = {}
    for kind, (texts, images, inputs) in _inputs(model).items():
        if kind != "text" and "image" not in st[0].modality_config:
            result[kind] = "not exported (text-only export)"
            continue
        result[kind] = _low(model.embed(texts, images).to(device), st.encode(inputs, convert_to_tensor=True))
    return result


def check_vllm(model: EmbeddingModel, out: Path, device: str) -> dict[str, object]:
    """Prompts rendered by the exported chat template (or the raw text for text-only exports)."""
    from transformers import AutoProcessor
    from vllm import LLM

    llm = LLM(
        model=str(out), runner="pooling", dtype="float32", enforce_eager=True, gpu_memory_utilization=0.2
    )
    result: dict[str, object] = {"text": _low(model.embed(TEXTS).to(device), _vllm_embed(llm, TEXTS))}
    if not (out / "chat_template.jinja").is_file():
        return result
    processor = AutoProcessor.from_pretrained(str(out))
    for kind, (texts, images, inputs) in list(_inputs(model).items())[1:]:
        prompts = []
        for item in inputs:
            content = (
                [{"type": "image"}]
                if not isinstance(item, dict)
                else [{"type": "image"}, {"type": "text", "text": item["text"]}]
            )
            text = processor.apply_chat_template([{"role": "user", "content": content}], tokenize=False)
            image = item if not isinstance(item, dict) else item["image"]
            prompts.append({"prompt": text, "multi_modal_data": {"image": image}})
        result[kind] = _low(model.embed(texts, images).to(device), _vllm_embed(llm, prompts))
    return result


def _vllm_embed(llm, prompts) -> torch.Tensor:
    return torch.stack([torch.as_tensor(o.outputs.embedding) for o in llm.embed(prompts)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    args = parser.parse_args()
    have = {name: importlib.util.find_spec(name) is not None for name in ("torchvision", "vllm")}
    report: dict[str, object] = {"have": have, "cases": {}}
    failed = False
    with tempfile.TemporaryDirectory() as tmp:
        for backbone, fmt in CASES:
            name = f"{backbone}/{fmt}"
            base = (
                make_tiny_checkpoint(backbone, Path(tmp) / backbone)
                if not (Path(tmp) / backbone).is_dir()
                else Path(tmp) / backbone
            )
            model = EmbeddingModel.from_config(tiny_model_config(backbone, base, prompt_format=fmt)).to(
                args.device
            )
            saved = model.save_pretrained(Path(tmp) / f"{backbone}-{fmt}")
            case: dict[str, object] = {}
            for target, check in (("sentence-transformers", check_sentence_transformers), ("hf", check_vllm)):
                label = "vllm" if target == "hf" else target
                if label == "vllm" and not have["vllm"]:
                    case[label] = "skipped: vllm not installed"
                    continue
                try:
                    out = export_model_folder(
                        saved, Path(tmp) / f"{name.replace('/', '-')}-{target}", target=target
                    )
                    case[label] = check(model, out, args.device)
                except Exception as exc:  # a check that cannot run is reported, not fatal
                    case[label] = f"error: {type(exc).__name__}: {str(exc).splitlines()[0][:300]}"
            failed |= any(
                isinstance(v, float) and v < PARITY
                for part in case.values()
                if isinstance(part, dict)
                for v in part.values()
            )
            report["cases"][name] = case
    report["parity_ok"] = not failed
    print(json.dumps(report, indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
