import subprocess
import sys
from pathlib import Path

import pytest

from videosys.train.cli import TINY_CONFIG
from videosys.train.config import ConfigError, load_config, validate
from videosys.train.plugins import PLUGINS


def test_tiny_config_loads_with_overrides():
    config = load_config(TINY_CONFIG, ["train.steps=7", "optim.lr=0.5", "ema.exclude=[a, b]", "parallel.sp_size=2"])
    assert config.train.steps == 7 and config.optim.lr == 0.5 and config.ema.exclude == ["a", "b"]
    assert config.parallel.sp_size == 2 and config.data.synthetic.num_videos == 32
    assert config.objective.kind == "ddpm"


def test_unknown_key_and_malformed_override_name_the_problem():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['stepz'\] in train; valid keys: .*steps"):
        load_config(TINY_CONFIG, ["train.stepz=3"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(TINY_CONFIG, ["train.steps"])


def test_unknown_plugin_lists_plugins_and_cpu_ones(make_config):
    with pytest.raises(ConfigError) as err:
        validate(make_config("parallel.plugin=zero9"), world_size=1, device="cpu")
    message = str(err.value)
    assert "'zero9'" in message and all(name in message for name in PLUGINS)
    assert "on CPU: ['torch_ddp', 'hybrid']" in message


@pytest.mark.parametrize("plugin", ["low_level_zero", "gemini", "torch_fsdp"])
def test_gpu_only_plugin_on_cpu_says_which_run_on_cpu(make_config, plugin):
    with pytest.raises(ConfigError, match=r"does not run on CPU; on CPU use one of \['torch_ddp', 'hybrid'\]"):
        validate(make_config(f"parallel.plugin={plugin}"), world_size=1, device="cpu")
    validate(make_config(f"parallel.plugin={plugin}", "ema.enabled=false"), world_size=1, device="cuda")


def test_sp_size_must_divide_world_size(make_config):
    with pytest.raises(ConfigError, match=r"sp_size=3 does not divide the world size 4.*\[1, 2, 4\]"):
        validate(make_config("parallel.sp_size=3"), world_size=4, device="cpu")


def test_missing_data_path(make_config, tmp_path):
    missing = tmp_path / "nowhere" / "data.csv"
    with pytest.raises(ConfigError, match=f"data path {missing} does not exist"):
        validate(make_config(f"data.csv={missing}", "data.synthetic=null"), world_size=1, device="cpu")


def test_held_out_combinations_are_checked_before_training(make_config):
    with pytest.raises(ConfigError, match="data.synthetic.held_out: unknown shape 'hexagon'; expected one of square"):
        validate(make_config("data.synthetic.held_out=[red hexagon left]"), world_size=1, device="cpu")
    with pytest.raises(ConfigError, match="is 'colour shape direction', got 'red circle'"):
        validate(make_config("data.synthetic.held_out=[red circle]"), world_size=1, device="cpu")
    validate(make_config("data.synthetic.held_out=[red circle left]"), world_size=1, device="cpu")


def test_ema_with_gemini_is_refused(make_config):
    with pytest.raises(ConfigError, match="ema.enabled with plugin 'gemini'"):
        validate(make_config("parallel.plugin=gemini"), world_size=1, device="cuda")


def test_fp16_on_cpu_is_refused(make_config):
    with pytest.raises(ConfigError, match=r"fp16.*not available on cpu"):
        validate(make_config("train.precision=fp16"), world_size=1, device="cpu")


def test_cli_fails_before_training_starts(tmp_path):
    out = tmp_path / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "videosys.train.cli",
            str(TINY_CONFIG),
            "-o",
            f"output_dir={out}",
            f"data.csv={tmp_path / 'none.csv'}",
            "data.synthetic=null",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2
    assert "config error: data path" in result.stderr
    assert not out.exists()  # nothing was written: no training, no checkpoint


def test_paths_in_a_file_are_relative_to_it_and_overrides_to_the_cwd(tmp_path, monkeypatch):
    (tmp_path / "cfg").mkdir()
    (tmp_path / "cfg" / "c.yaml").write_text("output_dir: runs/a\ndata: {csv: data/d.csv}\n")
    config = load_config(tmp_path / "cfg" / "c.yaml")
    assert config.output_dir == str(tmp_path / "cfg" / "runs" / "a")
    assert config.data.csv == str(tmp_path / "cfg" / "data" / "d.csv")
    monkeypatch.chdir(tmp_path)
    assert load_config(tmp_path / "cfg" / "c.yaml", ["data.csv=mine.csv"]).data.csv == "mine.csv"


def test_yaml_numbers_without_a_dot_are_read_as_floats():
    assert load_config(None, ["optim.lr=1e-4"]).optim.lr == 1e-4
    with pytest.raises(ConfigError, match="optim.lr='fast' is not a number"):
        load_config(None, ["optim.lr=fast"])


def test_unknown_model_family_and_size_name_what_exists(make_config):
    with pytest.raises(ConfigError, match=r"model.name='sora' is not a trainable model family; expected one of "):
        validate(make_config("model.name=sora"), world_size=1, device="cpu")
    with pytest.raises(
        ConfigError, match=r"model.size='XXL/9' is not a size of latte; expected one of \['XL/2', 'tiny'\]"
    ):
        validate(make_config("model.size=XXL/9"), world_size=1, device="cpu")


def test_a_class_conditional_model_needs_an_image_folder(make_config):
    with pytest.raises(ConfigError, match="model 'dit' is class-conditional: give data.image_folder"):
        validate(make_config("model.name=dit"), world_size=1, device="cpu")


def test_preprocessed_latents_for_a_class_conditional_model_need_their_class_names(make_config, tmp_path):
    latents = tmp_path / "latents.csv"
    latents.write_text("latent,caption\n")
    config = make_config("model.name=dit", f"data.csv={latents}", "data.precomputed=true", "data.synthetic=null")
    with pytest.raises(ConfigError, match=f"{latents} has no classes.json beside it"):
        validate(config, world_size=1, device="cpu")


def test_the_packaged_dit_xl2_config_is_the_seeds_imagenet_run_and_validates_on_gpu(tmp_path):
    """REFERENCES: DiT-XL/2, ImageNet 256, lr 1e-4, EMA 0.9999, ZeRO-2 bf16 with max_norm 1.0, DDPM learned sigma."""
    from videosys.train.cli import CONFIGS

    (tmp_path / "images" / "n01440764").mkdir(parents=True)
    (tmp_path / "vae").mkdir()
    overrides = [f"data.image_folder={tmp_path / 'images'}", f"vae.path={tmp_path / 'vae'}"]
    config = load_config(Path(str(CONFIGS / "dit_xl2_imagenet256.yaml")), overrides)
    assert (config.model.name, config.model.size, config.data.size) == ("dit", "XL/2", 256)
    assert (config.optim.lr, config.ema.decay, config.optim.grad_clip) == (1e-4, 0.9999, 1.0)
    assert (config.parallel.plugin, config.train.precision) == ("low_level_zero", "bf16")
    assert (config.objective.kind, config.objective.learn_sigma, config.objective.num_timesteps) == ("ddpm", True, 1000)
    assert config.train.batch_size * 8 == 256  # the DiT paper's global batch on 8 GPUs
    validate(config, world_size=8, device="cuda")
    with pytest.raises(ConfigError, match="vae.path=None is not a folder"):
        validate(load_config(Path(str(CONFIGS / "dit_xl2_imagenet256.yaml")), overrides[:1]), 8, "cuda")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.caption_dropout=1.0", r"model.caption_dropout=1.0 must lie in \[0, 1\)"),
        ("optim.decay=step", r"optim.decay='step'; expected one of constant, linear, cosine"),
        ("optim.min_lr_ratio=2", r"optim.min_lr_ratio=2.0 must lie in \[0, 1\]"),
        ("optim.decay_start=100000", r"optim.decay_start=100000 must lie in \[optim.warmup_steps, train.steps\)"),
    ],
)
def test_caption_dropout_and_lr_decay_are_checked(make_config, override, message):
    with pytest.raises(ConfigError, match=message):
        validate(make_config(override), world_size=1, device="cpu")
