"""The peers gato_min's learning speed is measured against: a Decision Transformer and an MLP.

Both read the same `Episode`s gato_min trains on and play the same environments, so that
`python -m gato_min bench-learn` can put their scores beside gato_min's at equal wall time.

* `DecisionTransformer` (Chen et al., 2021, the gym setting of their paper and code): each
  timestep is three embeddings, not tokens: the return-to-go (scaled by 1/1000), the
  standardized state and the action, each through its own linear layer, plus a learned
  embedding of the timestep's index in its episode. A causal GPT-style stack (3 layers of
  128, 1 head, dropout 0.1) reads K = 20 timesteps (60 positions); the hidden state at each
  state position is mapped by a linear layer and tanh to the action, trained by mean squared
  error. AdamW at 1e-4 with weight decay 1e-4, a linear warm-up of 10,000 steps, batches of
  64 windows, gradients clipped to norm 0.25 (`DTSettings`). At evaluation it is given a
  target return and subtracts the rewards it collects. Written here from the paper's
  description; the architecture follows the published shape, not its code.
* `MLPRegressor`: a 2-layer MLP (256 units) from one standardized observation to the
  action, mean squared error, Adam at 1e-3 on batches of 256: the floor any sequence model
  has to reach (chapter 08 shows it plays like the expert after seconds of training).

Continuous actions only: a peer predicts the whole action vector at once, in [-1, 1]
(`TaskSpec.action_to_unit` on the data, `action_from_unit` before the environment).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from gato_min.data.episodes import Episode
from gato_min.envs import get_task, make_env, model_observation, start_episode
from gato_min.sequence import returns_to_go


@dataclass(frozen=True)
class DTSettings:
    hidden: int = 128  # embedding width
    n_layer: int = 3  # transformer blocks
    n_head: int = 1  # attention heads
    context: int = 20  # K, timesteps the model reads
    dropout: float = 0.1  # on embeddings, attention weights and residual branches
    lr: float = 1e-4  # AdamW peak learning rate
    weight_decay: float = 1e-4  # AdamW weight decay
    warmup_steps: int = 10_000  # linear warm-up, then constant
    batch_size: int = 64  # windows per step
    grad_clip: float = 0.25  # gradient-norm clip
    return_scale: float = 1000.0  # returns-to-go are divided by this
    max_episode_steps: int = 1000  # size of the timestep embedding table


class _Block(nn.Module):
    """A pre-norm GPT block with dropout, attending over a causal, padding-aware mask."""

    def __init__(self, width: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.ln1, self.ln2 = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.proj = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(), nn.Linear(4 * width, width))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(batch, length, 3, self.heads, -1).permute(2, 0, 3, 1, 4)
        dropout = self.dropout if self.training else 0.0
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout)
        x = x + self.drop(self.proj(y.transpose(1, 2).reshape(batch, length, width)))
        return x + self.drop(self.mlp(self.ln2(x)))


class DecisionTransformer(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, settings: DTSettings = DTSettings()):
        super().__init__()
        self.settings = settings
        width = settings.hidden
        self.embed_time = nn.Embedding(settings.max_episode_steps, width)
        self.embed_return = nn.Linear(1, width)
        self.embed_state = nn.Linear(state_dim, width)
        self.embed_action = nn.Linear(action_dim, width)
        self.embed_ln = nn.LayerNorm(width)
        self.drop = nn.Dropout(settings.dropout)
        self.blocks = nn.ModuleList(_Block(width, settings.n_head, settings.dropout) for _ in range(settings.n_layer))
        self.ln_f = nn.LayerNorm(width)
        self.predict_action = nn.Sequential(nn.Linear(width, action_dim), nn.Tanh())

    def forward(self, returns, states, actions, timesteps, valid) -> torch.Tensor:
        """(B, K, action_dim) predicted actions, each from the state token of its timestep.
        returns (B, K, 1), states (B, K, S), actions (B, K, A), timesteps (B, K) long, valid
        (B, K) bool (False: padding, left of the real timesteps)."""
        batch, steps = timesteps.shape
        time = self.embed_time(timesteps)
        tokens = torch.stack(
            [self.embed_return(returns) + time, self.embed_state(states) + time, self.embed_action(actions) + time],
            dim=2,
        ).reshape(batch, 3 * steps, -1)
        keys = valid.repeat_interleave(3, dim=1)
        causal = torch.ones(3 * steps, 3 * steps, dtype=torch.bool, device=tokens.device).tril()
        mask = (causal[None] & keys[:, None, :]) | torch.eye(3 * steps, dtype=torch.bool, device=tokens.device)
        x = self.drop(self.embed_ln(tokens))
        for block in self.blocks:
            x = block(x, mask[:, None])
        return self.predict_action(self.ln_f(x)[:, 1::3])


class _Standardizer:
    """Observation mean and standard deviation of the training data."""

    def __init__(self, observations: np.ndarray):
        self.mean = observations.mean(axis=0).astype(np.float32)
        self.std = (observations.std(axis=0) + 1e-6).astype(np.float32)

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        return ((observations - self.mean) / self.std).astype(np.float32)


class DTData:
    """Episodes flattened for window sampling: states, unit actions, returns-to-go, timesteps."""

    def __init__(self, episodes: list[Episode], task: str, settings: DTSettings):
        if not episodes:
            raise ValueError("DTData needs at least one episode")
        spec = get_task(task)
        if spec.discrete_actions or spec.image_observations:
            raise ValueError(f"the Decision Transformer peer handles vector observations and torques; {task!r} has not")
        self.settings = settings
        observations = np.concatenate([np.asarray(e.observations, np.float32) for e in episodes])
        self.standardize = _Standardizer(observations)
        self.states = self.standardize(observations)
        self.actions = np.concatenate([spec.action_to_unit(np.asarray(e.actions)) for e in episodes]).astype(np.float32)
        self.returns = (np.concatenate([returns_to_go(e.rewards) for e in episodes]) / settings.return_scale).astype(
            np.float32
        )
        lengths = np.array([len(e) for e in episodes])
        self.starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.ends = self.starts + lengths
        self.timesteps = np.concatenate([np.arange(n) for n in lengths]).clip(max=settings.max_episode_steps - 1)
        self.lengths = lengths
        self.best_return = float(max(e.episode_return for e in episodes))

    def sample(self, batch_size: int, rng: np.random.Generator) -> dict[str, torch.Tensor]:
        """`batch_size` windows of K timesteps, each starting at a uniformly drawn step of an
        episode drawn in proportion to its length; windows that run past the end are shorter
        and padded on the left."""
        K = self.settings.context
        episode = rng.choice(len(self.lengths), size=batch_size, p=self.lengths / self.lengths.sum())
        first = self.starts[episode] + (rng.random(batch_size) * self.lengths[episode]).astype(np.int64)
        count = np.minimum(K, self.ends[episode] - first)  # real timesteps in each window
        offset = np.arange(K)[None, :] - (K - count)[:, None]  # left padding: negative offsets
        valid = offset >= 0
        index = np.where(valid, first[:, None] + offset, 0)
        return {
            "returns": torch.from_numpy(self.returns[index] * valid)[..., None],
            "states": torch.from_numpy(self.states[index] * valid[..., None]),
            "actions": torch.from_numpy(self.actions[index] * valid[..., None]),
            "timesteps": torch.from_numpy(self.timesteps[index] * valid),
            "valid": torch.from_numpy(valid),
        }


def dt_loss(model: DecisionTransformer, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Mean squared error of the predicted actions over the real (unpadded) timesteps."""
    predicted = model(batch["returns"], batch["states"], batch["actions"], batch["timesteps"], batch["valid"])
    return ((predicted - batch["actions"]) ** 2)[batch["valid"]].mean()


