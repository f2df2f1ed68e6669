"""Tiny reference models built with diffusers (random weights, no download) and saved in the official layout."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

diffusers = pytest.importorskip("diffusers")

# Spawned ranks import their entry points (latte_workers) by module name.
sys.path.insert(0, str(Path(__file__).parent))

TINY_LATTE = {
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "in_channels": 4,
    "out_channels": 8,
    "num_layers": 2,
    "cross_attention_dim": 16,
    "attention_bias": True,
    "sample_size": 8,
    "patch_size": 2,
    "activation_fn": "gelu-approximate",
    "num_embeds_ada_norm": 1000,
    "norm_type": "ada_norm_single",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "caption_channels": 32,
    "video_length": 4,
}

TINY_DIT = {
    "num_attention_heads": 2,
    "attention_head_dim": 8,
    "in_channels": 4,
    "out_channels": 8,
    "num_layers": 2,
    "sample_size": 8,
    "patch_size": 2,
    "num_embeds_ada_norm": 1000,
}


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Overwrite every parameter, including the zero-initialised ones, so no branch is trivially zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.parameters():
            param.copy_(torch.randn(param.shape, generator=generator) * 0.3)


def tie_dit_embedders(model: torch.nn.Module) -> None:
    """Copy block 0's timestep/class embedders into every block, as the official DiT conversion does."""
    shared = model.transformer_blocks[0].norm1.emb.state_dict()
    for block in model.transformer_blocks[1:]:
        block.norm1.emb.load_state_dict(shared)


def latte_reference_class():
    """diffusers' LatteTransformer3DModel, or skip: it arrived in diffusers 0.30 (ColossalAI pins 0.29.0)."""
    cls = getattr(diffusers, "LatteTransformer3DModel", None)
    if cls is None:
        pytest.skip(f"diffusers {diffusers.__version__} has no LatteTransformer3DModel (added in 0.30)")
    return cls


@pytest.fixture
def latte_reference(tmp_path):
    """(diffusers model, its saved transformer/ folder)."""
    model = latte_reference_class()(**TINY_LATTE).eval()
    randomize(model, seed=0)
    folder = tmp_path / "transformer"
    model.save_pretrained(folder, safe_serialization=True)
    return model, folder


def build_dit(seed: int, tie: bool = True, **config) -> torch.nn.Module:
    """A tiny random diffusers DiT; ``tie`` shares the block embedders as the published checkpoints do."""
    model = diffusers.DiTTransformer2DModel(**{**TINY_DIT, **config}).eval()
    randomize(model, seed)
    if tie:
        tie_dit_embedders(model)
    return model


@pytest.fixture
def make_dit():
    """``build_dit`` as a fixture (tests run with --import-mode=importlib and cannot import conftest)."""
    return build_dit


@pytest.fixture
def dit_reference(tmp_path):
    model = build_dit(seed=1)
    folder = tmp_path / "transformer"
    model.save_pretrained(folder, safe_serialization=True)
    return model, folder


