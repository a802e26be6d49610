"""Your own task (README, "Your own task"): a gymnasium env the package does not ship, through the
public API and the command line only: register, collect from your policy, measure reference
returns beside your data, train (in spawned workers too), evaluate; train on your own D4RL or
Minari file, naming the task by its env id."""

import json

import gymnasium as gym
import h5py
import numpy as np
import pytest

from gato_min.codec import TaskCodec
from gato_min.config import GatoConfig
from gato_min.data.collect import collect
from gato_min.data.formats import read_minari, write_d4rl
from gato_min.data.reference import REFERENCE_FILE, measure, normalized_score, update_reference_file
from gato_min.data.training_set import DataSettings, task_episodes
from gato_min.envs import get_task, load_task_file, model_observation, register_task, unregister_task
from gato_min.evaluate import evaluate_run
from gato_min.launch import train_processes
from gato_min.optim import TrainSettings
from gato_min.runs import RunFolder
from gato_min.sequence import CONTINUOUS, DISCRETE, TokenizedEpisodes
from gato_min.tokenize import Tokenizer
from gato_min.tools.cli import main
from gato_min.train import train

CONFIG = GatoConfig.from_preset("cpu-tiny", context_length=96)
SETTINGS = TrainSettings(
    steps=4, batch_size=4, warmup_steps=1, log_every=2, eval_every=4, checkpoint_every=4, eval_batches=1
)
TINY_RUN = [
    "--preset",
    "cpu-tiny",
    "--context-length",
    "96",
    "--steps",
    "2",
    "--batch-size",
    "2",
    "--warmup-steps",
    "1",
    "--log-every",
    "1",
    "--eval-every",
    "2",
    "--checkpoint-every",
    "2",
    "--eval-batches",
    "1",
    "--no-progress",
]
GAINS = np.array([1.0, 10.0, 1.0, 1.0])  # a linear controller that balances InvertedPendulum-v5


def balance(observation):
    """The user's policy: force = gains . [x, angle, x', angle'], in the env's range [-3, 3]."""
    return np.clip(GAINS @ observation, -3.0, 3.0)[None]


@pytest.fixture
def pendulum(tmp_path, monkeypatch):
    monkeypatch.setenv("GATO_MIN_CACHE", str(tmp_path / "cache"))
    spec = register_task("pendulum", "InvertedPendulum-v5", policies={"expert": balance})
    yield spec
    unregister_task("pendulum")


def test_a_users_env_is_registered_scaled_collected_trained_and_evaluated(pendulum, tmp_path):
    assert pendulum.observation_shape == (4,) and pendulum.action_dim == 1 and not pendulum.discrete_actions
    assert pendulum.action_low == (-3.0,) and pendulum.action_high == (3.0,) and pendulum.tiers == ("expert",)
    with pytest.raises(ValueError, match="already registered"):
        register_task("pendulum", "InvertedPendulum-v5")
    with pytest.raises(ValueError, match="already registered"):
        register_task("hopper", "Hopper-v5")

    # actions are scaled from [-3, 3] to the tokenizer's [-1, 1] and back: 2.5 is not clipped to 1
    codec = TaskCodec("pendulum", CONFIG)
    actions = np.array([[2.5], [-3.0], [0.4]])
    assert np.abs(codec.decode_actions(codec.encode_actions(actions)) - actions).max() <= 3.0 / 1024 + 1e-6

    # the policy plays; its data repeats; reference returns go beside the data, not into the package
    data = collect("pendulum", "expert", 2, seed=0, num_envs=2, progress=False, max_episode_steps=60)
    assert [len(e) for e in data] == [60, 60] and data[0].actions.shape == (60, 1)
    np.testing.assert_allclose(data[0].actions[0], balance(data[0].observations[0]), rtol=1e-6)
    shipped = REFERENCE_FILE.read_bytes()
    table = measure(["pendulum"], episodes=2, num_envs=2, progress=False)
    written = update_reference_file(table)
    assert written == [tmp_path / "cache" / "reference_returns.json"] and REFERENCE_FILE.read_bytes() == shipped
    assert table["pendulum"]["expert"]["mean"] == 1000.0 > table["pendulum"]["random"]["mean"]
    assert normalized_score("pendulum", 1000.0) == pytest.approx(100.0)

    # training in two spawned workers (they must know the task), then evaluation from the run folder
    run = tmp_path / "run"
    data_settings = DataSettings(tasks=("pendulum",), episodes=6, heldout_fraction=0.34)
    summary = train_processes(CONFIG, data_settings, SETTINGS, run, processes=2, progress=False)
    assert summary["step"] == 4 and summary["data"]["pendulum"]["episodes_kept"] == 6
    stored = json.loads(RunFolder(run).tasks.read_text())
    assert stored[0]["env_id"] == "InvertedPendulum-v5" and stored[0]["action_low"] == [-3.0]
    report = evaluate_run(
        run,
        episodes=2,
        num_envs=2,
        seed=0,
        temperature=0.0,
        out=tmp_path / "eval",
        gif_steps=0,
        max_steps=20,
        progress=False,
    )
    row = report["tasks"][0]
    assert row["task"] == "pendulum" and row["prompts"] == 2 and len(row["returns"]) == 2
    assert row["score_mean"] == pytest.approx(np.mean(normalized_score("pendulum", row["returns"])))


