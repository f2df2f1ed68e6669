"""Caption dropout (the unconditional half of classifier-free guidance) and the learning-rate decay after warm-up."""

from __future__ import annotations

import json
import math

import pytest
import torch

from videosys.train.config import OptimConfig
from videosys.train.text import HashTextEncoder
from videosys.train.trainer import lr_factor

pytest.importorskip("colossalai", reason="ColossalAI is not installed (see the videosys-train README)")

from videosys.train.trainer import Trainer


@pytest.mark.parametrize(
    ("decay", "expected"),
    [  # warm-up 2 of 10 steps, then 8 steps of decay towards 0.1
        ("constant", [0.5, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),
        ("linear", [0.5, 1, 1, 0.8875, 0.775, 0.6625, 0.55, 0.4375, 0.325, 0.2125, 0.1]),
        ("cosine", [0.5, 1, 1] + [0.1 + 0.45 * (1 + math.cos(math.pi * k / 8)) for k in range(1, 8)] + [0.1]),
    ],
)
def test_lr_factor_warms_up_then_decays_to_the_floor(decay, expected):
    optim = OptimConfig(warmup_steps=2, decay=decay, min_lr_ratio=0.1)
    got = [lr_factor(step, optim, total_steps=10) for step in range(11)]
    assert got == pytest.approx(expected)


@pytest.mark.parametrize("decay", ["linear", "cosine"])
def test_decay_start_holds_the_rate_then_decays_over_the_remaining_steps(decay):
    """Warm-up 2, stable until step 6, then the same decay as a run whose warm-up ended at 6."""
    held = OptimConfig(warmup_steps=2, decay=decay, decay_start=6, min_lr_ratio=0.2)
    fresh = OptimConfig(warmup_steps=0, decay=decay, min_lr_ratio=0.2)
    got = [lr_factor(step, held, total_steps=14) for step in range(15)]
    assert got[:7] == pytest.approx([0.5, 1, 1, 1, 1, 1, 1])
    assert got[6:] == pytest.approx([lr_factor(k, fresh, total_steps=8) for k in range(9)])
    assert got[-1] == pytest.approx(0.2)


def test_the_trainer_steps_with_the_decayed_lr(tiny, tmp_path):
    config = tiny(tmp_path, "train.steps=6", "optim.lr=0.01", "optim.decay=linear", "optim.min_lr_ratio=0")
    Trainer(config).fit()
    logged = [json.loads(line)["lr"] for line in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert logged == pytest.approx([0.005, 0.01, 0.01, 0.0075, 0.005, 0.0025])


def test_caption_dropout_swaps_captions_for_the_empty_one_by_each_samples_seed(tiny, tmp_path):
    trainer = Trainer(tiny(tmp_path, "model.caption_dropout=0.5"))
    try:
        caption = "a large red circle moving left"
        batch = {"video": torch.zeros(64, 3, 4, 8, 8), "caption": [caption] * 64, "seed": torch.arange(64)}
        _, (text, mask) = trainer._inputs(batch)
        _, (again, _) = trainer._inputs(batch)
    finally:
        trainer.close()
    encoder = HashTextEncoder(**trainer.config.text_encoder.kwargs)
    (full, empty), (full_mask, empty_mask) = encoder.encode([caption, ""])
    dropped = [torch.equal(row, empty) for row in text]
    assert all(d or torch.equal(row, full) for d, row in zip(dropped, text))
    assert all(torch.equal(m, empty_mask if d else full_mask) for d, m in zip(dropped, mask))
    assert 16 < sum(dropped) < 48  # about half of 64
    assert torch.equal(text, again)  # the same seeds drop the same samples
