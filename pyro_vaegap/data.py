"""Data sets for measuring VAE inference gaps.

Every loader returns one split (``"train"``, ``"valid"`` or ``"test"``) as a 2-D tensor with one
flattened image per row. Every problem with missing or malformed data raises :class:`DataError`,
whose message names the offending value and says what is allowed or where the loader looked.

Sources
-------
``binarized_mnist``
    The standard statically binarized MNIST (Larochelle & Murray 2011), the fixed binarization
    used by Burda et al. 2016 and Cremer et al. 2018: 50,000 train / 10,000 valid / 10,000 test
    images of 784 pixels. It is looked for, directory by directory in the search order below,

    1. as ``binarized_mnist.npz``: keys ``train``/``valid``/``test``, each a uint8 array of shape
       (N, 98) holding ``np.packbits`` of the 784 0/1 pixels of one image per row;
    2. as the classic text files ``binarized_mnist_{train,valid,test}.amat`` (one image per line,
       784 space-separated 0/1 integers).

    Failing both, ``download=True`` (``--download`` of ``vaegap train``, ``gaps`` and ``bdmc``)
    downloads MNIST with torchvision and binarizes it once with a
    fixed seed (see below). Note that this is *not* the Larochelle & Murray binarization, so its
    likelihoods are not comparable to published numbers; the result is cached as
    ``binarized_mnist.npz`` in the first writable search directory.
``fashion_mnist``
    Fashion-MNIST read through torchvision (raw files under ``<dir>/FashionMNIST/raw``, downloaded
    there with ``download=True``), binarized once with the same fixed seed and split like MNIST
    into 50,000 / 10,000 / 10,000. Cached as ``fashion_mnist_binarized.npz`` (same packed format).
``digits``, ``digits_continuous``, ``digits_uint8``
    scikit-learn's 8x8 handwritten digits (1,797 images of 64 pixels with values 0..16, shipped
    inside scikit-learn, never downloaded), split by a fixed permutation into
    1,197 train / 300 valid / 300 test, either binarized with a fixed seed, scaled to [0, 1], or
    quantized to 8 bits.
``8gaussians``, ``checkerboard``, ``2spirals``
    Generated 2-D toy densities of R. Yu's VAE tutorial (2020), never downloaded: fixed-seed samples
    of 50,000 train / 5,000 valid / 5,000 test points of shape (N, 2), with exact log-densities and
    ground-truth differential entropies (see :func:`sample_toy`, :data:`TOY_ENTROPY_BITS`).
``cifar10``
    CIFAR-10 as uint8 (N, 3072) pixels read with torchvision (45,000 / 5,000 / 10,000), for bits/dim.

Search order
------------
:func:`candidate_dirs`: the explicit ``data_dir`` argument, then the directory named by the
environment variable ``PYRO_VAEGAP_DATA``, then ``~/.cache/pyro_vaegap``. Within each directory a
ready-made file beats a cache of our own binarization, and an earlier directory beats a later one,
so an explicitly passed directory always wins over a download cache.

Fixed-seed static binarization
------------------------------
A VAE with a Bernoulli likelihood needs binary data. Binarizing afresh at every epoch ("dynamic"
binarization) changes the data set and makes log-likelihoods incomparable, so the grey-level
images are binarized exactly once:

* torchvision MNIST / Fashion-MNIST: the 60,000 training images followed by the 10,000 test
  images, flattened row-major, are compared with ``torch.rand`` uniforms from a CPU
  ``torch.Generator`` seeded with 0; pixel ``= u < value / 255`` (a Bernoulli draw with
  probability value/255). The training images then split into train (the first 50,000) and
  valid (the last 10,000).
* digits: pixel ``= u < value / 16`` with uniforms from ``np.random.default_rng``.

Evaluation subsets must be seeded random subsets (:func:`seeded_subset`), never "the first N
rows": the MNIST test split is ordered by class.
"""

from __future__ import annotations

import functools
import math
import os
import pathlib
import warnings
import zipfile
import zlib

import numpy as np
import torch

from .utils import atomic_write

__all__ = [
    "DATA_ENV",
    "DataError",
    "BINARY_DATASETS",
    "DATASETS",
    "SPLITS",
    "candidate_dirs",
    "load_binarized_mnist",
    "load_fashion_mnist",
    "load_digits",
    "load_digits_continuous",
    "load_digits_uint8",
    "TOY_DATASETS",
    "TOY_ENTROPY_BITS",
    "TOY_ENTROPY_ERROR_BITS",
    "sample_toy",
    "toy_log_density",
    "toy_entropy_numerical",
    "load_toy",
    "load_cifar10",
    "load_dataset",
    "validate_binary",
    "validate_continuous",
    "seeded_subset",
]

DATA_ENV = "PYRO_VAEGAP_DATA"

