"""Training (gato_min.train, .launch, .optim, .runs, .task_data): schedule, run folders, exact
resume after SIGKILL, torchrun and spawned workers."""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from gato_min.batch import batches_by_length
from gato_min.config import GatoConfig
from gato_min.data.collect import load_or_collect
from gato_min.data.episodes import Episode
from gato_min.data.training_set import DataSettings
from gato_min.envs import get_task
from gato_min.launch import train_processes
from gato_min.model import GatoModel, LossModule
from gato_min.optim import TrainSettings, learning_rate, parameter_groups
from gato_min.runs import RunFolder, load_model, read_data_settings, read_settings
from gato_min.sampling import SequenceSampler
from gato_min.sequence import TokenizedEpisodes
from gato_min.task_data import action_dimension_losses, heldout_losses, load_task_data, marginal_loss
from gato_min.tokenize import Tokenizer
from gato_min.tools.benchmarks import _gpt2_for, bench_processes, bench_train, train_flops_per_step
from gato_min.train import accumulate_gradients, train

CONFIG = GatoConfig.from_preset("cpu-tiny", context_length=96)
# random-policy HalfCheetah data: 4 episodes, no return filter (random play never reaches the expert)
DATA = dict(tasks=("halfcheetah",), tier="random", episodes=4, min_return_fraction=0.0, heldout_fraction=0.25)


@pytest.fixture
def one_thread():
    """torch on one thread for the test, the caller's count given back afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A cache root shared by the tests of this module, with the data collected once."""
    root = tmp_path_factory.mktemp("cache")
    load_or_collect("halfcheetah", "random", 4, 0, cache=root, progress=False)
    return root


def _data(**changes):
    return DataSettings(**(DATA | changes))


def _settings(**changes):
    return TrainSettings(
        **(
            dict(steps=12, batch_size=4, warmup_steps=3, log_every=2, eval_every=6, checkpoint_every=6, eval_batches=1)
            | changes
        )
    )


def _cli(out, cache, steps, extra=()):
    return [
        sys.executable,
        "-m",
        "gato_min",
        "train",
        "--out",
        str(out),
        "--preset",
        "cpu-tiny",
        "--context-length",
        "96",
        "--tasks",
        "halfcheetah",
        "--tier",
        "random",
        "--episodes",
        "4",
        "--min-return-fraction",
        "0",
        "--steps",
        str(steps),
        "--batch-size",
        "4",
        "--warmup-steps",
        "5",
        "--log-every",
        "1",
        "--eval-every",
        "10",
        "--checkpoint-every",
        "10",
        "--threads",
        "1",
        "--cache",
        str(cache),
        "--no-progress",
        *extra,
    ]


