"""Open-Sora-Plan v1.1's backbone equals the original ``LatteT2V`` (v1.1.0): saved outputs, folders."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from videosys.core import AttentionAxis, check_backbone
from videosys.core.layers import AxisEmbedding
from videosys.models import OPENSORA_PLAN_V11_PAB, CheckpointError, OpenSoraPlanLatte, load_backbone

FIXTURE = Path(__file__).parent / "fixtures" / "opensora_plan" / "v1.1"
WEIGHTS = "diffusion_pytorch_model.safetensors"


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "io.safetensors")


@pytest.fixture(scope="module")
def model() -> OpenSoraPlanLatte:
    return load_backbone(OpenSoraPlanLatte, FIXTURE / "transformer")


def test_loads_the_release_layout_and_conforms(model):
    check_backbone(model)
    assert [block.axis for block in model.blocks[:2]] == [AttentionAxis.SPATIAL, AttentionAxis.TEMPORAL]


@pytest.mark.parametrize(
    "form",
    [
        pytest.param(lambda mask: mask, id="as-the-original-takes-it"),  # int64 1/0, as stored by the fixture
        pytest.param(lambda mask: mask.bool(), id="boolean"),
        pytest.param(lambda mask: mask.float()[:, None], id="float-B1L"),
    ],
)
def test_equals_the_original_with_a_padded_text_mask(model, golden, form):
    """Batch 2, timesteps 900 and 312, 33 frames (temporal scale 2), a 3x5 patch grid, the text mask padded."""
    assert golden["encoder_attention_mask"].dtype == torch.int64
    with torch.no_grad():
        out = model(
            golden["latents"],
            golden["timestep"],
            golden["encoder_hidden_states"],
            encoder_attention_mask=form(golden["encoder_attention_mask"]),
        )
    torch.testing.assert_close(out, golden["output"], rtol=0, atol=1e-5)


def test_a_text_mask_of_another_shape_is_named(model, golden):
    with pytest.raises(
        ValueError, match=r"encoder_attention_mask must be \(B, L\) = \(2, 7\) or \(B, 1, L\), got \(2, 6\)"
    ):
        model(
            golden["latents"][:, :, :1],
            golden["timestep"],
            golden["encoder_hidden_states"],
            golden["encoder_attention_mask"][:, :6],
        )


def test_equals_the_original_without_a_text_mask(model, golden):
    """The release's pipeline passes no mask; the padded tokens then change the output (so the mask matters)."""
    assert (golden["output"] - golden["output_without_mask"]).abs().max() > 1e-2
    with torch.no_grad():
        out = model(golden["latents"], golden["timestep"], golden["encoder_hidden_states"])
    torch.testing.assert_close(out, golden["output_without_mask"], rtol=0, atol=1e-5)


def test_equals_the_original_on_images(model, golden):
    """One frame with temporal attention off: the release's image sampling."""
    with torch.no_grad():
        out = model(
            golden["latents"][:, :, :1],
            golden["timestep"],
            golden["encoder_hidden_states"],
            encoder_attention_mask=golden["encoder_attention_mask"].bool(),
            enable_temporal_attentions=False,
        )
    torch.testing.assert_close(out, golden["output_image"], rtol=0, atol=1e-5)


def _temporal_table(model: OpenSoraPlanLatte) -> torch.Tensor:
    tables = [m.table for m in model.modules() if isinstance(m, AxisEmbedding)]
    assert len(tables) == 1
    return tables[0]


