"""Every default that shared/REFERENCE.md takes from the paper, pinned where the code uses it.

Each test fails when its default changes, checked through the code path that uses the value
(the embedding a model builds, the batch the training sampler cuts, the optimizer the loop
makes), not only the dataclass field. Sections: Gato (Reed et al., 2022).
"""

import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gato_min.config import GatoConfig
from gato_min.data.episodes import Episode, filter_by_return
from gato_min.data.training_set import DataSettings
from gato_min.embed import GatoEmbedding, PatchResNetBlock
from gato_min.model import GatoModel
from gato_min.optim import TrainSettings, learning_rate, make_optimizer
from gato_min.positions import LocalPositionEncoding, PatchPositionEncoding, patch_intervals, sample_positions
from gato_min.sampling import SequenceSampler
from gato_min.sequence import ACTION, CONTINUOUS, SEPARATOR, TokenizedEpisodes
from gato_min.tokenize import (
    Tokenizer,
    bin_centers,
    bin_edges,
    discretize,
    mu_law_decode,
    mu_law_encode,
    normalize_pixels,
)

PAPER = GatoConfig()  # the dataclass defaults are the paper's settings
SMALL = GatoConfig.from_preset("cpu-tiny")


def _episodes(lengths=(40, 60, 50), obs_dim=3, action_dim=2, seed=0):
    rng = np.random.default_rng(seed)
    return [
        Episode(rng.normal(size=(n, obs_dim)), rng.uniform(-1, 1, (n, action_dim)), np.ones(n), True) for n in lengths
    ]


# ---------------------------------------------------------------- tokenization (Sec. 2.1)


def test_mu_law_uses_mu_100_and_m_256_and_1024_bins():
    assert (PAPER.mu, PAPER.mu_law_m, PAPER.num_bins, PAPER.text_vocab_size) == (100.0, 256.0, 1024, 32000)
    x = np.array([-300.0, -3.0, -0.01, 0.0, 0.5, 256.0])
    expected = np.sign(x) * np.log(np.abs(x) * 100 + 1) / np.log(256 * 100 + 1)
    np.testing.assert_allclose(mu_law_encode(x), expected, rtol=1e-12)
    ids = Tokenizer(PAPER).encode_continuous(np.array([-1e6, 0.0, 1e6]))  # clipped to the first/last bin
    assert ids.tolist() == [32000, 32000 + 512, 32000 + 1023]


def test_1024_uniform_bins_tile_minus_one_one_and_discretize_agrees():
    edges = bin_edges(1024)
    assert len(edges) == 1025 and (edges[0], edges[-1]) == (-1.0, 1.0)
    np.testing.assert_allclose(np.diff(edges), 2 / 1024)
    middles = (edges[:-1] + edges[1:]) / 2
    np.testing.assert_allclose(bin_centers(1024), middles)
    assert discretize(middles).tolist() == discretize(edges[:-1]).tolist() == list(range(1024))
    assert discretize(np.array([-7.0, -1.0, 1.0, 1.5, 7.0])).tolist() == [0, 0, 1023, 1023, 1023]  # clipped


def test_mu_law_saturates_quietly_and_names_a_bad_argument():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # |x| mu beyond the float range must not warn: it is the end bin
        assert Tokenizer(PAPER).encode_continuous(np.array([1e308, -1e308])).tolist() == [33023, 32000]
    with pytest.raises(TypeError, match="^x must hold real numbers"):
        mu_law_encode(np.array(["a"]))
    with pytest.raises(TypeError, match="^y must hold real numbers"):
        mu_law_decode(np.array(["a"]))
    with pytest.raises(ValueError, match="^y must be finite"):
        discretize(np.array([np.nan]))


def test_pixels_scale_to_minus_one_one_over_sqrt_patch_size():
    assert PAPER.patch_size == 16
    pixels = torch.tensor([0, 255], dtype=torch.uint8)
    torch.testing.assert_close(normalize_pixels(pixels, PAPER.patch_size), torch.tensor([-0.25, 0.25]))
    scaled = normalize_pixels(np.array([0, 255], np.uint8))
    assert scaled.dtype == np.float32 and scaled.tolist() == [-0.25, 0.25]
    with pytest.raises(TypeError, match="^image must be uint8 pixels"):
        normalize_pixels(np.zeros(3, np.float32))
    with pytest.raises(TypeError, match="^pixels must be uint8"):
        normalize_pixels(torch.zeros(3))


