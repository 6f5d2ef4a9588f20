"""Throughput of the training loop on the phi35v_lora recipe, GradCache chunks as today vs new.

    python scripts/bench_train.py                          # CPU, tiny Phi-3.5-V, demo data: ~1-2 min
    python scripts/bench_train.py --device cuda            # full size, random weights, one H100 / H200

Builds Phi-3.5-V (tiny on CPU; at full size from its published architecture, REFERENCE.md §5: 32 x
3072 Phi-3 decoder, CLIP ViT-L/14-336, num_crops 4) without weights, applies the recipe's LoRA, writes
synthetic MMEB-train rows (`--data demo`: the demo's subsets, ImageNet_1K and MSCOCO_i2t; `recipe`:
four kinds), and runs the real loop (`vlm2vec.training.train`: data workers, GradCache, AdamW, bf16
on CUDA) for `--warmup + --steps` steps on one device, once per path, same model and data:

    today  GradCache chunks of consecutive rows, each padded to the whole batch's width
           (`train.chunk_by_length=false`, chunk trimming switched off in this script only)
    new    rows grouped by length, each chunk trimmed to its own longest row, and with
           `--chunk-tokens` sized by a token budget instead of a row count

Prints one JSON object: both runs and the ratios new / today (step time, this process's CPU time per
step, samples/s, real tokens, padded tokens per step: the `tokens` / `padded_tokens` of
metrics.jsonl, one forward pass; decoder positions computed). With `--repeats N` the paths alternate
and the fastest repeat of each counts (the least disturbed by other load).

FLOP formula (model FLOPs utilisation, the usual 6ND):
    flops/step = 6 * (N_lm * T_lm + N_vis * T_vis)
    N_lm  = parameters of the 32 decoder layers (embeddings and LM head excluded)
    T_lm  = non-padding decoder positions (text + image tokens) of every query and target of the step
    N_vis = parameters of the CLIP layers that run (embeddings + 23 of 24 layers: features come from
            the second-to-last layer)
    T_vis = 577 positions per 336 px crop that CLIP encodes (HD crops + global thumbnail)
    MFU   = flops/step / step time / peak bf16 dense FLOP/s of the device (H100 SXM and H200: 989e12)
Each example is counted once: GradCache's extra no-grad forward (2ND) is not useful work and the
LoRA backward skips the frozen weight gradients (-2ND), so for LoRA + GradCache 6ND also equals the
arithmetic actually done, up to the attention-score terms (ignored).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import functools
import json
import math
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

DATA = {
    "demo": {"ImageNet_1K": "classification", "MSCOCO_i2t": "retrieval_i2t"},  # configs/train/demo.yaml
    "recipe": {
        "ImageNet_1K": "classification",
        "OK-VQA": "vqa",
        "MSCOCO_t2i": "retrieval_t2i",
        "MSCOCO": "grounding",
    },
}
PEAK_BF16 = {"H100 PCIe": 756e12, "H100": 989e12, "H200": 989e12, "GH200": 989e12, "A100": 312e12}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cuda", "cpu"], default="cpu")
    p.add_argument(
        "--size", choices=["full", "tiny"], default=None, help="default: full on cuda, tiny on cpu"
    )
    p.add_argument("--data", choices=["demo", "recipe"], default="demo", help="synthetic subsets (see above)")
    p.add_argument("--paths", default="today,new", help="which paths to run, in this order")
    p.add_argument("--repeats", type=int, default=1, help="run the paths alternately this many times")
    p.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: 1 on cpu, as bench_gradcache)"
    )
    p.add_argument(
        "--chunk-tokens", type=int, default=None, help="new path: token budget per chunk (rows x longest row)"
    )
    p.add_argument("--config", default="configs/train/phi35v_lora.yaml")
    p.add_argument("--per-device-batch", type=int, default=None, help="default: the recipe's")
    p.add_argument("--chunk", type=int, default=None, help="GradCache chunk size; default: the recipe's")
    p.add_argument("--steps", type=int, default=3, help="measured steps")
    p.add_argument("--warmup", type=int, default=2, help="steps run first and not measured")
    p.add_argument("--num-workers", type=int, default=None, help="default: 8 on cuda, 1 on cpu")
    p.add_argument("--peak-tflops", type=float, default=None, help="override the device's peak bf16 TFLOP/s")
    p.add_argument("--workdir", default=None, help="default: a temporary folder")
    return p.parse_args(argv)


def build_model(folder: Path, cfg, size: str, device: str):
    """Random-weight EmbeddingModel; `folder` gets the tokenizer and config.json the processor reads."""
    import torch
    from transformers import PreTrainedTokenizerFast

    from vlm2vec.backbones import get_backbone
    from vlm2vec.backbones.phi3v import official_config_dict, read_config
    from vlm2vec.backbones.phi3v_model import published_phi35v_config
    from vlm2vec.model import EmbeddingModel, apply_lora, load_processor
    from vlm2vec.testing.tiny_phi3v import write_tiny_phi3v

    write_tiny_phi3v(folder)  # tokenizer files (+ tiny weights, unused at full size)
    if size == "full":
        tokenizer = PreTrainedTokenizerFast.from_pretrained(str(folder))
        hf_config = published_phi35v_config(
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        )
        (folder / "config.json").write_text(json.dumps(official_config_dict(hf_config, torch.bfloat16)))
        (folder / "preprocessor_config.json").unlink(missing_ok=True)  # 336 px crops from the vision config
    else:
        hf_config = read_config(folder)
    backbone = get_backbone("phi3_v")
    with torch.device(device):
        encoder = backbone.model_from_config(hf_config, cfg)
    if cfg.lora:
        encoder = apply_lora(backbone, encoder, cfg)
    return EmbeddingModel(backbone, encoder, load_processor(cfg), cfg)


class WorkCounter:
    """Counts decoder positions and CLIP crops through forward hooks (every forward call)."""

    def __init__(self, model) -> None:
        base = model.encoder.get_base_model() if hasattr(model.encoder, "get_base_model") else model.encoder
        self.lm_tokens = 0
        self.lm_positions = 0  # real + padded decoder positions actually computed
        self.crops = 0
        vision = base.model.vision_embed_tokens
        clip = vision.img_processor.vision_model
        self.n_lm = sum(p.numel() for p in base.model.layers.parameters())
        used = clip.encoder.layers[: vision.num_feature_layers]
        self.n_vis = sum(p.numel() for p in used.parameters()) + sum(
            p.numel() for p in clip.embeddings.parameters()
        )
        self.clip_positions = (clip.config.image_size // clip.config.patch_size) ** 2 + 1  # 577 at 336 px
        base.model.register_forward_pre_hook(self._count_lm, with_kwargs=True)
        clip.embeddings.register_forward_pre_hook(self._count_vis)

    def _count_lm(self, _module, _args, kwargs) -> None:
        mask = kwargs.get("attention_mask")
        if mask is not None:
            self.lm_tokens += int(mask.sum())
            self.lm_positions += mask.numel()

    def _count_vis(self, _module, args) -> None:
        self.crops += int(args[0].shape[0])

    def snapshot(self) -> tuple[int, int, int]:
        return self.lm_tokens, self.crops, self.lm_positions


def peak_flops(device_name: str, override_tflops: float | None) -> float | None:
    if override_tflops:
        return override_tflops * 1e12
    for key, value in PEAK_BF16.items():  # "H100 PCIe" before "H100"
        if key in device_name:
            return value
    return None


@contextlib.contextmanager
def todays_chunks():
    """Today's path: chunks keep the batch's padded width (the splitter's trimming switched off)."""
    from vlm2vec import chunking
    from vlm2vec.backbones import base

    base.split_rows = functools.partial(chunking.split_rows, trim=False)
    try:
        yield
    finally:
        base.split_rows = chunking.split_rows


def main(argv: list[str]) -> dict:
    args = parse_args(argv)
    args.size = args.size or ("full" if args.device == "cuda" else "tiny")
    if args.num_workers is None:
        args.num_workers = 8 if args.device == "cuda" else 1
    if args.device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from vlm2vec.config import load_config
    from vlm2vec.testing.synthetic import write_synthetic_mmeb_train

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda: no CUDA device visible")
    threads = args.threads or (1 if args.device == "cpu" else None)
    if threads:
        torch.set_num_threads(threads)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="vlm2vec-bench-"))
    if args.workdir is None:  # a temporary folder goes away with the process
        atexit.register(shutil.rmtree, work, True)
    t0 = time.perf_counter()
    base_cfg = load_config(args.config)
    per_device = args.per_device_batch or base_cfg.train.per_device_batch_size
    chunk = args.chunk or base_cfg.train.qry_chunk_size or per_device  # no chunk: plain training
    if args.size == "tiny":
        per_device, chunk = min(per_device, 32), min(chunk or 8, 8)
    total_steps = args.warmup + args.steps
    subsets = DATA[args.data]
    rows = per_device * math.ceil(total_steps / len(subsets)) + per_device
    data_dir = write_synthetic_mmeb_train(
        work / "data", subsets=subsets, rows_per_subset=rows, splits=["original"]
    )
    overrides = [
        f"--model.path={work / 'model'}",
        f"--data.mmeb_train_dir={data_dir}",
        "--data.subsets=[]",
        "--data.max_rows_per_subset=null",
        f"--data.num_workers={args.num_workers}",
        f"--train.per_device_batch_size={per_device}",
        f"--train.qry_chunk_size={chunk}",
        f"--train.tgt_chunk_size={chunk}",
        f"--train.max_steps={total_steps}",
        f"--train.warmup_steps={min(1, total_steps - 1)}",
        "--train.save_every=0",
        "--train.report_to=none",
        "--train.log_every=1",
    ]
    if args.device == "cpu":
        overrides += ["--train.mixed_precision='no'", "--model.dtype=float32"]
    cfg = load_config(args.config, overrides)
    model = build_model(work / "model", cfg.model, args.size, args.device)
    counter = WorkCounter(model)
    setup_s = time.perf_counter() - t0
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    runs: dict[str, dict] = {}
    repeats: dict[str, list[dict]] = {}
    for path in args.paths.split(",") * args.repeats:
        model.load_state_dict(state)  # same weights for every path
        extra = [f"--train.output_dir={work / path}"]
        if path == "today":
            extra.append("--train.chunk_by_length=false")
        elif path == "new" and args.chunk_tokens:
            extra += [
                f"--train.qry_chunk_tokens={args.chunk_tokens}",
                f"--train.tgt_chunk_tokens={args.chunk_tokens}",
                "--train.qry_chunk_size=null",
                "--train.tgt_chunk_size=null",
            ]
        elif path != "new":
            raise SystemExit(f"--paths: unknown path {path!r} (today, new)")
        if args.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        with todays_chunks() if path == "today" else contextlib.nullcontext():
            shutil.rmtree(work / path, ignore_errors=True)
            repeats.setdefault(path, []).append(
                run_path(load_config(args.config, overrides + extra), model, counter, args, work / path)
            )
        runs[path] = dict(repeats[path][-1])
        times = [r["step_time_s"] for r in repeats[path]]
        cpu = [r["step_cpu_time_s"] for r in repeats[path]]
        # the fastest repeat: the least disturbed by other load on the machine
        runs[path].update(step_time_s=min(times), step_times_s=times, step_cpu_time_s=min(cpu))
        runs[path]["samples_per_s"] = per_device / runs[path]["step_time_s"]
        runs[path].update(
            per_device_batch=per_device,
            gradcache_chunk=chunk if path == "today" or not args.chunk_tokens else None,
        )
        if path == "new":
            runs[path]["chunk_tokens"] = args.chunk_tokens
    result = {
        "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
        "torch_threads": torch.get_num_threads(),
        "recipe": args.config,
        "size": args.size,
        "data": args.data,
        "runs": runs,
        "flop_formula": "6*(N_lm*T_lm + N_vis*577*crops), each example once; see the script docstring",
        "n_lm_params": counter.n_lm,
        "n_clip_params_used": counter.n_vis,
        "setup_s": setup_s,
    }
    if {"today", "new"} <= set(runs):
        old, new = runs["today"], runs["new"]
        result["new_over_today"] = {
            "step_time": new["step_time_s"] / old["step_time_s"],
            "step_cpu_time": new["step_cpu_time_s"] / old["step_cpu_time_s"],
            "samples_per_s": new["samples_per_s"] / old["samples_per_s"],
            "tokens": new["tokens_per_step"] / max(old["tokens_per_step"], 1),
            "padded_tokens": new["padded_tokens_per_step"] / max(old["padded_tokens_per_step"], 1),
            "lm_positions": new["lm_positions_per_step"] / max(old["lm_positions_per_step"], 1),
        }
    result["total_s"] = time.perf_counter() - t0
    print(json.dumps(result, indent=2))
    return result


