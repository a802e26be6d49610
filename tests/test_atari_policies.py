"""The scripted Atari players (gato_min.data.atari_policies)."""

import numpy as np
import pytest

from gato_min.data.atari_policies import ATARI_POLICIES, BreakoutPolicy, PongPolicy
from gato_min.envs import make_env


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
