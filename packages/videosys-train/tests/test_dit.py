"""Class-conditional DiT through the trainer: an ImageFolder it writes itself, a small random VAE, export, load."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from videosys.train.cli import CONFIGS
from videosys.train.config import load_config

pytest.importorskip("colossalai", reason="ColossalAI is not installed (see the videosys-train README)")
diffusers = pytest.importorskip("diffusers")

from videosys.train.trainer import Trainer  # noqa: E402

CLASSES = {"blue": (40, 60, 230), "green": (40, 200, 60), "red": (230, 40, 40)}


def _write_images(root: Path, per_class: int = 6, size: int = 16) -> Path:
    """``root/<colour>/k.png``: a coloured square at a random place on a grey, noisy background."""
    import imageio.v3 as iio

    rng = np.random.default_rng(0)
    for name, colour in CLASSES.items():
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            image = rng.integers(100, 140, (size, size, 3), dtype=np.uint8)
            y, x = rng.integers(0, size // 2, 2)
            image[y : y + size // 2, x : x + size // 2] = colour
            iio.imwrite(root / name / f"{k}.png", image)
    return root


@pytest.fixture(scope="module")
def assets(tmp_path_factory, tiny_vae):
    root = tmp_path_factory.mktemp("dit-assets")
    tiny_vae(diffusers).save_pretrained(root / "vae")
    return _write_images(root / "images"), root / "vae"


@pytest.fixture(scope="module")
def dit(assets):
    """``dit(root, *overrides)``: the packaged tiny DiT config on the generated images, 16 px (8x8 latents)."""
    images, vae = assets

    def config(root: Path, *overrides: str):
        base = [
            f"output_dir={root / 'out'}",
            f"data.image_folder={images}",
            f"vae.path={vae}",
            "data.size=16",
            "train.batch_size=4",
            "train.steps=4",
            "optim.warmup_steps=2",
            "checkpoint.every=2",
            "checkpoint.keep=5",
        ]
        return load_config(Path(str(CONFIGS / "dit_tiny.yaml")), [*base, *overrides])

    return config


def _run(config, resume=None):
    trainer = Trainer(config)
    result = trainer.fit(resume)
    return result, trainer


@pytest.fixture(scope="module")
def straight(dit, tmp_path_factory):
    return _run(dit(tmp_path_factory.mktemp("straight")))


def test_dit_tiny_config_learns_the_image_folder(dit, tmp_path):
    from videosys.models import DiTTransformer

    result, trainer = _run(dit(tmp_path, "train.steps=40", "checkpoint.every=40"))
    assert isinstance(trainer.unwrapped, DiTTransformer) and trainer.unwrapped.y_embedder.num_classes == 3
    first, last = sum(result.losses[:8]) / 8, sum(result.losses[-8:]) / 8
    assert last < 0.8 * first, result.losses


def test_dit_resume_continues_the_identical_trajectory(dit, tmp_path, straight):
    result, trainer = straight
    weights = {k: v.clone() for k, v in trainer.unwrapped.state_dict().items()}
    half, _ = _run(dit(tmp_path, "train.steps=2"))
    assert half.losses == result.losses[:2]
    rest, resumed = _run(dit(tmp_path), resume="latest")
    assert rest.losses == result.losses[2:]
    for key, value in resumed.unwrapped.state_dict().items():
        torch.testing.assert_close(value, weights[key], rtol=0, atol=0, msg=key)
    assert resumed.ema.state_dict().keys() == trainer.ema.state_dict().keys()
    for key, value in resumed.ema.state_dict().items():
        torch.testing.assert_close(value, trainer.ema.state_dict()[key], rtol=0, atol=0, msg=key)


def test_precomputed_latents_train_like_the_image_folder_without_flips(dit, tmp_path, straight):
    """Preprocessing encodes unflipped images; with data.flip=false the on-the-fly run reads the same latents."""
    import yaml

    from videosys.train.preprocess import main as preprocess

    config = dit(tmp_path / "a", "data.flip=false")
    config_file = tmp_path / "c.yaml"
    config_file.write_text(yaml.safe_dump(config.to_dict()))
    assert preprocess([str(config_file), "--out", str(tmp_path / "latents")]) == 0
    assert json.loads((tmp_path / "latents" / "classes.json").read_text()) == sorted(CLASSES)
    on_the_fly, _ = _run(config)
    latents = (f"data.csv={tmp_path / 'latents' / 'data.csv'}", "data.precomputed=true", "data.image_folder=null")
    precomputed, trainer = _run(dit(tmp_path / "b", *latents))
    assert trainer.classes == sorted(CLASSES)
    torch.testing.assert_close(precomputed.losses, on_the_fly.losses, rtol=1e-6, atol=0)
    assert on_the_fly.losses != straight[0].losses  # flips change the inputs: the comparison above is not vacuous


def test_export_loads_with_videosys_models_and_matches_diffusers(straight, tmp_path):
    """The exported folder: videosys.models' DiT pipeline and diffusers' DiTTransformer2DModel read the EMA weights."""
    import videosys.models
    from videosys.train.export import main as export

    result, trainer = straight
    assert export([str(result.checkpoint.parent), "--out", str(tmp_path / "dit")]) == 0
    ema_model = trainer.unwrapped
    trainer.ema.copy_to(ema_model)
    ema_model.eval()
    pipeline = videosys.models.load("dit", tmp_path / "dit")
    assert pipeline.labels == {name: i for i, name in enumerate(sorted(CLASSES))}

    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 4, 8, 8, generator=generator)
    t = torch.tensor([10.0, 700.0])
    labels = torch.tensor([2, 3])  # a class and the null class
    with torch.no_grad():
        expected = ema_model(x, t, labels)
        ours = pipeline.transformer(x, t, labels)
        reference = diffusers.DiTTransformer2DModel.from_pretrained(tmp_path / "dit" / "transformer")(
            x, timestep=t, class_labels=labels
        ).sample
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)
    torch.testing.assert_close(reference, expected, rtol=1e-5, atol=1e-5)

    image = pipeline("red", num_inference_steps=2, seed=0, progress=False)
    assert image.shape == (1, 16, 16, 3) and image.dtype == np.uint8
    with pytest.raises(ValueError, match="unknown class name 'purple'"):
        pipeline("purple", num_inference_steps=2, progress=False)


def test_export_refuses_a_text_to_video_run(tiny, tmp_path):
    from videosys.train.export import main as export

    result = Trainer(tiny(tmp_path, "train.steps=2")).fit()
    assert export([str(result.checkpoint), "--out", str(tmp_path / "x")]) == 2
    assert not (tmp_path / "x").exists()


def test_class_dropout_swaps_labels_for_the_null_class_by_each_samples_seed(straight, monkeypatch):
    _, trainer = straight
    monkeypatch.setattr(trainer.config.model, "class_dropout", 0.5)
    batch = {
        "latents": torch.zeros(64, 4, 1, 8, 8),
        "label": torch.zeros(64, dtype=torch.long),
        "seed": torch.arange(64),
    }
    x0, (labels,) = trainer._inputs(batch)
    assert x0.shape == (64, 4, 8, 8)
    assert torch.equal(labels, trainer._inputs(batch)[1][0])  # the same seeds drop the same samples
    assert set(labels.tolist()) == {0, trainer.unwrapped.null_class} and 16 < int((labels == 3).sum()) < 48


def test_videosys_generate_samples_the_exported_checkpoint_by_class_name(straight, tmp_path):
    """The user's path end to end: ``videosys-train-export`` then ``videosys generate --model dit --weights``."""
    import imageio.v3 as iio

    from videosys.models.cli import main as videosys
    from videosys.train.export import main as export

    result, _ = straight
    assert export([str(result.checkpoint.parent), "--out", str(tmp_path / "dit")]) == 0
    argv = ["generate", "--model", "dit", "--weights", str(tmp_path / "dit"), "--class", "green", "--steps", "2"]
    assert videosys([*argv, "--out", str(tmp_path / "green.png")]) == 0
    assert iio.imread(tmp_path / "green.png").shape == (16, 16, 3)
    assert videosys([*argv[:-4], "--class", "purple", "--out", str(tmp_path / "no.png")]) != 0
    assert not (tmp_path / "no.png").exists()
