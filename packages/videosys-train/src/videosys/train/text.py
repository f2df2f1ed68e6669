"""Caption encoders: the frozen bag-of-words encoder of the tiny config, and a T5 from a local folder."""

from __future__ import annotations

import hashlib
import re
from typing import Protocol

import torch

__all__ = ["HashTextEncoder", "T5TextEncoder", "TextEncoder"]


class TextEncoder(Protocol):
    """``encode(captions) -> (embeddings (B, L, dim), mask (B, L) bool)``."""

    dim: int
    max_length: int

    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]: ...


class HashTextEncoder:
    """Each lower-cased word to a fixed unit-variance vector derived from its hash (no weights to load).

    Deterministic across processes and machines, so it needs no checkpoint: the tiny config's captions
    ("a red circle moving right") are short and their words are the whole signal.
    """

    def __init__(self, dim: int = 32, max_length: int = 16) -> None:
        self.dim = dim
        self.max_length = max_length

    def _word(self, word: str) -> torch.Tensor:
        seed = int.from_bytes(hashlib.sha256(word.encode()).digest()[:8], "little") & (2**63 - 1)
        return torch.randn(self.dim, generator=torch.Generator().manual_seed(seed))

    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        emb = torch.zeros(len(captions), self.max_length, self.dim)
        mask = torch.zeros(len(captions), self.max_length, dtype=torch.bool)
        for i, caption in enumerate(captions):
            words = re.findall(r"[a-z0-9]+", caption.lower())[: self.max_length] or ["<empty>"]
            for j, word in enumerate(words):
                emb[i, j] = self._word(word)
            mask[i, : len(words)] = True
        return emb, mask


class T5TextEncoder:
    """A T5 encoder and tokenizer from a local folder (``transformers`` layout), frozen, as Latte and Open-Sora use."""

    def __init__(self, path: str, max_length: int = 120, device: str = "cpu") -> None:
        try:
            from transformers import AutoTokenizer, T5EncoderModel
        except ImportError as err:
            raise ImportError("the T5 text encoder needs transformers: pip install transformers") from err
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = T5EncoderModel.from_pretrained(path).to(device).eval().requires_grad_(False)
        self.dim = self.model.config.d_model
        self.max_length = max_length
        self.device = device

    @torch.no_grad()
    def encode(self, captions: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        tokens = self.tokenizer(
            captions, max_length=self.max_length, padding="max_length", truncation=True, return_tensors="pt"
        ).to(self.device)
        emb = self.model(input_ids=tokens.input_ids, attention_mask=tokens.attention_mask).last_hidden_state
        return emb.float().cpu(), tokens.attention_mask.bool().cpu()
