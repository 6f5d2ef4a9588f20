"""The words the synthetic data uses and an in-process byte-level tokenizer trained on them, so the
tiny models' tokenizers do not shred the synthetic prompts into bytes."""

from __future__ import annotations

from typing import Any

#: words the synthetic data uses, so the tiny tokenizers do not shred them into bytes
CORPUS = (
    "Represent the given image for classification . Represent the given image with the following question : "
    "Find an image that matches the given caption . Find a caption for the given image . Select the portion of "
    "the image that isolates the object labeled as what is in the image ? how many objects are there ? "
    "which color is the shape a an and of on with red green blue yellow purple orange white black gray pink "
    "brown cyan circle square triangle star cross diamond ring heart background striped checkered plain noisy "
    "left right top bottom center one two three four five small large picture photo text label object shape "
    "color answer question image caption query target document query: passage: 0 1 2 3 4 5 6 7 8 9 "
    "the quick brown fox jumps over the lazy dog A cat and a dog sun tree moon fish boat book car home key map cup"
)


def train_byte_level_tokenizer(special_tokens: list[str], vocab_size: int = 400, corpus: str = CORPUS) -> Any:
    """A byte-level BPE tokenizer (GPT-2/Qwen style, adds no BOS) trained in-process."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=special_tokens,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator([corpus] * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=special_tokens[1:],
    )
