"""Can the scripted Atari expert be copied at all? A copy that reads the true state.

A pixel model has to find the ball and the paddle before it can copy the expert
(`gato_min.data.atari_policies`). This module removes that part: a small MLP reads what the
expert's planner reads, from the console's memory (ball x and y, the ball's velocity since the
last step, the paddle's position and the last three pushes), and is trained by cross-entropy on
the expert's planned buttons, the same labels the pixel model gets. If even this copy cannot
play, the limit is the expert's behaviour, not the pixels.

Two ways to collect the labelled states:

* DART (Laskey et al., 2017), as the pixel data: the expert plays with chance `epsilon` of a
  random button, and every state is labelled with its planned button;
* DAgger (Ross et al., 2011): the copy itself plays, sampling its buttons, while the expert plans
  alongside and labels the states the copy reaches; rounds of play, relabel, refit on everything.

    python -m gato_min state-copy --task pong --dagger 3
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from gato_min.data.atari_policies import ATARI_POLICIES
from gato_min.envs import get_task, make_env, start_episode
from gato_min.settings import check_number

# RAM addresses of (ball x, ball y, paddle position) (see gato_min.data.atari_policies)
STATE_RAM = {"pong": (49, 54, 51), "breakout": (99, 101, 72)}
FEATURES = ("ball x", "ball y", "paddle", "ball dx", "ball dy", "push t-1", "push t-2", "push t-3")


class StateCopy:
    """An MLP from the expert's state features to its button, with the features' scaling."""

    def __init__(self, task: str, features: np.ndarray, labels: np.ndarray, steps: int = 3000, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        x = torch.as_tensor(features, dtype=torch.float32)
        y = torch.as_tensor(labels, dtype=torch.long)
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        n_actions = get_task(task).action_dim
        self.net = torch.nn.Sequential(
            torch.nn.Linear(len(FEATURES), 256), torch.nn.GELU(), torch.nn.Linear(256, 256), torch.nn.GELU(),
            torch.nn.Linear(256, n_actions),
        )  # fmt: skip
        optimizer = torch.optim.Adam(self.net.parameters(), lr=1e-3)
        for _ in range(steps):
            batch = torch.randint(0, len(y), (512,), generator=generator)
            loss = F.cross_entropy(self.logits(x[batch]), y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        return self.net((features - self.mean) / self.std)

    @torch.no_grad()
    def loss(self, features: np.ndarray, labels: np.ndarray) -> float:
        """Cross-entropy (nats) of the copy on these labelled states."""
        x = torch.as_tensor(features, dtype=torch.float32)
        return float(F.cross_entropy(self.logits(x), torch.as_tensor(labels, dtype=torch.long)))

    @torch.no_grad()
    def act(self, features: list, rng: np.random.Generator, temperature: float) -> int:
        logits = self.logits(torch.tensor([features], dtype=torch.float32))[0].double()
        if temperature == 0:
            return int(logits.argmax())
        probs = torch.softmax(logits / temperature, 0).numpy()
        return int(rng.choice(len(probs), p=probs / probs.sum()))


def play(
    task: str,
    seed: int,
    copy: StateCopy | None = None,
    epsilon: float = 0.2,
    temperature: float = 1.0,
    max_steps: int = 6000,
    player: dict | None = None,
) -> tuple[np.ndarray, np.ndarray, float]:
    """One game from episode seed `seed` (the collection's no-op start) played by `copy`, or by
    the expert at `epsilon` when `copy` is None; the expert (made with the options `player`)
    plans at every step, and its planned button labels the state. Returns (features (T, 8),
    planned buttons (T,), the game's return)."""
    if task not in STATE_RAM:
        raise KeyError(f"no state features for task {task!r}; known: {sorted(STATE_RAM)}")
    spec = get_task(task)
    ball_x, ball_y, paddle = STATE_RAM[task]
    env = make_env(task)
    start_episode(env, spec, seed)
    expert = ATARI_POLICIES[task](epsilon=0.0, seed=seed, **(player or {}))
    rng = np.random.default_rng([seed, 3])
    previous, features, labels, total = None, [], [], 0.0
    for _ in range(max_steps):
        ram = env.unwrapped.ale.getRAM()
        ball = (int(ram[ball_x]), int(ram[ball_y]))
        velocity = (ball[0] - previous[0], ball[1] - previous[1]) if previous else (0, 0)
        row = [*ball, int(ram[paddle]), *velocity, *expert.past]
        previous = ball
        planned = expert.plan(ram)
        if copy is not None:
            button = copy.act(row, rng, temperature)
        else:
            button = int(rng.integers(spec.action_dim)) if rng.random() < epsilon else planned
        expert.remember(button)
        features.append(row)
        labels.append(planned)
        _, reward, terminated, truncated, _ = env.step(button)
        total += float(reward)
        if terminated or truncated:
            break
    env.close()
    return np.asarray(features, np.float32), np.asarray(labels, np.int64), total


def state_copy_experiment(
    task: str = "pong",
    games: int = 3,
    dagger_rounds: int = 0,
    eval_games: int = 3,
    epsilon: float = 0.2,
    fit_steps: int = 3000,
    max_steps: int = 6000,
    temperature: float = 1.0,
    player: dict | None = None,
) -> list[dict]:
    """Fit a copy on `games` DART games, then `dagger_rounds` rounds of DAgger (`games` games of
    the copy's own play each, relabelled, refit on all); after each fit the copy plays
    `eval_games` games from seeds 1000.. Returns one row per fit: labelled states, the loss on
    the last game collected (before it joined the fit; for the first fit, on a held-out DART
    game), the marginal loss there, and the returns. `player`: options of the expert's class
    (Breakout: {"early": False} for the last-moment player)."""
    for name, value in (("games", games), ("eval_games", eval_games), ("fit_steps", fit_steps)):
        check_number(name, value, minimum=1, integer=True)
    check_number("dagger_rounds", dagger_rounds, minimum=0, integer=True)
    parts = [play(task, 100 + g, epsilon=epsilon, max_steps=max_steps, player=player)[:2] for g in range(games + 1)]
    probe = parts.pop()  # a held-out DART game
    rows, copy = [], None
    for round_ in range(dagger_rounds + 1):
        if round_:
            fresh = [
                play(task, 200 + 100 * round_ + g, copy, max_steps=max_steps, player=player)[:2] for g in range(games)
            ]
            probe = fresh[-1]
            parts += fresh
        features = np.concatenate([p[0] for p in parts])
        labels = np.concatenate([p[1] for p in parts])
        probe_loss = None if copy is None else copy.loss(*probe)
        copy = StateCopy(task, features, labels, fit_steps)
        counts = np.bincount(labels, minlength=get_task(task).action_dim) + 1
        marginal = float(-np.log(counts[probe[1]] / counts.sum()).mean())
        returns = [
            play(task, 1000 + i, copy, temperature=temperature, max_steps=max_steps, player=player)[2]
            for i in range(eval_games)
        ]
        rows.append(
            {
                "round": round_,
                "labelled_states": int(len(labels)),
                "probe_loss": copy.loss(*probe) if probe_loss is None else probe_loss,
                "marginal_loss": marginal,
                "returns": returns,
            }
        )
    return rows
