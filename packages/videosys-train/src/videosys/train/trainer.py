"""The training loop on a ColossalAI Booster: data, objective, EMA, logging and checkpoints."""

from __future__ import annotations

import contextlib
import datetime
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DataLoader

from videosys.core import leave_process_group

from .checkpoint import (
    RUNNING_STATES,
    checkpoint_name,
    load_rng_state,
    prune_checkpoints,
    resolve_resume,
    rng_state,
    write_atomically,
    write_json,
)
from .config import ConfigError, OptimConfig, TrainConfig, validate
from .data import (
    ImageFolderDataset,
    LatentDataset,
    ResumableBatchSampler,
    VideoCaptionDataset,
    make_shapes_dataset,
    stream_seed,
)
from .ema import EMA
from .encoders import build_text_encoder, build_vae
from .mesh import ParallelMesh
from .models import DataShape, build_model, family_of
from .objectives import DDPMObjective, GaussianDiffusion, Objective, RectifiedFlowObjective
from .plugins import PLUGINS, make_plugin, quiet_colossalai

__all__ = ["Trainer", "TrainResult", "build_objective", "init_distributed", "lr_factor"]


@dataclass
class TrainResult:
    losses: list[float] = field(default_factory=list)
    """The global mean loss of each step this run took (all ranks agree)."""
    global_step: int = 0
    checkpoint: Path | None = None
    """The last checkpoint written."""


def init_distributed() -> bool:
    """Join the process group torchrun describes, or start a one-rank group; True if this call created it."""
    if dist.is_initialized():
        return False
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    else:  # an in-process store: a one-rank group needs no rendezvous, and a TCP port could be taken or collide
        dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
    return True


def build_objective(config: TrainConfig) -> Objective:
    o = config.objective
    if o.kind == "ddpm":
        return DDPMObjective(GaussianDiffusion.linear(o.num_timesteps), o.prediction, o.learn_sigma)
    return RectifiedFlowObjective(o.num_timesteps, o.sample_method, o.shift, o.learn_sigma)


def _collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    batch: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        batch[key] = torch.stack(values) if isinstance(values[0], torch.Tensor) else values
    batch["seed"] = torch.tensor(batch["seed"], dtype=torch.int64)
    return batch


def _adamw(model: torch.nn.Module, config: TrainConfig, hybrid: bool) -> torch.optim.Optimizer:
    """AdamW; ColossalAI's HybridAdam (its fused CUDA/CPU kernels, which Gemini requires) for the ZeRO plugins."""
    params = [p for p in model.parameters() if p.requires_grad]
    o = config.optim
    if hybrid:
        from colossalai.nn.optimizer import HybridAdam

        return HybridAdam(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)
    return torch.optim.AdamW(params, lr=o.lr, betas=tuple(o.betas), eps=o.eps, weight_decay=o.weight_decay)


def lr_factor(step: int, optim: OptimConfig, total_steps: int) -> float:
    """The multiple of ``optim.lr`` that optimizer step ``step`` (from 0) uses: linear warm-up, then ``optim.decay``.

    Decay runs from ``optim.decay_start`` (default: the end of warm-up) to ``total_steps``, where it reaches
    ``optim.min_lr_ratio``.
    """
    if step < optim.warmup_steps:
        return (step + 1) / optim.warmup_steps
    start = optim.warmup_steps if optim.decay_start is None else optim.decay_start
    if optim.decay == "constant" or step < start:
        return 1.0
    span = max(1, total_steps - start)
    progress = min(1.0, (step - start) / span)
    shape = 1.0 - progress if optim.decay == "linear" else 0.5 * (1.0 + math.cos(math.pi * progress))
    return optim.min_lr_ratio + (1.0 - optim.min_lr_ratio) * shape


def drop_records_after(metrics: Path, step: int) -> None:
    """Keep only ``metrics.jsonl``'s records up to ``step``: a run resumed from an earlier checkpoint logs the
    steps after it again, and one record per step keeps the loss curve plottable. Rewritten atomically."""
    if not metrics.is_file():
        return
    lines = metrics.read_text().splitlines(keepends=True)
    kept = [line for line in lines if line.strip() and json.loads(line)["step"] <= step]
    if len(kept) == len(lines):
        return
    partial = metrics.with_suffix(".jsonl.partial")
    partial.write_text("".join(kept))
    os.replace(partial, metrics)


