"""Acting (gato_min.codec, gato_min.agent, gato_min.evaluate): the cache at a full context,
legal actions, reproducible rollouts, the report and the bad inputs."""

import dataclasses
import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from gato_min.agent import GatoAgent
from gato_min.codec import TaskCodec
from gato_min.config import GatoConfig
from gato_min.data.collect import collect
from gato_min.data.episodes import Episode
from gato_min.data.training_set import DataSettings
from gato_min.envs import get_task, make_env, model_observation, start_episode
from gato_min.evaluate import default_out, evaluate_run
from gato_min.model import GatoModel, KVCache
from gato_min.optim import TrainSettings
from gato_min.sampling import SequenceSampler
from gato_min.sequence import TokenizedEpisodes, returns_to_go
from gato_min.tokenize import Tokenizer
from gato_min.train import train

TINY = GatoConfig.from_preset("cpu-tiny", context_length=96)


@pytest.fixture(scope="module")
def cheetah_episodes():
    """Two random-policy HalfCheetah episodes of 50 steps (what the env really emits)."""
    return collect("halfcheetah", "random", 2, seed=0, num_envs=1, progress=False, max_episode_steps=50).episodes


def _model(config, seed=0):
    torch.manual_seed(seed)
    return GatoModel(config).eval()


def test_cached_decoding_equals_a_full_forward_over_a_1024_token_context(cheetah_episodes):
    """The small preset at its full context: the window fed as the agent feeds it (a prompt,
    then an observation and '|' per call, then one action token per call) gives the logits of
    one forward pass over all 1024 tokens."""
    config = GatoConfig.from_preset("cpu-small")
    episode = collect("halfcheetah", "random", 1, seed=3, num_envs=1, progress=False, max_episode_steps=43).episodes[0]
    data = TokenizedEpisodes([episode], Tokenizer(config), "halfcheetah")
    steps = np.arange(43)[None, :]
    sampler = SequenceSampler(data, config.replace(context_length=43 * 24))
    window = sampler.batch(steps, np.ones_like(steps, dtype=bool), np.zeros(1, bool), np.zeros(1, bool)).window(0, 1024)
    model = _model(config)
    with torch.no_grad():
        full = model(window)
    cache = KVCache(config, batch_size=1)
    cuts = [0, 480]  # a 20-timestep prompt, then the agent's calls: [obs, '|'] and one action token each
    for t in range(20, 42):
        base = t * 24
        cuts += [base + 18] + [base + 18 + j for j in range(1, 7)]
    cuts += [1024]
    pieces = [model.extend(window.window(a, b), cache) for a, b in zip(cuts, cuts[1:])]
    assert cache.length == 1024
    torch.testing.assert_close(torch.cat(pieces, 1), full, rtol=1e-4, atol=1e-4)


def test_an_installed_prompt_acts_as_if_it_had_been_fed(cheetah_episodes):
    """The prompt's keys and values, computed once, installed in one row of a running batch:
    that row's next logits equal feeding prompt + tokens to a fresh cache; the other row is untouched."""
    model = _model(TINY)
    agent = GatoAgent(model, "halfcheetah", [cheetah_episodes[0]], prompt_tokens=48)
    prompt = agent.prompt_batch(cheetah_episodes[0])
    assert prompt.shape == (1, 48)
    codec = agent.codec
    obs = cheetah_episodes[1].observations[:2]
    cache, untouched = KVCache(TINY, batch_size=2), KVCache(TINY, batch_size=2)
    for c in (cache, untouched):
        model.extend(codec.observation_batch(obs), c)  # some history in both rows
    cache.install_prefix([0], agent.prefixes()[0])
    after = model.extend(codec.observation_batch(obs), cache)
    reference = KVCache(TINY, batch_size=1)
    model.extend(prompt, reference)
    expected = model.extend(codec.observation_batch(obs[:1]), reference)
    torch.testing.assert_close(after[0], expected[0], rtol=1e-5, atol=1e-5)
    # row 1 still sees its own history, as if nothing had been installed
    torch.testing.assert_close(after[1], model.extend(codec.observation_batch(obs), untouched)[1], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="capacity"):
        KVCache(TINY, batch_size=1, capacity=40).install_prefix([0], agent.prefixes()[0])