def tiny_tokenizer():
    """A T5-style word-level tokenizer (pad 0, eos 1) built in memory: no hub download, no sentencepiece."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = "a an cat dog runs walks on the beach at sunset in snow red blue".split()
    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(words)}}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer.post_processor = processors.TemplateProcessing(single="$A </s>", special_tokens=[("</s>", 1)])
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", eos_token="</s>", unk_token="<unk>")


def tiny_t5(vocab_size: int, width: int):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    config = T5Config(vocab_size=vocab_size, d_model=width, d_ff=2 * width, d_kv=8, num_layers=1, num_heads=2)
    return T5EncoderModel(config).eval()


@pytest.fixture
def t5_folder(tmp_path):
    """A tiny random T5 encoder and its tokenizer saved side by side, as ``DeepFloyd/t5-v1_1-xxl`` ships them."""
    tokenizer = tiny_tokenizer()
    folder = tmp_path / "t5"
    tiny_t5(len(tokenizer), 16).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_mt5(vocab_size: int, width: int, encoder_only: bool = True):
    """A tiny random mT5: the encoder alone, or the whole encoder-decoder as ``google/mt5-xxl`` is published."""
    from transformers import MT5Config, MT5EncoderModel, MT5ForConditionalGeneration

    torch.manual_seed(1)
    config = MT5Config(vocab_size=vocab_size, d_model=width, d_ff=2 * width, d_kv=8, num_layers=1, num_heads=2)
    return (MT5EncoderModel if encoder_only else MT5ForConditionalGeneration)(config).eval()


@pytest.fixture
def mt5_folder(tmp_path):
    """A tiny random mT5 encoder-decoder and its tokenizer saved side by side, as ``google/mt5-xxl`` ships them."""
    tokenizer = tiny_tokenizer()
    folder = tmp_path / "mt5"
    tiny_mt5(len(tokenizer), 16, encoder_only=False).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_vae():
    torch.manual_seed(0)
    return diffusers.AutoencoderKL(
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        block_out_channels=(8, 16),
        norm_num_groups=4,
        layers_per_block=1,
        latent_channels=4,
        sample_size=16,
    ).eval()


def tiny_temporal_vae():
    torch.manual_seed(0)
    return diffusers.AutoencoderKLTemporalDecoder(
        down_block_types=("DownEncoderBlock2D",) * 2, block_out_channels=(32, 32), latent_channels=4, sample_size=16
    ).eval()


def ddim_scheduler(**extra):
    """DDIM with Latte-1's and DiT's training schedule (1000 linear betas 1e-4..0.02)."""
    config = {"num_train_timesteps": 1000, "beta_start": 0.0001, "beta_end": 0.02, "beta_schedule": "linear"}
    return diffusers.DDIMScheduler.from_config({**config, "clip_sample": False, **extra})


@pytest.fixture
def latte_folder(tmp_path):
    """A complete tiny Latte-1 folder saved by diffusers' LattePipeline, plus a temporal-decoder VAE."""
    transformer = latte_reference_class()(**TINY_LATTE).eval()
    randomize(transformer, seed=4)
    tokenizer = tiny_tokenizer()
    pipe = diffusers.LattePipeline(
        tokenizer=tokenizer,
        text_encoder=tiny_t5(len(tokenizer), TINY_LATTE["caption_channels"]),
        vae=tiny_vae(),
        transformer=transformer,
        scheduler=ddim_scheduler(),
    )
    root = tmp_path / "latte"
    pipe.save_pretrained(root, safe_serialization=True)
    tiny_temporal_vae().save_pretrained(root / "vae_temporal_decoder", safe_serialization=True)
    return root


def save_dit_folder(root, **config):
    """A complete tiny DiT folder saved by diffusers' DiTPipeline, with a (made-up, tiny) id2label table."""
    pipe = diffusers.DiTPipeline(transformer=build_dit(seed=5, **config), vae=tiny_vae(), scheduler=ddim_scheduler())
    pipe.save_pretrained(root, safe_serialization=True)
    index = json.loads((root / "model_index.json").read_text())
    index["id2label"] = {"0": "tench, Tinca tinca", "7": "cock"}  # the published folder carries 1000 of these
    (root / "model_index.json").write_text(json.dumps(index))
    return root


@pytest.fixture
def dit_folder(tmp_path):
    return save_dit_folder(tmp_path / "dit")


@pytest.fixture
def dit_256_folder(tmp_path):
    """A tiny DiT with DiT-XL/2-256's latent size (32), so the registry accepts it as dit-xl-2-256."""
    return save_dit_folder(tmp_path / "dit256", sample_size=32)


OPENSORA_FIXTURES = Path(__file__).parent / "fixtures" / "opensora"


OPENSORA_DEPTH = 5
"""Block pairs of the tiny Open-Sora folder: Open-Sora's PAB defaults reuse the MLPs of blocks 0-4."""


def deepen(folder: Path, depth: int, blocks: str, depth_key: str, weights_file: str) -> None:
    """Grow the official-layout backbone in ``folder`` to ``depth`` blocks of each kind the regex alternation
    ``blocks`` names (``spatial_blocks|temporal_blocks``), block ``i`` a copy of block ``i % depth0``, and set
    ``config[depth_key]`` (published PAB defaults name blocks a tiny fixture lacks)."""
    import re

    from safetensors.torch import load_file, save_file

    config = json.loads((folder / "config.json").read_text())
    weights = load_file(folder / weights_file)
    pattern = re.compile(rf"^({blocks})\.(\d+)\.(.*)$")
    for key, value in list(weights.items()):
        match = pattern.match(key)
        if match:
            kind, index, rest = match.group(1), int(match.group(2)), match.group(3)
            for new in range(config[depth_key] + index, depth, config[depth_key]):
                weights[f"{kind}.{new}.{rest}"] = value.clone()
    save_file(weights, folder / weights_file, metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps({**config, depth_key: depth}))


