"""Open-Sora-Plan's CausalVAE against the original's saved output (tests/fixtures/opensora_plan, see its README)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

from videosys.models.loading import CheckpointError
from videosys.models.vae import TILING_V1_2, CausalVAE, CausalVAETiling
from videosys.models.vae.tiling import tiled_2d, time_chunks

FIXTURES = Path(__file__).parent / "fixtures" / "opensora_plan"
RELEASES = ("v1.1", "v1.2")
WEIGHTS = "diffusion_pytorch_model.safetensors"


def folder(release: str) -> Path:
    return FIXTURES / f"causal_vae_{release}"


def metadata(release: str) -> dict[str, str]:
    with safe_open(folder(release) / "io.safetensors", "pt") as stored:
        return stored.metadata()


@pytest.fixture(scope="module", params=RELEASES)
def release(request) -> str:
    return request.param


@pytest.fixture(scope="module")
def vae(release) -> CausalVAE:
    return CausalVAE.from_pretrained(folder(release))


@pytest.fixture(scope="module")
def io(release) -> dict[str, torch.Tensor]:
    return load_file(folder(release) / "io.safetensors")


def test_encode_equals_original(vae, io, release):
    """Same seed, same draw: the posterior is sampled as the original samples it; its mean too."""
    seed = int(metadata(release)["encode_seed"])
    with torch.no_grad():
        sampled = vae.encode(io["video"], generator=torch.Generator().manual_seed(seed))
        mean = vae.encode(io["video"], sample=False)
    torch.testing.assert_close(sampled, io["encoded"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(mean, io["encoded_mean"], rtol=1e-5, atol=1e-5)


def test_decode_equals_original(vae, io):
    with torch.no_grad():
        decoded = vae.decode(io["latents"])
    torch.testing.assert_close(decoded, io["decoded"], rtol=1e-5, atol=1e-5)


def fixture_tiling(release: str) -> CausalVAETiling:
    """The original's tile attributes the fixture set, as a :class:`CausalVAETiling`."""
    tiles = json.loads(metadata(release)["tiling"])
    return CausalVAETiling(
        sample_size=tiles["tile_sample_min_size"],
        sample_frames=tiles["tile_sample_min_size_t"],
        latent_frames=tiles["tile_latent_min_size_t"],
        overlap=tiles["tile_overlap_factor"],
        progress=False,
    )


def test_tiled_encode_and_decode_equal_original_tiled(vae, io, release):
    """Small tiles cut the fixture in time (chunks sharing a frame) and space (ragged last tile)."""
    vae.enable_tiling(fixture_tiling(release))
    try:
        with torch.no_grad():
            encoded = vae.encode(io["video"][:1, :, :, :16, :24], sample=False)
            decoded = vae.decode(io["latents"][:1, :, :, :2, :3])
    finally:
        vae.disable_tiling()
    torch.testing.assert_close(encoded, io["tiled_encoded_mean"], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(decoded, io["tiled_decoded"], rtol=1e-5, atol=1e-5)


def test_tiled_decode_close_to_untiled():
    """Four tiles of 8x8 latents (2/3 x 1/2 of the frame), overlapping by a quarter.

    Tiling is approximate by construction: every block's GroupNorm and the mid attention see one tile,
    not the frame (and this random model mixes far), so the bound is loose: exactness of the scheme is
    shown against the original above. Measured here: mean |tiled - untiled| is about 10% of mean |untiled|.
    """
    vae = CausalVAE.from_pretrained(folder("v1.2"))  # one release: the tiling code is shared
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 4, 2, 8, 12, generator=generator)
    with torch.no_grad():
        whole = vae.decode(latents)
        vae.enable_tiling(CausalVAETiling(sample_size=64, overlap=0.25, progress=False))
        tiled = vae.decode(latents)
    assert tiled.shape == whole.shape
    assert (tiled - whole).abs().mean() < 0.15 * whole.abs().mean()


