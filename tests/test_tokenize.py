"""Tokenization (gato_min.tokenize) against the paper's rules, Reed et al. (2022), Sec. 2.1 and App. B."""

import re
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from gato_min.config import GatoConfig
from gato_min.observations import flatten_nested
from gato_min.tokenize import (
    TextTokenizer,
    Tokenizer,
    VocabLayout,
    bin_centers,
    bin_edges,
    cut_patches,
    detokenize_continuous,
    discretize,
    image_to_patches,
    mu_law_decode,
    mu_law_encode,
    normalize_pixels,
    patch_grid,
    patches_to_image,
    shipped_text_model,
    tokenize_continuous,
    tokenize_discrete,
)
from gato_min.tools.tokenize_demo import Timestep, timestep_tokens

PAPER = GatoConfig.from_preset("gato-1.18b")
SMALL = GatoConfig.from_preset("cpu-small")
finite_floats = st.floats(allow_nan=False, allow_infinity=False)


# ---------------------------------------------------------------- paper facts


def test_sec_2_1_vocabulary_layout_of_the_paper():
    """Sec. 2.1: text [0, 32000), discrete [0, 1024), continuous shifted to [32000, 33024)."""
    v = PAPER.vocab
    assert v.text_size == 32000
    assert v.num_bins == 1024
    assert (v.continuous_offset, v.continuous_offset + v.num_bins) == (32000, 33024)
    assert v.separator_id == 33024 and v.pad_id == 33025 and v.size == 33026


def test_sec_2_1_layout_is_derived_from_the_config():
    v = GatoConfig.from_preset("cpu-small", text_vocab_size=5000).vocab
    assert (v.continuous_offset, v.separator_id, v.pad_id, v.size) == (5000, 6024, 6025, 6026)


def test_sec_2_1_discrete_values_are_not_shifted():
    """Sec. 2.1: discrete values are integers in [0, 1024), shared with text ids."""
    values = np.array([[0, 7], [1023, 512]])
    assert tokenize_discrete(values, PAPER.vocab).tolist() == [0, 7, 1023, 512]  # row-major


def test_sec_2_1_continuous_values_are_flattened_row_major():
    values = np.array([[0.0, 1.0], [-1.0, 0.5]])
    ids = tokenize_continuous(values, PAPER.vocab)
    expected = [tokenize_continuous([v], PAPER.vocab)[0] for v in values.reshape(-1)]
    assert ids.tolist() == expected


def test_app_b_mu_law_parameters_and_formula():
    """App. B (as quoted by reimplementations): F(x) = sgn(x) log(|x| mu + 1) / log(M mu + 1), mu=100, M=256."""
    assert (PAPER.mu, PAPER.mu_law_m) == (100.0, 256.0)
    x = np.array([-300.0, -256.0, -1.0, -0.01, 0.0, 0.01, 1.0, 256.0])
    by_hand = np.sign(x) * np.log(np.abs(x) * 100 + 1) / np.log(256 * 100 + 1)
    np.testing.assert_allclose(mu_law_encode(x), by_hand, rtol=1e-12, atol=1e-15)
    assert mu_law_encode(256.0) == pytest.approx(1.0)
    np.testing.assert_allclose(mu_law_decode(mu_law_encode(x)), x, rtol=1e-9, atol=1e-12)


def test_sec_2_1_continuous_values_use_1024_uniform_bins_on_minus_one_one():
    edges = np.linspace(-1, 1, 1025)
    # a value just inside each bin lands in that bin; the bins are uniform
    assert discretize(edges[:-1] + 1e-9).tolist() == list(range(1024))
    np.testing.assert_allclose(np.diff(bin_centers()), 2 / 1024)
    assert discretize([1.0, 5.0, -1.0, -5.0]).tolist() == [1023, 1023, 0, 0]  # clipped


def test_app_b_actions_are_not_companded():
    """Actions already lie in [-1, 1]: binned directly, no mu-law."""
    tokenizer = Tokenizer(PAPER)
    actions = np.array([-1.0, -0.25, 0.0, 0.7, 1.0])
    ids = tokenizer.encode_actions(actions)
    assert ids.tolist() == (discretize(actions) + 32000).tolist()
    assert np.abs(tokenizer.decode_actions(ids) - actions).max() <= 1 / 1024
    # an observation with the same values is companded and lands elsewhere
    assert tokenizer.encode_continuous([0.7])[0] != ids[3]