def test_the_ring_keeps_exactly_its_capacity_once_full():
    cache = KVCache(TINY, batch_size=2, capacity=16)
    for _ in range(5):
        mask = cache.begin(7)
        cache.finish(7)
    assert cache.length == 16 and cache.time == 35
    assert mask.shape == (2, 1, 7, 16)
    # the last of the 7 new tokens sees all 16 slots; the first sees the 10 older ones and itself
    assert mask[0, 0, -1].sum() == 16 and mask[0, 0, 0].sum() == 10
    cache.reset([1])
    mask = cache.begin(1)
    assert mask[0, 0, 0].sum() == 16 and mask[1, 0, 0].sum() == 1


@pytest.mark.parametrize(
    "task,returns", [("halfcheetah", False), ("pong", False), ("halfcheetah", True), ("pong", True)]
)
def test_one_road_acting_feeds_exactly_the_tokens_training_sees(task, returns, cheetah_episodes):
    """The same episode through training (a sampler's window) and through acting (a prompt, an
    observation with the previous action token, each action token, a rebuilt window): every
    piece acting feeds equals the training window's tokens at that place, in ids, kinds, local
    positions, loss and attention masks and patches; a shorter rebuilt row is padded in front,
    invisibly. With return conditioning, the return-to-go token the agent feeds is the one
    training read at that timestep."""
    config = GatoConfig.from_preset(
        "cpu-tiny",
        context_length=4 * ((24 if task == "halfcheetah" else 27) + returns),
        action_positions="local",
        return_conditioning=returns,
    )
    episode = (
        cheetah_episodes[0]
        if task == "halfcheetah"
        else collect("pong", "random", 1, seed=0, num_envs=1, progress=False, max_episode_steps=40).episodes[0]
    )
    if returns:  # rewards that make every return-to-go differ (a random Pong episode's are mostly 0)
        episode = dataclasses.replace(episode, rewards=np.linspace(-3.0, 40.0, len(episode), dtype=np.float32))
    codec = TaskCodec(task, config)
    per_step, observed = codec.layout.tokens_per_timestep, codec.observation_tokens + 1
    data = TokenizedEpisodes([episode], Tokenizer(config), task, get_task(task))
    rtg = returns_to_go(episode.rewards)

    def to_go(first, last):
        return rtg[first:last] if returns else None

    training = (
        SequenceSampler(data, config)
        .batch(np.array([[2, 3, 4]]), np.ones((1, 3), bool), np.zeros(1, bool), np.zeros(1, bool))
        .window(0, 3 * per_step)
    )
    fields = ("token_ids", "token_kinds", "local_positions", "loss_mask", "attention_mask")

    def same(fed, start, row=0):
        for name in fields:
            torch.testing.assert_close(
                getattr(fed, name)[row], getattr(training, name)[0, start : start + fed.shape[1]]
            )
        inside = (training.patch_index >= start) & (training.patch_index < start + fed.shape[1])
        mine = fed.patch_index // fed.shape[1] == row
        assert torch.equal(fed.patches[mine], training.patches[inside])
        assert torch.equal(fed.patch_row_ranges[mine], training.patch_row_ranges[inside])

    ids = codec.encode_actions(episode.actions[2:5])
    # a step: [last action token of timestep 3, observation 4, '|'], then the action tokens of timestep 4
    same(codec.observation_batch(episode.observations[4:5], ids[1:2, -1:], to_go(4, 5)), 2 * per_step - 1)
    same(codec.observation_batch(episode.observations[2:3], returns_to_go=to_go(2, 3)), 0)
    for j in range(codec.action_tokens):
        same(codec.action_batch(ids[2:3, j], j), 2 * per_step + observed + j)
    # the prompt of an agent prompted with this episode: its first timesteps, as training lays them out
    agent = GatoAgent(_model(config), task, [episode], prompt_tokens=3 * per_step)
    prompt = agent.prompt_batch(episode)
    first = SequenceSampler(data, config).batch(
        np.array([[0, 1, 2]]), np.ones((1, 3), bool), np.zeros(1, bool), np.zeros(1, bool)
    )
    for name in fields:
        torch.testing.assert_close(getattr(prompt, name), getattr(first, name)[:, : 3 * per_step])
    # a rebuilt window: the whole training window (row 0), and its last timestep alone (row 1)
    rebuilt = codec.timesteps_batch(
        [episode.observations[2:5], episode.observations[4:5]],
        [ids, ids[2:]],
        [to_go(2, 5), to_go(4, 5)] if returns else None,
    )
    same(rebuilt, 0)
    assert not rebuilt.attention_mask[1, : 2 * per_step].any() and rebuilt.attention_mask[1, 2 * per_step :].all()
    model = _model(config)
    with torch.no_grad():
        expected, got = model(training)[0], model(rebuilt)
        torch.testing.assert_close(got[0], expected, rtol=1e-5, atol=1e-5)
        padded = model.extend(rebuilt, KVCache(config, batch_size=2), rebuilt.attention_mask)[1]
        alone = model(
            codec.timesteps_batch([episode.observations[4:5]], [ids[2:]], [to_go(4, 5)] if returns else None)
        )[0]
    torch.testing.assert_close(padded[2 * per_step :], alone, rtol=1e-5, atol=1e-5)


