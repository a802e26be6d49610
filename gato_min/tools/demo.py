"""The whole job on a fresh machine: behaviour data -> a trained Gato -> scores in the real env.

    python -m gato_min demo                  (what `make demo` runs: HalfCheetah)
    python -m gato_min demo --task hopper    (any shipped task: MuJoCo, or pong / breakout from pixels)

1. collect: the task's shipped expert plays `episodes` episodes with exploration noise (N(0, s)
   on its torques; Atari: a random button with chance epsilon), and its own noise-free actions
   are written down (DART labels, `gato_min.data.collect`); kept in the cache, so a second demo
   skips this.
2. train: the fast recipe (`demo_config`, `demo_settings`, chapter 09's third bench): windows
   of one timestep (a MuJoCo expert is Markov: history and prompts carry nothing it needs), two
   layers of width 64 with an output head of their own, 256 windows a step at a peak rate of
   2e-3, for `steps` optimizer steps, as `processes` single-threaded data-parallel workers
   (`gato_min.launch.train_processes`). A task departs from it where measurement said so
   (`TASK_RECIPES`): Walker2d takes more and noisier episodes and a wider model; Atari takes
   windows of several frames, a narrower patch block and smaller batches (`ATARI_RECIPE`).
3. evaluate: the trained agent plays `eval_episodes` fresh episodes without a prompt, reading
   every torque as the mean of its distribution over the bins (`readout="mean"`; "token" with
   `temperature` 0 takes the most likely bin) and every button at `temperature` (0: the most
   likely) (`gato_min.evaluate`); the report, bar chart and GIF go to `<out>/eval/`.

Every stage shows a progress bar; the summary (stage times, score) is printed and written to
`<out>/demo.json`. About 8 minutes on 2 CPU cores from a fresh clone (the README shows a run).
"""

from __future__ import annotations

import time
from pathlib import Path

from gato_min.config import GatoConfig
from gato_min.data.training_set import DataSettings, task_episodes
from gato_min.envs import get_task
from gato_min.evaluate import evaluate_run
from gato_min.files import atomic_write_json
from gato_min.launch import train_processes
from gato_min.optim import TrainSettings
from gato_min.sequence import TimestepLayout

DEMO_TASK = "halfcheetah"
DEMO_STEPS = 4500


# Where a task departs from the shared recipe, each departure measured (chapter 09, "Walker2d"):
# the walker falls unless its data cover wider mistakes (1,000 episodes with N(0, 0.5) on the
# played torques, not 500 with N(0, 0.3)) and its model is 1.5 times as wide (0.76M parameters).
# Atari (chapter 10) departs further: one frame shows no ball direction, so a window holds
# `timesteps` timesteps (27 tokens each: 25 patches, '|', the button; as in every recipe, a quarter
# of the windows open with a prompt, Sec. 2.3); `action_noise` is the chance of a random button (DART
# epsilon); the patch block has `patch_channels` channels (its convolutions are most of a step);
# the peak rate is 5e-4: at the shared 2e-3 the held-out loss of Pong's buttons stalls at 0.38
# nats (the marginal is 0.44) for 4,000 steps, at 5e-4 it is 0.29 after 1,250.
ATARI_RECIPE = {
    "episodes": 40,
    "action_noise": 0.2,
    "timesteps": 4,
    "patch_channels": 16,
    "batch_size": 64,
    "lr": 5e-4,
    "steps": 5000,
}
TASK_RECIPES: dict[str, dict] = {
    "walker2d": {"episodes": 1000, "action_noise": 0.5, "d_model": 96, "d_ff": 384, "n_head": 3},
    "pong": ATARI_RECIPE,
    "breakout": ATARI_RECIPE,
}
SHARED_RECIPE = {
    "episodes": 500,
    "action_noise": 0.3,
    "d_model": 64,
    "d_ff": 256,
    "n_head": 2,
    "timesteps": 1,
    "patch_channels": 32,
    "batch_size": 256,
    "lr": 2e-3,
    "steps": DEMO_STEPS,
}


def task_recipe(task: str) -> dict:
    """The data, model and training sizes the demo uses for `task`: the shared recipe with the
    task's measured departures (`TASK_RECIPES`)."""
    return {**SHARED_RECIPE, **TASK_RECIPES.get(task, {})}


