"""Training configuration: dataclasses read from YAML, ``key=value`` overrides, checks before training.

Every check that can fail without touching a model runs in :func:`validate`, so a bad config stops
in seconds with a message naming the bad value and what would work, not after the first step.
"""

from __future__ import annotations

import dataclasses
import os
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "CheckpointConfig",
    "ConfigError",
    "DataConfig",
    "EMAConfig",
    "LR_DECAYS",
    "ModelConfig",
    "ObjectiveConfig",
    "OptimConfig",
    "ParallelConfig",
    "RunConfig",
    "TrainConfig",
    "apply_override",
    "config_from_dict",
    "load_config",
    "validate",
]


LR_DECAYS = ("constant", "linear", "cosine")
"""The learning-rate schedules after warm-up (``optim.decay``)."""


class ConfigError(ValueError):
    """A training config that cannot run, found before training starts."""


@dataclass
class ModelConfig:
    name: str = "latte"
    """A model family of :mod:`videosys.models` (``latte``, ``dit``) or ``"package.module:factory"``, a function
    called with ``kwargs`` that returns an STBackbone taking ``(x_t, t, text, text_mask)``."""
    size: str | None = "tiny"
    """A named config of the family (e.g. ``XL/2``, ``tiny``); ``kwargs`` override its sizes (or give them all)."""
    kwargs: dict[str, Any] = field(default_factory=dict)
    class_dropout: float = 0.1
    """Class-conditional models: the share of labels replaced by the null class, so guidance works (DiT: 0.1)."""
    caption_dropout: float = 0.0
    """Text-conditioned models: the share of captions replaced by the empty caption (the text encoder's
    encoding of ``""``), so the model also learns the unconditional prediction classifier-free guidance needs."""


@dataclass
class EncoderConfig:
    kind: str = "identity"
    """VAE: ``identity`` (train in pixel space) or ``diffusers`` (an AutoencoderKL folder at ``path``).
    Text: ``hash`` (the tiny bag-of-words encoder) or ``t5`` (a transformers folder at ``path``)."""
    path: str | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class SyntheticConfig:
    num_videos: int = 32
    frames: int = 16
    size: int = 32
    held_out: list[str] = field(default_factory=list)
    """``"colour shape direction"`` combinations no clip shows (e.g. ``"green triangle up"``)."""
    jitter: int | None = None
    """None: each path starts anywhere it stays in the frame; an integer: the path is centred in the frame,
    shifted by up to that many pixels along each axis (a smaller world, learnt in fewer steps)."""


@dataclass
class DataConfig:
    csv: str | None = None
    """``path,caption`` rows (videos or images), or the ``latent`` rows ``videosys-train-preprocess`` writes."""
    image_folder: str | None = None
    """``root/<class>/*.png|jpg``: class-labelled images for a class-conditional model (DiT), instead of ``csv``."""
    flip: bool = True
    """Image folders: mirror each image with probability 1/2, drawn from the sample's seed (DiT's augmentation)."""
    precomputed: bool = False
    num_frames: int = 16
    frame_interval: int = 3
    size: int = 256
    num_workers: int = 0
    synthetic: SyntheticConfig | None = None
    """Generate the shapes data set at ``csv`` when that file does not exist yet."""


@dataclass
class ObjectiveConfig:
    kind: str = "ddpm"
    """``ddpm`` (DiT, Latte, Open-Sora-Plan) or ``rflow`` (Open-Sora)."""
    prediction: str = "epsilon"
    learn_sigma: bool = True
    num_timesteps: int = 1000
    sample_method: str = "logit-normal"
    shift: float = 1.0


