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
    """``encode(prompts) -> (embeddings (B, max_words, D), mask (B, max_words))``, padding masked out.

    ``empty``, if given, is the one-token encoding of the empty caption that training put in place of
    dropped captions: :meth:`encode_empty` gives the unconditional input of classifier-free guidance.
    """

    def __init__(
        self, vocabulary: Sequence[str], table: torch.Tensor, max_words: int, empty: torch.Tensor | None = None
    ) -> None:
        if table.dim() != 2 or table.shape[0] != len(vocabulary):
            raise ValueError(f"the word table must be ({len(vocabulary)}, D), got shape {tuple(table.shape)}")
        if empty is not None and tuple(empty.shape) != (table.shape[1],):
            raise ValueError(f"the empty caption's vector must be ({table.shape[1]},), got shape {tuple(empty.shape)}")
        self.index = {word: i for i, word in enumerate(vocabulary)}
        self.table = table
        self.max_words = max_words
        self.empty = empty

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

    def encode_empty(self, count: int) -> tuple[torch.Tensor, torch.Tensor]:
        """``count`` encodings of the empty caption, shaped like :meth:`encode`'s; an error if there is none."""
        if self.empty is None:
            raise ValueError("these weights have no empty-caption vector (trained without caption dropout)")
        emb = self.table.new_zeros(count, self.max_words, self.dim)
        emb[:, 0] = self.empty
        mask = torch.zeros(count, self.max_words, dtype=torch.bool)
        mask[:, 0] = True
        return emb, mask
