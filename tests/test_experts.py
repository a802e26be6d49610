"""The task registry and the expert policies (gato_min.data.tasks, gato_min.data.experts)."""

import json

import numpy as np
import pytest
import torch

from gato_min.data.policies import MLPPolicy, export_policy, load_policy
from gato_min.envs import TASKS, get_task, make_env
from gato_min.tools.experts import TD3Settings, train_expert


def test_registry_knows_the_five_tasks_and_refuses_others():
    assert sorted(TASKS) == ["breakout", "halfcheetah", "hopper", "pong", "walker2d"]
    with pytest.raises(KeyError, match="unknown task 'cheetah'; known tasks: breakout, halfcheetah"):
        get_task("cheetah")


def test_atari_tasks_have_sticky_actions_off():
    env = make_env("pong")
    assert env.spec.kwargs["repeat_action_probability"] == 0.0
    env.close()


def test_exported_policy_round_trips(tmp_path):
    torch.manual_seed(0)
    policy = MLPPolicy(5, 2, [8, 8], action_low=[-1, -2], action_high=[1, 2]).eval()
    path = export_policy(policy, tmp_path / "p.safetensors", task="hopper", step=123)
    loaded, metadata = load_policy(path)
    obs = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)
    np.testing.assert_array_equal(loaded.act(obs), policy.act(obs))
    assert metadata["task"] == "hopper" and metadata["step"] == "123"
    actions = loaded.act(obs * 100)
    assert np.all(np.abs(actions) <= np.array([1, 2]) + 1e-6)  # tanh scaled into [low, high]


def test_bad_policy_files_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothere.safetensors does not exist"):
        load_policy(tmp_path / "nothere.safetensors")
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="garbage.safetensors is not a readable safetensors file"):
        load_policy(garbage)
    from safetensors.torch import save_file

    headless = tmp_path / "headless.safetensors"
    save_file({"x": torch.zeros(1)}, str(headless))
    with pytest.raises(ValueError, match="lacks the header key 'obs_dim'"):
        load_policy(headless)


def test_td3_training_checkpoints_and_resumes(tmp_path, capsys):
    pytest.importorskip("stable_baselines3")
    settings = TD3Settings(
        total_steps=400,
        learning_starts=100,
        eval_every=200,
        checkpoint_every=200,
        eval_episodes=1,
        batch_size=32,
        buffer_size=2000,
        hidden_sizes=(16, 16),
    )
    out = train_expert("hopper", tmp_path / "run", settings, progress=False)
    assert [row["step"] for row in map(json.loads, (out / "curve.jsonl").read_text().splitlines())] == [200, 400]
    assert (out / "checkpoint" / "model.zip").exists() and (out / "checkpoint" / "replay.pkl").exists()
    train_expert("hopper", out, total_steps=600, progress=False)  # stored settings, longer budget
    assert "resuming hopper from step 400" in capsys.readouterr().out
    rows = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]
    assert [row["step"] for row in rows] == [200, 400, 600]
    assert sorted(p.name for p in (out / "snapshots").iterdir()) == [
        "step_0000200.safetensors",
        "step_0000400.safetensors",
        "step_0000600.safetensors",
    ]
    policy, metadata = load_policy(out / "snapshots" / "step_0000600.safetensors")
    assert metadata["task"] == "hopper" and float(metadata["mean_return"]) == pytest.approx(rows[-1]["mean_return"])
    with pytest.raises(ValueError, match="holds a run for task 'hopper', not 'walker2d'"):
        train_expert("walker2d", out)


def test_td3_experts_are_for_mujoco_tasks_only(tmp_path):
    pytest.importorskip("stable_baselines3")
    with pytest.raises(ValueError, match="'pong' is an atari task"):
        train_expert("pong", tmp_path / "x")


def test_portable_state_resumes_without_the_replay_buffer(tmp_path, capsys):
    pytest.importorskip("stable_baselines3")
    from gato_min.tools.experts import save_portable_state

    settings = TD3Settings(
        total_steps=300,
        learning_starts=100,
        eval_every=150,
        checkpoint_every=150,
        eval_episodes=1,
        batch_size=32,
        buffer_size=2000,
        hidden_sizes=(16, 16),
    )
    first = train_expert("hopper", tmp_path / "first", settings, progress=False)
    state = save_portable_state(first, tmp_path / "state")
    assert sorted(p.name for p in state.iterdir()) == ["curve.jsonl", "model.zip", "settings.json"]
    second = train_expert("hopper", tmp_path / "second", total_steps=450, progress=False, resume_from=state)
    out = capsys.readouterr().out
    assert "starting hopper from the portable state" in out and "resuming hopper from step 300" in out
    steps = [json.loads(line)["step"] for line in (second / "curve.jsonl").read_text().splitlines()]
    assert steps == [150, 300, 450]
    with pytest.raises(FileNotFoundError, match="holds no checkpoint/model.zip"):
        save_portable_state(tmp_path / "nothing", tmp_path / "x")


def test_tiers_are_chosen_from_the_curve_and_exported(tmp_path):
    from gato_min.tools.experts import choose_snapshots, export_tiers, plot_training_curve

    run = tmp_path / "run"
    returns = {10_000: 300.0, 20_000: 900.0, 30_000: 1200.0, 40_000: 1500.0, 50_000: 2900.0, 60_000: 2700.0}
    (run / "snapshots").mkdir(parents=True)
    with (run / "curve.jsonl").open("w") as f:
        for step, value in returns.items():
            f.write(json.dumps({"step": step, "mean_return": value, "std_return": 10.0}) + "\n")
            export_policy(
                MLPPolicy(11, 3, [4], -np.ones(3), np.ones(3)), run / "snapshots" / f"step_{step:07d}.safetensors"
            )
    # hopper's D4RL expert return is 3234.3: a third is 1078; the 25-45 % band is [809, 1455]
    chosen = choose_snapshots(run, "hopper")
    assert chosen["medium"]["step"] == 30_000 and chosen["expert"]["step"] == 50_000  # 1200 is nearest 1078
    written = export_tiers(run, "hopper", tmp_path / "policies")
    _, metadata = load_policy(written["medium"])
    assert metadata["tier"] == "medium" and metadata["training_step"] == "30000"
    png = plot_training_curve(run, "hopper", tmp_path / "curve.png", {"medium": 20_000, "expert": 50_000})
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(FileNotFoundError, match="holds no evaluations"):
        choose_snapshots(tmp_path / "empty", "hopper")