BINARY_DATASETS = ("binarized_mnist", "fashion_mnist", "digits")
#: Every name :func:`load_dataset` accepts: the binary data sets, the non-binary digits variants and
#: the generated 2-D toy densities (:data:`TOY_DATASETS`, defined with their samplers below).
DATASETS = BINARY_DATASETS + ("digits_continuous", "digits_uint8", "8gaussians", "checkerboard", "2spirals",
                              "cifar10")
SPLITS = ("train", "valid", "test")

MNIST_NPZ = "binarized_mnist.npz"
FASHION_NPZ = "fashion_mnist_binarized.npz"

_IMAGE_PIXELS = 28 * 28  # 784; a multiple of 8, so packbits needs no padding
_PACKED_BYTES = _IMAGE_PIXELS // 8  # 98
_BINARIZATION_SEED = 0

_DIGITS_TOTAL = 1797
_DIGITS_SPLIT_SIZES = {"train": 1197, "valid": 300, "test": 300}
_DIGITS_MAX_VALUE = 16.0


class DataError(ValueError):
    """Missing or malformed data; the message names the offending value and how to fix it."""


# --------------------------------------------------------------------------------------------
# Where to look
# --------------------------------------------------------------------------------------------


def candidate_dirs(data_dir=None) -> list[pathlib.Path]:
    """Directories searched for data files, in priority order.

    :param data_dir: an explicit directory (str or path); searched first when given.
    :returns: ``[data_dir, $PYRO_VAEGAP_DATA, ~/.cache/pyro_vaegap]`` with absent entries
        (no argument, unset or empty variable) and duplicates left out. The directories need
        not exist.
    """
    dirs = []
    if data_dir is not None and str(data_dir) != "":
        dirs.append(pathlib.Path(data_dir).expanduser())
    env_dir = os.environ.get(DATA_ENV, "")
    if env_dir:
        dirs.append(pathlib.Path(env_dir).expanduser())
    dirs.append(pathlib.Path.home() / ".cache" / "pyro_vaegap")
    unique = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def _first_writable_dir(dirs: list[pathlib.Path]) -> pathlib.Path:
    """The first of ``dirs`` that exists (creating it if needed) and is writable."""
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK):
            return d
    raise DataError(f"none of the data directories is writable: {_format_dirs(dirs)}; pass --data-dir (data_dir=) "
                    "naming a folder you may write to")


def _format_dirs(dirs: list[pathlib.Path]) -> str:
    """The directories on one line (messages are one line), flagging those that do not exist."""
    return ", ".join(f"{d}" + ("" if d.is_dir() else " (does not exist)") for d in dirs)


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; allowed splits are {', '.join(SPLITS)}")


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _check_2d_float(x, name: str) -> torch.Tensor:
    """Shared checks: ``x`` is a non-empty 2-D floating-point tensor with finite entries."""
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name}: expected a torch.Tensor, got {type(x).__name__}")
    if x.dim() != 2:
        raise DataError(
            f"{name}: expected a 2-D tensor (N, D) with one flattened image per row, "
            f"got shape {tuple(x.shape)}"
        )
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise DataError(f"{name}: expected a non-empty tensor, got shape {tuple(x.shape)}")
    if not torch.is_floating_point(x):
        raise DataError(f"{name}: expected a floating-point tensor, got dtype {x.dtype}")
    _raise_on_entries(~torch.isfinite(x), x, name, "not finite", "a likelihood needs finite values")
    return x


def _raise_on_entries(bad: torch.Tensor, x: torch.Tensor, name: str, what: str, why: str) -> None:
    """Raise a DataError counting the True entries of the (N, D) mask ``bad`` and locating the
    first (row-major) one, so that the user can find it in their data.

    ``what`` says what is wrong with an entry ("not finite"), ``why`` why that matters.
    """
    count = int(bad.sum())
    if count == 0:
        return
    row, col = (int(i) for i in bad.nonzero()[0])
    raise DataError(
        f"{name}: {count} {'entry is' if count == 1 else 'entries are'} {what} "
        f"(first at row {row}, column {col}, value {float(x[row, col]):g}); {why}"
    )


def validate_binary(x, name: str = "data") -> torch.Tensor:
    """Check data for a Bernoulli likelihood.

    :param x: float tensor of shape (N, D).
    :param name: how the data is named in error messages.
    :returns: ``x`` (its floating dtype kept, so float64 validation runs stay float64), contiguous.
    :raises DataError: if ``x`` is not a non-empty 2-D floating-point tensor, has NaN/inf
        entries, or has entries other than exactly 0 or 1 (the message gives their count and
        the position and value of the first).
    """
    x = _check_2d_float(x, name)
    _raise_on_entries(
        (x != 0) & (x != 1), x, name, "not 0 or 1", "a Bernoulli likelihood needs binary data"
    )
    return x.contiguous()


