"""A character-level tokenizer in Hugging Face format (tokenizer.json), loadable by vLLM and transformers.

One token per printable ASCII character plus newline: the toy domain needs nothing more, and a
character model learns arithmetic digit by digit.  It is a BPE model with no merges, which the
`tokenizers` library treats as plain character splitting; the Fuse decoder joins characters back.
"""
from __future__ import annotations

from pathlib import Path

from tokenizers import Tokenizer, decoders, models

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"
SPECIAL_TOKENS = [PAD, EOS, UNK]
CHARACTERS = ["\n"] + [chr(code) for code in range(32, 127)]
VOCAB_SIZE = 128  # len(SPECIAL_TOKENS) + len(CHARACTERS) = 99, rounded up for aligned matrices


def build_tokenizer() -> Tokenizer:
    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS + CHARACTERS)}
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=UNK))
    tokenizer.decoder = decoders.Fuse()
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