def test_sec_2_1_image_patches_raster_order_and_scaling():
    """Sec. 2.1: 16x16 non-overlapping patches in raster order; pixels to [-1, 1], then / sqrt(16)."""
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(48, 64, 3), dtype=np.uint8)
    patches = image_to_patches(image)
    assert patches.shape == (3 * 4, 3, 16, 16)
    for k in range(12):
        r, c = divmod(k, 4)  # raster order: row by row, left to right
        block = image[16 * r : 16 * (r + 1), 16 * c : 16 * (c + 1)].astype(np.float64)
        np.testing.assert_allclose(patches[k], ((block / 255 * 2 - 1) / 4).transpose(2, 0, 1), atol=1e-6)
    assert image_to_patches(np.full((16, 16, 3), 255, np.uint8)).max() == pytest.approx(0.25)
    assert image_to_patches(np.zeros((16, 16, 3), np.uint8)).min() == pytest.approx(-0.25)


def test_images_with_sides_not_multiple_of_16_are_padded_black_bottom_right():
    image = np.full((210, 160, 3), 200, np.uint8)
    assert patch_grid(210, 160) == (14, 10)
    patches = image_to_patches(image)
    assert patches.shape == (140, 3, 16, 16)
    restored = patches_to_image(patches, 14, 10)
    assert np.array_equal(restored[:210], image)
    assert np.all(restored[210:] == 0)


def test_sec_2_1_text_ids_below_text_vocab_size():
    tokenizer = Tokenizer(SMALL)
    ids = tokenizer.encode_text("Gato plays Atari, controls bodies and chats: ünïcode 漢字 too.")
    assert ids.min() >= 0 and ids.max() < SMALL.text_vocab_size
    assert tokenizer.decode_text(ids) == "Gato plays Atari, controls bodies and chats: ünïcode 漢字 too."


def test_the_tokenize_demo_shows_a_timestep_as_observation_separator_action():
    """The demo helper of chapter 01 (the training path: tests/test_paper_defaults.py)."""
    tokenizer = Tokenizer(SMALL)
    step = Timestep("halfcheetah", np.array([0.1, -2.0, 30.0]), np.array([0.5, -0.5]))
    ids, kinds = timestep_tokens(step, tokenizer)
    assert ids.tolist() == [
        *tokenizer.encode_continuous(step.observation),
        SMALL.vocab.separator_id,
        *tokenizer.encode_actions(step.action),
    ]
    assert kinds == ["continuous"] * 3 + ["separator"] + ["continuous action"] * 2


def test_sec_2_1_nested_structures_in_lexicographic_key_order():
    obs = {"velocity": np.ones(2), "camera": {"right": 1, "left": 2}, "angle": np.zeros(3)}
    assert [key for key, _ in flatten_nested(obs)] == [
        "observation/angle",
        "observation/camera/left",
        "observation/camera/right",
        "observation/velocity",
    ]
    with pytest.raises(TypeError, match="keys must be strings"):
        flatten_nested({1: np.zeros(1)})


# ---------------------------------------------------------------- properties


@settings(max_examples=500, deadline=None)
@given(finite_floats)
def test_any_finite_float_gets_a_continuous_id(x):
    for compand in (True, False):
        token = tokenize_continuous([x], PAPER.vocab, compand=compand)[0]
        assert 32000 <= token < 33024


@settings(max_examples=500, deadline=None)
@given(finite_floats)
def test_round_trip_within_half_a_bin_in_companded_space(x):
    token = tokenize_continuous([x], PAPER.vocab)
    decoded = detokenize_continuous(token, PAPER.vocab)[0]
    companded = np.clip(mu_law_encode(x), -1, 1)
    assert abs(companded - mu_law_encode(decoded)) <= 1 / 1024 + 1e-12


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, st.integers(1, 40), elements=st.floats(-1, 1, width=32)))
def test_actions_round_trip_within_half_a_bin(actions):
    tokenizer = Tokenizer(PAPER)
    decoded = tokenizer.decode_actions(tokenizer.encode_actions(actions))
    assert np.abs(decoded - actions.astype(np.float64)).max() <= 1 / 1024 + 1e-7


