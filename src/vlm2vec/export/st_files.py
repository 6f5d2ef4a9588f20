"""The sentence-transformers module files of an export: transformer, last-token pooling, normalisation.

Written as plain JSON (what `SentenceTransformer.save` writes) so that exporting needs no
sentence-transformers install: `modules.json` lists the three modules; `sentence_bert_config.json` pins
the transformer's modalities (only those the export reproduces, see `support.st_modalities`), its
output (the last hidden state as token embeddings) and, for text-only exports, the text length our
processor cuts at; `1_Pooling` takes the last real token (left or right padding); `2_Normalize` is the
L2 norm (only when the model normalises); `config_sentence_transformers.json` holds the named prompts
and cosine similarity.
"""

from __future__ import annotations

from pathlib import Path

from ..atomic_files import atomic_write_json

#: the sentence-transformers version the files were written for and verified with
ST_VERSION = "6.3.0"
_TRANSFORMER = "sentence_transformers.base.modules.transformer.Transformer"
_POOLING = "sentence_transformers.sentence_transformer.modules.pooling.Pooling"
_NORMALIZE = "sentence_transformers.base.modules.normalize.Normalize"


def _modality_config(modalities: tuple[str, ...]) -> dict[str, dict[str, str]]:
    config = {}
    for name in modalities:
        entry = {"method": "forward", "method_output_name": "last_hidden_state"}
        if name == "message":
            entry["format"] = "structured"
        config[name] = entry
    return config


def write_sentence_transformers_files(
    folder: str | Path,
    *,
    embedding_dimension: int,
    modalities: tuple[str, ...],
    prompts: dict[str, str],
    normalize: bool,
    max_seq_length: int | None,
) -> list[Path]:
    """Write the module files into the exported model folder `folder`; returns the files written."""
    folder = Path(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": _TRANSFORMER},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": _POOLING},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": _NORMALIZE})
    transformer = {
        "transformer_task": "feature-extraction",
        "modality_config": _modality_config(modalities),
        "module_output_name": "token_embeddings",
    }
    if modalities == ("text",) and max_seq_length is not None:
        transformer["max_seq_length"] = max_seq_length
    written = [
        atomic_write_json(folder / "modules.json", modules),
        atomic_write_json(folder / "sentence_bert_config.json", transformer),
        atomic_write_json(
            folder / "1_Pooling" / "config.json",
            {"embedding_dimension": embedding_dimension, "pooling_mode": "lasttoken", "include_prompt": True},
        ),
        atomic_write_json(
            folder / "config_sentence_transformers.json",
            {
                "model_type": "SentenceTransformer",
                "__version__": {"sentence_transformers": ST_VERSION},
                "prompts": prompts,
                "default_prompt_name": None,
                "similarity_fn_name": "cosine" if normalize else "dot",
            },
        ),
    ]
    if normalize:
        (folder / "2_Normalize").mkdir(exist_ok=True)
        written.append(folder / "2_Normalize")
    return written


__all__ = ["ST_VERSION", "write_sentence_transformers_files"]
