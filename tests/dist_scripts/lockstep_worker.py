"""GradCache steps of the real tiny backbones on 2 CPU processes (gloo), many scenarios in one launch.

Launched by tests/test_zero3_lockstep.py with `torchrun --nproc_per_node 2`. Every scenario (engine x
backbone x full/LoRA x chunk size) builds a fresh model, wraps it (torch DDP, a raw DeepSpeed engine
from the project's configs/deepspeed/zero{2,3}.json, or FSDP2 as `train.engine: fsdp2` shards it, with
activation checkpointing on so that recomputation under FSDP2's hooks is covered too), runs one
GradCache step with SGD and records the parameter update on rank 0. The ranks' local batches differ in images the way MMEB batches do: rank 0's
queries hold an image row, a text row and a two-image row while rank 1's are text only, and the targets
the other way round, so with chunk 1 and chunk 3 some chunk has images on one rank and none on the other.
With `--videos` (Qwen-VL backbones) a video row joins: rank 1's first query and rank 0's second target,
so one rank's chunk holds a video while the other's holds images or text only. With `--budgets` as
well, chunks are cut by a token budget (the "chunk" of a scenario is then tokens), so the ranks plan
different numbers of chunks (a video row is long) and GradCache agrees on the larger, and rank 0's
first query has a second positive (a video): the ranks hold different numbers of target rows
(`tgt_owner`, the loss counting every positive).

Each rank also computes some of the one-process references (round robin): the same model, rank r's
chunks (as GradCache plans them) forwarded with plain autograd from seed 100 + r (so LoRA dropout draws the same masks), the loss
on the concatenated global batch, one backward. Writes `<out>.rank<r>` (torch.save of a dict).
"""

from __future__ import annotations

import argparse
import gc
import itertools
import json
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from ending import run_and_exit
from PIL import Image
from torch.distributed.fsdp import FSDPModule

from gradcache_reference import gradcache_plan, reps_in_row_order
from vlm2vec.chunking import equalize, plan_chunks, row_lengths
from vlm2vec.gradcache import GradCache
from vlm2vec.losses import ContrastiveLoss
from vlm2vec.model import EmbeddingModel
from vlm2vec.testing import tiny_model_config
from vlm2vec.training.engine import resolve_deepspeed_config
from vlm2vec.training.optim import decay_names, param_groups

TEMPERATURE, LR, ROWS, WORLD = 0.05, 0.5, 3, 2
CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "deepspeed"
ENGINES = ("ddp", "zero2", "zero3", "fsdp2")
BACKBONES = ("phi3_v", "qwen2_vl", "qwen3_vl", "llava_next")
#: backbones run in every scenario below; the others (same `embed_with_images` path, their own vision
#: towers) under ZeRO-3 with chunk 1 only, which keeps the launch short
FULL_MATRIX = ("phi3_v", "qwen2_vl")
CHUNKS = (1, 3)
#: set by --videos: a video row on each rank (see the module docstring)
VIDEO_ROWS = {"on": False}
#: the prefix of the folders the FSDP2 scenarios save into (from --out)
OUT = {"dir": ""}
#: set by --budgets: token-budget chunks (these budgets) and a second positive on rank 0
BUDGETS = {"on": False, "chunks": (24,)}


def scenarios(engines=ENGINES, backbones=BACKBONES) -> list[tuple[str, str, bool, int]]:
    """(engine, backbone, lora, chunk): every combination under ZeRO-3; DDP and ZeRO-2 (whose
    backbone-specific risk is the gradient order across ranks, the same for both chunk sizes) with
    chunk 1 only; backbones outside `FULL_MATRIX` under ZeRO-3 with chunk 1 only."""
    return [
        (engine, backbone, lora, chunk)
        for engine, backbone, lora, chunk in itertools.product(
            engines, backbones, (False, True), BUDGETS["chunks"] if BUDGETS["on"] else CHUNKS
        )
        if (engine == "zero3" or chunk == 1)
        and (backbone in FULL_MATRIX or (engine == "zero3" and chunk == 1))
    ]


def image(w: int, h: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))


def local_texts(rank: int) -> tuple[list, list]:
    """(queries, targets) of one rank: texts with MMEB placeholders and their images per row."""
    if rank == 0:
        qry = (
            ["<|image_1|> a red circle", "a blue square", "<|image_1|> and <|image_2|> two shapes"],
            [[image(100, 70, 1)], None, [image(60, 60, 2), image(70, 120, 3)]],
        )
        tgt = (["red circle", "blue square", "two shapes"], None)
    else:
        qry = (["what is green", "the quick brown fox", "one two three"], None)
        tgt = (["green", "<|image_1|> a fox", "three"], [None, [image(80, 56, 4)], None])
    return qry, tgt


def build(backbone: str, folder: str, lora: bool, checkpointing: bool = False) -> EmbeddingModel:
    torch.manual_seed(0)
    adapter = {"lora_r": 4, "lora_dropout": 0.1} if lora else {}
    cfg = tiny_model_config(backbone, folder, lora=lora, gradient_checkpointing=checkpointing, **adapter)
    model = EmbeddingModel.from_config(cfg)
    if lora:  # LoRA B starts at zero (A would get no gradient): make both matter
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for name, p in model.named_parameters():
                if "lora_B" in name:
                    p.copy_(0.05 * torch.randn(p.shape, generator=g))
    return model.train()