@pytest.mark.parametrize(
    "value, expected_bin",
    [
        (1.0, 1023),
        (-1.0, 0),
        (1e300, 1023),
        (-1e300, 0),
        (np.finfo(np.float64).max, 1023),
        (-np.finfo(np.float64).max, 0),
    ],
)
def test_ends_and_huge_values_land_in_end_bins_never_on_the_separator(value, expected_bin):
    tokenizer = Tokenizer(PAPER)
    action_id = tokenizer.encode_actions([value])[0]
    assert action_id == 32000 + expected_bin != PAPER.vocab.separator_id
    if abs(value) > 1:  # observations: mu-law first, huge values still clip to the end bins
        assert tokenizer.encode_continuous([value])[0] == 32000 + expected_bin


# ---------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "values, error, match",
    [
        ([0.0, np.nan], ValueError, "finite"),
        ([np.inf], ValueError, "finite"),
        (np.array(["1.0"]), TypeError, "real numbers"),
        (np.array([1 + 2j]), TypeError, "real numbers"),
        (np.array([object()]), TypeError, "real numbers"),
    ],
)
def test_bad_continuous_values_name_the_argument(values, error, match):
    with pytest.raises(error, match=f"values must.*{match}|values must hold {match}"):
        tokenize_continuous(values, PAPER.vocab)


@pytest.mark.parametrize(
    "values, error",
    [([0, 1024], ValueError), ([-1], ValueError), (np.array([0.5]), TypeError), (np.array([1.0]), TypeError)],
)
def test_bad_discrete_values(values, error):
    with pytest.raises(error, match="values must"):
        tokenize_discrete(values, PAPER.vocab)


@pytest.mark.parametrize(
    "image, error, match",
    [
        (np.zeros((16, 16, 3), np.float32), TypeError, "uint8"),
        (np.zeros((16, 16, 4), np.uint8), ValueError, "1 or 3 channels"),
        (np.zeros((16, 16, 2), np.uint8), ValueError, "1 or 3 channels"),
        (np.zeros((16,), np.uint8), ValueError, "shape"),
        (np.zeros((0, 16, 3), np.uint8), ValueError, "non-empty"),
        (np.zeros((16, 0, 3), np.uint8), ValueError, "non-empty"),
    ],
)
def test_bad_images(image, error, match):
    with pytest.raises(error, match=match):
        image_to_patches(image)


def test_batched_and_greyscale_images():
    frames = np.zeros((2, 5, 32, 48, 1), np.uint8)  # (batch, time, H, W, C) greyscale
    assert image_to_patches(frames).shape == (2, 5, 6, 1, 16, 16)
    assert image_to_patches(frames[0, 0, :, :, 0]).shape == (6, 1, 16, 16)  # a single (H, W) image
    with pytest.raises(ValueError, match="1 or 3 channels"):  # batched greyscale needs its channel axis
        image_to_patches(frames[..., 0])


def test_ids_outside_the_continuous_range_are_refused():
    with pytest.raises(ValueError, match=r"ids must lie in the continuous range \[32000, 33024\)"):
        detokenize_continuous([33024], PAPER.vocab)  # the separator is not a bin
    with pytest.raises(TypeError, match="ids must be an integer array"):
        detokenize_continuous([32000.5], PAPER.vocab)


def test_text_ids_out_of_range_and_non_strings_are_refused():
    tokenizer = Tokenizer(SMALL)
    with pytest.raises(ValueError, match=r"text ids in \[0, 1024\)"):
        tokenizer.decode_text([1024])
    with pytest.raises(TypeError, match="text must be a str, got bytes"):  # names the type it was given
        tokenizer.encode_text(b"bytes")


def test_missing_text_model_for_the_paper_vocabulary_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match="text_vocab_size=32000"):
        Tokenizer(PAPER).encode_text("hello")