def validate_continuous(x, name: str = "data") -> torch.Tensor:
    """Check data for a continuous likelihood.

    :param x: float tensor of shape (N, D).
    :param name: how the data is named in error messages.
    :returns: ``x`` (its floating dtype kept, so float64 validation runs stay float64), contiguous.
    :raises DataError: if ``x`` is not a non-empty 2-D floating-point tensor or has NaN/inf
        entries.
    """
    return _check_2d_float(x, name).contiguous()


def seeded_subset(n_total: int, n: int, seed: int) -> torch.Tensor:
    """A reproducible random subset of row indices, for evaluating on part of a split.

    Evaluation subsets must be seeded random subsets, never "the first N rows": the binarized
    MNIST test split is sorted by class, so its first rows are all zeros.

    :param n_total: number of rows to choose from.
    :param n: subset size, ``1 <= n <= n_total``.
    :param seed: seed of the ``torch.Generator`` driving ``torch.randperm``.
    :returns: int64 tensor of shape (n,): distinct indices in ``[0, n_total)``, sorted ascending
        (so that indexing keeps the data's original order).
    :raises DataError: if ``n`` is out of range.
    """
    if not 1 <= n <= n_total:
        raise DataError(f"subset size n={n} is out of range; it must be between 1 and n_total={n_total}")
    generator = torch.Generator().manual_seed(seed)
    return torch.randperm(n_total, generator=generator)[:n].sort().values


# --------------------------------------------------------------------------------------------
# Packed .npz files and .amat text files
# --------------------------------------------------------------------------------------------


