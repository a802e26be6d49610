"""The registry's tasks as environments the model acts in: observations in, tokens out, and back.

Gato (Reed et al., 2022, Sec. 2.1, 2.3) turns each observation into tokens with the same rules
as its training data and reads actions back from the tokens it samples. For one task and one
model config, a `TaskCodec` does both directions:

* observations -> tokens: MuJoCo readings are mu-law companded and binned into the continuous
  range; Atari frames are preprocessed exactly as the collector did (80 x 80 RGB, box filter)
  and cut into 16 x 16 patches. The tokens of a timestep are laid out as in
  `gato_min.sequence` ([patches, values, '|', actions]), with the same local positions.
* tokens -> actions: a continuous action token is read as the centre of its bin (actions are
  not companded, so the centre lies in [-1, 1], inside the action space); a discrete action
  is the button id itself. Sampling is restricted to the ids a task can emit
  (`TaskCodec.action_ids`): the 1024 continuous bins, or the legal buttons [0, n).

`start_episode` starts an episode the way the data was collected (for Atari: 0-30 unrecorded
no-ops, seeded per episode), so scores compare with the reference returns.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from gato_min.data.tasks import ATARI_FRAME_SIZE, TaskSpec, get_task, make_env, preprocess_frame
from gato_min.positions import patch_intervals
from gato_min.sequence import ACTION, PAD, Batch, TimestepLayout
from gato_min.tokenize import Tokenizer, cut_patches

ATARI_NOOP_MAX = 30  # each Atari episode starts with 0..30 unrecorded no-ops (seeded per episode)


def start_episode(env, spec: TaskSpec, seed: int):
    """Reset `env` for the episode of seed `seed`; Atari then plays its seeded no-ops."""
    obs, _ = env.reset(seed=seed)
    if spec.family == "atari":  # with sticky actions off, Pong would otherwise be one fixed game
        for _ in range(np.random.default_rng([seed, 1]).integers(0, ATARI_NOOP_MAX + 1)):
            obs, *_ = env.step(0)
    return obs


def model_observation(spec: TaskSpec, obs) -> np.ndarray:
    """What the model sees of a raw environment observation: a float32 vector, or the
    preprocessed uint8 frame."""
    if spec.family == "atari":
        return preprocess_frame(obs)
    return np.asarray(obs, dtype=np.float32)


def task_layout(spec: TaskSpec, patch_size: int = 16) -> TimestepLayout:
    """The tokens of one timestep of task `spec` (as `TokenizedEpisodes` lays out its data)."""
    if spec.family == "atari":
        return TimestepLayout(tuple(spec.observation_shape), 0, 1, True, patch_size)
    return TimestepLayout(None, int(np.prod(spec.observation_shape)), spec.action_dim, False, patch_size)


class TaskCodec:
    """Observation -> tokens and action tokens -> environment action, for one task and config."""

    def __init__(self, task: str, config):
        self.spec = get_task(task)
        self.config = config
        self.tokenizer = Tokenizer(config)
        self.layout = task_layout(self.spec, config.patch_size)
        self.kinds = self.layout.kinds()
        self.local = self.layout.local_positions(config.action_positions)
        vocab = config.vocab
        if self.spec.discrete_actions:
            self.action_ids = (0, self.spec.action_dim)  # legal buttons: ids [0, n)
        else:
            self.action_ids = (vocab.continuous_offset, vocab.continuous_offset + vocab.num_bins)
        if self.layout.image_shape is not None:
            rows, cols = patch_intervals(*self.layout.grid, config.position_bins)
            self.row_ranges, self.col_ranges = torch.from_numpy(rows), torch.from_numpy(cols)

    @property
    def action_tokens(self) -> int:
        return self.layout.action_dim

    @property
    def observation_tokens(self) -> int:
        return self.layout.num_observation_tokens

    def check_observations(self, observations: np.ndarray) -> np.ndarray:
        """(B, *observation_shape) model observations, checked against the task's spec."""
        observations = np.asarray(observations)
        expected = tuple(self.spec.observation_shape)
        if observations.ndim != len(expected) + 1 or observations.shape[1:] != expected:
            raise ValueError(f"task {self.spec.name!r} expects observations of shape (batch, {', '.join(map(str, expected))})"
                             f", got {observations.shape}; is the environment the task's {self.spec.env_id}"
                             + (f" with frames preprocessed to {ATARI_FRAME_SIZE}?" if self.spec.family == "atari" else "?"))
        if self.spec.family == "atari" and observations.dtype != np.uint8:
            raise ValueError(f"task {self.spec.name!r} expects uint8 frames, got {observations.dtype}")
        return observations

    def observation_batch(self, observations: np.ndarray, previous_actions: np.ndarray | None = None) -> Batch:
        """The tokens [previous action tokens, observation tokens, '|'] of B environments.

        `previous_actions` (B, k) are the last k action ids of the previous timestep that were
        not fed yet (the agent feeds the last one together with the next observation)."""
        observations = self.check_observations(observations)
        size = len(observations)
        n_obs = self.observation_tokens
        prefix = 0 if previous_actions is None else previous_actions.shape[1]
        obs_ids = np.zeros((size, n_obs), np.int64)
        patches = None
        if self.layout.image_shape is not None:
            patches = torch.from_numpy(cut_patches(observations, self.config.patch_size))
        else:
            obs_ids[:] = self.tokenizer.encode_continuous(observations).reshape(size, n_obs)
        parts = [obs_ids, np.full((size, 1), self.config.vocab.separator_id, np.int64)]
        kinds = self.kinds[:n_obs + 1]
        local = self.local[:n_obs + 1]
        if prefix:
            parts.insert(0, np.asarray(previous_actions, dtype=np.int64))
            kinds = np.concatenate([self.kinds[len(self.kinds) - prefix:], kinds])
            local = np.concatenate([self.local[len(self.local) - prefix:], local])
        return _batch(np.concatenate(parts, axis=1), kinds, local, patches, prefix, self)

    def timesteps_batch(self, observations: list[np.ndarray], action_ids: list[np.ndarray]) -> Batch:
        """Whole timesteps [observation tokens, '|', action tokens] of B environments, as the
        training data lays them out: row b holds the `len(observations[b])` timesteps of
        observations[b] ((k, *observation_shape)) and action_ids[b] ((k, action_tokens)),
        right-aligned; rows with fewer timesteps are padded in front (padding kind)."""
        size, n_obs, per_step = len(observations), self.observation_tokens, self.layout.tokens_per_timestep
        steps = max(len(obs) for obs in observations)
        ids = np.zeros((size, steps, per_step), np.int64)
        kinds = np.tile(self.kinds, (size, steps, 1))
        frames = np.zeros((size, steps, *self.spec.observation_shape),
                          np.uint8 if self.layout.image_shape is not None else np.float32)
        for row, (obs, actions) in enumerate(zip(observations, action_ids)):
            count = len(obs)
            if count != len(actions):
                raise ValueError(f"row {row} has {count} observations but {len(actions)} actions")
            if count:
                frames[row, steps - count:] = self.check_observations(obs)
                ids[row, steps - count:, n_obs + 1:] = np.asarray(actions, dtype=np.int64).reshape(count, -1)
            kinds[row, :steps - count] = PAD
        ids[:, :, n_obs] = self.config.vocab.separator_id
        patches = None
        if self.layout.image_shape is not None:
            patches = torch.from_numpy(cut_patches(frames.reshape(size * steps, *frames.shape[2:]),
                                                   self.config.patch_size))
        else:
            ids[:, :, :n_obs] = self.tokenizer.encode_continuous(frames).reshape(size, steps, n_obs)
        ids[kinds == PAD] = 0
        return _batch(ids.reshape(size, -1), kinds.reshape(size, -1), np.tile(self.local, steps), patches, 0, self,
                      patch_stride=per_step)

    def action_batch(self, ids: np.ndarray | torch.Tensor, index: int) -> Batch:
        """Action token number `index` of the current timestep, one per environment: (B,) ids."""
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1, 1).numpy()
        slot = self.observation_tokens + 1 + index
        return _batch(ids, self.kinds[slot:slot + 1], self.local[slot:slot + 1], None, 0, self)

    def decode_actions(self, ids: np.ndarray) -> np.ndarray:
        """(B, action_tokens) sampled ids -> environment actions: (B,) int64 buttons or
        (B, action_dim) float32 bin centres in [-1, 1]."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1, self.action_tokens)
        low, high = self.action_ids
        outside = (ids < low) | (ids >= high)
        if outside.any():
            raise ValueError(f"action ids of task {self.spec.name!r} must lie in [{low}, {high}); "
                             f"found {ids[outside][0]}")
        if self.spec.discrete_actions:
            return ids[:, 0].copy()
        return self.tokenizer.decode_actions(ids).reshape(len(ids), -1).astype(np.float32)

    def encode_actions(self, actions: np.ndarray) -> np.ndarray:
        """Environment actions -> (B, action_tokens) ids (the inverse of `decode_actions` up to
        the bin width)."""
        actions = np.asarray(actions)
        if self.spec.discrete_actions:
            return self.tokenizer.encode_discrete(actions).reshape(-1, 1)
        return self.tokenizer.encode_actions(actions).reshape(-1, self.action_tokens)


def _batch(ids: np.ndarray, kinds: np.ndarray, local: np.ndarray, patches: torch.Tensor | None, patch_offset: int,
           codec: TaskCodec, patch_stride: int = 0) -> Batch:
    """A Batch of B rows of tokens; `kinds` is one row's layout (tiled to every row) or (B, L).
    `patches` (B * S, N, C, P, P) are S frames per row: frame s fills the N columns from
    `patch_offset + s * patch_stride`."""
    size, length = ids.shape
    kinds = np.broadcast_to(kinds, (size, length))
    if patches is not None:
        frames, count = patches.shape[0] // size, patches.shape[1]
        starts = (torch.arange(size)[:, None] * length + patch_offset
                  + patch_stride * torch.arange(frames)[None, :]).reshape(-1)
        index = (starts[:, None] + torch.arange(count)[None, :]).reshape(-1)
        flat = patches.reshape(-1, *patches.shape[2:])
        rows, cols = codec.row_ranges.repeat(size * frames, 1), codec.col_ranges.repeat(size * frames, 1)
    else:
        flat = torch.zeros((0, 3, codec.config.patch_size, codec.config.patch_size), dtype=torch.uint8)
        index = torch.zeros(0, dtype=torch.long)
        rows = cols = torch.zeros((0, 2), dtype=torch.long)
    none = torch.zeros(size, dtype=torch.bool)
    return Batch(token_ids=torch.from_numpy(np.ascontiguousarray(ids, dtype=np.int64)),
                 token_kinds=torch.from_numpy(kinds.astype(np.int64)),
                 local_positions=torch.from_numpy(np.tile(local, (size, 1)).astype(np.int64)),
                 loss_mask=torch.from_numpy(kinds == ACTION), attention_mask=torch.from_numpy(kinds != PAD),
                 patches=flat, patch_index=index, patch_row_ranges=rows, patch_col_ranges=cols,
                 prompted=none, prompt_from_end=none.clone())


RENDER_SIZE = 192  # side of MuJoCo's offscreen frames, in pixels


def make_task_env(task: str, render: bool = False, **overrides):
    """The task's gymnasium env; `render=True` asks for rgb_array frames. MuJoCo then renders
    offscreen: MUJOCO_GL defaults to egl here (set it to osmesa where only that works), because
    gymnasium's first choice without it, a GLFW window, aborts the process on a machine
    without a display instead of raising an error."""
    if render:
        overrides.setdefault("render_mode", "rgb_array")
        if get_task(task).family == "mujoco":
            os.environ.setdefault("MUJOCO_GL", "egl")
            overrides.setdefault("width", RENDER_SIZE)
            overrides.setdefault("height", RENDER_SIZE)
    return make_env(task, **overrides)
