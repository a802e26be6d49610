"""The tokenization demo: one MuJoCo timestep and one Atari frame, turned into tokens.

`python -m gato_min tokenize` prints what becomes of each value and writes
a figure; chapter 01 uses the same sample timesteps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Patch, Rectangle

from gato_min.envs import get_task, make_env, model_observation
from gato_min.plotting import TOKEN_COLORS, save_figure, use_style
from gato_min.sequence import KIND_NAMES, TimestepLayout, build_batch, encode_timesteps
from gato_min.tokenize import Tokenizer, mu_law_encode, patch_grid


@dataclass
class Timestep:
    task: str
    observation: np.ndarray  # joint readings (float) or an RGB frame (uint8, H x W x 3)
    action: np.ndarray  # continuous joint torques in [-1, 1] or a discrete button id


def mujoco_timestep(task: str = "halfcheetah", seed: int = 0, warmup_steps: int = 20) -> Timestep:
    """A HalfCheetah (or other MuJoCo task) timestep after `warmup_steps` random actions."""
    env = make_env(task)
    env.action_space.seed(seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(warmup_steps):
        obs, *_ = env.step(env.action_space.sample())
    action = env.action_space.sample()
    env.close()
    return Timestep(task, np.asarray(obs, dtype=np.float64), np.asarray(action, dtype=np.float64))


def atari_timestep(task: str = "pong", seed: int = 0, warmup_steps: int = 60) -> Timestep:
    """An Atari frame (210 x 160 RGB) after `warmup_steps` no-ops, and button 2 (RIGHT: paddle up in Pong)."""
    env = make_env(task)
    frame, _ = env.reset(seed=seed)
    for _ in range(warmup_steps):
        frame, *_ = env.step(0)
    env.close()
    return Timestep(task, np.asarray(frame), np.asarray([2]))


def model_timestep(step: Timestep) -> Timestep:
    """The timestep as the model sees it: an Atari screen resized to the task's frame size
    (`gato_min.envs.model_observation`); readings unchanged."""
    return Timestep(step.task, model_observation(get_task(step.task), step.observation), step.action)


def timestep_tokens(step: Timestep, tokenizer: Tokenizer) -> tuple[np.ndarray, list[str]]:
    """The token ids of one timestep and the kind of each: observation, '|', action, laid out
    by `gato_min.sequence` (the layout training and acting use).

    Image patches have no id (they are embedded from pixels, chapter 02); they appear as -1.
    """
    config = tokenizer.config
    frame = step.observation.dtype == np.uint8
    action = np.asarray(step.action)
    layout = TimestepLayout(
        step.observation.shape if frame else None,
        0 if frame else step.observation.size,
        1 if frame else action.size,
        frame,
        config.patch_size,
    )
    timesteps = encode_timesteps(layout, tokenizer, step.observation[None], action.reshape(1, -1))
    batch = build_batch(layout, config, timesteps, np.zeros((1, 1), np.int64), np.ones((1, 1), bool))
    kinds = [KIND_NAMES[k] for k in batch.token_kinds[0].tolist()]
    ids = np.where(np.array(kinds) == "image", -1, batch.token_ids[0].numpy())
    action_kind = "discrete action" if frame else "continuous action"
    return ids.astype(np.int64), [action_kind if kind == "action" else kind for kind in kinds]


def tokenize_demo(config, out_dir: str | Path, seed: int = 0) -> tuple[str, Path]:
    """Tokenize one MuJoCo timestep and one Atari frame; return a report and the figure's path."""
    tokenizer = Tokenizer(config)
    vocab = tokenizer.vocab
    lines = [
        f"vocabulary: text [0, {vocab.text_size}), discrete [0, {vocab.num_bins}), continuous "
        f"[{vocab.continuous_offset}, {vocab.continuous_offset + vocab.num_bins}), separator "
        f"{vocab.separator_id}, padding {vocab.pad_id}; {vocab.size} ids in all"
    ]

    cheetah = mujoco_timestep("halfcheetah", seed)
    cheetah_ids, cheetah_kinds = timestep_tokens(cheetah, tokenizer)
    obs_ids = cheetah_ids[: len(cheetah.observation)]
    decoded = tokenizer.decode_continuous(obs_ids)
    lines.append(
        f"\nHalfCheetah timestep: {len(cheetah.observation)} joint readings + '|' + "
        f"{len(cheetah.action)} torques = {len(cheetah_ids)} tokens"
    )
    lines.append("  reading     mu-law      id   decoded")
    for value, id_, back in list(zip(cheetah.observation, obs_ids, decoded))[:5]:
        lines.append(
            f"  {value:8.4f}  {float(mu_law_encode(value, config.mu, config.mu_law_m)):8.4f}  {id_:6d}  {back:8.4f}"
        )
    lines.append(
        f"  ... max |reading - decoded| over all {len(obs_ids)}: {np.max(np.abs(cheetah.observation - decoded)):.4f}"
    )
    action_ids = cheetah_ids[-len(cheetah.action) :]
    lines.append(
        f"  torques {np.round(cheetah.action, 3).tolist()} -> ids {action_ids.tolist()} "
        f"-> {np.round(tokenizer.decode_actions(action_ids), 3).tolist()} (not companded)"
    )

    screen = atari_timestep("pong", seed)
    pong = model_timestep(screen)  # the frame the model sees: 80 x 80, box-filtered
    pong_ids, pong_kinds = timestep_tokens(pong, tokenizer)
    rows, cols = patch_grid(*pong.observation.shape[:2], config.patch_size)
    patches = tokenizer.encode_image(pong.observation)
    lines.append(
        f"\nPong screen {screen.observation.shape[0]}x{screen.observation.shape[1]}x3 -> the model's frame "
        f"{pong.observation.shape[0]}x{pong.observation.shape[1]}x3 (box filter) -> {rows}x{cols} = {rows * cols} "
        f"patches of shape {tuple(patches.shape[1:])}, pixels in [{patches.min():.3f}, {patches.max():.3f}]"
    )
    lines.append(
        f"  timestep = {rows * cols} patch tokens + '|' + 1 button = {len(pong_ids)} tokens; "
        f"button 2 (RIGHT) -> id {pong_ids[-1]}"
    )

    text = "Gato plays Atari from pixels."
    text_ids = tokenizer.encode_text(text)
    lines.append(f"\ntext {text!r} -> {tokenizer.text.pieces(text)} -> ids {text_ids.tolist()}")

    use_style()
    fig = plt.figure(figsize=(10, 4.2))
    grid = fig.add_gridspec(2, 2, width_ratios=[1, 2.6], hspace=1.1, left=0.02, right=0.98, top=0.9, bottom=0.22)
    ax_frame = fig.add_subplot(grid[:, 0])
    plot_patch_grid(ax_frame, pong.observation, config.patch_size)
    ax_frame.set_title(f"Pong frame: {rows}x{cols} patches")
    ax_cheetah = fig.add_subplot(grid[0, 1])
    plot_token_strip(ax_cheetah, cheetah_kinds, labels=cheetah_ids)
    ax_cheetah.set_title(f"HalfCheetah timestep: {len(cheetah_ids)} tokens (ids written in)")
    ax_pong = fig.add_subplot(grid[1, 1])
    plot_token_strip(ax_pong, pong_kinds)
    ax_pong.set_title(f"Pong timestep: {len(pong_ids)} tokens")
    ax_pong.set_xlabel("token position within the timestep")
    token_legend(fig, cheetah_kinds + pong_kinds)
    path = save_figure(fig, "tokenize_demo", out_dir)
    plt.close(fig)
    return "\n".join(lines), path


