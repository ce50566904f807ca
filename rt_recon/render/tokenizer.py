"""A word-level tokenizer for a closed caption vocabulary, saved in transformers' format.

The embedded model's captions use a few dozen words, so a word-level
vocabulary (no BPE merges) covers them exactly; it is built in code and
saved as ``tokenizer.json``, which ``AutoTokenizer.from_pretrained`` loads
offline like any other tokenizer.
"""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Tokenizer, models, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

PAD, BOS, EOS, UNK = "<|pad|>", "<|startoftext|>", "<|endoftext|>", "<|unk|>"


def build_word_tokenizer(words: Iterable[str], max_length: int) -> PreTrainedTokenizerFast:
    """Tokenizer mapping each known word to one id, framed by start/end tokens."""
    vocab = {token: i for i, token in enumerate([PAD, BOS, EOS, UNK])}
    for word in sorted(set(words)):
        vocab.setdefault(word, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    core.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # "top-left" stays one word
    core.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A {EOS}", special_tokens=[(BOS, vocab[BOS]), (EOS, vocab[EOS])]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=core,
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        model_max_length=max_length,
    )
