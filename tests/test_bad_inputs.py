"""Bad inputs, one row each: what a user can get wrong and the error that must name it.

Every row builds one bad input (an argument, a run folder, a checkpoint, a dataset file) and
states the exception it must raise and a phrase naming the argument, file or key. Nothing may
be silently wrong, and nothing may end in a bare traceback from deep inside torch, numpy or h5py.
Tests below the table check what a refused input must leave behind (nothing that blocks the
corrected command) and that the accepted forms of the same inputs work.
"""

import json
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from gato_min.agent import GatoAgent
from gato_min.config import GatoConfig
from gato_min.data.collect import collect, dataset_path, load_or_collect
from gato_min.data.episodes import Episode, filter_by_return
from gato_min.data.formats import read_d4rl, read_minari, write_d4rl
from gato_min.data.training_set import DataSettings, task_episodes
from gato_min.evaluate import evaluate_run
from gato_min.model import GatoModel
from gato_min.observations import flatten_observations
from gato_min.optim import TrainSettings
from gato_min.runs import RunFolder, load_model, read_config, read_settings, weights_metadata
from gato_min.sequence import TimestepLayout, TokenizedEpisodes
from gato_min.settings import check_number
from gato_min.tokenize import Tokenizer
from gato_min.tools.cli import main
from gato_min.train import train

CONFIG = GatoConfig.from_preset("cpu-tiny", context_length=96)
DATA = DataSettings(tasks=("halfcheetah",), tier="random", episodes=4, min_return_fraction=0.0, heldout_fraction=0.25)
SETTINGS = TrainSettings(steps=2, batch_size=4, warmup_steps=1, log_every=1, eval_every=2, checkpoint_every=2)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("cache")
    load_or_collect("halfcheetah", "random", 4, 0, cache=root, progress=False)
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory, cache):
    """A finished two-step run; rows copy it before spoiling it."""
    out = tmp_path_factory.mktemp("runs") / "run"
    train(CONFIG, DATA, SETTINGS, out, cache=cache, progress=False, threads=1)
    return out


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "copy"))


def _episodes(count=3, steps=5, obs_dim=3):
    rng = np.random.default_rng(0)
    return [
        Episode(rng.normal(size=(steps, obs_dim)), rng.uniform(-1, 1, (steps, 2)), np.ones(steps), True)
        for _ in range(count)
    ]


def _raw_d4rl(path, **arrays):
    """A hand-made D4RL file: 6 steps, 2 episodes, with `arrays` replacing the good ones."""
    good = dict(
        observations=np.zeros((6, 3), np.float32),
        actions=np.zeros((6, 2), np.float32),
        rewards=np.ones(6, np.float32),
        terminals=np.array([0, 0, 1, 0, 0, 0], bool),
        timeouts=np.array([0, 0, 0, 0, 0, 1], bool),
    )
    with h5py.File(path, "w") as f:
        for key, value in (good | arrays).items():
            f.create_dataset(key, data=value)
    return path


# ------------------------------------------------------------------ the rows
# each: (id, function of (tmp_path, trained run, cache) that must raise, exception, phrase)


def _spoil_json(name, text):
    def row(tmp, run, cache):
        run = _copy(run, tmp)
        (run / name).write_text(text)
        return load_model(run) if name != "metrics.jsonl" else RunFolder(run).rows()

    return row


def _train_with(config=CONFIG, data=DATA, settings=SETTINGS, out=None, prepare=None):
    def row(tmp, run, cache):
        target = out(tmp, run) if out else tmp / "new"
        if prepare:
            prepare(target, run)
        train(config, data, settings, target, cache=cache, progress=False, threads=1)

    return row


def _copy_into(target, run):
    shutil.copytree(run, target)


