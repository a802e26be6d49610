"""The command line: `python -m gato_min ...`."""

import subprocess
import sys

import pytest

from gato_min.tools.cli import main


def test_tokenize_demo_prints_and_saves_its_figure(tmp_path, capsys):
    assert main(["tokenize", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "continuous [1024, 2048), separator 2048" in out
    assert "17 joint readings + '|' + 6 torques = 24 tokens" in out
    assert "the model's frame 80x80x3 (box filter) -> 5x5 = 25 patches of shape (3, 16, 16)" in out
    assert "timestep = 25 patch tokens + '|' + 1 button = 27 tokens" in out
    png = tmp_path / "tokenize_demo.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_unknown_preset_is_a_clear_error(tmp_path, capsys):
    assert main(["tokenize", "--preset", "huge", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "tokenize: error: unknown preset 'huge'; presets: gato-1.18b" in err


def test_module_entry_point_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "gato_min", "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("tokenize", "train-text-model", "train-expert"):
        assert command in result.stdout


def test_train_processes_option_is_checked_before_any_work(tmp_path, capsys):
    assert main(["train", "--out", str(tmp_path / "run"), "--processes", "0"]) == 2
    assert "--processes must be >= 1, got 0" in capsys.readouterr().err
    assert main(["train", "--out", str(tmp_path / "run"), "--processes", "2", "--device", "cuda"]) == 2
    assert "on GPUs use torchrun" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_train_flags_are_built_from_the_settings_dataclasses(capsys):
    """Every field of DataSettings and TrainSettings is a flag with its help text; a flag set on
    the command line reaches the dataclass, the rest keep their defaults."""
    import argparse
    import dataclasses

    from gato_min.data.training_set import DataSettings
    from gato_min.optim import TrainSettings
    from gato_min.settings import add_arguments, from_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser, DataSettings)
    add_arguments(parser, TrainSettings)
    flags = {action.dest: action for action in parser._actions}
    for cls in (DataSettings, TrainSettings):
        for field in dataclasses.fields(cls):
            assert field.name in flags and field.metadata["help"] in flags[field.name].help, field.name
    args = parser.parse_args(["--tasks", "hopper", "text", "--weights", "3", "1", "--lr", "0.002", "--steps", "7"])
    data, settings = from_arguments(DataSettings, args), from_arguments(TrainSettings, args)
    assert data == DataSettings(tasks=("hopper", "text"), weights=(3.0, 1.0))
    assert settings == TrainSettings(lr=0.002, steps=7)
    assert main(["train", "--out", "unused", "--lr", "nan"]) == 2
    assert "TrainSettings.lr must be a finite number" in capsys.readouterr().err


def test_train_overrides_the_presets_model_shape():
    from gato_min.config import GatoConfig
    from gato_min.tools.cli import build_parser, train_config

    args = build_parser().parse_args(["train", "--out", "x", "--d-model", "64", "--d-ff", "256", "--n-head", "2"])
    assert train_config(args) == GatoConfig.from_preset("cpu-small", d_model=64, d_ff=256, n_head=2)
    args = build_parser().parse_args(["train", "--out", "x", "--preset", "cpu-tiny", "--n-layer", "3"])
    assert train_config(args) == GatoConfig.from_preset("cpu-tiny", n_layer=3)
    args = build_parser().parse_args(["train", "--out", "x", "--untie-head"])
    assert train_config(args) == GatoConfig.from_preset("cpu-small", tie_head=False)
    args = build_parser().parse_args(["train", "--out", "x", "--d-model", "0"])
    with pytest.raises(ValueError, match="GatoConfig.d_model must be a positive int, got 0"):
        train_config(args)