class MLPRegressor(nn.Module):
    def __init__(self, state_dim: int, action_dim: int, hidden: int = 256):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(state_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, action_dim)
        )

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.net(states)


class DTPolicy:
    """A Decision Transformer acting in B environments at once, toward `target_return`."""

    def __init__(self, model: DecisionTransformer, data: DTData, action_dim: int, target_return: float):
        self.model, self.data, self.action_dim = model.eval(), data, action_dim
        self.target = target_return / data.settings.return_scale

    def reset(self, rows: int) -> None:
        self.history = [{"returns": [], "states": [], "actions": [], "step": 0} for _ in range(rows)]

    def start(self, row: int) -> None:
        self.history[row] = {"returns": [self.target], "states": [], "actions": [], "step": 0}

    @torch.no_grad()
    def act(self, observations: np.ndarray, rows: list[int]) -> np.ndarray:
        K = self.data.settings.context
        states = self.data.standardize(observations)
        batch = {key: [] for key in ("returns", "states", "actions", "timesteps", "valid")}
        for state, row in zip(states, rows):
            history = self.history[row]
            history["states"].append(state)
            history["actions"].append(np.zeros(self.action_dim, np.float32))  # the slot this step fills
            history["step"] += 1
            n, step = min(K, len(history["states"])), history["step"]
            pad = K - n
            batch["returns"].append(np.pad(np.array(history["returns"][-n:], np.float32), (pad, 0))[:, None])
            batch["states"].append(np.pad(np.stack(history["states"][-n:]), ((pad, 0), (0, 0))))
            batch["actions"].append(np.pad(np.stack(history["actions"][-n:]), ((pad, 0), (0, 0))))
            times = np.arange(step - n, step).clip(max=self.data.settings.max_episode_steps - 1)
            batch["timesteps"].append(np.pad(times, (pad, 0)))
            batch["valid"].append(np.arange(K) >= pad)
        tensors = {key: torch.from_numpy(np.stack(value)) for key, value in batch.items()}
        predicted = self.model(**tensors)[:, -1].numpy()  # tensors are float32: see DTData
        for action, row in zip(predicted, rows):
            self.history[row]["actions"][-1] = action
            self.history[row]["states"] = self.history[row]["states"][-K:]
            self.history[row]["actions"] = self.history[row]["actions"][-K:]
        return predicted

    def observe(self, row: int, reward: float) -> None:
        returns = self.history[row]["returns"]
        returns.append(returns[-1] - reward / self.data.settings.return_scale)
        del returns[: -self.data.settings.context]