def _truncate(name):
    def row(tmp, run, cache):
        run = _copy(run, tmp)
        data = (run / name).read_bytes()
        (run / name).write_bytes(data[: len(data) // 2])
        if name == "model.safetensors":
            return load_model(run)
        train(CONFIG, DATA, TrainSettings(**(vars(SETTINGS) | {"steps": 4})), run, cache=cache, progress=False)

    return row


def _weights_of(config, keep_metadata=True):
    """Put weights of a model of `config` in place of the run's (the metadata recorded or dropped)."""

    def row(tmp, run, cache):
        run = _copy(run, tmp)
        tensors = {k: v.contiguous() for k, v in GatoModel(config).state_dict().items()}
        stamp = {"config": config.to_json(), "tasks": json.dumps(["halfcheetah"])} if keep_metadata else None
        save_file(tensors, str(run / "model.safetensors"), metadata=stamp)
        return load_model(run)

    return row


def _checkpoint_of(config):
    """A checkpoint.pt written by a run of `config` in a folder whose config.json says CONFIG."""

    def row(tmp, run, cache):
        run = _copy(run, tmp)
        state = torch.load(run / "checkpoint.pt", weights_only=True)
        state["fingerprint"] = {"config": config.to_json(), "tasks": json.dumps(["halfcheetah"])}
        torch.save(state, run / "checkpoint.pt")
        train(CONFIG, DATA, TrainSettings(**(vars(SETTINGS) | {"steps": 4})), run, cache=cache, progress=False)

    return row


def _agent(run, **kwargs):
    return GatoAgent(load_model(run), "halfcheetah", **kwargs)


def _evaluate(**kwargs):
    return lambda tmp, run, cache: evaluate_run(
        run, **(dict(episodes=2, num_envs=1, gif_steps=0, cache=cache, progress=False, out=tmp / "ev") | kwargs)
    )


def _cli(*argv):
    def row(tmp, run, cache):
        code = main([str(a).replace("{tmp}", str(tmp)).replace("{run}", str(run)) for a in argv])
        raise SystemExit(code)

    return row


def _d4rl_written(spoil):
    """A file written by write_d4rl, then spoiled by `spoil(path)`, then read."""

    def row(tmp, run, cache):
        path = write_d4rl(tmp / "data.hdf5", _episodes(count=4, steps=50, obs_dim=16))
        spoil(path)
        return read_d4rl(path)

    return row


def _flip_bytes(path):
    """Flip 200 bytes in the middle of the observations' stored bytes (not the file's header)."""
    with h5py.File(path, "r") as f:
        offset = f["observations"].id.get_offset()
    data = bytearray(path.read_bytes())
    for i in range(offset + 100, offset + 300):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


def _set_attr(key, value):
    def spoil(path):
        with h5py.File(path, "a") as f:
            f.attrs[key] = value

    return spoil


def _nan_observation(path):
    with h5py.File(path, "a") as f:
        observations = f["observations"][()]
        observations[120, 3] = np.nan
        f["observations"][...] = observations
        del f.attrs["sha256"]  # as a file from elsewhere would come: no checksum to catch it first


def _minari(spoil):
    def row(tmp, run, cache):
        data = tmp / "ds" / "data"
        data.mkdir(parents=True)
        with h5py.File(data / "main_data.hdf5", "w") as f:
            g = f.create_group("episode_0")
            g.create_dataset("observations", data=np.zeros((4, 3)))
            g.create_dataset("actions", data=np.zeros((3, 2)))
            g.create_dataset("rewards", data=np.ones(3))
            g.create_dataset("terminations", data=np.array([0, 0, 1], bool))
            g.create_dataset("truncations", data=np.zeros(3, bool))
            spoil(data, f)
        return read_minari(tmp / "ds")

    return row


def _tokenized(observations):
    """Tokenize one three-step episode with these observations."""
    return lambda tmp, run, cache: TokenizedEpisodes(
        [Episode(observations, np.zeros((3, 2)), np.ones(3), True)], Tokenizer(CONFIG)
    )


ROWS = [
    # --- starting a run
    (
        "train-unknown-task",
        _train_with(data=DataSettings(tasks=("nosuchtask",))),
        KeyError,
        "unknown task 'nosuchtask'",
    ),
    (
        "train-lr-nan",
        lambda t, r, c: TrainSettings(lr=float("nan")),
        ValueError,
        "TrainSettings.lr must be a finite number",
    ),
    ("train-lr-zero", lambda t, r, c: TrainSettings(lr=0.0), ValueError, "lr > 0"),
    (
        "train-batch-zero",
        lambda t, r, c: TrainSettings(batch_size=0),
        ValueError,
        "TrainSettings.batch_size must be a positive int",
    ),
    ("train-warmup-negative", lambda t, r, c: TrainSettings(warmup_steps=-1), ValueError, "warmup_steps >= 0"),
    (
        "train-smoothing-negative",
        lambda t, r, c: TrainSettings(bin_smoothing=-1.0),
        ValueError,
        "bin_smoothing must be >= 0",
    ),
    (
        "data-episodes-zero",
        lambda t, r, c: DataSettings(episodes=0),
        ValueError,
        "DataSettings.episodes must be an int >= 1",
    ),
    (
        "data-episodes-per-task",
        lambda t, r, c: DataSettings(tasks=("hopper", "pong", "text"), episodes=(500, 40)),
        ValueError,
        "DataSettings.episodes has 2 entries for 3 tasks",
    ),
    ("data-heldout-one", lambda t, r, c: DataSettings(heldout_fraction=1.0), ValueError, "heldout_fraction in (0, 1)"),
    (
        "data-window-negative",
        lambda t, r, c: DataSettings(window_timesteps=-1),
        ValueError,
        "DataSettings.window_timesteps must be an int >= 0",
    ),
    (
        "data-window-per-task",
        lambda t, r, c: DataSettings(tasks=("hopper", "pong", "text"), window_timesteps=(1, 0)),
        ValueError,
        "DataSettings.window_timesteps has 2 entries for 3 tasks",
    ),
    (
        "data-noise-inf",
        lambda t, r, c: DataSettings(action_noise=float("inf")),
        ValueError,
        "DataSettings.action_noise must be a finite number",
    ),
    (
        "data-weights-negative",
        lambda t, r, c: DataSettings(tasks=("hopper", "text"), weights=(-1.0, 2.0)),
        ValueError,
        "weights must be >= 0",
    ),
    (
        "data-missing-dataset-file",
        _train_with(
            data=DataSettings(tasks=("halfcheetah",), datasets=("/nonexistent/x.hdf5",), min_return_fraction=0.0)
        ),
        FileNotFoundError,
        "x.hdf5 does not exist",
    ),
    (
        "train-out-is-a-file",
        _train_with(out=lambda t, r: (t / "afile").write_text("x") and t / "afile"),
        ValueError,
        "afile is a file",
    ),
    (
        "train-out-foreign-folder",
        _train_with(out=lambda t, r: (t / "f").mkdir() or (t / "f" / "notes.txt").write_text("x") and t / "f"),
        ValueError,
        "holds no gato_min run",
    ),
    (
        "train-other-settings",
        _train_with(
            settings=TrainSettings(**(vars(SETTINGS) | {"lr": 2e-3})), out=lambda t, r: t / "copy", prepare=_copy_into
        ),
        ValueError,
        "settings.lr: stored 0.001, given 0.002",
    ),
    (
        "train-steps-below-reached",
        _train_with(
            settings=TrainSettings(**(vars(SETTINGS) | {"steps": 1})), out=lambda t, r: t / "copy", prepare=_copy_into
        ),
        ValueError,
        "has reached step 2, past the 1 steps",
    ),
    (
        "config-patch-groups-not-dividing",
        lambda t, r, c: GatoConfig.from_preset("cpu-tiny", patch_channels=48, patch_groups=32),
        ValueError,
        "patch_channels (48) must be divisible by patch_groups (32)",
    ),
    (
        "config-context-zero",
        lambda t, r, c: GatoConfig.from_preset("cpu-tiny", context_length=0),
        ValueError,
        "GatoConfig.context_length must be a positive int",
    ),
    # --- run folders and checkpoints
    ("garbled-config-json", _spoil_json("config.json", "{not json"), ValueError, "config.json is not valid JSON"),
    ("garbled-data-json", _spoil_json("data.json", "[1, 2"), ValueError, "data.json is not valid JSON"),
    (
        "garbled-settings-json",
        lambda t, r, c: (_copy(r, t) / "settings.json").write_text("{") and read_settings(t / "copy"),
        ValueError,
        "settings.json is not valid JSON",
    ),
    (
        "config-json-unknown-key",
        lambda t, r, c: (_copy(r, t) / "config.json").write_text('{"n_layers": 2}') and read_config(t / "copy"),
        ValueError,
        "n_layers",
    ),
    (
        "garbled-metrics-line",
        _spoil_json("metrics.jsonl", '{"step": 1}\n{"step": 2, "loss": \n'),
        ValueError,
        "metrics.jsonl, line 2, is not valid JSON",
    ),
    (
        "metrics-line-without-step",
        _spoil_json("metrics.jsonl", '{"loss": 1.0}\n'),
        ValueError,
        "metrics.jsonl, line 1: expected an object with an integer 'step'",
    ),
    (
        "weights-of-another-context",
        _weights_of(CONFIG.replace(context_length=48)),
        ValueError,
        "config.context_length: stored 48, given 96",
    ),
    (
        "weights-of-other-action-positions",
        _weights_of(CONFIG.replace(action_positions="local")),
        ValueError,
        "config.action_positions: stored 'local', given 'none'",
    ),
    (
        "weights-of-another-width-no-metadata",
        _weights_of(CONFIG.replace(d_model=32, d_head=16), keep_metadata=False),
        ValueError,
        "tensor shapes differ",
    ),
    (
        "truncated-safetensors",
        _truncate("model.safetensors"),
        ValueError,
        "model.safetensors cannot be read as safetensors",
    ),
    ("truncated-checkpoint", _truncate("checkpoint.pt"), ValueError, "checkpoint.pt cannot be read"),
    (
        "checkpoint-of-another-config",
        _checkpoint_of(CONFIG.replace(context_length=48)),
        ValueError,
        "checkpoint.pt was written by another run",
    ),
    ("load-missing-run", lambda t, r, c: load_model(t / "nowhere"), FileNotFoundError, "config.json does not exist"),
    ("load-untrained-task", lambda t, r, c: load_model(r, task="hopper"), ValueError, "not on 'hopper'"),
    # --- acting and evaluation
    (
        "agent-temperature-nan",
        lambda t, r, c: _agent(r, temperature=float("nan")),
        ValueError,
        "temperature (0 = the most likely token) must be a number",
    ),
    (
        "agent-temperature-negative",
        lambda t, r, c: _agent(r, temperature=-1.0),
        ValueError,
        "temperature (0 = the most likely token) must be a number >= 0",
    ),
    (
        "agent-target-return-inf",
        lambda t, r, c: _agent(r, target_return=float("inf")),
        ValueError,
        "target_return must be a number",
    ),
    (
        "agent-prompt-tokens-negative",
        lambda t, r, c: _agent(r, prompt_tokens=-5),
        ValueError,
        "prompt_tokens must be an int >= 0",
    ),
    ("agent-memory-unknown", lambda t, r, c: _agent(r, memory="tape"), ValueError, "memory must be 'window' or 'ring'"),
    (
        "rollout-max-steps-zero",
        lambda t, r, c: _agent(r).rollout(1, max_steps=0, progress=False),
        ValueError,
        "max_steps (steps per episode) must be an int >= 1",
    ),
    ("evaluate-max-steps-zero", _evaluate(max_steps=0), ValueError, "max_steps must be an int >= 1"),
    ("evaluate-max-steps-negative", _evaluate(max_steps=-1), ValueError, "max_steps must be an int >= 1"),
    ("evaluate-episodes-zero", _evaluate(episodes=0), ValueError, "episodes must be an int >= 1"),
    ("evaluate-temperature-nan", _evaluate(temperature=float("nan")), ValueError, "temperature must be a number"),
    ("evaluate-not-a-run", lambda t, r, c: evaluate_run(t), FileNotFoundError, "is not a gato_min run folder"),
    # --- collection
    (
        "collect-noise-inf",
        lambda t, r, c: collect("halfcheetah", "expert", 1, action_noise=float("inf"), progress=False),
        ValueError,
        "action_noise must be a number",
    ),
    (
        "collect-noise-negative",
        lambda t, r, c: collect("halfcheetah", "expert", 1, action_noise=-0.1, progress=False),
        ValueError,
        "action_noise must be a number >= 0",
    ),
    (
        "collect-episodes-zero",
        lambda t, r, c: collect("halfcheetah", "expert", 0, progress=False),
        ValueError,
        "episodes must be a positive int",
    ),
    (
        "collect-unknown-tier",
        lambda t, r, c: collect("halfcheetah", "grandmaster", 1, progress=False),
        KeyError,
        "unknown tier 'grandmaster' for task 'halfcheetah'",
    ),
    (
        "filter-fraction-above-one",
        lambda t, r, c: filter_by_return(_episodes(), 10.0, 1.5),
        ValueError,
        "fraction must lie in [0, 1]",
    ),
    # --- dataset files
    ("d4rl-flipped-bytes", _d4rl_written(_flip_bytes), ValueError, "do not match the file's checksum"),
    (
        "d4rl-rewards-three-columns",
        lambda t, r, c: read_d4rl(_raw_d4rl(t / "r.hdf5", rewards=np.ones((6, 3)))),
        ValueError,
        "r.hdf5: 'rewards' has shape (6, 3); expected (6,)",
    ),
    (
        "d4rl-timeouts-two-columns",
        lambda t, r, c: read_d4rl(_raw_d4rl(t / "t.hdf5", timeouts=np.zeros((6, 2), bool))),
        ValueError,
        "t.hdf5: 'timeouts' has shape (6, 2)",
    ),
    (
        "d4rl-terminals-two-columns",
        lambda t, r, c: read_d4rl(_raw_d4rl(t / "t.hdf5", terminals=np.zeros((6, 2), bool))),
        ValueError,
        "t.hdf5: 'terminals' has shape (6, 2)",
    ),
    (
        "d4rl-actions-three-dims",
        lambda t, r, c: read_d4rl(_raw_d4rl(t / "a.hdf5", actions=np.zeros((6, 2, 2)))),
        ValueError,
        "a.hdf5: 'actions' has shape (6, 2, 2)",
    ),
    (
        "d4rl-episode-lengths-disagree",
        _d4rl_written(_set_attr("episode_lengths", np.array([100, 100]))),
        ValueError,
        "do not match the file's attribute episode_lengths",
    ),
    (
        "d4rl-nan-observation",
        _d4rl_written(_nan_observation),
        ValueError,
        "data.hdf5: episode 2 holds a non-finite value in 'observations' (step 20)",
    ),
    (
        "d4rl-nan-reward",
        lambda t, r, c: read_d4rl(_raw_d4rl(t / "n.hdf5", rewards=np.array([1, 1, 1, 1, np.nan, 1], np.float32))),
        ValueError,
        "n.hdf5: episode 1 holds a non-finite value in 'rewards' (step 1)",
    ),
    (
        "d4rl-missing-key",
        lambda t, r, c: read_d4rl(_raw_d4rl(t / "m.hdf5", rewards=np.ones(6)) and _drop_key(t / "m.hdf5", "rewards")),
        KeyError,
        "m.hdf5: missing 'rewards'",
    ),
    (
        "minari-nan-action",
        _minari(lambda d, f: f["episode_0/actions"].__setitem__((1, 0), np.nan)),
        ValueError,
        "episode 0 holds a non-finite value in 'actions' (step 1)",
    ),
    (
        "minari-garbled-metadata",
        _minari(lambda d, f: (d / "metadata.json").write_text("{")),
        ValueError,
        "metadata.json is not valid JSON",
    ),
    (
        "cached-dataset-of-another-env",
        lambda t, r, c: task_episodes(
            "hopper",
            DataSettings(
                tasks=("hopper",),
                datasets=(str(dataset_path("halfcheetah", "random", 4, 0, cache=c)),),
                min_return_fraction=0.0,
            ),
        ),
        ValueError,
        "is it the dataset of another environment?",
    ),
    # --- observations
    (
        "dict-observation-int-keys",
        lambda t, r, c: flatten_observations({1: np.zeros((3, 2))}),
        TypeError,
        "keys must be strings",
    ),
    (
        "dict-observation-ragged-time",
        lambda t, r, c: flatten_observations({"a": np.zeros((3, 2)), "b": np.zeros((4, 1))}),
        ValueError,
        "the same leading time axis",
    ),
    (
        "dict-observation-strings",
        lambda t, r, c: flatten_observations({"a": np.array([["x"]] * 3)}),
        TypeError,
        "observations must be numbers",
    ),
    (
        "integer-observation-out-of-range",
        _tokenized({"a": np.full((3, 2), 5000)}),
        ValueError,
        "values must be integers in [0, 1024)",
    ),
    (
        "integer-actions-several-columns-no-task",
        lambda t, r, c: TokenizedEpisodes(
            [Episode(np.zeros((3, 2), np.float32), np.zeros((3, 2), np.int64), np.ones(3), True)], Tokenizer(CONFIG)
        ),
        ValueError,
        "integer actions of shape (2,) per timestep",
    ),
    (
        "layout-discrete-column-outside",
        lambda t, r, c: TimestepLayout(None, 3, 2, False, discrete_values=(5,)),
        ValueError,
        "discrete_values (5,) must index the 3 observation values",
    ),
    (
        "check-number-bool",
        lambda t, r, c: check_number("episodes", True, integer=True),
        ValueError,
        "episodes must be an int",
    ),
    # --- the command line
    (
        "cli-out-is-a-file",
        _cli("train", "--out", "{run}/config.json", "--preset", "cpu-tiny", "--no-progress"),
        SystemExit,
        "2",
    ),
    (
        "cli-evaluate-max-steps-zero",
        _cli("evaluate", "--run", "{run}", "--max-steps", "0", "--no-progress"),
        SystemExit,
        "2",
    ),
    (
        "cli-collect-noise-inf",
        _cli(
            "collect",
            "--task",
            "halfcheetah",
            "--tier",
            "expert",
            "--episodes",
            "1",
            "--action-noise",
            "inf",
            "--out",
            "{tmp}/x.hdf5",
            "--no-progress",
        ),
        SystemExit,
        "2",
    ),
]


def _drop_key(path, key):
    with h5py.File(path, "a") as f:
        del f[key]
    return path


@pytest.mark.parametrize("row, exception, phrase", [pytest.param(*row[1:], id=row[0]) for row in ROWS])
def test_bad_input_raises_a_named_error(row, exception, phrase, tmp_path, trained, cache, capsys):
    with pytest.raises(exception) as caught:
        row(tmp_path, trained, cache)
    text = str(caught.value) if exception is not SystemExit else str(caught.value.code)
    assert phrase in text, f"{exception.__name__} says {text!r}, which does not name {phrase!r}"
    if exception is SystemExit:  # the command line names the bad input on stderr
        assert "error:" in capsys.readouterr().err


def test_the_table_is_long_enough():
    assert len(ROWS) >= 40 and len({row[0] for row in ROWS}) == len(ROWS)


# ------------------------------------------------------------------ what a refused start leaves


def test_a_failed_start_leaves_nothing_that_blocks_the_corrected_command(tmp_path, cache):
    out = tmp_path / "run"
    wrong = DataSettings(tasks=("halfcheetah",), datasets=(str(tmp_path / "typo.hdf5"),), min_return_fraction=0.0)
    with pytest.raises(FileNotFoundError, match="typo.hdf5 does not exist"):
        train(CONFIG, wrong, SETTINGS, out, cache=cache, progress=False, threads=1)
    assert not (out / "config.json").exists() and not (out / "settings.json").exists()
    result = train(CONFIG, DATA, SETTINGS, out, cache=cache, progress=False, threads=1)
    assert result.summary["step"] == 2 and json.loads((out / "data.json").read_text())["datasets"] is None


def test_a_restart_without_a_checkpoint_starts_its_metrics_anew_and_drops_stale_temporaries(tmp_path, cache):
    out = tmp_path / "run"
    RunFolder(out).claim(CONFIG, DATA, SETTINGS)  # a run killed before its first checkpoint ...
    (out / "metrics.jsonl").write_text("".join(json.dumps({"step": s, "loss": 9.0}) + "\n" for s in range(1, 6)))
    (out / ".model.safetensors.123.abcd.tmp").write_bytes(b"")  # ... in the middle of a write
    train(CONFIG, DATA, SETTINGS, out, cache=cache, progress=False, threads=1)
    assert [row["step"] for row in RunFolder(out).rows()] == [1, 2]
    assert not list(out.glob(".*.tmp"))


def test_weights_record_the_run_that_wrote_them(trained):
    stamp = weights_metadata(trained / "model.safetensors")
    assert json.loads(stamp["config"]) == json.loads(CONFIG.to_json()) and stamp["step"] == "2"
    assert json.loads(stamp["tasks"]) == ["halfcheetah"]
    state = torch.load(trained / "checkpoint.pt", weights_only=True)
    assert state["fingerprint"] == {k: stamp[k] for k in ("config", "tasks")}
