"""The learning-speed levers and the peers they are measured against: smoothed bin targets,
reading an action from the bin distribution, the Decision Transformer and MLP peers, and
bench-learn end to end."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gato_min.agent import GatoAgent
from gato_min.config import GatoConfig
from gato_min.data.collect import collect
from gato_min.data.training_set import DataSettings
from gato_min.envs import get_task, make_env
from gato_min.evaluate import evaluate_run
from gato_min.model import GatoModel, gaussian_bin_targets
from gato_min.optim import TrainSettings
from gato_min.peers import DecisionTransformer, DTData, DTPolicy, DTSettings, dt_loss, play
from gato_min.runs import read_config
from gato_min.sampling import SequenceSampler
from gato_min.sequence import TimestepLayout, TokenizedEpisodes
from gato_min.tokenize import Tokenizer
from gato_min.tools.bench_busy import bench_busy
from gato_min.tools.bench_learn import CONTENDERS, bench_learn
from gato_min.tools.demo import demo_config
from gato_min.train import train

TINY = GatoConfig.from_preset("cpu-tiny", context_length=96)


@pytest.fixture(scope="module")
def cheetah_episodes():
    return collect("halfcheetah", "random", 3, seed=0, num_envs=1, progress=False, max_episode_steps=40).episodes


def _batch(episodes, seed=0):
    tokenizer = Tokenizer(TINY)
    data = TokenizedEpisodes(episodes, tokenizer, "halfcheetah")
    return SequenceSampler(data, TINY, np.random.default_rng(seed)).sample(4)


def test_smoothed_loss_spreads_only_continuous_targets(cheetah_episodes):
    torch.manual_seed(0)
    model = GatoModel(TINY).eval()
    batch = _batch(cheetah_episodes)
    with torch.no_grad():
        plain, counted = model.token_losses(batch)
        narrow, _ = model.token_losses(batch, bin_smoothing=1e-3)  # all mass in the target bin: one-hot
        wide, _ = model.token_losses(batch, bin_smoothing=20.0)
        hidden = model.hidden_states(batch)[:, :-1][counted]
        log_probs = F.log_softmax(model.logits(hidden[:1]).float(), dim=-1)[0]
    assert torch.allclose(plain, narrow, atol=1e-4)
    assert not torch.allclose(plain, wide, atol=1e-2)
    # the wide loss by hand for the first counted token
    vocab = TINY.vocab
    target = int(batch.token_ids[:, 1:][counted][0]) - vocab.continuous_offset
    smoothed = gaussian_bin_targets(torch.tensor([target]), vocab.num_bins, 20.0)[0]
    bins = log_probs[vocab.continuous_offset : vocab.continuous_offset + vocab.num_bins]
    assert float(wide[0]) == pytest.approx(float(-(smoothed * bins).sum()), rel=1e-5)
    with pytest.raises(ValueError, match="bin_smoothing"):
        TrainSettings(bin_smoothing=-1.0)


def test_mean_readout_takes_the_mean_bin_and_leaves_buttons_alone():
    torch.manual_seed(0)
    model = GatoModel(TINY).eval()
    agent = GatoAgent(model, "halfcheetah", prompt_tokens=0, readout="mean")
    low, _ = agent.codec.action_ids
    logits = torch.full((2, TINY.vocab.size), -1e4)
    logits[0, low + 100] = logits[0, low + 201] = 0.0  # two equal peaks: the mean lies between them
    logits[1, low + 7] = 0.0
    ids = agent.sample(logits, torch.Generator().manual_seed(0))
    assert ids.tolist() == [low + 150, low + 7]  # 150.5 rounds to the even 150
    assert GatoAgent(model, "pong", prompt_tokens=0, readout="mean").readout == "token"
    with pytest.raises(ValueError, match="readout"):
        GatoAgent(model, "halfcheetah", prompt_tokens=0, readout="median")


def test_decision_transformer_windows_and_masks(cheetah_episodes):
    settings = DTSettings(context=8, n_layer=1, hidden=32)
    data = DTData(cheetah_episodes, "halfcheetah", settings)
    first = cheetah_episodes[0]
    expected = np.cumsum(first.rewards[::-1])[::-1] / settings.return_scale
    assert np.allclose(data.returns[:40], expected, atol=1e-5)
    batch = data.sample(64, np.random.default_rng(0))
    is_real = batch["valid"].numpy()
    assert is_real[:, -1].all() and (~is_real).any()  # windows end on a real step; those near an end are padded left
    assert (np.diff(is_real.astype(int), axis=1) >= 0).all()  # padding only on the left
    assert (batch["states"].numpy()[~is_real] == 0).all()

    torch.manual_seed(0)
    model = DecisionTransformer(17, 6, settings).eval()
    with torch.no_grad():
        predicted = model(**batch)
        changed = {k: v.clone() for k, v in batch.items()}
        changed["actions"][:, -1] += 1.0  # the last action comes after every prediction's state
        changed["states"][~batch["valid"]] = 5.0  # padding is never attended to
        valid = batch["valid"]
        assert torch.allclose(model(**changed)[valid], predicted[valid], atol=1e-5)
        changed["states"][:, -1] += 1.0
        assert not torch.allclose(model(**changed)[:, -1], predicted[:, -1])
    assert predicted.abs().max() <= 1.0

    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(60):
        loss = dt_loss(model, data.sample(32, rng))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.7 * np.mean(losses[:10])

    policy = DTPolicy(model, data, 6, target_return=data.best_return)
    returns = [play(policy, "halfcheetah", 3, num_envs=2, seed=5, max_steps=12) for _ in range(2)]
    assert returns[0].shape == (3,) and np.array_equal(returns[0], returns[1])


def test_bench_learn_trains_keeps_and_scores_every_contender(tmp_path):
    data = DataSettings(
        tasks=("halfcheetah",), tier="random", episodes=4, min_return_fraction=0.0, heldout_fraction=0.25
    )
    options = dict(
        minutes=(0.05, 0.1),
        out=tmp_path / "bench",
        episodes=2,
        max_steps=10,
        cache=tmp_path / "cache",
        progress=False,
        data=data,
    )
    result = bench_learn("halfcheetah", contenders=("gato-smooth", "dt", "mlp"), **options)
    rows = {(row["contender"], row["minutes"]): row for row in result["rows"]}
    names = ("gato-smooth", "gato-smooth+argmax", "dt", "mlp")
    assert set(rows) == {(c, m) for c in names for m in (0.05, 0.1)}
    assert rows[("gato-smooth", 0.1)]["readout"] == "mean"
    assert all(len(row["returns"]) == 2 for row in rows.values())
    assert rows[("dt", 0.05)]["steps"] < rows[("dt", 0.1)]["steps"]
    assert rows[("gato-smooth", 0.05)]["steps"] < rows[("gato-smooth", 0.1)]["steps"]  # one run per budget
    run = tmp_path / "bench" / "gato-smooth" / "0.1min"
    assert json.loads((run / "settings.json").read_text())["bin_smoothing"] == 10.0
    stored = json.loads((tmp_path / "bench" / "bench_learn.json").read_text())
    assert stored["rows"] == result["rows"]
    assert (tmp_path / "bench" / "bench_learn.png").stat().st_size > 1000
    # a later call measures only what is missing: here nothing
    assert bench_learn("halfcheetah", contenders=("dt", "mlp"), **options)["rows"] == result["rows"]
    with pytest.raises(ValueError, match="unknown contenders"):
        bench_learn("halfcheetah", contenders=("gpt5",), out=tmp_path / "x")


def test_bench_learn_fast_contender_is_the_demo_recipe_on_the_benched_task(tmp_path):
    """gato-fast trains the demo's model and settings with a window of the benched task's
    timestep (Hopper: 15 tokens) and is read both by the most likely bin and by the mean."""
    data = DataSettings(tasks=("hopper",), tier="random", episodes=4, min_return_fraction=0.0, heldout_fraction=0.25)
    result = bench_learn(
        "hopper",
        minutes=(0.02,),
        contenders=("gato-fast",),
        out=tmp_path / "bench",
        episodes=2,
        max_steps=5,
        cache=tmp_path / "cache",
        progress=False,
        data=data,
    )
    assert {(row["contender"], row["readout"]) for row in result["rows"]} == {
        ("gato-fast", "token"),
        ("gato-fast+mean", "mean"),
    }
    run = tmp_path / "bench" / "gato-fast" / "0.02min"
    config = json.loads((run / "config.json").read_text())
    assert config == json.loads(demo_config("hopper").to_json())
    settings = json.loads((run / "settings.json").read_text())
    assert (settings["batch_size"], settings["lr"], settings["bin_smoothing"]) == (256, 2e-3, 0.0)
    assert CONTENDERS["gato-recipe"][0].context_length == 96 and CONTENDERS["gato-recipe"][1]["batch_size"] == 64


def test_return_conditioned_agent_feeds_the_return_still_to_come(monkeypatch):
    """A return-conditioned model reads a return-to-go token first in every timestep; the agent
    starts each episode at its target and subtracts each reward, also across window rebuilds."""
    config = TINY.replace(return_conditioning=True, context_length=2 * 25)
    assert TimestepLayout.for_task(get_task("halfcheetah"), returns=True).tokens_per_timestep == 25
    torch.manual_seed(0)
    agent = GatoAgent(GatoModel(config).eval(), "halfcheetah", prompt_tokens=0, target_return=500.0)
    fed, rewards = [], []
    feed = agent.codec.observation_batch

    def recording(observations, previous_actions=None, returns_to_go=None):
        fed.append(np.array(returns_to_go))
        return feed(observations, previous_actions, returns_to_go)

    monkeypatch.setattr(agent.codec, "observation_batch", recording)
    rebuilt = []
    rebuild = agent.codec.timesteps_batch

    def recording_rebuild(observations, action_ids, returns_to_go=None):
        rebuilt.append((len(fed), np.array(returns_to_go[0])))
        return rebuild(observations, action_ids, returns_to_go)

    monkeypatch.setattr(agent.codec, "timesteps_batch", recording_rebuild)

    def env_fn(task, render):
        env = make_env(task)
        step = env.step

        def recorded_step(action):
            result = step(action)
            rewards.append(result[1])
            return result

        env.step = recorded_step
        return env

    rollout = agent.rollout(1, num_envs=1, max_steps=6, env_fn=env_fn, progress=False)
    expected = 500.0 - np.concatenate([[0.0], np.cumsum(rewards)[:-1]])
    assert np.allclose(np.concatenate(fed), expected)
    assert rebuilt  # the window was rebuilt from the episode's timesteps, with the returns they were fed
    for steps_fed, returns in rebuilt:
        assert np.allclose(returns, expected[steps_fed - len(returns) : steps_fed])
    assert rollout.returns[0] == pytest.approx(sum(rewards))
    with pytest.raises(ValueError, match="target_return"):
        GatoAgent(GatoModel(config), "halfcheetah", prompt_tokens=0, target_return=float("nan"))


def test_a_return_conditioned_run_trains_and_evaluates(tmp_path):
    """Return conditioning is a config choice that travels with the run folder: training writes
    it, evaluation reads it and asks for the target return it is given."""
    cache = tmp_path / "cache"
    config = TINY.replace(return_conditioning=True, context_length=4 * 25)
    data = DataSettings(
        tasks=("halfcheetah",), tier="random", episodes=4, min_return_fraction=0.0, heldout_fraction=0.25
    )
    settings = TrainSettings(
        steps=2, batch_size=2, warmup_steps=1, log_every=1, eval_every=2, checkpoint_every=2, eval_batches=1
    )
    train(config, data, settings, tmp_path / "run", cache=cache, progress=False)
    assert read_config(tmp_path / "run").return_conditioning
    report = evaluate_run(
        tmp_path / "run",
        episodes=2,
        num_envs=2,
        prompt_tokens=50,
        gif_steps=0,
        max_steps=8,
        cache=cache,
        progress=False,
        target_return=1234.0,
        readout="mean",
    )
    assert Path(report["out"]).name == "eval-prompt50-mean-return1234-max8"
    assert report["target_return"] == 1234.0 and len(report["tasks"][0]["returns"]) == 2


def test_acting_runs_on_one_thread_and_gives_the_count_back(monkeypatch):
    """Beside another busy job, acting with 2 threads ran 3.5-7x slower than with 1 (README):
    rollouts act on `threads=1` by default (so does collection) and restore the caller's count."""
    caller = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        seen = []
        torch.manual_seed(0)
        agent = GatoAgent(GatoModel(TINY).eval(), "halfcheetah", prompt_tokens=0)
        act = agent.act

        def watched(*args, **kwargs):
            seen.append(torch.get_num_threads())
            return act(*args, **kwargs)

        monkeypatch.setattr(agent, "act", watched)
        agent.rollout(1, num_envs=1, max_steps=3, progress=False)
        agent.rollout(1, num_envs=1, max_steps=3, progress=False, threads=None)
        assert seen == [1, 1, 1, 2, 2, 2] and torch.get_num_threads() == 2
        with pytest.raises(ValueError, match="threads"):
            agent.rollout(1, num_envs=1, max_steps=3, progress=False, threads=0)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(caller)


def test_bench_busy_times_both_thread_counts_alone_and_beside_a_load():
    caller = torch.get_num_threads()
    rows = bench_busy(TINY, rounds=1, act_steps=3, collect_steps=5)
    assert [(row["busy"], row["threads"]) for row in rows] == [(False, 1), (False, 2), (True, 1), (True, 2)]
    assert all(row["act_steps_per_s"] > 0 and row["collect_steps_per_s"] > 0 for row in rows)
    assert torch.get_num_threads() == caller
