"""Embedding, position encodings and sequence layout (Reed et al., 2022, Sec. 2.1-2.3, App. C.2-C.3)."""

import dataclasses
import hashlib

import numpy as np
import pytest
import torch

from gato_min.config import GatoConfig
from gato_min.data.episodes import Episode
from gato_min.embed import GatoEmbedding, PatchResNetBlock
from gato_min.envs import get_task
from gato_min.positions import LocalPositionEncoding, PatchPositionEncoding, patch_intervals
from gato_min.sampling import SequenceSampler, prompt_timesteps
from gato_min.sequence import (
    ACTION,
    CONTINUOUS,
    DISCRETE,
    IMAGE,
    PAD,
    SEPARATOR,
    TEXT,
    TimestepLayout,
    Timesteps,
    TokenizedEpisodes,
    build_batch,
    encode_timesteps,
    returns_to_go,
)
from gato_min.tokenize import Tokenizer

CONFIG = GatoConfig.from_preset("cpu-small")
TOKENIZER = Tokenizer(CONFIG)


def mujoco_episodes(lengths=(50, 30, 80, 12), obs_dim=5, action_dim=2):
    """Episodes whose observation says (episode, t): obs[t] = [episode / 10, t / 100, 0, ...]."""
    episodes = []
    for e, length in enumerate(lengths):
        obs = np.zeros((length, obs_dim), np.float32)
        obs[:, 0], obs[:, 1] = e / 10, np.arange(length) / 100
        actions = np.tile(np.linspace(-1, 1, action_dim, dtype=np.float32), (length, 1))
        episodes.append(Episode(obs, actions, np.ones(length, np.float32), True))
    return episodes


def atari_episodes(lengths=(20, 9)):
    rng = np.random.default_rng(0)
    return [
        Episode(
            rng.integers(0, 256, (n, 80, 80, 3), dtype=np.uint8), rng.integers(0, 6, n), np.zeros(n, np.float32), True
        )
        for n in lengths
    ]


# ---------------------------------------------------------------- embedding (App. C.2)


def test_patch_block_output_shape_and_parameter_count():
    c, g, d = 32, 8, 128
    block = PatchResNetBlock(image_channels=3, channels=c, groups=g, patch_size=16, d_model=d)
    out = block(torch.randint(0, 256, (7, 3, 16, 16), dtype=torch.uint8))
    assert out.shape == (7, d)
    stem = 3 * c * 4 * 4 + c
    convs = 2 * (c * c * 3 * 3 + c)
    norms = 2 * 2 * c
    proj = c * 4 * 4 * d + d
    assert sum(p.numel() for p in block.parameters()) == stem + convs + norms + proj
    assert [type(m).__name__ for m in block.children()] == [
        "Conv2d",
        "GroupNorm",
        "Conv2d",
        "GroupNorm",
        "Conv2d",
        "Linear",
    ]


def test_patch_block_scales_uint8_like_the_tokenizer():
    block = PatchResNetBlock(3, 16, 4, 16, 8)
    pixels = torch.randint(0, 256, (2, 3, 16, 16), dtype=torch.uint8)
    torch.testing.assert_close(block(pixels), block((pixels.float() / 127.5 - 1) / 4))
    with pytest.raises(ValueError, match=r"patches must have shape \(N, 3, 16, 16\)"):
        block(torch.zeros(2, 1, 16, 16))


def test_one_shared_table_for_all_token_ids():
    embedding = GatoEmbedding(CONFIG)
    assert embedding.token_table.num_embeddings == CONFIG.vocab.size  # text, bins, separator, padding


# ---------------------------------------------------------------- positions (App. C.3)


def test_patch_intervals_tile_the_bins():
    rows, cols = patch_intervals(5, 5, 128)
    assert rows.shape == (25, 2)
    assert rows[:5].tolist() == [[0, 25]] * 5 and cols[:5].tolist() == [
        [0, 25],
        [25, 51],
        [51, 76],
        [76, 102],
        [102, 128],
    ]
    assert rows[24].tolist() == [102, 128]
    with pytest.raises(ValueError, match="more rows or columns than position bins"):
        patch_intervals(200, 1, 128)


def test_position_indices_inside_interval_random_in_training_fixed_in_eval():
    encoding = PatchPositionEncoding(16, 128)
    row_ranges, col_ranges = (torch.from_numpy(r) for r in patch_intervals(14, 10, 128))
    encoding.train()
    first = encoding.indices(row_ranges, col_ranges)
    second = encoding.indices(row_ranges, col_ranges)
    for _ in range(200):
        rows, cols = encoding.indices(row_ranges, col_ranges)
        assert torch.all((rows >= row_ranges[:, 0]) & (rows < row_ranges[:, 1]))
        assert torch.all((cols >= col_ranges[:, 0]) & (cols < col_ranges[:, 1]))
    assert not torch.equal(first[0], second[0]) or not torch.equal(first[1], second[1])
    encoding.eval()
    rows_a, cols_a = encoding.indices(row_ranges, col_ranges)
    rows_b, cols_b = encoding.indices(row_ranges, col_ranges)
    assert torch.equal(rows_a, rows_b) and torch.equal(cols_a, cols_b)
    assert torch.equal(rows_a, torch.round((row_ranges[:, 0] + row_ranges[:, 1] - 1) / 2).long())
    assert torch.all((rows_a >= row_ranges[:, 0]) & (rows_a < row_ranges[:, 1]))


