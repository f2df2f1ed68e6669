"""Our Wan 2.1 backbone, loaded from a diffusers-saved folder, against diffusers' WanTransformer3DModel."""

from __future__ import annotations

import json

import pytest
import torch
from wan_tiny import TINY_WAN, build_wan_reference, wan_inputs

from videosys.core import AttentionAxis, attention_backend, branch_sites, check_backbone
from videosys.models.loading import CheckpointError, load_backbone
from videosys.models.transformers import WanTransformer
from videosys.models.transformers.wan import wan_rope_split


@pytest.fixture
def wan_reference(tmp_path):
    folder = tmp_path / "transformer"
    return build_wan_reference(folder), folder


def test_wan_forward_equals_diffusers(wan_reference):
    reference, folder = wan_reference
    ours = load_backbone(WanTransformer, folder)
    latents, t, text = wan_inputs()
    with torch.no_grad():
        expected = reference(latents, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
        got = ours(latents, t, text)
    assert got.shape == expected.shape == latents.shape
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_wan_math_backend_and_gradients_agree(wan_reference):
    reference, folder = wan_reference
    ours = load_backbone(WanTransformer, folder).train()
    latents, t, text = wan_inputs(seed=1)
    with attention_backend("math"):
        got = ours(latents, t, text)
    expected = reference(latents, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)
    got.square().mean().backward()
    expected.square().mean().backward()
    ref_grads = dict(reference.named_parameters())
    ours_grads = WanTransformer.convert_diffusers_state_dict({k: p.grad for k, p in ref_grads.items()})
    for name, param in ours.named_parameters():
        torch.testing.assert_close(param.grad, ours_grads[name], rtol=1e-4, atol=1e-5, msg=name)


def test_wan_loads_a_sharded_folder(tmp_path):
    reference = build_wan_reference(tmp_path / "single")
    reference.save_pretrained(tmp_path / "sharded", safe_serialization=True, max_shard_size="20KB")
    assert (tmp_path / "sharded" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    latents, t, text = wan_inputs(seed=2)
    with torch.no_grad():
        expected = reference(latents, timestep=t, encoder_hidden_states=text, return_dict=False)[0]
        got = load_backbone(WanTransformer, tmp_path / "sharded")(latents, t, text)
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-5)


def test_wan_structure_follows_core_interfaces(wan_reference):
    ours = load_backbone(WanTransformer, wan_reference[1])
    check_backbone(ours)
    assert [block.axis for block in ours.blocks] == [AttentionAxis.FULL] * TINY_WAN["num_layers"]
    assert [(s.block, s.name) for s in branch_sites(ours)][:3] == [(0, "attn"), (0, "cross"), (0, "mlp")]
    assert ours.rope.split == [8, 4, 4] and ours.rope.interleaved


def test_wan_rope_split_is_wans():
    # h = w = 2 * (D // 6), t the rest (diffusers' WanRotaryPosEmbed, the original's rope_params split)
    assert wan_rope_split(128) == [44, 42, 42]
    assert wan_rope_split(16) == [8, 4, 4]


def test_wan_missing_and_unexpected_keys_raise(tmp_path):
    from safetensors.torch import load_file, save_file

    folder = tmp_path / "transformer"
    build_wan_reference(folder)
    weights = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    state.pop("blocks.1.attn2.norm_k.weight")
    state["blocks.0.extra.weight"] = torch.zeros(1)
    save_file(state, weights)
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): blocks.1.cross.inner.norm_k.weight") as err:
        load_backbone(WanTransformer, folder)
    assert "unexpected keys (1): blocks.0.extra.weight" in str(err.value)


@pytest.mark.parametrize("text_shape", [(2, 7, 23), (1, 7, 24), (2, 24)])
def test_wan_names_text_features_of_the_wrong_shape(text_shape):
    latents, t, _ = wan_inputs()
    with pytest.raises(ValueError, match=r"encoder_hidden_states must be \(B=2, L, 24\) text features, got shape"):
        WanTransformer.from_diffusers_config(TINY_WAN)(latents, t, torch.zeros(text_shape))


@pytest.mark.parametrize(
    ("field", "value"), [("image_dim", 1280), ("added_kv_proj_dim", 1536), ("qk_norm", "rms_norm")]
)
def test_wan_refuses_other_variants(tmp_path, field, value):
    folder = tmp_path / "transformer"
    build_wan_reference(folder)
    config = json.loads((folder / "config.json").read_text())
    config[field] = value
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=f"{field}="):
        load_backbone(WanTransformer, folder)