def _read_packed_npz(path: pathlib.Path, split: str) -> torch.Tensor:
    """Read one split of a packbits npz file as a float32 (N, 784) tensor of 0./1.

    A file that cannot be read as an archive of plain arrays (truncated, random bytes, pickled objects)
    is reported as damaged, naming the file: never numpy's own ``allow_pickle`` hint, which misleads."""
    damaged = (f"{path} is damaged or not an .npz archive (truncated, overwritten or another format); replace it "
               f"with a good copy (keys {', '.join(SPLITS)}, each np.packbits of {_IMAGE_PIXELS} 0/1 pixels per row)")
    try:
        archive = np.load(path, allow_pickle=False)
    except (ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
        raise DataError(f"{damaged} [{type(error).__name__}]") from error
    except OSError as error:
        raise DataError(f"{path}: cannot be read ({error.strerror or error})") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: holds a single array, not an .npz archive with keys {', '.join(SPLITS)}")
    with archive:
        if split not in archive.files:
            raise DataError(
                f"{path}: no array {split!r}; the file has {sorted(archive.files)}, "
                f"expected keys {', '.join(SPLITS)}"
            )
        try:
            packed = archive[split]
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as error:
            raise DataError(f"{damaged} [array {split!r}: {type(error).__name__}]") from error
    if packed.dtype != np.uint8 or packed.ndim != 2 or packed.shape[1] != _PACKED_BYTES:
        raise DataError(
            f"{path}: array {split!r} has shape {packed.shape} and dtype {packed.dtype}; expected "
            f"uint8 of shape (N, {_PACKED_BYTES}) holding np.packbits of {_IMAGE_PIXELS} 0/1 pixels per row"
        )
    if packed.shape[0] == 0:
        raise DataError(f"{path}: array {split!r} has no rows")
    # Unpacked bits are 0/1 by construction, so no further value check is needed.
    return torch.from_numpy(np.unpackbits(packed, axis=1)[:, :_IMAGE_PIXELS].astype(np.float32))


def _write_packed_npz(path: pathlib.Path, splits: dict[str, np.ndarray]) -> None:
    """Write ``{split: uint8 (N, 784) 0/1 array}`` as a packbits npz, atomically.

    The file is written to a temporary file in the same directory and then renamed over
    ``path``, so a crash or a concurrent reader never sees a half-written cache.
    """
    packed = {split: np.packbits(bits, axis=1) for split, bits in splits.items()}
    atomic_write(path, lambda tmp: np.savez_compressed(tmp, **packed))


def _read_amat(path: pathlib.Path) -> torch.Tensor:
    """Read a ``binarized_mnist_*.amat`` text file as a validated float32 (N, 784) tensor."""
    try:
        values = np.loadtxt(path, dtype=np.float32, ndmin=2)
    except (OSError, ValueError) as error:
        raise DataError(
            f"{path}: cannot be parsed as lines of {_IMAGE_PIXELS} space-separated 0/1 numbers ({error})"
        ) from error
    if values.shape[1] != _IMAGE_PIXELS:
        raise DataError(f"{path}: has shape {values.shape}; expected (N, {_IMAGE_PIXELS})")
    return validate_binary(torch.from_numpy(values), name=str(path))


# --------------------------------------------------------------------------------------------
# torchvision MNIST / Fashion-MNIST with fixed-seed static binarization
# --------------------------------------------------------------------------------------------


def _torchvision_images(class_name: str, root: pathlib.Path, train: bool, download: bool) -> torch.Tensor:
    """Grey-level images of ``torchvision.datasets.<class_name>`` as uint8 (N, 28, 28).

    The class is looked up at call time (not imported at module level) so that importing this
    module stays cheap and tests can replace the class.
    """
    import torchvision.datasets

    dataset_class = getattr(torchvision.datasets, class_name)
    try:
        images = dataset_class(root=str(root), train=train, download=download).data
    except (AssertionError, TypeError, ValueError) as error:
        # torchvision's idx reader asserts on malformed headers and raises on wrong dtype/ndim.
        raise DataError(f"{class_name} raw files under {root} are malformed ({error!r})") from error
    images = torch.as_tensor(images)
    if images.dtype != torch.uint8 or images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        raise DataError(
            f"{class_name} under {root}: images have shape {tuple(images.shape)} and dtype "
            f"{images.dtype}; expected uint8 (N, 28, 28)"
        )
    return images


def _binarize_torchvision(class_name: str, root: pathlib.Path, download: bool) -> dict[str, np.ndarray]:
    """Statically binarize a torchvision MNIST-like data set and split it.

    :returns: ``{split: uint8 array (N, 784) of 0/1}``; for the real data sets train has 50,000
        rows, valid and test 10,000 each.
    :raises RuntimeError: from torchvision when the raw files are missing and ``download`` is False.
    """
    train = _torchvision_images(class_name, root, train=True, download=download)
    test = _torchvision_images(class_name, root, train=False, download=False)
    probs = torch.cat([train, test]).reshape(-1, _IMAGE_PIXELS).to(torch.float32) / 255.0
    # Comparing explicit uniforms with the probabilities (rather than calling torch.bernoulli)
    # pins the binarization down exactly: it depends only on torch.rand's CPU stream for seed 0.
    generator = torch.Generator().manual_seed(_BINARIZATION_SEED)
    bits = (torch.rand(probs.shape, generator=generator) < probs).to(torch.uint8).numpy()
    n_train_all = len(train)
    # The last sixth of the training set is the validation split: the last 10,000 of MNIST's
    # 60,000; stated as a fraction so that small stand-in data sets split the same way.
    n_train = n_train_all - n_train_all // 6
    return {
        "train": bits[:n_train],
        "valid": bits[n_train:n_train_all],
        "test": bits[n_train_all:],
    }


def _cache(path: pathlib.Path, splits: dict[str, np.ndarray]) -> None:
    """Write the binarized splits to ``path``; a failure only costs redoing the work next time."""
    try:
        _write_packed_npz(path, splits)
    except OSError as error:
        warnings.warn(f"could not cache binarized data at {path}: {error}", stacklevel=3)


def _download_and_binarize(
    class_name: str, cache_name: str, dirs: list[pathlib.Path], split: str
) -> torch.Tensor:
    """Download with torchvision into the first writable directory, binarize, cache, return ``split``."""
    root = _first_writable_dir(dirs)
    try:
        splits = _binarize_torchvision(class_name, root, download=True)
    except (RuntimeError, OSError) as error:
        raise DataError(f"downloading {class_name} with torchvision into {root} failed: {error}") from error
    _cache(root / cache_name, splits)
    return torch.from_numpy(splits[split].astype(np.float32))


def load_binarized_mnist(split: str, data_dir=None, download: bool = False) -> torch.Tensor:
    """One split of statically binarized MNIST.

    Each directory of :func:`candidate_dirs` is searched in turn for ``binarized_mnist.npz``,
    then for ``binarized_mnist_<split>.amat``. If nothing is found and ``download`` is True,
    MNIST is downloaded with torchvision into the first writable directory, binarized with the
    fixed seed (see the module docstring) and cached there as ``binarized_mnist.npz``.

    :param split: ``"train"`` (50,000 rows), ``"valid"`` (10,000) or ``"test"`` (10,000).
    :param data_dir: directory searched first.
    :param download: allow downloading MNIST when no file is found.
    :returns: float32 tensor of shape (N, 784) with values 0. and 1.
    :raises DataError: on an unknown split, a malformed file, a failed download, or when no file
        is found and ``download`` is False (the message lists the directories searched).
    """
    _check_split(split)
    dirs = candidate_dirs(data_dir)
    for d in dirs:
        if (d / MNIST_NPZ).is_file():
            return _read_packed_npz(d / MNIST_NPZ, split)
        amat = d / f"binarized_mnist_{split}.amat"
        if amat.is_file():
            return _read_amat(amat)
    if download:
        return _download_and_binarize("MNIST", MNIST_NPZ, dirs, split)
    raise DataError(
        f"binarized MNIST not found: looked for {MNIST_NPZ} and binarized_mnist_{split}.amat in "
        f"{_format_dirs(dirs)}. Fix it in one of three ways: (1) put {MNIST_NPZ} (keys train/valid/test, "
        f"np.packbits rows) in one of those directories; (2) set the environment variable {DATA_ENV} "
        f"(or pass --data-dir, data_dir=) to the directory that holds it; (3) pass --download "
        f"(download=True) to download MNIST with torchvision and binarize it with a fixed seed (not the "
        f"standard Larochelle & Murray binarization, so not comparable to published numbers)."
    )


def load_fashion_mnist(split: str, data_dir=None, download: bool = False) -> torch.Tensor:
    """One split of statically binarized Fashion-MNIST.

    Each directory of :func:`candidate_dirs` is searched in turn for the cache
    ``fashion_mnist_binarized.npz``, then for torchvision's raw files (``FashionMNIST/raw``),
    which are binarized with the fixed seed (see the module docstring) and cached in the same
    directory. If nothing is found and ``download`` is True, torchvision downloads the raw files
    into the first writable directory.

    :param split: ``"train"`` (50,000 rows), ``"valid"`` (10,000) or ``"test"`` (10,000).
    :param data_dir: directory searched first.
    :param download: allow downloading Fashion-MNIST when no file is found.
    :returns: float32 tensor of shape (N, 784) with values 0. and 1.
    :raises DataError: on an unknown split, malformed files, a failed download, or when nothing
        is found and ``download`` is False (the message lists the directories searched).
    """
    _check_split(split)
    dirs = candidate_dirs(data_dir)
    for d in dirs:
        if (d / FASHION_NPZ).is_file():
            return _read_packed_npz(d / FASHION_NPZ, split)
        try:
            splits = _binarize_torchvision("FashionMNIST", d, download=False)
        except RuntimeError:
            continue  # torchvision's "Dataset not found": no raw files in this directory
        _cache(d / FASHION_NPZ, splits)
        return torch.from_numpy(splits[split].astype(np.float32))
    if download:
        return _download_and_binarize("FashionMNIST", FASHION_NPZ, dirs, split)
    raise DataError(
        f"Fashion-MNIST not found: looked for {FASHION_NPZ} and torchvision's raw files "
        f"FashionMNIST/raw/*-ubyte in {_format_dirs(dirs)}. Fix it in one of three ways: (1) put "
        f"{FASHION_NPZ} or the FashionMNIST/raw folder in one of those directories; (2) set the environment "
        f"variable {DATA_ENV} (or pass --data-dir, data_dir=) to the directory that holds it; (3) pass "
        f"--download (download=True) to download it with torchvision."
    )


# --------------------------------------------------------------------------------------------
# scikit-learn digits
# --------------------------------------------------------------------------------------------


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


# --------------------------------------------------------------------------------------------
# Dispatch
# --------------------------------------------------------------------------------------------


def load_dataset(name: str, split: str, data_dir=None, download: bool = False) -> torch.Tensor:
    """Load one split of the data set called ``name``.

    :param name: one of :data:`DATASETS`: ``binarized_mnist``, ``fashion_mnist``, ``digits``,
        ``digits_continuous``, ``digits_uint8``, or a toy set ``8gaussians``, ``checkerboard``,
        ``2spirals`` (generated; ignore ``data_dir`` and ``download``), or ``cifar10`` (uint8,
        through torchvision).
    :param split: one of :data:`SPLITS`.
    :param data_dir: directory searched first (MNIST and Fashion-MNIST; digits ship with
        scikit-learn and ignore it, as they ignore ``download``).
    :param download: allow downloading (MNIST and Fashion-MNIST).
    :returns: (N, D) tensor as returned by the matching ``load_*`` function.
    :raises DataError: on an unknown name or split, or as the matching loader does.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; allowed datasets are {', '.join(DATASETS)}")
    _check_split(split)
    if name == "binarized_mnist":
        return load_binarized_mnist(split, data_dir=data_dir, download=download)
    if name == "fashion_mnist":
        return load_fashion_mnist(split, data_dir=data_dir, download=download)
    if name in TOY_DATASETS:
        return load_toy(name, split)
    if name == "cifar10":
        return load_cifar10(split, data_dir=data_dir, download=download)
    digits_loaders = {
        "digits": load_digits,
        "digits_continuous": load_digits_continuous,
        "digits_uint8": load_digits_uint8,
    }
    return digits_loaders[name](split)


# --------------------------------------------------------------------------------------------
# 2-D toy densities (R. Yu, "A Tutorial on VAEs", 2020, §3)
# --------------------------------------------------------------------------------------------
#
# Three generated data sets in the plane, each with a sampler, its exact log-density (used for the
# ground-truth density maps) and its differential entropy H = -E[log2 p(x)] in bits. Because the
# data are continuous, H is a *differential* entropy: it depends on the scale of the data (scaling
# the plane by a changes H by 2 log2 a bits), which is why the tutorial shrinks every set by 1/8 so
# that H is negative and comparable across sets. A model's NLL in bits is -log2 of a density, so it
# is bounded below by H (Gibbs' inequality), not by 0.

#: Every generated toy data set; each is a (N, 2) float32 tensor.
TOY_DATASETS = ("8gaussians", "checkerboard", "2spirals")
#: Split sizes of the toy data sets. Each split is an independent fixed-seed sample (seed of the
#: split = position of (dataset, split) in a :class:`numpy.random.SeedSequence` spawn), so the
#: held-out splits are fresh draws from the same density, not a partition of one sample.
TOY_SPLIT_SIZES = {"train": 50_000, "valid": 5_000, "test": 5_000}
_TOY_SEED = 20200416

#: The tutorial's overall scale factor of every toy set.
TOY_SCALE = 1.0 / 8.0

# 8 Gaussians: centres at radius 4 and angles k·45°, std 0.5, then x / sqrt(2) / 8.
_G8_SCALE = TOY_SCALE / math.sqrt(2.0)
G8_RADIUS = 4.0 * _G8_SCALE   #: radius of the centres after scaling, 1/(2 sqrt 2) ≈ 0.354
G8_STD = 0.5 * _G8_SCALE      #: per-coordinate std of each component after scaling ≈ 0.0442

# 2 spirals: arm 1 is c(t) = t (-cos t, sin t) / 3 with t = 3π sqrt(u), u ~ U(0, 1) (so the arc
# makes 1.5 turns and points are spread evenly in t·dt, i.e. roughly evenly along the arc); arm 2
# is -c(t); each arm has probability 1/2; isotropic Gaussian noise of std 0.1; then everything is
# scaled by 1/8. t = 3π sqrt(u) means t has density 2t / (3π)² on [0, 3π].
SPIRAL_TURN = 3.0 * math.pi
SPIRAL_STD = 0.1 * TOY_SCALE  #: noise std after scaling, 0.0125

#: Ground-truth differential entropies in bits and their absolute error bounds (or standard errors).
#:
#: * ``checkerboard``: exact. The density is uniform on 8 cells of side 1/4, area 1/2, so p = 2 on
#:   the support and H = -log2 2 = -1.
#: * ``8gaussians``: -∫ p log2 p by the trapezoid rule on a 2001² grid over [-0.65, 0.65]² (the
#:   density is smooth and below 1e-100 outside it, so the trapezoid rule converges geometrically).
#:   :func:`toy_entropy_numerical` recomputes it: -1.914896; the 1001² grid agrees to 4e-13, so the
#:   stated error 1e-6 only covers rounding of the constant.
#: * ``2spirals``: Monte Carlo -mean(log2 p(x_i)) over 200,000 exact samples (seed 1), with p(x)
#:   from :func:`toy_log_density` with 8,000 quadrature nodes in t (step along the curve < σ/25,
#:   so the quadrature error is negligible beside the Monte Carlo error). The stated error is the
#:   Monte Carlo standard error std(log2 p)/sqrt(200,000) = 0.0023 bits.
#:
#: The tutorial reports -1.92, -1 and -2.34 bits.
TOY_ENTROPY_BITS = {"8gaussians": -1.914896, "checkerboard": -1.0, "2spirals": -2.3372}
TOY_ENTROPY_ERROR_BITS = {"8gaussians": 1e-6, "checkerboard": 0.0, "2spirals": 0.0023}

_LOG_2PI = math.log(2.0 * math.pi)


def _check_toy_name(name: str) -> None:
    if name not in TOY_DATASETS:
        raise DataError(f"unknown toy dataset {name!r}; allowed toy datasets are {', '.join(TOY_DATASETS)}")


def _g8_centres() -> np.ndarray:
    """The 8 component means after scaling, float64 (8, 2)."""
    angles = np.arange(8) * (np.pi / 4.0)
    return G8_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _spiral_curve(t: np.ndarray) -> np.ndarray:
    """Arm 1 of the spirals after scaling: ``t (-cos t, sin t) / 3 / 8``; shape ``t.shape + (2,)``."""
    return (TOY_SCALE / 3.0) * t[..., None] * np.stack([-np.cos(t), np.sin(t)], axis=-1)


def sample_toy(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` exact samples of a toy density.

    :param name: one of :data:`TOY_DATASETS`.
    :param n: number of samples (>= 1).
    :param rng: the NumPy generator that drives every random choice.
    :returns: float64 array (n, 2).

    * ``8gaussians``: an equal mixture of N(c_k, G8_STD² I), c_k = G8_RADIUS (cos kπ/4, sin kπ/4).
    * ``checkerboard``: uniform on the cells [i, i+1) x [j, j+1) of [-2, 2]² with i + j even,
      scaled by 1/4 (support [-1/2, 1/2]², area 1/2). Drawn as x1 ~ U(-2, 2), then x2 uniform in
      one of the two cells of x1's column picked with probability 1/2.
    * ``2spirals``: ±c(t) + N(0, SPIRAL_STD² I), t = 3π sqrt(u), u ~ U(0, 1), sign ± w.p. 1/2.
    """
    _check_toy_name(name)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"n={n!r} is not allowed: expected an integer >= 1")
    if name == "8gaussians":
        k = rng.integers(0, 8, size=n)
        return _g8_centres()[k] + G8_STD * rng.standard_normal((n, 2))
    if name == "checkerboard":
        x1 = rng.uniform(-2.0, 2.0, size=n)
        column = np.floor(x1)
        # In column i the allowed rows j have j ≡ i (mod 2): j ∈ {-2, 0} for even i, {-1, 1} for odd.
        row = (column % 2) + 2.0 * rng.integers(0, 2, size=n) - 2.0
        x2 = row + rng.uniform(0.0, 1.0, size=n)
        return 0.25 * np.stack([x1, x2], axis=1)
    t = SPIRAL_TURN * np.sqrt(rng.uniform(0.0, 1.0, size=n))
    sign = np.where(rng.integers(0, 2, size=n) == 0, 1.0, -1.0)
    return sign[:, None] * _spiral_curve(t) + SPIRAL_STD * rng.standard_normal((n, 2))


