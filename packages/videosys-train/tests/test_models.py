"""Backbones built from videosys.models families by named size or explicit sizes, sized by the data."""

import pytest

from videosys.models import DiTTransformer, LatteTransformer
from videosys.train.config import ModelConfig
from videosys.train.models import DataShape, build_model

SHAPE = DataShape(latent_channels=4, sample_size=8, num_frames=4, out_factor=2, caption_dim=32, num_classes=5)


@pytest.mark.parametrize(("size", "layers", "width", "heads"), [("S/2", 12, 384, 6), ("B/2", 12, 768, 12)])
def test_dit_named_sizes_are_the_dit_papers(size, layers, width, heads):
    model = build_model(ModelConfig(name="dit", size=size), SHAPE)
    assert isinstance(model, DiTTransformer)
    assert (len(model.blocks), model.dim, model.blocks[0].attn.inner.num_heads) == (layers, width, heads)
    assert (model.in_channels, model.out_channels, model.sample_size) == (4, 8, 8)
    assert model.y_embedder.num_classes == 5


def test_explicit_sizes_without_a_named_size_and_kwargs_over_a_named_one():
    explicit = build_model(
        ModelConfig(name="latte", size=None, kwargs={"num_layers": 1, "num_heads": 2, "head_dim": 8}), SHAPE
    )
    assert isinstance(explicit, LatteTransformer) and explicit.dim == 16 and len(explicit.blocks) == 2
    assert explicit.caption_projection.linear_1.in_features == 32
    tweaked = build_model(ModelConfig(name="latte", size="tiny", kwargs={"num_layers": 1}), SHAPE)
    assert len(tweaked.blocks) == 2 and tweaked.dim == 64