def test_text_model_with_wrong_piece_count_is_refused(tmp_path):
    config = GatoConfig.from_preset("cpu-small", text_vocab_size=2048, text_model=str(shipped_text_model(1024)))
    with pytest.raises(ValueError, match="has 1024 pieces but config.text_vocab_size is 2048"):
        Tokenizer(config).encode_text("hello")


def test_vocab_layout_is_a_value():
    assert VocabLayout(1024) == SMALL.vocab


def test_bin_edges_tile_minus_one_one_uniformly():
    assert bin_edges(4).tolist() == [-1.0, -0.5, 0.0, 0.5, 1.0]
    edges = bin_edges()
    assert len(edges) == 1025 and edges[0] == -1.0 and edges[-1] == 1.0
    np.testing.assert_allclose(np.diff(edges), 2 / 1024)
    np.testing.assert_allclose((edges[:-1] + edges[1:]) / 2, bin_centers())  # each centre mid-way


@pytest.mark.parametrize("mu, m", [(100.0, 256.0), (20.0, 4.0)])
def test_the_tokenizer_decodes_its_own_observation_and_action_ids(mu, m):
    """Observations go through mu-law with the config's mu and M; actions do not (App. B)."""
    tokenizer = Tokenizer(SMALL.replace(mu=mu, mu_law_m=m))
    values = np.array([[-3.0, -0.2, 0.0, 0.01, 0.7, 2.5]])
    ids = tokenizer.encode_continuous(values)
    decoded = tokenizer.decode_continuous(ids)
    half_bin = 1 / 1024
    companded = mu_law_encode(values, mu=mu, m=m)
    assert np.all(np.abs(mu_law_encode(decoded, mu=mu, m=m) - companded) <= half_bin + 1e-9)
    assert np.array_equal(decoded, mu_law_decode(bin_centers()[ids - SMALL.vocab.continuous_offset], mu=mu, m=m))
    actions = np.array([[-1.0, -0.3, 0.0, 0.45, 1.0]])
    action_ids = tokenizer.encode_actions(actions)
    assert np.array_equal(action_ids - SMALL.vocab.continuous_offset, discretize(actions).reshape(-1))
    assert np.array_equal(tokenizer.decode_actions(action_ids), bin_centers()[discretize(actions).reshape(-1)])


def test_observation_values_mix_companded_bins_and_integers():
    """Sec. 2.1: integer readings are their own ids (not shifted); the rest are companded and binned."""
    readings = np.array([[0.5, 3.0, -2.0, 7.0], [0.1, 0.0, 4.0, 1.0]])
    ids = Tokenizer(SMALL).encode_observation_values(readings, (1, 3))
    assert ids.dtype == np.int32 and ids.shape == (2, 4)
    assert ids[:, [1, 3]].tolist() == [[3, 7], [0, 1]]
    tokenizer = Tokenizer(SMALL)
    assert np.array_equal(ids[:, [0, 2]].reshape(-1), tokenizer.encode_continuous(readings[:, [0, 2]]))
    everything = tokenizer.encode_observation_values(readings)  # no discrete column: all binned
    assert np.array_equal(everything.reshape(-1), tokenizer.encode_continuous(readings))
    with pytest.raises(ValueError, match=r"observation values \[1\] are discrete \(integers\); got fractional"):
        Tokenizer(SMALL).encode_observation_values(readings + 0.25, (1,))


# ---------------------------------------------------------------- continuous and discrete values, more cases


def test_integer_readings_tokenize_like_the_same_floats():
    """Integer arrays are real numbers too: a reading of 3 is binned exactly as 3.0."""
    as_ints = np.array([-300, -3, 0, 2, 256], dtype=np.int64)
    assert np.array_equal(tokenize_continuous(as_ints, PAPER.vocab), tokenize_continuous(as_ints * 1.0, PAPER.vocab))
    np.testing.assert_array_equal(mu_law_encode(np.array([0, 256])), [0.0, mu_law_encode(256.0)])


def test_a_non_finite_value_is_reported_by_value_and_flat_index():
    readings = np.array([[0.5, 1.0, 2.0], [3.0, -np.inf, np.nan]])  # flat indices 4 and 5 are bad
    with pytest.raises(ValueError, match=r"values must be finite; found -inf at flat index 4 \(2 non-finite values\)"):
        tokenize_continuous(readings, PAPER.vocab)


