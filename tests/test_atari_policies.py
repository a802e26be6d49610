"""The scripted Atari players (gato_min.data.atari_policies)."""

import numpy as np
import pytest

from gato_min.data.atari_policies import ATARI_POLICIES, BreakoutPolicy, PongPolicy
from gato_min.envs import get_task, make_env, start_episode


def _play(task, policy, steps):
    env = make_env(task)
    env.reset(seed=0)
    actions, total = [], 0.0
    for _ in range(steps):
        action = policy.act(env.unwrapped.ale.getRAM())
        assert 0 <= action < env.action_space.n
        actions.append(action)
        _, reward, terminated, truncated, _ = env.step(action)
        total += reward
        if terminated or truncated:
            break
    env.close()
    return actions, total


def test_breakout_expert_scores_quickly():
    _, total = _play("breakout", BreakoutPolicy(), 800)
    assert total >= 20


def test_the_breakout_expert_moves_as_soon_as_it_knows_the_catch():
    """A ball falls far from the paddle, about 18 steps from it: the early player pushes towards
    the catch at once; the last-moment player (early=False) still waits, as it may."""
    buttons = {}
    for early in (True, False):
        player = BreakoutPolicy(early=early)
        for ball_x, ball_y in ((100, 100), (102, 104), (104, 108)):
            ram = np.zeros(128, np.uint8)
            ram[72], ram[99], ram[101] = 60, ball_x, ball_y  # paddle x, ball x, ball y
            buttons.setdefault(early, []).append(player.remember(player.plan(ram)))
    assert buttons[True][1:] == [2, 2] and buttons[False] == [0, 0, 0]  # 2 = RIGHT, towards the catch


def test_pong_expert_wins_the_first_points():
    _, total = _play("pong", PongPolicy(), 1200)
    assert total >= 2


@pytest.mark.parametrize("task", sorted(ATARI_POLICIES))
def test_epsilon_players_are_reproducible_per_seed(task):
    first, _ = _play(task, ATARI_POLICIES[task](epsilon=0.3, seed=5), 150)
    again, _ = _play(task, ATARI_POLICIES[task](epsilon=0.3, seed=5), 150)
    other, _ = _play(task, ATARI_POLICIES[task](epsilon=0.3, seed=6), 150)
    assert first == again and first != other


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="epsilon"):
        PongPolicy(epsilon=1.5)
    with pytest.raises(ValueError, match="ram"):
        BreakoutPolicy().act(np.zeros(64, np.uint8))


@pytest.mark.parametrize("task", sorted(ATARI_POLICIES))
def test_a_random_button_leaves_the_plan_and_the_ball_tracking_current(task):
    """epsilon-greedy play (the DART collection of chapter 10): at every step the player plans as
    a noise-free twin in its place would, keeps that button in `intended`, and tracks the ball
    even on the steps where it plays a random button; the paddle model remembers what was played."""
    import copy

    env = make_env(task)
    env.reset(seed=0)
    player = ATARI_POLICIES[task](epsilon=0.5, seed=3)
    ball = {"pong": (49, 54), "breakout": (99, 101)}[task]
    explored = 0
    for _ in range(300):
        ram = env.unwrapped.ale.getRAM()
        twin = copy.deepcopy(player)
        twin.epsilon = 0.0
        twin.rng = copy.deepcopy(player.rng)
        twin.rng.random()  # the player's explore draw comes first; keep the twins' draws aligned
        action = player.act(ram)
        assert player.intended == twin.act(ram)
        assert player.past[0] == player.PUSH[action]
        if ram[ball[1]] != 0:
            assert player.prev_ball == (int(ram[ball[0]]), int(ram[ball[1]]))
        explored += action != player.intended
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    env.close()
    assert 60 <= explored <= 150  # about 0.5 * (n - 1) / n of 300 steps play another button


@pytest.mark.parametrize("task", sorted(ATARI_POLICIES))
def test_the_ball_survives_the_80_by_80_box_filter(task):
    """The registry's frame decision (gato_min.envs): at 80 x 80 the ball never vanishes."""
    from gato_min.data.atari_policies import ball_contrast

    contrasts = ball_contrast(task, steps=300)
    assert len(contrasts) > 50 and contrasts.min() >= 30  # of 255 levels
    with pytest.raises(KeyError, match="no ball colour known"):
        ball_contrast("halfcheetah")


def test_the_state_copy_reads_the_planner_s_state_and_runs_dart_then_dagger():
    """gato_min.data.state_copy: the features are what the expert's planner reads, the labels
    its planned buttons; DART rounds are the expert's games, DAgger rounds the copy's."""
    from gato_min.data.state_copy import FEATURES, play, state_copy_experiment

    features, labels, _ = play("pong", 3, epsilon=0.0, max_steps=80)
    assert features.shape == (80, len(FEATURES)) and labels.shape == (80,)
    env = make_env("pong")
    start_episode(env, get_task("pong"), 3)
    expert, planned = PongPolicy(), []
    for _ in range(80):  # at epsilon 0 the labels are the expert's own play, step for step
        planned.append(expert.act(env.unwrapped.ale.getRAM()))
        env.step(planned[-1])
    env.close()
    assert labels.tolist() == planned
    pushes = [0, 0, 0] + [expert.PUSH[b] for b in planned]  # three before the first step, then each step's
    assert features[:, 5:].tolist() == [[pushes[i + 2], pushes[i + 1], pushes[i]] for i in range(80)]
    rows = state_copy_experiment("breakout", games=1, dagger_rounds=1, eval_games=1, fit_steps=5, max_steps=40)
    assert [r["round"] for r in rows] == [0, 1] and rows[1]["labelled_states"] == 80
    assert all(np.isfinite(r["probe_loss"]) and len(r["returns"]) == 1 for r in rows)
    with pytest.raises(KeyError, match="no state features"):
        play("halfcheetah", 0)
