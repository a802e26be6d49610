"""Training windows: random windows of a task's episodes, a quarter of them prompted.

Gato (Reed et al., 2022, Sec. 2.3) trains on windows of L tokens. For 25 % of the sequences a
prompt from another episode of the same task and source is put in front; half of the prompts
are the end of that episode, half a uniformly placed piece of it.

How gato_min does it (`SequenceSampler`): windows start at timestep boundaries, K = L //
tokens_per_timestep whole timesteps, the rest padded; an episode shorter than K gives a shorter,
padded window. A task may cut its windows shorter (`window_timesteps`, beyond the paper, chapter
11): K is then that many timesteps and a window is exactly K timesteps of tokens, so that one
network can train each task at its own length. The sampler only draws timestep indices (numpy,
no per-sample loop); the tokens come from `gato_min.sequence.build_batch`, the builder acting
uses too. Decisions (the paper is silent): a prompted sequence gives `prompt_share` (half) of
its K timesteps to the prompt and the rest to the sequence itself; the loss also counts the
prompt's action tokens (they are logged actions of the same task); a task with a single episode
prompts from that same episode; text streams are never prompted.
"""

from __future__ import annotations

import numpy as np

from gato_min.batch import Batch
from gato_min.sequence import TokenizedEpisodes, build_batch
from gato_min.settings import check_number


def prompt_timesteps(window_timesteps: int, prompt_share: float) -> int:
    """How many of a prompted window's `window_timesteps` go to its prompt: the `prompt_share`,
    rounded, leaving the sequence itself at least one (so a one-timestep window has no prompt)."""
    return max(0, min(int(round(window_timesteps * prompt_share)), window_timesteps - 1))


class SequenceSampler:
    """Random training windows (with prompts) of one task's tokenized episodes."""

    def __init__(self, data: TokenizedEpisodes, config, seed: int = 0, window_timesteps: int = 0):
        self.data, self.config = data, config
        self.rng = np.random.default_rng(seed)
        self.tokens_per_timestep = data.layout.tokens_per_timestep
        self.steps_per_window = config.context_length // self.tokens_per_timestep
        name = data.name or "this task"
        if self.steps_per_window < 1:
            raise ValueError(
                f"context_length={config.context_length} is shorter than one timestep of "
                f"{name} ({self.tokens_per_timestep} tokens)"
            )
        check_number("window_timesteps (0: as many as fit)", window_timesteps, minimum=0, integer=True)
        if not 0 <= window_timesteps <= self.steps_per_window:
            raise ValueError(
                f"window_timesteps={window_timesteps} of {name} must lie in [0, {self.steps_per_window}]: "
                f"context_length={config.context_length} holds {self.steps_per_window} timesteps of "
                f"{self.tokens_per_timestep} tokens (0: as many as fit)"
            )
        # tokens per window: the whole context, or exactly the chosen timesteps
        self.window_length = config.context_length
        if window_timesteps:
            self.steps_per_window = int(window_timesteps)
            self.window_length = self.steps_per_window * self.tokens_per_timestep

    def sample_windows(self, batch_size: int):
        """Global timestep indices (B, K) of sampled windows, which are real, which are prompted
        and which prompts come from an episode's end."""
        data, K, rng = self.data, self.steps_per_window, self.rng
        share = prompt_timesteps(K, self.config.prompt_share)  # 0 for a one-timestep window: never prompted
        prompted = (rng.random(batch_size) < self.config.prompt_fraction) & data.promptable & (share > 0)
        from_end = prompted & (rng.random(batch_size) < self.config.prompt_end_fraction)
        prompt_steps = np.where(prompted, share, 0)
        main_steps = K - prompt_steps
        # the sequence itself: an episode (by length), a start so the window fits when it can
        episode = rng.choice(data.num_episodes, size=batch_size, p=data.lengths / data.lengths.sum())
        length = data.lengths[episode]
        start = np.floor(rng.random(batch_size) * (np.maximum(length - main_steps, 0) + 1)).astype(np.int64)
        # the prompt: another episode of the same task (the same one if there is only one)
        if data.num_episodes > 1:
            other = (episode + 1 + rng.integers(0, data.num_episodes - 1, batch_size)) % data.num_episodes
        else:
            other = episode
        other_length = data.lengths[other]
        room = np.maximum(other_length - prompt_steps, 0)
        prompt_start = np.where(from_end, room, np.floor(rng.random(batch_size) * (room + 1)).astype(np.int64))

        slot = np.arange(K)[None, :]
        in_prompt = slot < prompt_steps[:, None]
        offset_in_prompt = prompt_start[:, None] + slot
        offset_in_main = start[:, None] + slot - prompt_steps[:, None]
        valid = np.where(in_prompt, offset_in_prompt < other_length[:, None], offset_in_main < length[:, None])
        steps = np.where(
            in_prompt, data.starts[other][:, None] + offset_in_prompt, data.starts[episode][:, None] + offset_in_main
        )
        # real timesteps first, padding last: a short prompt does not leave a hole mid-sequence
        order = np.argsort(~valid, axis=1, kind="stable")
        steps, valid = np.take_along_axis(steps, order, 1), np.take_along_axis(valid, order, 1)
        steps = np.where(valid, steps, 0)
        return steps, valid, prompted, from_end

    def sample(self, batch_size: int) -> Batch:
        """A batch of `batch_size` windows of exactly `window_length` tokens."""
        return self.batch(*self.sample_windows(batch_size))

    def tiled_windows(self, count: int):
        """`count` prompt-free windows spread evenly over the consecutive, non-overlapping windows
        that tile every episode (the same arguments as `sample_windows` returns). For held-out
        evaluation: every part of every episode is represented, without sampling noise."""
        data, K = self.data, self.steps_per_window
        per_episode = -(-data.lengths // K)  # windows per episode, the last one possibly short
        episode = np.repeat(np.arange(data.num_episodes), per_episode)
        offset = np.concatenate([np.arange(n) * K for n in per_episode])
        pick = np.unique(np.linspace(0, len(episode) - 1, min(count, len(episode))).round().astype(np.int64))
        episode, offset = episode[pick], offset[pick]
        slot = offset[:, None] + np.arange(K)[None, :]
        valid = slot < data.lengths[episode][:, None]
        steps = np.where(valid, data.starts[episode][:, None] + slot, 0)
        none = np.zeros(len(pick), dtype=bool)
        return steps, valid, none, none

    def batch(self, steps: np.ndarray, valid: np.ndarray, prompted: np.ndarray, from_end: np.ndarray) -> Batch:
        """The batch of windows given as global timestep indices (B, K) and their validity."""
        return build_batch(
            self.data.layout,
            self.config,
            self.data.timesteps,
            steps,
            valid,
            self.window_length,
            prompted,
            from_end,
        )
