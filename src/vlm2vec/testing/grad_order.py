"""The order in which a backward makes parameter gradients ready: what ZeRO-2 packs its buckets by."""

from __future__ import annotations

from collections.abc import Callable

import torch


def gradient_ready_order(module: torch.nn.Module, compute_loss: Callable[[], torch.Tensor]) -> list[str]:
    """Names of `module`'s trainable parameters in the order their gradients are accumulated during
    `compute_loss().backward()` (one entry per accumulation). Gradients are cleared before and after.

    DeepSpeed ZeRO-2 copies each gradient into its reduction bucket when it becomes ready and every
    rank reduces the bucket by its own layout, so ranks must produce the same list on every backward.
    """
    names = {id(p): n for n, p in module.named_parameters() if p.requires_grad}
    order: list[str] = []
    handles = [
        p.register_post_accumulate_grad_hook(lambda p: order.append(names[id(p)]))
        for p in module.parameters()
        if p.requires_grad
    ]
    module.zero_grad(set_to_none=True)
    try:
        compute_loss().backward()
    finally:
        for handle in handles:
            handle.remove()
        module.zero_grad(set_to_none=True)
    return order