def test_actions_decode_to_the_bin_centre_and_refuse_foreign_ids(cheetah_episodes):
    codec = TaskCodec("halfcheetah", TINY)
    episode = cheetah_episodes[0]
    ids = codec.encode_actions(episode.actions[:3])
    decoded = codec.decode_actions(ids)
    assert np.abs(decoded - np.clip(episode.actions[:3], -1, 1)).max() <= 1 / 1024 + 1e-6  # half a bin of 2/1024
    with pytest.raises(ValueError, match=r"must lie in \[1024, 2048\)"):
        codec.decode_actions(np.zeros((1, 6), np.int64))


def test_window_memory_rebuilds_what_training_saw(cheetah_episodes):
    """After a rebuild, the next observation's logits equal a fresh pass over [prompt, the
    row's latest timesteps, observation], for each row; the cache never wraps."""
    model = _model(TINY)
    agent = GatoAgent(model, "halfcheetah", cheetah_episodes, prompt_tokens=24)
    assert agent.memory == "window"
    codec, prefixes = agent.codec, agent.prefixes()
    episode = cheetah_episodes[1]
    ids = codec.encode_actions(episode.actions[:10])
    history = [(list(episode.observations[:10]), list(ids), []), (list(episode.observations[:1]), list(ids[:1]), [])]
    cache = KVCache(TINY, batch_size=2)
    agent._rebuild(cache, history, [prefixes[0], prefixes[1]])
    keep = (96 - 24) // 24 // 2  # half the room the prompt leaves: 1 timestep
    assert cache.time == 24 + keep * 24 <= cache.capacity
    obs = episode.observations[10:12]
    with torch.no_grad():
        got = model.extend(codec.observation_batch(obs), cache, last_only=True)
        for row, (steps, actions, _) in enumerate(history):
            reference = KVCache(TINY, batch_size=1)
            reference.install_prefix([0], prefixes[row])
            model.extend(codec.timesteps_batch([np.stack(steps[-keep:])], [np.stack(actions[-keep:])]), reference)
            expected = model.extend(codec.observation_batch(obs[row : row + 1]), reference, last_only=True)
            torch.testing.assert_close(got[row], expected[0], rtol=1e-5, atol=1e-5)
    lengths = []
    extend = model.extend

    def watched(batch, cache, keep=None, last_only=False):
        out = extend(batch, cache, keep, last_only)
        lengths.append(cache.time)
        return out

    model.extend = watched
    agent.rollout(2, num_envs=2, seed=0, max_steps=20, progress=False)
    assert max(lengths) <= TINY.context_length and len(set(lengths)) > 3


class _Checked:
    """An env wrapper that records every action and checks it lies in the action space."""

    def __init__(self, env, log):
        self.env, self.log = env, log
        self.unwrapped = env.unwrapped

    def reset(self, **kwargs):
        return self.env.reset(**kwargs)

    def step(self, action):
        assert self.env.action_space.contains(np.asarray(action, dtype=self.env.action_space.dtype)), action
        self.log.append(np.asarray(action).copy())
        return self.env.step(action)

    def render(self):
        return self.env.render()

    def close(self):
        self.env.close()


