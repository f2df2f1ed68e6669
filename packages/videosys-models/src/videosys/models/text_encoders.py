"""T5 text encoding, shared by every text-to-video pipeline (Latte-1: 120 tokens; Open-Sora 1.2: 300 tokens).

Encoders come from ``transformers`` and local folders only; any T5 config works (the published models use
T5 v1.1 XXL, 4096 channels; tests use tiny random ones).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

__all__ = ["T5TextEncoder", "encode_texts", "load_t5"]


def encode_texts(
    tokenizer: Any, encoder: Any, texts: list[str], max_length: int, *, mask_padding: bool = True
) -> tuple[torch.Tensor, torch.Tensor]:
    """Features ``(B, max_length, D)`` in the encoder's dtype and the token mask ``(B, max_length)``.

    Texts are tokenized as given (with the end-of-sequence token), truncated and padded to ``max_length``;
    padding is masked out of the encoder's attention (unless ``mask_padding=False``: CogVideoX was trained on
    T5 features computed over the padding too), and the mask tells the consumer which tokens are real.
    """
    tokens = tokenizer(
        texts,
        padding="max_length",
        max_length=max_length,
        truncation=True,
        return_attention_mask=True,
        add_special_tokens=True,
        return_tensors="pt",
    )
    device = next(encoder.parameters()).device
    mask = tokens.attention_mask.to(device)
    attention = mask if mask_padding else None
    features = encoder(input_ids=tokens.input_ids.to(device), attention_mask=attention).last_hidden_state
    return features.to(encoder.dtype), mask


def load_t5(
    encoder_folder: str | os.PathLike,
    tokenizer_folder: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    allow_bin: bool = False,
) -> tuple[Any, Any]:
    """``(tokenizer, encoder)`` from local folders (the pipelines' ``tokenizer/`` and ``text_encoder/``), the encoder
    in eval mode on ``device``/``dtype``; safetensors weights unless ``allow_bin=True`` (trusted files only)."""
    from transformers import AutoTokenizer, T5EncoderModel

    encoder = T5EncoderModel.from_pretrained(
        encoder_folder, use_safetensors=None if allow_bin else True, local_files_only=True
    )
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_folder, local_files_only=True)
    return tokenizer, encoder.to(device=device, dtype=dtype).eval()


class T5TextEncoder:
    """A T5 encoder and its tokenizer read from one local folder (``DeepFloyd/t5-v1_1-xxl``'s layout)."""

    def __init__(self, tokenizer: Any, encoder: Any, max_length: int = 300) -> None:
        if max_length < 1:
            raise ValueError(f"max_length must be >= 1, got {max_length}")
        self.tokenizer = tokenizer
        self.encoder = encoder
        self.max_length = max_length

    @classmethod
    def from_pretrained(
        cls,
        folder: str | os.PathLike,
        *,
        max_length: int = 300,
        device: str | torch.device = "cpu",
        dtype: torch.dtype = torch.float32,
        allow_bin: bool = False,
    ) -> T5TextEncoder:
        """Load the encoder weights and tokenizer files of ``folder``; nothing is fetched from a hub.

        Safetensors weights are required unless ``allow_bin=True`` (pickled ``.bin``: trusted files only).
        """
        root = Path(folder)
        if not (root / "config.json").is_file():
            raise FileNotFoundError(
                f"{root} is not a T5 folder (no config.json); expected the layout of DeepFloyd/t5-v1_1-xxl: "
                "config.json, the weights and the tokenizer files side by side"
            )
        tokenizer, encoder = load_t5(root, root, device=device, dtype=dtype, allow_bin=allow_bin)
        return cls(tokenizer, encoder, max_length)

    @property
    def hidden_size(self) -> int:
        """Channels of the features (4096 for T5 v1.1 XXL)."""
        return self.encoder.config.d_model

    @torch.no_grad()
    def __call__(self, texts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features, mask)`` of ``texts``, padded to :attr:`max_length`: see :func:`encode_texts`."""
        if isinstance(texts, str) or not texts:
            raise ValueError(f"texts must be a non-empty list of strings, got {texts!r}")
        return encode_texts(self.tokenizer, self.encoder, list(texts), self.max_length)
