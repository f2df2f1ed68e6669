import pytest
import torch
from torch import nn

from videosys.train.ema import EMA


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 2)
        self.frozen = nn.Parameter(torch.ones(2), requires_grad=False)
        self.pos_embed = nn.Parameter(torch.zeros(2))
        self.norm = nn.BatchNorm1d(2)  # has buffers


def test_ema_equals_closed_form_and_skips_frozen_excluded_and_buffers():
    model = Toy()
    decay = 0.9
    ema = EMA(model, decay, exclude=["*pos_embed*"])
    assert set(ema.shadow) == {"linear.weight", "linear.bias", "norm.weight", "norm.bias"}
    history = [model.linear.weight.detach().clone()]
    for k in range(1, 6):
        with torch.no_grad():
            model.linear.weight.copy_(torch.full((2, 2), float(k)) + history[0])
        history.append(model.linear.weight.detach().clone())
        ema.update(model)
    n = len(history) - 1
    expected = decay**n * history[0] + sum((1 - decay) * decay ** (n - k) * history[k] for k in range(1, n + 1))
    torch.testing.assert_close(ema.shadow["linear.weight"], expected)


def test_ema_is_float32_for_a_bf16_model_and_round_trips():
    model = Toy().to(torch.bfloat16)
    ema = EMA(model, 0.5)
    assert all(t.dtype == torch.float32 for t in ema.shadow.values())
    with torch.no_grad():
        model.linear.bias.add_(1)
    ema.update(model)
    restored = EMA(Toy(), 0.5)
    restored.load_state_dict(ema.state_dict())
    torch.testing.assert_close(restored.shadow["linear.bias"], ema.shadow["linear.bias"])
    target = Toy()
    ema.copy_to(target)
    torch.testing.assert_close(target.linear.bias, ema.shadow["linear.bias"])


def test_ema_rejects_bad_decay_and_mismatched_state():
    with pytest.raises(ValueError, match="decay"):
        EMA(Toy(), 1.5)
    with pytest.raises(ValueError, match="tracked"):
        EMA(Toy(), 0.5).load_state_dict({"nope": torch.zeros(1)})