def plot_patch_grid(ax, frame: np.ndarray, patch_size: int = 16) -> None:
    """Show `frame` (padded like the tokenizer pads it) with its patch borders and raster order."""
    rows, cols = patch_grid(*frame.shape[:2], patch_size)
    padded = np.zeros((rows * patch_size, cols * patch_size, frame.shape[2]), dtype=np.uint8)
    padded[: frame.shape[0], : frame.shape[1]] = frame
    ax.imshow(padded, interpolation="nearest")
    for r in range(rows + 1):
        ax.axhline(r * patch_size - 0.5, color="white", lw=0.5)
    for c in range(cols + 1):
        ax.axvline(c * patch_size - 0.5, color="white", lw=0.5)
    for index in range(rows * cols):
        if index % max(1, cols // 2) == 0:
            r, c = divmod(index, cols)
            ax.text(c * patch_size + 2, r * patch_size + 9, str(index), color="yellow", fontsize=6)
    ax.set_xticks([])
    ax.set_yticks([])


def _kind_color(kind: str) -> str:
    return TOKEN_COLORS["action"] if kind.endswith("action") else TOKEN_COLORS[kind]


def plot_token_strip(ax, kinds: list[str], labels=None, max_labels: int = 40) -> None:
    """A row of coloured cells, one per token, coloured by kind, with the ids written in."""
    for i, kind in enumerate(kinds):
        ax.add_patch(
            Rectangle(
                (i, 0),
                1,
                1,
                facecolor=_kind_color(kind),
                edgecolor="white",
                lw=0.5 if len(kinds) <= max_labels else 0.1,
            )
        )
        if labels is not None and len(kinds) <= max_labels and labels[i] >= 0:
            ax.text(
                i + 0.5,
                0.5,
                str(labels[i]),
                rotation=90,
                ha="center",
                va="center",
                fontsize=6.5,
                color="white" if kind in ("separator", "text") or kind.endswith("action") else "black",
            )
    ax.set_xlim(0, len(kinds))
    ax.set_ylim(0, 1)
    ax.set_yticks([])
    for side in ("left", "top", "right"):
        ax.spines[side].set_visible(False)


def token_legend(fig, kinds) -> None:
    """One legend for all token strips of `fig`, one entry per kind present."""
    seen = list(dict.fromkeys(kinds))
    fig.legend(
        handles=[Patch(facecolor=_kind_color(k), edgecolor="#999999", label=k) for k in seen],
        loc="lower center",
        ncol=len(seen),
        fontsize=8,
        bbox_to_anchor=(0.5, -0.02),
    )
