"""scikit-learn's 8x8 handwritten digits: binarized, scaled to [0, 1], or 8-bit.

``digits``, ``digits_continuous``, ``digits_uint8``
    scikit-learn's 8x8 handwritten digits (1,797 images of 64 pixels with values 0..16, shipped
    inside scikit-learn, never downloaded), split by a fixed permutation into
    1,197 train / 300 valid / 300 test, either binarized with a fixed seed (pixel ``= u < value / 16``
    with uniforms from ``np.random.default_rng``), scaled to [0, 1], or quantized to 8 bits.
"""

from __future__ import annotations

import functools

import numpy as np
import torch

from .errors import SPLITS, DataError, _check_split


_DIGITS_TOTAL = 1797
_DIGITS_SPLIT_SIZES = {"train": 1197, "valid": 300, "test": 300}
_DIGITS_MAX_VALUE = 16.0


@functools.lru_cache(maxsize=4)
def _digits_arrays(seed: int) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """scikit-learn's digits with their fixed-seed binarization and split.

    :returns: ``(pixels, bits, rows)``: float64 (1797, 64) values 0..16, bool (1797, 64)
        binarized pixels, and ``{split: int array of row indices}`` (1197/300/300 rows). The
        arrays are read-only because they are shared between calls.
    """
    from sklearn.datasets import load_digits as sklearn_load_digits

    pixels = sklearn_load_digits().data
    if pixels.shape != (_DIGITS_TOTAL, 64):
        raise DataError(f"scikit-learn digits have shape {pixels.shape}; expected ({_DIGITS_TOTAL}, 64)")
    # Two independent streams derived from one seed, so that which image lands in which split
    # is statistically unrelated to the noise of its binarization.
    binarize_seed, split_seed = np.random.SeedSequence(seed).spawn(2)
    bits = np.random.default_rng(binarize_seed).random(pixels.shape) < pixels / _DIGITS_MAX_VALUE
    permutation = np.random.default_rng(split_seed).permutation(_DIGITS_TOTAL)
    rows, start = {}, 0
    for split in SPLITS:
        rows[split] = permutation[start : start + _DIGITS_SPLIT_SIZES[split]]
        start += _DIGITS_SPLIT_SIZES[split]
    for array in (pixels, bits, *rows.values()):
        array.setflags(write=False)
    return pixels, bits, rows


def _digits_split(split: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(pixels, bits)`` rows of one digits split: float64 (N, 64) values 0..16 and bool (N, 64)."""
    _check_split(split)
    pixels, bits, rows = _digits_arrays(seed)
    # Fancy indexing copies, so callers get writable arrays independent of the shared cache.
    return pixels[rows[split]], bits[rows[split]]


def load_digits(split: str, seed: int = 0) -> torch.Tensor:
    """One split of scikit-learn's 8x8 digits, statically binarized.

    Each pixel is a Bernoulli(value / 16) draw made once with ``np.random.default_rng``; the
    1,797 images are split by a fixed permutation from an independent stream of the same seed.

    :param split: ``"train"`` (1,197 rows), ``"valid"`` (300) or ``"test"`` (300).
    :param seed: seed of the binarization and of the split.
    :returns: float32 tensor of shape (N, 64) with values 0. and 1.
    """
    return torch.from_numpy(_digits_split(split, seed)[1].astype(np.float32))


def load_digits_continuous(split: str, seed: int = 0) -> torch.Tensor:
    """One split of scikit-learn's 8x8 digits scaled to [0, 1] (value / 16), split as in :func:`load_digits`.

    :returns: float32 tensor of shape (N, 64) with values in [0, 1].
    """
    return torch.from_numpy((_digits_split(split, seed)[0] / _DIGITS_MAX_VALUE).astype(np.float32))


def load_digits_uint8(split: str, seed: int = 0) -> torch.Tensor:
    """One split of scikit-learn's 8x8 digits as 8-bit pixels, split as in :func:`load_digits`.

    :returns: uint8 tensor of shape (N, 64): ``round(value * 255 / 16)`` (round half to even),
        so 0 maps to 0 and 16 to 255.
    """
    pixels = _digits_split(split, seed)[0]
    return torch.from_numpy(np.rint(pixels * 255.0 / _DIGITS_MAX_VALUE).astype(np.uint8))