def batches(model: EmbeddingModel, rank: int) -> tuple[dict, dict]:
    (qt, qi), (tt, ti) = local_texts(rank)
    if not VIDEO_ROWS["on"]:
        return model.processor(qt, qi), model.processor(tt, ti)
    frames = [image(84, 56, 10 + k) for k in range(3)]
    if rank == 1:
        qt = [f"<|video_1|> {qt[0]}", *qt[1:]]
        return model.processor(qt, qi, videos=[[frames], [], []]), model.processor(tt, ti)
    tt = [tt[0], f"<|video_1|> {tt[1]}", tt[2]]
    videos = [[], [frames], []]
    if BUDGETS["on"]:  # a second positive of query 0: a video
        tt, videos = [*tt, "<|video_1|> also a red circle"], [*videos, [frames[:2]]]
    return model.processor(qt, qi), model.processor(tt, ti and [*ti, None], videos=videos)


def owners(rank: int) -> torch.Tensor | None:
    """The local query of each target row (None: one positive per query)."""
    if not BUDGETS["on"]:
        return None
    return torch.tensor([0, 1, 2, 0] if rank == 0 else [0, 1, 2])


def plans(sides: list[dict], chunk: int) -> list[list[list[int]]]:
    """Each rank's plan of one side as GradCache makes it: by rows, or by a token budget with the
    chunk counts agreed across ranks (the larger) and the smaller plans split up to it."""
    if not BUDGETS["on"]:
        return [gradcache_plan(x, chunk) for x in sides]
    own = [plan_chunks(row_lengths(x), None, chunk) for x in sides]
    count = max(len(p) for p in own)
    if count == 1:
        return [[list(range(len(row_lengths(x))))] for x in sides]
    return [equalize(p, count, row_lengths(x)) for p, x in zip(own, sides)]


def reference(backbone: str, folder: str, lora: bool, chunk: int) -> dict:
    model = build(backbone, folder, lora)
    q, t = [], []
    local = [batches(model, rank) for rank in range(WORLD)]
    qry_plans, tgt_plans = plans([b[0] for b in local], chunk), plans([b[1] for b in local], chunk)
    for rank, (qry, tgt) in enumerate(local):
        torch.manual_seed(100 + rank)
        q.append(reps_in_row_order(model, qry, qry_plans[rank], "qry"))
        t.append(reps_in_row_order(model, tgt, tgt_plans[rank], "tgt"))
    owner = None
    if BUDGETS["on"]:
        owner = torch.cat([owners(r) + ROWS * r for r in range(WORLD)])
    loss = ContrastiveLoss(TEMPERATURE, gather=False)(torch.cat(q), torch.cat(t), tgt_owner=owner)
    loss.backward()
    delta = {n: -LR * p.grad for n, p in model.named_parameters() if p.requires_grad}
    return {"loss": loss.item(), "delta": delta, "groups": decay_names(model)}


def ds_config(engine: str) -> dict:
    from vlm2vec.config import TrainConfig

    t = TrainConfig(per_device_batch_size=ROWS, max_grad_norm=0.0, mixed_precision="no")
    config = resolve_deepspeed_config(str(CONFIGS / f"{engine}.json"), t)
    config["train_batch_size"] = ROWS * WORLD
    config["zero_allow_untested_optimizer"] = True  # a torch SGD: update = -lr * gradient
    return config


def full_trainable(model: torch.nn.Module, zero3: bool) -> dict[str, torch.Tensor]:
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    if params and hasattr(params[0][1], "full_tensor"):  # FSDP2 shards (DTensors)
        return {n: p.full_tensor().detach().clone() for n, p in params}
    if not zero3:
        return {n: p.detach().clone() for n, p in params}
    import deepspeed

    with deepspeed.zero.GatheredParameters([p for _, p in params]):
        return {n: p.detach().clone() for n, p in params}


def fsdp2_state_round_trip(model, optimizer, after: dict, folder: str) -> dict:
    """After an FSDP2 step, as train.py does it: `save_state` (the shards through the checkpoint hooks)
    and `load_state` over scrambled parameters; then `export_model` gathers the full model on rank 0,
    which saves it (adapter, or the full model in its official layout, plus the merged model for LoRA);
    rank 0 reopens what it saved."""
    from accelerate import Accelerator

    from vlm2vec.training.export import export_model
    from vlm2vec.training.fsdp2_state import install_state_hooks

    accelerator = Accelerator(cpu=True)
    install_state_hooks(accelerator, model, optimizer, trainable_only=model.is_lora)
    accelerator.save_state(f"{folder}/checkpoint")
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(1.0)
    accelerator.load_state(f"{folder}/checkpoint")
    record = {"reloaded": full_trainable(model, False), "after": after}
    export_model(accelerator, model, Path(folder), merged=True)
    if dist.get_rank() == 0:
        final = Path(folder) / "final"
        record["files"] = sorted(p.name for p in final.iterdir())
        reopened = EmbeddingModel.from_pretrained(final).eval()
        params = dict(reopened.named_parameters())
        record["exported"] = {n: params[n].detach().clone() for n in after if n in params}
        if model.is_lora:
            batch = reopened.processor(["a red circle", "blue"])
            merged = EmbeddingModel.from_pretrained(Path(folder) / "final_merged").eval()
            with torch.no_grad():
                record["merged_reps"] = (reopened.encode(batch), merged.encode(batch))
    return record


