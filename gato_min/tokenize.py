"""Tokenization: text, images, discrete and continuous values -> one shared vocabulary.

Gato (Reed et al., 2022, Sec. 2.1) turns every modality into tokens:

* text goes through SentencePiece; its ids are [0, V_text);
* discrete values (e.g. Atari buttons) are flattened row-major and kept as integers in
  [0, 1024), sharing ids with text;
* continuous values (e.g. joint angles) are flattened row-major, mu-law companded to [-1, 1]
  (Sec. 2.1 and App. B), clipped, discretized into 1024 uniform bins and shifted to
  [V_text, V_text + 1024); actions already lie in [-1, 1] and are not companded;
* images are cut into non-overlapping 16x16 patches in raster order, each pixel scaled to
  [-1, 1] and divided by sqrt(16) = 4. Patches are not discretized: they go to the patch
  embedding (chapter 02) as real-valued pixels.

Decision (the paper is silent): an image whose height or width is not a multiple of the patch
size is padded at the bottom and right with black pixels up to the next multiple, so every
pixel keeps its coordinates and appears in exactly one patch.

Every function checks its input and raises an error naming the argument and what was
expected: NaN or inf values, the wrong dtype or rank, out-of-range discrete values or ids,
images with a channel count other than 1 or 3. Nothing is silently mapped to a wrong id.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import sentencepiece as spm
import torch


@dataclass(frozen=True)
class VocabLayout:
    """The id ranges of the shared vocabulary, derived from the text size and the bin count.

    text          [0, text_size)
    discrete      [0, num_bins)                   (shared with text, Sec. 2.1)
    continuous    [text_size, text_size + num_bins)
    separator     text_size + num_bins            ('|' between observation and action)
    padding       text_size + num_bins + 1
    """

    text_size: int
    num_bins: int = 1024

    @property
    def continuous_offset(self) -> int:
        return self.text_size

    @property
    def separator_id(self) -> int:
        return self.text_size + self.num_bins

    @property
    def pad_id(self) -> int:
        return self.separator_id + 1

    @property
    def size(self) -> int:
        """Rows of the embedding table and columns of the output logits."""
        return self.pad_id + 1


# --------------------------------------------------------------------------- input checks


def _as_float_array(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == object or not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise TypeError(f"{name} must hold real numbers (a float or int array), got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.all(np.isfinite(array)):
        bad = np.flatnonzero(~np.isfinite(array))
        raise ValueError(
            f"{name} must be finite; found {array.reshape(-1)[bad[0]]} at flat index {bad[0]} "
            f"({len(bad)} non-finite values)"
        )
    return array


def _as_int_array(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.dtype == bool:
        return array.astype(np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {array.dtype}")
    return array.astype(np.int64)


# --------------------------------------------------------------------------- continuous values


def mu_law_encode(x, mu: float = 100.0, m: float = 256.0) -> np.ndarray:
    """F(x) = sgn(x) log(|x| mu + 1) / log(M mu + 1): maps [-M, M] onto [-1, 1] (App. B)."""
    x = _as_float_array(x, "x")
    with np.errstate(over="ignore"):  # |x| mu beyond float range -> inf -> clipped to the end bin later
        return np.sign(x) * np.log1p(np.abs(x) * mu) / np.log1p(m * mu)


def mu_law_decode(y, mu: float = 100.0, m: float = 256.0) -> np.ndarray:
    """The inverse of `mu_law_encode` on [-1, 1]: x = sgn(y) ((M mu + 1)^|y| - 1) / mu."""
    y = _as_float_array(y, "y")
    return np.sign(y) * np.expm1(np.abs(y) * np.log1p(m * mu)) / mu


def bin_edges(num_bins: int = 1024) -> np.ndarray:
    """The num_bins + 1 edges of the uniform bins that tile [-1, 1]."""
    return np.linspace(-1.0, 1.0, num_bins + 1)


def bin_centers(num_bins: int = 1024) -> np.ndarray:
    """The value each bin decodes to: its midpoint."""
    return -1.0 + (2.0 * np.arange(num_bins) + 1.0) / num_bins


def discretize(y, num_bins: int = 1024) -> np.ndarray:
    """Values in [-1, 1] (clipped first) -> bin indices in [0, num_bins).

    Bin k holds [-1 + 2k/n, -1 + 2(k+1)/n); the right edge +1 belongs to the last bin.
    """
    y = np.clip(_as_float_array(y, "y"), -1.0, 1.0)
    return np.minimum(np.floor((y + 1.0) * 0.5 * num_bins), num_bins - 1).astype(np.int64)


def tokenize_continuous(
    values, vocab: VocabLayout, compand: bool = True, mu: float = 100.0, m: float = 256.0
) -> np.ndarray:
    """Continuous values (any shape) -> flat row-major ids in [text_size, text_size + num_bins).

    `compand=True` for observations (mu-law first); `compand=False` for actions, which the
    environment already bounds to [-1, 1]. Values beyond the range are clipped to the end bins.
    """
    values = _as_float_array(values, "values").reshape(-1)
    # F is monotone with F(+-M) = +-1, so clipping to [-M, M] first equals clipping after F and
    # keeps |x| mu from overflowing for huge readings
    unit = mu_law_encode(np.clip(values, -m, m), mu, m) if compand else values
    return discretize(unit, vocab.num_bins) + vocab.continuous_offset


def detokenize_continuous(
    ids, vocab: VocabLayout, compand: bool = True, mu: float = 100.0, m: float = 256.0
) -> np.ndarray:
    """Ids in the continuous range -> the centre value of each bin (mu-law decoded if `compand`)."""
    ids = _as_int_array(ids, "ids")
    lo, hi = vocab.continuous_offset, vocab.continuous_offset + vocab.num_bins
    outside = (ids < lo) | (ids >= hi)
    if outside.any():
        raise ValueError(
            f"ids must lie in the continuous range [{lo}, {hi}); found {ids[outside].reshape(-1)[0]} "
            f"({int(outside.sum())} ids outside)"
        )
    centers = bin_centers(vocab.num_bins)[ids - lo]
    return mu_law_decode(centers, mu, m) if compand else centers


# --------------------------------------------------------------------------- discrete values


def tokenize_discrete(values, vocab: VocabLayout) -> np.ndarray:
    """Integer values (any shape) in [0, num_bins) -> flat row-major ids, unchanged (Sec. 2.1)."""
    ids = _as_int_array(values, "values").reshape(-1)
    outside = (ids < 0) | (ids >= vocab.num_bins)
    if outside.any():
        raise ValueError(
            f"values must be integers in [0, {vocab.num_bins}); found {ids[outside][0]} "
            f"({int(outside.sum())} values outside)"
        )
    return ids


# --------------------------------------------------------------------------- images


def normalize_pixels(pixels, patch_size: int = 16):
    """uint8 pixels [0, 255] -> [-1, 1] -> divided by sqrt(patch_size) (Sec. 2.1), as float32.

    Takes a numpy array or a torch tensor and returns the same kind (the model normalizes uint8
    patches itself, so batches move 4x fewer bytes).
    """
    scale = float(np.sqrt(patch_size))  # a Python float: both paths divide in float32, bit for bit alike
    if isinstance(pixels, torch.Tensor):
        if pixels.dtype != torch.uint8:
            raise TypeError(f"pixels must be uint8 in [0, 255], got dtype {pixels.dtype}")
        # in place on the one new float tensor: the same three float32 operations, without two
        # temporaries (5x faster on a training batch of Atari patches; bench-pixels)
        return pixels.float().div_(127.5).sub_(1.0).div_(scale)
    pixels = np.asarray(pixels)
    if pixels.dtype != np.uint8:
        raise TypeError(f"image must be uint8 pixels in [0, 255], got dtype {pixels.dtype}")
    return (pixels.astype(np.float32) / np.float32(127.5) - np.float32(1.0)) / np.float32(scale)


def patch_grid(height: int, width: int, patch_size: int = 16) -> tuple[int, int]:
    """Rows and columns of patches for an image of this size (sides padded up to a multiple)."""
    return -(-height // patch_size), -(-width // patch_size)


def cut_patches(image, patch_size: int = 16) -> np.ndarray:
    """Images (..., H, W, C) uint8 with C in {1, 3}, or (H, W) greyscale -> uint8 patches
    (..., rows * cols, C, patch_size, patch_size) in raster order (row by row), not yet scaled.

    Sides that are not multiples of `patch_size` are padded at the bottom and right with black.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"image must be uint8 pixels in [0, 255], got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[..., None]
    if image.ndim < 3:
        raise ValueError(f"image must have shape (..., H, W, C) or (H, W), got shape {image.shape}")
    if image.shape[-1] not in (1, 3):
        raise ValueError(f"image must have 1 or 3 channels in its last axis (H, W, C), got shape {image.shape}")
    *lead, height, width, channels = image.shape
    if height == 0 or width == 0:
        raise ValueError(f"image must have a non-empty height and width, got shape {image.shape}")
    rows, cols = patch_grid(height, width, patch_size)
    if (rows * patch_size, cols * patch_size) != (height, width):  # black padding, bottom and right
        pad = [(0, 0)] * len(lead) + [(0, rows * patch_size - height), (0, cols * patch_size - width), (0, 0)]
        image = np.pad(image, pad)
    pixels = image.reshape(*lead, rows, patch_size, cols, patch_size, channels)
    n = len(lead)
    # (..., rows, p, cols, p, C) -> (..., rows, cols, C, p, p): raster order, channels first
    pixels = pixels.transpose(*range(n), n, n + 2, n + 4, n + 1, n + 3)
    return np.ascontiguousarray(pixels.reshape(*lead, rows * cols, channels, patch_size, patch_size))


