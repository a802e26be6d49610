"""Position encodings and the embedding that adds them (gato_min.positions, gato_min.embed; App. C.2-C.3).

What the paper-defaults file does not pin: patch ranges tile the bins at exact edges for any bin count; sampled
and mean indices stay on their ranges' device; which table rows the row, column and local
encodings add, and to which tokens; that training draws both indices from the caller's generator;
that the embedding sizes its tables from the config; and the patch block's own patch size.
"""

import math
from fractions import Fraction

import numpy as np
import pytest
import torch

from gato_min.config import GatoConfig
from gato_min.data.episodes import Episode
from gato_min.embed import GatoEmbedding, PatchResNetBlock
from gato_min.positions import LocalPositionEncoding, PatchPositionEncoding, patch_intervals, sample_positions
from gato_min.sampling import SequenceSampler
from gato_min.sequence import IMAGE, TokenizedEpisodes
from gato_min.tokenize import Tokenizer

TINY = GatoConfig.from_preset("cpu-tiny", context_length=40)


def _frame_episodes(lengths=(6, 5), height=32, width=48):
    """Episodes of small RGB frames (a 2 x 3 patch grid at patch size 16) and one button each step."""
    rng = np.random.default_rng(0)
    return [
        Episode(
            rng.integers(0, 256, (n, height, width, 3), dtype=np.uint8),
            rng.integers(0, 4, n),
            np.zeros(n, np.float32),
            True,
        )
        for n in lengths
    ]


def _vector_episodes(lengths=(8, 7), obs_dim=4, action_dim=2):
    rng = np.random.default_rng(1)
    return [
        Episode(rng.normal(size=(n, obs_dim)), rng.uniform(-1, 1, (n, action_dim)), np.ones(n), True) for n in lengths
    ]


def _batch(episodes, config=TINY, size=2):
    return SequenceSampler(TokenizedEpisodes(episodes, Tokenizer(config)), config, seed=0).sample(size)


def _mean_index(ranges):
    """The evaluation index written out: the middle integer of [low, high), halves to even."""
    return torch.tensor([round((int(low) + int(high) - 1) / 2) for low, high in ranges.reshape(-1, 2)])


# ---------------------------------------------------------------- patch ranges and indices


@pytest.mark.parametrize("bins", [22, 47, 100, 128])
def test_patch_ranges_tile_the_bins_at_exact_edges_and_hold_their_evaluation_index(bins):
    """Row i of n covers [i / n, (i + 1) / n) of the image, quantized to floor(i * bins / n), worked
    out exactly with fractions. In floats some edges land a bin low (100 bins over 50 rows put
    row 29 at 57, and at 22 or 47 bins two edges can share a bin, so ranges overlap); the ranges
    must tile [0, bins) with no gap or overlap for every grid up to one row per bin."""
    for n in range(1, bins + 1):
        rows, cols = patch_intervals(n, 1, bins)
        edges = [math.floor(Fraction(i * bins, n)) for i in range(n + 1)]
        assert rows.tolist() == [[low, high] for low, high in zip(edges[:-1], edges[1:])], n
        assert cols.tolist() == [[0, bins]] * n
        middle = _mean_index(torch.from_numpy(rows))
        assert np.all((middle.numpy() >= rows[:, 0]) & (middle.numpy() < rows[:, 1]))


@pytest.mark.parametrize("training", [True, False])
def test_position_indices_are_made_on_the_device_of_their_ranges(training):
    """The "meta" device stands in for a GPU here: a random draw made on the CPU cannot be mixed with it.
    (The first multiply on "meta" in a process imports torch._dynamo: about 3 s, once.)"""
    ranges = torch.tensor([[0, 26], [26, 51], [51, 77]]).to("meta")
    indices = sample_positions(ranges, training)
    assert indices.device.type == "meta" and indices.shape == (3,) and indices.dtype == torch.int64


def test_training_draws_rows_and_columns_from_the_given_generator():
    encoding = PatchPositionEncoding(8, 128).train()
    rows, cols = (torch.from_numpy(r) for r in patch_intervals(8, 8))  # every range is 16 bins wide
    torch.manual_seed(1)
    first = encoding.indices(rows, cols, torch.Generator().manual_seed(7))
    torch.manual_seed(2)  # the global generator must not matter
    again = encoding.indices(rows, cols, torch.Generator().manual_seed(7))
    other = encoding.indices(rows, cols, torch.Generator().manual_seed(8))
    for drawn, same, different, ranges in zip(first, again, other, (rows, cols)):
        assert torch.equal(drawn, same) and not torch.equal(drawn, different)
        assert torch.all((drawn >= ranges[:, 0]) & (drawn < ranges[:, 1]))
        assert not torch.equal(drawn, _mean_index(ranges))  # drawn, not the evaluation mean
    encoding.eval()  # a generator given at evaluation changes nothing: both indices are the means
    row_mean, col_mean = encoding.indices(rows, cols, torch.Generator().manual_seed(7))
    assert torch.equal(row_mean, _mean_index(rows)) and torch.equal(col_mean, _mean_index(cols))