def test_continuous_bins_follow_the_vocabulary_bin_count():
    """With 8 bins on [-1, 1] each bin is 0.25 wide; ids start at the text size."""
    vocab = VocabLayout(text_size=20, num_bins=8)
    actions = [-1.0, -0.3, 0.0, 0.99, 1.0, 7.0]  # bins 0, floor(0.7 / 0.25) = 2, 4, 7, 7 (right edge), 7 (clipped)
    ids = tokenize_continuous(actions, vocab, compand=False)
    assert ids.tolist() == [20, 22, 24, 27, 27, 27]
    assert detokenize_continuous(ids, vocab, compand=False).tolist() == [-0.875, -0.375, 0.125, 0.875, 0.875, 0.875]


def test_all_out_of_range_ids_are_counted_and_the_first_is_named():
    with pytest.raises(ValueError, match=r"found 33024 \(2 ids outside\)"):
        detokenize_continuous([32000, 33024, 5], PAPER.vocab)


def test_boolean_discrete_values_become_integer_ids():
    ids = tokenize_discrete(np.array([[True, False], [False, True]]), PAPER.vocab)
    assert ids.dtype == np.int64 and ids.tolist() == [1, 0, 0, 1]


def test_boolean_observation_columns_are_discrete_ids():
    """Buttons held as booleans: every column discrete, so nothing goes through the continuous bins."""
    pressed = np.array([[True, False, True], [False, False, True]])
    ids = Tokenizer(SMALL).encode_observation_values(pressed, (0, 1, 2))
    assert ids.tolist() == [[1, 0, 1], [0, 0, 1]]


def test_huge_values_tokenize_without_numpy_overflow_warnings():
    """Readings and actions near the float limit clip to the end bins silently; mu-law past the
    float range is beyond +-1, also silently."""
    huge = np.finfo(np.float64).max
    tokenizer = Tokenizer(PAPER)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert tokenizer.encode_actions([huge, -huge]).tolist() == [33023, 32000]
        assert tokenizer.encode_continuous([huge, -huge]).tolist() == [33023, 32000]
        beyond = mu_law_encode(np.array([1e307, -1e307]))
    assert beyond[0] > 1 and beyond[1] < -1


# ---------------------------------------------------------------- images, more cases


def test_cut_patches_defaults_to_the_papers_16_pixel_patches():
    image = np.arange(32 * 32 * 3, dtype=np.int64).reshape(32, 32, 3).astype(np.uint8)
    patches = cut_patches(image)
    assert patches.dtype == np.uint8 and patches.shape == (4, 3, 16, 16)
    assert np.array_equal(patches[3], image[16:, 16:].transpose(2, 0, 1))  # bottom-right patch, channels first


def test_other_patch_sizes_cut_pad_and_scale_with_that_size():
    """An 8-pixel patch: a 12x20 image pads to 16x24 (2 x 3 patches), pixels scaled by 1/sqrt(8)."""
    rng = np.random.default_rng(1)
    image = rng.integers(0, 256, size=(12, 20, 3), dtype=np.uint8)
    padded = np.zeros((16, 24, 3), np.float64)
    padded[:12, :20] = image
    patches = image_to_patches(image, patch_size=8)
    assert patches.shape == (6, 3, 8, 8)
    for k in range(6):
        r, c = divmod(k, 3)
        block = padded[8 * r : 8 * (r + 1), 8 * c : 8 * (c + 1)].transpose(2, 0, 1)
        np.testing.assert_allclose(patches[k], (block / 127.5 - 1) / np.sqrt(8), atol=1e-6)
    tokenizer = Tokenizer(GatoConfig.from_preset("cpu-tiny", patch_size=8))
    np.testing.assert_array_equal(tokenizer.encode_image(image), patches)


def test_a_one_pixel_wide_image_is_one_black_padded_patch():
    image = np.full((5, 1, 3), 9, np.uint8)
    patches = cut_patches(image)
    assert patches.shape == (1, 3, 16, 16)
    assert np.all(patches[0, :, :5, :1] == 9) and patches.sum() == 9 * 5 * 3