def image_to_patches(image, patch_size: int = 16) -> np.ndarray:
    """Images (..., H, W, C) uint8 -> normalized float32 patches (..., rows * cols, C, P, P),
    raster order, bottom/right padded with black (see `cut_patches`)."""
    return normalize_pixels(cut_patches(image, patch_size), patch_size)


def patches_to_image(patches, rows: int, cols: int, patch_size: int = 16) -> np.ndarray:
    """The inverse of `image_to_patches` up to padding: patches -> uint8 image (H', W', C)."""
    patches = _as_float_array(patches, "patches")
    if patches.ndim != 4 or patches.shape[0] != rows * cols or patches.shape[2:] != (patch_size, patch_size):
        raise ValueError(f"patches must have shape ({rows * cols}, C, {patch_size}, {patch_size}), got {patches.shape}")
    channels = patches.shape[1]
    grid = patches.reshape(rows, cols, channels, patch_size, patch_size).transpose(0, 3, 1, 4, 2)
    pixels = (grid.reshape(rows * patch_size, cols * patch_size, channels) * np.sqrt(patch_size) + 1.0) * 127.5
    return np.clip(np.rint(pixels), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- text


class TextTokenizer:
    """SentencePiece text tokenization (Sec. 2.1); ids are [0, vocab_size)."""

    def __init__(self, model_file: str | Path):
        model_file = Path(model_file)
        if not model_file.is_file():
            raise FileNotFoundError(f"SentencePiece model file {model_file} does not exist")
        self.model_file = model_file
        self.processor = spm.SentencePieceProcessor(model_file=str(model_file))
        self.vocab_size = self.processor.get_piece_size()

    def encode(self, text: str) -> np.ndarray:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        return np.asarray(self.processor.encode(text), dtype=np.int64)

    def decode(self, ids) -> str:
        ids = _as_int_array(ids, "ids").reshape(-1)
        outside = (ids < 0) | (ids >= self.vocab_size)
        if outside.any():
            raise ValueError(f"ids must be text ids in [0, {self.vocab_size}); found {ids[outside][0]}")
        return self.processor.decode(ids.tolist())

    def pieces(self, text: str) -> list[str]:
        """The subword pieces of `text`, for display."""
        return self.processor.encode(text, out_type=str)


# --------------------------------------------------------------------------- all of it, from a config

TEXT_DIR = Path(__file__).parent / "assets" / "text"
CORPUS_FILE = TEXT_DIR / "corpus.txt"  # the project's prose: what the shipped model was trained on, and the text task


def shipped_text_model(text_vocab_size: int = 1024) -> Path:
    """The SentencePiece model shipped in the package for this vocabulary size."""
    return TEXT_DIR / f"gato_min_{text_vocab_size}.model"


class Tokenizer:
    """Every tokenization rule of Sec. 2.1 with the sizes of one `GatoConfig`.

    Observations' continuous values are mu-law companded; actions are not (they lie in [-1, 1]).
    The text model is `config.text_model`, else the one shipped for `config.text_vocab_size`; its
    piece count must equal `config.text_vocab_size`, so text ids never reach the continuous range.
    """

    def __init__(self, config):
        self.config = config
        self.vocab: VocabLayout = config.vocab
        self._text: TextTokenizer | None = None

    @property
    def text(self) -> TextTokenizer:
        if self._text is None:
            model = (
                Path(self.config.text_model)
                if self.config.text_model
                else shipped_text_model(self.config.text_vocab_size)
            )
            if not model.is_file():
                raise FileNotFoundError(
                    f"no SentencePiece model for text_vocab_size={self.config.text_vocab_size}: {model} does not "
                    "exist; pass GatoConfig(text_model=...) with a model of that many pieces"
                )
            text = TextTokenizer(model)
            if text.vocab_size != self.config.text_vocab_size:
                raise ValueError(
                    f"SentencePiece model {model} has {text.vocab_size} pieces but "
                    f"config.text_vocab_size is {self.config.text_vocab_size}"
                )
            self._text = text
        return self._text

    def encode_text(self, text: str) -> np.ndarray:
        return self.text.encode(text)

    def decode_text(self, ids) -> str:
        return self.text.decode(ids)

    def encode_discrete(self, values) -> np.ndarray:
        return tokenize_discrete(values, self.vocab)

    def encode_continuous(self, values) -> np.ndarray:
        """Continuous observation values: mu-law companded, then binned."""
        return tokenize_continuous(values, self.vocab, compand=True, mu=self.config.mu, m=self.config.mu_law_m)

    def encode_observation_values(self, readings, discrete_columns=()) -> np.ndarray:
        """(N, D) observation values -> (N, D) ids: the `discrete_columns` as integers (Sec. 2.1:
        not shifted), the rest companded and binned."""
        readings = np.asarray(readings)
        count, width = readings.shape
        discrete = list(discrete_columns)
        continuous = np.setdiff1d(np.arange(width), discrete)
        ids = np.zeros((count, width), np.int32)
        if len(continuous):
            ids[:, continuous] = self.encode_continuous(readings[:, continuous]).reshape(count, -1)
        if discrete:
            integers = readings[:, discrete]
            if integers.dtype.kind == "f" and not np.array_equal(integers, np.round(integers)):
                raise ValueError(f"observation values {discrete} are discrete (integers); got fractional values")
            ids[:, discrete] = self.encode_discrete(integers.astype(np.int64)).reshape(count, -1)
        return ids

    def decode_continuous(self, ids) -> np.ndarray:
        return detokenize_continuous(ids, self.vocab, compand=True, mu=self.config.mu, m=self.config.mu_law_m)

    def encode_actions(self, actions) -> np.ndarray:
        """Continuous actions in [-1, 1]: binned without companding (values outside are clipped)."""
        return tokenize_continuous(actions, self.vocab, compand=False)

    def decode_actions(self, ids) -> np.ndarray:
        return detokenize_continuous(ids, self.vocab, compand=False)

    def encode_image(self, image) -> np.ndarray:
        """uint8 image(s) (..., H, W, C) -> normalized patches (..., N, C, P, P), raster order."""
        return image_to_patches(image, self.config.patch_size)