def test_release_tiling_bounds_what_the_decoder_sees_at_720p(monkeypatch):
    """29x720p latents (8 x 90 x 160) decode with v1.2's tiling: the decoder, whose activations grow with its input,
    only ever sees one tile (8 latent frames of at most 64 x 64), whatever the frame size.

    The decoder is replaced by a cheap stand-in of the right output shape (one channel) that records its inputs.
    """
    vae = CausalVAE.from_pretrained(folder("v1.2"))
    vae.enable_tiling(dataclasses.replace(TILING_V1_2, progress=False))
    seen = []

    def decode(z: torch.Tensor) -> torch.Tensor:
        seen.append(tuple(z.shape[2:]))
        return torch.zeros(z.shape[0], 1, 1 + 4 * (z.shape[2] - 1), 8 * z.shape[3], 8 * z.shape[4])

    monkeypatch.setattr(vae, "_decode", decode)
    video = vae.decode(torch.zeros(1, 4, 8, 90, 160))
    assert video.shape == (1, 1, 29, 720, 1280)
    tile = TILING_V1_2.sample_size // 8
    assert max(seen) <= (8, tile, tile) and all(h <= tile and w <= tile for _, h, w in seen), seen
    assert len(seen) == 2 * 3  # tiles step by 56 latents: rows at 0, 56; columns at 0, 56, 112


def test_tiled_2d_is_exact_for_a_local_map():
    """For a map whose output pixel depends only on its input pixel, blended tiles equal the whole."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 4, 7, 10, generator=generator)

    def local(t: torch.Tensor) -> torch.Tensor:  # 8x nearest upsampling then a pointwise function
        return torch.tanh(t.repeat_interleave(8, dim=-2).repeat_interleave(8, dim=-1)) * 3 + 1

    tiled = tiled_2d(x, local, tile=4, stride=3, blend=8, keep=24, progress=False)
    torch.testing.assert_close(tiled, local(x), rtol=1e-6, atol=1e-6)


def test_time_chunks_share_one_frame():
    """The original's temporal split, written out by hand."""
    assert time_chunks(17, 8) == [(0, 8), (7, 15), (14, 17)]
    assert time_chunks(15, 8) == [(0, 8), (7, 15)]
    assert time_chunks(8, 8) == [(0, 8)]
    assert time_chunks(5, 8) == [(0, 5)]
    with pytest.raises(ValueError, match="at least 2 frames"):
        time_chunks(5, 1)


@contextlib.contextmanager
def frozen_group_norms(model: nn.Module, stats: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]]) -> Iterator[None]:
    """Every GroupNorm normalises with ``stats`` (recorded there on first use), instead of its input's statistics.

    The original's GroupNorms pool over the whole clip, so they are the one place later frames reach the
    first: with their statistics held fixed, what remains (convolutions, resampling, attention) must be causal.
    """

    def forward(norm: nn.GroupNorm, x: torch.Tensor) -> torch.Tensor:
        groups = x.reshape(x.shape[0], norm.num_groups, -1)
        if norm not in stats:
            stats[norm] = (groups.mean(-1, keepdim=True), groups.var(-1, unbiased=False, keepdim=True))
        mean, var = stats[norm]
        y = ((groups - mean) / torch.sqrt(var + norm.eps)).reshape(x.shape)
        shape = (1, -1) + (1,) * (x.ndim - 2)
        return y * norm.weight.reshape(shape) + norm.bias.reshape(shape)

    norms = [m for m in model.modules() if isinstance(m, nn.GroupNorm)]
    for norm in norms:
        norm.forward = lambda x, norm=norm: forward(norm, x)
    try:
        yield
    finally:
        for norm in norms:
            del norm.forward