def toy_log_density(name: str, x, quadrature_points: int = 4000, chunk: int = 1000) -> np.ndarray:
    """Exact (or quadrature-exact) log-density in nats of a toy data set at the points ``x``.

    :param x: array-like (N, 2).
    :param quadrature_points: midpoints in t for the spirals' integral
        p(x) = ∫ (2t/(3π)²) ½[N(x; c(t), s²I) + N(x; -c(t), s²I)] dt (ignored otherwise). With
        4,000 nodes the step along the curve is below σ/13, where the midpoint rule of a Gaussian
        bump is exact to far below float precision (only the curve's two ends add an O(h²) term).
    :param chunk: points evaluated at once for the spirals (memory ~ chunk x quadrature_points).
    :returns: float64 array (N,); ``-inf`` outside the checkerboard's support.

    Computed in log space (``logsumexp`` over mixture components / quadrature nodes).
    """
    from scipy.special import logsumexp

    _check_toy_name(name)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise DataError(f"toy densities are defined on the plane: expected points of shape (N, 2), got {x.shape}")
    if name == "8gaussians":
        sq = ((x[:, None, :] - _g8_centres()[None]) ** 2).sum(-1)  # (N, 8)
        log_comp = -0.5 * sq / G8_STD**2 - _LOG_2PI - 2.0 * math.log(G8_STD)
        return logsumexp(log_comp, axis=1) - math.log(8.0)
    if name == "checkerboard":
        cells = np.floor(4.0 * x)
        inside = (np.abs(x) <= 0.5).all(axis=1) & ((cells.sum(axis=1) % 2) == 0)
        return np.where(inside, math.log(2.0), -np.inf)
    # Midpoint rule in t: the integrand is smooth in t (unlike in u = (t/3π)², where dt/du blows up).
    step = SPIRAL_TURN / quadrature_points
    t = (np.arange(quadrature_points) + 0.5) * step
    log_w = np.log(2.0 * t / SPIRAL_TURN**2 * step) + math.log(0.5)  # quadrature weight x arm prob
    curve = _spiral_curve(t)  # (M, 2)
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], chunk):
        xb = x[s:s + chunk, None, :]
        arms = [((xb - sign * curve[None]) ** 2).sum(-1) for sign in (1.0, -1.0)]
        log_comp = np.concatenate([-0.5 * a / SPIRAL_STD**2 for a in arms], axis=1)
        log_comp += np.concatenate([log_w, log_w])[None]
        out[s:s + chunk] = logsumexp(log_comp, axis=1) - _LOG_2PI - 2.0 * math.log(SPIRAL_STD)
    return out