def test_learning_rate_warms_up_linearly_then_decays_by_cosine_to_a_tenth():
    s = TrainSettings(steps=1000, warmup_steps=100, lr=1e-3, min_lr_ratio=0.1)
    assert learning_rate(1, s) == pytest.approx(1e-5)
    assert learning_rate(50, s) == pytest.approx(5e-4)
    assert learning_rate(100, s) == pytest.approx(1e-3)
    assert learning_rate(550, s) == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4))  # half-way: the mean
    assert learning_rate(1000, s) == pytest.approx(1e-4)
    rates = [learning_rate(k, s) for k in range(100, 1001)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_weight_decay_reaches_matrices_only():
    model = GatoModel(CONFIG)
    decay, keep = parameter_groups(model, 0.1)
    assert decay["weight_decay"] == 0.1 and keep["weight_decay"] == 0.0
    assert any(p is model.blocks[0].attn.qkv.weight for p in decay["params"])
    assert any(p is model.embedding.token_table.weight for p in keep["params"])
    tables = {id(m.weight) for m in model.modules() if isinstance(m, torch.nn.Embedding)}
    assert all(p.dim() == 1 or id(p) in tables for p in keep["params"])
    assert sum(p.numel() for g in (decay, keep) for p in g["params"]) == model.num_parameters()


def test_marginal_baseline_is_the_cross_entropy_of_column_frequencies():
    train_ids = np.array([[0, 5], [0, 5], [1, 5]])
    heldout = np.array([[0, 6]])
    vocab = 8
    p0 = (2 + 1) / (3 + vocab)  # add-one smoothing
    p1 = (0 + 1) / (3 + vocab)
    assert marginal_loss(train_ids, heldout, vocab) == pytest.approx((-np.log(p0) - np.log(p1)) / 2)


def test_settings_reject_bad_values():
    with pytest.raises(ValueError, match="weights has 1 entries for 2 tasks"):
        DataSettings(tasks=("hopper", "text"), weights=(1.0,))
    with pytest.raises(ValueError, match="checkpoint_every .* multiple of log_every"):
        TrainSettings(log_every=10, checkpoint_every=15)
    with pytest.raises(ValueError, match="TrainSettings.steps must be a positive int"):
        TrainSettings(steps=0)


def test_run_folder_refuses_foreign_or_different_runs(tmp_path):
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match="not empty and holds no gato_min run"):
        RunFolder(tmp_path / "foreign").claim(CONFIG, _data(), _settings())
    run = RunFolder(tmp_path / "run")
    assert run.claim(CONFIG, _data(), _settings()) is False
    with pytest.raises(ValueError, match=r"settings.lr: stored 0.001, given 0.002"):
        run.claim(CONFIG, _data(), _settings(lr=2e-3))
    with pytest.raises(ValueError, match=r"data.episodes: stored 4, given 5"):
        run.claim(CONFIG, _data(episodes=5), _settings())
    with pytest.raises(ValueError, match=r"config.n_layer: stored 2, given 3"):
        run.claim(CONFIG.replace(n_layer=3), _data(), _settings())
    assert run.claim(CONFIG, _data(), _settings(steps=50)) is False  # more steps: the same run, extended
    assert json.loads(run.settings.read_text())["steps"] == 50


def test_training_lowers_the_loss_and_writes_a_loadable_run(tmp_path, cache, one_thread):
    result = train(CONFIG, _data(), _settings(steps=30, lr=3e-3), tmp_path / "run", cache=cache, progress=False)
    rows = RunFolder(tmp_path / "run").rows()
    assert [r["step"] for r in rows] == list(range(2, 31, 2))
    # random actions are near-uniform over 1024 bins: from ln(vocab) = 7.63 towards ln(1024) = 6.93
    assert rows[-1]["loss"] < rows[0]["loss"] - 0.25
    assert set(rows[-1]["heldout"]) == {"halfcheetah"} and "baseline" in rows[-1]
    for name in (
        "config.json",
        "data.json",
        "settings.json",
        "checkpoint.pt",
        "model.safetensors",
        "learning_curve.png",
        "summary.json",
    ):
        assert (tmp_path / "run" / name).is_file(), name
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["step"] == 30
    model = load_model(tmp_path / "run", config=CONFIG, task="halfcheetah")
    for name, tensor in result.model.state_dict().items():
        assert torch.equal(model.state_dict()[name], tensor), name


def test_loading_a_run_checks_config_and_task(tmp_path, cache):
    train(
        CONFIG,
        _data(),
        _settings(steps=2, log_every=1, eval_every=2, checkpoint_every=2),
        tmp_path / "run",
        cache=cache,
        progress=False,
    )
    with pytest.raises(ValueError, match="config.d_model: stored 64, given 128"):
        load_model(tmp_path / "run", config=CONFIG.replace(d_model=128))
    with pytest.raises(ValueError, match="trained on halfcheetah, not on 'hopper'"):
        load_model(tmp_path / "run", task="hopper")
    with pytest.raises(FileNotFoundError, match="config.json does not exist"):
        load_model(tmp_path / "nowhere")


