"""What acting needs beyond the training layout: observations in, legal action ids, actions out.

Gato (Reed et al., 2022, Sec. 2.1, 2.3) turns each observation into tokens with the same rules
as its training data and reads actions back from the tokens it samples. For one task and one
model config, a `TaskCodec` does what is specific to acting, and nothing else:

* the tokens it feeds are cut from `gato_min.sequence.build_batch` rows, the one builder that
  training uses (an observation with the previous action token before it, one action token, a
  rebuilt window of whole timesteps), so the agent acts on exactly the tokens training saw;
* tokens -> actions: a continuous action token is read as the centre of its bin in [-1, 1]
  (actions are not companded) and scaled to the task's action range; a discrete action is the
  button id itself. Sampling is restricted to the ids a task can emit (`TaskCodec.action_ids`):
  the continuous bins, or the legal buttons [0, n).
"""

from __future__ import annotations

import numpy as np
import torch

from gato_min.batch import Batch
from gato_min.envs import get_task
from gato_min.sequence import TimestepLayout, Timesteps, build_batch, encode_actions, encode_timesteps
from gato_min.tokenize import Tokenizer


class TaskCodec:
    """Observation -> tokens and action tokens -> environment action, for one task and config."""

    def __init__(self, task: str, config):
        self.spec = get_task(task)
        self.config = config
        self.tokenizer = Tokenizer(config)
        self.layout = TimestepLayout.for_task(self.spec, config.patch_size, config.return_conditioning)
        vocab = config.vocab
        if self.spec.discrete_actions:
            self.action_ids = (0, self.spec.action_dim)  # legal buttons: ids [0, n)
        else:
            self.action_ids = (vocab.continuous_offset, vocab.continuous_offset + vocab.num_bins)

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
            raise ValueError(
                f"task {self.spec.name!r} expects observations of shape (batch, {', '.join(map(str, expected))})"
                f", got {observations.shape}; is the environment the task's {self.spec.env_id}"
                + (f" with frames preprocessed to {self.spec.frame_size}?" if self.spec.image_observations else "?")
            )
        if self.spec.image_observations and observations.dtype != np.uint8:
            raise ValueError(f"task {self.spec.name!r} expects uint8 frames, got {observations.dtype}")
        return observations

    def timesteps(
        self,
        observations: np.ndarray | None,
        action_ids: np.ndarray | None = None,
        count: int | None = None,
        returns_to_go: np.ndarray | None = None,
    ) -> Timesteps:
        """Timesteps of model observations and their action ids (None: not known yet), and the
        returns-to-go (B,) a return-conditioned model reads. With no observations, `count` blank
        ones: placeholder ids and patches for timesteps of which only the action tokens are fed
        (they are cut away by `Batch.window`, never encoded)."""
        if observations is None:
            layout = self.layout
            patches = None
            if layout.image_shape is not None:
                patches = np.zeros(
                    (count, layout.num_patches, layout.image_shape[2], layout.patch_size, layout.patch_size), np.uint8
                )
            steps = Timesteps(
                np.zeros((count, 0), np.int32),
                patches,
                np.zeros((count, layout.num_values), np.int32),
                np.zeros((count, layout.action_dim), np.int32),
                np.zeros((count, layout.return_tokens), np.int32),
            )
        else:
            observations = self.check_observations(observations)
            if self.layout.return_tokens and returns_to_go is None:
                raise ValueError(
                    f"the model is return-conditioned: acting in {self.spec.name!r} needs the return still to "
                    "come (a target return, less the rewards collected so far)"
                )
            steps = encode_timesteps(self.layout, self.tokenizer, observations, returns_to_go=returns_to_go)
        if action_ids is not None:
            steps.action_ids = np.asarray(action_ids, dtype=np.int32).reshape(len(steps), self.action_tokens)
        return steps

    def observation_batch(
        self,
        observations: np.ndarray,
        previous_actions: np.ndarray | None = None,
        returns_to_go: np.ndarray | None = None,
    ) -> Batch:
        """The tokens [previous action tokens, observation tokens, '|'] of B environments (with
        the return-to-go token first for a return-conditioned model: `returns_to_go` (B,)).

        `previous_actions` (B, k) are the last k action ids of the previous timestep that were
        not fed yet (the agent feeds the last one together with the next observation). Built as
        two timesteps per row (the previous one holding those ids, the current one), then cut."""
        observations = self.check_observations(observations)
        size, per_step, observed = len(observations), self.layout.tokens_per_timestep, self.observation_tokens + 1
        current = self.timesteps(observations, returns_to_go=returns_to_go)
        if previous_actions is None:
            batch = build_batch(self.layout, self.config, current, np.arange(size)[:, None], np.ones((size, 1), bool))
            return batch.window(0, observed)
        prefix = previous_actions.shape[1]
        ids = np.zeros((size, self.action_tokens), np.int64)
        ids[:, self.action_tokens - prefix :] = previous_actions
        previous = self.timesteps(None, ids, count=size)
        steps = np.stack([np.arange(size), size + np.arange(size)], axis=1)
        batch = build_batch(
            self.layout, self.config, Timesteps.concat([previous, current]), steps, np.ones((size, 2), bool)
        )
        return batch.window(per_step - prefix, per_step + observed)

    def timesteps_batch(
        self,
        observations: list[np.ndarray],
        action_ids: list[np.ndarray],
        returns_to_go: list[np.ndarray] | None = None,
    ) -> Batch:
        """Whole timesteps [observation tokens, '|', action tokens] of B environments, as the
        training data lays them out: row b holds the `len(observations[b])` timesteps of
        observations[b] ((k, *observation_shape)) and action_ids[b] ((k, action_tokens)) (and
        returns_to_go[b] (k,) for a return-conditioned model), right-aligned; rows with fewer
        timesteps are padded in front."""
        counts = [len(obs) for obs in observations]
        for row, (count, actions) in enumerate(zip(counts, action_ids)):
            if count != len(actions):
                raise ValueError(f"row {row} has {count} observations but {len(actions)} actions")
        steps = max(counts)
        returns = returns_to_go if returns_to_go is not None else [None] * len(observations)
        filled = [(obs, ids, rtg) for obs, ids, rtg in zip(observations, action_ids, returns) if len(obs)]
        timesteps = self.timesteps(
            np.concatenate([obs for obs, _, _ in filled]),
            np.concatenate([np.asarray(ids).reshape(len(ids), -1) for _, ids, _ in filled]),
            returns_to_go=None if returns_to_go is None else np.concatenate([rtg for _, _, rtg in filled]),
        )
        slot = np.arange(steps)[None, :]
        first = np.cumsum([0] + counts[:-1])[:, None]
        pad = steps - np.asarray(counts)[:, None]
        valid = slot >= pad
        index = np.where(valid, first + slot - pad, 0)
        return build_batch(self.layout, self.config, timesteps, index, valid)

    def action_batch(self, ids: np.ndarray | torch.Tensor, index: int) -> Batch:
        """Action token number `index` of the current timestep, one per environment: (B,) ids."""
        ids = torch.as_tensor(ids, dtype=torch.long).reshape(-1).numpy()
        actions = np.zeros((len(ids), self.action_tokens), np.int64)
        actions[:, index] = ids
        batch = build_batch(
            self.layout,
            self.config,
            self.timesteps(None, actions, count=len(ids)),
            np.arange(len(ids))[:, None],
            np.ones((len(ids), 1), bool),
        )
        slot = self.layout.first_action + index
        return batch.window(slot, slot + 1)

    def decode_actions(self, ids: np.ndarray) -> np.ndarray:
        """(B, action_tokens) sampled ids -> environment actions: (B,) int64 buttons or
        (B, action_dim) float32 bin centres, scaled to the task's action range."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1, self.action_tokens)
        low, high = self.action_ids
        outside = (ids < low) | (ids >= high)
        if outside.any():
            raise ValueError(
                f"action ids of task {self.spec.name!r} must lie in [{low}, {high}); found {ids[outside][0]}"
            )
        if self.spec.discrete_actions:
            return ids[:, 0].copy()
        unit = self.tokenizer.decode_actions(ids).reshape(len(ids), -1)
        return self.spec.action_from_unit(unit).astype(np.float32)

    def encode_actions(self, actions: np.ndarray) -> np.ndarray:
        """Environment actions -> (B, action_tokens) ids (the inverse of `decode_actions` up to
        the bin width)."""
        return encode_actions(self.layout, self.tokenizer, actions, self.spec).astype(np.int64)
