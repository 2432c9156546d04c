"""A character-level tokenizer in Hugging Face format (tokenizer.json), loadable by vLLM and transformers.

One token per printable ASCII character plus newline: the toy domain needs nothing more, and a
character model learns arithmetic digit by digit.  It is a byte-level BPE with no merges, so every
byte is one token.  Byte-level, because transformers 5 loads a Qwen2 model's tokenizer as
Qwen2Tokenizer, which always pre-tokenizes bytes to the GPT-2 alphabet (space is "Ġ", newline "Ċ"):
a vocabulary written in plain characters would silently lose every space and newline there (and so
under vLLM), while this one reads the same through both loaders.
"""
from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, EOS, UNK]
CHARACTERS = ["\n"] + [chr(code) for code in range(32, 127)]
# GPT-2's byte-to-unicode alphabet for the two non-printing characters we use; the rest map to themselves
BYTE_LEVEL = {"\n": "\u010a", " ": "\u0120"}
VOCAB_SIZE = 128  # len(SPECIAL_TOKENS) + len(CHARACTERS) = 99, rounded up for aligned matrices


def build_tokenizer() -> Tokenizer:
    symbols = SPECIAL_TOKENS + [BYTE_LEVEL.get(char, char) for char in CHARACTERS]
    vocab = {token: index for index, token in enumerate(symbols)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(SPECIAL_TOKENS)
    return tokenizer


def save_pretrained_tokenizer(directory: Path, model_max_length: int) -> None:
    """Write tokenizer.json and its config next to a model."""
    from transformers import PreTrainedTokenizerFast

    fast = PreTrainedTokenizerFast(
        tokenizer_object=build_tokenizer(),
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=model_max_length,
        padding_side="left",
    )
    fast.save_pretrained(str(directory))