def run_path(cfg, model, counter: WorkCounter, args: argparse.Namespace, out: Path) -> dict:
    """One training run of `--warmup + --steps` steps; figures of the measured steps."""
    import torch

    from vlm2vec.training import logging as train_logging
    from vlm2vec.training import train

    total_steps = args.warmup + args.steps
    marks: dict[int, tuple[int, int, int]] = {}
    cpu_marks: dict[int, float] = {}
    original_log = train_logging.MetricsLogger.log

    def log_and_mark(self, step, metrics):  # snapshot the work counters at every logged step
        marks[step] = counter.snapshot()
        cpu_marks[step] = time.process_time()  # this process only (not the data workers)
        return original_log(self, step, metrics)

    train_logging.MetricsLogger.log = log_and_mark
    try:
        train(cfg, model=model, validated=True)  # load_config validated it
    finally:
        train_logging.MetricsLogger.log = original_log

    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    measured = [r for r in records if r["step"] > args.warmup]
    step_time = sum(r["step_time"] for r in measured) / len(measured)
    tokens0, crops0, pos0 = marks[args.warmup]
    tokens1, crops1, pos1 = marks[total_steps]
    t = cfg.train
    chunked = any(v is not None for v in (t.qry_chunk_size, t.qry_chunk_tokens))
    forwards = 2 if chunked and (t.qry_chunk_tokens or t.per_device_batch_size > t.qry_chunk_size) else 1
    lm_tokens = (tokens1 - tokens0) / forwards / len(measured)
    crops = (crops1 - crops0) / forwards / len(measured)
    flops = 6 * (counter.n_lm * lm_tokens + counter.n_vis * crops * counter.clip_positions)
    device_name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    peak = peak_flops(device_name, args.peak_tflops)
    return {
        "measured_steps": len(measured),
        "step_time_s": step_time,
        "step_cpu_time_s": (cpu_marks[total_steps] - cpu_marks[args.warmup]) / len(measured),
        "samples_per_s": t.per_device_batch_size / step_time,
        "tokens_per_step": sum(r["tokens"] for r in measured) / len(measured),
        "padded_tokens_per_step": sum(r["padded_tokens"] for r in measured) / len(measured),
        "lm_positions_per_step": (pos1 - pos0) / len(measured),
        "tokens_per_s": lm_tokens / step_time,
        "lm_tokens_per_step": lm_tokens,
        "clip_crops_per_step": crops,
        "peak_mem_gb": max(r["peak_mem_gb"] for r in records),
        "data_time_s": sum(r["data_time"] for r in measured) / len(measured),
        "loss_first_last": [records[0]["loss"], records[-1]["loss"]],
        "model_tflops_per_step": flops / 1e12,
        "achieved_tflops": flops / step_time / 1e12,
        "peak_tflops": peak / 1e12 if peak else None,
        "mfu": flops / step_time / peak if peak else None,
    }


if __name__ == "__main__":
    main(sys.argv[1:])
