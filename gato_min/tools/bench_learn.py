"""How fast does each model learn? Score in the real environment against minutes of training.

    python -m gato_min bench-learn --task halfcheetah --minutes 2 5 10 15

Every contender trains on the same episodes (the task's DART-labelled expert data, as the
demo collects it) on this machine, one after the other, for each budget of minutes; each
trained model plays the same `episodes` episodes (fixed seeds, no prompt) and gets the task's
normalized score (0 = random, 100 = the shipped expert). Evaluation time is not training time.

Contenders (`CONTENDERS`; choose with `--contenders`):

* `gato-paper`: the small preset with the paper's choices (one-hot bin targets, no position
  for action tokens, every table row drawn alike), acting by sampling each action token;
* `gato-recipe`: the stored 30-minute cheetah recipe (`RECIPE_CONFIG`), taking the most likely bin;
  `gato-recipe+mean`: the same weights read by the mean of the bins (`GatoAgent(readout="mean")`);
* `gato-smooth`: the recipe trained on Gaussian-smoothed bin targets
  (`TrainSettings.bin_smoothing`), read by the mean of the bins; `gato-smooth+argmax`: the same
  weights taking the most likely bin;
* `gato-small`: the recipe at half the width (`SMALL_CONFIG`: 0.43M parameters, about 2.5 times the
  steps per second), taking the most likely bin; `gato-small+mean`: read by the mean of the bins;
* `gato-fast`: the fastest setting measured, the demo's recipe (`demo_config`, `demo_settings`): a
  window of one timestep (no history, no prompt: a MuJoCo expert is Markov), width 64, two layers,
  an untied head, 256 windows a step at a peak rate of 2e-3, taking the most likely bin;
  `gato-fast+mean`: the same weights read by the mean of the bins (the demo's readout);
* `dt`: the Decision Transformer of `gato_min.peers` with its published gym settings;
* `mlp`: the 2-layer MLP regressor, the floor.

gato_min trains as `train_processes` runs it (2 single-threaded processes, the fastest way on 2
cores, `bench-processes`), one run per budget: its warm-up and cosine decay are fitted to the
budget (a 60-step probe measures the steps/s first), because a model caught halfway down its
schedule plays far worse than one whose schedule has ended (measured: one 15-minute run kept at
10 minutes scored 7, the same run at its end 49). The peers train in this process with 2
threads, once, kept at each budget: their learning rate is constant after the warm-up, so the
budget does not change their run. Results go to `<out>/bench_learn.json` (written after each
contender; a later call with more budgets or contenders measures only what is missing) and a
plot `<out>/bench_learn.png`.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import shutil
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import torch
from safetensors import safe_open

from gato_min.agent import GatoAgent
from gato_min.config import GatoConfig
from gato_min.data.training_set import DataSettings, task_episodes
from gato_min.envs import get_task
from gato_min.evaluate import task_scores
from gato_min.files import atomic_write_json
from gato_min.launch import train_processes
from gato_min.peers import (
    DecisionTransformer,
    DTData,
    DTPolicy,
    DTSettings,
    MLPPolicyPeer,
    MLPRegressor,
    dt_loss,
    play,
    train_for,
)
from gato_min.plotting import PALETTE, use_style, write_figure
from gato_min.runs import RunFolder, load_model, read_settings
from gato_min.tools.demo import demo_config, demo_settings

# the stored 30-minute cheetah recipe (results/halfcheetah-30min, chapters 07-08): windows of 4 timesteps
# (96 tokens), the small preset's four layers of width 128, 64 windows a step at a peak rate of 1e-3
RECIPE_CONFIG = GatoConfig.from_preset("cpu-small", context_length=96, action_positions="local", value_init="smooth")
RECIPE_SETTINGS = {"batch_size": 64, "lr": 1e-3}

# the recipe at half the width (64, 2 heads of 32, feed-forward 256): 0.43M parameters at 2.5x the
# training steps per second (one thread: 190 ms per step of 32 windows against 474 ms)
SMALL_CONFIG = RECIPE_CONFIG.replace(d_model=64, d_ff=256, n_head=2)

# gato-fast is the demo's recipe (`demo_config(task)`, `demo_settings`): one timestep per window (HalfCheetah:
# 17 + 1 + 6 tokens), two layers of width 64, an output head of its own, 0.46M parameters, 256 windows a step at
# a peak rate of 2e-3. Screened at 8 minutes on HalfCheetah (one run each, argmax, 10 episodes): 49.3 +- 6.3,
# against 45.5 +- 9.1 at rate 1e-3, 31.2 with four layers, 21.5 with one, 44.2 at width 128 (README, "Learning speed")

# gato contenders: (config, changes to the demo's TrainSettings, {row name suffix: (readout, temperature)}):
# each kept model is scored once per way of reading its actions; config None: `demo_config(task)`
CONTENDERS = {
    "gato-paper": (
        RECIPE_CONFIG.replace(action_positions="none", value_init="normal"),
        RECIPE_SETTINGS,
        {"": ("token", 1.0)},
    ),
    "gato-recipe": (RECIPE_CONFIG, RECIPE_SETTINGS, {"": ("token", 0.0), "+mean": ("mean", 1.0)}),
    "gato-smooth": (
        RECIPE_CONFIG,
        RECIPE_SETTINGS | {"bin_smoothing": 10.0},
        {"": ("mean", 1.0), "+argmax": ("token", 0.0)},
    ),
    "gato-small": (SMALL_CONFIG, RECIPE_SETTINGS, {"": ("token", 0.0), "+mean": ("mean", 1.0)}),
    "gato-fast": (None, {}, {"": ("token", 0.0), "+mean": ("mean", 1.0)}),
    "dt": None,
    "mlp": None,
}


def bench_data(task: str, episodes: int = 500) -> DataSettings:
    """The demo's data for any MuJoCo task: the shipped expert with N(0, 0.3) on its torques,
    its own torques recorded (DART), no return filter."""
    data, _ = demo_settings(episodes=episodes)
    return dataclasses.replace(data, tasks=(task,))


def _probe_rate(name, config, data, settings, out, processes, cache) -> float:
    """Training steps per second of a gato contender on this machine (a 60-step probe, kept in
    `<out>/<name>/probe.json` so that a resumed bench plans the same runs)."""
    stored = out / name / "probe.json"
    if stored.is_file():
        return json.loads(stored.read_text())["steps_per_s"]
    probe = out / name / "probe"
    shutil.rmtree(probe, ignore_errors=True)
    train_processes(config, data, settings, probe, processes, cache=cache, progress=False, stop_after=60)
    rows = RunFolder(probe).rows()
    rate = (rows[-1]["step"] - rows[1]["step"]) / (rows[-1]["elapsed_s"] - rows[1]["elapsed_s"])
    shutil.rmtree(probe)
    atomic_write_json(stored, {"steps_per_s": rate})
    return rate


def _train_gato(name, data, out, minutes, processes, cache, progress) -> dict:
    """One run per budget, its cosine schedule fitted to the budget (steps = probed rate x
    seconds): what a user who has that many minutes would train."""
    config, changes, _ = CONTENDERS[name]
    config = demo_config(data.tasks[0]) if config is None else config
    _, settings = demo_settings()
    # held-out losses only every 500 steps: they cost training time here and the bench scores by playing
    settings = dataclasses.replace(settings, eval_every=500, checkpoint_every=500, **changes)
    rate = _probe_rate(name, config, data, settings, out, processes, cache)
    planned = {}
    for mark in minutes:
        run_dir = out / name / f"{mark:g}min"
        steps = read_settings(run_dir).steps if RunFolder(run_dir).settings.exists() else int(rate * 60 * mark)
        print(f"  {name}, {mark:g} minutes: {steps} steps at the probed {rate:.2f} steps/s", flush=True)
        train_processes(
            config, data, dataclasses.replace(settings, steps=steps), run_dir, processes, cache=cache, progress=progress
        )
        planned[f"{mark:g}"] = steps
    return {"steps_per_s": round(rate, 3), "steps": planned}


def _evaluate_gato(name, task, out, minutes, episodes, seed, max_steps) -> list[dict]:
    rows = []
    for suffix, (readout, temperature) in CONTENDERS[name][2].items():
        for mark in minutes:
            run = RunFolder(out / name / f"{mark:g}min")
            with safe_open(str(run.weights), "pt") as weights:
                stamp = weights.metadata()
            model = load_model(run.path, task=task)
            agent = GatoAgent(model, task, [], prompt_tokens=0, temperature=temperature, readout=readout)
            rollout = agent.rollout(episodes, num_envs=episodes, seed=seed, max_steps=max_steps, progress=False)
            rows.append(
                _row(name, name + suffix, mark, rollout.returns, task)
                | {"readout": readout, "temperature": temperature}
                | {"steps": int(stamp["step"]), "trained_s": float(stamp["elapsed_s"])}
            )
    return rows


def _row(family: str, name: str, mark: float, returns, task: str) -> dict:
    scores = task_scores(task, returns)
    return {
        "family": family,  # the trained contender (its rows differ in how actions are read)
        "contender": name,
        "minutes": mark,
        "score_mean": round(scores["score_mean"], 2),
        "score_ci95": round(scores["score_ci95"], 2),
        "return_mean": round(scores["return_mean"], 1),
        "returns": scores["returns"],
    }


def _train_peer(name, task, train_episodes, minutes, seed) -> dict:
    """Train a peer in this process, keeping its weights at each budget."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    settings = DTSettings()
    data = DTData(train_episodes, task, settings)
    state_dim, action_dim = data.states.shape[1], data.actions.shape[1]
    if name == "dt":
        model = DecisionTransformer(state_dim, action_dim, settings)
        optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)

        def step_fn():
            return dt_loss(model, data.sample(settings.batch_size, rng))

        def schedule(step):
            return settings.lr * min(1.0, step / settings.warmup_steps)

        clip = settings.grad_clip
    else:
        model = MLPRegressor(state_dim, action_dim)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        states, actions = torch.from_numpy(data.states), torch.from_numpy(data.actions)

        def step_fn():
            pick = torch.from_numpy(rng.integers(0, len(states), 256))
            return ((model(states[pick]) - actions[pick]) ** 2).mean()

        schedule, clip = None, float("inf")
    kept = {}

    def on_mark(mark, step):
        kept[mark / 60] = (copy.deepcopy(model.state_dict()), step)

    model.train()
    train_for(step_fn, optimizer, [60 * m for m in minutes], on_mark, clip, model.parameters(), schedule)
    return {"model": model, "data": data, "kept": kept, "action_dim": action_dim}