@pytest.mark.parametrize("task", ["pong", "halfcheetah"])
def test_sampled_actions_are_legal_and_in_the_action_space(task):
    config = GatoConfig.from_preset("cpu-tiny", context_length=128)
    log = []
    agent = GatoAgent(_model(config, seed=1), task, None, temperature=1.5)
    rollout = agent.rollout(
        3, num_envs=2, seed=0, max_steps=12, progress=False, env_fn=lambda name, render: _Checked(make_env(name), log)
    )
    assert rollout.lengths.tolist() == [12, 12, 12]
    actions = np.array(log)  # (for Atari also the seeded no-ops that start each episode)
    assert len(actions) >= 36
    if task == "pong":
        assert actions.dtype.kind in "iu" and set(actions.tolist()) <= set(range(get_task("pong").action_dim))
        assert len(set(actions.tolist())) > 1  # sampled, not one fixed button
    else:
        assert actions.shape == (36, 6)


def test_a_rollout_with_a_fixed_seed_repeats_exactly(cheetah_episodes):
    model = _model(TINY)
    agent = GatoAgent(model, "halfcheetah", cheetah_episodes, prompt_tokens=48)
    first = agent.rollout(3, num_envs=2, seed=5, max_steps=30, progress=False)
    second = agent.rollout(3, num_envs=2, seed=5, max_steps=30, progress=False)
    other = agent.rollout(3, num_envs=2, seed=6, max_steps=30, progress=False)
    assert np.array_equal(first.returns, second.returns) and first.returns.dtype == np.float64
    assert not np.array_equal(first.returns, other.returns)
    assert first.env_steps == 90


def test_an_atari_rollout_with_a_fixed_seed_presses_the_same_buttons():
    """Reproducible Atari evaluation: the same seed gives the same no-op starts and the same
    sampled buttons, whatever the other rows do; another seed gives other buttons."""
    config = GatoConfig.from_preset("cpu-tiny", context_length=4 * 27)
    agent = GatoAgent(_model(config, seed=2), "pong", None, temperature=1.0)

    def buttons(seed):
        log = []
        agent.rollout(
            2,
            num_envs=2,
            seed=seed,
            max_steps=25,
            progress=False,
            env_fn=lambda name, render: _Checked(make_env(name), log),
        )
        return [int(button) for button in log]  # the seeded no-ops too, then the sampled buttons

    first = buttons(5)
    assert first == buttons(5) and first != buttons(6)
    assert len(set(first)) > 1


