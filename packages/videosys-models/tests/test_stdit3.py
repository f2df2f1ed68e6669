"""STDiT3 against the original Open-Sora 1.2 code's saved output, and loading the official folder layout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from videosys.models.loading import CheckpointError, folder_layout, load_backbone
from videosys.models.transformers import LatteTransformer, STDiT3

FIXTURES = Path(__file__).parent / "fixtures" / "opensora"
INPUTS = ("timestep", "y", "mask", "x_mask", "fps", "height", "width")


@pytest.fixture(scope="module")
def golden() -> dict[str, torch.Tensor]:
    return load_file(FIXTURES / "stdit3_io.safetensors")


def test_matches_the_original_with_frames_at_t0(golden):
    """Batch 2, different timesteps, padded text, x_mask, fps, non-square latents whose width is padded."""
    model = load_backbone(STDiT3, FIXTURES / "stdit3")
    with torch.no_grad():
        out = model(golden["x"], **{name: golden[name] for name in INPUTS})
    assert out.shape == golden["output"].shape == (2, 8, 3, 6, 9)
    torch.testing.assert_close(out, golden["output"], rtol=0, atol=1e-5)


def test_matches_the_original_without_x_mask(golden):
    model = load_backbone(STDiT3, FIXTURES / "stdit3")
    with torch.no_grad():
        out = model(golden["x"], **{name: golden[name] for name in INPUTS if name != "x_mask"})
    torch.testing.assert_close(out, golden["output_without_x_mask"], rtol=0, atol=1e-5)


def test_null_caption_is_the_published_buffer():
    model = load_backbone(STDiT3, FIXTURES / "stdit3")
    published = load_file(FIXTURES / "stdit3" / "model.safetensors")["y_embedder.y_embedding"]
    assert torch.equal(model.null_caption, published)


@pytest.fixture
def stdit3_copy(tmp_path) -> Path:
    folder = tmp_path / "stdit3"
    shutil.copytree(FIXTURES / "stdit3", folder)
    return folder


def _rewrite(folder: Path, edit) -> None:
    path = folder / "model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path)


def test_the_folder_layout_is_read_from_its_files(stdit3_copy):
    assert folder_layout(stdit3_copy) == "transformers"
    with pytest.raises(CheckpointError, match=r"transformers-layout checkpoint; LatteTransformer reads \['diffusers"):
        load_backbone(LatteTransformer, stdit3_copy)


def test_missing_key_is_named(stdit3_copy):
    _rewrite(stdit3_copy, lambda state: state.pop("temporal_blocks.1.cross_attn.kv_linear.weight"))
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): blocks\.3\.cross\.inner\.kv_linear\.weight"):
        load_backbone(STDiT3, stdit3_copy)


def test_wrong_shape_is_named(stdit3_copy):
    _rewrite(stdit3_copy, lambda state: state.update({"spatial_blocks.0.attn.qkv.weight": torch.zeros(48, 8)}))
    shape = r"blocks\.0\.attn\.inner\.qkv\.weight: checkpoint \(48, 8\) vs model \(48, 16\)"
    with pytest.raises(CheckpointError, match=shape):
        load_backbone(STDiT3, stdit3_copy)


def test_unexpected_key_and_other_rope_frequencies_are_errors(stdit3_copy):
    _rewrite(stdit3_copy, lambda state: state.update({"pos_embed.table": torch.zeros(2)}))
    with pytest.raises(CheckpointError, match=r"unexpected keys \(1\): pos_embed\.table"):
        load_backbone(STDiT3, stdit3_copy)
    _rewrite(stdit3_copy, lambda state: (state.pop("pos_embed.table"), state.update({"rope.freqs": torch.ones(4)})))
    with pytest.raises(CheckpointError, match="rope.freqs"):
        load_backbone(STDiT3, stdit3_copy)


def test_bad_inputs_name_what_was_expected(golden):
    model = load_backbone(STDiT3, FIXTURES / "stdit3")
    inputs = {name: golden[name] for name in INPUTS}
    with pytest.raises(ValueError, match=r"x_mask must be \(B, T\) = \(2, 3\), got shape \(2, 4\)"):
        model(golden["x"], **{**inputs, "x_mask": torch.ones(2, 4, dtype=torch.bool)})
    with pytest.raises(ValueError, match="height and width in pixels"):
        model(golden["x"], **{**inputs, "height": None})
    length = golden["y"].shape[-2]
    for bad in (torch.ones(2, length + 1), torch.ones(3, length), torch.ones(2, 2, length)):
        shape = str(tuple(bad.shape)).replace("(", r"\(").replace(")", r"\)")
        expected = rf"mask must be \(B, L\) = \(2, {length}\), \(1, L\) or \(B, 1, L\), got {shape}"
        with pytest.raises(ValueError, match=expected):
            model(golden["x"], **{**inputs, "mask": bad})


def test_the_caption_mask_takes_the_shapes_the_original_passes(golden):
    """``(B, 1, L)`` as the original's ``encode_text`` squeezes it, and one ``(1, L)`` row for every sample."""
    model = load_backbone(STDiT3, FIXTURES / "stdit3")
    inputs = {name: golden[name] for name in INPUTS}
    mask = golden["mask"]
    with torch.no_grad():
        torch.testing.assert_close(model(golden["x"], **{**inputs, "mask": mask[:, None]}), golden["output"],
                                   rtol=0, atol=1e-5)  # fmt: skip
        shared = model(golden["x"], **{**inputs, "mask": mask[:1]})
        each = model(golden["x"], **{**inputs, "mask": mask[:1].expand_as(mask)})
    torch.testing.assert_close(shared, each, rtol=0, atol=0)
