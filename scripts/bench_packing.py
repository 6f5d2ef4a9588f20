"""Would packing a GradCache chunk into one sequence (variable-length attention) pay, after grouping?

    python scripts/bench_packing.py                 # CPU, ~10 s
    python scripts/bench_packing.py --device cuda

For chunks planned by `vlm2vec.chunking.plan_chunks` (rows grouped by length, trimmed) on a
MMEB-like mix of row lengths (image rows of ~775 tokens, as Phi-3.5-V at 4 crops, and text rows of
5-60), this measures, side by side in one process:

- how many padded positions are left per chunk (the most that packing could save in the
  token-linear layers, which dominate the FLOPs);
- one causal attention layer (SDPA) on the padded chunk [B, heads, W, d] against the same rows packed
  into one sequence [1, heads, sum(len), d] with a block-diagonal causal mask, the only
  variable-length form SDPA offers without flash-attn / compiled FlexAttention; with the maximum
  difference of the real positions' outputs (exactness, fp32).

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--rows", type=int, default=64, help="rows of the side")
    p.add_argument("--image-share", type=float, default=0.5, help="share of image rows")
    p.add_argument("--chunk", type=int, default=4, help="rows per chunk")
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--head-dim", type=int, default=64)
    p.add_argument("--repeats", type=int, default=2)
    return p.parse_args(argv)


def attention_inputs(lengths: list[int], heads: int, dim: int, device: str):
    """Padded q [B, h, W, d] with a key-padding causal mask, and the same rows packed [1, h, L, d]."""
    import torch

    g = torch.Generator().manual_seed(0)
    width, total = max(lengths), sum(lengths)
    padded = torch.zeros(len(lengths), heads, width, dim)
    packed = torch.randn(1, heads, total, dim, generator=g)
    starts = [sum(lengths[:i]) for i in range(len(lengths))]
    for b, (s, n) in enumerate(zip(starts, lengths)):
        padded[b, :, :n] = packed[0, :, s : s + n]
    causal = torch.ones(width, width).tril().bool()
    keys = torch.arange(width)[None, :] < torch.tensor(lengths)[:, None]
    pad_mask = (causal[None] & keys[:, None, :])[:, None]  # [B, 1, W, W]
    pad_mask |= torch.eye(width, dtype=torch.bool)[None, None]  # padded query rows attend to themselves
    seg = torch.repeat_interleave(torch.arange(len(lengths)), torch.tensor(lengths))
    block = (seg[:, None] == seg[None, :]) & torch.ones(total, total).tril().bool()
    return (padded.to(device), pad_mask.to(device)), (packed.to(device), block[None, None].to(device)), starts


def timed(fn, repeats: int, device: str) -> float:
    import torch

    best = float("inf")
    for _ in range(repeats + 1):  # the first call warms up
        if device == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device == "cuda":
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv: list[str]) -> dict:
    args = parse_args(argv)
    import torch
    import torch.nn.functional as F

    from vlm2vec.chunking import plan_chunks

    g = torch.Generator().manual_seed(1)
    n_img = int(args.rows * args.image_share)
    lengths = [760 + int(torch.randint(0, 30, (1,), generator=g)) for _ in range(n_img)]
    lengths += [int(torch.randint(5, 60, (1,), generator=g)) for _ in range(args.rows - n_img)]
    lengths = [lengths[i] for i in torch.randperm(len(lengths), generator=g).tolist()]
    plan = plan_chunks(lengths, max_rows=args.chunk)
    real = sum(lengths)
    padded_old = len(lengths) * max(lengths)
    padded_new = sum(len(c) * max(lengths[r] for r in c) for c in plan)
    t_pad = t_pack = 0.0
    max_diff = 0.0
    for chunk in plan:
        rows = [lengths[r] for r in chunk]
        (q, m), (pq, pm), starts = attention_inputs(rows, args.heads, args.head_dim, args.device)
        t_pad += timed(
            functools.partial(F.scaled_dot_product_attention, q, q, q, attn_mask=m), args.repeats, args.device
        )
        t_pack += timed(
            functools.partial(F.scaled_dot_product_attention, pq, pq, pq, attn_mask=pm),
            args.repeats,
            args.device,
        )
        out_pad = F.scaled_dot_product_attention(q, q, q, attn_mask=m)
        out_pack = F.scaled_dot_product_attention(pq, pq, pq, attn_mask=pm)
        for b, (s, n) in enumerate(zip(starts, rows)):
            diff = (out_pad[b, :, :n] - out_pack[0, :, s : s + n]).abs().max().item()
            max_diff = max(max_diff, diff)
    result = {
        "device": args.device,
        "rows": args.rows,
        "chunk_rows": args.chunk,
        "real_tokens": real,
        "positions_one_padded_batch": padded_old,
        "positions_grouped_trimmed_chunks": padded_new,
        "padding_left_after_grouping": (padded_new - real) / padded_new,
        "attention_s_padded_chunks": t_pad,
        "attention_s_packed_block_mask": t_pack,
        "packed_over_padded_attention": t_pack / t_pad,
        "max_abs_diff_fp32": max_diff,
    }
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