def _evaluate_peer(name, task, trained, episodes, seed, max_steps) -> list[dict]:
    rows = []
    model, data = trained["model"], trained["data"]
    for mark, (state, step) in trained["kept"].items():
        model.load_state_dict(state)
        if name == "dt":
            policy = DTPolicy(model, data, trained["action_dim"], target_return=data.best_return)
        else:
            policy = MLPPolicyPeer(model, data.standardize)
        row = _row(name, name, mark, play(policy, task, episodes, episodes, seed, max_steps), task)
        rows.append(row | {"steps": step})
    return rows


def bench_learn(
    task: str = "halfcheetah",
    minutes: tuple[float, ...] = (2, 5, 10, 15),
    contenders: tuple[str, ...] = tuple(CONTENDERS),
    out: str | Path = "runs/bench-learn",
    episodes: int = 10,
    seed: int = 1000,
    processes: int = 2,
    cache=None,
    progress: bool = True,
    max_steps: int | None = None,
    data: DataSettings | None = None,
) -> dict:
    """Train every contender on the same data for the longest budget, keeping its weights at
    each budget; score each kept model over `episodes` episodes (seeds `seed`..; `max_steps`
    cuts them short, for tests); write and return the table. `data` defaults to
    `bench_data(task)`. The table is written after each contender: a second call with the same
    `out` and settings skips the contenders it holds (and resumes a gato run cut short)."""
    unknown = [c for c in contenders if c not in CONTENDERS]
    if unknown:
        raise ValueError(f"unknown contenders {unknown}; choose from {list(CONTENDERS)}")
    minutes = tuple(sorted(float(m) for m in minutes))
    if not minutes or minutes[0] <= 0:
        raise ValueError(f"minutes must be positive budgets, got {minutes}")
    if get_task(task).family != "mujoco":
        raise ValueError(f"bench-learn compares models on continuous-control tasks; {task!r} is not one")
    out = Path(out)
    data = data or bench_data(task)
    train_episodes, _, _ = task_episodes(task, data, cache, progress)
    result = {
        "task": task,
        "minutes": list(minutes),  # every budget measured (this call's and earlier ones')
        "episodes": episodes,
        "seed": seed,
        "max_steps": max_steps,
        "data": dataclasses.asdict(data) | {"tasks": list(data.tasks)},
        "train_episodes": len(train_episodes),
        "rows": [],
        "notes": {},
    }
    table = out / "bench_learn.json"
    if table.is_file():  # an earlier bench on the same data and episodes: keep what it measured
        stored = json.loads(table.read_text())
        same = ("task", "episodes", "seed", "max_steps", "data", "train_episodes")
        if all(stored.get(key) == result[key] for key in same):
            result["rows"], result["notes"] = stored["rows"], stored["notes"]
    caller_threads = torch.get_num_threads()
    try:
        for name in contenders:
            measured = {row["minutes"] for row in result["rows"] if row["family"] == name}
            todo = [m for m in minutes if m not in measured]
            if not todo:
                print(f"\n[{name}] measured in an earlier call ({table})")
                continue
            print(f"\n[{name}] budgets {', '.join(f'{m:g}' for m in todo)} minutes")
            begin = time.perf_counter()
            if CONTENDERS[name] is not None:
                note = _train_gato(name, data, out, todo, processes, cache, progress)
                torch.set_num_threads(processes)
                rows = _evaluate_gato(name, task, out, todo, episodes, seed, max_steps)
            else:  # one run, kept at each budget: a peer's schedule does not depend on the budget
                torch.set_num_threads(processes)
                trained = _train_peer(name, task, train_episodes, todo, seed=0)
                note, rows = {}, _evaluate_peer(name, task, trained, episodes, seed, max_steps)
            for row in rows:
                score = f"{row['score_mean']:6.1f} ± {row['score_ci95']:.1f}"
                print(f"  {row['contender']:20s} {row['minutes']:5g} min: {score}")
            result["rows"] += rows
            earlier = result["notes"].get(name, {})
            result["notes"][name] = earlier | note | {"wall_s": round(time.perf_counter() - begin, 1)}
            if "steps" in earlier:  # the runs of earlier calls stay listed beside this call's
                result["notes"][name]["steps"] = earlier["steps"] | note["steps"]
            result["minutes"] = sorted({row["minutes"] for row in result["rows"]})
            atomic_write_json(table, result)
    finally:
        torch.set_num_threads(caller_threads)
    result["plot"] = str(plot_bench_learn(result, out / "bench_learn.png"))
    print("\n" + format_table(result))
    return result