def test_first_latent_frame_sees_only_the_first_video_frame(vae):
    """Later frames perturbed: the first latent frame is unchanged, the later ones change (norm stats fixed)."""
    generator = torch.Generator().manual_seed(3)
    video = torch.rand(1, 3, 9, 16, 24, generator=generator) * 2 - 1
    perturbed = video.clone()
    perturbed[:, :, 1:] = torch.rand(1, 3, 8, 16, 24, generator=generator) * 2 - 1
    stats: dict = {}
    with torch.no_grad(), frozen_group_norms(vae, stats):
        reference = vae.encode(video, sample=False)
        changed = vae.encode(perturbed, sample=False)
        assert stats, "the model has GroupNorms to hold fixed"
    torch.testing.assert_close(changed[:, :, :1], reference[:, :, :1], rtol=0, atol=1e-6)
    assert (changed[:, :, 1:] - reference[:, :, 1:]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-3
    with torch.no_grad():  # the original's clip-wide GroupNorms do let later frames in: kept, as released
        assert not torch.allclose(vae.encode(perturbed, sample=False)[:, :, :1], reference[:, :, :1], atol=1e-4)


def test_first_video_frame_sees_only_the_first_latent_frame(vae):
    generator = torch.Generator().manual_seed(4)
    latents = torch.randn(1, 4, 3, 2, 3, generator=generator)
    perturbed = latents.clone()
    perturbed[:, :, 1:] = torch.randn(1, 4, 2, 2, 3, generator=generator)
    with torch.no_grad(), frozen_group_norms(vae, {}):
        reference = vae.decode(latents)
        changed = vae.decode(perturbed)
    torch.testing.assert_close(changed[:, :, :1], reference[:, :, :1], rtol=0, atol=1e-6)
    assert (changed[:, :, 1:] - reference[:, :, 1:]).abs().amax(dim=(0, 1, 3, 4)).min() > 1e-3


def test_an_image_is_a_one_frame_video(vae):
    with torch.no_grad():
        latents = vae.encode(torch.zeros(1, 3, 1, 16, 24), sample=False)
        assert latents.shape == (1, 4, 1, 2, 3)
        assert vae.decode(latents).shape == (1, 3, 1, 16, 24)


def test_wrong_shapes_raise(vae):
    with pytest.raises(ValueError, match=r"8 frames; the CausalVAE needs 1 \+ 4k frames"):
        vae.encode(torch.zeros(1, 3, 8, 16, 16))
    with pytest.raises(ValueError, match="20x16; the CausalVAE needs height and width multiples of 8"):
        vae.encode(torch.zeros(1, 3, 5, 20, 16))
    with pytest.raises(ValueError, match=r"video must be \(B, 3, T, H, W\), got shape \(1, 4, 5, 16, 16\)"):
        vae.encode(torch.zeros(1, 4, 5, 16, 16))
    with pytest.raises(ValueError, match=r"latents must be \(B, 4, T', h, w\), got shape \(1, 8, 2, 2, 2\)"):
        vae.decode(torch.zeros(1, 8, 2, 2, 2))
    assert vae.latent_shape(29, 480, 640) == (4, 8, 60, 80)


def test_misaligned_tiles_raise(vae):
    with pytest.raises(ValueError, match="sample_size=48 with overlap=0.25 does not tile latents"):
        vae.enable_tiling(CausalVAETiling(sample_size=48, overlap=0.25))
    with pytest.raises(ValueError, match="sample_frames=30 is not 1 \\+ 4k"):
        vae.enable_tiling(CausalVAETiling(sample_frames=30))
    assert vae.tiling is None


def copy_fixture(release: str, tmp_path: Path) -> Path:
    target = tmp_path / "vae"
    shutil.copytree(folder(release), target)
    return target


def test_missing_and_unexpected_keys_are_named(release, tmp_path):
    target = copy_fixture(release, tmp_path)
    weights = load_file(target / WEIGHTS)
    del weights["encoder.mid.attn_1.q.conv.weight"]
    weights["encoder.mid.attn_2.q.conv.weight"] = torch.zeros(1)
    save_file(weights, target / WEIGHTS)
    with pytest.raises(CheckpointError) as error:
        CausalVAE.from_pretrained(target)
    message = str(error.value)
    assert "missing keys (1): encoder.mid.attn_1.q.conv.weight" in message
    assert "unexpected keys (1): encoder.mid.attn_2.q.conv.weight" in message


def test_training_loss_weights_are_dropped(release, tmp_path):
    """v1.1.0's training class held its loss networks; their ``loss.*`` tensors are not the VAE's."""
    target = copy_fixture(release, tmp_path)
    weights = load_file(target / WEIGHTS)
    weights["loss.discriminator.main.0.weight"] = torch.zeros(2, 2)
    save_file(weights, target / WEIGHTS)
    model = CausalVAE.from_pretrained(target)
    assert not any(key.startswith("loss.") for key in model.state_dict())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"encoder_attention": "AttnBlock3D"},
            r"unsupported attention block 'AttnBlock3D' in encoder_attention; supported: \['AttnBlock3DFix'\]",
        ),
        ({"encoder_typo": 1}, r"unknown CausalVAE config keys \['encoder_typo'\]"),
        ({"hidden_size": None}, r"CausalVAE config lacks \['hidden_size'\]"),
        ({"decoder_resnet_blocks": ["ResnetBlock3D"] * 3}, r"\{'decoder_resnet_blocks': 3\} must each have one entry"),
    ],
)
def test_bad_config_is_named(tmp_path, change, message):
    target = copy_fixture("v1.2", tmp_path)
    config = json.loads((target / "config.json").read_text())
    config.update(change)
    config = {k: v for k, v in config.items() if v is not None}
    (target / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=message):
        CausalVAE.from_pretrained(target)
