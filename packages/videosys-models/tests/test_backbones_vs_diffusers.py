"""Our Latte and DiT backbones, loaded from diffusers-saved folders, against diffusers' own forward pass."""

from __future__ import annotations

import pytest
import torch

from videosys.core import AttentionAxis, attention_backend, branch_sites, check_backbone
from videosys.models.loading import load_backbone
from videosys.models.transformers import DiTTransformer, LatteTransformer

TIMESTEPS = (0, 1, 500, 999)


def _latte_inputs(batch: int, frames: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    latents = torch.randn(batch, 4, frames, 8, 8, generator=g)
    text = torch.randn(batch, 7, 32, generator=g)
    return latents, text


@pytest.mark.parametrize("batch", [1, 2], ids=["single", "cfg-batch"])
@pytest.mark.parametrize("timestep", TIMESTEPS)
def test_latte_forward_equals_diffusers(latte_reference, batch, timestep):
    reference, folder = latte_reference
    ours = load_backbone(LatteTransformer, folder)
    latents, text = _latte_inputs(batch, frames=4, seed=timestep)
    t = torch.full((batch,), timestep, dtype=torch.long)
    with torch.no_grad():
        expected = reference(latents, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
        got = ours(latents, t, text)
    assert got.shape == expected.shape == (batch, 8, 4, 8, 8)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_latte_without_temporal_attention_equals_diffusers(latte_reference):
    reference, folder = latte_reference
    ours = load_backbone(LatteTransformer, folder)
    t = torch.tensor([250, 250])
    for frames, temporal in ((1, True), (1, False), (4, False)):
        latents, text = _latte_inputs(2, frames)
        with torch.no_grad():
            expected = reference(
                latents, timestep=t, encoder_hidden_states=text, enable_temporal_attentions=temporal, return_dict=False
            )[0]
            got = ours(latents, t, text, enable_temporal_attentions=temporal)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_latte_structure_follows_core_interfaces(latte_reference):
    _, folder = latte_reference
    ours = load_backbone(LatteTransformer, folder)
    check_backbone(ours)
    axes = [block.axis for block in ours.blocks]
    assert axes == [AttentionAxis.SPATIAL, AttentionAxis.TEMPORAL] * 2
    names = [(s.block, s.name) for s in branch_sites(ours)]
    assert names[:5] == [(0, "attn"), (0, "cross"), (0, "mlp"), (1, "attn"), (1, "mlp")]


def test_latte_math_backend_agrees(latte_reference):
    """The reference softmax backend gives the same result as SDPA (our attention is not backend-specific)."""
    reference, folder = latte_reference
    ours = load_backbone(LatteTransformer, folder)
    latents, text = _latte_inputs(2, 4)
    t = torch.tensor([10, 10])
    with torch.no_grad(), attention_backend("math"):
        got = ours(latents, t, text)
        expected = reference(latents, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("timestep", TIMESTEPS)
def test_dit_forward_equals_diffusers(dit_reference, timestep):
    reference, folder = dit_reference
    ours = load_backbone(DiTTransformer, folder)
    g = torch.Generator().manual_seed(timestep)
    latents = torch.randn(4, 4, 8, 8, generator=g)
    labels = torch.tensor([3, 999, 1000, 1000])  # two conditional samples, then the CFG null class
    t = torch.full((4,), timestep, dtype=torch.long)
    with torch.no_grad():
        expected = reference(latents, timestep=t, class_labels=labels, return_dict=False)[0]
        got = ours(latents, t, labels)
    assert got.shape == expected.shape == (4, 8, 8, 8)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_dit_other_resolution_equals_diffusers(dit_reference):
    """Latents larger than the trained size re-derive the position table as diffusers does (square: it assumes so)."""
    reference, folder = dit_reference
    ours = load_backbone(DiTTransformer, folder)
    latents = torch.randn(2, 4, 12, 12, generator=torch.Generator().manual_seed(5))
    labels, t = torch.tensor([1, 1000]), torch.tensor([321, 321])
    with torch.no_grad():
        expected = reference(latents, timestep=t, class_labels=labels, return_dict=False)[0]
        got = ours(latents, t, labels)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_latte_other_resolution_equals_diffusers(latte_reference):
    reference, folder = latte_reference
    ours = load_backbone(LatteTransformer, folder)
    g = torch.Generator().manual_seed(3)
    latents, text = torch.randn(1, 4, 4, 12, 12, generator=g), torch.randn(1, 5, 32, generator=g)
    with torch.no_grad():
        expected = reference(latents, timestep=torch.tensor([700]), encoder_hidden_states=text, return_dict=False)[0]
        got = ours(latents, torch.tensor([700]), text)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_latte_caption_mask_equals_dropping_the_masked_tokens(latte_reference):
    """A boolean caption mask (diffusers' Latte has no working one) must act as if masked tokens were absent."""
    _, folder = latte_reference
    ours = load_backbone(LatteTransformer, folder)
    latents, text = _latte_inputs(1, frames=4)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    t = torch.tensor([400])
    with torch.no_grad():
        torch.testing.assert_close(
            ours(latents, t, text, encoder_attention_mask=mask), ours(latents, t, text[:, :4]), rtol=0, atol=1e-6
        )


def test_latte_names_text_features_of_the_wrong_width(latte_reference):
    ours = load_backbone(LatteTransformer, latte_reference[1])
    latents, text = _latte_inputs(2, frames=2)
    with pytest.raises(ValueError, match=r"encoder_hidden_states must be \(B=2, L, 32\) text features, got shape"):
        ours(latents, torch.tensor([1, 2]), text[..., :31])