def distributed(engine: str, backbone: str, folder: str, lora: bool, chunk: int, rank: int) -> dict:
    model = build(backbone, folder, lora, checkpointing=engine == "fsdp2")
    before = full_trainable(model, False)
    groups_before = decay_names(model)
    if engine == "fsdp2":  # sharded first: the optimizer holds the shards
        from vlm2vec.training.fsdp2 import shard_model

        wrapped = shard_model(model)
        assert sum(isinstance(m, FSDPModule) for m in model.modules()) > 2  # blocks of both towers + root
    # weight decay 0 in both groups keeps the SGD update -lr * gradient, with the real group layout
    optimizer = torch.optim.SGD(param_groups(model, 0.0), lr=LR)
    if engine == "ddp":
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, find_unused_parameters=False)
    elif engine != "fsdp2":
        import deepspeed

        wrapped, optimizer, _, _ = deepspeed.initialize(
            model=model, optimizer=optimizer, config=ds_config(engine)
        )
    record: dict = {}
    if engine == "zero3":  # partitioned now: shapes are 1-D stand-ins, the groups must not change
        assert any(hasattr(p, "ds_shape") for p in model.parameters())
        record["groups"] = decay_names(model)
        record["groups_before"] = groups_before
        record["optimizer_groups"] = len(optimizer.param_groups)
    qry, tgt = batches(model, rank)
    torch.manual_seed(100 + rank)
    if BUDGETS["on"]:
        record["own_counts"] = [len(plan_chunks(row_lengths(x), None, chunk)) for x in (qry, tgt)]
        step = GradCache(
            ContrastiveLoss(TEMPERATURE),
            split_fn=model.split_batch,
            qry_chunk_tokens=chunk,
            tgt_chunk_tokens=chunk,
        )
    else:
        step = GradCache(ContrastiveLoss(TEMPERATURE), chunk, chunk, split_fn=model.split_batch)
    loss = step.step(wrapped, qry, tgt, tgt_owner=owners(rank))
    if engine in ("ddp", "fsdp2"):
        optimizer.step()
    else:
        wrapped.step()
    after = full_trainable(model, engine == "zero3")
    record.update(loss=loss.item(), delta={n: after[n] - before[n] for n in before})
    if engine == "fsdp2":
        record["state"] = fsdp2_state_round_trip(model, optimizer, after, f"{OUT['dir']}-{backbone}-{lora}")
    if engine.startswith("zero"):
        wrapped.destroy()
    del wrapped, optimizer, model
    gc.collect()
    return record


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--out", required=True)
    p.add_argument("--folders", required=True, help="JSON {backbone: tiny folder}")
    p.add_argument("--engines", default=",".join(ENGINES))
    p.add_argument("--backbones", default=",".join(BACKBONES))
    p.add_argument("--videos", action="store_true", help="add the video rows (Qwen-VL backbones)")
    p.add_argument("--budgets", action="store_true", help="token-budget chunks, a second positive on rank 0")
    args = p.parse_args()
    VIDEO_ROWS["on"] = args.videos
    OUT["dir"] = f"{args.out}.fsdp2"
    BUDGETS["on"] = args.budgets
    torch.set_num_threads(1)
    folders = json.loads(args.folders)
    import deepspeed

    deepspeed.ops.__compatible_ops__["deepspeed_shm_comm"] = False
    dist.init_process_group("gloo")
    deepspeed.init_distributed("gloo")
    rank = dist.get_rank()
    result: dict = {"refs": {}, "runs": {}}
    refs = sorted({(backbone, lora, chunk) for _, backbone, lora, chunk in scenarios()})
    for i, (backbone, lora, chunk) in enumerate(refs):
        if i % WORLD == rank and backbone in args.backbones.split(","):
            result["refs"][(backbone, lora, chunk)] = reference(backbone, folders[backbone], lora, chunk)
    for engine, backbone, lora, chunk in scenarios(args.engines.split(","), args.backbones.split(",")):
        print(f"rank {rank}: {engine} {backbone} lora={lora} chunk={chunk}", flush=True)
        run = distributed(engine, backbone, folders[backbone], lora, chunk, rank)
        if rank == 0 or BUDGETS["on"]:  # with budgets each rank's own chunk counts are compared
            result["runs"][(engine, backbone, lora, chunk)] = run
    torch.save(result, f"{args.out}.rank{rank}")
    dist.barrier()


if __name__ == "__main__":
    run_and_exit(main)
