"""What each export target reproduces exactly, and the one-line refusals for what it cannot.

An export must embed as our model does, or not exist: a folder that loads elsewhere but embeds
differently is worse than an error. The rules here say, per backbone and prompt format, which inputs a
target library reproduces: transformers' Qwen-VL models always lay images out with 3-D M-RoPE
positions, so the `vlm2vec` prompt format (image pads with 1-D positions) is exported for text only;
the `native` and `qwen3_vl_embedding` formats carry images too; LLaVA-NeXT is exported for text only
(its image path is not verified against ours); transformers has no Phi-3.5-V class, so
sentence-transformers cannot load that backbone at all (the `hf` target writes its official layout).
"""

from __future__ import annotations

from ..backbones.base import DTYPES
from ..errors import UserError

#: `vlm2vec export --format` choices
FORMATS = ("sentence-transformers", "hf")
#: backbones sentence-transformers loads through transformers' own classes
ST_BACKBONES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl", "llava_next")
#: Qwen-VL prompt formats whose image layout transformers' own forward reproduces
IMAGE_FORMATS = ("native", "qwen3_vl_embedding")
QWEN_BACKBONES = ("qwen2_vl", "qwen2_5_vl", "qwen3_vl")


class ExportError(UserError, ValueError):
    """An export that would not embed as the model does, or that would overwrite a folder; one line."""


def check_format(target: str) -> None:
    if target not in FORMATS:
        raise ExportError(f"--format: unknown target {target!r}; choose one of {', '.join(FORMATS)}")


def check_dtype(target: str, dtype: str) -> None:
    """Both targets hold float32, bfloat16 and float16 weights (safetensors); nothing else."""
    if dtype not in DTYPES:
        raise ExportError(f"--dtype {dtype!r}: the {target} target holds only {', '.join(DTYPES)} weights")


def st_modalities(backbone: str, prompt_format: str) -> tuple[str, ...]:
    """The sentence-transformers modalities the export declares for this model (what it reproduces);
    an `ExportError` naming the backbone when sentence-transformers cannot load it."""
    if backbone not in ST_BACKBONES:
        raise ExportError(
            f"--format sentence-transformers: backbone {backbone!r} has no transformers class that "
            f"sentence-transformers can load (supported: {', '.join(ST_BACKBONES)}); use --format hf"
        )
    if backbone in QWEN_BACKBONES and prompt_format in IMAGE_FORMATS:
        return ("text", "image", "message")
    return ("text",)


__all__ = ["FORMATS", "ExportError", "check_dtype", "check_format", "st_modalities"]