def test_a_run_folder_brings_its_user_tasks_along(pendulum, tmp_path):
    """Another process (here: after unregistering) evaluates the run from its tasks.json alone."""
    run = tmp_path / "run"
    data_settings = DataSettings(tasks=("pendulum",), episodes=4, heldout_fraction=0.25, min_return_fraction=0.0)
    main(
        [
            "train",
            "--out",
            str(run),
            "--tasks",
            "pendulum",
            "--episodes",
            "4",
            "--heldout-fraction",
            "0.25",
            "--min-return-fraction",
            "0",
            *TINY_RUN,
        ]
    )
    assert json.loads(RunFolder(run).data.read_text())["tasks"] == list(data_settings.tasks)
    update_reference_file(measure(["pendulum"], episodes=2, num_envs=2, progress=False))
    unregister_task("pendulum")
    with pytest.raises(KeyError, match="unknown task 'pendulum'"):
        get_task("pendulum")
    report = evaluate_run(
        run, episodes=2, num_envs=1, prompt_tokens=0, out=tmp_path / "eval", gif_steps=0, max_steps=5, progress=False
    )
    assert report["tasks"][0]["task"] == "pendulum" and get_task("pendulum").action_low == (-3.0,)


def test_a_task_file_and_a_policy_module_on_the_command_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("GATO_MIN_CACHE", str(tmp_path / "cache"))
    (tmp_path / "my_policies.py").write_text(
        "import numpy as np\n\n\ndef balance(obs):\n"
        "    return np.clip(np.array([1.0, 10.0, 1.0, 1.0]) @ obs, -3, 3)[None]\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    task_file = tmp_path / "tasks.json"
    task_file.write_text(
        json.dumps([{"name": "pole", "env_id": "InvertedPendulum-v5", "policies": {"expert": "my_policies:balance"}}])
    )
    try:
        out = tmp_path / "pole.hdf5"
        assert (
            main(
                [
                    "collect",
                    "--task-file",
                    str(task_file),
                    "--task",
                    "pole",
                    "--tier",
                    "expert",
                    "--episodes",
                    "2",
                    "--out",
                    str(out),
                    "--no-progress",
                ]
            )
            == 0
        )
        assert "2 episodes, 2000 steps, return 1000.0" in capsys.readouterr().out
        assert (
            main(
                [
                    "reference-returns",
                    "--task-file",
                    str(task_file),
                    "--tasks",
                    "pole",
                    "--episodes",
                    "2",
                    "--no-progress",
                ]
            )
            == 0
        )
        assert "pole" in json.loads((tmp_path / "cache" / "reference_returns.json").read_text())
    finally:
        unregister_task("pole")
    bad = tmp_path / "bad.json"
    bad.write_text('[{"env_id": "InvertedPendulum-v5"}]')
    with pytest.raises(ValueError, match="entry 0: expected an object with 'name' and 'env_id'"):
        load_task_file(bad)
    assert (
        main(["collect", "--task-file", str(tmp_path / "none.json"), "--task", "x", "--tier", "y", "--episodes", "1"])
        == 2
    )
    assert "task file" in capsys.readouterr().err


def _write_minari(folder, episodes):
    data = folder / "data"
    data.mkdir(parents=True)
    (data / "metadata.json").write_text(json.dumps({"dataset_id": "pendulum/mine-v0", "total_episodes": len(episodes)}))
    with h5py.File(data / "main_data.hdf5", "w") as f:
        for index, episode in enumerate(episodes):
            g = f.create_group(f"episode_{index}")
            g.create_dataset("observations", data=np.concatenate([episode.observations, episode.observations[-1:]]))
            g.create_dataset("actions", data=episode.actions)
            g.create_dataset("rewards", data=episode.rewards)
            g.create_dataset("terminations", data=np.arange(len(episode)) == len(episode) - 1)
            g.create_dataset("truncations", data=np.zeros(len(episode), bool))
    return folder


def test_training_on_your_own_d4rl_or_minari_file_by_env_id(pendulum, tmp_path):
    episodes = collect("pendulum", "expert", 4, seed=0, progress=False, max_episode_steps=30).episodes
    d4rl = write_d4rl(tmp_path / "mine.hdf5", episodes)
    minari = _write_minari(tmp_path / "minari" / "mine-v0", episodes)
    unregister_task("pendulum")  # the env id alone names the task: registered under it on first use
    for name, dataset in (("d4rl", d4rl), ("minari", minari)):
        run = tmp_path / "runs" / name
        assert (
            main(
                [
                    "train",
                    "--out",
                    str(run),
                    "--tasks",
                    "InvertedPendulum-v5",
                    "--datasets",
                    str(dataset),
                    "--min-return-fraction",
                    "0",
                    "--heldout-fraction",
                    "0.25",
                    *TINY_RUN,
                ]
            )
            == 0
        )
        summary = json.loads(RunFolder(run).summary.read_text())
        assert summary["data"]["InvertedPendulum-v5"]["train_timesteps"] == 90  # 3 of 4 episodes of 30 steps
        stored = json.loads(RunFolder(run).data.read_text())
        assert stored["datasets"] == [str(dataset)] and stored["tasks"] == ["InvertedPendulum-v5"]
    unregister_task("InvertedPendulum-v5")
    with pytest.raises(ValueError, match="has observations of shape \\(4,\\); task 'hopper'"):
        task_episodes("hopper", DataSettings(tasks=("hopper",), datasets=(str(d4rl),), min_return_fraction=0.0))


class _DictPendulum(gym.ObservationWrapper):
    """InvertedPendulum with a dict observation: cart and pole readings, and which side the pole leans to."""

    def __init__(self):
        super().__init__(gym.make("InvertedPendulum-v5"))
        box = gym.spaces.Box(-np.inf, np.inf, (2,), np.float64)
        self.observation_space = gym.spaces.Dict({"pole": box, "cart": box, "side": gym.spaces.Discrete(2)})

    def observation(self, obs):
        return {"pole": obs[[1, 3]], "cart": obs[[0, 2]], "side": int(obs[1] > 0)}


def balance_flat(observation):
    """`balance` on the flattened dict: [cart x, cart x', pole angle, pole angle', side] (keys in order)."""
    return balance(np.asarray(observation)[[0, 2, 1, 3]])


def test_a_dict_observation_env_goes_one_road_through_collection_training_and_acting(tmp_path, monkeypatch):
    """Sec. 2.1: nested observations are flattened in key order; an integer value is a discrete token."""
    monkeypatch.setenv("GATO_MIN_CACHE", str(tmp_path / "cache"))
    if "DictPendulum-v0" not in gym.registry:
        gym.register("DictPendulum-v0", entry_point=_DictPendulum, max_episode_steps=1000)
    spec = register_task("dictpend", "DictPendulum-v0", policies={"expert": balance_flat})
    try:
        assert spec.observation_shape == (5,) and spec.discrete_values == (4,)
        raw = {"side": 1, "pole": np.array([0.1, 0.2]), "cart": np.array([0.3, 0.4])}
        assert model_observation(spec, raw).tolist() == pytest.approx([0.3, 0.4, 0.1, 0.2, 1.0])
        codec = TaskCodec("dictpend", CONFIG)
        assert codec.layout.kinds()[:5].tolist() == [CONTINUOUS] * 4 + [DISCRETE]
        acting = codec.timesteps(model_observation(spec, raw)[None]).value_ids[0]
        assert acting[4] == 1  # the paper's discrete value: the integer itself, not a bin
        episodes = collect("dictpend", "expert", 4, seed=0, progress=False, max_episode_steps=30)
        assert np.mean([e.episode_return for e in episodes]) == 30  # the flattened order is the one the policy reads
        data = TokenizedEpisodes(episodes, codec.tokenizer, task=spec)
        sides = np.concatenate([e.observations[:, 4] for e in episodes])
        assert np.array_equal(data.timesteps.value_ids[:, 4], sides.astype(np.int32)) and set(sides) == {0.0, 1.0}
        settings = DataSettings(tasks=("dictpend",), episodes=4, min_return_fraction=0.0, heldout_fraction=0.25)
        train(CONFIG, settings, SETTINGS, tmp_path / "run", progress=False, threads=1)
        update_reference_file(measure(["dictpend"], episodes=2, num_envs=2, progress=False))
        report = evaluate_run(tmp_path / "run", episodes=1, num_envs=1, gif_steps=0, max_steps=5, progress=False)
        assert report["tasks"][0]["lengths"] == [5]
    finally:
        unregister_task("dictpend")


def test_a_minari_dict_file_with_an_integer_leaf_trains_by_env_id(tmp_path):
    data = tmp_path / "m" / "data"
    data.mkdir(parents=True)
    with h5py.File(data / "main_data.hdf5", "w") as f:
        for index in range(3):
            g = f.create_group(f"episode_{index}")
            o = g.create_group("observations")
            o.create_dataset("velocity", data=np.linspace(-1, 1, 12).reshape(6, 2))
            o.create_dataset("gear", data=np.arange(6, dtype=np.int64)[:, None] % 3)
            g.create_dataset("actions", data=np.zeros((5, 1), np.float32))
            g.create_dataset("rewards", data=np.ones(5))
            g.create_dataset("terminations", data=np.arange(5) == 4)
            g.create_dataset("truncations", data=np.zeros(5, bool))
    episodes = read_minari(tmp_path / "m")
    tokenized = TokenizedEpisodes(episodes, Tokenizer(CONFIG))
    assert tokenized.layout.num_values == 3 and tokenized.layout.discrete_values == (0,)  # "gear" < "velocity"
    assert tokenized.timesteps.value_ids[:5, 0].tolist() == [0, 1, 2, 0, 1]
    assert tokenized.layout.kinds()[:3].tolist() == [DISCRETE, CONTINUOUS, CONTINUOUS]
