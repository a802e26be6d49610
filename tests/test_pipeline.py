"""The demo pipeline (gato_min.tools.demo) end to end on a tiny budget, and noisy collection."""

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from gato_min.config import GatoConfig
from gato_min.data.collect import ACTOR_BATCH, collect, dataset_path, policy_file
from gato_min.data.policies import load_policy
from gato_min.data.reference import normalized_score
from gato_min.statistics import mean_ci
from gato_min.tools.demo import (
    DEMO_CONFIG,
    DEMO_STEPS,
    STORED_RECIPE,
    demo_config,
    demo_settings,
    run_demo,
    task_recipe,
)

TINY = GatoConfig.from_preset("cpu-tiny", context_length=24, action_positions="local", value_init="smooth")


def test_the_demo_collects_trains_evaluates_and_resumes(tmp_path, capsys):
    kwargs = dict(
        steps=20,
        episodes=4,
        eval_episodes=2,
        threads=1,
        processes=1,
        cache=tmp_path / "cache",
        progress=False,
        config=TINY,
        max_steps=30,
    )
    result = run_demo(tmp_path / "demo", **kwargs)
    printed = capsys.readouterr().out
    for text in ("[1/3] collect", "[2/3] train", "[3/3] evaluate", "no prompt", "total", "where this stands"):
        assert text in printed
    stored = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert stored == json.loads(json.dumps(result))
    assert set(result["times"]) == {"collect_s", "train_s", "evaluate_s", "total_s"}
    assert np.isfinite(result["score"]["score_mean"]) and result["heldout_loss"] > 0
    assert result["task"] == "halfcheetah" and result["seed"] == 0
    report = json.loads((tmp_path / "demo" / "eval" / "report.json").read_text())
    assert report["tasks"][0]["lengths"] == [30, 30] and report["prompt_tokens"] == 0
    assert report["temperature"] == result["temperature"] == 0.0 and report["readout"] == result["readout"] == "mean"
    assert (tmp_path / "demo" / "eval" / "halfcheetah.gif").is_file()
    data = dataset_path("halfcheetah", "expert", 4, 0, tmp_path / "cache", action_noise=0.3, record="intended")
    written = data.stat().st_mtime_ns
    again = run_demo(tmp_path / "demo", **kwargs)  # data cached, run finished: same scores
    assert data.stat().st_mtime_ns == written and again["score"] == result["score"]


def test_the_demo_plays_any_shipped_mujoco_task_with_its_seed(tmp_path):
    kwargs = dict(steps=10, episodes=3, eval_episodes=2, processes=1, cache=tmp_path / "cache", progress=False)
    result = run_demo(tmp_path / "hopper", task="hopper", seed=3, max_steps=5, **kwargs)
    config = json.loads((tmp_path / "hopper" / "run" / "config.json").read_text())
    settings = json.loads((tmp_path / "hopper" / "run" / "settings.json").read_text())
    assert config["context_length"] == 15 == demo_config("hopper").context_length  # 11 readings, '|', 3 torques
    assert settings["seed"] == 3 and result["task"] == "hopper"
    assert json.loads((tmp_path / "hopper" / "demo.json").read_text())["seed"] == 3
    with pytest.raises(KeyError, match="nosuchtask"):
        run_demo(tmp_path / "none", task="nosuchtask", **kwargs)


def test_the_demo_plays_atari_from_pixels_with_its_recipe(tmp_path):
    """`demo --task pong`: DART data from the scripted player (epsilon as action_noise, planned
    buttons recorded), windows of several timesteps (one frame shows no ball direction)."""
    kwargs = dict(steps=4, episodes=2, eval_episodes=2, processes=1, cache=tmp_path / "cache", progress=False)
    result = run_demo(tmp_path / "pong", task="pong", max_steps=6, **kwargs)
    recipe = task_recipe("pong")
    config = json.loads((tmp_path / "pong" / "run" / "config.json").read_text())
    assert config["context_length"] == recipe["timesteps"] * 27  # 25 patches, '|', the button
    assert config["patch_channels"] == recipe["patch_channels"]
    settings = json.loads((tmp_path / "pong" / "run" / "settings.json").read_text())
    assert settings["batch_size"] == recipe["batch_size"] and settings["steps"] == 4
    data = json.loads((tmp_path / "pong" / "run" / "data.json").read_text())
    assert (data["action_noise"], data["record"]) == (recipe["action_noise"], "intended")
    assert result["task"] == "pong" and result["eval_episodes"] == 2
    assert demo_settings(task="breakout")[1].steps == recipe["steps"]


def test_the_demo_recipe_is_one_timestep_two_layers_and_an_untied_head():
    assert DEMO_CONFIG.n_layer == 2 and DEMO_CONFIG.d_model == 64 and not DEMO_CONFIG.tie_head
    assert DEMO_CONFIG.context_length == 24 and DEMO_CONFIG.value_init == "smooth"  # 17 readings, '|', 6 torques
    assert demo_config("walker2d").context_length == 24
    data, settings = demo_settings(steps=10)
    assert settings.steps == 10 and data.action_noise == 0.3 and data.record == "intended"
    assert (settings.batch_size, settings.lr) == (256, 2e-3)
    assert data.min_return_fraction == 0.0  # the noisy play returns less than 80 % of the expert's
    with pytest.raises(ValueError, match="eval_episodes"):
        run_demo("unused", eval_episodes=1)
    with pytest.raises(ValueError, match="threads and processes"):
        run_demo("unused", processes=0)