# ---------------------------------------------------------------- the encodings' table rows


def test_patch_position_is_its_row_table_row_plus_its_column_table_row():
    torch.manual_seed(0)
    encoding = PatchPositionEncoding(6, 32).eval()
    rows, cols = (torch.from_numpy(r) for r in patch_intervals(2, 3, 32))
    expected = encoding.row_table.weight[_mean_index(rows)] + encoding.col_table.weight[_mean_index(cols)]
    torch.testing.assert_close(encoding(rows, cols), expected)


def test_local_position_p_adds_table_row_p_and_minus_one_adds_nothing():
    torch.manual_seed(0)
    encoding = LocalPositionEncoding(5, 8)
    positions = torch.tensor([[-1, 0, 1, 7], [3, -1, 0, 0]])
    weight = encoding.table.weight
    expected = torch.stack(
        [torch.stack([torch.zeros(5) if p < 0 else weight[p] for p in row]) for row in positions.tolist()]
    )
    torch.testing.assert_close(encoding(positions), expected)


# ---------------------------------------------------------------- the embedding


def test_an_image_token_is_its_patch_vector_plus_row_column_and_local_positions():
    torch.manual_seed(0)
    embedding = GatoEmbedding(TINY).eval()
    batch = _batch(_frame_episodes())
    assert len(batch.patch_index) and torch.any(batch.local_positions > 0)
    out = embedding(batch).reshape(-1, TINY.d_model)
    ids, local = batch.token_ids.reshape(-1), batch.local_positions.reshape(-1)
    local_rows = embedding.local_positions.table.weight
    patch_vectors = embedding.patch_block(batch.patches)
    rows = embedding.patch_positions.row_table.weight[_mean_index(batch.patch_row_ranges)]
    cols = embedding.patch_positions.col_table.weight[_mean_index(batch.patch_col_ranges)]
    patch_of = {int(flat): i for i, flat in enumerate(batch.patch_index)}
    assert set(patch_of) == set(torch.nonzero(batch.token_kinds.reshape(-1) == IMAGE).flatten().tolist())
    for flat in range(len(ids)):
        position = local_rows[local[flat]] if local[flat] >= 0 else torch.zeros(TINY.d_model)
        if flat in patch_of:
            i = patch_of[flat]
            expected = patch_vectors[i] + rows[i] + cols[i] + position
        else:
            expected = embedding.token_table.weight[ids[flat]] + position
        torch.testing.assert_close(out[flat], expected)


def test_a_vector_token_is_its_table_row_plus_its_local_position_in_a_one_channel_embedding():
    """A greyscale model (image_channels=1) still reads vector tasks, whose batches carry no patches."""
    torch.manual_seed(0)
    embedding = GatoEmbedding(TINY, image_channels=1).eval()
    batch = _batch(_vector_episodes())
    assert batch.patches.shape[0] == 0 and torch.any(batch.local_positions > 0)
    local = batch.local_positions
    expected = embedding.token_table.weight[batch.token_ids] + torch.where(
        (local >= 0).unsqueeze(-1), embedding.local_positions.table.weight[local.clamp(min=0)], 0.0
    )
    torch.testing.assert_close(embedding(batch), expected)


def test_embedding_sizes_its_position_tables_from_the_config():
    config = TINY.replace(position_bins=40, max_local_positions=24)
    embedding = GatoEmbedding(config)
    assert embedding.config is config
    assert embedding.patch_positions.row_table.num_embeddings == embedding.patch_positions.col_table.num_embeddings
    assert embedding.patch_positions.row_table.num_embeddings == embedding.patch_positions.bins == 40
    assert embedding.local_positions.table.num_embeddings == embedding.local_positions.max_positions == 24


# ---------------------------------------------------------------- the patch block


def test_patch_block_scales_uint8_by_the_square_root_of_its_own_patch_size():
    torch.manual_seed(0)
    block = PatchResNetBlock(3, 8, 4, 8, 6)
    pixels = torch.randint(0, 256, (3, 3, 8, 8), dtype=torch.uint8)
    scaled = (pixels.float() / 127.5 - 1) / 8**0.5  # Sec. 2.1: [-1, 1], then / sqrt(patch size)
    torch.testing.assert_close(block(pixels), block(scaled))


def test_patch_block_refuses_a_patch_size_its_stride_4_stem_cannot_tile():
    with pytest.raises(ValueError, match=r"^patch_size must be a multiple of 4 .*got 10$"):
        PatchResNetBlock(3, 8, 4, 10, 6)
