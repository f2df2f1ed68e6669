"""The frozen encoders against the libraries they wrap, on tiny models built here (no downloads)."""

import pytest
import torch

from videosys.train.config import EncoderConfig
from videosys.train.encoders import build_text_encoder, build_vae
from videosys.train.text import HashTextEncoder


def test_hash_text_encoder_is_deterministic_and_masks_padding():
    encoder = HashTextEncoder(dim=8, max_length=6)
    emb, mask = encoder.encode(["a red circle moving right", "A RED square"])
    again, _ = HashTextEncoder(dim=8, max_length=6).encode(["a red circle"])
    assert mask.tolist() == [[True] * 5 + [False], [True] * 3 + [False] * 3]
    torch.testing.assert_close(emb[0, :3], again[0, :3])  # same words, same vectors, case-insensitive
    torch.testing.assert_close(emb[0, :2], emb[1, :2])
    assert emb[1, 3:].abs().sum() == 0


def test_diffusers_vae_encodes_each_frame_with_the_posterior_mean(tmp_path, tiny_vae):
    diffusers = pytest.importorskip("diffusers")
    vae = tiny_vae(diffusers)
    vae.save_pretrained(tmp_path / "vae")
    encoder = build_vae(EncoderConfig(kind="diffusers", path=str(tmp_path / "vae")))
    assert (encoder.latent_channels, encoder.spatial_factor) == (4, 2)
    video = torch.rand(2, 3, 3, 8, 8) * 2 - 1
    latents = encoder.encode(video)
    assert latents.shape == (2, 4, 3, 4, 4)
    with torch.no_grad():
        frame = vae.encode(video[1, :, 2][None]).latent_dist.mean[0] * vae.config.scaling_factor
    torch.testing.assert_close(latents[1, :, 2], frame)


def test_t5_text_encoder_matches_the_model_with_its_mask(tmp_path):
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    vocab = {w: i for i, w in enumerate(["<pad>", "</s>", "<unk>", "a", "red", "circle", "moving", "right"])}
    raw = tokenizers.Tokenizer(tokenizers.models.WordLevel(vocab, unk_token="<unk>"))
    raw.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    tokenizer = transformers.PreTrainedTokenizerFast(tokenizer_object=raw, pad_token="<pad>", eos_token="</s>")
    tokenizer.save_pretrained(tmp_path / "t5")
    config = transformers.T5Config(vocab_size=8, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=4)
    torch.manual_seed(0)
    model = transformers.T5EncoderModel(config).eval()
    model.save_pretrained(tmp_path / "t5")
    encoder = build_text_encoder(EncoderConfig(kind="t5", path=str(tmp_path / "t5"), kwargs={"max_length": 6}))
    emb, mask = encoder.encode(["a red circle", "a red circle moving right"])
    assert emb.shape == (2, 6, 16) and mask.tolist()[0] == [True] * 3 + [False] * 3
    with torch.no_grad():
        ids = torch.tensor([[3, 4, 5]])
        direct = model(input_ids=ids).last_hidden_state[0]
    torch.testing.assert_close(emb[0, :3], direct, rtol=1e-5, atol=1e-5)


def test_trainer_trains_in_the_latent_space_of_a_diffusers_vae(tiny, tmp_path, tiny_vae):
    diffusers = pytest.importorskip("diffusers")
    pytest.importorskip("colossalai")
    from videosys.train.trainer import Trainer

    tiny_vae(diffusers).save_pretrained(tmp_path / "vae")
    trainer = Trainer(tiny(tmp_path, "vae.kind=diffusers", f"vae.path={tmp_path / 'vae'}", "train.steps=2"))
    result = trainer.fit()
    assert trainer.unwrapped.in_channels == 4 and trainer.unwrapped.sample_size == 4
    assert len(result.losses) == 2 and all(torch.isfinite(torch.tensor(result.losses)))