def demo_config(task: str = DEMO_TASK) -> GatoConfig:
    """The fast recipe's model for `task`: a window of exactly one timestep (HalfCheetah 17
    readings + '|' + 6 torques = 24 tokens, Hopper 15, Walker2d 24), two layers of width 64 (2
    heads, feed-forward 256; Walker2d 96, 3 heads, 384), an untied head, local positions for
    action tokens, smooth starting rows for the continuous bins; 0.46M parameters on HalfCheetah."""
    recipe = task_recipe(task)
    context = recipe["timesteps"] * TimestepLayout.for_task(get_task(task)).tokens_per_timestep
    return GatoConfig.from_preset(
        "cpu-small",
        context_length=context,
        n_layer=2,
        d_model=recipe["d_model"],
        d_ff=recipe["d_ff"],
        n_head=recipe["n_head"],
        tie_head=False,
        action_positions="local",
        value_init="smooth",
        patch_channels=recipe["patch_channels"],
        patch_groups=min(8, recipe["patch_channels"]),
    )


DEMO_CONFIG = demo_config()


# Where the demo's score stands: the same recipe and steps, two training seeds, 30 episodes each
# (README, "Learning speed"); tests/test_pipeline.py recomputes these figures from the stored reports.
STORED_RECIPE = {
    "steps": DEMO_STEPS,
    "train_minutes": 5.1,
    "score_mean": 96.0,
    "score_ci95": 0.8,
    "episodes": 60,
    "runs": ("results/halfcheetah-fast", "results/halfcheetah-fast-seed1"),
    "reports": ("eval-no-prompt-mean-seed1000",),
}


def demo_settings(
    steps: int | None = None, episodes: int | None = None, task: str = DEMO_TASK, seed: int = 0
) -> tuple[DataSettings, TrainSettings]:
    """The data and training settings of the demo (and of the stored fast runs): the expert plays
    `episodes` episodes (default: the task's recipe, 500; Walker2d 1,000) with N(0, 0.3) on its
    torques (Walker2d N(0, 0.5)) and its own torques are the labels; the noisy play returns less
    than 80 % of the expert's, so the return filter is off. 256 windows a step, peak rate 2e-3
    after 100 warm-up steps, cosine to a tenth; held-out losses and checkpoints every 500. Atari
    (`ATARI_RECIPE`): 40 episodes of the scripted expert at epsilon 0.2, its planned buttons the
    labels, 64 windows a step at a peak rate of 5e-4. `steps` defaults to the task's recipe (4,500;
    Atari 5,000)."""
    recipe = task_recipe(task)
    steps = recipe["steps"] if steps is None else steps
    data = DataSettings(
        tasks=(task,),
        episodes=recipe["episodes"] if episodes is None else episodes,
        action_noise=recipe["action_noise"],
        record="intended",
        min_return_fraction=0.0,
    )
    return data, TrainSettings(
        steps=steps,
        batch_size=recipe["batch_size"],
        lr=recipe["lr"],
        warmup_steps=100,
        seed=seed,
        eval_every=500,
        eval_batches=8,
        checkpoint_every=500,
    )


