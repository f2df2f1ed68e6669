"""The embedded model's text encoder: one stored vector per word of its closed vocabulary.

The vectors are the frozen word embeddings it was trained with (videosys-train's ``hash`` encoder over
the shapes grammar); the backbone's learned caption projection does the rest. A word outside the
vocabulary has no trained meaning, so it is an error rather than a silent guess.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch

__all__ = ["UnknownWordError", "WordEncoder", "words_of"]


class UnknownWordError(ValueError):
    """A prompt word the embedded model was not trained on."""


def words_of(prompt: str) -> list[str]:
    """Lower-cased alphanumeric words, as the training encoder split captions."""
    return re.findall(r"[a-z0-9]+", prompt.lower())


class WordEncoder:
    """``encode(prompts) -> (embeddings (B, max_words, D), mask (B, max_words))``, padding masked out."""

    def __init__(self, vocabulary: Sequence[str], table: torch.Tensor, max_words: int) -> None:
        if table.dim() != 2 or table.shape[0] != len(vocabulary):
            raise ValueError(f"the word table must be ({len(vocabulary)}, D), got shape {tuple(table.shape)}")
        self.index = {word: i for i, word in enumerate(vocabulary)}
        self.table = table
        self.max_words = max_words

    @property
    def dim(self) -> int:
        return self.table.shape[1]

    def encode(self, prompts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        emb = self.table.new_zeros(len(prompts), self.max_words, self.dim)
        mask = torch.zeros(len(prompts), self.max_words, dtype=torch.bool)
        for i, prompt in enumerate(prompts):
            words = words_of(prompt)
            unknown = [w for w in words if w not in self.index]
            if unknown or not words or len(words) > self.max_words:
                known = ", ".join(self.index)
                problem = f"unknown word(s) {unknown}" if unknown else f"{len(words)} words (1..{self.max_words})"
                raise UnknownWordError(f"prompt {prompt!r} has {problem}; the embedded model knows: {known}")
            emb[i, : len(words)] = self.table[[self.index[w] for w in words]]
            mask[i, : len(words)] = True
        return emb, mask
