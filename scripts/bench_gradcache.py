"""Benchmark GradCache against plain training: step time at one global batch, peak memory as it grows.

The model is a stack of transformer layers with EmbeddingModel's forward contract (last-token pooling,
L2 norm), big enough for compute to dominate. Both paths run the same `GradCache.step`: chunk sizes
None give plain training (one forward with autograd), a chunk size gives the two-pass step.

Timing: plain and GradCache steps alternate in one run (same batch, same process, warm-up excluded);
the median of `--repeats` steps is reported and the ratio GradCache / plain.
Memory: for each global batch, the peak bytes of tensors autograd keeps for backward (counted with
`torch.autograd.graph.saved_tensors_hooks`, parameters excluded; works on CPU), the peak bytes of the
chunks' input copies alive at once, and on CUDA also the peak allocated memory of the step above what
was allocated before it. `--pixels F` gives every row F floats of "vision input" (think a video's
patches) that the encoder projects into its tokens, so inputs weigh what image and video rows weigh.
Three paths: plain, GradCache as it runs, and `held`: GradCache with every chunk's input copy kept for
the whole step (how the step ran before chunks were cut per pass), side by side in one run.

Prints one JSON object. CPU default (~1 min on 2 cores):
    python scripts/bench_gradcache.py
GPU:
    python scripts/bench_gradcache.py --device cuda --hidden 1024 --layers 8 --heads 16 --seq 128 \
        --batch 256 --chunk 32 --mem-batches 16,32,64,128,256 --mem-chunk 16 --dtype bf16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
import weakref
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from vlm2vec.gradcache import GradCache, split_batch  # noqa: E402
from vlm2vec.losses import ContrastiveLoss  # noqa: E402


class BenchEncoder(nn.Module):
    """Token embedding + pre-norm transformer layers + last-token pooling, L2-normalised."""

    def __init__(
        self, vocab: int, hidden: int, layers: int, heads: int, dropout: float, pixels: int = 0
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.vision = nn.Linear(pixels, hidden) if pixels else None
        layer = nn.TransformerEncoderLayer(
            hidden, heads, 4 * hidden, dropout=dropout, batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False)

    def encode(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        tokens = self.embed(inputs["input_ids"])
        if self.vision is not None and "pixel_values" in inputs:  # a row's vision input, added to its tokens
            tokens = tokens + self.vision(inputs["pixel_values"])[:, None, :]
        hidden = self.layers(tokens)
        return F.normalize(hidden[:, -1], dim=-1)

    def forward(self, qry=None, tgt=None) -> dict[str, torch.Tensor | None]:
        return {
            "qry_reps": self.encode(qry) if qry is not None else None,
            "tgt_reps": self.encode(tgt) if tgt is not None else None,
        }


class SavedTensorMeter:
    """Live and peak bytes of the storages autograd saves for backward (each storage counted once)."""

    def __init__(self, exclude: set[int]) -> None:
        self.exclude = exclude
        self.live: dict[int, list[int]] = {}  # storage pointer -> [references, bytes]
        self.current = 0
        self.peak = 0

    def pack(self, tensor: torch.Tensor) -> object:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in self.exclude or storage.nbytes() == 0:
            return tensor
        entry = self.live.setdefault(ptr, [0, storage.nbytes()])
        if entry[0] == 0:
            self.current += entry[1]
            self.peak = max(self.peak, self.current)
        entry[0] += 1
        return _Saved(self, ptr, tensor)

    @staticmethod
    def unpack(saved: object) -> torch.Tensor:
        return saved.tensor if isinstance(saved, _Saved) else saved

    def release(self, ptr: int) -> None:
        entry = self.live[ptr]
        entry[0] -= 1
        if entry[0] == 0:
            self.current -= entry[1]
            del self.live[ptr]

    def hooks(self) -> contextlib.AbstractContextManager:
        return torch.autograd.graph.saved_tensors_hooks(self.pack, self.unpack)


class _Saved:
    __slots__ = ("meter", "ptr", "tensor")

    def __init__(self, meter: SavedTensorMeter, ptr: int, tensor: torch.Tensor) -> None:
        self.meter, self.ptr, self.tensor = meter, ptr, tensor

    def __del__(self) -> None:
        self.meter.release(self.ptr)


class ChunkCopyMeter:
    """A split function that counts the bytes of the chunks' input copies alive at once (each storage
    counted until the tensor holding it dies); with `hold`, every copy is kept until the step ends."""

    def __init__(self, hold: bool) -> None:
        self.hold, self.kept = hold, {}
        self.current = self.peak = 0

    def split(self, inputs: dict, plan: list[list[int]]) -> list[dict]:
        key = (id(inputs), tuple(tuple(rows) for rows in plan))
        if key in self.kept:
            return self.kept[key]
        parts = split_batch(inputs, plan)
        for part in parts:
            for value in part.values():
                if isinstance(value, torch.Tensor):
                    size = value.untyped_storage().nbytes()
                    self.current += size
                    self.peak = max(self.peak, self.current)
                    weakref.finalize(value, self._free, size)
        if self.hold:
            self.kept[key] = parts
        return parts

    def _free(self, size: int) -> None:
        self.current -= size


def make_batch(
    rows: int, seq: int, vocab: int, device: torch.device, seed: int, pixels: int = 0
) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(0, vocab, (rows, seq), generator=g)
    batch = {"input_ids": ids.to(device), "attention_mask": torch.ones_like(ids).to(device)}
    if pixels:
        batch["pixel_values"] = torch.randn(rows, pixels, generator=g).to(device)
    return batch


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(args: argparse.Namespace, device: torch.device) -> contextlib.AbstractContextManager:
    if args.dtype == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


def timed_step(step: GradCache, model, qry, tgt, args, device) -> tuple[float, float]:
    """(wall seconds, process CPU seconds) of one step; CPU time is robust to a busy shared machine."""
    model.zero_grad(set_to_none=True)
    sync(device)
    start, start_cpu = time.perf_counter(), time.process_time()
    with autocast(args, device):
        step.step(model, qry, tgt)
    sync(device)
    return time.perf_counter() - start, time.process_time() - start_cpu


def bench_time(model, args, device) -> dict[str, float]:
    qry = make_batch(args.batch, args.seq, args.vocab, device, seed=1)
    tgt = make_batch(args.batch, args.seq, args.vocab, device, seed=2)
    loss = ContrastiveLoss()
    paths = {"plain": GradCache(loss), "gradcache": GradCache(loss, args.chunk, args.chunk)}
    wall: dict[str, list[float]] = {name: [] for name in paths}
    cpu: dict[str, list[float]] = {name: [] for name in paths}
    for i in range(args.warmup + args.repeats):
        order = list(paths) if i % 2 == 0 else list(reversed(paths))
        for name in order:
            seconds, cpu_seconds = timed_step(paths[name], model, qry, tgt, args, device)
            if i >= args.warmup:
                wall[name].append(seconds)
                cpu[name].append(cpu_seconds)
    plain, cached = statistics.median(wall["plain"]), statistics.median(wall["gradcache"])
    result = {"plain_s": round(plain, 4), "gradcache_s": round(cached, 4), "ratio": round(cached / plain, 3)}
    if device.type == "cpu":
        plain_cpu, cached_cpu = statistics.median(cpu["plain"]), statistics.median(cpu["gradcache"])
        result |= {"plain_cpu_s": round(plain_cpu, 4), "gradcache_cpu_s": round(cached_cpu, 4)}
        result["ratio_cpu_time"] = round(cached_cpu / plain_cpu, 3)
    return result


def bench_memory(model, args, device) -> list[dict[str, float | int | None]]:
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    loss = ContrastiveLoss()
    rows = []
    for batch in [int(b) for b in args.mem_batches.split(",")]:
        qry = make_batch(batch, args.seq, args.vocab, device, seed=3, pixels=args.pixels)
        tgt = make_batch(batch, args.seq, args.vocab, device, seed=4, pixels=args.pixels)
        row: dict[str, float | int | None] = {"batch": batch}
        for name in ("plain", "held", "gradcache"):
            copies = ChunkCopyMeter(hold=name == "held")
            chunk = None if name == "plain" else args.mem_chunk
            step = GradCache(loss, chunk, chunk, split_fn=copies.split)
            model.zero_grad(set_to_none=True)
            meter = SavedTensorMeter(params)
            try:
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                    base = torch.cuda.memory_allocated(device)
                    torch.cuda.reset_peak_memory_stats(device)
                with meter.hooks(), autocast(args, device):
                    step.step(model, qry, tgt)
                del step
                row[f"{name}_saved_mib"] = round(meter.peak / 2**20, 2)
                row[f"{name}_input_copies_mib"] = round(copies.peak / 2**20, 2)
                if device.type == "cuda":
                    row[f"{name}_cuda_peak_mib"] = round(
                        (torch.cuda.max_memory_allocated(device) - base) / 2**20, 1
                    )
            except torch.OutOfMemoryError:
                row[f"{name}_saved_mib"] = None
                row[f"{name}_cuda_peak_mib"] = None
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cpu")
    p.add_argument("--hidden", type=int, default=256)
    p.add_argument("--layers", type=int, default=2)
    p.add_argument("--heads", type=int, default=4)
    p.add_argument("--seq", type=int, default=32)
    p.add_argument("--vocab", type=int, default=1000)
    p.add_argument(
        "--dropout", type=float, default=0.0, help="CPU dropout masks are slow to draw and are drawn twice"
    )
    p.add_argument("--batch", type=int, default=64, help="global batch for the timing comparison")
    p.add_argument("--chunk", type=int, default=16, help="GradCache chunk for the timing comparison")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--mem-batches", default="16,32,64,128,256")
    p.add_argument("--mem-chunk", type=int, default=16)
    p.add_argument("--pixels", type=int, default=0, help="floats of vision input per row (0: text only)")
    p.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32", help="bf16 = autocast")
    p.add_argument(
        "--threads", type=int, default=1, help="torch CPU threads (1: CPU time is then comparable)"
    )
    p.add_argument("--skip-memory", action="store_true")
    args = p.parse_args(argv)
    if args.threads and args.device == "cpu":
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model = BenchEncoder(args.vocab, args.hidden, args.layers, args.heads, args.dropout, args.pixels)
    model = model.to(device).train()
    started = time.perf_counter()
    result = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
        "config": {k: v for k, v in vars(args).items() if k != "skip_memory"},
        "timing": bench_time(model, args, device),
    }
    if not args.skip_memory:
        result["memory"] = bench_memory(model, args, device)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
