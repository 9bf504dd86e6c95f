"""BERT's uncased WordPiece tokenizer in plain Python (no torch, no ``tokenizers`` package).

Reproduces what the ``tokenizers`` library does with the packaged all-MiniLM-L6-v2
``tokenizer.json`` (BertNormalizer with clean_text, handle_chinese_chars, lowercase and accent
stripping; BertPreTokenizer; WordPiece with the ``##`` prefix and 100 characters per word;
``[CLS] ... [SEP]``), from ``vocab.txt`` alone.
"""

from __future__ import annotations

import unicodedata
from pathlib import Path
from typing import Dict, List, Sequence, Tuple, Union

import numpy as np

MAX_CHARS_PER_WORD = 100


def _is_control(char: str) -> bool:
    if char in "\t\n\r":
        return False
    return unicodedata.category(char) in ("Cc", "Cf")


def _is_whitespace(char: str) -> bool:
    return char in " \t\n\r" or unicodedata.category(char) == "Zs"


def _is_punctuation(char: str) -> bool:
    cp = ord(char)
    if 33 <= cp <= 47 or 58 <= cp <= 64 or 91 <= cp <= 96 or 123 <= cp <= 126:
        return True
    return unicodedata.category(char).startswith("P")


def _is_cjk(cp: int) -> bool:
    return (0x4E00 <= cp <= 0x9FFF or 0x3400 <= cp <= 0x4DBF or 0x20000 <= cp <= 0x2A6DF
            or 0x2A700 <= cp <= 0x2B73F or 0x2B740 <= cp <= 0x2B81F or 0x2B820 <= cp <= 0x2CEAF
            or 0xF900 <= cp <= 0xFAFF or 0x2F800 <= cp <= 0x2FA1F)


def normalise(text: str) -> str:
    """BertNormalizer: drop control characters, unify whitespace, space out CJK characters,
    lowercase and strip accents."""
    out = []
    for char in text:
        cp = ord(char)
        if cp == 0 or cp == 0xFFFD or _is_control(char):
            continue
        if _is_whitespace(char):
            out.append(" ")
        elif _is_cjk(cp):
            out.append(f" {char} ")
        else:
            out.append(char)
    text = unicodedata.normalize("NFD", "".join(out).lower())
    return "".join(c for c in text if unicodedata.category(c) != "Mn")


def pre_tokenize(text: str) -> List[str]:
    """BertPreTokenizer: split on whitespace, and every punctuation character is a word of its own."""
    words: List[str] = []
    for chunk in text.split():
        current = ""
        for char in chunk:
            if _is_punctuation(char):
                if current:
                    words.append(current)
                words.append(char)
                current = ""
            else:
                current += char
        if current:
            words.append(current)
    return words


class WordPieceTokenizer:
    """Uncased BERT WordPiece from a ``vocab.txt`` (one token a line, the line number is the id).

    Args:
        vocab_file: path of ``vocab.txt``.

    Raises:
        ValueError: the vocabulary lacks one of [PAD], [UNK], [CLS], [SEP].
    """

    def __init__(self, vocab_file: Union[str, Path]):
        lines = Path(vocab_file).read_text(encoding="utf-8").split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        self.vocab: Dict[str, int] = {token: i for i, token in enumerate(lines)}
        missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]") if t not in self.vocab]
        if missing:
            raise ValueError(f"{vocab_file}: missing special tokens {missing}; allowed: a BERT vocab.txt")
        self.pad_id, self.unk_id = self.vocab["[PAD]"], self.vocab["[UNK]"]
        self.cls_id, self.sep_id = self.vocab["[CLS]"], self.vocab["[SEP]"]

    def __len__(self) -> int:
        return len(self.vocab)

    def _word_ids(self, word: str) -> List[int]:
        if len(word) > MAX_CHARS_PER_WORD:
            return [self.unk_id]
        ids, start = [], 0
        while start < len(word):
            end = len(word)
            while end > start:
                piece = word[start:end] if start == 0 else "##" + word[start:end]
                if piece in self.vocab:
                    ids.append(self.vocab[piece])
                    break
                end -= 1
            if end == start:
                return [self.unk_id]
            start = end
        return ids

    def ids(self, text: str, max_length: int) -> List[int]:
        """``[CLS] tokens [SEP]``, the tokens truncated so that the whole is at most ``max_length``."""
        tokens = [i for word in pre_tokenize(normalise(text)) for i in self._word_ids(word)]
        return [self.cls_id] + tokens[:max(max_length - 2, 0)] + [self.sep_id]

    def batch(self, texts: Sequence[str], max_length: int) -> Tuple[np.ndarray, np.ndarray]:
        """Padded ids and attention mask, int32 (len(texts), longest), padded to the longest text."""
        rows = [self.ids(t, max_length) for t in texts]
        width = max(len(r) for r in rows)
        ids = np.full((len(rows), width), self.pad_id, dtype=np.int32)
        mask = np.zeros((len(rows), width), dtype=np.int32)
        for i, row in enumerate(rows):
            ids[i, :len(row)] = row
            mask[i, :len(row)] = 1
        return ids, mask