# ---------------------------------------------------------------- embedding (Sec. 2.2, App. C.2)


def test_patch_block_is_pre_activation_groupnorm_gelu_with_an_identity_shortcut():
    """App. C.2: ResNet v2 (norm and activation before each convolution), GroupNorm, GELU."""
    torch.manual_seed(0)
    block = GatoEmbedding(PAPER.replace(d_model=32)).patch_block
    assert block.norm1.num_groups == block.norm2.num_groups == 32 == PAPER.patch_groups
    patches = torch.randn(3, 3, 16, 16)
    x = block.stem(patches)
    h = block.conv1(F.gelu(F.group_norm(x, 32, block.norm1.weight, block.norm1.bias)))
    h = block.conv2(F.gelu(F.group_norm(h, 32, block.norm2.weight, block.norm2.bias)))
    torch.testing.assert_close(block(patches), block.proj((x + h).flatten(1)))
    # the check tells GELU from ReLU and pre- from post-activation on these weights
    relu = block.conv2(F.relu(block.norm2(block.conv1(F.relu(block.norm1(x))))))
    post = F.gelu(block.norm2(block.conv2(F.gelu(block.norm1(block.conv1(x))))))
    for other in (relu, post):
        assert not torch.allclose(block(patches), block.proj((x + other).flatten(1)), atol=1e-4)


def test_patch_block_groups_come_from_the_config():
    block = PatchResNetBlock(3, 128, 16, 16, 8)
    assert block.norm1.num_groups == 16  # the config's value is used, not a constant


# ---------------------------------------------------------------- positions (App. C.3)


def test_patch_positions_quantize_to_128_bins_and_local_positions_index_512_rows():
    embedding = GatoEmbedding(PAPER.replace(d_model=32))
    assert PAPER.position_bins == 128 and PAPER.max_local_positions == 512
    tables = [m for m in embedding.patch_positions.modules() if isinstance(m, torch.nn.Embedding)]
    assert sorted(t.num_embeddings for t in tables) == [128, 128]
    local = [m for m in embedding.local_positions.modules() if isinstance(m, torch.nn.Embedding)]
    assert [t.num_embeddings for t in local] == [512]
    rows, _ = patch_intervals(5, 5)  # a 5 x 5 grid: row i covers [i/5, (i+1)/5) of the 128 bins
    assert rows[::5, 0].tolist() == [0, 25, 51, 76, 102] and rows[-1, 1] == 128


def test_position_encodings_built_without_sizes_take_128_bins_and_512_local_rows():
    patch, local = PatchPositionEncoding(8), LocalPositionEncoding(8)
    assert patch.bins == patch.row_table.num_embeddings == patch.col_table.num_embeddings == 128
    assert local.max_positions == local.table.num_embeddings == 512
    assert np.array_equal(patch_intervals(3, 3)[0], patch_intervals(3, 3, 128)[0])


@pytest.mark.parametrize("n", [1, 5, 100, 128])
def test_patch_intervals_tile_the_128_bins_without_gaps_or_overlaps(n):
    rows, cols = patch_intervals(n, n)
    assert rows.dtype == np.int64 and rows.shape == cols.shape == (n * n, 2)
    per_row = rows[::n]  # one interval per grid row
    assert per_row[0, 0] == 0 and per_row[-1, 1] == 128 and np.array_equal(per_row[1:, 0], per_row[:-1, 1])
    assert np.all(per_row[:, 1] > per_row[:, 0]) and np.array_equal(cols[:n], per_row)


def test_patch_intervals_refuse_empty_grids_and_grids_finer_than_the_bins():
    for rows, cols in ((0, 5), (5, 0)):
        with pytest.raises(ValueError, match="^a patch grid needs at least one row and column"):
            patch_intervals(rows, cols)
    for rows, cols in ((129, 5), (5, 129)):
        with pytest.raises(ValueError, match="more rows or columns than position bins"):
            patch_intervals(rows, cols)


def test_training_positions_come_from_the_given_generator_and_evaluation_takes_the_mean():
    ranges = torch.tensor([[0, 26], [26, 51], [51, 77]]).repeat(40, 1)
    first = sample_positions(ranges, True, torch.Generator().manual_seed(5))
    torch.manual_seed(123)  # the global generator must not matter
    assert torch.equal(first, sample_positions(ranges, True, torch.Generator().manual_seed(5)))
    assert torch.all((first >= ranges[:, 0]) & (first < ranges[:, 1])) and len(set(first[::3].tolist())) > 5
    assert sample_positions(ranges[:3], False).tolist() == [12, 38, 64]  # round((low + high - 1) / 2)


