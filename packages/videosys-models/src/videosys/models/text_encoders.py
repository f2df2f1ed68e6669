"""T5-family text encoding, shared by every text-to-video pipeline.

Latte-1 reads 120 T5 tokens, Open-Sora 1.2 and Open-Sora-Plan v1.1 300, Open-Sora-Plan v1.2 512 mT5 tokens.
Encoders come from ``transformers`` and local folders only; the folder's ``config.json`` names the family
(``t5``, ``mt5``, ``umt5``), any size works (the published models use the XXL encoders, 4096 channels;
tests use tiny random ones).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .loading import hub_free_options

__all__ = [
    "ENCODER_CLASSES",
    "PromptFeatures",
    "T5TextEncoder",
    "encode_prompts",
    "encode_texts",
    "load_text_encoder",
    "mask_features",
]

ENCODER_CLASSES = {"t5": "T5EncoderModel", "mt5": "MT5EncoderModel", "umt5": "UMT5EncoderModel"}
"""``transformers`` encoder class of each ``model_type`` a text-encoder folder's ``config.json`` may name."""


def load_text_encoder(
    folder: str | os.PathLike,
    *,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
    allow_bin: bool = False,
) -> Any:
    """The encoder of a T5, mT5 or umT5 folder (a full encoder-decoder checkpoint works too: only the encoder is
    kept), in eval mode on ``device``/``dtype``; nothing is fetched from a hub.

    ``dtype`` is given to ``from_pretrained``, as the original pipelines load it, so transformers keeps the
    feed-forward output layers (``wo``) in float32: T5 v1.1 XXL overflows in float16 without that.
    Safetensors weights are required unless ``allow_bin=True`` (pickled ``.bin``: trusted files only).
    """
    import transformers

    path = Path(folder) / "config.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{folder} is not a text-encoder folder (no config.json); expected the layout of DeepFloyd/t5-v1_1-xxl "
            "or google/mt5-xxl: config.json and the weights side by side"
        )
    model_type = json.loads(path.read_text()).get("model_type")
    if model_type not in ENCODER_CLASSES:
        raise ValueError(f"{path} has model_type {model_type!r}; expected one of {', '.join(ENCODER_CLASSES)}")
    cls = getattr(transformers, ENCODER_CLASSES[model_type])
    dtype_key = "dtype" if int(transformers.__version__.split(".")[0]) >= 5 else "torch_dtype"  # renamed in 5.0
    encoder = cls.from_pretrained(folder, **hub_free_options(allow_bin), **{dtype_key: dtype})
    return encoder.to(device).eval()


@dataclass(frozen=True)
class PromptFeatures:
    """Text features of a batch of prompts and, for classifier-free guidance, of the negative prompt."""

    features: torch.Tensor
    """``(B, L, D)``, in the encoder's dtype."""
    mask: torch.Tensor
    """``(B, L)``, 1 for real tokens."""
    negative: torch.Tensor | None = None
    """The features of each prompt's negative prompt, or None without guidance."""
    negative_mask: torch.Tensor | None = None


def encode_prompts(
    tokenizer: Any, encoder: Any, prompts: list[str], negative_prompts: list[str] | None, max_length: int
) -> PromptFeatures:
    """Features of ``prompts`` (and of ``negative_prompts``, one per prompt, unless None), ``max_length`` tokens each.

    Texts are lower-cased and stripped: the preprocessing of the Latte-1 and Open-Sora-Plan pipelines when
    caption cleaning (their optional bs4/ftfy ``clean_caption``) is off, as VideoSys always runs them.
    """
    features, mask = encode_texts(tokenizer, encoder, [p.lower().strip() for p in prompts], max_length)
    if negative_prompts is None:
        return PromptFeatures(features, mask)
    negative, negative_mask = encode_texts(
        tokenizer, encoder, [p.lower().strip() for p in negative_prompts], max_length
    )
    return PromptFeatures(features, mask, negative, negative_mask)


def mask_features(
    features: torch.Tensor, mask: torch.Tensor, negative: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The "mask feature" of Latte-1 and Open-Sora-Plan v1.1 (after PixArt-alpha), for a model given no text mask.

    A single prompt's features (and the negative prompt's) are cut to the prompt's real tokens; a batch's
    padding features are zeroed and the negative prompt's are kept whole.
    """
    if features.shape[0] == 1:
        keep = int(mask.sum())
        return features[:, :keep], None if negative is None else negative[:, :keep]
    return features * mask[:, :, None].to(features.dtype), negative


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


class T5TextEncoder:
    """A T5 (or mT5) encoder and its tokenizer read from one local folder (``DeepFloyd/t5-v1_1-xxl``'s layout)."""

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
        from transformers import AutoTokenizer

        encoder = load_text_encoder(folder, device=device, dtype=dtype, allow_bin=allow_bin)
        return cls(AutoTokenizer.from_pretrained(folder, local_files_only=True), encoder, max_length)

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
