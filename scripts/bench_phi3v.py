"""Benchmark the native Phi-3.5-V: encode a batch of image+text queries, print time and peak memory as JSON.

The full-size architecture (REFERENCE.md §5: Phi-3 3072 x 32 layers + CLIP ViT-L/14-336) is built
with random weights directly on the device, then cast to the chosen dtype (weights only; RoPE buffers
stay fp32). No checkpoint is needed.

    python scripts/bench_phi3v.py --device cuda                 # H100: about a minute
    python scripts/bench_phi3v.py --device cuda --backward      # also one training step (checkpointing)
    python scripts/bench_phi3v.py --device cpu --tiny           # smoke test on a laptop / CI
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from PIL import Image

from vlm2vec.backbones import get_backbone
from vlm2vec.backbones.base import torch_dtype
from vlm2vec.backbones.phi3v_model import Phi3VForCausalLM, published_phi35v_config
from vlm2vec.backbones.phi3v_processor import Phi3VProcessor
from vlm2vec.testing.tiny_phi3v import tiny_config, train_tokenizer

QUERY = "<|image_1|> Represent the given image with the following question: what is in the image?"


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_gib(device: torch.device) -> float | None:
    return round(torch.cuda.max_memory_allocated(device) / 1024**3, 3) if device.type == "cuda" else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes (CPU smoke test)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--num-crops", type=int, default=4)
    parser.add_argument("--width", type=int, default=640)
    parser.add_argument("--height", type=int, default=480)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--attn", default="sdpa", help="sdpa | eager | flash_attention_2")
    parser.add_argument("--backward", action="store_true", help="also time forward+backward (full fine-tune)")
    args = parser.parse_args()

    device = torch.device(args.device)
    dtype = torch_dtype(args.dtype)
    tokenizer = train_tokenizer()
    config = tiny_config(tokenizer) if args.tiny else published_phi35v_config()
    config._attn_implementation = args.attn

    t0 = time.perf_counter()
    with torch.device(device):
        model = Phi3VForCausalLM(config)
    for param in model.parameters():
        param.data = param.data.to(dtype)
    model.eval()
    sync(device)
    build_s = time.perf_counter() - t0
    n_params = sum(p.numel() for p in model.parameters())

    vision = config.vision_config
    processor = Phi3VProcessor(
        tokenizer, num_crops=args.num_crops, crop_size=vision.image_size, patch_size=vision.patch_size
    )
    rng = np.random.RandomState(0)
    images = [
        Image.fromarray(rng.randint(0, 256, (args.height, args.width, 3), dtype=np.uint8))
        for _ in range(args.batch)
    ]
    t0 = time.perf_counter()
    batch = processor([QUERY] * args.batch, [[im] for im in images])
    process_s = time.perf_counter() - t0
    batch = {k: v.to(device) for k, v in batch.items()}

    backbone = get_backbone("phi3_v")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        backbone.last_hidden_state(model, batch)  # warm-up
        sync(device)
        t0 = time.perf_counter()
        for _ in range(args.iters):
            hidden = backbone.last_hidden_state(model, batch)
        sync(device)
    forward_s = (time.perf_counter() - t0) / args.iters
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "size": "tiny" if args.tiny else "full",
        "params_billion": round(n_params / 1e9, 4),
        "dtype": args.dtype,
        "attn": args.attn,
        "batch": args.batch,
        "image": [args.width, args.height],
        "num_crops": args.num_crops,
        "image_tokens": processor.num_image_tokens(images[0]),
        "seq_len": int(batch["input_ids"].shape[1]),
        "build_s": round(build_s, 3),
        "process_s_cpu": round(process_s, 3),
        "forward_s_per_batch": round(forward_s, 4),
        "forward_peak_gib": peak_gib(device),
        "hidden_finite": bool(torch.isfinite(hidden.float()).all()),
    }

    if args.backward:
        model.train()
        model.activation_checkpointing_enable()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        times = []
        for _ in range(2):  # the first one includes allocator warm-up
            sync(device)
            t0 = time.perf_counter()
            hidden = backbone.last_hidden_state(model, batch)
            hidden[:, -1].float().pow(2).mean().backward()
            sync(device)
            times.append(time.perf_counter() - t0)
            model.zero_grad(set_to_none=True)
        result["train_step_s"] = round(times[-1], 4)
        result["train_peak_gib"] = peak_gib(device)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
