"""The loader: file discovery (safetensors first, .bin only when asked), key checks, dtype/device, DiT embedders."""

from __future__ import annotations

import inspect

import pytest
import torch
from safetensors.torch import load_file, save_file

from videosys.models.loading import CheckpointError, load_backbone, rename_keys
from videosys.models.transformers import DiTTransformer, LatteTransformer


def _rewrite(folder, edit):
    path = folder / "diffusion_pytorch_model.safetensors"
    state = load_file(path)
    edit(state)
    save_file(state, path)


def test_missing_and_unexpected_keys_are_listed(dit_reference):
    _, folder = dit_reference

    def edit(state):
        del state["transformer_blocks.1.attn1.to_q.weight"]
        state["transformer_blocks.1.attn1.extra.weight"] = torch.zeros(1)

    _rewrite(folder, edit)
    with pytest.raises(CheckpointError) as err:
        load_backbone(DiTTransformer, folder)
    message = str(err.value)
    assert "missing keys (1): blocks.1.attn.inner.to_q.weight" in message
    assert "unexpected keys (1): blocks.1.attn1.extra.weight" in message


def test_shape_mismatch_is_listed(dit_reference):
    _, folder = dit_reference
    _rewrite(folder, lambda state: state.update({"proj_out_2.bias": torch.zeros(3)}))
    with pytest.raises(CheckpointError, match=r"final\.linear\.bias: checkpoint \(3,\) vs model \(32,\)"):
        load_backbone(DiTTransformer, folder)


def test_untied_dit_embedders_are_refused(tmp_path, make_dit):
    model = make_dit(seed=2, tie=False)  # every block its own embedder: a layout the original DiT cannot express
    model.save_pretrained(tmp_path, safe_serialization=True)
    with pytest.raises(CheckpointError, match=r"transformer_blocks\.1\.norm1\.emb\..* differs from"):
        load_backbone(DiTTransformer, tmp_path)


def test_bin_weights_only_when_allowed(tmp_path, make_dit):
    model = make_dit(seed=3)
    model.save_pretrained(tmp_path, safe_serialization=False)
    assert (tmp_path / "diffusion_pytorch_model.bin").is_file()
    with pytest.raises(CheckpointError, match="allow_bin=True"):
        load_backbone(DiTTransformer, tmp_path)
    ours = load_backbone(DiTTransformer, tmp_path, allow_bin=True)
    x, t, y = torch.randn(1, 4, 8, 8), torch.tensor([5]), torch.tensor([7])
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t, y), model(x, t, y, return_dict=False)[0], rtol=0, atol=1e-5)


def test_sharded_safetensors(dit_reference, tmp_path):
    reference, _ = dit_reference
    if "max_shard_size" not in inspect.signature(reference.save_pretrained).parameters:
        pytest.skip("this diffusers cannot save sharded model weights")
    folder = tmp_path / "sharded"
    reference.save_pretrained(folder, safe_serialization=True, max_shard_size="20KB")
    assert (folder / "diffusion_pytorch_model.safetensors.index.json").is_file()
    ours = load_backbone(DiTTransformer, folder)
    x, t, y = torch.randn(1, 4, 8, 8), torch.tensor([5]), torch.tensor([7])
    with torch.no_grad():
        torch.testing.assert_close(ours(x, t, y), reference(x, t, y, return_dict=False)[0], rtol=0, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_dtype_option(dit_reference, dtype):
    reference, folder = dit_reference
    ours = load_backbone(DiTTransformer, folder, dtype=dtype, device="cpu")
    assert {p.dtype for p in ours.parameters()} == {dtype}
    assert not ours.training
    x, t, y = torch.randn(2, 4, 8, 8), torch.tensor([5, 5]), torch.tensor([7, 1000])
    with torch.no_grad():
        got = ours(x.to(dtype), t, y)
        expected = reference(x, t, y, return_dict=False)[0]
    assert got.dtype == dtype
    relative_error = (got.float() - expected).norm() / expected.norm()
    assert relative_error < 0.02  # half-precision rounding, not a different computation


def test_unsupported_config_is_named(tmp_path):
    (tmp_path / "config.json").write_text('{"norm_type": "ada_norm", "in_channels": 4, "patch_size": 2}')
    save_file({}, tmp_path / "diffusion_pytorch_model.safetensors")
    with pytest.raises(ValueError, match="norm_type='ada_norm'"):
        load_backbone(LatteTransformer, tmp_path)


def test_missing_folder_contents(tmp_path):
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_backbone(DiTTransformer, tmp_path)
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(CheckpointError, match="no diffusion_pytorch_model.safetensors"):
        load_backbone(DiTTransformer, tmp_path)


def test_rename_collision_is_an_error():
    with pytest.raises(CheckpointError, match="two checkpoint keys map to 'b'"):
        rename_keys({"a": torch.zeros(1), "b": torch.zeros(1)}, [(r"^a$", "b")])
