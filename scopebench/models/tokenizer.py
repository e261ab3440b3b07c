"""A word-level tokenizer for small closed-vocabulary models (the demo family and tests)."""

from __future__ import annotations

import re
from collections.abc import Iterable

SPECIALS = ["<pad>", "<unk>", "<eos>"]
WORD = re.compile(r"\w+|[^\w\s]+")


def build_word_tokenizer(corpus: Iterable[str]):
    """A transformers fast tokenizer whose vocabulary is every word/punctuation run in ``corpus``."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = sorted({w for text in corpus for w in WORD.findall(text)})  # case-sensitive: "D" and "d" differ
    vocab = {tok: i for i, tok in enumerate(SPECIALS + words)}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Split(Regex(WORD.pattern), behavior="isolated")])
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>",
        clean_up_tokenization_spaces=False
    )
