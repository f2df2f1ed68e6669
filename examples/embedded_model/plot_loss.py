"""Plot a videosys-train run's loss curve (``metrics.jsonl``) to a PNG; needs matplotlib.

    python examples/embedded_model/plot_loss.py outputs/embedded/metrics.jsonl docs/embedded_loss.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("metrics", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--window", type=int, default=25, help="steps in the running mean")
    parser.add_argument("--switch", type=int, help="mark the step where the objective changed")
    args = parser.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # Files logged before the trainer trimmed them on resume can repeat steps: the last record of each step wins.
    by_step = {}
    for line in args.metrics.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            by_step[row["step"]] = row
    rows = [by_step[step] for step in sorted(by_step)]
    steps = [r["step"] for r in rows]
    losses = [r["loss"] for r in rows]
    windows = [losses[max(0, i - args.window + 1) : i + 1] for i in range(len(losses))]
    smooth = [sum(w) / len(w) for w in windows]
    fig, ax = plt.subplots(figsize=(6, 3.2), dpi=110)
    ax.plot(steps, losses, color="0.75", linewidth=0.8, label="loss per step")
    ax.plot(steps, smooth, color="C0", linewidth=1.6, label=f"running mean ({args.window} steps)")
    if args.switch:
        ax.axvline(args.switch, color="C3", linestyle="--", linewidth=1, label=f"epsilon -> v at step {args.switch}")
    ax.set_xlabel("step")
    ax.set_ylabel("DDPM loss (MSE of the prediction)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    handles = ax.get_legend_handles_labels()
    if all("lr" in r for r in rows):  # the schedule beside the loss: where it decays shows in the curve
        lr_axis = ax.twinx()
        lr_axis.plot(steps, [r["lr"] for r in rows], color="C2", linewidth=1, linestyle=":", label="learning rate")
        lr_axis.set_ylabel("learning rate")
        lr_axis.set_ylim(bottom=0)
        handles = [a + b for a, b in zip(handles, lr_axis.get_legend_handles_labels())]
    ax.legend(*handles, fontsize=8, loc="lower left")
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}: {len(rows)} steps, last running mean {smooth[-1]:.4f}")


if __name__ == "__main__":
    main()
