"""Training the expert behaviour policies of the MuJoCo tasks with Stable-Baselines3 (a maintainer's tool).

Gato learns by imitating expert agents (Reed et al., 2022, Sec. 3.1). D4RL's data cannot be
downloaded here, so gato_min trains its own experts with TD3 (Fujimoto et al., 2018) from
Stable-Baselines3, an optional extra (`pip install -e .[experts]`). Only the actor is shipped:
a small safetensors file that `gato_min.data.policies.load_policy` turns into a plain torch
module, so collecting data needs torch alone.

One training run gives both tiers of a task: every `eval_every` steps the current actor is
evaluated and exported as a snapshot; the `medium` tier is the snapshot whose return is closest
to a third of the D4RL expert reference, the `expert` tier the best one reached.

A run checkpoints its full state (weights, optimizer, replay buffer, step count, curve) every
`checkpoint_every` steps, atomically, and resumes from it: equivalent to, not bit-identical
with, an uninterrupted run (the random streams are not restored). Hyper-parameters follow the
RL Baselines3 Zoo's TD3 settings, with 256x256 networks (twice as fast on a CPU as 400x300).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from gato_min.data.policies import MLPPolicy, export_policy, load_policy
from gato_min.envs import get_task, make_env
from gato_min.files import atomic_write_text, temporary_path
from gato_min.plotting import PALETTE, use_style, write_figure


@dataclass
class TD3Settings:
    total_steps: int = 1_000_000  # environment steps (one gradient step each after warm-up)
    learning_starts: int = 10_000  # uniformly random actions before learning begins
    learning_rate: float = 1e-3  # Adam step size for actor and critics
    batch_size: int = 256  # transitions per gradient step
    buffer_size: int = 1_000_000  # replay buffer capacity
    gamma: float = 0.99  # discount
    tau: float = 0.005  # Polyak factor of the target networks
    action_noise: float = 0.1  # std of the Gaussian exploration noise (actions in [-1, 1])
    hidden_sizes: tuple[int, ...] = (256, 256)  # actor and critic hidden layers
    eval_every: int = 10_000  # steps between evaluations (each also exports a snapshot)
    eval_episodes: int = 5  # episodes per evaluation
    checkpoint_every: int = 25_000  # steps between full checkpoints


def _policy_from_sb3(model) -> MLPPolicy:
    """Copy the actor of an SB3 TD3 model into a torch-only MLPPolicy."""
    space = model.action_space
    linears = [m for m in model.actor.mu if isinstance(m, nn.Linear)]
    policy = MLPPolicy(
        linears[0].in_features, linears[-1].out_features, [m.out_features for m in linears[:-1]], space.low, space.high
    )
    ours = [m for m in policy.net if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for dst, src in zip(ours, linears):
            dst.weight.copy_(src.weight)
            dst.bias.copy_(src.bias)
    return policy.eval()


def evaluate_policy(policy: MLPPolicy, task: str, episodes: int, seed: int) -> list[float]:
    """Undiscounted returns of `policy` over `episodes` episodes, seeds seed, seed+1, ..."""
    env = make_env(task)
    returns = []
    for episode in range(episodes):
        obs, _ = env.reset(seed=seed + episode)
        total, done = 0.0, False
        while not done:
            obs, reward, terminated, truncated, _ = env.step(policy.act(obs))
            total += float(reward)
            done = terminated or truncated
        returns.append(total)
    env.close()
    return returns


def _refill_replay_buffer(model, env, steps: int, noise: float, seed: int) -> None:
    """Fill an empty replay buffer with `steps` transitions of the model's actor plus Gaussian noise."""
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    for _ in range(steps):
        action, _ = model.predict(obs, deterministic=True)
        scaled = np.clip(model.policy.scale_action(action) + noise * rng.standard_normal(action.shape), -1, 1)
        next_obs, reward, terminated, truncated, _ = env.step(model.policy.unscale_action(scaled))
        model.replay_buffer.add(
            obs[None],
            next_obs[None],
            scaled[None],
            np.array([reward]),
            np.array([terminated or truncated]),
            [{"TimeLimit.truncated": truncated and not terminated}],
        )
        obs = next_obs if not (terminated or truncated) else env.reset()[0]


