"""Scoring a trained run in the real environments and writing its report.

    python -m gato_min evaluate --run runs/x --tasks halfcheetah --episodes 10

Gato (Reed et al., 2022, Sec. 4.1) scores each task on a scale where 0 is a uniformly random
policy and 100 the task's expert, averaging many rollouts. For every task this module plays
`episodes` prompted episodes with `GatoAgent`, and reports the mean return and the mean
normalized score, each with a 95 % confidence interval (Student's t over episodes,
`gato_min.statistics.mean_ci`), plus the approximate D4RL-normalized score for MuJoCo tasks
(D4RL's references were measured on older environment versions). The report folder holds
`report.json`, `report.md`, a bar chart `scores.png` and a short rollout GIF per task (Atari:
the screen; MuJoCo: rendered offscreen with MUJOCO_GL=egl by a camera that follows the torso,
and skipped with a message where no renderer works), each frame captioned with its step and the
return so far.

The default folder is named after the settings (`RUN/eval`, `RUN/eval-no-prompt-t0`, ...), and
a folder that holds a report of other settings is never written over unless asked to.
"""

from __future__ import annotations

import io
import json
import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
from PIL import Image

from gato_min.agent import GatoAgent
from gato_min.data.reference import d4rl_normalized_score, normalized_score, reference_returns
from gato_min.data.training_set import TEXT_TASK, task_episodes
from gato_min.envs import get_task
from gato_min.files import atomic_write_bytes, atomic_write_json, atomic_write_text
from gato_min.plotting import PALETTE, label_bars, use_style, write_figure
from gato_min.runs import load_model, read_data_settings
from gato_min.settings import check_number
from gato_min.statistics import mean_ci

# ----------------------------------------------------------------------------- the report


def task_scores(task: str, returns) -> dict:
    """Mean ± 95 % CI of the returns and of the normalized (and D4RL-normalized) scores."""
    returns = np.asarray(returns, dtype=np.float64)
    ref = reference_returns(task)
    row = {
        "task": task,
        "episodes": len(returns),
        "returns": [round(float(r), 3) for r in returns],
        "random_return": ref["random"],
        "expert_return": ref.get("expert"),
    }
    row["return_mean"], row["return_ci95"] = mean_ci(returns)
    row["score_mean"], row["score_ci95"] = mean_ci(normalized_score(task, returns))
    if get_task(task).d4rl_expert_return is not None:
        row["d4rl_score_mean"], row["d4rl_score_ci95"] = mean_ci(d4rl_normalized_score(task, returns))
    return row