def run_demo(
    out: str | Path = "runs/demo",
    steps: int | None = None,
    episodes: int | None = None,
    eval_episodes: int = 10,
    threads: int = 1,
    processes: int = 2,
    cache=None,
    progress: bool = True,
    config: GatoConfig | None = None,
    max_steps: int | None = None,
    temperature: float = 0.0,
    task: str = DEMO_TASK,
    seed: int = 0,
    readout: str = "mean",
) -> dict:
    """Collect, train and evaluate (resuming whatever an earlier call left in `out`); returns the
    summary that is also written to `<out>/demo.json`. `config` defaults to `demo_config(task)`
    and `episodes` to the task's recipe (`task_recipe`); `seed` is the training seed; `readout`
    and `temperature` say how torques are read from the bins (`gato_min.agent.GatoAgent`).
    Training runs `processes` workers of `threads` torch threads each; collection and evaluation
    act on one thread (see `gato_min.distributed.torch_threads`).
    `max_steps` cuts the evaluation's episodes short (for tests). Torch's thread count is given
    back."""
    if not isinstance(eval_episodes, int) or eval_episodes < 2:
        raise ValueError(f"eval_episodes must be an int >= 2 (a confidence interval needs two), got {eval_episodes!r}")
    if not isinstance(threads, int) or threads < 1 or not isinstance(processes, int) or processes < 1:
        raise ValueError(f"threads and processes must be positive ints, got {threads!r} and {processes!r}")
    spec = get_task(task)  # an unknown name is a KeyError listing the known ones
    if spec.family not in ("mujoco", "atari"):
        raise ValueError(f"the demo plays a shipped MuJoCo or Atari task (it has their experts), got task {task!r}")
    config = demo_config(task) if config is None else config
    out = Path(out)
    data, settings = demo_settings(steps, episodes, task, seed)
    episodes, steps = data.episodes, settings.steps
    atari = spec.family == "atari"
    readout = "token" if spec.discrete_actions else readout  # a button is one token: nothing to average
    times = {}

    def stage(number: int, text: str) -> float:
        print(f"\n[{number}/3] {text}", flush=True)
        return time.perf_counter()

    noise = (
        f"a random button with chance {data.action_noise:g} played, its planned one recorded"
        if atari
        else f"torques + N(0, {data.action_noise:g}) played, its own recorded"
    )
    begin = stage(1, f"collect: {episodes} episodes of the shipped {task} expert, {noise} (cached after the first run)")
    train_episodes, heldout, collected = task_episodes(task, data, cache, progress)
    kept = len(train_episodes), len(heldout)
    del train_episodes, heldout  # the workers read their own copies; Atari frames are big
    times["collect_s"] = round(time.perf_counter() - begin, 1)
    print(f"      {collected} episodes, {kept[0]} to train on, {kept[1]} held out ({times['collect_s']:.0f} s)")

    begin = stage(
        2,
        f"train: {config.n_layer}-layer Gato ({task}, {steps} steps of {settings.batch_size} x "
        f"{config.context_length} tokens, {processes} process(es) x {threads} thread(s), seed {seed})",
    )
    summary = train_processes(
        config, data, settings, out / "run", processes, cache=cache, threads=threads, progress=progress
    )
    times["train_s"] = round(time.perf_counter() - begin, 1)
    print(
        f"      held-out action loss {summary['heldout'][task]:.3f} nats "
        f"(marginal bins {summary['baseline'][task]:.3f}) ({times['train_s']:.0f} s)"
    )

    begin = stage(
        3,
        f"evaluate: {eval_episodes} episodes in the real environment, no prompt, "
        + (
            f"buttons sampled at temperature {temperature:g}"
            if atari
            else "the mean of the bins"
            if readout == "mean"
            else f"sampled at temperature {temperature:g}"
        ),
    )
    report = evaluate_run(
        out / "run",
        [task],
        episodes=eval_episodes,
        num_envs=eval_episodes,
        seed=0,
        prompt_tokens=0,
        temperature=temperature,
        readout=readout,
        out=out / "eval",
        gif_steps=200,
        max_steps=max_steps,
        cache=cache,
        progress=progress,
        overwrite=True,  # the demo's own folder: a second demo with other options replaces it
    )
    row = report["tasks"][0]
    times["evaluate_s"] = round(time.perf_counter() - begin, 1)
    times["total_s"] = round(sum(times.values()), 1)

    print(f"\n{task}, {eval_episodes} episodes, mean ± 95 % CI   (score: 0 = random, 100 = the shipped expert)")
    d4rl = "d4rl_score_mean" in row  # the MuJoCo tasks have D4RL's reference returns too
    print(f"{'return':>18s} {'score':>14s}" + (f" {'D4RL score':>14s}" if d4rl else ""))
    print(
        f"{row['return_mean']:9.1f} ± {row['return_ci95']:<6.1f} {row['score_mean']:6.1f} ± {row['score_ci95']:<5.1f}"
        + (f" {row['d4rl_score_mean']:6.1f} ± {row['d4rl_score_ci95']:<5.1f}" if d4rl else "")
    )
    print(
        f"\nstages: collect {times['collect_s']:.0f} s, train {times['train_s']:.0f} s, evaluate "
        f"{times['evaluate_s']:.0f} s; total {times['total_s'] / 60:.1f} min"
    )
    print(f"report -> {out / 'eval' / 'report.md'}")
    if task == DEMO_TASK:
        recipe = STORED_RECIPE
        print(
            f"\nwhere this stands: the stored runs are this command with --steps {recipe['steps']} and training "
            f"seeds 0 and 1 ({recipe['train_minutes']} min of training each on 2 CPU cores); read by the mean of the "
            f"bins they score {recipe['score_mean']} ± {recipe['score_ci95']} ({recipe['episodes']} episodes, "
            f"{', '.join(recipe['runs'])})."
        )
    result = {
        "task": task,
        "steps": steps,
        "seed": seed,
        "episodes": episodes,
        "eval_episodes": eval_episodes,
        "readout": readout,
        "temperature": temperature,
        "processes": processes,
        "threads": threads,
        "times": times,
        "heldout_loss": summary["heldout"][task],
        "score": {key: row[key] for key in ("score_mean", "score_ci95", "return_mean", "return_ci95")},
        "report": str(out / "eval" / "report.md"),
    }
    atomic_write_json(out / "demo.json", result)
    return result