def test_bad_inputs_name_what_was_expected(cheetah_episodes, tmp_path):
    model = _model(TINY)
    hopper = collect("hopper", "random", 1, seed=0, num_envs=1, progress=False, max_episode_steps=20).episodes
    with pytest.raises(ValueError, match="comes from task 'hopper'"):
        GatoAgent(model, "halfcheetah", hopper)
    unlabelled = [Episode(hopper[0].observations, hopper[0].actions, hopper[0].rewards, False)]
    with pytest.raises(ValueError, match=r"observations of shape \(11,\), task 'halfcheetah' has \(17,\)"):
        GatoAgent(model, "halfcheetah", unlabelled)
    agent = GatoAgent(model, "halfcheetah", None)
    with pytest.raises(ValueError, match=r"expects observations of shape \(batch, 17\), got \(2, 11\)"):
        agent.rollout(2, num_envs=2, max_steps=5, progress=False, env_fn=lambda name, render: make_env("hopper"))
    with pytest.raises(ValueError, match="prompt_tokens"):
        GatoAgent(model, "halfcheetah", None, prompt_tokens=10_000)
    with pytest.raises(ValueError, match="temperature"):
        GatoAgent(model, "halfcheetah", None, temperature=-1)
    with pytest.raises(FileNotFoundError, match="missing is not a gato_min run folder"):
        evaluate_run(tmp_path / "missing")
    result = subprocess.run(
        [sys.executable, "-m", "gato_min", "evaluate", "--run", str(tmp_path / "missing")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2 and "evaluate: error:" in result.stderr and "does not exist" in result.stderr


def test_evaluate_writes_a_report_that_repeats(tmp_path):
    """A tiny run trained for two steps on random HalfCheetah data, evaluated end to end twice."""
    cache = tmp_path / "cache"
    data = DataSettings(
        tasks=("halfcheetah",), tier="random", episodes=4, min_return_fraction=0.0, heldout_fraction=0.25
    )
    settings = TrainSettings(
        steps=2, batch_size=2, warmup_steps=1, log_every=1, eval_every=2, checkpoint_every=2, eval_batches=1
    )
    train(TINY, data, settings, tmp_path / "run", cache=cache, progress=False)
    reports = [
        evaluate_run(
            tmp_path / "run",
            episodes=3,
            num_envs=2,
            seed=1,
            prompt_tokens=48,
            out=tmp_path / name,
            gif_steps=0,
            max_steps=25,
            cache=cache,
            progress=False,
        )
        for name in ("a", "b")
    ]
    rows = [report["tasks"][0] for report in reports]
    assert rows[0]["returns"] == rows[1]["returns"] and len(rows[0]["returns"]) == 3
    assert rows[0]["prompt_steps"] == 2 and rows[0]["prompts"] == 1
    stored = json.loads((tmp_path / "a" / "report.json").read_text())
    assert stored["tasks"][0]["score_mean"] == pytest.approx(rows[0]["score_mean"])
    assert (tmp_path / "a" / "scores.png").stat().st_size > 1000
    assert "| halfcheetah |" in (tmp_path / "a" / "report.md").read_text()


def test_atari_episodes_start_like_the_collected_data():
    """start_episode plays the seeded no-ops that collect played: the same first frame."""
    spec = get_task("pong")
    env = make_env("pong")
    first = model_observation(spec, start_episode(env, spec, 3))
    data = collect("pong", "random", 1, seed=3, num_envs=1, progress=False, max_episode_steps=2).episodes[0]
    assert np.array_equal(first, data.observations[0])


def test_a_history_cap_acts_as_a_model_with_that_short_a_context(cheetah_episodes):
    """history=K: the agent attends over the prompt and at most K of its episode's timesteps, as
    the same weights acting with a context of exactly that many tokens do."""
    model, per_step = _model(TINY), 24
    capped = GatoAgent(model, "halfcheetah", cheetah_episodes, prompt_tokens=24, history=1, temperature=1.0)
    assert capped.context_length == 2 * per_step
    short = _model(TINY)
    short.config = TINY.replace(context_length=2 * per_step)  # no global positions: weights fit any context
    same = GatoAgent(short, "halfcheetah", cheetah_episodes, prompt_tokens=24, temperature=1.0)
    first = capped.rollout(2, num_envs=2, seed=3, max_steps=12, progress=False)
    second = same.rollout(2, num_envs=2, seed=3, max_steps=12, progress=False)
    assert np.array_equal(first.returns, second.returns)
    full = GatoAgent(model, "halfcheetah", cheetah_episodes, prompt_tokens=24, temperature=1.0)
    assert full.context_length == TINY.context_length
    assert not np.array_equal(full.rollout(2, num_envs=2, seed=3, max_steps=12, progress=False).returns, first.returns)
    with pytest.raises(ValueError, match="history"):
        GatoAgent(model, "halfcheetah", None, history=0)
    named = default_out("run", seed=1000, prompt_tokens=0, readout="mean", history=1)
    assert named.name == "eval-no-prompt-history1-mean-seed1000"


def test_a_model_trained_on_short_windows_acts_with_as_much_in_view(cheetah_episodes):
    """window_timesteps=K (the run's training windows): K of the episode's timesteps in view and,
    by default, the prompt a prompted window of K had: none for K = 1, 2 timesteps for K = 4
    (prompt_share 0.5); an explicit prompt_tokens or history still wins."""
    model, per_step = _model(TINY), 24
    one = GatoAgent(model, "halfcheetah", cheetah_episodes, window_timesteps=1)
    assert (one.prompt_steps, one.context_length, one.demonstrations) == (0, per_step, [])
    four = GatoAgent(model, "halfcheetah", cheetah_episodes, window_timesteps=4)
    assert TINY.prompt_share == 0.5 and (four.prompt_steps, four.context_length) == (2, 4 * per_step)
    chosen = GatoAgent(model, "halfcheetah", cheetah_episodes, prompt_tokens=24, history=2, window_timesteps=1)
    assert (chosen.prompt_steps, chosen.context_length) == (1, 3 * per_step)
    with pytest.raises(ValueError, match="window_timesteps"):
        GatoAgent(model, "halfcheetah", None, window_timesteps=-1)