def test_run_killed_with_sigkill_resumes_with_the_same_losses(tmp_path, cache):
    """Sec. 'exact resume': the losses after a SIGKILL and a restart equal an uninterrupted run's."""
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    steps = 40
    subprocess.run(_cli(tmp_path / "straight", cache, steps), check=True, env=env, capture_output=True)
    straight = RunFolder(tmp_path / "straight").rows()

    killed = RunFolder(tmp_path / "killed")
    log = tmp_path / "killed.log"
    process = subprocess.Popen(
        _cli(killed.path, cache, steps), env=env, stdout=open(log, "w"), stderr=subprocess.STDOUT
    )
    deadline = time.time() + 300
    while True:  # wait until a checkpoint exists and more steps were logged after it
        rows = killed.rows() if killed.metrics.exists() else []
        if killed.checkpoint.exists() and rows and rows[-1]["step"] >= 13:
            break
        assert process.poll() is None, f"the run ended (code {process.returncode}) before the kill:\n{log.read_text()}"
        assert time.time() < deadline, f"no checkpoint and step 13 within 300 s:\n{log.read_text()}"
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait()
    step_at_kill = killed.rows()[-1]["step"]
    assert step_at_kill < steps, "the run finished before it could be killed; make it longer"
    resumed = subprocess.run(_cli(killed.path, cache, steps), check=True, env=env, capture_output=True, text=True)
    assert "resuming at step" in resumed.stdout
    rows = killed.rows()
    assert [r["step"] for r in rows] == [r["step"] for r in straight] == list(range(1, steps + 1))
    assert [r["loss"] for r in rows] == [r["loss"] for r in straight]
    assert [r.get("heldout") for r in rows] == [r.get("heldout") for r in straight]


def _children(pid: int) -> list[int]:
    """The child processes of `pid` (Linux's /proc)."""
    path = Path(f"/proc/{pid}/task/{pid}/children")
    return [int(child) for child in path.read_text().split()] if path.exists() else []


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"  # a zombie has ended
    except (FileNotFoundError, IndexError):
        return False


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="reads child processes from Linux's /proc")
def test_spawned_workers_end_when_their_parent_is_killed(tmp_path, cache):
    """An orphaned worker would go on training and hold a core: the workers of a killed
    `train --processes 2` end within seconds."""
    run = RunFolder(tmp_path / "run")
    process = subprocess.Popen(
        _cli(run.path, cache, 100_000, ["--processes", "2"]),
        env=os.environ | {"OMP_NUM_THREADS": "1"},
        stdout=open(tmp_path / "out.txt", "w"),
        stderr=subprocess.STDOUT,
    )
    deadline = time.time() + 120
    while not (run.metrics.exists() and run.rows()):  # the workers are training
        assert process.poll() is None, (tmp_path / "out.txt").read_text()
        assert time.time() < deadline, "no training step within 120 s:\n" + (tmp_path / "out.txt").read_text()
        time.sleep(0.1)
    workers = _children(process.pid)
    assert len(workers) >= 2
    process.send_signal(signal.SIGKILL)
    process.wait()
    deadline = time.time() + 20
    while any(map(_alive, workers)) and time.time() < deadline:
        time.sleep(0.2)
    alive = [pid for pid in workers if _alive(pid)]
    for pid in alive:  # leave no stray process behind, even when the check fails
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"workers {alive} outlived their killed parent by 20 s"


SCRIPT = textwrap.dedent("""
    import sys, torch
    from gato_min.config import GatoConfig
    from gato_min.data.training_set import DataSettings
    from gato_min.optim import TrainSettings
    from gato_min.train import train
    out, cache, dump = sys.argv[1:4]
    torch.set_num_threads(1)
    config = GatoConfig.from_preset("cpu-tiny", context_length=96)
    data = DataSettings(tasks=("halfcheetah", "text"), tier="random", episodes=4, min_return_fraction=0.0,
                        heldout_fraction=0.25, window_timesteps=(1, 0))
    settings = TrainSettings(steps=6, batch_size=4, warmup_steps=2, log_every=2, eval_every=6, checkpoint_every=6,
                             eval_batches=1)
    result = train(config, data, settings, out, cache=cache, progress=False)
    torch.save(result.model.state_dict(), f"{dump}/rank{result.rank}.pt")
""")


