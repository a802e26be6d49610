"""The whole job on a fresh machine: behaviour data -> a trained Gato -> scores in the real env.

    python -m gato_min demo            (what `make demo` runs)

1. collect: the shipped HalfCheetah expert plays `episodes` episodes with exploration noise on
   its torques, and its own noise-free torques are written down (DART labels,
   `gato_min.data.collect`); kept in the cache, so a second demo skips this.
2. train: the small preset on those episodes (`gato_min.train`), the recipe of the stored
   30-minute run (`DEMO_CONFIG`, `demo_settings`) cut to `steps` optimizer steps, as
   `processes` single-threaded data-parallel workers (`gato_min.launch.train_processes`).
3. evaluate: the trained agent plays `eval_episodes` fresh episodes, prompted with a held-out
   demonstration (`gato_min.evaluate`), taking the most likely bin of every torque
   (`temperature` 0); the report, bar chart and GIF go to `<out>/eval/`. Then the same episodes
   without a prompt (`<out>/eval-no-prompt/`): at this context length the prompt takes half of
   the window, and the agent does better without it (chapter 08).

Every stage shows a progress bar; the summary (stage times, scores) is printed and written to
`<out>/demo.json`. About 10 minutes on 2 CPU cores (the README shows a run).
"""

from __future__ import annotations

import time
from pathlib import Path

from gato_min.config import GatoConfig
from gato_min.data.training_set import DataSettings, task_episodes
from gato_min.evaluate import evaluate_run
from gato_min.files import atomic_write_json
from gato_min.launch import train_processes
from gato_min.optim import TrainSettings

DEMO_TASK = "halfcheetah"
# the cheetah recipe (chapters 07-08): a short context of 4 timesteps, many windows per step, action
# tokens with local positions, smooth starting embeddings for the continuous bins
DEMO_CONFIG = GatoConfig.from_preset("cpu-small", context_length=96, action_positions="local", value_init="smooth")


# Where the demo's score stands: the same recipe trained to the end (README, "Acting and
# evaluation"); tests/test_pipeline.py recomputes these figures from the stored reports.
STORED_RECIPE = {
    "steps": 5800,
    "train_minutes": 28.5,
    "score_mean": 81.6,
    "score_ci95": 4.7,
    "episodes": 80,
    "runs": ("results/halfcheetah-30min", "results/halfcheetah-30min-seed1"),
    "reports": ("eval-no-prompt-t0", "eval-no-prompt-t0-seed100"),
}


def demo_settings(steps: int = 1800, episodes: int = 500) -> tuple[DataSettings, TrainSettings]:
    """The data and training settings of the demo (and, with more steps, of the stored cheetah
    run): the expert plays with N(0, 0.3) on its torques and its own torques are the labels; the
    noisy play returns less than 80 % of the expert's, so the return filter is off."""
    data = DataSettings(
        tasks=(DEMO_TASK,), episodes=episodes, action_noise=0.3, record="intended", min_return_fraction=0.0
    )
    return data, TrainSettings(
        steps=steps, batch_size=64, lr=1e-3, warmup_steps=100, eval_every=100, eval_batches=8, checkpoint_every=100
    )