def test_action_tokens_get_no_local_position_by_default():
    """App. C.3 gives local positions to observation tokens only: actions (and '|') get -1."""
    assert PAPER.action_positions == "none"
    data = TokenizedEpisodes(_episodes(), Tokenizer(SMALL))
    batch = SequenceSampler(data, SMALL.replace(context_length=36, prompt_fraction=0.0), seed=0).sample(4)
    kinds, positions = batch.token_kinds, batch.local_positions
    assert torch.all(positions[kinds == ACTION] == -1) and torch.all(positions[kinds == SEPARATOR] == -1)
    assert positions[0, :3].tolist() == [0, 1, 2]


# ---------------------------------------------------------------- sequences and prompts (Sec. 2.3)


def test_a_training_timestep_is_observation_then_separator_then_actions():
    """Sec. 2.1: [observation tokens, '|', action tokens], on the training path."""
    tokenizer = Tokenizer(SMALL)
    data = TokenizedEpisodes(_episodes(), tokenizer)
    sampler = SequenceSampler(data, SMALL.replace(context_length=6, prompt_fraction=0.0), seed=0)
    steps, valid, prompted, from_end = sampler.sample_windows(3)
    batch = sampler.batch(steps, valid, prompted, from_end)
    observations = np.concatenate([e.observations for e in _episodes()])
    actions = np.concatenate([e.actions for e in _episodes()])
    for row, step in enumerate(steps[:, 0]):
        expected = [*tokenizer.encode_continuous(observations[step]), SMALL.vocab.separator_id]
        expected += tokenizer.encode_actions(actions[step]).tolist()
        assert batch.token_ids[row].tolist() == expected
        assert batch.token_kinds[row].tolist() == [CONTINUOUS] * 3 + [SEPARATOR] + [ACTION] * 2
        assert batch.loss_mask[row].tolist() == [False] * 4 + [True] * 2  # only the logged actions count


def test_a_quarter_of_sequences_are_prompted_half_from_an_end_half_uniformly():
    assert (PAPER.prompt_fraction, PAPER.prompt_end_fraction) == (0.25, 0.5)
    data = TokenizedEpisodes(_episodes(lengths=(200, 220, 240, 260)), Tokenizer(SMALL))
    sampler = SequenceSampler(data, SMALL.replace(context_length=6 * 20), seed=1)
    steps, valid, prompted, from_end = sampler.sample_windows(8000)
    assert abs(prompted.mean() - 0.25) < 0.02 and abs(from_end[prompted].mean() - 0.5) < 0.03
    episode = np.searchsorted(data.starts, steps[:, 0], side="right") - 1
    start = steps[:, 0] - data.starts[episode]
    room = data.lengths[episode] - 10  # a prompt takes 10 of the 20 timesteps
    uniform = prompted & ~from_end
    assert np.all(start[from_end] == room[from_end])  # an end prompt ends with its episode
    spread = start[uniform] / room[uniform]  # a uniform prompt starts anywhere in [0, room]
    assert abs(spread.mean() - 0.5) < 0.05 and (spread < 0.1).mean() < 0.2 and (spread > 0.9).mean() > 0.05


# ---------------------------------------------------------------- data (Sec. 3.1)


def test_only_episodes_reaching_80_percent_of_the_expert_are_kept():
    assert DataSettings().min_return_fraction == 0.8
    episodes = [Episode(np.zeros((1, 1)), np.zeros((1, 1)), np.array([r]), True) for r in (79.0, 80.0, 95.0)]
    assert [e.episode_return for e in filter_by_return(episodes, 100.0)] == [80.0, 95.0]


# ---------------------------------------------------------------- optimization (App. C.1)


def test_adamw_betas_weight_decay_clipping_and_a_tenfold_cosine_decay():
    settings = TrainSettings()
    assert (settings.beta1, settings.beta2, settings.weight_decay, settings.grad_clip) == (0.9, 0.95, 0.1, 1.0)
    optimizer = make_optimizer(GatoModel(SMALL), settings)
    assert all(group["betas"] == (0.9, 0.95) for group in optimizer.param_groups)
    assert sorted(group["weight_decay"] for group in optimizer.param_groups) == [0.0, 0.1]
    assert learning_rate(settings.steps, settings) == pytest.approx(settings.lr / 10)
