"""Behaviour data: episodes, the D4RL and Minari readers, the collector, score normalization."""

import json

import h5py
import numpy as np
import pytest

from gato_min.data.collect import behaviour_id, collect, collect_to_file, dataset_path, is_current, load_or_collect
from gato_min.data.episodes import Episode, filter_by_return
from gato_min.data.formats import read_d4rl, read_minari, write_d4rl
from gato_min.data.reference import d4rl_normalized_score, normalized_score
from gato_min.envs import TASKS, check_tier, make_env, preprocess_frame


def _episode(length, terminated, obs_dim=3, reward=1.0, discrete=False):
    rng = np.random.default_rng(length)
    actions = rng.integers(0, 4, length) if discrete else rng.uniform(-1, 1, (length, 2)).astype(np.float32)
    return Episode(
        rng.standard_normal((length, obs_dim)).astype(np.float32),
        actions,
        np.full(length, reward, np.float32),
        terminated,
    )


def _write_raw_d4rl(path, n=10, terminals=(), timeouts=(), skip=(), lengths=None):
    lengths = lengths or {}
    with h5py.File(path, "w") as f:
        data = {
            "observations": np.arange(n * 2, dtype=np.float32).reshape(n, 2),
            "actions": np.zeros((n, 1), np.float32),
            "rewards": np.ones(n, np.float32),
            "terminals": np.isin(np.arange(n), terminals),
            "timeouts": np.isin(np.arange(n), timeouts),
        }
        for key, array in data.items():
            if key not in skip:
                f.create_dataset(key, data=array[: lengths.get(key, n)])


# ---------------------------------------------------------------- episodes


def test_episode_checks_lengths_and_emptiness():
    with pytest.raises(ValueError, match="equal lengths"):
        Episode(np.zeros((3, 2)), np.zeros((2, 1)), np.zeros(3), True)
    with pytest.raises(ValueError, match="at least one step"):
        Episode(np.zeros((0, 2)), np.zeros((0, 1)), np.zeros(0), True)


def test_sec_3_1_filter_keeps_returns_at_least_80_percent_of_expert():
    episodes = [_episode(10, True, reward=r) for r in (0.5, 0.79, 0.8, 1.0)]  # returns 5, 7.9, 8, 10
    kept = filter_by_return(episodes, expert_return=10.0)
    assert [e.episode_return for e in kept] == pytest.approx([8.0, 10.0])
    # with a random reference the threshold is random + 0.8 (expert - random): Pong-like negative returns
    pong_like = [_episode(10, True, reward=r) for r in (-2.1, 1.3, 1.5)]  # -21, 13, 15
    kept = filter_by_return(pong_like, expert_return=18, random_return=-21)  # threshold -21 + 0.8 * 39 = 10.2
    assert [e.episode_return for e in kept] == pytest.approx([13.0, 15.0])
    with pytest.raises(ValueError, match="fraction"):
        filter_by_return(episodes, 10.0, fraction=1.5)


# ---------------------------------------------------------------- D4RL


def test_d4rl_round_trip(tmp_path):
    episodes = [_episode(5, True), _episode(7, False), _episode(3, True)]
    path = write_d4rl(tmp_path / "d.hdf5", episodes, {"task": "hopper", "tier": "expert", "seed": 3})
    data = read_d4rl(path)
    assert [len(e) for e in data] == [5, 7, 3]
    assert [e.terminated for e in data] == [True, False, True]
    for a, b in zip(episodes, data):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
    assert data.attrs["task"] == "hopper" and data.attrs["seed"] == 3
    assert data.attrs["episode_returns"] == pytest.approx([5.0, 7.0, 3.0])
    assert not list(tmp_path.glob("*.tmp"))


def test_d4rl_frames_are_compressed_uint8(tmp_path):
    frames = np.zeros((20, 80, 80, 3), np.uint8)
    episode = Episode(frames, np.arange(20) % 4, np.zeros(20, np.float32), True)
    path = write_d4rl(tmp_path / "a.hdf5", [episode])
    with h5py.File(path) as f:
        assert f["observations"].dtype == np.uint8 and f["observations"].compression == "gzip"
    assert path.stat().st_size < frames.nbytes / 10
    assert read_d4rl(path)[0].actions.dtype.kind == "i"


