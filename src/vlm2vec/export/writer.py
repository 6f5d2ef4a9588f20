"""`export_model_folder`: one model folder for a target library, written atomically.

The folder is built under a temp name beside OUT and renamed into place at the end
(`atomic_files.replace_dir`), so an interrupted or refused export leaves nothing half-written; an
existing OUT is replaced only when asked. Contents: the backbone in transformers' own layout with any
adapter merged at the precision asked for (`EmbeddingModel.save_pretrained(merged=True)`), the
processor files (right padding, as our processors pad; a text-only export's processor is its tokenizer), `vlm2vec.json` (the settings the model embeds
with, so `EmbeddingModel.from_pretrained` reopens the export), the prompt format as the chat template
the target applies, the sentence-transformers module files for that target, and the model card.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from ..atomic_files import atomic_write_json, atomic_write_text, replace_dir
from ..backbones.base import unwrap_peft
from ..backbones.qwen3vl import embedding_instruction
from .card import write_model_card
from .source import model_folder, open_model
from .st_files import write_sentence_transformers_files
from .support import ExportError, check_dtype, check_format, st_modalities
from .templates import chat_template

logger = logging.getLogger(__name__)

#: the query instruction Qwen3-VL-Embedding's README uses for retrieval
QWEN3_VL_EMBEDDING_QUERY = "Retrieve images or text relevant to the user's query."


def named_prompts(prompt_format: str, system_instruction: str, query: str | None, document: str | None):
    """The query and document prompts: as given, else Qwen3-VL-Embedding's published pair for that
    format (documents get the model's own instruction); in that format each is punctuated as its
    processor punctuates a system message."""
    if prompt_format == "qwen3_vl_embedding":
        query = embedding_instruction(query or QWEN3_VL_EMBEDDING_QUERY)
        document = embedding_instruction(document or system_instruction)
    return {k: v for k, v in (("query", query), ("document", document)) if v}


def _tokenizer_settings(folder: Path, text_only: bool) -> None:
    """Our processors pad on the right; the exported tokenizer says so, whatever its base said. A
    text-only export's processor is its tokenizer: `processor_class` says so, and `AutoProcessor` (which
    sentence-transformers calls) then loads the tokenizer alone, with no image or video processor (a
    Qwen-VL video processor needs torchvision)."""
    file = folder / "tokenizer_config.json"
    if file.is_file():
        config = json.loads(file.read_text())
        config["padding_side"] = "right"
        if text_only and config.get("tokenizer_class"):
            config["processor_class"] = config["tokenizer_class"]
        atomic_write_json(file, config)


def export_model_folder(
    model: str | Path,
    out: str | Path,
    *,
    target: str,
    dtype: str = "float32",
    base: str | None = None,
    overwrite: bool = False,
    results: str | Path | None = None,
    query_prompt: str | None = None,
    document_prompt: str | None = None,
) -> Path:
    """Export MODEL (a run, a saved folder or an adapter) to OUT for `target`; returns OUT."""
    check_format(target)
    check_dtype(target, dtype)
    out = Path(out)
    if out.exists() and not overwrite:
        raise ExportError(f"OUT {out} exists; pass --overwrite to replace it")
    results = Path(results) if results is not None else None
    if results is not None and not (results / "summary.md").is_file():
        raise ExportError(f"--results {results}: no summary.md (an eval output folder holds one)")
    folder, run = model_folder(model)
    embedder = open_model(folder, dtype, base)
    cfg = embedder.cfg
    st = target == "sentence-transformers"
    modalities = st_modalities(cfg.backbone, cfg.prompt_format) if st else ()
    template = (
        chat_template(cfg.prompt_format, cfg.system_instruction) if cfg.backbone.startswith("qwen") else None
    )
    prompts = named_prompts(cfg.prompt_format, cfg.system_instruction, query_prompt, document_prompt)
    staging = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        embedder.save_pretrained(staging, merged=True)
        _tokenizer_settings(staging, text_only=modalities == ("text",))
        if template is not None:
            atomic_write_text(staging / "chat_template.jinja", template)
        if st:
            write_sentence_transformers_files(
                staging,
                embedding_dimension=unwrap_peft(embedder.encoder).config.get_text_config().hidden_size,
                modalities=modalities,
                prompts=prompts,
                normalize=cfg.normalize,
                max_seq_length=cfg.max_length,
            )
        write_model_card(
            staging,
            target=target,
            out=str(out),
            cfg=cfg,
            modalities=modalities,
            prompts=prompts,
            run=run,
            results=results,
        )
        replace_dir(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    logger.info("exported %s to %s (%s, %s)", folder, out, target, dtype)
    return out


__all__ = ["QWEN3_VL_EMBEDDING_QUERY", "export_model_folder", "named_prompts"]