def toy_entropy_numerical(name: str, grid: int = 2001, num_samples: int = 200_000, seed: int = 1):
    """Recompute the differential entropy (bits) of :data:`TOY_ENTROPY_BITS` and its error.

    :returns: ``(H_bits, error_bits)`` — checkerboard: ``(-1, 0)`` exactly; 8 Gaussians: trapezoid rule
        on a ``grid``² grid over [-0.65, 0.65]², error = |difference from a grid of half the
        resolution|; spirals: Monte Carlo over ``num_samples`` exact samples, error = standard error.
    """
    _check_toy_name(name)
    if name == "checkerboard":
        return -1.0, 0.0
    if name == "8gaussians":
        def trapezoid(m):
            axis = np.linspace(-0.65, 0.65, m)
            xx, yy = np.meshgrid(axis, axis, indexing="ij")
            log_p = toy_log_density(name, np.stack([xx.ravel(), yy.ravel()], 1)).reshape(m, m)
            integrand = -np.exp(log_p) * log_p / math.log(2.0)
            return float(np.trapezoid(np.trapezoid(integrand, axis, axis=1), axis))
        fine, coarse = trapezoid(grid), trapezoid((grid + 1) // 2)
        return fine, abs(fine - coarse)
    rng = np.random.default_rng(seed)
    samples = sample_toy(name, num_samples, rng)
    log2_p = toy_log_density(name, samples, quadrature_points=8000) / math.log(2.0)
    return float(-log2_p.mean()), float(log2_p.std() / math.sqrt(num_samples))


@functools.lru_cache(maxsize=16)
def _toy_split(name: str, split: str) -> np.ndarray:
    """The fixed-seed sample of one split (read-only float32 array, shared between calls)."""
    seeds = np.random.SeedSequence(_TOY_SEED).spawn(len(TOY_DATASETS) * len(SPLITS))
    seed = seeds[TOY_DATASETS.index(name) * len(SPLITS) + SPLITS.index(split)]
    array = sample_toy(name, TOY_SPLIT_SIZES[split], np.random.default_rng(seed)).astype(np.float32)
    array.setflags(write=False)
    return array


def load_toy(name: str, split: str) -> torch.Tensor:
    """One split of a 2-D toy data set (sizes in :data:`TOY_SPLIT_SIZES`, drawn with fixed seeds).

    :param name: one of :data:`TOY_DATASETS`.
    :param split: one of :data:`SPLITS`.
    :returns: float32 tensor (N, 2), a fresh copy.
    """
    _check_toy_name(name)
    _check_split(split)
    return torch.from_numpy(_toy_split(name, split).copy())


# --------------------------------------------------------------------------------------------
# CIFAR-10 (8-bit colour images, for bits/dim) through torchvision
# --------------------------------------------------------------------------------------------

#: Validation rows taken from the end of CIFAR-10's 50,000 training images.
CIFAR10_VALID_SIZE = 5_000


def load_cifar10(split: str, data_dir=None, download: bool = False) -> torch.Tensor:
    """One split of CIFAR-10 as 8-bit pixels, read with ``torchvision.datasets.CIFAR10``.

    Each directory of :func:`candidate_dirs` is searched for torchvision's files
    (``cifar-10-batches-py/``); with ``download=True`` and nothing found, torchvision downloads them
    into the first writable directory.

    :param split: ``"train"`` (the first 45,000 training images), ``"valid"`` (the last 5,000) or
        ``"test"`` (the 10,000 test images).
    :returns: uint8 tensor (N, 3072): each image channel-major (R plane, G plane, B plane), each
        plane row-major.
    :raises DataError: when no files are found and ``download`` is False (listing the directories),
        or when they are malformed.
    """
    import torchvision.datasets

    _check_split(split)
    dirs = candidate_dirs(data_dir)
    dataset = None
    for d in dirs:
        try:
            dataset = torchvision.datasets.CIFAR10(root=str(d), train=split != "test", download=False)
            break
        except RuntimeError:
            continue  # torchvision's "Dataset not found or corrupted"
    if dataset is None and download:
        root = _first_writable_dir(dirs)
        try:
            dataset = torchvision.datasets.CIFAR10(root=str(root), train=split != "test", download=True)
        except (RuntimeError, OSError) as error:
            raise DataError(f"downloading CIFAR-10 with torchvision into {root} failed: {error}") from error
    if dataset is None:
        raise DataError(
            f"CIFAR-10 not found: looked for torchvision's cifar-10-batches-py/ in {_format_dirs(dirs)}. "
            f"Put that folder in one of those directories, set {DATA_ENV} (or pass --data-dir, data_dir=) "
            f"to the directory holding it, or pass --download (download=True) to download it with torchvision."
        )
    images = np.asarray(dataset.data)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(f"CIFAR-10 images have shape {images.shape} and dtype {images.dtype}; "
                        "expected uint8 (N, 32, 32, 3)")
    flat = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    if split == "train":
        flat = flat[:-CIFAR10_VALID_SIZE]
    elif split == "valid":
        flat = flat[-CIFAR10_VALID_SIZE:]
    if len(flat) == 0:
        raise DataError(f"CIFAR-10 split {split!r} is empty: the files hold only {len(images)} images")
    return torch.from_numpy(np.ascontiguousarray(flat))
