"""The exported model's card (README.md): what it is, how to load it, what it was trained with, and its
MMEB results when the run has them, so a shared folder carries its own provenance."""

from __future__ import annotations

from pathlib import Path

from ..atomic_files import atomic_write_text
from ..config import ModelConfig

_USAGE = {
    "sentence-transformers": (
        "```python\nfrom sentence_transformers import SentenceTransformer\n\n"
        'model = SentenceTransformer("{out}")\n'
        "{example}```\n"
    ),
    "hf": (
        "```python\nfrom vlm2vec import EmbeddingModel\n\n"
        'model = EmbeddingModel.from_pretrained("{out}")\n'
        'reps = model.embed(["a photo of a cat"])\n```\n'
    ),
}


def _example(modalities: tuple[str, ...], prompts: dict[str, str]) -> str:
    prompt = ', prompt_name="query"' if "query" in prompts else ""
    lines = f'q = model.encode(["a photo of a cat"]{prompt})\n'
    if "image" in modalities:
        lines += 'd = model.encode([{"image": "cat.jpg", "text": "a cat"}])\n'
    return lines


def model_card(
    target: str,
    out: str,
    cfg: ModelConfig,
    modalities: tuple[str, ...],
    prompts: dict[str, str],
    run: Path | None,
    results: Path | None,
) -> str:
    """The card's markdown text."""
    inputs = ", ".join(m for m in modalities if m != "message") or "text, image (see vlm2vec.json)"
    parts = [
        f"# {Path(out).name}\n",
        f"A `{cfg.backbone}` multimodal embedding model trained with vlm2vec, exported for {target}: "
        f"last-token pooling{', L2-normalised' if cfg.normalize else ''}, weights in {cfg.dtype}, "
        f"prompt format `{cfg.prompt_format}`. Inputs this export reproduces exactly: {inputs}.\n",
        "## Usage\n",
        _USAGE[target].format(out=out, example=_example(modalities, prompts)),
    ]
    if prompts:
        parts.append("Named prompts: " + "; ".join(f"`{k}`: {v!r}" for k, v in prompts.items()) + "\n")
    if run is not None and (run / "config.yaml").is_file():
        parts += ["## Training config\n", f"```yaml\n{(run / 'config.yaml').read_text().rstrip()}\n```\n"]
    if results is not None and (results / "summary.md").is_file():
        parts += ["## MMEB results\n", (results / "summary.md").read_text().rstrip() + "\n"]
    return "\n".join(parts)


def write_model_card(folder: Path, **fields) -> Path:
    """Write README.md into `folder` (see `model_card` for the fields)."""
    return atomic_write_text(folder / "README.md", model_card(**fields))


__all__ = ["model_card", "write_model_card"]
