"""What the final export needs under DeepSpeed ZeRO-3 to write the files a one-process run writes.

Two things differ under ZeRO-3: the parameters are partitioned (every rank must take part in
gathering them), and transformers' `from_pretrained` records extra weight renamings when it loads
into a ZeRO-3 model (its legacy renamings and a prefix change); `save_pretrained` reverts the recorded
renamings, which turns `model.language_model.layers.*` into `model.model.layers.*` instead of the
official `model.layers.*`. Saving with no recorded renamings makes transformers use the class's
default mapping, the one a plain load records, so the keys are the official ones.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def official_key_layout(model: torch.nn.Module) -> Iterator[None]:
    """Inside the block, `save_pretrained` of any transformers model in `model` writes the official keys."""
    recorded = [
        (module, module._weight_conversions)
        for module in model.modules()
        if getattr(module, "_weight_conversions", None) is not None
    ]
    try:
        for module, _ in recorded:
            module._weight_conversions = None
        yield
    finally:
        for module, conversions in recorded:
            module._weight_conversions = conversions


@contextlib.contextmanager
def zero3_export(model: torch.nn.Module) -> Iterator[None]:
    """Collective: gathers the full ZeRO-3 parameters on every rank (read only) and saves official keys."""
    import deepspeed

    with deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None):
        with official_key_layout(model):
            yield
