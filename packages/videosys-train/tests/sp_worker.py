"""Run under torchrun by test_parallel.py: one forward/backward of the first batch, each rank's gradients saved.

torchrun --nproc-per-node 2 sp_worker.py CONFIG.yaml OUT_PREFIX [KEY=VALUE ...]
"""

import sys

import torch
import torch.distributed as dist

from videosys.train.config import load_config
from videosys.train.trainer import Trainer

if __name__ == "__main__":
    config_path, out_prefix, *overrides = sys.argv[1:]
    torch.set_num_threads(1)
    trainer = Trainer(load_config(config_path, overrides))
    _, _, batch = next(trainer.batches(0, 0))
    loss = trainer.forward_backward(batch)
    grads = {name: p.grad.detach().clone() for name, p in trainer.unwrapped.named_parameters() if p.grad is not None}
    torch.save({"loss": loss, "grads": grads}, f"{out_prefix}{dist.get_rank()}.pt")
    trainer.close()