def format_table(result: dict) -> str:
    """Score (mean ± 95 % CI) per contender and budget."""
    minutes = result["minutes"]
    names = list(dict.fromkeys(row["contender"] for row in result["rows"]))
    width = max([len("contender"), *map(len, names)]) + 2
    lines = [
        f"{result['task']}: normalized score after m minutes of training, {result['episodes']} episodes each",
        f"{'contender':{width}s}" + "".join(f"{f'{m:g} min':>15s}" for m in minutes),
    ]
    for name in names:
        cells = {row["minutes"]: row for row in result["rows"] if row["contender"] == name}
        lines.append(
            f"{name:{width}s}"
            + "".join(
                f"{cells[m]['score_mean']:7.1f} ± {cells[m]['score_ci95']:<5.1f}" if m in cells else f"{'-':>15s}"
                for m in minutes
            )
        )
    return "\n".join(lines)


def plot_bench_learn(result: dict, path: str | Path) -> Path:
    """`learning_speed_figure` saved as a PNG at `path`."""
    fig = learning_speed_figure(result)
    return write_figure(fig, path)


def learning_speed_figure(result: dict):
    """Score (mean and 95 % interval) against minutes of training, one line per contender."""
    use_style()
    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    for colour, name in zip(PALETTE, dict.fromkeys(row["contender"] for row in result["rows"])):
        cells = sorted((row for row in result["rows"] if row["contender"] == name), key=lambda r: r["minutes"])
        x = [row["minutes"] for row in cells]
        mean = np.array([row["score_mean"] for row in cells])
        ci = np.array([row["score_ci95"] for row in cells])
        ax.plot(x, mean, marker="o", color=colour, label=name)
        ax.fill_between(x, mean - ci, mean + ci, color=colour, alpha=0.15)
    ax.axhline(100, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("minutes of training (2 CPU cores)")
    ax.set_ylabel("normalized score (100 = expert)")
    ax.set_title(f"{result['task']}: learning speed on the same data")
    ax.legend(loc="upper left", fontsize=8)
    return fig