class Trainer:
    """Train ``config`` on the current process group (or a one-rank one): ``Trainer(config).fit(resume)``."""

    def __init__(self, config: TrainConfig) -> None:
        from .plugins import import_colossalai

        self.config = config
        self.owns_group = init_distributed()
        self.device = torch.device(f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
        try:
            validate(config, dist.get_world_size(), self.device.type)
            import_colossalai()
        except BaseException:
            self.close()
            raise
        self.mesh = ParallelMesh.build(config.parallel.sp_size)
        self.is_main = self.mesh.rank == 0
        torch.manual_seed(config.seed)
        self.vae = build_vae(config.vae, str(self.device))
        self.text_encoder = build_text_encoder(config.text_encoder, str(self.device))
        self.objective = build_objective(config)
        self._build_data()
        self._build_model()

    # --- setup -------------------------------------------------------------------------------
    def _build_data(self) -> None:
        data = self.config.data
        if self.is_main and data.csv and data.synthetic is not None and not Path(data.csv).is_file():
            s = data.synthetic
            make_shapes_dataset(
                Path(data.csv).parent,
                s.num_videos,
                s.frames,
                s.size,
                seed=self.config.seed,
                held_out=s.held_out,
                jitter=s.jitter,
            )
        dist.barrier()
        if data.image_folder is not None:
            self.dataset = ImageFolderDataset(data.image_folder, data.size, data.flip)
        elif data.precomputed:
            self.dataset = LatentDataset(data.csv)
        else:
            self.dataset = VideoCaptionDataset(data.csv, data.num_frames, data.frame_interval, data.size)
        self.classes: list[str] | None = getattr(self.dataset, "classes", None)
        """Class names in label order (class-conditional data), saved with every checkpoint for export."""
        try:
            self.sampler = ResumableBatchSampler(
                len(self.dataset), self.config.train.batch_size, self.config.seed, self.mesh.dp_rank, self.mesh.dp_size
            )
        except ValueError as err:  # too little data for the batch: every rank sees the same dataset, so all stop
            raise ConfigError(f"data: {err}") from err

    def _build_model(self) -> None:
        from colossalai.booster import Booster

        c = self.config
        self.family = family_of(c.model)
        shape = DataShape(
            latent_channels=self.vae.latent_channels,
            sample_size=c.data.size // self.vae.spatial_factor,
            num_frames=c.data.num_frames,
            out_factor=self.objective.out_channels_factor,
            caption_dim=self.text_encoder.dim,
            num_classes=len(self.classes) if self.classes else None,
        )
        model = build_model(c.model, shape)
        model.gradient_checkpointing = c.train.gradient_checkpointing
        if self.mesh.sp_size > 1:
            from videosys.dsp import parallelize

            parallelize(model, group=self.mesh.sp_group)
        self.tokens_per_sample = 0
        model.blocks[0].register_forward_pre_hook(self._count_tokens)
        self.ema = EMA(model, c.ema.decay, c.ema.exclude) if c.ema.enabled else None
        spec = PLUGINS[c.parallel.plugin]
        optimizer = _adamw(model, c, hybrid=spec.zero)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, c.optim, c.train.steps))
        self.plugin_clips = spec.owns_precision
        plugin = make_plugin(
            c.parallel.plugin, c.train.precision, self.device.type, c.optim.grad_clip, **c.parallel.plugin_kwargs
        )
        # Plugins that own precision got it above; for DDP/FSDP bf16 is autocast (ColossalAI's "bf16" Booster
        # precision is an empty stub) and fp16 is the Booster's autocast + grad scaler.
        self.autocast_bf16 = c.train.precision == "bf16" and not spec.owns_precision
        booster_fp16 = c.train.precision == "fp16" and not spec.owns_precision
        self.booster = Booster(plugin=plugin, mixed_precision="fp16" if booster_fp16 else None)
        with quiet_colossalai():
            self.model, self.optimizer, _, _, self.scheduler = self.booster.boost(
                model, optimizer, lr_scheduler=scheduler
            )

    def _count_tokens(self, _module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        _, t, s, _ = args[0].shape
        self.tokens_per_sample = t * s * self.mesh.sp_size

    @property
    def unwrapped(self) -> torch.nn.Module:
        return self.model.unwrap()

    # --- one step ----------------------------------------------------------------------------
    def _inputs(self, batch: dict[str, Any]) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """The clean latents and the model's conditioning arguments: ``(text, mask)`` or ``(labels,)``.

        Class-conditional models get ``(B, C, H, W)`` latents (images, T == 1) and their labels, each
        replaced by the null class with probability ``model.class_dropout``; text-conditioned ones get
        the caption, replaced by the empty caption with probability ``model.caption_dropout``. Both
        draws come from the sample's seed, so a resumed run drops the same samples.
        """
        x0 = batch["latents"] if "latents" in batch else self.vae.encode(batch["video"].to(self.device))
        x0 = x0.to(self.device)
        if self.family.conditioning == "class":
            drop = self._dropped(batch["seed"], self.config.model.class_dropout)
            labels = torch.where(drop, self.unwrapped.null_class, batch["label"])
            return x0[:, :, 0], (labels.to(self.device),)
        if "text" in batch:
            text, mask = batch["text"], batch["text_mask"]
        else:
            text, mask = self.text_encoder.encode(batch["caption"])
        if self.config.model.caption_dropout > 0:
            drop = self._dropped(batch["seed"], self.config.model.caption_dropout)
            empty_text, empty_mask = self.text_encoder.encode([""])
            text = torch.where(drop[:, None, None], empty_text.to(text.dtype), text)
            mask = torch.where(drop[:, None], empty_mask, mask)
        return x0, (text.to(self.device), mask.to(self.device))

    @staticmethod
    def _dropped(seeds: torch.Tensor, share: float) -> torch.Tensor:
        """Which samples lose their condition: a uniform draw from each sample's own stream below ``share``."""
        streams = [torch.Generator().manual_seed(stream_seed(seed, 1)) for seed in seeds.tolist()]
        return torch.tensor([torch.rand((), generator=g).item() for g in streams]) < share

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_bf16:
            return torch.autocast(self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def forward_backward(self, batch: dict[str, Any]) -> torch.Tensor:
        """This rank's loss on ``batch``, with its gradients averaged over all ranks (DDP)."""
        x0, cond = self._inputs(batch)
        with self._autocast():
            terms = self.objective(lambda xt, t: self.model(xt, t, *cond), x0, batch["seed"])
            loss = terms.loss.mean()
        self.booster.backward(loss, self.optimizer)
        return loss.detach()

    def optimizer_step(self) -> None:
        """Clip, step, advance the LR schedule and the EMA."""
        if self.config.optim.grad_clip and not self.plugin_clips:
            self.optimizer.clip_grad_by_norm(self.config.optim.grad_clip)
        self.optimizer.step()
        self.optimizer.zero_grad()
        self.scheduler.step()
        if self.ema is not None:
            self.ema.update(self.unwrapped)

    def train_step(self, batch: dict[str, Any]) -> float:
        """One optimizer step; returns the loss averaged over all ranks.

        Sequence-parallel ranks compute the same loss from the gathered output; DSP's collectives make
        the average of their gradients the full gradient, so one DDP average over every rank is right.
        """
        loss = self.forward_backward(batch).float().clone()
        self.optimizer_step()
        dist.all_reduce(loss)
        return loss.item() / dist.get_world_size()

    # --- checkpoints -------------------------------------------------------------------------
    def save(self, epoch: int, step_in_epoch: int, global_step: int) -> Path:
        """Write model, optimizer, scheduler, EMA, data position and every rank's RNG state atomically."""
        sharded = PLUGINS[self.config.parallel.plugin].sharded_checkpoint
        rank = self.mesh.rank

        def write(folder: Path) -> None:
            if self.is_main:
                (folder / "rng").mkdir()
            dist.barrier()
            self.booster.save_model(self.model, str(folder / "model"), shard=sharded)
            self.booster.save_optimizer(self.optimizer, str(folder / "optimizer"), shard=sharded)
            self.booster.save_lr_scheduler(self.scheduler, str(folder / "lr_scheduler"))
            torch.save(rng_state(), folder / "rng" / f"rank{rank}.pt")
            if self.is_main and self.ema is not None:
                torch.save(self.ema.state_dict(), folder / "ema.pt")
            dist.barrier()
            if self.is_main:  # last: its presence marks a complete folder
                states = {
                    "epoch": epoch,
                    "step_in_epoch": step_in_epoch,
                    "global_step": global_step,
                    "world_size": self.mesh.world_size,
                    "sp_size": self.mesh.sp_size,
                    "config": self.config.to_dict(),
                    "classes": self.classes,
                }
                write_json(folder / RUNNING_STATES, states)

        path = write_atomically(self.config.checkpoint_dir, checkpoint_name(epoch, global_step), write, self.is_main)
        if self.is_main:
            prune_checkpoints(self.config.checkpoint_dir, self.config.checkpoint.keep)
        dist.barrier()
        return path

    def load(self, path: Path) -> tuple[int, int, int]:
        """Restore everything :meth:`save` wrote; returns ``(epoch, step_in_epoch, global_step)``."""
        states = json.loads((path / RUNNING_STATES).read_text())
        if states["world_size"] // states["sp_size"] != self.mesh.dp_size:
            raise ValueError(
                f"{path} was written with {states['world_size'] // states['sp_size']} data-parallel ranks, this run "
                f"has {self.mesh.dp_size}: the data order would differ, so the run would not continue exactly"
            )
        self.booster.load_model(self.model, str(path / "model"))
        self.booster.load_optimizer(self.optimizer, str(path / "optimizer"))
        self.booster.load_lr_scheduler(self.scheduler, str(path / "lr_scheduler"))
        if self.ema is not None:
            self.ema.load_state_dict(torch.load(path / "ema.pt", map_location="cpu", weights_only=True))
        rng_file = path / "rng" / f"rank{self.mesh.rank}.pt"
        if rng_file.is_file():
            load_rng_state(torch.load(rng_file, weights_only=False))
        return states["epoch"], states["step_in_epoch"], states["global_step"]

    # --- the loop ----------------------------------------------------------------------------
    def batches(self, epoch: int, step: int) -> Iterator[tuple[int, int, dict[str, Any]]]:
        """``(epoch, step_in_epoch after this batch, batch)`` forever, from the given position."""
        while True:
            self.sampler.set_position(epoch, step)
            loader = DataLoader(
                self.dataset, batch_sampler=self.sampler, num_workers=self.config.data.num_workers, collate_fn=_collate
            )
            for batch in loader:
                step += 1
                yield epoch, step, batch
            epoch, step = epoch + 1, 0

    def fit(self, resume: str | os.PathLike | None = None) -> TrainResult:
        """Train to ``train.steps``; ``resume="latest"`` (or a checkpoint folder) continues a previous run."""
        try:
            return self._fit(resume)
        finally:
            self.close()

    def _fit(self, resume: str | os.PathLike | None) -> TrainResult:
        c = self.config
        epoch, step_in_epoch, global_step = 0, 0, 0
        result = TrainResult()
        path = resolve_resume(c.checkpoint_dir, resume)
        if path is not None:
            epoch, step_in_epoch, global_step = self.load(path)
        if step_in_epoch == self.sampler.steps_per_epoch:
            epoch, step_in_epoch = epoch + 1, 0
        if self.is_main:
            Path(c.output_dir).mkdir(parents=True, exist_ok=True)
            drop_records_after(Path(c.output_dir) / "metrics.jsonl", global_step)
        writer = self._tensorboard(purge_step=global_step + 1 if path is not None else None)
        bar = _progress(c.train.steps, global_step, self.is_main)
        samples_per_step = c.train.batch_size * self.mesh.dp_size
        batches = self.batches(epoch, step_in_epoch)
        self.model.train()
        try:
            while global_step < c.train.steps:
                start = time.perf_counter()
                epoch, step_in_epoch, batch = next(batches)
                lr = self.scheduler.get_last_lr()[0]
                loss = self.train_step(batch)
                global_step += 1
                result.losses.append(loss)
                elapsed = time.perf_counter() - start
                throughput = {
                    "samples/s": samples_per_step / elapsed,
                    "tokens/s": samples_per_step * self.tokens_per_sample / elapsed,
                }
                if not math.isfinite(loss):
                    raise FloatingPointError(f"loss is {loss} at step {global_step}")
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{loss:.4f}", **{k: f"{v:.1f}" for k, v in throughput.items()})
                if self.is_main:
                    self._log(writer, {"step": global_step, "loss": loss, "lr": lr, **throughput})
                if global_step % c.checkpoint.every == 0 or global_step == c.train.steps:
                    result.checkpoint = self.save(epoch, step_in_epoch, global_step)
        finally:  # the events reach TensorBoard's file also when a step fails
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        result.global_step = global_step
        return result

    def _log(self, writer: Any, record: dict[str, float]) -> None:
        """Append the step's record to ``metrics.jsonl``; every ``log_every`` steps also to TensorBoard."""
        with (Path(self.config.output_dir) / "metrics.jsonl").open("a") as f:
            f.write(json.dumps(record) + "\n")
        if writer is not None and record["step"] % self.config.train.log_every == 0:
            for name, value in record.items():
                if name != "step":
                    writer.add_scalar(name, value, record["step"])

    def _tensorboard(self, purge_step: int | None) -> Any:
        """The rank-0 writer; ``purge_step`` hides the events a resumed run is about to log again."""
        if not self.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        return SummaryWriter(str(Path(self.config.output_dir) / "tensorboard"), purge_step=purge_step)

    def close(self) -> None:
        """Leave the process group if this trainer created it."""
        if self.owns_group:
            leave_process_group()
            self.owns_group = False


def _progress(total: int, initial: int, enabled: bool) -> Any:
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc="train", unit="step", dynamic_ncols=True)
