"""Reading and writing behaviour data in the formats people have: D4RL HDF5 and Minari folders.

D4RL (Fu et al., 2020) stores a dataset as flat arrays over all steps: `observations`,
`actions`, `rewards`, `terminals` (the environment ended the episode) and `timeouts` (a time
limit cut it). Episodes end after each step where either flag is set. A trailing run of steps
with neither flag — a file cut mid-episode — is kept as an unfinished episode
(`terminated=False`), because its steps are valid behaviour; pass `keep_unfinished=False` to drop
it, as D4RL's own `qlearning_dataset` effectively does.

Minari (D4RL's maintained successor) keeps one HDF5 group per episode in
`<dataset>/data/main_data.hdf5`, with `observations` holding T + 1 entries (the last one after
the final action). gato_min pairs observation t with action t, so the final observation is
dropped. Observation groups (dict spaces) become nested dicts. Minari's own package is not
needed: its collector pulls in jax; these files are read with h5py alone.

Writing is atomic (a temporary file renamed into place); Atari frames are stored as uint8 with
gzip compression, one chunk per 64 frames. A file this package writes carries the SHA-256 of its
arrays (attribute `sha256`) and its episode lengths; reading checks both, so a corrupted file is
refused rather than trained on. Every array is checked for its shape and for finite values, and
an error names the file, the key and, where it matters, the episode.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np

from gato_min.data.episodes import Episode, EpisodeSet
from gato_min.files import temporary_path
from gato_min.observations import flatten_nested

D4RL_KEYS = ("observations", "actions", "rewards", "terminals", "timeouts")
MINARI_KEYS = ("observations", "actions", "rewards", "terminations", "truncations")


def _open_hdf5(path: Path):
    if not path.exists():
        raise FileNotFoundError(f"dataset file {path} does not exist")
    if not path.is_file():
        raise ValueError(f"dataset path {path} is not a file")
    if not h5py.is_hdf5(path):
        raise ValueError(f"{path} is not an HDF5 file (expected a D4RL/Minari .hdf5 file)")
    try:
        return h5py.File(path, "r")
    except OSError as err:
        raise ValueError(f"{path} cannot be read as HDF5 (truncated or corrupt?): {err}") from None


def _read_dataset(handle, key: str, path: Path, where: str = "") -> np.ndarray:
    if key not in handle:
        raise KeyError(
            f"{path}: missing {where}{key!r}; expected keys {', '.join(D4RL_KEYS if not where else MINARI_KEYS)}"
        )
    node = handle[key]
    if not isinstance(node, h5py.Dataset):
        raise ValueError(f"{path}: {where}{key!r} must be a dataset, found a group")
    try:
        return node[()]
    except OSError as err:
        raise ValueError(f"{path}: {where}{key!r} cannot be read (truncated file?): {err}") from None


def attr_value(value):
    """An HDF5 attribute as a plain Python value (bytes decoded, arrays as lists)."""
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


# --------------------------------------------------------------------------- D4RL


def arrays_digest(arrays: dict[str, np.ndarray]) -> str:
    """SHA-256 over the D4RL arrays (key, dtype, shape and bytes, keys in D4RL order)."""
    digest = hashlib.sha256()
    for key in D4RL_KEYS:
        array = np.ascontiguousarray(arrays[key])
        digest.update(f"{key}|{array.dtype.str}|{array.shape}|".encode())
        digest.update(array.tobytes())
    return digest.hexdigest()


def _check_step_flags(arrays: dict[str, np.ndarray], path: Path) -> None:
    """rewards, terminals and timeouts hold one number per step: shape (n,) (or (n, 1))."""
    n = len(arrays["observations"])
    for key in ("rewards", "terminals", "timeouts"):
        shape = arrays[key].shape
        if shape not in ((n,), (n, 1)):
            raise ValueError(f"{path}: {key!r} has shape {shape}; expected ({n},), one value per step")
    if arrays["actions"].ndim not in (1, 2):
        raise ValueError(
            f"{path}: 'actions' has shape {arrays['actions'].shape}; expected (n,) buttons or (n, action_dim) values"
        )


def _check_finite(episodes: list[Episode], path: Path) -> None:
    """Name the first episode and key holding NaN or infinity."""
    for index, episode in enumerate(episodes):
        for key, values in (
            ("observations", episode.observations),
            ("actions", episode.actions),
            ("rewards", episode.rewards),
        ):
            if isinstance(values, np.ndarray) and values.dtype.kind == "f" and not np.isfinite(values).all():
                step = int(np.flatnonzero(~np.isfinite(values.reshape(len(values), -1)).all(axis=1))[0])
                raise ValueError(f"{path}: episode {index} holds a non-finite value in {key!r} (step {step})")


def write_d4rl(path: str | Path, episodes: list[Episode], attrs: dict | None = None) -> Path:
    """Write episodes as one D4RL-format HDF5 file (atomically); `attrs` become file attributes."""
    if not episodes:
        raise ValueError("write_d4rl needs at least one episode")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lengths = np.array([len(e) for e in episodes])
    ends = np.cumsum(lengths) - 1
    terminated = np.array([e.terminated for e in episodes])
    terminals = np.zeros(lengths.sum(), dtype=bool)
    timeouts = np.zeros(lengths.sum(), dtype=bool)
    terminals[ends[terminated]] = True
    timeouts[ends[~terminated]] = True
    observations = np.concatenate([e.observations for e in episodes])
    if observations.dtype != np.uint8:
        observations = observations.astype(np.float32)
    actions = np.concatenate([e.actions for e in episodes])
    actions = actions if actions.dtype.kind in "iu" else actions.astype(np.float32)
    rewards = np.concatenate([e.rewards for e in episodes]).astype(np.float32)
    arrays = dict(observations=observations, actions=actions, rewards=rewards, terminals=terminals, timeouts=timeouts)
    tmp = temporary_path(path)
    with h5py.File(tmp, "w") as f:
        if observations.dtype == np.uint8:  # frames: compress
            chunks = (min(64, len(observations)), *observations.shape[1:])
            f.create_dataset(
                "observations", data=observations, chunks=chunks, compression="gzip", compression_opts=4, shuffle=True
            )
        else:
            f.create_dataset("observations", data=observations)
        for key in D4RL_KEYS[1:]:
            f.create_dataset(key, data=arrays[key])
        for key, value in (attrs or {}).items():
            f.attrs[key] = value
        f.attrs["episode_returns"] = np.array([e.episode_return for e in episodes])
        f.attrs["episode_lengths"] = lengths
        f.attrs["sha256"] = arrays_digest(arrays)
    os.replace(tmp, path)
    return path


def read_d4rl(path: str | Path, keep_unfinished: bool = True) -> EpisodeSet:
    """Read a D4RL-format HDF5 file into episodes (see the module docstring for the rules)."""
    path = Path(path)
    with _open_hdf5(path) as f:
        arrays = {key: _read_dataset(f, key, path) for key in D4RL_KEYS}
        attrs = {key: attr_value(value) for key, value in f.attrs.items()}
    n = len(arrays["observations"])
    for key, array in arrays.items():
        if len(array) != n:
            raise ValueError(
                f"{path}: {key!r} has {len(array)} entries but 'observations' has {n}; "
                "all D4RL arrays must have one entry per step"
            )
    if n == 0:
        raise ValueError(f"{path}: the dataset holds no steps")
    _check_step_flags(arrays, path)
    if "sha256" in attrs and arrays_digest(arrays) != attrs["sha256"]:
        raise ValueError(
            f"{path}: the arrays do not match the file's checksum (attribute sha256): the file is corrupt; "
            "delete it (a cached dataset is collected again) or restore it"
        )
    terminals = arrays["terminals"].astype(bool).reshape(n)
    ends = np.flatnonzero(terminals | arrays["timeouts"].astype(bool).reshape(n))
    if len(ends) == 0 or ends[-1] != n - 1:
        ends = np.append(ends, n - 1) if keep_unfinished else ends
    starts = np.concatenate([[0], ends[:-1] + 1])
    task, source = str(attrs.get("task", "")), str(attrs.get("tier", path.name))
    episodes = [
        Episode(
            arrays["observations"][s : e + 1],
            arrays["actions"][s : e + 1],
            arrays["rewards"][s : e + 1],
            bool(terminals[e]),
            task,
            source,
        )
        for s, e in zip(starts, ends)
    ]
    if "episode_lengths" in attrs:
        stored = [int(length) for length in np.atleast_1d(attrs["episode_lengths"])]
        if stored != [len(e) for e in episodes]:
            raise ValueError(
                f"{path}: the terminals and timeouts cut {len(episodes)} episodes that do not match the file's "
                f"attribute episode_lengths ({len(stored)} episodes, {sum(stored)} steps): the file is inconsistent"
            )
    _check_finite(episodes, path)
    return EpisodeSet(episodes, attrs)


# --------------------------------------------------------------------------- Minari


def _read_minari_node(node, path: Path, where: str):
    if isinstance(node, h5py.Group):  # a dict observation space: keys in lexicographic order
        return {key: _read_minari_node(node[key], path, f"{where}{key}/") for key in sorted(node)}
    try:
        return node[()]
    except OSError as err:
        raise ValueError(f"{path}: {where!r} cannot be read (truncated file?): {err}") from None


def _drop_last(tree):
    return {k: _drop_last(v) for k, v in tree.items()} if isinstance(tree, dict) else tree[:-1]


def read_minari(dataset_dir: str | Path) -> EpisodeSet:
    """Read a Minari dataset folder (the one holding `data/`, or `data/` itself) into episodes."""

    dataset_dir = Path(dataset_dir)
    data_dir = dataset_dir / "data" if (dataset_dir / "data").is_dir() else dataset_dir
    main = data_dir / "main_data.hdf5"
    if not data_dir.is_dir():
        raise FileNotFoundError(f"Minari dataset folder {dataset_dir} does not exist")
    metadata_file = data_dir / "metadata.json"
    attrs = {}
    if metadata_file.is_file():
        try:
            attrs = json.loads(metadata_file.read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{metadata_file} is not valid JSON: {err}") from None
    episodes = []
    with _open_hdf5(main) as f:
        names = [name for name in f if name.startswith("episode_")]
        if not names:
            raise ValueError(f"{main}: no 'episode_<id>' groups found")
        try:
            names.sort(key=lambda name: int(name.removeprefix("episode_")))
        except ValueError:
            raise ValueError(f"{main}: episode groups must be named episode_<integer>, found {sorted(names)}") from None
        for name in names:
            group = f[name]
            where = f"{name}/"
            for key in MINARI_KEYS:
                if key not in group:
                    raise KeyError(f"{main}: missing {where}{key!r}; expected keys {', '.join(MINARI_KEYS)}")
            observations = _read_minari_node(group["observations"], main, f"{where}observations/")
            actions = _read_dataset(group, "actions", main, where)
            rewards = _read_dataset(group, "rewards", main, where)
            terminations = _read_dataset(group, "terminations", main, where).astype(bool)
            _read_dataset(group, "truncations", main, where)
            steps = len(actions)
            for key, leaf in flatten_nested(observations, f"{where}observations"):
                if len(leaf) != steps + 1:
                    raise ValueError(
                        f"{main}: {key!r} has {len(leaf)} entries; Minari stores one more observation "
                        f"than actions ({steps})"
                    )
            for key, array in [("rewards", rewards), ("terminations", terminations)]:
                if len(array) != steps:
                    raise ValueError(f"{main}: {where}{key!r} has {len(array)} entries but 'actions' has {steps}")
            if steps == 0:
                raise ValueError(f"{main}: {name} holds no steps")
            episodes.append(
                Episode(
                    _drop_last(observations),
                    actions,
                    rewards,
                    bool(terminations[-1]),
                    str(attrs.get("dataset_id", "")),
                    dataset_dir.name,
                )
            )
    _check_finite(episodes, main)
    return EpisodeSet(episodes, attrs)
