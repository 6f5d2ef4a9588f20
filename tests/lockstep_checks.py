"""What ranks must agree on: the order gradients become ready (ZeRO-2 buckets) and the module trace (ZeRO-3)."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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


def _count_tensors(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return 1
    if isinstance(value, Mapping):  # dicts and transformers' ModelOutput
        return sum(_count_tensors(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_count_tensors(v) for v in value)
    return 0


def module_trace(module: torch.nn.Module, run: Callable[[], Any]) -> list[tuple[str, int]]:
    """(name, tensors returned) of every call of `module`'s submodules during `run()`, in the order the
    calls start (a module enclosing others comes before them).

    DeepSpeed ZeRO-3 all-gathers a module's parameters when it is called and registers one backward
    fetch per tensor the module returns; each rank records that trace and replays it, so two ranks
    whose batches give different traces fall out of step (a hang, or "disagreement on list contents").
    """
    names = {id(m): n or "<root>" for n, m in module.named_modules()}
    trace: list[list] = []
    open_calls: list[int] = []

    def enter(m: torch.nn.Module, _args: Any) -> None:
        open_calls.append(len(trace))
        trace.append([names[id(m)], -1])

    def leave(_m: torch.nn.Module, _args: Any, out: Any) -> None:
        trace[open_calls.pop()][1] = _count_tensors(out)

    handles = [
        h
        for m in module.modules()
        for h in (m.register_forward_pre_hook(enter), m.register_forward_hook(leave))
    ]
    try:
        run()
    finally:
        for handle in handles:
            handle.remove()
    return [(name, count) for name, count in trace]


def assert_same_module_trace(
    module: torch.nn.Module, runs: Mapping[str, Callable[[], Any]]
) -> list[tuple[str, int]]:
    """Assert that every run (e.g. a batch with images, a text-only one, a two-image row) gives the
    trace of the first; returns it. Run a backbone's tiny model in training mode through this: it is
    the lockstep contract of `vlm2vec.backbones.base.Backbone`."""
    traces = {label: module_trace(module, run) for label, run in runs.items()}
    (first, reference), *others = traces.items()
    for label, trace in others:
        if trace != reference:
            at = next(
                (i for i, (a, b) in enumerate(zip(reference, trace)) if a != b),
                min(len(reference), len(trace)),
            )
            raise AssertionError(
                f"module trace of {label!r} differs from {first!r} at call {at} "
                f"({len(trace)} vs {len(reference)} calls): {trace[at : at + 3]} vs {reference[at : at + 3]}"
            )
    return reference
