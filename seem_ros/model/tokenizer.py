"""Offline CLIP BPE tokenizer (the ``openai/clip-vit-base-patch32`` vocabulary, 49408 ids).

The vocabulary comes from ``bpe_simple_vocab_16e6.txt.gz`` shipped in the installed ``open_clip``
package (located, not imported). Ids equal HF ``CLIPTokenizer(texts, padding='max_length',
truncation=True, max_length=77)``: start 49406, end 49407, padding also 49407; text longer than
75 BPE tokens is cut so that the end token stays last.
"""
import gzip
import importlib.util
import threading
from functools import lru_cache
from pathlib import Path

import torch

START_ID = 49406
END_ID = 49407
CONTEXT_LENGTH = 77
_NUM_MERGES = 49152 - 256 - 2
# The tokenizer is used from several threads (a node's prompt callbacks and its inference
# worker): transformers imports CLIPTokenizer lazily (two threads at once can see a
# half-initialized module), and a fast tokenizer switches its padding and truncation state per
# call. Building it and every call are serialized (a call takes well under a millisecond).
_LOCK = threading.Lock()


def _byte_symbols():
    """The 256 printable stand-ins for bytes 0..255 used by byte-level BPE, in vocabulary order."""
    kept = [*range(ord('!'), ord('~') + 1), *range(ord('¡'), ord('¬') + 1), *range(ord('®'), ord('ÿ') + 1)]
    others = [b for b in range(256) if b not in kept]
    return [chr(b) for b in kept] + [chr(256 + i) for i in range(len(others))]


def vocab_path():
    """Path of ``bpe_simple_vocab_16e6.txt.gz`` inside the installed ``open_clip`` package."""
    spec = importlib.util.find_spec('open_clip')
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError('open_clip is not installed; it provides the CLIP BPE vocabulary '
                                '(pip install --no-deps open_clip_torch)')
    path = Path(spec.submodule_search_locations[0]) / 'bpe_simple_vocab_16e6.txt.gz'
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


@lru_cache(maxsize=1)
def clip_tokenizer():
    """The HF ``CLIPTokenizer`` built from the local BPE file (cached; no hub access). Call it
    with ``_LOCK`` held."""
    from transformers import CLIPTokenizer
    lines = gzip.open(vocab_path()).read().decode('utf-8').split('\n')
    merges = [tuple(line.split()) for line in lines[1:1 + _NUM_MERGES]]
    symbols = _byte_symbols()
    tokens = (symbols + [s + '</w>' for s in symbols] + [''.join(m) for m in merges]
              + ['<|startoftext|>', '<|endoftext|>'])
    tok = CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=merges)
    assert tok.convert_tokens_to_ids(['<|startoftext|>', '<|endoftext|>']) == [START_ID, END_ID]
    assert tok.pad_token_id == END_ID
    return tok


def tokenize(texts, context_length=CONTEXT_LENGTH):
    """Tokenize a list of N strings.

    Returns ``(input_ids, attention_mask)``, both int64 [N, context_length]: start id, BPE ids,
    end id, then 49407 padding (mask 0). Over-long text is truncated (see ``count_tokens``).
    An empty string gives just ``[49406, 49407]``.
    """
    if isinstance(texts, str):
        raise TypeError('tokenize expects a list of strings')
    with _LOCK:
        enc = clip_tokenizer()(list(texts), padding='max_length', truncation=True,
                               max_length=context_length, return_tensors='pt')
    return enc['input_ids'].to(torch.int64), enc['attention_mask'].to(torch.int64)


def count_tokens(texts):
    """Untruncated token counts (start and end tokens included) of a list of strings.

    A count above 77 means ``tokenize`` drops the excess; callers use this to warn.
    """
    with _LOCK:
        enc = clip_tokenizer()(list(texts), truncation=False)
    return [len(ids) for ids in enc['input_ids']]
