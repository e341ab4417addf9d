"""Tokenizers for the tiny random models (the demo's and the tests'): complete, tiny, built offline."""

from __future__ import annotations


def tiny_clip_tokenizer(max_length: int = 77):
    """A CLIP byte-level BPE tokenizer over the smallest complete vocabulary: the 256 byte symbols,
    their end-of-word forms and the two special tokens, no merges (every text tokenizes, letter by letter)."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    symbols = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {s: i for i, s in enumerate(symbols + [s + "</w>" for s in symbols])}
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def tiny_bert_tokenizer():
    """A BERT WordPiece tokenizer over letters and digits (each word splits into its characters) plus
    the special tokens and the full stop Grounding DINO ends each phrase with."""
    import string

    from transformers import BertTokenizer

    chars = string.ascii_lowercase + string.digits
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", *chars, *(f"##{c}" for c in chars)]
    return BertTokenizer(vocab={w: i for i, w in enumerate(words)})
