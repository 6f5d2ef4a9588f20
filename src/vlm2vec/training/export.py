"""The end of a run: `<output_dir>/final` (and `final_merged`), the same files whatever the launch.

`export_model` writes what `EmbeddingModel.from_pretrained` opens. Two things differ under DeepSpeed
ZeRO-3: the parameters are partitioned (every rank must take part in gathering them), and transformers' `from_pretrained` records extra weight renamings when it loads
into a ZeRO-3 model (its legacy renamings and a prefix change); `save_pretrained` reverts the recorded
renamings, which turns `model.language_model.layers.*` into `model.model.layers.*` instead of the
official `model.layers.*`. Saving with no recorded renamings makes transformers use the class's
default mapping, the one a plain load records, so the keys are the official ones.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from accelerate import Accelerator

from ..model import EmbeddingModel
from .engine import zero_stage
from .fsdp2 import full_parameters, is_sharded

logger = logging.getLogger(__name__)


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


def export_model(
    accelerator: Accelerator, model: torch.nn.Module, output_dir: Path, *, merged: bool = False
) -> Path:
    """Write `<output_dir>/final` (adapters, or the full model) and, with `merged`, `final_merged`.

    Collective: under ZeRO-3 and FSDP2 every rank takes part in gathering the partitioned weights.
    """
    unwrapped: EmbeddingModel = accelerator.unwrap_model(model)
    gather: contextlib.AbstractContextManager = contextlib.nullcontext()
    if zero_stage(accelerator) == 3:
        gather = zero3_export(unwrapped)  # gathered weights, official key names
    elif is_sharded(unwrapped):
        gather = full_parameters(unwrapped, keep=accelerator.is_main_process)  # FSDP2 shards, gathered
    final = output_dir / "final"
    with gather:
        if accelerator.is_main_process:
            unwrapped.save_pretrained(final)
            if merged and unwrapped.is_lora:
                # FSDP2 modules cannot be copied to merge: merge the saved adapter over its base instead
                source = EmbeddingModel.from_pretrained(final) if is_sharded(unwrapped) else unwrapped
                source.save_pretrained(output_dir / "final_merged", merged=True)
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        logger.info("exported model to %s", final)
    return final