class MLPPolicyPeer:
    """An `MLPRegressor` acting: one standardized observation in, one action out."""

    def __init__(self, model: MLPRegressor, standardize: _Standardizer):
        self.model, self.standardize = model.eval(), standardize

    def reset(self, rows: int) -> None:
        pass

    def start(self, row: int) -> None:
        pass

    @torch.no_grad()
    def act(self, observations: np.ndarray, rows: list[int]) -> np.ndarray:
        return self.model(torch.from_numpy(self.standardize(observations))).clamp(-1, 1).numpy()

    def observe(self, row: int, reward: float) -> None:
        pass


def play(
    policy,
    task: str,
    episodes: int,
    num_envs: int = 10,
    seed: int = 0,
    max_steps: int | None = None,
    progress: bool = False,
) -> np.ndarray:
    """Returns of `episodes` episodes of a peer policy; episode i starts from `seed + i`, as
    `GatoAgent.rollout` and the collector start theirs; `max_steps` cuts them short (tests)."""
    spec = get_task(task)
    num_envs = min(num_envs, episodes)
    envs = [make_env(task) for _ in range(num_envs)]
    policy.reset(num_envs)
    returns, lengths = np.zeros(episodes), np.zeros(episodes, dtype=np.int64)
    row_episode = np.full(num_envs, -1)
    observations: list = [None] * num_envs
    next_episode = 0
    bar = tqdm(total=episodes, desc=f"play {task}", unit="episode", disable=not progress)

    def begin(row: int) -> None:
        nonlocal next_episode
        row_episode[row] = next_episode if next_episode < episodes else -1
        if next_episode < episodes:
            observations[row] = model_observation(spec, start_episode(envs[row], spec, seed + next_episode))
            policy.start(row)
            next_episode += 1

    for row in range(num_envs):
        begin(row)
    while (row_episode >= 0).any():
        rows = [int(r) for r in np.flatnonzero(row_episode >= 0)]
        actions = policy.act(np.stack([observations[r] for r in rows]).astype(np.float32), rows)
        for row, action in zip(rows, actions):
            raw, reward, terminated, truncated, _ = envs[row].step(spec.action_from_unit(action))
            returns[row_episode[row]] += float(reward)
            lengths[row_episode[row]] += 1
            policy.observe(row, float(reward))
            observations[row] = model_observation(spec, raw)
            if terminated or truncated or (max_steps is not None and lengths[row_episode[row]] >= max_steps):
                bar.update(1)
                begin(row)
    bar.close()
    for env in envs:
        env.close()
    return returns


def train_for(step_fn, optimizer, marks: list[float], on_mark, clip: float, params, schedule=None) -> int:
    """Optimizer steps until the last of `marks` (seconds of training wall time) has passed,
    calling `on_mark(mark, step)` when the elapsed time first passes each (its own time is not
    counted); returns the steps taken. `schedule(step)` (1-based) gives the learning rate;
    `step_fn()` returns the loss."""
    marks, params = sorted(marks), list(params)
    step, start = 0, time.perf_counter()
    while marks:
        step += 1
        if schedule is not None:
            for group in optimizer.param_groups:
                group["lr"] = schedule(step)
        loss = step_fn()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        elapsed = time.perf_counter() - start
        while marks and elapsed >= marks[0]:
            paused = time.perf_counter()
            on_mark(marks.pop(0), step)
            start += time.perf_counter() - paused
    return step
