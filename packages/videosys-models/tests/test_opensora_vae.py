"""Open-Sora VAE 1.2 against the original's saved output (tests/fixtures/opensora/vae, see its README)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from videosys.models.loading import CheckpointError
from videosys.models.vae import OpenSoraVAE, TemporalVAEConfig

FIXTURE = Path(__file__).parent / "fixtures" / "opensora" / "vae"


def architecture() -> dict:
    """The tiny shapes the fixture was made with, as ``OpenSoraVAE.from_pretrained`` keywords."""
    arch = json.loads((FIXTURE / "architecture.json").read_text())
    t = arch["temporal"]
    temporal = TemporalVAEConfig(
        channels=t["in_out_channels"],
        latent_channels=t["embed_dim"],
        filters=t["filters"],
        num_res_blocks=t["num_res_blocks"],
        channel_multipliers=tuple(t["channel_multipliers"]),
        temporal_downsample=tuple(t["temporal_downsample"]),
        num_groups=t["num_groups"],
    )
    return {"vae_2d": arch["vae_2d"], "temporal": temporal, "micro_batch_size": arch["micro_batch_size"]}


def load(folder: Path = FIXTURE, **overrides) -> OpenSoraVAE:
    return OpenSoraVAE.from_pretrained(folder, **{**architecture(), **overrides})


@pytest.fixture(scope="module")
def io() -> dict[str, torch.Tensor]:
    return load_file(FIXTURE / "io.safetensors")


@pytest.fixture(scope="module")
def vae() -> OpenSoraVAE:
    """The fixture folder loaded once (tests that change it load their own)."""
    return load()


def test_encode_equals_original(io, vae):
    """Same seed, same draws: both posteriors are sampled as the original samples them."""
    with safe_open(FIXTURE / "io.safetensors", "pt") as stored:
        seed = int(stored.metadata()["encode_seed"])
    with torch.no_grad():
        encoded = vae.encode(io["video"], generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(encoded, io["encoded"], rtol=1e-5, atol=1e-5)


def test_decode_equals_original(io, vae):
    frames = io["video"].shape[2]
    with torch.no_grad():
        decoded = vae.decode(io["latents"], num_frames=frames)
    torch.testing.assert_close(decoded, io["decoded"], rtol=1e-5, atol=1e-5)


def test_micro_batched_2d_vae_equals_one_go(io):
    """The 2-D VAE's frame micro-batches (3, not dividing 20 frames) change nothing but memory."""
    frames, latents = io["video"].shape[2], io["latents"][:1]
    vae = load(micro_batch_size=3)
    with torch.no_grad():
        chunked = vae.decode(latents, num_frames=frames)
        vae.spatial_vae.micro_batch_size = None
        whole = vae.decode(latents, num_frames=frames)
    torch.testing.assert_close(chunked, whole, rtol=1e-5, atol=1e-6)


def test_micro_clips_decode_independently(io, vae):
    """Decoding a long video clip by clip equals decoding each 17-frame micro-clip on its own."""
    latents = io["latents"][:1]
    with torch.no_grad():
        full = vae.decode(latents, num_frames=20)
        first = vae.decode(latents[:, :, :5], num_frames=17)
        rest = vae.decode(latents[:, :, 5:], num_frames=3)
    torch.testing.assert_close(full, torch.cat([first, rest], dim=2))
    assert vae.latent_frames(51) == 15 and vae.latent_frames(20) == 6 and vae.latent_frames(1) == 1


def test_official_folder_loads_every_key(vae):
    """The folder the original's save_pretrained wrote loads with nothing missing or left over."""
    stored = load_file(FIXTURE / "model.safetensors")
    assert set(vae.state_dict()) == set(stored) - {"shift", "scale"}
    assert any(k.startswith("spatial_vae.module.") for k in stored)
    assert any(k.startswith("temporal_vae.encoder.") for k in stored)
    torch.testing.assert_close(vae.shift.flatten(), torch.tensor([-0.10, 0.34, 0.27, 0.98]))


def copy_with(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "vae"
    shutil.copytree(FIXTURE, folder)
    state_dict = load_file(folder / "model.safetensors")
    edit(state_dict)
    save_file(state_dict, folder / "model.safetensors")
    return folder


def test_missing_key_is_named(tmp_path):
    key = "temporal_vae.decoder.conv_out.conv.weight"
    folder = copy_with(tmp_path, lambda sd: sd.pop(key))
    with pytest.raises(CheckpointError, match=f"missing keys.*{key}"):
        load(folder)


def test_unexpected_and_wrong_shape_are_named(tmp_path):
    key = "spatial_vae.module.encoder.conv_in.weight"

    def edit(sd):
        sd[key] = torch.zeros(1, *sd[key].shape[1:])
        sd["temporal_vae.extra.weight"] = torch.zeros(1)

    folder = copy_with(tmp_path, edit)
    with pytest.raises(CheckpointError, match=r"unexpected keys.*temporal_vae\.extra\.weight") as info:
        load(folder)
    assert f"{key}: checkpoint (1, 3, 3, 3)" in str(info.value)


def test_normalisation_must_agree_with_config(tmp_path):
    folder = copy_with(tmp_path, lambda sd: sd.__setitem__("scale", sd["scale"] * 2))
    with pytest.raises(CheckpointError, match="stores scale="):
        load(folder)


def test_wrong_folder_and_frame_count_are_explained(tmp_path, vae):
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "t5"}))
    with pytest.raises(CheckpointError, match="expected 'VideoAutoencoderPipeline'"):
        load(tmp_path)
    with pytest.raises(ValueError, match="num_frames=30 encodes to 9 latent frames, but the latents have 6"):
        vae.decode(torch.zeros(1, 4, 6, 4, 6), num_frames=30)


def test_config_fields_are_required_and_null_micro_frames_mean_whole_videos(tmp_path, io):
    folder = tmp_path / "vae"
    shutil.copytree(FIXTURE, folder)
    meta = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**meta, "micro_frame_size": None}))
    vae = load(folder)
    assert vae.latent_frames(20) == 5 and vae.latent_frames(51) == 13
    with torch.no_grad():
        assert vae.encode(io["video"][:1], sample=False).shape == (1, 4, 5, 4, 6)
        assert vae.decode(io["latents"][:1, :, :5], num_frames=20).shape == (1, 3, 20, 8, 12)
    del meta["shift"]
    (folder / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="lacks shift"):
        load(folder)


def test_architecture_file_gives_the_shapes_of_an_unpublished_vae(io, tmp_path):
    """The fixture folder's architecture.json alone (no keywords) builds the model the keywords build, which
    decodes as the original; a key the original VAE_Temporal does not take is named."""
    with torch.no_grad():
        decoded = OpenSoraVAE.from_pretrained(FIXTURE).decode(io["latents"], num_frames=20)
    torch.testing.assert_close(decoded, io["decoded"], rtol=1e-5, atol=1e-5)
    folder = tmp_path / "vae"
    shutil.copytree(FIXTURE, folder)
    arch = json.loads((folder / "architecture.json").read_text())
    arch["temporal"]["kernel"] = 3
    (folder / "architecture.json").write_text(json.dumps(arch))
    with pytest.raises(CheckpointError, match=r"architecture.json: unknown temporal VAE keys \['kernel'\]"):
        OpenSoraVAE.from_pretrained(folder)