@dataclass
class OptimConfig:
    lr: float = 1e-4
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    warmup_steps: int = 0
    decay: str = "constant"
    """The learning rate after warm-up: ``constant``, or ``linear`` / ``cosine`` down to ``lr * min_lr_ratio`` at
    ``train.steps`` (so resuming with a larger ``train.steps`` stretches the rest of the schedule)."""
    decay_start: int | None = None
    """The step where the decay begins; the rate holds at ``lr`` from the end of warm-up until then
    (warmup-stable-decay). ``None``: right after warm-up. A run trained at a constant rate can so be resumed
    into its decay, and its config still describes the whole schedule."""
    min_lr_ratio: float = 0.0
    grad_clip: float | None = 1.0


@dataclass
class RunConfig:
    steps: int = 1000
    batch_size: int = 1
    """Per data-parallel rank."""
    precision: str = "fp32"
    """``fp32``, ``bf16`` or ``fp16`` (GPU); on CPU ``bf16`` runs the forward under autocast."""
    gradient_checkpointing: bool = False
    log_every: int = 10


@dataclass
class ParallelConfig:
    plugin: str = "torch_ddp"
    sp_size: int = 1
    plugin_kwargs: dict[str, Any] = field(default_factory=dict)


@dataclass
class EMAConfig:
    enabled: bool = True
    decay: float = 0.9999
    exclude: list[str] = field(default_factory=lambda: ["*pos_embed*"])


@dataclass
class CheckpointConfig:
    every: int = 500
    keep: int = 3
    dir: str | None = None
    """Defaults to ``<output_dir>/checkpoints``."""


@dataclass
class TrainConfig:
    output_dir: str = "outputs/train"
    seed: int = 0
    model: ModelConfig = field(default_factory=ModelConfig)
    vae: EncoderConfig = field(default_factory=EncoderConfig)
    text_encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(kind="hash"))
    data: DataConfig = field(default_factory=DataConfig)
    objective: ObjectiveConfig = field(default_factory=ObjectiveConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: RunConfig = field(default_factory=RunConfig)
    parallel: ParallelConfig = field(default_factory=ParallelConfig)
    ema: EMAConfig = field(default_factory=EMAConfig)
    checkpoint: CheckpointConfig = field(default_factory=CheckpointConfig)

    @property
    def checkpoint_dir(self) -> Path:
        return Path(self.checkpoint.dir or Path(self.output_dir) / "checkpoints")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls: type, values: Any, where: str) -> Any:
    """Instantiate dataclass ``cls`` from a mapping, recursing into nested dataclasses, rejecting unknown keys."""
    if values is None:
        return None
    if not isinstance(values, dict):
        raise ConfigError(f"{where or 'the config'} must be a mapping, got {values!r}")
    fields = typing.get_type_hints(cls)
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"unknown key(s) {unknown} in {where or 'the config'}; valid keys: {sorted(fields)}")
    kwargs = {}
    for name, value in values.items():
        nested = _dataclass_of(fields[name])
        key = f"{where}.{name}".strip(".")
        kwargs[name] = _build(nested, value, key) if nested else _coerce(fields[name], value, key)
    return cls(**kwargs)


_KINDS = {
    bool: "true or false",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
}


def _coerce(annotation: Any, value: Any, key: str) -> Any:
    """Check a value against its field's type; numbers YAML reads as strings (``1e-4``) become floats.

    ``-o train.steps=ten`` fails here, naming the key, the value and the type expected.
    """
    is_union = typing.get_origin(annotation) in (typing.Union, types.UnionType)
    expected = [typing.get_origin(a) or a for a in (typing.get_args(annotation) if is_union else (annotation,))]
    if value is None:
        if type(None) in expected:
            return None
        raise ConfigError(f"{key} must be set, got null")
    if float in expected and not isinstance(value, bool):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{key}={value!r} is not a number") from None
    if tuple in expected and isinstance(value, list):
        return tuple(value)
    if any(t is Any or (isinstance(value, t) and not (t is int and isinstance(value, bool))) for t in expected):
        return value
    wanted = " or ".join(_KINDS.get(t, getattr(t, "__name__", str(t))) for t in expected if t is not type(None))
    raise ConfigError(f"{key}={value!r} is not {wanted}")


