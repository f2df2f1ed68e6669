"""GPU-only plugins and precisions: each trains and resumes on the straight trajectory (``nox -s gpu``)."""

import pytest
import torch

pytestmark = pytest.mark.gpu


@pytest.fixture(autouse=True)
def _needs_cuda():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA GPU")
    pytest.importorskip("colossalai")


@pytest.mark.parametrize(
    ("plugin", "precision"),
    [
        ("torch_ddp", "bf16"),
        ("torch_ddp", "fp16"),
        ("low_level_zero", "bf16"),
        ("gemini", "bf16"),
        ("torch_fsdp", "fp32"),
    ],
)
def test_gpu_plugin_trains_and_resumes(tiny, tmp_path, plugin, precision):
    from videosys.train.trainer import Trainer

    overrides = (f"parallel.plugin={plugin}", f"train.precision={precision}", f"ema.enabled={plugin != 'gemini'}")
    straight = Trainer(tiny(tmp_path / "a", *overrides)).fit()
    assert all(torch.isfinite(torch.tensor(straight.losses)))
    Trainer(tiny(tmp_path / "b", *overrides, "train.steps=2")).fit()
    rest = Trainer(tiny(tmp_path / "b", *overrides)).fit("latest")
    torch.testing.assert_close(rest.losses, straight.losses[2:], rtol=1e-3, atol=1e-4)
