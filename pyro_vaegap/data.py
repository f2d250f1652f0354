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

    Failing both, ``download=True`` downloads MNIST with torchvision and binarizes it once with a
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
import os
import pathlib
import tempfile
import warnings
import zipfile

import numpy as np
import torch

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
    "load_dataset",
    "validate_binary",
    "validate_continuous",
    "seeded_subset",
]

DATA_ENV = "PYRO_VAEGAP_DATA"

BINARY_DATASETS = ("binarized_mnist", "fashion_mnist", "digits")
#: Every name :func:`load_dataset` accepts: the binary data sets plus the non-binary digits variants.
DATASETS = BINARY_DATASETS + ("digits_continuous", "digits_uint8")
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
    raise DataError(f"none of the data directories is writable: {_format_dirs(dirs)}")


def _format_dirs(dirs: list[pathlib.Path]) -> str:
    """One indented line per directory, flagging those that do not exist."""
    return "".join(f"\n  {d}" + ("" if d.is_dir() else "  (does not exist)") for d in dirs)


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
    :returns: ``x`` as a contiguous float32 tensor of shape (N, D).
    :raises DataError: if ``x`` is not a non-empty 2-D floating-point tensor, has NaN/inf
        entries, or has entries other than exactly 0 or 1 (the message gives their count and
        the position and value of the first).
    """
    x = _check_2d_float(x, name)
    _raise_on_entries(
        (x != 0) & (x != 1), x, name, "not 0 or 1", "a Bernoulli likelihood needs binary data"
    )
    return x.to(torch.float32).contiguous()


def validate_continuous(x, name: str = "data") -> torch.Tensor:
    """Check data for a continuous likelihood.

    :param x: float tensor of shape (N, D).
    :param name: how the data is named in error messages.
    :returns: ``x`` as a contiguous float32 tensor of shape (N, D).
    :raises DataError: if ``x`` is not a non-empty 2-D floating-point tensor or has NaN/inf
        entries.
    """
    return _check_2d_float(x, name).to(torch.float32).contiguous()


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
    """Read one split of a packbits npz file as a float32 (N, 784) tensor of 0./1."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise DataError(f"{path}: cannot be read as an .npz file ({error})") from error
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
        except (OSError, ValueError, zipfile.BadZipFile) as error:
            raise DataError(f"{path}: array {split!r} cannot be read ({error})") from error
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
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **packed)
        os.replace(tmp_name, path)
    except BaseException:
        os.unlink(tmp_name)
        raise


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
        f"binarized MNIST not found: looked for {MNIST_NPZ} and binarized_mnist_{split}.amat in"
        f"{_format_dirs(dirs)}\n"
        f"Fix it in one of three ways: (1) put {MNIST_NPZ} (keys train/valid/test, np.packbits "
        f"rows) in one of those directories; (2) set the environment variable {DATA_ENV} "
        f"(or pass --data-dir / data_dir=) to the directory that holds it; (3) pass "
        f"download=True (or --download) to download MNIST with torchvision and binarize it with "
        f"a fixed seed (not the standard Larochelle & Murray binarization)."
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
        f"FashionMNIST/raw/*-ubyte in{_format_dirs(dirs)}\n"
        f"Fix it in one of three ways: (1) put {FASHION_NPZ} or the FashionMNIST/raw folder in one "
        f"of those directories; (2) set the environment variable {DATA_ENV} (or pass --data-dir / "
        f"data_dir=) to the directory that holds it; (3) pass download=True (or --download)."
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
        ``digits_continuous``, ``digits_uint8``.
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
    digits_loaders = {
        "digits": load_digits,
        "digits_continuous": load_digits_continuous,
        "digits_uint8": load_digits_uint8,
    }
    return digits_loaders[name](split)
