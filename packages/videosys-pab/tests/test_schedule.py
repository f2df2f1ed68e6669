"""Golden schedules: which (step, branch) pairs compute and which reuse, written out by hand from the rule.

Rule (PAB paper, original VideoSys): an attention kind reuses at step ``i`` when ``i % interval != 0``
and ``low < t_i < high``; MLP reuse computes at each listed step position and reuses on the next
``steps`` steps. The lists below were derived by hand from those rules and the two schedules.
"""

from collections import Counter

import pytest
import torch
from pab_tiny import ddim_50, linear_30, record_inner_calls, sample, substitute, tiny_model

from videosys.pab import Broadcast, MLPReuse, PABConfig, pab, stats

# Latte-1 defaults on the 50-step DDIM-like schedule t_i = 980 - 20 i.
# Window (100, 800): t_i < 800 <=> i >= 10; t_i > 100 <=> i <= 43, so steps 10..43 are inside.
# MLP positions: t = 720, 640, 560, 480, 400 are steps 13, 17, 21, 25, 29; each reuses 2 steps after.
LATTE = PABConfig(
    spatial=Broadcast(2, window=(100, 800)),
    temporal=Broadcast(3, window=(100, 800)),
    cross=Broadcast(6, window=(100, 800)),
    mlp=MLPReuse(layers=[0], at=[13, 17, 21, 25, 29], steps=2),
)
LATTE_REUSED = {
    "spatial": [11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31, 33, 35, 37, 39, 41, 43],
    "temporal": [10, 11, 13, 14, 16, 17, 19, 20, 22, 23, 25, 26, 28, 29, 31, 32, 34, 35, 37, 38, 40, 41, 43],
    "cross": [10, 11, 13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 25, 26, 27, 28, 29, 31, 32, 33, 34, 35, 37, 38, 39, 40,
              41, 43],
    "mlp": [14, 15, 18, 19, 22, 23, 26, 27, 30, 31],
}  # fmt: skip
LATTE_MLP_LAYERS = {"spatial": [0], "temporal": [0]}

# Open-Sora 1.2 defaults on 30 evenly spaced timesteps t_i = 1000 - 100 i / 3.
# Window (450, 930): t_i < 930 <=> i >= 3; t_i > 450 <=> i <= 16, so steps 3..16 are inside.
# MLP positions as fractions: 0.2 * 30 = step 6, 0.5 * 30 = step 15; each reuses 2 steps after.
OPEN_SORA = PABConfig(
    spatial=Broadcast(2, window=(450, 930)),
    temporal=Broadcast(4, window=(450, 930)),
    cross=Broadcast(6, window=(450, 930)),
    mlp=MLPReuse(layers={"spatial": [0, 1], "temporal": [1]}, at=[0.2, 0.5], steps=2, unit="fraction"),
)
OPEN_SORA_REUSED = {
    "spatial": [3, 5, 7, 9, 11, 13, 15],
    "temporal": [3, 5, 6, 7, 9, 10, 11, 13, 14, 15],
    "cross": [3, 4, 5, 7, 8, 9, 10, 11, 13, 14, 15, 16],
    "mlp": [7, 8, 16, 17],
}
OPEN_SORA_MLP_LAYERS = {"spatial": [0, 1], "temporal": [1]}

# The same pyramid as fractions of the loop: [0.25, 0.75) of 30 steps is steps 8..22 (7.5 <= i < 22.5).
FRACTIONS = PABConfig(
    spatial=Broadcast(2, window=(0.25, 0.75), unit="fraction"),
    temporal=Broadcast(4, window=(0.25, 0.75), unit="fraction"),
    cross=Broadcast(6, window=(0.25, 0.75), unit="fraction"),
)
FRACTIONS_REUSED = {
    "spatial": [9, 11, 13, 15, 17, 19, 21],
    "temporal": [9, 10, 11, 13, 14, 15, 17, 18, 19, 21, 22],
    "cross": [8, 9, 10, 11, 13, 14, 15, 16, 17, 19, 20, 21, 22],
    "mlp": [],
}

CASES = {
    "latte-50": (LATTE, ddim_50, LATTE_REUSED, LATTE_MLP_LAYERS),
    "open-sora-30": (OPEN_SORA, linear_30, OPEN_SORA_REUSED, OPEN_SORA_MLP_LAYERS),
    "fractions-30": (FRACTIONS, linear_30, FRACTIONS_REUSED, {}),
}


def layout(model):
    """{(block, name): (kind, block axis, per-axis layer)} for the tiny model, which alternates spatial, temporal."""
    table = {}
    for b in range(len(model.blocks)):
        axis, layer = ("spatial" if b % 2 == 0 else "temporal"), b // 2
        table.update(
            {(b, "attn"): (axis, axis, layer), (b, "cross"): ("cross", axis, layer), (b, "mlp"): ("mlp", axis, layer)}
        )
    return table


def branches(model):
    return {(b, name): getattr(model.blocks[b], name) for b, name in layout(model)}


def reuse_rule(model, reused, mlp_layers):
    """The hand-written schedule as a predicate on (branch key, step)."""
    table = layout(model)

    def is_reused(key, step):
        kind, axis, layer = table[key]
        if kind == "mlp":
            return layer in mlp_layers.get(axis, []) and step in reused["mlp"]
        return step in reused[kind]

    return is_reused


@pytest.mark.parametrize("guidance,calls_per_step", [("batched", 1), ("separate", 2)])
@pytest.mark.parametrize("case", list(CASES))
def test_golden_schedule(case, guidance, calls_per_step):
    config, schedule, reused, mlp_layers = CASES[case]
    timesteps = schedule()
    model = tiny_model()
    calls = record_inner_calls(branches(model))
    with pab(model, config):
        out = sample(model, timesteps, guidance=guidance)
        counts = stats(model)

    is_reused = reuse_rule(model, reused, mlp_layers)
    expected_calls = Counter()
    expected_counts = {k: {"computed": 0, "reused": 0} for k in ("spatial", "temporal", "cross", "mlp")}
    for step in range(len(timesteps)):
        for key, (kind, _, _) in layout(model).items():
            hit = is_reused(key, step)
            expected_counts[kind]["reused" if hit else "computed"] += calls_per_step
            if not hit:
                expected_calls[(step, key)] = calls_per_step
    assert calls == expected_calls
    assert counts == expected_counts

    reference_model = tiny_model()
    substitute(branches(reference_model), is_reused)
    assert torch.equal(out, sample(reference_model, timesteps, guidance=guidance))