def _dataclass_of(annotation: Any) -> type | None:
    """The dataclass in a field's type (``X`` or ``X | None``), or None for plain values."""
    candidates = typing.get_args(annotation) or (annotation,)
    return next((c for c in candidates if dataclasses.is_dataclass(c)), None)


def apply_override(raw: dict[str, Any], override: str) -> None:
    """Set ``a.b.c=value`` in the raw mapping; ``value`` is parsed as YAML (numbers, booleans, lists)."""
    if "=" not in override:
        raise ConfigError(f"override {override!r} is not key=value (e.g. train.steps=10)")
    key, value = override.split("=", 1)
    parts = key.strip().split(".")
    node = raw
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"override {override!r}: {part!r} is a value, not a section")
        node = child
    import yaml

    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError as err:
        raise ConfigError(f"override {override!r}: the value is not valid YAML ({_yaml_problem(err)})") from None


def _yaml_problem(err: Exception) -> str:
    """A YAML parser error in one line: what went wrong and where (the parser's own text spans several lines)."""
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
    return f"{getattr(err, 'problem', None) or err}{where}"


def _resolve_paths(raw: dict[str, Any], base: Path) -> None:
    """Make the file's relative paths relative to the file's folder (overrides stay relative to the cwd)."""
    for section, key in (
        (None, "output_dir"),
        ("data", "csv"),
        ("data", "image_folder"),
        ("vae", "path"),
        ("checkpoint", "dir"),
    ):
        node = raw if section is None else raw.get(section)
        if isinstance(node, dict) and isinstance(node.get(key), str) and not os.path.isabs(node[key]):
            node[key] = str(base / node[key])