def test_two_processes_under_torchrun_or_train_processes_make_one_run(tmp_path, cache):
    """Two workers (torchrun, or train_processes) end with the same weights and losses; the tasks
    have windows of two lengths, so a worker's step is one or two forwards (DDP syncs on the last)."""
    script = tmp_path / "run_ddp.py"
    script.write_text(SCRIPT)
    env = os.environ | {"OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(script),
            str(tmp_path / "run"),
            str(cache),
            str(tmp_path),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "2 process(es)" in result.stdout
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    assert rank0.keys() == rank1.keys()
    for name in rank0:
        assert torch.equal(rank0[name], rank1[name]), name
    rows = RunFolder(tmp_path / "run").rows()
    assert [r["step"] for r in rows] == [2, 4, 6]
    torch.manual_seed(0)
    fresh = GatoModel(CONFIG).state_dict()
    assert any(not torch.equal(fresh[name], rank0[name]) for name in rank0)  # it trained

    # train_processes spawns the same two workers itself: the same run, step for step, and it resumes
    data = _data(heldout_fraction=0.25, tasks=("halfcheetah", "text"), window_timesteps=(1, 0))
    settings = TrainSettings(
        steps=6, batch_size=4, warmup_steps=2, log_every=2, eval_every=6, checkpoint_every=6, eval_batches=1
    )
    spawned = tmp_path / "spawned"
    first = train_processes(CONFIG, data, settings, spawned, processes=2, cache=cache, progress=False, stop_after=4)
    assert first["step"] == 4
    summary = train_processes(CONFIG, data, settings, spawned, processes=2, cache=cache, progress=False)
    assert summary["step"] == 6
    assert torch.load(spawned / "checkpoint.pt", weights_only=True)["world_size"] == 2
    assert [(r["step"], r["loss"]) for r in RunFolder(spawned).rows()] == [(r["step"], r["loss"]) for r in rows]
    # a worker's error reaches the caller as itself, not as a dump of the worker's traceback
    with pytest.raises(ValueError, match="holds a run with other settings"):
        train_processes(
            CONFIG, data, dataclasses.replace(settings, lr=0.5), spawned, processes=2, cache=cache, progress=False
        )


def test_train_processes_refuses_bad_arguments(tmp_path, cache):
    with pytest.raises(ValueError, match="processes must be a positive int"):
        train_processes(CONFIG, _data(), _settings(), tmp_path / "run", processes=0, cache=cache)
    with pytest.raises(ValueError, match="batch_size 5 does not split over 2 processes"):
        train_processes(CONFIG, _data(), _settings(batch_size=5), tmp_path / "run", processes=2, cache=cache)


def test_benchmark_compares_with_a_gpt2_of_the_same_shape():
    """bench-train's GPT-2 has gato_min's width, depth, heads and vocabulary; its FLOP count is
    the textbook 6 x (matrix weights) per token plus attention and head; gpt2-counted (the head
    only where a token is counted) computes the same loss and is counted with gato_min's head."""
    from gato_min.tools.benchmarks import _gpt2_counted_loss, _gpt2_loss

    config = GatoConfig.from_preset("cpu-tiny", d_head=32, n_head=2)
    gpt2 = _gpt2_for(config)
    assert gpt2.config.n_embd == config.d_model and gpt2.config.n_layer == config.n_layer
    assert gpt2.config.n_head == config.n_head and gpt2.config.n_inner == config.d_ff
    assert gpt2.get_output_embeddings().weight.shape == (config.vocab.size, config.d_model)
    text = TokenizedEpisodes.from_text(np.arange(10, 600), Tokenizer(config))
    batch = SequenceSampler(text, config, seed=0).sample(2)
    d, L = config.d_model, config.context_length
    per_token = config.n_layer * (2 * (4 * d * d + 2 * d * config.d_ff) + 4 * d * (L + 1) / 2)
    expected = 3 * (2 * L * per_token + 10 * 2 * d * config.vocab.size)  # 2 sequences, 10 head positions
    assert train_flops_per_step(config, batch, head_positions=10) == pytest.approx(expected)
    # gpt2-counted computes the head only where a counted token comes next: the same loss
    assert _gpt2_counted_loss(gpt2, batch).item() == pytest.approx(_gpt2_loss(gpt2, batch).item(), rel=1e-5)
    result = bench_train(config, batch_size=2, repeats=1)
    rows = result["rows"]
    assert set(rows) == {"gato_min", "gpt2", "gpt2-counted"}
    assert all(0 < row["mfu"] < 1.5 and row["tokens_per_s"] > 0 for row in rows.values())
    assert result["parameters"]["gpt2-counted"] == result["parameters"]["gpt2"]
    # the head counted where gato_min counts it; GPT-2's full head at every position
    assert rows["gpt2-counted"]["head_positions"] == rows["gato_min"]["head_positions"] < result["tokens_per_step"]
    assert rows["gpt2"]["head_positions"] == result["tokens_per_step"]
    for row in rows.values():  # batches of bench_train have `batch`'s shape (2 x L)
        assert row["flops_per_step"] == pytest.approx(train_flops_per_step(config, batch, row["head_positions"]))
    assert result["speedup"] == pytest.approx(rows["gato_min"]["tokens_per_s"] / rows["gpt2"]["tokens_per_s"])
    assert result["same_work_speedup"] == pytest.approx(
        rows["gato_min"]["tokens_per_s"] / rows["gpt2-counted"]["tokens_per_s"]
    )


def test_action_dimension_losses_average_to_the_action_loss(cache):
    """Every window holds whole timesteps, so each dimension has as many tokens: the mean of the
    per-dimension losses is the task's action loss."""
    data = load_task_data("halfcheetah", _data(), CONFIG, cache=cache, progress=False)
    batches = [data.sampler(CONFIG, 0, heldout=True).sample(3)]
    torch.manual_seed(0)
    model = GatoModel(CONFIG)
    per_dimension = action_dimension_losses(model, batches, data.train.layout)
    assert per_dimension.shape == (6,)
    overall = heldout_losses(model, {"halfcheetah": batches}, "cpu")["halfcheetah"]
    assert per_dimension.mean() == pytest.approx(overall, rel=1e-5)


def test_bench_processes_times_threads_and_workers_on_the_same_sequences():
    threads = torch.get_num_threads()
    result = bench_processes(CONFIG, batch_size=4, steps=2, processes=2, rounds=1)
    assert set(result["rows"]) == {"threads", "processes"} and result["tokens_per_step"] == 4 * 96
    assert all(row["tokens_per_s"] > 0 and row["step_s"] > 0 for row in result["rows"].values())
    rows = result["rows"]
    assert result["ratio"] == pytest.approx(rows["processes"]["tokens_per_s"] / rows["threads"]["tokens_per_s"])
    assert torch.get_num_threads() == threads  # the caller's setting is given back
    with pytest.raises(ValueError, match="divide batch_size 5"):
        bench_processes(CONFIG, batch_size=5, processes=2)


def test_a_run_from_before_data_json_is_read_and_resumed(tmp_path):
    """Runs written when settings.json held the data fields too still load, and a resume splits them."""
    run = RunFolder(tmp_path / "old")
    assert run.claim(CONFIG, _data(), _settings()) is False
    flat = json.loads(run.data.read_text()) | json.loads(run.settings.read_text())
    run.data.unlink()
    run.settings.write_text(json.dumps(flat))
    assert read_data_settings(run.path) == _data() and read_settings(run.path) == _settings()
    with pytest.raises(ValueError, match="data.episodes: stored 4, given 5"):
        run.claim(CONFIG, _data(episodes=5), _settings())
    assert run.claim(CONFIG, _data(), _settings()) is False
    assert read_data_settings(run.path) == _data() and "tasks" not in json.loads(run.settings.read_text())
    assert json.loads(run.settings.read_text()) == json.loads(json.dumps(dataclasses.asdict(_settings())))


def test_local_workers_meet_at_a_fresh_file_that_is_removed_afterwards():
    from gato_min.distributed import local_rendezvous

    with local_rendezvous() as first, local_rendezvous() as second:
        assert first.startswith("file://") and first != second
        folders = [Path(url.removeprefix("file://")).parent for url in (first, second)]
        assert all(folder.is_dir() and not any(folder.iterdir()) for folder in folders)
    assert not any(folder.exists() for folder in folders)


def test_bench_pixels_takes_an_atari_step_and_an_acting_step_apart():
    """bench-pixels: every stage of a training step is timed on the same batch, and an acting
    step's stages (the model and the emulator among them) add up to less than the rollout."""
    from gato_min.tools.bench_pixels import bench_pixel_acting, bench_pixels

    config = GatoConfig.from_preset("cpu-tiny", context_length=2 * 27)
    train = bench_pixels(config, "pong", batch_size=2, repeats=1)
    assert train["patches"] == 2 * 2 * 25 and train["tokens"] == 2 * 54
    stages = train["seconds"]
    assert {"patch block", "transformer", "scale pixels", "whole step"} <= set(stages)
    assert all(seconds > 0 for seconds in stages.values())
    act = bench_pixel_acting(config, "pong", num_envs=2, steps=6)
    assert act["env_steps"] == 12 and {"emulator step", "model (with the cache)"} <= set(act["spent"])
    assert 0 < sum(act["spent"].values()) <= act["seconds"]


def test_windows_of_different_lengths_train_as_one_mean_over_their_tokens():
    """A step over tasks with windows of different lengths runs one forward per length and
    weights each by its counted tokens: the gradient is that of the mean loss over every counted
    token, as one batch would give; a single length is exactly the plain step."""
    rng = np.random.default_rng(0)
    episodes = [
        Episode(rng.normal(size=(n, 17)), rng.uniform(-1, 1, size=(n, 6)), rng.normal(size=n), True) for n in (30, 20)
    ]
    data = TokenizedEpisodes(episodes, Tokenizer(CONFIG), "halfcheetah", get_task("halfcheetah"))
    torch.manual_seed(0)
    model = GatoModel(CONFIG)
    step_fn = LossModule(model)
    one = SequenceSampler(data, CONFIG, seed=1, window_timesteps=1).sample(5)
    full = SequenceSampler(data, CONFIG, seed=2).sample(3)
    parts = batches_by_length([one, full, SequenceSampler(data, CONFIG, seed=3, window_timesteps=1).sample(2)])
    assert [p.token_ids.shape for p in parts] == [(7, 24), (3, 96)]
    loss = accumulate_gradients(step_fn, parts, "cpu", 1)
    accumulated = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    model.zero_grad(set_to_none=True)
    losses = torch.cat([model.token_losses(p)[0] for p in parts])
    losses.mean().backward()
    expected = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert accumulated.keys() == expected.keys() and torch.allclose(loss, losses.mean().detach(), atol=1e-6)
    for name, grad in expected.items():
        assert torch.allclose(accumulated[name], grad, atol=1e-6), name
    assert torch.equal(accumulate_gradients(step_fn, [full], "cpu", 1), model.loss(full).detach())
