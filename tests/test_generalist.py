"""The generalist's recipe, its text sampler and the figures pooled from its runs."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from gato_min.data.training_set import TEXT_TASK
from gato_min.envs import get_task
from gato_min.model import GatoModel
from gato_min.sequence import TimestepLayout
from gato_min.statistics import iqm_ci, mean_ci
from gato_min.tokenize import Tokenizer
from gato_min.tools.bench_scale import bench_scale, worker_memory_gib
from gato_min.tools.cli_generalist import _labelled
from gato_min.tools.demo import task_recipe
from gato_min.tools.generalist import (
    CONTROL_TASKS,
    GENERALIST_WEIGHTS,
    generalist_config,
    generalist_settings,
    generate_text,
    run_generalist,
)
from gato_min.tools.generalist_report import (
    episode_scores,
    markdown_table,
    run_scores,
    score_table,
    summarize,
    write_summary,
)


def test_the_shared_context_holds_whole_timesteps_of_every_task():
    config = generalist_config()
    atari = TimestepLayout.for_task(get_task("pong")).tokens_per_timestep
    assert config.context_length == 4 * atari  # the Atari recipe's window, exactly
    for task in CONTROL_TASKS:
        per_step = TimestepLayout.for_task(get_task(task)).tokens_per_timestep
        assert config.context_length // per_step >= 4, task
    small, large = (GatoModel(generalist_config(size)).num_parameters() for size in ("small", "large"))
    assert large > small and GatoModel(config).num_parameters() == large  # the recipe's default is the larger size
    with pytest.raises(ValueError, match="size"):
        generalist_config("huge")


def test_each_task_gets_its_specialists_data_and_its_weight():
    data, settings = generalist_settings(seed=3, steps=10)
    assert data.tasks == (*CONTROL_TASKS, TEXT_TASK)
    for task in CONTROL_TASKS:
        assert data.of("episodes", task) == task_recipe(task)["episodes"]
        assert data.of("action_noise", task) == task_recipe(task)["action_noise"]
    assert data.weights == tuple(GENERALIST_WEIGHTS[t] for t in data.tasks)
    assert (data.record, settings.seed, settings.steps) == ("intended", 3, 10)
    no_text, _ = generalist_settings(text=False, tasks=("hopper", "pong"))
    assert no_text.tasks == ("hopper", "pong")
    with pytest.raises(ValueError, match="subset"):
        generalist_settings(tasks=("hopper", "text"))


def test_generated_text_continues_the_prompt_with_text_pieces():
    torch.manual_seed(0)
    model = GatoModel(generalist_config())
    tokenizer = Tokenizer(model.config)
    prompt = "The agent plays"
    greedy = generate_text(model, prompt, tokens=12, temperature=0)
    assert greedy.startswith(prompt) and len(greedy) > len(prompt)
    assert greedy == generate_text(model, prompt, tokens=12, temperature=0)
    sampled = [generate_text(model, prompt, tokens=12, seed=s) for s in (0, 1)]
    assert sampled[0] == generate_text(model, prompt, tokens=12, seed=0) and sampled[0] != sampled[1]
    # past the context the window keeps the latest tokens, and every piece stays a text piece
    long = generate_text(model, prompt, tokens=model.config.context_length + 5, temperature=0)
    ids = tokenizer.encode_text(long)
    assert ids.max() < model.config.text_vocab_size
    for bad, match in ((dict(tokens=0), "tokens"), (dict(temperature=-1.0), "temperature")):
        with pytest.raises(ValueError, match=match):
            generate_text(model, prompt, **bad)


def _report(folder, task_returns, random=0.0, expert=100.0):
    folder.mkdir(parents=True)
    rows = [{"task": t, "returns": list(r), "random_return": random, "expert_return": expert} for t, r in task_returns]
    (folder / "report.json").write_text(json.dumps({"tasks": rows}))
    return folder


def _generalist_folder(root, name, seed, shift):
    run = root / name / "run"
    returns = {t: np.arange(20.0) + shift + 10 * i for i, t in enumerate(CONTROL_TASKS)}
    _report(run / "eval-a", [(t, r) for t, r in returns.items()])
    _report(run / "eval-b", [(t, r + 5) for t, r in returns.items()])
    rows = [
        {
            "step": s,
            "elapsed_s": 30.0 * s,
            "heldout": {"hopper": 1.0 / s, "text": 2.0},
            "baseline": {"hopper": 1.0, "text": 4.0},
        }
        for s in (1, 2)
    ]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = {
        "seed": seed,
        "size": "small",
        "text": True,
        "steps": 2,
        "parameters": 10,
        "times": {"train_s": 60.0},
        "heldout": {"hopper": 0.5, "text": 2.0},
        "baseline": {"hopper": 1.0, "text": 4.0},
        "evaluations": {"no-prompt": {"report": "eval-a"}, "prompted": {"report": "eval-b"}},
    }
    (root / name / "generalist.json").write_text(json.dumps(result))
    return root / name


def test_scores_pool_every_episode_of_every_seed(tmp_path):
    folders = [_generalist_folder(tmp_path, f"g{s}", s, shift=s) for s in (0, 1)]
    summary = summarize(folders)
    pooled = np.concatenate([np.arange(20.0) + 20, np.arange(20.0) + 21])  # walker2d: third task, both seeds
    mean, ci = mean_ci(pooled)
    assert summary["no-prompt"]["tasks"]["walker2d"] == {"mean": round(mean, 2), "ci95": round(ci, 2), "episodes": 40}
    assert summary["prompted"]["tasks"]["walker2d"]["mean"] == pytest.approx(mean + 5, abs=0.01)
    atari = {
        t: np.concatenate([np.arange(20.0) + s + 10 * CONTROL_TASKS.index(t) for s in (0, 1)])
        for t in ("pong", "breakout")
    }
    value, low, high = iqm_ci(atari)
    assert summary["no-prompt"]["domains"]["Atari"] == {
        "iqm": round(value, 2),
        "low": round(low, 2),
        "high": round(high, 2),
    }
    assert summary["seeds"] == [0, 1] and summary["heldout"]["text"] == [2.0, 2.0]

    specialist = _report(tmp_path / "spec" / "eval-a", [("hopper", np.r_[np.full(20, 50.0), np.full(10, 80.0)])])
    summary = write_summary(folders, tmp_path / "out", {"specialists": [str(specialist)]})
    hopper = summary["specialists"]["specialists"]["tasks"]["hopper"]  # cut to the generalists' 20 episodes
    assert (hopper["mean"], hopper["episodes"]) == (50.0, 20)
    stored = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert stored["no-prompt"] == summary["no-prompt"]
    # an ablation (another recipe's folders): its unprompted scores, its own column of the table
    summary = write_summary(folders[:1], tmp_path / "out", ablations={"changed": [folders[1]]})
    changed = summary["ablations"]["changed"]
    assert changed["seeds"] == [1] and changed["tasks"] == summarize(folders[1:])["no-prompt"]["tasks"]
    assert changed["heldout"] == {"hopper": [0.5], "text": [2.0]}
    assert changed["baseline"] == {"hopper": 1.0, "text": 4.0}
    header = markdown_table(summary).splitlines()[0]
    assert header == "| task | generalist, no prompt | generalist, prompted | changed |"
    assert (tmp_path / "out" / "scores.png").stat().st_size > 0 and (tmp_path / "out" / "curves.png").is_file()


def test_episode_scores_normalize_by_the_reports_references(tmp_path):
    folder = _report(tmp_path / "r", [("pong", [-21.0, 0.0])], random=-21.0, expert=21.0)
    np.testing.assert_allclose(episode_scores(folder)["pong"], [0.0, 50.0])
    with pytest.raises(FileNotFoundError, match="generalist"):
        summarize([tmp_path / "missing"])
    assert score_table({"hopper": np.array([1.0, 3.0])})["domains"]["MuJoCo"]["iqm"] == 2.0


def test_specialists_and_ablations_flags_name_label_and_folders():
    assert _labelled(["s=a/eval,b/eval"], "--specialists", "reports") == {"s": ["a/eval", "b/eval"]}
    with pytest.raises(ValueError, match="--ablations takes LABEL=FOLDER"):
        _labelled(["s="], "--ablations", "generalist folders")


def test_the_scale_bench_measures_each_batch_in_its_own_process():
    result = bench_scale("cpu-tiny", batch_sizes=(2, 1), task="halfcheetah", repeats=1, threads=1)
    assert [r["batch_size"] for r in result["rows"]] == [1, 2]
    assert result["state_bytes"] == 16 * result["parameters"]
    one, two = result["rows"]
    assert two["flops_per_step"] == pytest.approx(2 * one["flops_per_step"], rel=0.05)
    assert result["flops_per_sequence"] == pytest.approx(one["flops_per_step"])
    assert worker_memory_gib(result, 4) == pytest.approx(
        (result["state_bytes"] + 4 * result["activation_bytes_per_sequence"]) / 2**30
    )
    for bad in (dict(batch_sizes=(1,)), dict(preset="gato-9b")):
        with pytest.raises((ValueError, KeyError)):
            bench_scale(**({"preset": "cpu-tiny"} | bad))
    with pytest.raises(ValueError, match="sequences_per_worker"):
        worker_memory_gib(result, 0)


def test_the_table_writes_a_score_that_rounds_to_zero_without_a_sign():
    table = {
        "tasks": {"pong": {"mean": -0.04, "ci95": 0.5}},
        "domains": {"Atari": {"iqm": -0.04, "low": -0.31, "high": 0.4}},
    }
    text = markdown_table({"no-prompt": table, "prompted": table})
    assert "| pong | 0.0 ± 0.5 | 0.0 ± 0.5 |" in text and "| **Atari IQM** | 0.0 [-0.3, 0.4] |" in text
    assert "-0.0" not in text


@pytest.mark.parametrize("readme", ["README.md", "README_zh.md"])
def test_the_readme_results_table_is_the_stored_summarys(readme):
    root = Path(__file__).resolve().parents[1]
    summary = json.loads((root / "results" / "generalist-summary" / "summary.json").read_text())
    text = (root / readme).read_text()
    start, end = "<!-- generalist-table -->", "<!-- /generalist-table -->"
    assert text.count(start) == 1 and text.count(end) == 1, f"{readme} has no results table between {start} {end}"
    assert text.split(start)[1].split(end)[0].strip() == markdown_table(summary)


def test_a_small_generalist_trains_then_plays_every_task_both_ways(tmp_path):
    out = tmp_path / "g"
    result = run_generalist(
        out,
        steps=2,
        tasks=("hopper",),
        episodes=4,
        processes=1,
        eval_episodes=2,
        gif_steps=0,
        max_steps=5,
        cache=tmp_path / "cache",
        progress=False,
    )
    assert result["steps"] == 2 and set(result["heldout"]) == {"hopper", "text"}
    stored = json.loads((out / "generalist.json").read_text())
    assert stored == json.loads(json.dumps(result))
    for evaluation in ("no-prompt", "prompted"):
        report = json.loads((out / "run" / stored["evaluations"][evaluation]["report"] / "report.json").read_text())
        assert [r["task"] for r in report["tasks"]] == ["hopper"] and report["tasks"][0]["episodes"] == 2
        assert (report["prompt_tokens"] == 0) == (evaluation == "no-prompt")
        # trained on 1-timestep windows, Hopper acts on one timestep (15 tokens) and is never prompted
        assert (report["tasks"][0]["context_tokens"], report["tasks"][0]["prompt_steps"]) == (15, 0)
    scores = run_scores(out, "prompted")["hopper"]
    assert len(scores) == 2 and stored["evaluations"]["prompted"]["scores"]["hopper"][0] == round(scores.mean(), 2)