def load_config(path: str | os.PathLike | None = None, overrides: list[str] = ()) -> TrainConfig:
    """Read a YAML config (or start from the defaults), apply ``key=value`` overrides, build the dataclasses.

    Relative paths in the file are taken relative to the file's folder; those in overrides, relative to
    the working directory.
    """
    import yaml

    raw: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"no config file at {path}")
        try:
            raw = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path} is not valid YAML: {_yaml_problem(err)}") from None
        if not isinstance(raw, dict):
            raise ConfigError(f"{path} must hold a mapping of config sections, got {type(raw).__name__}")
        _resolve_paths(raw, path.parent)
    for override in overrides:
        apply_override(raw, override)
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> TrainConfig:
    """A :class:`TrainConfig` from a mapping (a YAML file's, or the one a checkpoint records), checked key by key."""
    return _build(TrainConfig, raw, "")


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def validate(config: TrainConfig, world_size: int, device: str) -> None:
    """Raise :class:`ConfigError` for anything that would fail later; ``device`` is ``"cpu"`` or ``"cuda"``."""
    from .plugins import check_plugin

    check_plugin(config.parallel.plugin, device)
    sp = config.parallel.sp_size
    _check(sp >= 1, f"parallel.sp_size must be >= 1, got {sp}")
    _check(
        world_size % sp == 0,
        f"parallel.sp_size={sp} does not divide the world size {world_size}; launch a multiple of {sp} processes "
        f"or pick an sp_size among {[d for d in range(1, world_size + 1) if world_size % d == 0]}",
    )
    precisions = ("fp32", "bf16") if device == "cpu" else ("fp32", "bf16", "fp16")
    _check(
        config.train.precision in precisions,
        f"train.precision={config.train.precision!r} is not available on {device}; expected one of {precisions}",
    )
    _check(
        device != "cpu" or config.train.precision == "fp32" or config.parallel.plugin == "torch_ddp",
        f"train.precision={config.train.precision!r} with plugin {config.parallel.plugin!r} on CPU: CPU runs bf16 "
        "only as autocast with the torch_ddp plugin; use parallel.plugin=torch_ddp or train.precision=fp32",
    )
    _check(
        config.objective.kind in ("ddpm", "rflow"),
        f"objective.kind={config.objective.kind!r}; expected 'ddpm' or 'rflow'",
    )
    _check(config.train.steps >= 1, f"train.steps must be >= 1, got {config.train.steps}")
    _check(
        config.optim.decay in LR_DECAYS,
        f"optim.decay={config.optim.decay!r}; expected one of {', '.join(LR_DECAYS)}",
    )
    _check(
        config.optim.decay_start is None or config.optim.warmup_steps <= config.optim.decay_start < config.train.steps,
        f"optim.decay_start={config.optim.decay_start} must lie in [optim.warmup_steps, train.steps) = "
        f"[{config.optim.warmup_steps}, {config.train.steps})",
    )
    _check(
        0.0 <= config.optim.min_lr_ratio <= 1.0,
        f"optim.min_lr_ratio={config.optim.min_lr_ratio} must lie in [0, 1] (a fraction of optim.lr)",
    )
    _check(config.train.batch_size >= 1, f"train.batch_size must be >= 1, got {config.train.batch_size}")
    _check(config.checkpoint.every >= 1, f"checkpoint.every must be >= 1, got {config.checkpoint.every}")
    _check(
        config.vae.kind in ("identity", "diffusers"),
        f"vae.kind={config.vae.kind!r}; expected 'identity' or 'diffusers'",
    )
    _check(
        config.text_encoder.kind in ("hash", "t5"),
        f"text_encoder.kind={config.text_encoder.kind!r}; expected 'hash' or 't5'",
    )
    _check(
        config.vae.kind != "diffusers" or (config.vae.path is not None and Path(config.vae.path).is_dir()),
        f"vae.path={config.vae.path!r} is not a folder; vae.kind='diffusers' needs a local AutoencoderKL folder "
        "(config.json + weights), e.g. sd-vae-ft-ema",
    )
    _check_data(config.data)
    from .models import check_model

    check_model(config.model, config.data)
    _check(
        not (config.ema.enabled and config.parallel.plugin == "gemini"),
        "ema.enabled with plugin 'gemini': Gemini (ZeRO-3) shards the parameters, so no rank holds whole weights "
        "to average; use plugin low_level_zero (ZeRO-2) or set ema.enabled=false",
    )
    if sp > 1:
        try:
            from videosys.dsp import parallelize  # noqa: F401
        except ImportError as err:
            raise ConfigError(
                f"parallel.sp_size={sp} needs videosys-dsp's parallelize(): pip install videosys-dsp ({err})"
            ) from err


def _check_data(data: DataConfig) -> None:
    _check(
        (data.csv is None) != (data.image_folder is None),
        "set exactly one of data.csv (a path,caption CSV, or preprocessed latents) and data.image_folder "
        f"(root/<class>/*.png); got csv={data.csv!r}, image_folder={data.image_folder!r}",
    )
    if data.image_folder is not None:
        _check(
            Path(data.image_folder).is_dir(),
            f"data.image_folder={data.image_folder!r} is not a folder; expected root/<class>/*.png|jpg",
        )
        _check(data.num_frames == 1, f"data.num_frames={data.num_frames}: an image folder gives 1 frame per sample")
        return
    if data.synthetic is not None:
        from .data.synthetic import parse_combination

        jitter = data.synthetic.jitter
        _check(jitter is None or jitter >= 0, f"data.synthetic.jitter must be >= 0 pixels (or null), got {jitter}")

        for combination in data.synthetic.held_out:
            try:
                parse_combination(combination)
            except ValueError as err:
                raise ConfigError(f"data.synthetic.held_out: {err}") from None
    if not Path(data.csv).is_file():
        _check(
            data.synthetic is not None and not data.precomputed,
            f"data path {data.csv} does not exist; point data.csv at a path,caption CSV "
            "(or add a data.synthetic section to generate the shapes data set there)",
        )