def test_d4rl_split_on_terminals_and_timeouts(tmp_path):
    path = tmp_path / "raw.hdf5"
    _write_raw_d4rl(path, n=10, terminals=[2], timeouts=[6, 9])
    data = read_d4rl(path)
    assert [len(e) for e in data] == [3, 4, 3]
    assert [e.terminated for e in data] == [True, False, False]
    assert data[1].observations[0].tolist() == [6.0, 7.0]  # step 3 starts the second episode


def test_d4rl_trailing_unfinished_episode_is_kept_or_dropped(tmp_path):
    path = tmp_path / "raw.hdf5"
    _write_raw_d4rl(path, n=10, terminals=[3])
    assert [(len(e), e.terminated) for e in read_d4rl(path)] == [(4, True), (6, False)]
    assert [len(e) for e in read_d4rl(path, keep_unfinished=False)] == [4]
    _write_raw_d4rl(path, n=5)  # no flags at all: one unfinished episode
    assert [(len(e), e.terminated) for e in read_d4rl(path)] == [(5, False)]


def test_d4rl_bad_inputs_name_file_and_key(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.hdf5 does not exist"):
        read_d4rl(tmp_path / "missing.hdf5")
    text = tmp_path / "notes.hdf5"
    text.write_text("not hdf5")
    with pytest.raises(ValueError, match="notes.hdf5 is not an HDF5 file"):
        read_d4rl(text)
    path = tmp_path / "nokey.hdf5"
    _write_raw_d4rl(path, skip=("rewards",))
    with pytest.raises(KeyError, match="nokey.hdf5: missing 'rewards'"):
        read_d4rl(path)
    path = tmp_path / "short.hdf5"
    _write_raw_d4rl(path, lengths={"actions": 7})
    with pytest.raises(ValueError, match="short.hdf5: 'actions' has 7 entries but 'observations' has 10"):
        read_d4rl(path)
    good = tmp_path / "good.hdf5"
    write_d4rl(good, [_episode(400, True, obs_dim=64)])
    truncated = tmp_path / "truncated.hdf5"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.hdf5"):
        read_d4rl(truncated)


# ---------------------------------------------------------------- Minari


def _write_minari(root, episodes, dict_obs=False, metadata=True):
    data = root / "mujoco" / "hopper" / "expert-v0" / "data"
    data.mkdir(parents=True)
    if metadata:
        (data / "metadata.json").write_text(
            json.dumps({"dataset_id": "mujoco/hopper/expert-v0", "total_episodes": len(episodes)})
        )
    with h5py.File(data / "main_data.hdf5", "w") as f:
        for index, (steps, terminated) in enumerate(episodes):
            g = f.create_group(f"episode_{index}")
            obs = np.arange((steps + 1) * 3, dtype=np.float64).reshape(steps + 1, 3) + 100 * index
            if dict_obs:
                o = g.create_group("observations")
                o.create_dataset("velocity", data=obs[:, :1])
                o.create_dataset("angle", data=obs[:, 1:])
            else:
                g.create_dataset("observations", data=obs)
            g.create_dataset("actions", data=np.zeros((steps, 2), np.float32))
            g.create_dataset("rewards", data=np.ones(steps))
            g.create_dataset(
                "terminations", data=np.arange(steps) == steps - 1 if terminated else np.zeros(steps, bool)
            )
            g.create_dataset("truncations", data=np.zeros(steps, bool) if terminated else np.arange(steps) == steps - 1)
    return data.parent


def test_minari_reader(tmp_path):
    folder = _write_minari(tmp_path, [(4, True), (6, False)] + [(2, True)] * 9)  # 11 episodes: numeric order
    data = read_minari(folder)
    assert [len(e) for e in data][:3] == [4, 6, 2] and len(data) == 11
    assert [e.terminated for e in data][:2] == [True, False]
    assert data[1].observations[0].tolist() == [100.0, 101.0, 102.0]  # the final observation is dropped
    assert data[0].observations.shape == (4, 3)
    assert data.attrs["dataset_id"] == "mujoco/hopper/expert-v0"
    assert len(read_minari(folder / "data")) == 11  # the data/ folder itself works too


def test_minari_dict_observations_become_nested_dicts(tmp_path):
    data = read_minari(_write_minari(tmp_path, [(3, True)], dict_obs=True, metadata=False))
    assert list(data[0].observations) == ["angle", "velocity"]
    assert data[0].observations["angle"].shape == (3, 2)


def test_minari_bad_inputs(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        read_minari(tmp_path / "nothing")
    folder = _write_minari(tmp_path, [(3, True)])
    with h5py.File(folder / "data" / "main_data.hdf5", "a") as f:
        del f["episode_0/rewards"]
    with pytest.raises(KeyError, match="missing episode_0/'rewards'"):
        read_minari(folder)
    other = _write_minari(tmp_path / "b", [(3, True)])
    with h5py.File(other / "data" / "main_data.hdf5", "a") as f:
        del f["episode_0/observations"]
        f["episode_0"].create_dataset("observations", data=np.zeros((3, 3)))  # T, not T + 1
    with pytest.raises(ValueError, match="one more observation than actions"):
        read_minari(other)


# ---------------------------------------------------------------- collection


@pytest.mark.parametrize(
    "task, tier", [("hopper", "random"), ("hopper", "medium"), ("pong", "random"), ("pong", "noisy")]
)
def test_same_seed_gives_byte_identical_arrays(task, tier, tmp_path):
    a = read_d4rl(
        collect_to_file(
            task, tier, 3, seed=7, num_envs=2, out=tmp_path / "a.hdf5", progress=False, max_episode_steps=60
        )
    )
    b = read_d4rl(
        collect_to_file(
            task, tier, 3, seed=7, num_envs=3, out=tmp_path / "b.hdf5", progress=False, max_episode_steps=60
        )
    )
    c = collect(task, tier, 3, seed=8, num_envs=2, progress=False, max_episode_steps=60)
    for x, y in zip(a, b):
        assert x.observations.tobytes() == y.observations.tobytes()
        assert x.actions.tobytes() == y.actions.tobytes() and x.rewards.tobytes() == y.rewards.tobytes()
    assert any(x.observations.tobytes() != z.observations.tobytes() for x, z in zip(a, c))
    assert a.attrs["task"] == task and a.attrs["tier"] == tier and a.attrs["seed"] == 7
    assert "package_version" in a.attrs


def test_a_cache_made_by_another_behaviour_is_collected_again(tmp_path, capsys):
    path = collect_to_file("hopper", "medium", 1, seed=3, cache=tmp_path, progress=False)
    assert path == dataset_path("hopper", "medium", 1, 3, tmp_path) and is_current(path, "hopper", "medium")
    assert read_d4rl(path).attrs["behaviour"] == behaviour_id("hopper", "medium")
    assert behaviour_id("hopper", "medium").startswith("actor ")  # the shipped actor file's digest
    fresh = read_d4rl(path)
    with h5py.File(path, "r+") as f:  # as if an older version of the expert had made it
        f.attrs["behaviour"] = "actor 0123456789abcdef"
        f["rewards"][0] += 1.0
    assert not is_current(path, "hopper", "medium")
    again = load_or_collect("hopper", "medium", 1, 3, cache=tmp_path, progress=False)
    assert "collecting it again" in capsys.readouterr().err
    assert is_current(path, "hopper", "medium") and again[0].rewards.tobytes() == fresh[0].rewards.tobytes()
    assert behaviour_id("pong", "expert") != behaviour_id("breakout", "expert")
    assert behaviour_id("pong", "random") == "random"


def test_collection_settings_may_differ_per_task():
    """The generalist collects 500 DART episodes of a body and 40 games of Atari in one run."""
    import argparse

    from gato_min.data.training_set import DataSettings, _collection
    from gato_min.settings import add_arguments, from_arguments, from_dict, to_dict

    data = DataSettings(
        tasks=("halfcheetah", "pong", "text"), episodes=(500, 40, 1), action_noise=(0.3, 0.2, 0.0), record="intended"
    )
    assert _collection("pong", data) == dict(tier="expert", episodes=40, seed=0, action_noise=0.2, record="intended")
    assert (
        _collection("halfcheetah", data)["episodes"] == 500 and _collection("halfcheetah", data)["action_noise"] == 0.3
    )
    assert from_dict(DataSettings, json.loads(json.dumps(to_dict(data)))) == data
    parser = argparse.ArgumentParser()
    add_arguments(parser, DataSettings)
    given = from_arguments(
        DataSettings, parser.parse_args("--tasks hopper pong --episodes 7 --action-noise 0.1 0.2".split())
    )
    assert given.episodes == 7 and given.of("episodes", "pong") == 7 and given.of("action_noise", "pong") == 0.2
    assert to_dict(given)["episodes"] == 7  # one number for all tasks is stored as one number


def test_atari_frames_are_stored_at_model_resolution():
    data = collect("breakout", "random", 1, seed=0, progress=False, max_episode_steps=60)
    assert data[0].observations.shape[1:] == TASKS["breakout"].observation_shape
    assert 30 <= len(data[0]) <= 60  # the time limit also counts the 0-30 unrecorded no-ops
    assert data[0].actions.max() < TASKS["breakout"].action_dim


def test_registry_specs_match_the_real_environments():
    for task, spec in TASKS.items():
        env = make_env(task)
        obs, _ = env.reset(seed=0)
        if spec.family == "atari":
            assert preprocess_frame(obs).shape == spec.observation_shape
            assert env.action_space.n == spec.action_dim
            assert env.unwrapped.ale.getFloat("repeat_action_probability") == 0.0
        else:
            assert obs.shape == spec.observation_shape and env.action_space.shape == (spec.action_dim,)
            assert np.all(env.action_space.low == -1) and np.all(env.action_space.high == 1)
        env.close()


def test_unknown_task_or_tier_is_named():
    with pytest.raises(KeyError, match="unknown tier 'legendary' for task 'hopper'; tiers: medium, expert"):
        check_tier("hopper", "legendary")
    with pytest.raises(KeyError, match="unknown task"):
        collect("ant", "expert", 1)
    with pytest.raises(ValueError, match="episodes must be a positive int"):
        collect("hopper", "random", 0)


def test_cache_folder_is_configurable(tmp_path, monkeypatch):
    monkeypatch.setenv("GATO_MIN_CACHE", str(tmp_path))
    assert dataset_path("hopper", "expert", 5, 1) == tmp_path / "datasets" / "hopper-expert-5ep-seed1.hdf5"
    assert dataset_path("hopper", "expert", 5, 1, cache=tmp_path / "x").parent == tmp_path / "x" / "datasets"


def test_d4rl_normalized_score_uses_the_d4rl_references():
    assert d4rl_normalized_score("hopper", 3234.3) == pytest.approx(100.0)
    assert d4rl_normalized_score("hopper", -20.272305) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="no D4RL reference"):
        d4rl_normalized_score("pong", 0.0)


def test_normalized_score_from_a_reference_file(tmp_path):
    ref = tmp_path / "ref.json"
    ref.write_text(json.dumps({"pong": {"random": {"mean": -20.0}, "expert": {"mean": 20.0}}}))
    assert normalized_score("pong", [0.0, 20.0], ref).tolist() == [50.0, 100.0]
    with pytest.raises(KeyError, match="no reference returns for task 'hopper'"):
        normalized_score("hopper", [1.0], ref)


def test_shipped_reference_returns_normalize_expert_to_100():
    from gato_min.data.reference import reference_returns

    for task in ("pong", "breakout"):
        ref = reference_returns(task)
        assert ref["expert"] > ref["medium"] > ref["noisy"] > ref["random"]
        assert normalized_score(task, ref["expert"]) == pytest.approx(100.0)
        assert normalized_score(task, ref["random"]) == pytest.approx(0.0)


def test_known_mujoco_noise_is_dropped_where_the_package_makes_envs(capfd):
    """gymnasium's v5 XML files make MuJoCo print a deprecation warning on every environment;
    the package drops that one while it builds an environment, and only there."""
    import gymnasium
    import mujoco

    from gato_min.envs import _mujoco_warning

    make_env("halfcheetah").close()
    assert "settotalmass" not in capfd.readouterr().err
    assert mujoco.get_mju_user_warning() is None  # the caller's handler (none) is given back
    gymnasium.make("HalfCheetah-v5").close()
    assert "settotalmass" in capfd.readouterr().err  # outside the package, MuJoCo speaks as usual
    with pytest.warns(RuntimeWarning, match="MuJoCo: something else"):
        _mujoco_warning("something else")
