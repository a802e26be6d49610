"""Observations as Gato reads them: nested structures flattened in key order, integers kept apart.

Gato (Reed et al., 2022, Sec. 2.1) tokenizes an observation's tensors row-major, a nested
structure in lexicographic order of its keys, continuous values by mu-law and binning and
integer values as they are. This module is where a dict (or tuple) observation, a batch of
them from a Minari file or one from an environment, becomes the flat row of values the
tokenizer reads, with the columns that hold integers; `space_values` reads the same two facts
off a gymnasium observation space, so that acting lays out what training saw.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np


def flatten_nested(tree, name: str = "observation") -> list[tuple[str, np.ndarray]]:
    """Nested dicts (and tuples) of arrays -> [(key path, array)], dict keys in lexicographic
    order (Sec. 2.1), tuple items in their order.

    Each array is later flattened row-major by the tokenizer. Keys must be strings.
    """
    if isinstance(tree, dict):
        flat: list[tuple[str, np.ndarray]] = []
        for key in sorted(tree, key=lambda k: (not isinstance(k, str), str(k))):
            if not isinstance(key, str):
                raise TypeError(f"{name} keys must be strings, got {key!r} ({type(key).__name__})")
            flat.extend(flatten_nested(tree[key], f"{name}/{key}"))
        return flat
    if isinstance(tree, tuple):
        return [leaf for index, item in enumerate(tree) for leaf in flatten_nested(item, f"{name}/{index}")]
    return [(name, np.asarray(tree))]


def flatten_observations(observations, name: str = "observations") -> tuple[np.ndarray, tuple[int, ...]]:
    """(T, ...) observations, or nested dicts/tuples of such -> ((T, D) values, discrete columns).

    Leaves come in key order (`flatten_nested`), each flattened row-major after its leading
    time axis. Integer (and boolean) leaves are discrete values, which Gato tokenizes as they
    are (Sec. 2.1); their columns are returned so that the tokenizer keeps them apart from the
    continuous readings. Frames (uint8 (T, H, W, C)) are not observations of this kind."""
    leaves = flatten_nested(observations, name)
    if not leaves:
        raise ValueError(f"{name}: an empty dict holds no observation")
    steps = {len(leaf) if leaf.ndim else None for _, leaf in leaves}
    if len(steps) != 1 or None in steps:
        raise ValueError(
            f"{name}: every leaf needs the same leading time axis, got {[(k, v.shape) for k, v in leaves]}"
        )
    count = steps.pop()
    columns, discrete, start = [], [], 0
    for key, leaf in leaves:
        if leaf.dtype.kind not in "biuf":
            raise TypeError(f"{key}: observations must be numbers, got dtype {leaf.dtype}")
        flat = leaf.reshape(count, -1)
        if leaf.dtype.kind in "biu":
            discrete.extend(range(start, start + flat.shape[1]))
        columns.append(flat)
        start += flat.shape[1]
    values = np.concatenate(columns, axis=1) if len(columns) > 1 else columns[0]
    if len(discrete) == values.shape[1]:
        return values.astype(np.int64), tuple(discrete)
    return values.astype(np.float64 if values.dtype.kind != "f" else values.dtype), tuple(discrete)


def flatten_observation(observation) -> np.ndarray:
    """One observation (an array, or nested dicts/tuples of arrays) -> its values, (D,), in the
    order `flatten_observations` lays out a time axis of them."""
    leaves = flatten_nested(observation, "observation")
    return np.concatenate([leaf.reshape(-1) for _, leaf in leaves]) if len(leaves) > 1 else leaves[0][1].reshape(-1)


def space_values(space, where: str = "observation space") -> tuple[int, tuple[int, ...]]:
    """(number of values, integer columns) of a vector, dict or tuple observation space, its
    leaves in the order `flatten_observations` lays them out."""
    if isinstance(space, gym.spaces.Dict):
        parts = [space_values(space[key], f"{where}/{key}") for key in sorted(space.spaces)]
    elif isinstance(space, gym.spaces.Tuple):
        parts = [space_values(item, f"{where}/{i}") for i, item in enumerate(space.spaces)]
    elif isinstance(space, gym.spaces.Box):
        count = int(np.prod(space.shape))
        return count, tuple(range(count)) if space.dtype.kind in "biu" else ()
    elif isinstance(space, gym.spaces.Discrete):
        return 1, (0,)
    elif isinstance(space, (gym.spaces.MultiDiscrete, gym.spaces.MultiBinary)):
        count = int(np.prod(space.shape))
        return count, tuple(range(count))
    else:
        raise ValueError(
            f"{where}: observation space {space} is not a Box, Discrete, MultiDiscrete, MultiBinary, Dict or Tuple"
        )
    count, discrete = 0, []
    for size, columns in parts:
        discrete.extend(count + c for c in columns)
        count += size
    return count, tuple(discrete)


def stack_observations(observations: list, label: str = "dataset") -> tuple[list[np.ndarray], tuple[int, ...]]:
    """The observations of several episodes -> (per episode (T, D) values or (T, H, W, C) frames,
    the integer columns they share)."""
    flat, discrete = [], set()
    for index, episode in enumerate(observations):
        if isinstance(episode, np.ndarray) and episode.ndim == 4:  # frames go to the image path as they are
            flat.append(episode)
            discrete.add(())
            continue
        values, columns = flatten_observations(episode, f"{label}: episode {index} observations")
        flat.append(values)
        discrete.add(columns)
    if len(discrete) > 1:
        raise ValueError(f"{label}: episodes disagree on which observation values are integers: {sorted(discrete)}")
    return flat, discrete.pop()