def save_portable_state(run_dir: str | Path, dest: str | Path) -> Path:
    """Copy a run's weights, optimizer, settings and curve (not its replay buffer) to `dest`.

    A few MB instead of hundreds: small enough to keep in version control between sessions.
    """
    run_dir, dest = Path(run_dir), Path(dest)
    if not (run_dir / "checkpoint" / "model.zip").exists():
        raise FileNotFoundError(f"{run_dir} holds no checkpoint/model.zip to save")
    dest.mkdir(parents=True, exist_ok=True)
    for source, name in [
        (run_dir / "checkpoint" / "model.zip", "model.zip"),
        (run_dir / "curve.jsonl", "curve.jsonl"),
        (run_dir / "settings.json", "settings.json"),
    ]:
        tmp = temporary_path(dest / name)
        shutil.copy2(source, tmp)
        os.replace(tmp, dest / name)
    return dest


def _read_curve(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def train_expert(
    task: str,
    out_dir: str | Path,
    settings: TD3Settings | None = None,
    total_steps: int | None = None,
    seed: int = 0,
    threads: int = 1,
    progress: bool = True,
    resume_from: str | Path | None = None,
) -> Path:
    """Train (or resume training) a TD3 expert for `task` with `threads` torch threads (the
    caller's count is given back); see `_train_expert`."""
    caller_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        return _train_expert(task, out_dir, settings, total_steps, seed, progress, resume_from)
    finally:
        torch.set_num_threads(caller_threads)


def _train_expert(
    task: str,
    out_dir: str | Path,
    settings: TD3Settings | None,
    total_steps: int | None,
    seed: int,
    progress: bool,
    resume_from: str | Path | None,
) -> Path:
    """Train (or resume training) a TD3 expert for `task`; returns the output folder.

    `settings` defaults to those stored in `out_dir` by an earlier run, else `TD3Settings()`;
    `total_steps`, if given, replaces the settings' step budget (to extend a finished run).
    `resume_from` names a portable state (see `save_portable_state`) to start from when `out_dir`
    holds no checkpoint; its replay buffer is refilled with `learning_starts` steps of the
    loaded actor plus exploration noise before learning goes on.

    The folder holds `checkpoint/` (full state), `curve.jsonl` (one line per evaluation),
    `snapshots/step_XXXXXXX.safetensors` (the actor at each evaluation) and `settings.json`.
    """
    try:
        from stable_baselines3 import TD3
        from stable_baselines3.common.callbacks import BaseCallback
        from stable_baselines3.common.noise import NormalActionNoise
    except ImportError:
        raise ImportError("training experts needs Stable-Baselines3: pip install -e .[experts]") from None
    spec = get_task(task)
    if spec.family != "mujoco":
        raise ValueError(f"task {task!r} is an {spec.family} task; TD3 experts are trained for mujoco tasks only")
    out = Path(out_dir).expanduser()
    (out / "snapshots").mkdir(parents=True, exist_ok=True)
    ckpt, ckpt_new, ckpt_old = out / "checkpoint", out / "checkpoint.new", out / "checkpoint.old"
    if not ckpt.exists() and ckpt_old.exists():  # a crash between the two renames below
        ckpt_old.rename(ckpt)
    shutil.rmtree(ckpt_new, ignore_errors=True)

    if not (ckpt / "model.zip").exists() and resume_from is not None and (Path(resume_from) / "model.zip").exists():
        ckpt.mkdir()
        shutil.copy2(Path(resume_from) / "model.zip", ckpt / "model.zip")
        for name in ("curve.jsonl", "settings.json"):
            if (Path(resume_from) / name).exists():
                shutil.copy2(Path(resume_from) / name, out / name)
        print(f"starting {task} from the portable state in {resume_from}", flush=True)

    settings_path = out / "settings.json"
    if settings_path.exists():
        saved = json.loads(settings_path.read_text())
        if saved.get("task") != task:
            raise ValueError(f"{out} holds a run for task {saved.get('task')!r}, not {task!r}")
        if settings is None:
            saved_settings = saved["settings"]
            saved_settings["hidden_sizes"] = tuple(saved_settings["hidden_sizes"])
            settings = TD3Settings(**saved_settings)
    settings = settings or TD3Settings()
    if total_steps is not None:
        settings = replace(settings, total_steps=total_steps)
    atomic_write_text(settings_path, json.dumps({"task": task, "seed": seed, "settings": asdict(settings)}, indent=1))

    env = make_env(task)
    action_dim = env.action_space.shape[0]
    if (ckpt / "model.zip").exists():
        model = TD3.load(ckpt / "model.zip", env=env, device="cpu")
        if (ckpt / "replay.pkl").exists():
            model.load_replay_buffer(ckpt / "replay.pkl")
        else:  # a portable state: weights and optimizer only
            _refill_replay_buffer(model, env, settings.learning_starts, settings.action_noise, seed)
        print(f"resuming {task} from step {model.num_timesteps}", flush=True)
    else:
        model = TD3(
            "MlpPolicy",
            env,
            seed=seed,
            device="cpu",
            verbose=0,
            learning_rate=settings.learning_rate,
            buffer_size=settings.buffer_size,
            learning_starts=settings.learning_starts,
            batch_size=settings.batch_size,
            tau=settings.tau,
            gamma=settings.gamma,
            action_noise=NormalActionNoise(np.zeros(action_dim), settings.action_noise * np.ones(action_dim)),
            policy_kwargs=dict(net_arch=list(settings.hidden_sizes)),
        )
    curve_path = out / "curve.jsonl"
    start_step = model.num_timesteps
    # evaluations logged after the checkpoint we resumed from are replaced by the new run's
    curve = [row for row in _read_curve(curve_path) if row["step"] <= start_step]
    atomic_write_text(curve_path, "".join(json.dumps(row) + "\n" for row in curve))

    def save_checkpoint() -> None:
        ckpt_new.mkdir()
        model.save(ckpt_new / "model.zip")
        model.save_replay_buffer(ckpt_new / "replay.pkl")
        if ckpt.exists():
            ckpt.rename(ckpt_old)
        ckpt_new.rename(ckpt)
        shutil.rmtree(ckpt_old, ignore_errors=True)

    class Monitor(BaseCallback):
        def _on_training_start(self) -> None:
            self.bar = tqdm(
                total=settings.total_steps,
                initial=start_step,
                desc=f"TD3 {task}",
                unit="step",
                disable=not progress,
                mininterval=5.0,
            )
            self.t0, self.steps0 = time.time(), self.num_timesteps

        def _on_step(self) -> bool:
            step = self.num_timesteps
            self.bar.update(1)
            if step % settings.eval_every == 0:
                policy = _policy_from_sb3(self.model)
                returns = evaluate_policy(policy, task, settings.eval_episodes, seed=10_000 + seed)
                snapshot = out / "snapshots" / f"step_{step:07d}.safetensors"
                export_policy(policy, snapshot, task=task, step=step, mean_return=float(np.mean(returns)))
                row = {
                    "step": step,
                    "mean_return": float(np.mean(returns)),
                    "std_return": float(np.std(returns)),
                    "wall_s": round(time.time() - self.t0, 1),
                    "steps_per_s": round((step - self.steps0) / max(time.time() - self.t0, 1e-9), 1),
                }
                with curve_path.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                self.bar.set_postfix(ret=f"{row['mean_return']:.0f}")
                if not progress:
                    print(json.dumps(row), flush=True)
            if step % settings.checkpoint_every == 0:
                save_checkpoint()
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    remaining = settings.total_steps - start_step
    if remaining > 0:
        model.learn(remaining, callback=Monitor(), reset_num_timesteps=False)
        save_checkpoint()
    env.close()
    return out


MEDIUM_FRACTION = 1 / 3  # the medium tier aims at a third of the D4RL expert return
MEDIUM_RANGE = (0.25, 0.45)  # and must lie in this band of it


def choose_snapshots(run_dir: str | Path, task: str) -> dict[str, dict]:
    """Pick the tiers from a run's evaluations: {"medium": row, "expert": row} (rows of curve.jsonl).

    medium: the evaluation closest to a third of the D4RL expert return, within 25-45 % of it;
    expert: the best evaluation. A tier with no candidate is left out.
    """
    spec = get_task(task)
    curve = _read_curve(Path(run_dir) / "curve.jsonl")
    if not curve:
        raise FileNotFoundError(f"{run_dir} holds no evaluations (curve.jsonl is missing or empty)")
    reference = spec.d4rl_expert_return
    chosen = {"expert": max(curve, key=lambda row: row["mean_return"])}
    band = [row for row in curve if MEDIUM_RANGE[0] <= row["mean_return"] / reference <= MEDIUM_RANGE[1]]
    if band:
        chosen["medium"] = min(band, key=lambda row: abs(row["mean_return"] / reference - MEDIUM_FRACTION))
    return chosen


def export_tiers(
    run_dir: str | Path,
    task: str,
    policy_dir: str | Path,
    tiers=("medium", "expert"),
    steps: dict[str, int] | None = None,
) -> dict[str, Path]:
    """Copy the chosen snapshots of a run into `policy_dir` as `<task>_<tier>.safetensors`.

    `steps` pins a tier to the snapshot of a given training step instead of the automatic choice
    (for a medium candidate whose 20-episode return left the band, say).
    """
    run_dir, policy_dir = Path(run_dir), Path(policy_dir)
    chosen = choose_snapshots(run_dir, task)
    by_step = {row["step"]: row for row in _read_curve(run_dir / "curve.jsonl")}
    for tier, step in (steps or {}).items():
        if step not in by_step:
            raise KeyError(f"{run_dir} has no evaluation at step {step}; steps: {sorted(by_step)}")
        chosen[tier] = by_step[step]
    written = {}
    for tier in tiers:
        if tier not in chosen:
            print(f"{task}: no evaluation qualifies for the {tier} tier yet")
            continue
        row = chosen[tier]
        policy, _ = load_policy(run_dir / "snapshots" / f"step_{row['step']:07d}.safetensors")
        written[tier] = export_policy(
            policy,
            policy_dir / f"{task}_{tier}.safetensors",
            task=task,
            tier=tier,
            training_step=row["step"],
            training_eval_return=round(row["mean_return"], 1),
            algorithm="TD3 (Stable-Baselines3)",
        )
    return written


def plot_training_curve(
    run_dir: str | Path, task: str, out_file: str | Path, marks: dict[str, int] | None = None
) -> Path:
    """The evaluation returns of a run against steps, with the D4RL references; `marks` maps a
    tier name to the training step of its shipped snapshot, drawn as a labelled dot."""
    spec = get_task(task)
    curve = _read_curve(Path(run_dir) / "curve.jsonl")
    steps = np.array([row["step"] for row in curve])
    means = np.array([row["mean_return"] for row in curve])
    stds = np.array([row["std_return"] for row in curve])
    use_style()
    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.plot(steps, means, color=PALETTE[5], label="evaluation return")
    ax.fill_between(steps, means - stds, means + stds, color=PALETTE[5], alpha=0.2, lw=0)
    ax.axhline(spec.d4rl_expert_return, color=PALETTE[0], ls="--", lw=1, label="D4RL expert reference")
    ax.axhspan(
        MEDIUM_RANGE[0] * spec.d4rl_expert_return,
        MEDIUM_RANGE[1] * spec.d4rl_expert_return,
        color=PALETTE[1],
        alpha=0.15,
        lw=0,
        label="medium band (25-45 %)",
    )
    by_step = dict(zip(steps.tolist(), means.tolist()))
    for tier, step in (marks or {}).items():
        if step in by_step:
            ax.plot(step, by_step[step], "o", color=PALETTE[6] if tier == "expert" else PALETTE[1])
            ax.annotate(
                f"{tier} (step {step:,})",
                (step, by_step[step]),
                textcoords="offset points",
                xytext=(5, -12 if tier == "expert" else 6),
                fontsize=8,
            )
    ax.set_xlabel("environment steps")
    ax.set_ylabel("return")
    ax.set_title(f"TD3 on {spec.env_id}")
    ax.legend(fontsize=8, loc="lower right")
    return write_figure(fig, out_file)