def test_action_noise_is_seeded_clipped_and_recorded():
    clean = collect("halfcheetah", "expert", 2, seed=0, num_envs=2, progress=False, max_episode_steps=40)
    noisy = collect(
        "halfcheetah", "expert", 2, seed=0, num_envs=1, progress=False, max_episode_steps=40, action_noise=0.3
    )
    again = collect(
        "halfcheetah", "expert", 2, seed=0, num_envs=2, progress=False, max_episode_steps=40, action_noise=0.3
    )
    for a, b in zip(noisy.episodes, again.episodes):  # the same arrays whatever the number of envs
        assert np.array_equal(a.actions, b.actions) and np.array_equal(a.observations, b.observations)
    first_clean, first_noisy = clean.episodes[0], noisy.episodes[0]
    assert np.array_equal(first_clean.observations[0], first_noisy.observations[0])
    assert not np.array_equal(first_clean.actions[0], first_noisy.actions[0])
    assert np.abs(first_noisy.actions).max() <= 1.0 and noisy.attrs["action_noise"] == 0.3
    assert dataset_path("halfcheetah", "expert", 2, 0, "c", 0.3).name == "halfcheetah-expert-noise0.3-2ep-seed0.hdf5"
    assert dataset_path("halfcheetah", "expert", 2, 0, "c").name == "halfcheetah-expert-2ep-seed0.hdf5"
    # DART labels: the noisy torque is played, the expert's own is written down
    intended = collect(
        "halfcheetah",
        "expert",
        1,
        seed=0,
        num_envs=1,
        progress=False,
        max_episode_steps=40,
        action_noise=0.3,
        record="intended",
    ).episodes[0]
    assert np.array_equal(intended.observations, first_noisy.observations)  # the same noisy tube
    policy, _ = load_policy(policy_file("halfcheetah", "expert"))
    expert = np.concatenate(
        [
            policy.act(np.pad(obs[None], ((0, ACTOR_BATCH - 1), (0, 0))))[:1]
            for obs in intended.observations.astype(np.float32)
        ]
    )
    np.testing.assert_allclose(intended.actions, expert, atol=1e-6)
    assert not np.array_equal(intended.actions, first_noisy.actions)
    assert dataset_path("halfcheetah", "expert", 2, 0, "c", 0.3, "intended").name.endswith(
        "noise0.3-intended-2ep-seed0.hdf5"
    )
    with pytest.raises(ValueError, match="needs action_noise"):
        collect("halfcheetah", "expert", 1, progress=False, record="intended")
    with pytest.raises(ValueError, match="use tier 'expert' with action_noise"):
        collect("pong", "medium", 1, progress=False, action_noise=0.1)
    with pytest.raises(ValueError, match=r"chance of a random button, in \[0, 1\]"):
        collect("pong", "expert", 1, progress=False, action_noise=1.5)
    with pytest.raises(ValueError, match="the random tier of hopper has none"):
        collect("hopper", "random", 1, progress=False, action_noise=0.1)
    with pytest.raises(ValueError, match="action_noise must be"):
        collect("hopper", "expert", 1, progress=False, action_noise=-1)


def test_the_demo_says_where_its_score_stands_with_the_stored_figures():
    """The closing lines quote the full recipe's score: recomputed here from the stored reports."""
    root = Path(__file__).resolve().parents[1]
    returns = [
        r
        for run in STORED_RECIPE["runs"]
        for folder in STORED_RECIPE["reports"]
        for r in json.loads((root / run / folder / "report.json").read_text())["tasks"][0]["returns"]
    ]
    mean, half = mean_ci(normalized_score("halfcheetah", returns))
    assert len(returns) == STORED_RECIPE["episodes"]
    assert (round(mean, 1), round(half, 1)) == (STORED_RECIPE["score_mean"], STORED_RECIPE["score_ci95"])
    minutes = []
    for seed, run in enumerate(STORED_RECIPE["runs"]):  # the stored runs are the demo's recipe, seeds 0 and 1
        settings = json.loads((root / run / "settings.json").read_text())
        assert settings == dataclasses.asdict(demo_settings(STORED_RECIPE["steps"], seed=seed)[1])
        assert json.loads((root / run / "config.json").read_text()) == json.loads(DEMO_CONFIG.to_json())
        rows = [json.loads(line) for line in (root / run / "metrics.jsonl").read_text().splitlines()]
        assert rows[-1]["step"] == STORED_RECIPE["steps"]
        minutes.append(rows[-1]["elapsed_s"] / 60)
    assert round(float(np.mean(minutes)), 1) == STORED_RECIPE["train_minutes"]


@pytest.mark.parametrize("task", ["halfcheetah", "hopper", "walker2d"])
def test_each_stored_fast_run_is_what_the_demo_of_its_task_trains(task):
    """`demo --task T --seed S` reproduces results/T-fast(-seed1): the same model, data and
    training settings, including Walker2d's departures (1,000 episodes at N(0, 0.5), width 96)."""
    root = Path(__file__).resolve().parents[1]
    for seed, run in enumerate((f"results/{task}-fast", f"results/{task}-fast-seed1")):
        data, settings = demo_settings(DEMO_STEPS, task=task, seed=seed)
        assert json.loads((root / run / "config.json").read_text()) == json.loads(demo_config(task).to_json())
        assert json.loads((root / run / "settings.json").read_text()) == dataclasses.asdict(settings)
        stored_data = json.loads((root / run / "data.json").read_text())
        assert {k: stored_data[k] for k in ("episodes", "action_noise", "record")} == {
            "episodes": data.episodes,
            "action_noise": data.action_noise,
            "record": data.record,
        }
    recipe = task_recipe(task)
    assert (recipe["episodes"], recipe["action_noise"], recipe["d_model"]) == (
        (1000, 0.5, 96) if task == "walker2d" else (500, 0.3, 64)
    )
