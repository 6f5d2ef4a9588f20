"""A tiny Phi-3.5-V checkpoint folder in the official layout, for offline tests and the demo.

Written the way the official files are: config.json (`model_type: phi3_v`, `embd_layer`,
`img_processor`, rope scaling `su` with short/long factors, plus `vision_config`, our convention for
non-default vision towers), safetensors shards with the official key names and an index json,
tokenizer files, and preprocessor_config.json with `num_crops`.

The tokenizer is trained in-process and behaves like the Phi-3.5 one (a Llama SentencePiece-style BPE
converted to `tokenizer.json`): byte fallback with `<0x00>`..`<0xFF>` at ids 3..258, a normaliser that
prepends "▁" and turns spaces into "▁" (so " Represent" is "▁", "▁Represent"), BOS added by the
post-processor, no EOS; `<unk>`=0, `<s>`=1, `</s>`=2, then the learned pieces, then `<|endoftext|>`
(the pad token, 32000 in the real vocabulary) and the chat tokens. The ids are written to the config.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from ..backbones.phi3v import save_phi3v
from ..backbones.phi3v_model import Phi3VConfig, Phi3VForCausalLM
from ..backbones.phi3v_processor import Phi3VProcessor, preprocessor_config
from .vocabulary import CORPUS

SPECIAL = ["<unk>", "<s>", "</s>"]
EXTRA_SPECIAL = ["<|endoftext|>", "<|system|>", "<|end|>", "<|user|>", "<|assistant|>"]
WORDS = (
    "represent the given image with following question what is in a photo of find me an everyday that "
    "matches caption red green blue yellow black white circle square triangle star shape colour color "
    "large small left right top bottom object objects two three one background text picture answer "
    "query target document news article classification retrieval grounding dog cat car tree house "
    "person people sky water road ship plane bird flower food chart table page number select region"
).split()


def _corpus(seed: int, lines: int = 400) -> list[str]:
    rng = random.Random(seed)
    base = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 12))) for _ in range(lines)]
    return (
        base + [s.capitalize() + rng.choice([".", "?", ":", "!"]) for s in base[: lines // 2]] + [CORPUS] * 4
    )


def train_tokenizer(seed: int = 0, vocab_size: int = 400) -> PreTrainedTokenizerFast:
    """A Llama/Phi-3.5-style BPE tokenizer trained on a small synthetic corpus."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never", split=True)
    extra_alphabet = list("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.,:;!?'\"()-_/")
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, special_tokens=SPECIAL, initial_alphabet=extra_alphabet, show_progress=False
    )
    tok.train_from_iterator(_corpus(seed), trainer)

    # Re-lay the vocabulary like the Llama/Phi-3 one: specials, 256 byte-fallback pieces, learned pieces.
    data = json.loads(tok.to_str())
    learned = [t for t, _ in sorted(data["model"]["vocab"].items(), key=lambda kv: kv[1]) if t not in SPECIAL]
    vocab = {t: i for i, t in enumerate(SPECIAL)}
    for byte in range(256):
        vocab[f"<0x{byte:02X}>"] = len(vocab)
    for piece in learned:
        vocab.setdefault(piece, len(vocab))
    data["model"].update(vocab=vocab, byte_fallback=True, fuse_unk=True)
    data["pre_tokenizer"] = None  # as in the official tokenizer.json: the normaliser does the "▁" work
    for added in data["added_tokens"]:
        added["id"] = vocab[added["content"]]
    tok = Tokenizer.from_str(json.dumps(data))
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    tok.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    tok.add_special_tokens(EXTRA_SPECIAL)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<|endoftext|>",
        add_bos_token=True,
        add_eos_token=False,
        padding_side="right",
    )


def _write_tokenizer(tokenizer: PreTrainedTokenizerFast, folder: Path) -> None:
    tokenizer.save_pretrained(str(folder))
    cfg_file = folder / "tokenizer_config.json"
    cfg = json.loads(cfg_file.read_text())
    # what the official tokenizer_config.json says (transformers 5 would rebuild a LlamaTokenizer's
    # pre-tokenizer from this; the backbone therefore reads tokenizer.json as is)
    cfg.update(tokenizer_class="LlamaTokenizer", legacy=False, add_bos_token=True, add_eos_token=False)
    cfg_file.write_text(json.dumps(cfg, indent=2) + "\n")


def tiny_config(tokenizer: PreTrainedTokenizerFast, **overrides: Any) -> Phi3VConfig:
    """Tiny sizes: LM hidden 64 x 2 layers, CLIP hidden 32 x 2 layers at 56 px (4x4 patches -> 2x2 merged)."""
    vision = {
        "hidden_size": 32,
        "intermediate_size": 64,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "image_size": 56,
        "patch_size": 14,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": 32,
        **overrides.pop("vision_config", {}),
    }
    hidden = overrides.get("hidden_size", 64)
    heads = overrides.get("num_attention_heads", 4)
    half_rot = hidden // heads // 2
    vocab_size = -(-len(tokenizer) // 64) * 64
    settings: dict[str, Any] = {
        "vocab_size": vocab_size,
        "hidden_size": hidden,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": heads,
        "num_key_value_heads": heads,
        "rms_norm_eps": 1e-5,
        "max_position_embeddings": 131072,
        "original_max_position_embeddings": 4096,
        "rope_theta": 10000.0,
        "rope_scaling": {
            "type": "su",
            "short_factor": [1.0 + 0.05 * i for i in range(half_rot)],
            "long_factor": [1.0 + 0.5 * i for i in range(half_rot)],
        },
        "sliding_window": 262144,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
        "tie_word_embeddings": False,
        "vision_config": vision,
        **overrides,
    }
    return Phi3VConfig(**settings)


def write_tiny_phi3v(folder: str | Path, **overrides: Any) -> Path:
    """Write a tiny random Phi-3.5-V folder in the official layout; returns the folder.

    Overrides: `seed`, `num_crops` (preprocessor_config.json), `max_shard_bytes` (default small, so
    the weights are sharded with an index json), `vision_config` (dict merged over the tiny CLIP),
    and any Phi-3 config field.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    seed = int(overrides.pop("seed", 0))
    num_crops = int(overrides.pop("num_crops", 4))
    max_shard_bytes = int(overrides.pop("max_shard_bytes", 200_000))
    tokenizer = train_tokenizer(seed)
    config = tiny_config(tokenizer, **overrides)
    torch.manual_seed(seed)
    model = Phi3VForCausalLM(config)
    with torch.no_grad():  # every tensor random (separators included) so a misplaced one shows in tests
        gen = torch.Generator().manual_seed(seed)
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=gen)
            if "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * noise)
            elif name.endswith("_GN"):
                param.copy_(0.5 * noise)
            else:
                param.copy_(0.05 * noise)
    save_phi3v(model, folder, max_shard_bytes=max_shard_bytes)
    _write_tokenizer(tokenizer, folder)
    vision = config.vision_config
    processor = Phi3VProcessor(
        tokenizer, num_crops=num_crops, crop_size=vision.image_size, patch_size=vision.patch_size
    )
    (folder / "preprocessor_config.json").write_text(
        json.dumps(preprocessor_config(processor), indent=2) + "\n"
    )
    return folder


#: backbone name -> function(folder, **overrides) writing its tiny checkpoint folder
TINY_BUILDERS = {"phi3_v": write_tiny_phi3v}
