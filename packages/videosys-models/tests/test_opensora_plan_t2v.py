"""Open-Sora-Plan v1.2's OpenSoraT2V: ours equals the original's saved output, and loads its folder strictly.

The golden fixture (fixtures/opensora_plan/v1.2, see its README) was made by running the original once:
PKU-YuanGroup/Open-Sora-Plan tag v1.2.0, CPU, float32, attention_mode="math".
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from videosys.core import AttentionAxis, check_backbone
from videosys.models import CheckpointError, OpenSoraPlanT2V, load_backbone
from videosys.models.transformers.opensora_plan_t2v import default_interpolation_scales

FIXTURE = Path(__file__).parent / "fixtures" / "opensora_plan" / "v1.2"
TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "io.safetensors")


@pytest.fixture(scope="module")
def model() -> OpenSoraPlanT2V:
    return load_backbone(OpenSoraPlanT2V, FIXTURE / "transformer")


def forward(model: OpenSoraPlanT2V, io: dict[str, torch.Tensor], video_mask: bool = True) -> torch.Tensor:
    with torch.no_grad():
        return model(
            io["hidden_states"],
            io["timestep"],
            io["encoder_hidden_states"],
            io["encoder_attention_mask"],
            attention_mask=io["attention_mask"] if video_mask else None,
        )


def test_equals_the_original_with_video_and_text_masks(model, io):
    torch.testing.assert_close(forward(model, io), io["output"], **TOL)


def test_equals_the_original_without_a_video_mask(model, io):
    torch.testing.assert_close(forward(model, io, video_mask=False), io["output_without_video_mask"], **TOL)


def test_builds_the_release_architecture_from_the_config(model):
    check_backbone(model)
    assert all(block.axis is AttentionAxis.FULL and block.cross is not None for block in model.blocks)
    rope = model.blocks[0].attn.inner.rope
    # The fixture's config sets interpolation_scale_t = 1.25 and leaves h, w null: sample_size [45, 56] / [30, 40].
    assert rope.interpolation_scale == [1.25, 1.5, 1.4]
    assert rope.axes == "thw" and rope.split == [4, 4, 4] and not rope.interleaved


def test_default_interpolation_scales_follow_the_original():
    """The original's rule, by hand: odd frame counts (t - 1) // 16 + 1, even t / 16; h / 30, w / 40."""
    assert default_interpolation_scales((60, 80), 24) == (1.5, 2.0, 2.0)
    assert default_interpolation_scales((90, 160), 17) == (2.0, 3.0, 4.0)


def test_a_video_mask_that_hides_nothing_equals_none(model, io):
    ones = torch.ones_like(io["attention_mask"])
    with torch.no_grad():
        got = model(io["hidden_states"], io["timestep"], io["encoder_hidden_states"], attention_mask=ones)
        want = model(io["hidden_states"], io["timestep"], io["encoder_hidden_states"])
    torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_a_sample_whose_masks_hide_everything_attends_to_all(model, io):
    """The original adds -10000 to hidden keys' scores; softmax ignores a shift of every score alike, so a mask that
    hides all of a sample's video (or text) tokens acts as one that hides none, and the other sample keeps its mask."""
    args = (io["hidden_states"], io["timestep"], io["encoder_hidden_states"])
    hidden_video, hidden_text = io["attention_mask"].clone(), io["encoder_attention_mask"].clone()
    hidden_video[1], hidden_text[0] = 0, 0
    shown_video, shown_text = io["attention_mask"].clone(), io["encoder_attention_mask"].clone()
    shown_video[1], shown_text[0] = 1, 1
    with torch.no_grad():
        got = model(*args, hidden_text, attention_mask=hidden_video)
        want = model(*args, shown_text, attention_mask=shown_video)
        masked = model(*args, io["encoder_attention_mask"], attention_mask=io["attention_mask"])
    assert (want[0] - masked[0]).abs().max() > 1e-2 and (want[1] - masked[1]).abs().max() > 1e-2  # masks matter
    torch.testing.assert_close(got, want, **TOL)


def copy_fixture(tmp_path: Path) -> Path:
    folder = tmp_path / "transformer"
    shutil.copytree(FIXTURE / "transformer", folder)
    return folder


def test_missing_and_unexpected_keys_are_named(tmp_path):
    folder = copy_fixture(tmp_path)
    weights = load_file(folder / "diffusion_pytorch_model.safetensors")
    weights["transformer_blocks.0.attn1.to_qkv.weight"] = weights.pop("transformer_blocks.0.attn1.to_q.weight")
    save_file(weights, folder / "diffusion_pytorch_model.safetensors")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): blocks\.0\.attn\.inner\.to_q\.weight") as err:
        load_backbone(OpenSoraPlanT2V, folder)
    assert "unexpected keys (1): blocks.0.attn1.to_qkv.weight" in str(err.value)  # after the known renames


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"use_rope": False}, "use_rope=False"),
        ({"downsampler": "k33_s22"}, "downsampler='k33_s22'"),
        ({"cross_attention_dim": 16}, "cross_attention_dim=16"),
        ({"attention_head_dim": 8, "cross_attention_dim": 16}, "head_dim must divide by 6, got 8"),
        ({"interpolation_scale_t": None, "sample_size_t": None}, "no sample_size / sample_size_t"),
    ],
)
def test_configs_it_does_not_implement_are_refused(tmp_path, change, match):
    folder = copy_fixture(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(ValueError, match=match):
        load_backbone(OpenSoraPlanT2V, folder)


def test_bad_masks_are_refused(model, io):
    args = (io["hidden_states"], io["timestep"], io["encoder_hidden_states"])
    with pytest.raises(ValueError, match=r"attention_mask must cover the latents as \(B, T, H, W\) = \(2, 3, 10, 14\)"):
        model(*args, attention_mask=io["attention_mask"][:, :, :5])
    with pytest.raises(ValueError, match=r"encoder_attention_mask must be \(B, L\) = \(2, 6\)"):
        model(*args, io["encoder_attention_mask"][..., :4])
    with pytest.raises(ValueError, match=r"encoder_hidden_states must be \(B=2, L, 16\) text features"):
        model(*args[:2], args[2][..., :8])