@pytest.fixture
def opensora_folder(tmp_path):
    """A complete tiny Open-Sora 1.2 folder: the golden STDiT3 (grown to :data:`OPENSORA_DEPTH` block pairs) and
    VAE fixture folders in their official layouts, and a tiny T5 as wide as STDiT3's caption channels."""
    import shutil

    root = tmp_path / "opensora"
    shutil.copytree(OPENSORA_FIXTURES / "stdit3", root / "transformer", ignore=shutil.ignore_patterns("*.md"))
    deepen(root / "transformer", OPENSORA_DEPTH, "spatial_blocks|temporal_blocks", "depth", "model.safetensors")
    shutil.copytree(
        OPENSORA_FIXTURES / "vae", root / "vae", ignore=shutil.ignore_patterns("*.md", "io.safetensors")
    )
    caption_channels = json.loads((root / "transformer" / "config.json").read_text())["caption_channels"]
    tokenizer = tiny_tokenizer()
    tiny_t5(len(tokenizer), caption_channels).save_pretrained(root / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(root / "tokenizer")
    return root


OPENSORA_PLAN_FIXTURES = Path(__file__).parent / "fixtures" / "opensora_plan"


def save_opensora_plan_folder(root: Path, release: str, variant: str) -> Path:
    """A complete tiny Open-Sora-Plan folder in the release's layout: the golden backbone fixture as the
    ``variant`` transformer folder, the golden CausalVAE fixture as ``vae/``, a tiny T5 (v1.1) or mT5 (v1.2) as
    wide as the backbone's caption channels in ``text_encoder/`` with its tokenizer in ``tokenizer/``."""
    import shutil

    shutil.copytree(OPENSORA_PLAN_FIXTURES / release / "transformer", root / variant)
    shutil.copytree(
        OPENSORA_PLAN_FIXTURES / f"causal_vae_{release}", root / "vae", ignore=shutil.ignore_patterns("io.*")
    )
    width = json.loads((root / variant / "config.json").read_text())["caption_channels"]
    tokenizer = tiny_tokenizer()
    encoder = tiny_t5(len(tokenizer), width) if release == "v1.1" else tiny_mt5(len(tokenizer), width)
    encoder.save_pretrained(root / "text_encoder", safe_serialization=True)
    tokenizer.save_pretrained(root / "tokenizer")
    return root


OPENSORA_PLAN_V11_DEPTH = 7
"""Layers of the CLI's tiny v1.1 folder: Open-Sora-Plan v1.1's PAB defaults reuse the MLPs of blocks 0-6."""


@pytest.fixture(scope="session")
def make_opensora_plan_folder():
    """:func:`save_opensora_plan_folder`, for module-scoped fixtures (tests cannot import conftest)."""
    return save_opensora_plan_folder


@pytest.fixture
def osp11_folder(tmp_path):
    """Tiny Open-Sora-Plan v1.1 folder; its transformer sits in the release's ``65x512x512/``."""
    return save_opensora_plan_folder(tmp_path / "osp11", "v1.1", "65x512x512")


@pytest.fixture
def osp11_cli_folder(tmp_path):
    """Tiny Open-Sora-Plan v1.1 folder whose transformer (grown to :data:`OPENSORA_PLAN_V11_DEPTH` layers) sits in
    ``9x64x64/``, the folder ``--frames 9 --resolution 64`` names."""
    root = save_opensora_plan_folder(tmp_path / "osp11", "v1.1", "9x64x64")
    blocks = "transformer_blocks|temporal_transformer_blocks"
    deepen(root / "9x64x64", OPENSORA_PLAN_V11_DEPTH, blocks, "num_layers", "diffusion_pytorch_model.safetensors")
    return root


@pytest.fixture
def osp12_folder(tmp_path):
    """Tiny Open-Sora-Plan v1.2 folder; its transformer sits in the release's ``29x480p/``."""
    return save_opensora_plan_folder(tmp_path / "osp12", "v1.2", "29x480p")
