"""Our CogVideoX backbone, loaded from diffusers-saved folders, against diffusers' ``CogVideoXTransformer3DModel``."""

from __future__ import annotations

import pytest
import torch
from cogvideox_tiny import TINY_2B, TINY_5B, inputs, save_reference

from videosys.core import JointBlock, branch_sites, check_backbone
from videosys.models.loading import CheckpointError, load_backbone
from videosys.models.transformers import CogVideoXTransformer
from videosys.models.transformers.cogvideox import cropped_grid

diffusers = pytest.importorskip("diffusers")
if not hasattr(diffusers, "CogVideoXTransformer3DModel"):
    pytest.skip(
        f"diffusers {diffusers.__version__} has no CogVideoXTransformer3DModel (0.30+)", allow_module_level=True
    )


def _diffusers_rope(config: dict, frames: int, height: int, width: int):
    """The (cos, sin) RoPE tables diffusers' CogVideoXPipeline computes for a latent video of this size."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    p = 2
    grid = (height // p, width // p)
    crops = get_resize_crop_region_for_grid(grid, config["sample_width"] // p, config["sample_height"] // p)
    return get_3d_rotary_pos_embed(config["attention_head_dim"], crops, grid, frames)


def _reference_forward(reference, config, latents, t, text) -> torch.Tensor:
    frames, height, width = latents.shape[2:]
    rope = _diffusers_rope(config, frames, height, width) if config["use_rotary_positional_embeddings"] else None
    out = reference(latents.transpose(1, 2), text, timestep=t, image_rotary_emb=rope, return_dict=False)[0]
    return out.transpose(1, 2)


CASES = {
    # name: (config, (frames, height, width), text tokens)
    "2b-trained-size": (TINY_2B, (3, 6, 10), 7),
    "2b-other-size": (TINY_2B, (2, 8, 6), 7),
    "5b-trained-size": (TINY_5B, (3, 12, 18), 5),
    "5b-cropped": (TINY_5B, (3, 6, 10), 5),
    "5b-tall": (TINY_5B, (2, 10, 6), 3),
}


@pytest.mark.parametrize("case", list(CASES))
def test_forward_equals_diffusers(tmp_path, case):
    """Batch 2 with different timesteps; sizes and text lengths that are not powers of two, H != W."""
    config, (frames, height, width), length = CASES[case]
    reference = save_reference(tmp_path / "transformer", config)
    ours = load_backbone(CogVideoXTransformer, tmp_path / "transformer")
    latents, text = inputs(frames, height, width, length)
    t = torch.tensor([937, 41])
    with torch.no_grad():
        expected = _reference_forward(reference, config, latents, t, text)
        got = ours(latents, t, text)
    assert got.shape == expected.shape == latents.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_gradients_equal_diffusers(tmp_path):
    config = TINY_5B
    reference = save_reference(tmp_path / "transformer", config)
    ours = load_backbone(CogVideoXTransformer, tmp_path / "transformer")
    latents, text = inputs(2, 6, 10, 5)
    t = torch.tensor([500, 20])
    _reference_forward(reference, config, latents, t, text).square().sum().backward()
    ours(latents, t, text).square().sum().backward()
    theirs = dict(reference.named_parameters())
    renamed = CogVideoXTransformer.convert_diffusers_state_dict({k: p.grad for k, p in theirs.items()})
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, renamed[name], rtol=1e-4, atol=1e-5, msg=name)


def test_structure_follows_the_joint_contract(tmp_path):
    save_reference(tmp_path / "transformer", TINY_5B)
    ours = load_backbone(CogVideoXTransformer, tmp_path / "transformer")
    check_backbone(ours)
    assert all(isinstance(block, JointBlock) for block in ours.blocks)
    assert [(s.block, s.name) for s in branch_sites(ours)] == [(0, "attn"), (0, "mlp"), (1, "attn"), (1, "mlp")]


def test_cropped_grid_follows_diffusers_crop_region():
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    for h, w in ((3, 5), (5, 3), (6, 9), (30, 45), (7, 7)):
        (top, left), (bottom, right) = get_resize_crop_region_for_grid((h, w), 9, 6)
        grid = cropped_grid(2, h, w, 6, 9)
        _, rows, cols = grid.positions(1, h * w)
        expected_rows = torch.linspace(top, bottom * (h - 1) / h, h, dtype=torch.float64)
        expected_cols = torch.linspace(left, right * (w - 1) / w, w, dtype=torch.float64)
        torch.testing.assert_close(rows.reshape(h, w)[:, 0].double(), expected_rows)
        torch.testing.assert_close(cols.reshape(h, w)[0].double(), expected_cols)


def test_unsupported_variants_and_bad_checkpoints_are_named(tmp_path):
    with pytest.raises(ValueError, match="patch_size_t=2"):
        CogVideoXTransformer.from_diffusers_config({**TINY_5B, "patch_size_t": 2})
    for head_dim in (12, 24):  # 24: rows would get 9 channels, not pairs (diffusers' own tables break there too)
        with pytest.raises(ValueError, match=f"multiple of 16; got head_dim {head_dim}"):
            CogVideoXTransformer(num_heads=2, head_dim=head_dim, rope=True)
    reference = save_reference(tmp_path / "transformer", TINY_2B)
    from safetensors.torch import save_file

    state = {k: v for k, v in reference.state_dict().items() if not k.startswith("norm_out.")}
    save_file(state, tmp_path / "transformer" / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing keys \(4\): final\.adaLN_modulation\.1\.bias"):
        load_backbone(CogVideoXTransformer, tmp_path / "transformer")
    ours = CogVideoXTransformer.from_diffusers_config(TINY_2B)
    for text_shape in ((1, 7, 20), (2, 7, 19)):
        with pytest.raises(ValueError, match=r"encoder_hidden_states must be \(B=2, L, 20\) text features"):
            ours(*inputs(2, 6, 10, 7)[:1], torch.tensor([1, 2]), torch.randn(text_shape))