def save_gif(frames: list[np.ndarray], path: str | Path, fps: int = 25, every: int = 2, colors: int = 32) -> Path:
    """Write every `every`-th frame as an animated GIF, atomically. All frames share one palette
    of `colors` colours (maximum coverage, so that the small robot keeps its own colours), drawn
    from a few frames across the clip, without dithering: pixels that do not change keep their
    index and the GIF stores little more than what moved (about 400 KB for 200 frames of a
    192x192 MuJoCo render at every=2)."""
    if not frames:
        raise ValueError("no frames to write")
    images = [Image.fromarray(np.asarray(frame, dtype=np.uint8)).convert("RGB") for frame in frames[::every]]
    samples = np.concatenate([np.asarray(image) for image in images[:: max(1, len(images) // 8)]], axis=0)
    palette = Image.fromarray(samples).quantize(colors, method=Image.Quantize.MAXCOVERAGE)
    images = [image.quantize(palette=palette, dither=Image.Dither.NONE) for image in images]
    buffer = io.BytesIO()
    images[0].save(
        buffer,
        format="GIF",
        save_all=True,
        append_images=images[1:],
        duration=int(1000 * every / fps),
        loop=0,
        optimize=True,
    )
    return atomic_write_bytes(Path(path), buffer.getvalue())


def score_figure(rows: list[dict], title: str = ""):
    """The bar chart of normalized scores with their 95 % intervals, against random (0) and
    expert (100); each value is written beyond its interval. Returns (fig, ax)."""
    use_style()
    fig, ax = plt.subplots(figsize=(max(3.5, 1.4 * len(rows) + 2), 3.2))
    names = [row["label"] if "label" in row else row["task"] for row in rows]
    means = [row["score_mean"] for row in rows]
    errors = [0.0 if math.isnan(row["score_ci95"]) else row["score_ci95"] for row in rows]
    ax.bar(names, means, yerr=errors, capsize=4, color=PALETTE[5])
    label_bars(ax, means, errors)
    ax.axhline(100, color=PALETTE[3], linestyle="--", linewidth=1, label="expert (100)")
    ax.axhline(0, color=PALETTE[0], linewidth=0.8, label="random (0)")
    ax.set_ylabel("normalized score")
    ax.set_title(title or "score per task, mean and 95 % interval")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # beside the axes, off the bars
    return fig, ax


def plot_scores(rows: list[dict], path: str | Path, title: str = "") -> Path:
    """`score_figure` saved as a PNG at `path` with the shared style."""
    fig, _ = score_figure(rows, title)
    return write_figure(fig, path)


# the settings that make two reports the same evaluation; a report is only rewritten by one of the same
_SETTINGS = tuple(
    "run tasks episodes num_envs seed temperature memory prompt_tokens max_steps readout target_return history".split()
)


def default_out(
    run_dir: str | Path,
    tasks: list[str] | None = None,
    seed: int = 0,
    prompt_tokens: int | None = None,
    temperature: float = 1.0,
    max_steps: int | None = None,
    memory: str = "window",
    readout: str = "token",
    target_return: float | None = None,
    history: int | None = None,
) -> Path:
    """The report folder that says what was evaluated: `RUN/eval` for the default settings,
    else `eval` followed by the options that differ from them, in this order, e.g.
    `eval-no-prompt-t0-seed100`, `eval-prompt48`, `eval-ring`, `eval-mean`, `eval-pong-max500`,
    `eval-no-prompt-history1-mean`."""
    parts = ["eval", *(tasks or [])]
    if prompt_tokens is not None:
        parts.append("no-prompt" if prompt_tokens == 0 else f"prompt{prompt_tokens}")
    if memory != "window":
        parts.append(memory)
    if history is not None:
        parts.append(f"history{history}")
    if readout != "token":
        parts.append(readout)
    if target_return is not None:
        parts.append(f"return{target_return:g}")
    if temperature != 1.0:
        parts.append(f"t{temperature:g}")
    if seed != 0:
        parts.append(f"seed{seed}")
    if max_steps is not None:
        parts.append(f"max{max_steps}")
    return Path(run_dir) / "-".join(parts)


def _check_out(out: Path, settings: dict, overwrite: bool) -> None:
    """Refuse to write over a report of other settings, unless told to."""
    path = out / "report.json"
    if overwrite or not path.is_file():
        return
    stored = json.loads(path.read_text())
    stored = {
        **stored,
        "run": Path(str(stored.get("run", ""))).name,
        "tasks": [row["task"] for row in stored.get("tasks", [])],
        "max_steps": stored.get("max_steps"),
        "memory": stored.get("memory", "ring"),  # reports from before the choice played the ring
        "readout": stored.get("readout", "token"),
        "target_return": stored.get("target_return"),
        "history": stored.get("history"),
    }
    changed = [
        f"{key} {stored.get(key)!r} -> {settings[key]!r}" for key in _SETTINGS if stored.get(key) != settings[key]
    ]
    if changed:
        raise ValueError(
            f"{out} holds a report of other settings ({', '.join(changed)}); choose another folder with "
            "--out, or pass --overwrite (overwrite=True) to replace it"
        )


def evaluate_run(
    run_dir: str | Path,
    tasks: list[str] | None = None,
    episodes: int = 10,
    num_envs: int = 10,
    seed: int = 0,
    prompt_tokens: int | None = None,
    temperature: float = 1.0,
    out: str | Path | None = None,
    gif_steps: int = 200,
    max_steps: int | None = None,
    cache=None,
    device: str = "cpu",
    progress: bool = True,
    memory: str = "window",
    *,
    overwrite: bool = False,
    readout: str = "token",
    target_return: float | None = None,
    threads: int | None = 1,
    history: int | None = None,
) -> dict:
    """Play every task of a run with prompts and write the report; returns it as a dict, with
    the report folder under "out". `memory`: how the agent keeps its context (see
    `gato_min.agent`); `readout`: how a continuous action is read from the bins ("token" or
    "mean", see `GatoAgent`); `target_return`: the return a return-conditioned model is asked for
    (default: the task's expert reference return); `threads`: torch threads while acting (see
    `GatoAgent.rollout`); `history`: at most this many of the episode's timesteps in the context
    (default: as many as the run's training windows held, `DataSettings.window_timesteps`, else as
    many as fit; a task with short windows also gets their prompt length by default). `out`
    defaults to `default_out(...)`, a folder named after the settings; a folder holding a report
    of other settings is refused unless `overwrite`."""
    given = dict(episodes=episodes, num_envs=num_envs, max_steps=max_steps, seed=seed, gif_steps=gif_steps)
    for name, value in (given | dict(prompt_tokens=prompt_tokens, history=history)).items():  # ints: >= 1, or 0: none
        if value is not None:
            check_number(
                name, value, minimum=int(name in ("episodes", "num_envs", "max_steps", "history")), integer=True
            )
    check_number("temperature", temperature, minimum=0)
    if target_return is not None:
        check_number("target_return", target_return)
    run_dir = Path(run_dir)
    settings = read_data_settings(run_dir)
    all_tasks = [task for task in settings.tasks if task != TEXT_TASK]
    tasks = list(tasks or all_tasks)
    if not tasks:
        raise ValueError(f"{run_dir} was trained on no control task; nothing to evaluate")
    if out is None:
        subset = None if tasks == all_tasks else tasks
        out = default_out(
            run_dir, subset, seed, prompt_tokens, temperature, max_steps, memory, readout, target_return, history
        )
    out = Path(out)
    chosen = dict(
        run=run_dir.name,
        tasks=tasks,
        episodes=episodes,
        num_envs=num_envs,
        seed=seed,
        temperature=temperature,
        memory=memory,
        prompt_tokens=prompt_tokens,
        max_steps=max_steps,
        readout=readout,
        target_return=target_return,
        history=history,
    )
    _check_out(out, chosen, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    rows, notes = [], []
    for task in tasks:
        spec = get_task(task)
        model = load_model(run_dir, task=task, device=device)
        demonstrations = []
        if prompt_tokens != 0:
            demonstrations = task_episodes(task, settings, cache, progress)[1]  # the held-out episodes
        agent = GatoAgent(
            model,
            task,
            demonstrations,
            prompt_tokens=prompt_tokens,
            temperature=temperature,
            memory=memory,
            readout=readout,
            target_return=target_return,
            history=history,
            window_timesteps=settings.of("window_timesteps", task),
        )
        rollout = _rollout_with_frames(agent, episodes, num_envs, seed, max_steps, gif_steps, progress, notes, threads)
        row = task_scores(task, rollout.returns)
        row.update(
            lengths=rollout.lengths.tolist(),
            env_steps=rollout.env_steps,
            seconds=round(rollout.seconds, 2),
            env_steps_per_s=round(rollout.steps_per_second, 1),
            prompt_steps=agent.prompt_steps,
            prompts=len(demonstrations),
            context_tokens=agent.context_length,
        )
        if rollout.frames:
            row["gif"] = save_gif(rollout.frames, out / f"{task}.gif", fps=15 if spec.image_observations else 50).name
        rows.append(row)
    report = {
        "run": str(run_dir),
        "episodes": episodes,
        "num_envs": num_envs,
        "seed": seed,
        "temperature": temperature,
        "memory": memory,
        "readout": readout,
        "target_return": target_return,
        "history": history,
        "prompt_tokens": prompt_tokens,
        "max_steps": max_steps,
        "tasks": rows,
        "notes": notes,
    }
    atomic_write_json(out / "report.json", report)
    report["out"] = str(out)
    report["chart"] = plot_scores(
        rows, out / "scores.png", f"{run_dir.name}: normalized score, {episodes} episodes per task"
    ).name
    atomic_write_text(out / "report.md", format_report(report))
    return report


def _rollout_with_frames(agent, episodes, num_envs, seed, max_steps, gif_steps, progress, notes, threads):
    """The rollout, recording frames of episode 0 when a renderer works; otherwise without them."""
    options = dict(progress=progress, threads=threads)
    try:
        return agent.rollout(episodes, num_envs, seed, max_steps, record_frames=gif_steps, **options)
    except Exception as error:  # no EGL / OSMesa: MuJoCo cannot render offscreen here
        if gif_steps == 0 or agent.codec.spec.image_observations:
            raise
        note = (
            f"{agent.task}: no rollout GIF, offscreen rendering failed ({type(error).__name__}: {error}); "
            "set MUJOCO_GL=egl (or osmesa) where a renderer is installed"
        )
        print(note)
        notes.append(note)
        return agent.rollout(episodes, num_envs, seed, max_steps, record_frames=0, **options)


def format_report(report: dict) -> str:
    """The report as a Markdown table."""
    lines = [
        f"# Evaluation of {report['run']}",
        "",
        f"{report['episodes']} episodes per task on {report['num_envs']} environments, seed {report['seed']}, "
        f"temperature {report['temperature']}, {report.get('readout', 'token')} readout, "
        f"{report.get('memory', 'ring')} memory, prompt: "
        + (
            "none"
            if report["prompt_tokens"] == 0
            else f"first {report['tasks'][0]['prompt_steps']} timesteps of a held-out demonstration"
        )
        + ".",
        "",
        "| task | return (mean ± 95 % CI) | score (0 random, 100 expert) | D4RL score (approx.) | env steps/s |",
        "|---|---|---|---|---|",
    ]
    for row in report["tasks"]:
        d4rl = f"{row['d4rl_score_mean']:.1f} ± {row['d4rl_score_ci95']:.1f}" if "d4rl_score_mean" in row else "–"
        lines.append(
            f"| {row['task']} | {row['return_mean']:.1f} ± {row['return_ci95']:.1f} | "
            f"{row['score_mean']:.1f} ± {row['score_ci95']:.1f} | {d4rl} | {row['env_steps_per_s']:.0f} |"
        )
    lines += ["", f"![scores]({report.get('chart', 'scores.png')})", ""]
    lines += [f"![{row['task']}]({row['gif']})" for row in report["tasks"] if "gif" in row]
    lines += [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"