def run_demo(
    out: str | Path = "runs/demo",
    steps: int = 1800,
    episodes: int = 500,
    eval_episodes: int = 10,
    threads: int = 1,
    processes: int = 2,
    cache=None,
    progress: bool = True,
    config: GatoConfig = DEMO_CONFIG,
    max_steps: int | None = None,
    temperature: float = 0.0,
) -> dict:
    """Collect, train and evaluate (resuming whatever an earlier call left in `out`); returns the
    summary that is also written to `<out>/demo.json`. Training runs `processes` workers of
    `threads` torch threads each; collection and evaluation act on one thread (see
    `gato_min.distributed.torch_threads`). `max_steps` cuts the evaluation's episodes short (for
    tests). Torch's thread count is given back."""
    if not isinstance(eval_episodes, int) or eval_episodes < 2:
        raise ValueError(f"eval_episodes must be an int >= 2 (a confidence interval needs two), got {eval_episodes!r}")
    if not isinstance(threads, int) or threads < 1 or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"threads and processes must be positive ints, got {threads!r} and {processes!r}")
    out = Path(out)
    data, settings = demo_settings(steps, episodes)
    times = {}

    def stage(number: int, text: str) -> float:
        print(f"\n[{number}/3] {text}", flush=True)
        return time.perf_counter()

    begin = stage(
        1,
        f"collect: {episodes} episodes of the shipped {DEMO_TASK} expert, "
        f"torques + N(0, {data.action_noise:g}) played, its own recorded (cached after the first run)",
    )
    train_episodes, heldout, collected = task_episodes(DEMO_TASK, data, cache, progress)
    times["collect_s"] = round(time.perf_counter() - begin, 1)
    print(
        f"      {collected} episodes, {len(train_episodes)} to train on, {len(heldout)} held out for prompts "
        f"({times['collect_s']:.0f} s)"
    )

    begin = stage(
        2,
        f"train: {config.n_layer}-layer Gato ({DEMO_TASK}, {steps} steps of {settings.batch_size} x "
        f"{config.context_length} tokens, {processes} process(es) x {threads} thread(s))",
    )
    summary = train_processes(
        config, data, settings, out / "run", processes, cache=cache, threads=threads, progress=progress
    )
    times["train_s"] = round(time.perf_counter() - begin, 1)
    print(
        f"      held-out action loss {summary['heldout'][DEMO_TASK]:.3f} nats "
        f"(marginal bins {summary['baseline'][DEMO_TASK]:.3f}) ({times['train_s']:.0f} s)"
    )

    begin = stage(
        3,
        f"evaluate: {eval_episodes} episodes in the real environment, prompted with a held-out "
        f"demonstration, then without a prompt (temperature {temperature:g})",
    )
    rows = {}
    for name, folder, prompt, gif in (("with a prompt", "eval", None, 200), ("no prompt", "eval-no-prompt", 0, 0)):
        report = evaluate_run(
            out / "run",
            [DEMO_TASK],
            episodes=eval_episodes,
            num_envs=eval_episodes,
            seed=0,
            prompt_tokens=prompt,
            temperature=temperature,
            out=out / folder,
            gif_steps=gif,
            max_steps=max_steps,
            cache=cache,
            progress=progress,
            overwrite=True,  # the demo's own folders: a second demo with other options replaces them
        )
        rows[name] = report["tasks"][0]
    times["evaluate_s"] = round(time.perf_counter() - begin, 1)
    times["total_s"] = round(sum(times.values()), 1)

    print(f"\n{DEMO_TASK}, {eval_episodes} episodes, mean ± 95 % CI   (score: 0 = random, 100 = the shipped expert)")
    print(f"{'':18s} {'return':>18s} {'score':>14s} {'D4RL score':>14s}")
    for name, row in rows.items():
        print(
            f"{name:18s} {row['return_mean']:9.1f} ± {row['return_ci95']:<6.1f} {row['score_mean']:6.1f} ± "
            f"{row['score_ci95']:<5.1f} {row['d4rl_score_mean']:6.1f} ± {row['d4rl_score_ci95']:<5.1f}"
        )
    print(
        f"\nstages: collect {times['collect_s']:.0f} s, train {times['train_s']:.0f} s, evaluate "
        f"{times['evaluate_s']:.0f} s; total {times['total_s'] / 60:.1f} min"
    )
    print(f"reports -> {out / 'eval' / 'report.md'}, {out / 'eval-no-prompt' / 'report.md'}")
    recipe = STORED_RECIPE
    print(
        f"\nwhere this stands: {steps} training steps. The stored recipe is this command with --steps "
        f"{recipe['steps']} ({recipe['train_minutes']} min of training on 2 CPU cores); taking the most likely bin "
        f"without a prompt it scores {recipe['score_mean']} ± {recipe['score_ci95']} ({recipe['episodes']} episodes "
        f"over 2 training seeds, {', '.join(recipe['runs'])}). In full:\n  python -m gato_min demo --steps "
        f"{recipe['steps']} --out runs/demo-{recipe['steps']}"
    )
    result = {
        "task": DEMO_TASK,
        "steps": steps,
        "episodes": episodes,
        "eval_episodes": eval_episodes,
        "temperature": temperature,
        "processes": processes,
        "threads": threads,
        "times": times,
        "heldout_loss": summary["heldout"][DEMO_TASK],
        "scores": {
            name: {key: row[key] for key in ("score_mean", "score_ci95", "return_mean", "return_ci95")}
            for name, row in rows.items()
        },
        "reports": [str(out / folder / "report.md") for folder in ("eval", "eval-no-prompt")],
    }
    atomic_write_json(out / "demo.json", result)
    return result