def test_batched_images_are_padded_only_in_height_and_width():
    rng = np.random.default_rng(2)
    frames = rng.integers(0, 256, size=(2, 20, 20, 3), dtype=np.uint8)
    patches = image_to_patches(frames)
    assert patches.shape == (2, 4, 3, 16, 16)
    for b in range(2):
        np.testing.assert_array_equal(patches[b], image_to_patches(frames[b]))


def test_numpy_and_torch_pixel_normalization_agree_exactly():
    """The tokenizer scales pixels in numpy, the model scales uint8 patches in torch: the same floats."""
    pixels = np.arange(256, dtype=np.uint8)
    for patch_size in (16, 1, 2, 8, 9, 32):  # 16 is the paper's; the others divide by an inexact root
        in_numpy = normalize_pixels(pixels, patch_size)
        in_torch = normalize_pixels(torch.from_numpy(pixels), patch_size)
        assert in_numpy.dtype == np.float32 and in_torch.dtype == torch.float32
        assert np.array_equal(in_numpy, in_torch.numpy()), patch_size


def test_patches_to_image_gives_uint8_pixels_clipped_to_0_255():
    image = np.random.default_rng(3).integers(0, 256, size=(32, 16, 3), dtype=np.uint8)
    restored = patches_to_image(image_to_patches(image), 2, 1)
    assert restored.dtype == np.uint8 and np.array_equal(restored, image)
    # scaled value v is the pixel (4 v + 1) * 127.5: -1 -> -382.5, 0.26 -> 260.1, 1 -> 637.5
    patches = np.zeros((1, 1, 16, 16))
    patches[0, 0, 0, :3] = [-1.0, 0.26, 1.0]
    assert patches_to_image(patches, 1, 1)[0, :3, 0].tolist() == [0, 255, 255]


@pytest.mark.parametrize(
    "shape",
    [(4, 3, 8, 8), (3, 3, 16, 16), (4, 16, 16)],  # wrong patch side, wrong patch count, no channel axis
)
def test_patches_of_the_wrong_shape_are_refused(shape):
    with pytest.raises(ValueError, match=rf"patches must have shape \(4, C, 16, 16\), got {re.escape(str(shape))}"):
        patches_to_image(np.zeros(shape), 2, 2)


def test_non_finite_patches_name_the_patches():
    patches = np.zeros((1, 3, 16, 16))
    patches[0, 1, 2, 3] = np.nan
    with pytest.raises(ValueError, match="patches must be finite"):
        patches_to_image(patches, 1, 1)


# ---------------------------------------------------------------- text, more cases


def test_the_default_shipped_text_model_has_1024_pieces():
    path = shipped_text_model()
    text = TextTokenizer(path)
    assert text.model_file == path and text.vocab_size == 1024


def test_a_missing_text_model_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="absent.model does not exist"):
        TextTokenizer(tmp_path / "absent.model")


def test_text_decoding_accepts_id_zero_and_any_shape_and_refuses_non_integers():
    tokenizer = Tokenizer(SMALL)
    ids = tokenizer.encode_text("Gato plays Atari.")
    assert isinstance(tokenizer.decode_text([0]), str)  # 0 is a text id (SentencePiece's unknown piece)
    assert tokenizer.decode_text(ids.reshape(1, -1)) == "Gato plays Atari."  # flattened row-major
    with pytest.raises(TypeError, match="ids must be an integer array"):
        tokenizer.decode_text([1.5])


def test_empty_text_encodes_to_no_integer_ids():
    ids = Tokenizer(SMALL).encode_text("")
    assert ids.dtype == np.int64 and ids.shape == (0,)


def test_text_pieces_are_the_pieces_of_the_encoded_ids():
    text = Tokenizer(SMALL).text
    pieces = text.pieces("Gato plays Atari.")
    ids = text.encode("Gato plays Atari.")
    assert pieces == [text.processor.id_to_piece(int(i)) for i in ids]
    assert "".join(pieces).replace("\u2581", " ").strip() == "Gato plays Atari."
