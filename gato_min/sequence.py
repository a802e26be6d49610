"""Sequence layout: timesteps -> rows of tokens, with a loss mask; the one road to a `Batch`.

Gato (Reed et al., 2022, Sec. 2.1-2.3) lays one timestep out as

    [text, image patches, tensor values, '|', actions]

(with `GatoConfig.return_conditioning`, beyond the paper, a return-to-go value token opens the
timestep's observation, as a Decision Transformer conditions on the return still to come:
[return-to-go, patches, values, '|', actions]; chapter 09)

and an episode as its timesteps in order. The loss counts only text tokens and logged action
tokens (Sec. 2.3: "m(b, l) = 1 if the token at index l is either from text or from the logged
action of an agent").

How gato_min does it:

* A task's episodes are tokenized **once** (`TokenizedEpisodes`): continuous observations to
  ids, actions to ids, frames kept as uint8 and cut into patches only for the sampled windows.
  Every timestep of a task has the same layout (`TimestepLayout`), so a window of K timesteps is
  a gather of K rows, and a batch is assembled with numpy fancy indexing, no per-sample loop.
* **One road.** `TimestepLayout` is the one definition of a timestep and `build_batch` the one
  way tokens become a `Batch`: training windows (`gato_min.sampling`), prompts and acting
  (`gato_min.codec`: an observation, one action token, a rebuilt window, all cut from
  `build_batch` rows with `Batch.window`) and text (a stream of one-token timesteps). The
  agent acts on exactly the tokens training saw.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from gato_min.batch import Batch
from gato_min.envs import TaskSpec
from gato_min.observations import flatten_observations, stack_observations
from gato_min.positions import patch_intervals
from gato_min.tokenize import Tokenizer, cut_patches, patch_grid

KIND_NAMES = ("text", "image", "discrete", "continuous", "separator", "action", "padding")
TEXT, IMAGE, DISCRETE, CONTINUOUS, SEPARATOR, ACTION, PAD = range(len(KIND_NAMES))


@dataclass(frozen=True)
class TimestepLayout:
    """The tokens of one timestep of a task: [text, image patches, observation values, '|', actions].

    The one definition of a timestep: training windows, prompts, acting and text all lay their
    tokens out from it. A text stream is the layout with one text token and no action (and so no
    separator): every "timestep" is one piece of text."""

    image_shape: tuple[int, int, int] | None  # (H, W, C) of the frame, or None
    num_values: int  # observation values: continuous (mu-law companded, binned) unless listed below
    action_dim: int  # action tokens
    discrete_actions: bool
    patch_size: int = 16
    text_tokens: int = 0  # text ids at the start of the timestep
    return_tokens: int = 0  # 1: a return-to-go value token before the observation (return conditioning)
    discrete_values: tuple[int, ...] = ()  # which observation values are integers, tokenized as they are

    def __post_init__(self) -> None:
        if any(not 0 <= column < self.num_values for column in self.discrete_values):
            raise ValueError(
                f"discrete_values {self.discrete_values} must index the {self.num_values} observation values"
            )

    @classmethod
    def for_task(cls, spec: TaskSpec, patch_size: int = 16, returns: bool = False) -> TimestepLayout:
        """The layout of task `spec`: its frame or its readings, its buttons or its action values;
        `returns`: a return-to-go token first."""
        image = spec.image_observations
        return cls(
            tuple(spec.observation_shape) if image else None,
            0 if image else int(np.prod(spec.observation_shape)),
            1 if spec.discrete_actions else spec.action_dim,
            spec.discrete_actions,
            patch_size,
            return_tokens=int(returns),
            discrete_values=tuple(spec.discrete_values),
        )

    @classmethod
    def text(cls, patch_size: int = 16) -> TimestepLayout:
        return cls(None, 0, 0, False, patch_size, text_tokens=1)

    @property
    def grid(self) -> tuple[int, int]:
        return patch_grid(*self.image_shape[:2], self.patch_size) if self.image_shape else (0, 0)

    @property
    def num_patches(self) -> int:
        rows, cols = self.grid
        return rows * cols

    @property
    def num_observation_tokens(self) -> int:
        return self.text_tokens + self.return_tokens + self.num_patches + self.num_values

    @property
    def has_separator(self) -> bool:
        return self.action_dim > 0

    @property
    def tokens_per_timestep(self) -> int:
        return self.num_observation_tokens + int(self.has_separator) + self.action_dim

    @property
    def first_action(self) -> int:
        """Index of the first action token within a timestep."""
        return self.tokens_per_timestep - self.action_dim

    def kinds(self) -> np.ndarray:
        values = np.full(self.num_values, CONTINUOUS)
        values[list(self.discrete_values)] = DISCRETE
        return np.array(
            [TEXT] * self.text_tokens
            + [CONTINUOUS] * self.return_tokens
            + [IMAGE] * self.num_patches
            + values.tolist()
            + [SEPARATOR] * int(self.has_separator)
            + [ACTION] * self.action_dim,
            dtype=np.int64,
        )

    def local_positions(self, action_positions: str = "none") -> np.ndarray:
        """Each token's local position (-1: none): observation tokens count 0, 1, ...; actions
        continue the count with `action_positions="local"`. A text stream has none."""
        if not self.has_separator:
            return np.full(self.tokens_per_timestep, -1)
        observation = np.arange(self.num_observation_tokens)
        actions = (
            self.num_observation_tokens + np.arange(self.action_dim)
            if action_positions == "local"
            else np.full(self.action_dim, -1)
        )
        return np.concatenate([observation, [-1], actions])


def returns_to_go(rewards) -> np.ndarray:
    """(T,) the return still to come at each step of an episode: R_t = r_t + r_t+1 + ... + r_T."""
    return np.cumsum(np.asarray(rewards, dtype=np.float64)[::-1])[::-1].copy()


@dataclass
class Timesteps:
    """Tokenized timesteps, one row each (what a layout's token ids and patches are read from)."""

    text_ids: np.ndarray  # (N, text_tokens) int32
    patches: np.ndarray | None  # (N, num_patches, C, P, P) uint8 pixels, or None without a frame
    value_ids: np.ndarray  # (N, num_values) int32
    action_ids: np.ndarray  # (N, action_dim) int32
    return_ids: np.ndarray | None = None  # (N, return_tokens) int32; None: (N, 0)

    def __post_init__(self) -> None:
        if self.return_ids is None:
            self.return_ids = np.zeros((len(self.action_ids), 0), np.int32)

    def __len__(self) -> int:
        return len(self.action_ids)

    @staticmethod
    def concat(parts: list[Timesteps]) -> Timesteps:
        patches = None if parts[0].patches is None else np.concatenate([p.patches for p in parts])
        return Timesteps(
            np.concatenate([p.text_ids for p in parts]),
            patches,
            np.concatenate([p.value_ids for p in parts]),
            np.concatenate([p.action_ids for p in parts]),
            np.concatenate([p.return_ids for p in parts]),
        )


def encode_timesteps(
    layout: TimestepLayout,
    tokenizer: Tokenizer,
    observations=None,
    actions=None,
    spec: TaskSpec | None = None,
    text_ids=None,
    returns_to_go=None,
) -> Timesteps:
    """The tokens of N timesteps: observations (N, *shape) as readings or uint8 frames (or nested
    dicts of readings, flattened in key order; the layout's discrete columns as integers), actions
    (N, ...) in the environment's units (scaled to [-1, 1] with `spec`'s range) or None (zeros:
    a timestep whose action is not known yet), text ids (N, text_tokens) for text, returns-to-go
    (N,) for a layout with a return token (divided by `return_scale`, then companded and binned
    like any observation value)."""
    if isinstance(observations, (dict, tuple)):
        observations = flatten_observations(observations)[0]
    count = len(observations) if observations is not None else len(text_ids)
    patches, values = None, np.zeros((count, 0), np.int32)
    if layout.image_shape is not None:
        patches = cut_patches(observations, layout.patch_size)  # uint8; the model scales them
    elif layout.num_values:
        readings = np.asarray(observations).reshape(count, -1)
        if readings.shape[1] != layout.num_values:
            raise ValueError(
                f"observations hold {readings.shape[1]} values per timestep; the layout has {layout.num_values}"
            )
        values = tokenizer.encode_observation_values(readings, layout.discrete_values)
    action_ids = (
        np.zeros((count, layout.action_dim), np.int32)
        if actions is None
        else encode_actions(layout, tokenizer, actions, spec)
    )
    text = (
        np.zeros((count, 0), np.int32)
        if text_ids is None
        else np.asarray(text_ids, dtype=np.int32).reshape(count, layout.text_tokens)
    )
    returns = np.zeros((count, 0), np.int32)
    if layout.return_tokens:
        if returns_to_go is None:
            raise ValueError("this layout opens each timestep with a return-to-go token: pass returns_to_go (N,)")
        scaled = np.asarray(returns_to_go, dtype=np.float64).reshape(count, 1) / tokenizer.config.return_scale
        returns = tokenizer.encode_continuous(scaled).reshape(count, 1).astype(np.int32)
    return Timesteps(text, patches, values, action_ids, returns)


def encode_actions(layout: TimestepLayout, tokenizer: Tokenizer, actions, spec: TaskSpec | None = None) -> np.ndarray:
    """(N, ...) actions -> (N, action_dim) int32 ids: buttons unchanged, continuous values
    scaled from `spec`'s action range to [-1, 1] (without a spec: already there) and binned."""
    actions = np.asarray(actions)
    count = len(actions)
    if layout.discrete_actions:
        return tokenizer.encode_discrete(actions).reshape(count, -1).astype(np.int32)
    unit = spec.action_to_unit(actions) if spec is not None else actions
    return tokenizer.encode_actions(unit).reshape(count, -1).astype(np.int32)


def build_batch(
    layout: TimestepLayout,
    config,
    timesteps: Timesteps,
    steps: np.ndarray,
    valid: np.ndarray,
    length: int | None = None,
    prompted: np.ndarray | None = None,
    from_end: np.ndarray | None = None,
) -> Batch:
    """The one batch builder: row b holds the timesteps `timesteps[steps[b, k]]` in slot order;
    slots whose `valid` is False are padding (wherever they are), and each row is padded at its
    end to `length` tokens (default: exactly K timesteps). Training windows, prompts, acting and
    text all come through here; `Batch.window` cuts a part of it (acting feeds pieces)."""
    vocab, tpt = config.vocab, layout.tokens_per_timestep
    steps, valid = np.asarray(steps, dtype=np.int64), np.asarray(valid, dtype=bool)
    batch_size, K = steps.shape
    used = K * tpt
    length = used if length is None else length
    if used > length:
        raise ValueError(f"{K} timesteps of {tpt} tokens do not fit {length} tokens")
    parts = [
        timesteps.text_ids[steps],
        timesteps.return_ids[steps],
        np.zeros((batch_size, K, layout.num_patches), np.int64),
        timesteps.value_ids[steps],
    ]
    if layout.has_separator:
        parts.append(np.full((batch_size, K, 1), vocab.separator_id, np.int64))
    parts.append(timesteps.action_ids[steps])
    ids = np.concatenate(parts, axis=-1).reshape(batch_size, used)
    token_valid = np.repeat(valid, tpt, axis=1)
    ids = np.where(token_valid, ids, vocab.pad_id)
    kinds = np.where(token_valid, np.tile(layout.kinds(), K)[None, :], PAD)
    local = np.where(token_valid, np.tile(layout.local_positions(config.action_positions), K)[None, :], -1)
    if length > used:  # (np.pad costs more than the rest when nothing is padded, as in acting)
        pad = ((0, 0), (0, length - used))
        ids, kinds = np.pad(ids, pad, constant_values=vocab.pad_id), np.pad(kinds, pad, constant_values=PAD)
        local, token_valid = np.pad(local, pad, constant_values=-1), np.pad(token_valid, pad)

    n_patches = layout.num_patches
    if n_patches:
        b, k = np.nonzero(valid)  # real timesteps, in order
        patches = timesteps.patches[steps[b, k]]
        patches = patches.reshape(-1, *patches.shape[2:])
        first = layout.text_tokens + layout.return_tokens
        patch_index = ((b * length + k * tpt + first)[:, None] + np.arange(n_patches)[None, :]).reshape(-1)
        row_ranges, col_ranges = patch_intervals(*layout.grid, config.position_bins)
        rows, cols = np.tile(row_ranges, (len(b), 1)), np.tile(col_ranges, (len(b), 1))
    else:
        patches = np.zeros((0, 3, layout.patch_size, layout.patch_size), np.uint8)
        patch_index = np.zeros(0, np.int64)
        rows = cols = np.zeros((0, 2), np.int64)
    none = np.zeros(batch_size, dtype=bool)
    return Batch(
        token_ids=torch.from_numpy(ids.astype(np.int64)),
        token_kinds=torch.from_numpy(kinds.astype(np.int64)),
        local_positions=torch.from_numpy(local.astype(np.int64)),
        loss_mask=torch.from_numpy((kinds == TEXT) | (kinds == ACTION)),
        attention_mask=torch.from_numpy(token_valid),
        patches=torch.from_numpy(np.ascontiguousarray(patches)),
        patch_index=torch.from_numpy(patch_index.astype(np.int64)),
        patch_row_ranges=torch.from_numpy(rows.astype(np.int64)),
        patch_col_ranges=torch.from_numpy(cols.astype(np.int64)),
        prompted=torch.from_numpy(none if prompted is None else np.asarray(prompted, dtype=bool)),
        prompt_from_end=torch.from_numpy(none.copy() if from_end is None else np.asarray(from_end, dtype=bool)),
    )


class TokenizedEpisodes:
    """The episodes of one task and source, tokenized once and concatenated along time.

    `task`, when given, fixes the layout and scales continuous actions from its range to
    [-1, 1]; without it the layout is read from the arrays (frames: uint8 (T, H, W, C);
    buttons: integer actions) and actions are taken to lie in [-1, 1] already."""

    def __init__(self, episodes, tokenizer: Tokenizer, name: str = "", task: TaskSpec | None = None):
        episodes = list(episodes)
        label = name or (task.name if task else "") or "dataset"
        if not episodes:
            raise ValueError(f"{label}: no episodes to lay out")
        self.name = name
        observations, discrete_values = stack_observations([e.observations for e in episodes], label)
        first_observations = observations[0]
        first = episodes[0]
        for index, (episode, episode_observations) in enumerate(zip(episodes, observations)):
            if episode_observations.shape[1:] != first_observations.shape[1:]:
                raise ValueError(
                    f"{label}: episode {index} has observations of shape "
                    f"{episode_observations.shape[1:]}, episode 0 has {first_observations.shape[1:]}; "
                    "all timesteps of a task must have the same observation size"
                )
            if episode.actions.shape[1:] != first.actions.shape[1:]:
                raise ValueError(
                    f"{label}: episode {index} has actions of shape "
                    f"{episode.actions.shape[1:]}, episode 0 has {first.actions.shape[1:]}"
                )
        config = tokenizer.config
        if task is not None:
            self.layout = TimestepLayout.for_task(task, config.patch_size, config.return_conditioning)
            if not self.layout.image_shape and set(discrete_values) - set(self.layout.discrete_values):
                raise ValueError(
                    f"{label}: observation values {sorted(set(discrete_values) - set(self.layout.discrete_values))} "
                    f"are integers, but task {task.name!r} declares them continuous (TaskSpec.discrete_values "
                    f"{task.discrete_values}); register the task from an environment whose space says so"
                )
        else:
            frames = first_observations.dtype == np.uint8 and first_observations.ndim == 4
            discrete = first.actions.dtype.kind in "iu"
            if discrete and int(np.prod(first.actions.shape[1:])) != 1:
                raise ValueError(
                    f"{label}: integer actions of shape {first.actions.shape[1:]} per timestep; a button "
                    "action is one integer a timestep (shape (T,) or (T, 1)), and several integer columns "
                    "need a task that says what they are (task=TaskSpec)"
                )
            self.layout = TimestepLayout(
                first_observations.shape[1:] if frames else None,
                0 if frames else int(np.prod(first_observations.shape[1:])),
                1 if discrete else int(np.prod(first.actions.shape[1:])),
                discrete,
                config.patch_size,
                return_tokens=int(config.return_conditioning),
                discrete_values=() if frames else discrete_values,
            )
        if self.layout.num_observation_tokens > config.max_local_positions:
            raise ValueError(
                f"{label}: a timestep has {self.layout.num_observation_tokens} observation "
                f"tokens, more than max_local_positions={config.max_local_positions}"
            )
        self.lengths = np.array([len(e) for e in episodes], dtype=np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lengths)[:-1]])
        self.promptable = True
        self.timesteps = encode_timesteps(
            self.layout,
            tokenizer,
            np.concatenate(observations),
            np.concatenate([e.actions for e in episodes]),
            task,
            returns_to_go=np.concatenate([returns_to_go(e.rewards) for e in episodes]),
        )

    @classmethod
    def from_text(cls, stream: np.ndarray, tokenizer: Tokenizer, name: str = "text") -> TokenizedEpisodes:
        """A stream of text ids as one episode of one-token timesteps (never prompted)."""
        stream = np.asarray(stream, dtype=np.int64).reshape(-1)
        if len(stream) < 2:
            raise ValueError(f"{name}: a text stream needs at least two tokens, got {len(stream)}")
        data = cls.__new__(cls)
        data.name, data.layout, data.promptable = name, TimestepLayout.text(tokenizer.config.patch_size), False
        data.lengths, data.starts = np.array([len(stream)]), np.array([0])
        data.timesteps = encode_timesteps(data.layout, tokenizer, text_ids=stream[:, None])
        return data

    @property
    def num_episodes(self) -> int:
        return len(self.lengths)

    @property
    def action_ids(self) -> np.ndarray:
        return self.timesteps.action_ids

    @property
    def counted_ids(self) -> np.ndarray:
        """(N, columns) the ids the loss counts in each timestep: its actions, or its text."""
        return self.timesteps.action_ids if self.layout.action_dim else self.timesteps.text_ids