@pytest.mark.parametrize(
    ("video_length", "scale"),
    [(17, 1), (56, 3), (33, 2), (8, 1)],
    ids=["65x512x512", "221x512x512", "fixture", "short"],
)
def test_temporal_positions_follow_the_release_rule(video_length, scale):
    """65 video frames = 17 latent frames (odd: (17 - 1) // 16 = 1); 221 = 56 (even: 56 // 16 = 3); never below 1."""
    config = {**json.loads((FIXTURE / "transformer" / "config.json").read_text()), "video_length": video_length}
    table = _temporal_table(OpenSoraPlanLatte.from_diffusers_config(config))
    dim = table.shape[1]
    expected = torch.tensor(
        [
            [math.sin(p / scale / 10000 ** (2 * i / dim)) for i in range(dim // 2)]
            + [math.cos(p / scale / 10000 ** (2 * i / dim)) for i in range(dim // 2)]
            for p in range(video_length)
        ]
    )
    torch.testing.assert_close(table, expected, rtol=0, atol=1e-6)


def test_config_interpolation_scale_overrides_the_rule():
    config = {**json.loads((FIXTURE / "transformer" / "config.json").read_text()), "interpolation_scale_1d": 4}
    table = _temporal_table(OpenSoraPlanLatte.from_diffusers_config(config))
    half = table.shape[1] // 2
    torch.testing.assert_close(table[8, :half], torch.sin(2.0 / 10000 ** (torch.arange(half) / half)))


def test_more_frames_than_the_table_is_an_error(model, golden):
    latents = golden["latents"]
    longer = torch.cat([latents, latents[:, :, :1]], dim=2)
    with pytest.raises(ValueError, match="exceed the table of 33 positions"):
        model(longer, golden["timestep"], golden["encoder_hidden_states"])


def _copy_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "65x512x512"
    shutil.copytree(FIXTURE / "transformer", folder)
    return folder


def test_loads_without_the_unused_null_caption(tmp_path, golden):
    """Folders saved without ``caption_projection.y_embedding`` (never read at inference) load the same."""
    folder = _copy_folder(tmp_path)
    weights = load_file(folder / WEIGHTS)
    assert "caption_projection.y_embedding" in weights
    del weights["caption_projection.y_embedding"]
    save_file(weights, folder / WEIGHTS)
    with torch.no_grad():
        out = load_backbone(OpenSoraPlanLatte, folder)(
            golden["latents"], golden["timestep"], golden["encoder_hidden_states"]
        )
    torch.testing.assert_close(out, golden["output_without_mask"], rtol=0, atol=1e-5)


def test_missing_and_unexpected_weights_are_named(tmp_path):
    folder = _copy_folder(tmp_path)
    weights = load_file(folder / WEIGHTS)
    weights["temporal_transformer_blocks.0.attn2.to_q.weight"] = weights.pop(
        "temporal_transformer_blocks.0.attn1.to_q.weight"
    )
    save_file(weights, folder / WEIGHTS)
    with pytest.raises(CheckpointError) as error:
        load_backbone(OpenSoraPlanLatte, folder)
    assert "blocks.1.attn.inner.to_q.weight" in str(error.value)
    assert "blocks.1.cross.inner.to_q.weight" in str(error.value)  # the temporal block has no cross-attention


def test_a_folder_without_weights_is_a_checkpoint_error(tmp_path):
    folder = _copy_folder(tmp_path)
    (folder / WEIGHTS).unlink()
    with pytest.raises(CheckpointError, match="no diffusion_pytorch_model.safetensors"):
        load_backbone(OpenSoraPlanLatte, folder)


@pytest.mark.parametrize(
    ("key", "value", "named"),
    [
        ("_class_name", "OpenSoraT2V", "_class_name='OpenSoraT2V'"),
        ("use_rope", True, "use_rope=True"),
        ("compress_kv_factor", 2, "compress_kv_factor=2"),
        ("norm_type", "layer_norm", "norm_type='layer_norm'"),
        ("sample_size", [64, 48], "sample_size=[64, 48]"),
        ("cross_attention_dim", 24, "cross_attention_dim=24"),
        ("caption_channels", None, "no caption_channels"),
    ],
)
def test_variants_the_release_does_not_use_are_refused(key, value, named):
    config = {**json.loads((FIXTURE / "transformer" / "config.json").read_text()), key: value}
    with pytest.raises(ValueError, match=named.replace("[", r"\[")):
        OpenSoraPlanLatte.from_diffusers_config(config)


def test_pab_defaults_match_the_published_schedule():
    """REFERENCES: spatial 2 / temporal 4 / cross 6 on (100, 850); MLP of blocks 0-6 reused for 2 steps after each
    of the 14 timesteps 738, 714, ..., 426 of the release's sampler (diffusers' default PNDM, 150 steps)."""
    from diffusers import PNDMScheduler

    scheduler = PNDMScheduler()
    scheduler.set_timesteps(150)
    timesteps = scheduler.timesteps.tolist()
    mlp = OPENSORA_PLAN_V11_PAB.mlp
    assert [timesteps[i] for i in mlp.positions(len(timesteps))] == list(range(738, 425, -24))
    assert len(mlp.at) == 14 and mlp.steps == 2
    for axis in (AttentionAxis.SPATIAL, AttentionAxis.TEMPORAL):
        assert sorted(mlp.layers_for(axis)) == list(range(7))
    for kind, interval in ((AttentionAxis.SPATIAL, 2), (AttentionAxis.TEMPORAL, 4), (AttentionAxis.CROSS, 6)):
        rule = OPENSORA_PLAN_V11_PAB.broadcast_for(kind)
        assert (rule.interval, rule.window, rule.unit) == (interval, (100.0, 850.0), "timestep")