def test_embedding_forward_differs_between_training_passes_not_in_eval():
    sampler = SequenceSampler(TokenizedEpisodes(atari_episodes(), TOKENIZER, "pong"), CONFIG.replace(context_length=64))
    batch = sampler.sample(2)
    embedding = GatoEmbedding(CONFIG).train()
    assert not torch.equal(embedding(batch), embedding(batch))
    embedding.eval()
    assert torch.equal(embedding(batch), embedding(batch))


def test_local_positions_none_for_separator_and_actions():
    data = TokenizedEpisodes(mujoco_episodes(), TOKENIZER, "m")
    assert data.layout.local_positions().tolist() == [0, 1, 2, 3, 4, -1, -1, -1]
    assert data.layout.local_positions("local").tolist() == [0, 1, 2, 3, 4, -1, 5, 6]
    encoding = LocalPositionEncoding(4, 8)
    out = encoding(torch.tensor([[0, 3, -1]]))
    assert torch.all(out[0, 2] == 0) and torch.equal(out[0, 1], encoding.table.weight[3])


# ---------------------------------------------------------------- sequence layout (Sec. 2.1, 2.3)


@pytest.mark.parametrize("make", [mujoco_episodes, atari_episodes])
def test_windows_start_at_timestep_boundaries_and_loss_mask_is_text_and_actions(make):
    data = TokenizedEpisodes(make(), TOKENIZER)
    sampler = SequenceSampler(data, CONFIG.replace(context_length=200), seed=1)
    batch = sampler.sample(64)
    kinds, tpt = batch.token_kinds.numpy(), data.layout.tokens_per_timestep
    pattern = data.layout.kinds()
    assert np.all(kinds[:, :tpt] == pattern)  # every window starts with a whole timestep
    for row, valid in zip(kinds, batch.attention_mask.numpy()):
        n = valid.sum()
        assert n % tpt == 0 and np.all(row[:n] == np.tile(pattern, n // tpt)) and np.all(row[n:] == PAD)
    assert torch.equal(batch.loss_mask, (batch.token_kinds == TEXT) | (batch.token_kinds == ACTION))
    ids = batch.token_ids[batch.loss_mask]
    if data.layout.discrete_actions:
        assert torch.all(ids < CONFIG.num_bins)
    else:
        assert torch.all((ids >= CONFIG.vocab.continuous_offset) & (ids < CONFIG.vocab.separator_id))
    assert torch.all(batch.token_ids[batch.token_kinds == SEPARATOR] == CONFIG.vocab.separator_id)
    assert batch.token_ids.shape == (64, 200)


def test_image_tokens_carry_their_patches():
    data = TokenizedEpisodes(atari_episodes(), TOKENIZER)
    batch = SequenceSampler(data, CONFIG.replace(context_length=120)).sample(3)
    assert torch.equal(batch.token_kinds.reshape(-1)[batch.patch_index], torch.full((len(batch.patch_index),), IMAGE))
    assert (batch.token_kinds == IMAGE).sum() == batch.patches.shape[0] == batch.patch_row_ranges.shape[0]


def test_prompt_fractions_over_ten_thousand_sequences():
    sampler = SequenceSampler(TokenizedEpisodes(mujoco_episodes(), TOKENIZER), CONFIG, seed=0)
    _, _, prompted, from_end = sampler.sample_windows(10_000)
    assert abs(prompted.mean() - 0.25) <= 0.02
    assert abs(from_end[prompted].mean() - 0.5) <= 0.03


def test_prompts_are_contiguous_steps_of_another_episode():
    data = TokenizedEpisodes(mujoco_episodes(), TOKENIZER)
    sampler = SequenceSampler(data, CONFIG.replace(context_length=8 * 20, prompt_fraction=1.0), seed=3)
    steps, valid, prompted, from_end = sampler.sample_windows(500)
    episode_of = np.searchsorted(data.starts, steps, side="right") - 1
    t_of = steps - data.starts[episode_of]
    prompt_len = 10  # half of the 20 timesteps of a window
    for row in range(500):
        real = valid[row]
        prompt_episode, main_episode = episode_of[row, 0], episode_of[row, real][-1]
        assert prompt_episode != main_episode
        prompt_t = t_of[row, : min(prompt_len, data.lengths[prompt_episode])]
        assert np.all(np.diff(prompt_t) == 1)
        if from_end[row]:
            assert prompt_t[-1] == data.lengths[prompt_episode] - 1
    # (where a uniform prompt starts: tests/test_paper_defaults.py)


def test_sampling_leaves_the_dataset_unchanged():
    data = TokenizedEpisodes(atari_episodes(), TOKENIZER)
    arrays = [data.timesteps.patches, data.action_ids, data.lengths, data.starts]
    before = [hashlib.sha256(a.tobytes()).hexdigest() for a in arrays]
    sampler = SequenceSampler(data, CONFIG.replace(context_length=100))
    for _ in range(20):
        batch = sampler.sample(16)
        batch.patches.zero_()  # even writing into a batch must not reach the dataset
        batch.token_ids.zero_()
    assert [hashlib.sha256(a.tobytes()).hexdigest() for a in arrays] == before


def test_text_batches_count_every_token():
    """Text goes the one road too: a stream of one-token timesteps, never prompted, no local positions."""
    config = CONFIG.replace(context_length=64, prompt_fraction=1.0)
    text = TokenizedEpisodes.from_text(np.arange(500) % 1000, TOKENIZER)
    batch = SequenceSampler(text, config, seed=0).sample(4)
    assert torch.all(batch.loss_mask) and torch.all(batch.token_kinds == TEXT) and not batch.prompted.any()
    assert torch.all(batch.local_positions == -1)
    starts = batch.token_ids[:, 0]
    assert torch.equal(batch.token_ids, (starts[:, None] + torch.arange(64)) % 1000)  # consecutive pieces
    short = SequenceSampler(TokenizedEpisodes.from_text(np.arange(10), TOKENIZER), config, seed=0).sample(2)
    assert short.loss_mask.sum() == 20 and torch.all(short.token_ids[:, 10:] == CONFIG.vocab.pad_id)


# ---------------------------------------------------------------- bad input


def test_observation_sizes_that_disagree_within_a_task_are_refused():
    episodes = mujoco_episodes() + mujoco_episodes(lengths=(5,), obs_dim=6)
    message = (
        r"episode 4 has observations of shape \(6,\), episode 0 has \(5,\); "
        "all timesteps of a task must have the same observation size$"
    )
    with pytest.raises(ValueError, match=message):
        TokenizedEpisodes(episodes, TOKENIZER, "hopper")


def test_empty_episodes_and_datasets_are_refused():
    with pytest.raises(ValueError, match="at least one step"):
        Episode(np.zeros((0, 5)), np.zeros((0, 2)), np.zeros(0), True)
    with pytest.raises(ValueError, match="hopper: no episodes"):
        TokenizedEpisodes([], TOKENIZER, "hopper")


def test_window_shorter_than_one_timestep_is_refused():
    data = TokenizedEpisodes(atari_episodes(), TOKENIZER, "pong")  # 25 patches + '|' + 1 button = 27 tokens
    with pytest.raises(ValueError, match="context_length=20 is shorter than one timestep of pong \\(27 tokens\\)"):
        SequenceSampler(data, CONFIG.replace(context_length=20))


def test_tiled_windows_spread_over_every_episode_without_prompts():
    """Held-out evaluation windows: consecutive tiles of each episode, picked evenly, no prompts."""
    config = GatoConfig.from_preset("cpu-tiny", context_length=96)
    data = TokenizedEpisodes(mujoco_episodes(), Tokenizer(config))
    sampler = SequenceSampler(data, config, seed=0)
    K = sampler.steps_per_window
    steps, valid, prompted, from_end = sampler.tiled_windows(10_000)  # more than exist: all of them
    assert not prompted.any() and not from_end.any()
    assert valid.sum() == data.lengths.sum()  # every timestep exactly once
    assert len(np.unique(steps[valid])) == data.lengths.sum()
    episode_of = np.searchsorted(data.starts, steps[:, 0], side="right") - 1
    assert ((steps[:, 0] - data.starts[episode_of]) % K == 0).all()  # tiles start at multiples of K
    few, few_valid, _, _ = sampler.tiled_windows(3)
    assert len(few) == 3 and few[0, 0] == 0 and few_valid.any(axis=1).all()
    batch = sampler.batch(few, few_valid, np.zeros(3, bool), np.zeros(3, bool))
    assert batch.token_ids.shape == (3, config.context_length)


def _expected_row(layout, config, timesteps, steps, valid, length, action_positions):
    """One row of `build_batch` written out token by token: (ids, kinds, local positions)."""
    vocab = config.vocab
    ids, kinds, local = [], [], []
    for step, real in zip(steps, valid):
        position = 0
        tokens = (
            [(int(t), TEXT, -1) for t in timesteps.text_ids[step]]
            + [(int(t), CONTINUOUS, None) for t in timesteps.return_ids[step]]
            + [(0, IMAGE, None)] * layout.num_patches
            + [
                (int(t), DISCRETE if column in layout.discrete_values else CONTINUOUS, None)
                for column, t in enumerate(timesteps.value_ids[step])
            ]
        )
        if layout.action_dim:
            tokens += [(vocab.separator_id, SEPARATOR, -1)]
            tokens += [(int(t), ACTION, "action") for t in timesteps.action_ids[step]]
        for token, kind, where in tokens:
            if not real:
                ids.append(vocab.pad_id), kinds.append(PAD), local.append(-1)
                continue
            if where is None:  # an observation token: counted from 0 within its timestep
                where, position = position, position + 1
            elif where == "action":
                where, position = (position, position + 1) if action_positions == "local" else (-1, position)
            elif not layout.action_dim:
                where = -1
            ids.append(token), kinds.append(kind), local.append(where)
    pad = length - len(ids)
    return ids + [vocab.pad_id] * pad, kinds + [PAD] * pad, local + [-1] * pad


@pytest.mark.parametrize("action_positions", ["local", "none"])
def test_build_batch_lays_out_every_token_as_written_out_by_hand(action_positions):
    """A return token, continuous and discrete readings, '|' and two actions; padding slots in
    the middle of a row; rows padded at their end; the loss mask on actions only."""
    config = GatoConfig.from_preset("cpu-tiny", action_positions=action_positions)
    layout = TimestepLayout(None, 3, 2, False, return_tokens=1, discrete_values=(1,))
    rng = np.random.default_rng(0)
    timesteps = Timesteps(
        np.zeros((6, 0), np.int32),
        None,
        rng.integers(0, 2048, (6, 3)).astype(np.int32),
        rng.integers(1024, 2048, (6, 2)).astype(np.int32),
        rng.integers(1024, 2048, (6, 1)).astype(np.int32),
    )
    steps = np.array([[0, 1, 2], [5, 3, 4]])
    valid = np.array([[True, False, True], [True, True, False]])
    batch = build_batch(layout, config, timesteps, steps, valid, length=27, prompted=np.array([True, False]))
    assert batch.shape == (2, 27) and layout.tokens_per_timestep == 7
    for b in range(2):
        ids, kinds, local = _expected_row(layout, config, timesteps, steps[b], valid[b], 27, action_positions)
        assert batch.token_ids[b].tolist() == ids
        assert batch.token_kinds[b].tolist() == kinds
        assert batch.local_positions[b].tolist() == local
        assert batch.attention_mask[b].tolist() == [k != PAD for k in kinds]
        assert batch.loss_mask[b].tolist() == [k == ACTION for k in kinds]
    assert batch.prompted.tolist() == [True, False] and batch.prompt_from_end.tolist() == [False, False]
    assert not len(batch.patch_index) and batch.patches.shape[0] == 0
    exact = build_batch(layout, config, timesteps, steps, valid)  # default length: K timesteps exactly
    assert torch.equal(exact.token_ids, batch.token_ids[:, :21])
    one_more = build_batch(layout, config, timesteps, steps, valid, length=22)  # a single padding token
    assert one_more.shape == (2, 22) and one_more.token_ids[:, 21].tolist() == [config.vocab.pad_id] * 2
    with pytest.raises(ValueError, match="do not fit 20 tokens"):
        build_batch(layout, config, timesteps, steps, valid, length=20)


def test_build_batch_of_a_text_stream_counts_every_piece():
    """Text: one-piece timesteps, no separator, no local positions, every real piece in the loss."""
    config = GatoConfig.from_preset("cpu-tiny")
    layout = TimestepLayout.text()
    pieces = np.arange(10, 18, dtype=np.int32).reshape(8, 1)
    timesteps = Timesteps(pieces, None, np.zeros((8, 0), np.int32), np.zeros((8, 0), np.int32))
    steps, valid = np.arange(8).reshape(2, 4), np.array([[True] * 4, [True, True, False, False]])
    batch = build_batch(layout, config, timesteps, steps, valid, length=5)
    for b in range(2):
        ids, kinds, local = _expected_row(layout, config, timesteps, steps[b], valid[b], 5, "local")
        assert batch.token_ids[b].tolist() == ids and batch.token_kinds[b].tolist() == kinds
        assert batch.local_positions[b].tolist() == local == [-1] * 5
        assert batch.loss_mask[b].tolist() == [k == TEXT for k in kinds]
    assert batch.loss_mask.sum() == 6 and batch.token_ids[0, :4].tolist() == [10, 11, 12, 13]


def test_build_batch_places_each_frame_patch_at_its_token():
    """Frames: every real timestep's patches, in order, at the flat index of their tokens, with
    the quantized row and column ranges of their place in the grid (Sec. 2.2 / App. B)."""
    config = GatoConfig.from_preset("cpu-tiny")
    layout = TimestepLayout((32, 48, 3), 0, 1, True, return_tokens=1)  # a return token before the frame
    assert layout.grid == (2, 3) and layout.tokens_per_timestep == 9
    rng = np.random.default_rng(1)
    timesteps = Timesteps(
        np.zeros((4, 0), np.int32),
        rng.integers(0, 256, (4, 6, 3, 16, 16), dtype=np.uint8),
        np.zeros((4, 0), np.int32),
        rng.integers(0, 6, (4, 1)).astype(np.int32),
        rng.integers(1024, 2048, (4, 1)).astype(np.int32),
    )
    steps, valid = np.array([[3, 1], [2, 0]]), np.array([[True, True], [False, True]])
    batch = build_batch(layout, config, timesteps, steps, valid, length=20)
    rows, cols = patch_intervals(2, 3, config.position_bins)
    expected_index, expected_patches = [], []
    for b in range(2):
        for k in range(2):
            if valid[b, k]:
                for p in range(6):
                    expected_index.append(b * 20 + k * 9 + 1 + p)
                    expected_patches.append(timesteps.patches[steps[b, k], p])
        ids, kinds, local = _expected_row(layout, config, timesteps, steps[b], valid[b], 20, "none")
        assert batch.token_ids[b].tolist() == ids and batch.token_kinds[b].tolist() == kinds
    assert batch.patch_index.tolist() == expected_index
    assert np.array_equal(batch.patches.numpy(), np.stack(expected_patches))
    assert np.array_equal(batch.patch_row_ranges.numpy(), np.tile(rows, (3, 1)))
    assert np.array_equal(batch.patch_col_ranges.numpy(), np.tile(cols, (3, 1)))
    assert all(batch.token_kinds.flatten()[i] == IMAGE for i in expected_index)


def test_tokenized_episodes_read_their_layout_and_returns_per_episode():
    """Without a task the layout comes from the arrays; with return conditioning each episode's
    returns-to-go restart at its own end; lengths and starts index the concatenated timesteps."""
    config = GatoConfig.from_preset("cpu-tiny", return_conditioning=True)
    tokenizer = Tokenizer(config)
    episodes = mujoco_episodes(lengths=(4, 3), obs_dim=3, action_dim=2)
    for e, episode in enumerate(episodes):
        episode.rewards[:] = np.arange(len(episode)) + 10 * e
    data = TokenizedEpisodes(episodes, tokenizer, "walker")
    assert data.name == "walker" and data.promptable and data.num_episodes == 2
    assert data.layout == TimestepLayout(None, 3, 2, False, config.patch_size, return_tokens=1)
    assert data.lengths.tolist() == [4, 3] and data.starts.tolist() == [0, 4]
    to_go = [3 + 2 + 1 + 0, 3 + 2 + 1, 3 + 2, 3, 10 + 11 + 12, 11 + 12, 12]
    expected = tokenizer.encode_continuous(np.array(to_go, np.float64)[:, None] / config.return_scale)
    assert data.timesteps.return_ids.reshape(-1).tolist() == np.asarray(expected).reshape(-1).tolist()
    observations = np.concatenate([e.observations for e in episodes])
    assert np.array_equal(data.timesteps.value_ids, tokenizer.encode_observation_values(observations, ()))
    assert np.array_equal(data.counted_ids, data.action_ids) and data.action_ids.shape == (7, 2)
    # integer readings are discrete values; frames and buttons give an image layout with one action
    readings = {"joints": np.full((5, 2), 0.5, np.float32), "lives": np.full((5, 1), 3, np.int64)}
    with_counts = [Episode(readings, np.zeros((5, 2), np.float32), np.ones(5), True)]
    counts = TokenizedEpisodes(with_counts, Tokenizer(GatoConfig.from_preset("cpu-tiny")))
    assert counts.layout.discrete_values == (2,) and counts.layout.return_tokens == 0
    assert counts.timesteps.value_ids[0, 2] == 3  # a discrete value is its own id
    frames = TokenizedEpisodes(atari_episodes(), Tokenizer(GatoConfig.from_preset("cpu-tiny")))
    assert frames.layout == TimestepLayout((80, 80, 3), 0, 1, True)
    assert frames.timesteps.patches.shape == (29, 25, 3, 16, 16)


def test_tokenized_episodes_name_what_does_not_fit():
    with pytest.raises(ValueError, match="dataset: no episodes"):
        TokenizedEpisodes([], TOKENIZER)
    with pytest.raises(ValueError, match="^walker2d: no episodes"):  # no name: the task's
        TokenizedEpisodes([], TOKENIZER, task=get_task("walker2d"))
    mixed = mujoco_episodes(lengths=(5, 5), action_dim=2)
    mixed[1] = Episode(mixed[1].observations, np.zeros((5, 3), np.float32), mixed[1].rewards, True)
    with pytest.raises(ValueError, match="episode 1 has actions of shape \\(3,\\), episode 0 has \\(2,\\)"):
        TokenizedEpisodes(mixed, TOKENIZER, "hopper")
    two_buttons = [Episode(e.observations, np.zeros((5, 2), np.int64), e.rewards, True) for e in mixed]
    message = (
        r"^pad: integer actions of shape \(2,\) per timestep; a button action is one integer a timestep "
        r"\(shape \(T,\) or \(T, 1\)\), and several integer columns need a task that says what they are "
        r"\(task=TaskSpec\)$"
    )
    with pytest.raises(ValueError, match=message):
        TokenizedEpisodes(two_buttons, TOKENIZER, "pad")  # several integer columns need a task to say what they are
    one_button = [Episode(e.observations, np.zeros((5, 1), np.int64), e.rewards, True) for e in mixed]
    assert TokenizedEpisodes(one_button, TOKENIZER, "pad").layout.action_dim == 1
    small = GatoConfig.from_preset("cpu-tiny", max_local_positions=4)
    with pytest.raises(ValueError, match="5 observation tokens, more than max_local_positions=4"):
        TokenizedEpisodes(mujoco_episodes(lengths=(3,)), Tokenizer(small), "hopper")
    TokenizedEpisodes(mujoco_episodes(lengths=(3,), obs_dim=4), Tokenizer(small), "hopper")  # exactly 4 fit
    with pytest.raises(ValueError, match="^text: a text stream needs at least two tokens, got 1"):  # default name
        TokenizedEpisodes.from_text(np.array([5]), TOKENIZER)
    pair = TokenizedEpisodes.from_text(np.array([5, 6]), TOKENIZER)  # two tokens are enough: one input, one target
    assert pair.name == "text" and pair.lengths.tolist() == [2] and pair.counted_ids.reshape(-1).tolist() == [5, 6]
    text = TokenizedEpisodes.from_text(np.array([[5, 6, 7]]), TOKENIZER, "prose")
    assert text.name == "prose" and not text.promptable and text.layout == TimestepLayout.text(CONFIG.patch_size)
    assert text.counted_ids.reshape(-1).tolist() == [5, 6, 7] and text.lengths.tolist() == [3]


@pytest.mark.parametrize(
    "task, tokens",
    [("halfcheetah", (17, 6, 24)), ("hopper", (11, 3, 15)), ("walker2d", (17, 6, 24)), ("pong", (0, 1, 27))],
)
def test_each_shipped_task_has_the_timestep_of_sec_2_1(task, tokens):
    """[patches or readings, '|', actions]: a torque per joint, one token for a button."""
    spec = get_task(task)
    values, actions, per_timestep = tokens
    layout = TimestepLayout.for_task(spec)
    assert (layout.num_values, layout.action_dim, layout.tokens_per_timestep) == tokens
    assert layout.discrete_actions == spec.discrete_actions and layout.patch_size == 16
    assert layout.image_shape == ((80, 80, 3) if spec.image_observations else None)
    assert layout.first_action == per_timestep - actions and layout.discrete_values == ()
    conditioned = TimestepLayout.for_task(spec, patch_size=8, returns=True)
    assert conditioned.return_tokens == 1 and conditioned.patch_size == 8
    patches = 100 if spec.image_observations else 0  # 80 x 80 in 8 x 8 patches
    assert conditioned.tokens_per_timestep == 1 + patches + values + 1 + actions
    assert conditioned.kinds()[0] == CONTINUOUS and conditioned.local_positions("local")[0] == 0


def test_encode_timesteps_checks_what_it_is_given():
    layout = TimestepLayout(None, 5, 2, False, return_tokens=1)
    observations = np.linspace(-1, 1, 15).reshape(3, 5)
    missing = r"^this layout opens each timestep with a return-to-go token: pass returns_to_go \(N,\)$"
    with pytest.raises(ValueError, match=missing):
        encode_timesteps(layout, TOKENIZER, observations)
    with pytest.raises(ValueError, match="hold 4 values per timestep; the layout has 5"):
        encode_timesteps(layout, TOKENIZER, observations[:, :4], returns_to_go=np.zeros(3))
    steps = encode_timesteps(layout, TOKENIZER, observations, returns_to_go=np.array([250.0, 100.0, -3.0]))
    assert steps.action_ids.shape == (3, 2) and not steps.action_ids.any()  # no action yet: zeros
    assert steps.return_ids[:, 0].tolist() == TOKENIZER.encode_continuous(np.array([2.5, 1.0, -0.03])).tolist()
    nested = {"b": observations[:, 2:], "a": observations[:, :2]}  # flattened in key order: a, then b
    regrouped = np.concatenate([observations[:, :2], observations[:, 2:]], axis=1)
    assert np.array_equal(
        encode_timesteps(layout, TOKENIZER, nested, returns_to_go=np.zeros(3)).value_ids,
        encode_timesteps(layout, TOKENIZER, regrouped, returns_to_go=np.zeros(3)).value_ids,
    )
    text = encode_timesteps(TimestepLayout.text(), TOKENIZER, text_ids=[4, 5, 6])
    assert text.text_ids.tolist() == [[4], [5], [6]] and text.value_ids.shape == (3, 0) and text.patches is None


def test_tokenized_episodes_of_a_task_take_its_layout_and_action_range():
    """With `task`: the task's layout (return token per the config) and its actions scaled from
    the task's range to [-1, 1]; integer readings the task calls continuous are refused; an
    array of uint8 readings is not a frame."""
    spec = dataclasses.replace(get_task("hopper"), action_low=(0.0, 0.0, 0.0), action_high=(2.0, 2.0, 2.0))
    episodes = [Episode(np.full((4, 11), 0.25, np.float32), np.full((4, 3), 1.5, np.float32), np.ones(4), True)]
    for conditioned in (False, True):
        config = GatoConfig.from_preset("cpu-tiny", patch_size=8, return_conditioning=conditioned)
        data = TokenizedEpisodes(episodes, Tokenizer(config), task=spec)
        assert data.layout == TimestepLayout.for_task(spec, 8, conditioned) and data.layout.return_tokens == conditioned
        expected = Tokenizer(config).encode_actions(np.full((4, 3), 0.5))  # 1.5 in [0, 2] is 0.5 in [-1, 1]
        assert data.action_ids.reshape(-1).tolist() == np.asarray(expected).reshape(-1).tolist()
    counts = {"joints": np.zeros((4, 10), np.float32), "contacts": np.ones((4, 1), np.int64)}
    with pytest.raises(ValueError, match=r"hopper: observation values \[0\] are integers, but task 'hopper'"):
        TokenizedEpisodes([Episode(counts, np.zeros((4, 3), np.float32), np.ones(4), True)], TOKENIZER, task=spec)
    readings = [Episode(np.full((4, 6), 7, np.uint8), np.zeros((4, 2), np.float32), np.ones(4), True)]
    layout = TokenizedEpisodes(readings, TOKENIZER).layout
    assert layout.image_shape is None and layout.num_values == 6 and layout.discrete_values == tuple(range(6))
    disagree = [
        Episode({"a": np.ones((3, 1), np.int64)}, np.zeros((3, 2), np.float32), np.ones(3), True),
        Episode({"a": np.ones((3, 1), np.float32)}, np.zeros((3, 2), np.float32), np.ones(3), True),
    ]
    with pytest.raises(ValueError, match="^arm: episodes disagree on which observation values are integers"):
        TokenizedEpisodes(disagree, TOKENIZER, "arm")


def _values_layout_and_timesteps():
    """A small value layout (a return token, three readings, '|', two actions) and six timesteps."""
    layout = TimestepLayout(None, 3, 2, False, return_tokens=1)
    rng = np.random.default_rng(2)
    timesteps = Timesteps(
        np.zeros((6, 0), np.int32),
        None,
        rng.integers(1024, 2048, (6, 3)).astype(np.int32),
        rng.integers(1024, 2048, (6, 2)).astype(np.int32),
        rng.integers(1024, 2048, (6, 1)).astype(np.int32),
    )
    return layout, timesteps


def test_build_batch_reads_its_masks_as_truth_values_and_defaults_to_no_prompt():
    """`valid`, `prompted` and `from_end` given as 0/1 lists make the same boolean batch as bool
    arrays; without `prompted` / `from_end` every row is unprompted: (B,) boolean False."""
    config = GatoConfig.from_preset("cpu-tiny")
    layout, timesteps = _values_layout_and_timesteps()
    steps = np.array([[0, 1, 2], [5, 3, 4]])
    valid = np.array([[True, False, True], [True, True, False]])
    as_bools = build_batch(
        layout, config, timesteps, steps, valid, 24, prompted=np.array([True, False]), from_end=np.array([False, True])
    )
    as_numbers = build_batch(
        layout, config, timesteps, steps.tolist(), valid.astype(int).tolist(), 24, prompted=[1, 0], from_end=[0, 1]
    )
    for field in ("token_ids", "token_kinds", "local_positions", "loss_mask", "attention_mask", "prompted"):
        expected, got = getattr(as_bools, field), getattr(as_numbers, field)
        assert got.dtype == expected.dtype and torch.equal(got, expected), field
    assert as_numbers.attention_mask.dtype == torch.bool and as_numbers.attention_mask.sum() == 4 * 7
    assert as_numbers.prompted.tolist() == [True, False] and as_numbers.prompt_from_end.tolist() == [False, True]
    assert as_numbers.prompt_from_end.dtype == torch.bool
    unprompted = build_batch(layout, config, timesteps, steps, valid)
    for mask in (unprompted.prompted, unprompted.prompt_from_end):
        assert mask.dtype == torch.bool and mask.tolist() == [False, False]


def test_build_batch_quantizes_patch_places_to_the_configured_position_bins():
    """A 2 x 3 grid over 64 bins (not the paper's 128): rows [0, 32) and [32, 64), columns
    [0, 21), [21, 42), [42, 64) (floor of i * 64 / n), tiled once per real timestep."""
    config = GatoConfig.from_preset("cpu-tiny", position_bins=64)
    layout = TimestepLayout((32, 48, 3), 0, 1, True)
    timesteps = Timesteps(
        np.zeros((2, 0), np.int32),
        np.zeros((2, 6, 3, 16, 16), np.uint8),
        np.zeros((2, 0), np.int32),
        np.zeros((2, 1), np.int32),
    )
    batch = build_batch(layout, config, timesteps, np.array([[0, 1]]), np.array([[True, True]]))
    rows = [[0, 32]] * 3 + [[32, 64]] * 3
    cols = [[0, 21], [21, 42], [42, 64]] * 2
    assert batch.patch_row_ranges.tolist() == rows * 2 and batch.patch_col_ranges.tolist() == cols * 2


def test_timesteps_concat_joins_every_field_in_order():
    """Acting joins a timestep of fed action ids to the current observations: every field is the
    parts' rows one after the other; without frames the patches stay None; one part is itself."""

    def part(start, count, frames):
        numbers = np.arange(start, start + count, dtype=np.int32)[:, None]
        patches = np.full((count, 2, 3, 4, 4), start, np.uint8) if frames else None
        return Timesteps(numbers, patches, numbers + 100, np.hstack([numbers + 200, numbers + 300]), numbers + 400)

    for frames in (True, False):
        first, second = part(0, 2, frames), part(10, 3, frames)
        joined = Timesteps.concat([first, second])
        assert len(joined) == 5
        assert joined.text_ids[:, 0].tolist() == [0, 1, 10, 11, 12]
        assert joined.value_ids[:, 0].tolist() == [100, 101, 110, 111, 112]
        assert joined.action_ids.tolist() == [[200, 300], [201, 301], [210, 310], [211, 311], [212, 312]]
        assert joined.return_ids[:, 0].tolist() == [400, 401, 410, 411, 412]
        if frames:
            assert joined.patches.shape == (5, 2, 3, 4, 4)
            assert joined.patches[:, 0, 0, 0, 0].tolist() == [0, 0, 10, 10, 10]
        else:
            assert joined.patches is None
        alone = Timesteps.concat([second])
        assert alone.text_ids[:, 0].tolist() == [10, 11, 12] and (alone.patches is None) == (not frames)


def test_returns_to_go_accumulate_in_float64():
    """Episode rewards are float32; their sums are taken in float64, so a long episode's
    returns-to-go carry no float32 round-off: R_t = (T - t) * r for a constant reward r."""
    reward = np.float32(0.1)
    to_go = returns_to_go(np.full(1000, reward, np.float32))
    assert to_go.dtype == np.float64
    np.testing.assert_allclose(to_go, np.arange(1000, 0, -1) * float(reward), rtol=1e-12)
    assert returns_to_go([1, 2, 3]).tolist() == [6.0, 5.0, 3.0]


def test_layout_checks_and_keeps_the_integer_columns_it_is_given():
    """`discrete_values` must index the observation values (the last one is the value count
    less one); a task that declares integer columns lays them out as discrete tokens."""
    assert TimestepLayout(None, 3, 2, False, discrete_values=(0, 2)).kinds()[:3].tolist() == [
        DISCRETE,
        CONTINUOUS,
        DISCRETE,
    ]
    with pytest.raises(ValueError, match=r"^discrete_values \(3,\) must index the 3 observation values$"):
        TimestepLayout(None, 3, 2, False, discrete_values=(3,))
    spec = dataclasses.replace(get_task("hopper"), discrete_values=(0, 4))
    layout = TimestepLayout.for_task(spec)
    assert layout.discrete_values == (0, 4)
    assert [column for column, kind in enumerate(layout.kinds()[:11]) if kind == DISCRETE] == [0, 4]


def test_text_layout_is_one_text_token_in_the_configured_patch_size():
    """A text timestep: one text token, no values, no actions (so no separator), not discrete;
    its patch size is the config's, so a text batch's (empty) patches concatenate with the
    frames of an image task's batch."""
    assert TimestepLayout.text(8) == TimestepLayout(None, 0, 0, False, 8, text_tokens=1)
    assert TimestepLayout.text() == TimestepLayout(None, 0, 0, False, text_tokens=1)  # the layout's default, 16
    config = GatoConfig.from_preset("cpu-tiny", patch_size=8)
    text = TokenizedEpisodes.from_text(np.arange(20), Tokenizer(config))
    steps = np.arange(8)[None, :]
    batch = build_batch(text.layout, config, text.timesteps, steps, np.ones_like(steps, dtype=bool))
    assert batch.patches.shape == (0, 3, 8, 8)


def test_frames_are_cut_in_the_configured_patch_size():
    """Frames read from the arrays (no task) are cut into patches of the config's size: an 80 x 80
    frame in 8 x 8 patches is a 10 x 10 grid, patch (r, c) holding pixels [8r, 8r + 8) x [8c, 8c + 8)."""
    config = GatoConfig.from_preset("cpu-tiny", patch_size=8)
    episodes = atari_episodes(lengths=(3,))
    data = TokenizedEpisodes(episodes, Tokenizer(config))
    assert data.layout == TimestepLayout((80, 80, 3), 0, 1, True, 8) and data.layout.num_patches == 100
    frame = episodes[0].observations[2]
    assert data.timesteps.patches.shape == (3, 100, 3, 8, 8)
    for r, c in [(0, 0), (3, 7), (9, 9)]:
        expected = frame[8 * r : 8 * r + 8, 8 * c : 8 * c + 8].transpose(2, 0, 1)
        assert np.array_equal(data.timesteps.patches[2, 10 * r + c], expected)


def test_float_observations_of_several_axes_are_readings_not_frames():
    """Only uint8 (T, H, W, C) arrays are frames: float observations of shape (T, 2, 2, 2) are
    eight readings a timestep."""
    observations = np.linspace(-1, 1, 24, dtype=np.float32).reshape(3, 2, 2, 2)
    data = TokenizedEpisodes([Episode(observations, np.zeros((3, 2), np.float32), np.ones(3), True)], TOKENIZER)
    assert data.layout.image_shape is None and data.layout.num_values == 8 and data.timesteps.patches is None
    assert np.array_equal(
        data.timesteps.value_ids, TOKENIZER.encode_observation_values(observations.reshape(3, 8).astype(np.float64))
    )


def test_action_ids_are_int32_that_the_marginal_baseline_can_count():
    """Buttons and torques both tokenize to int32 ids (the baseline counts them with np.bincount)."""
    for data in (TokenizedEpisodes(atari_episodes(), TOKENIZER), TokenizedEpisodes(mujoco_episodes(), TOKENIZER)):
        assert data.action_ids.dtype == np.int32 and data.counted_ids.dtype == np.int32
        assert np.bincount(data.counted_ids.reshape(-1)).sum() == data.action_ids.size


def test_a_task_can_cut_its_windows_to_k_timesteps():
    """window_timesteps=K: windows of exactly K timesteps (K x tokens_per_timestep tokens, no
    padding past them); a 1-timestep window is never prompted, a 4-timestep one gives its prompt
    round(4 x prompt_share) = 2 timesteps, as a full window's share would."""
    data = TokenizedEpisodes(mujoco_episodes(), TOKENIZER, "m")  # 8 tokens a timestep
    tpt, config = data.layout.tokens_per_timestep, CONFIG.replace(context_length=200, prompt_fraction=1.0)
    one = SequenceSampler(data, config, seed=0, window_timesteps=1)
    steps, valid, prompted, _ = one.sample_windows(500)
    assert steps.shape == (500, 1) and valid.all() and not prompted.any() and one.window_length == tpt
    batch = one.sample(16)
    assert batch.token_ids.shape == (16, tpt) and batch.attention_mask.all()
    assert np.all(batch.token_kinds.numpy() == data.layout.kinds())
    four = SequenceSampler(data, config, seed=0, window_timesteps=4)
    steps, valid, prompted, _ = four.sample_windows(500)
    assert steps.shape == (500, 4) and prompted.all()
    episode_of = np.searchsorted(data.starts, steps, side="right") - 1
    assert np.all(episode_of[:, 0] == episode_of[:, 1]) and np.all(episode_of[:, 1] != episode_of[:, 2])
    assert prompt_timesteps(4, config.prompt_share) == 2 and prompt_timesteps(1, config.prompt_share) == 0
    assert four.sample(3).token_ids.shape == (3, 4 * tpt)
    # 0 is the paper's window: the whole context
    assert SequenceSampler(data, config, window_timesteps=0).sample(2).token_ids.shape == (2, 200)
    for bad in (26, -1, 1.5, True):  # 200 tokens hold 25 timesteps of 8
        with pytest.raises(ValueError, match="window_timesteps"):
            SequenceSampler(data, config, window_timesteps=bad)
