"""Statically binarized MNIST and Fashion-MNIST: packed ``.npz`` files, ``.amat`` text files, and
torchvision's grey-level files binarized once with a fixed seed.

``binarized_mnist``
    The standard statically binarized MNIST (Larochelle & Murray 2011), the fixed binarization
    used by Burda et al. 2016 and Cremer et al. 2018: 50,000 train / 10,000 valid / 10,000 test
    images of 784 pixels. It is looked for, directory by directory in the search order of
    :func:`candidate_dirs`,

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

**Fixed-seed static binarization.** A VAE with a Bernoulli likelihood needs binary data. Binarizing
afresh at every epoch ("dynamic" binarization) changes the data set and makes log-likelihoods
incomparable, so the grey-level images are binarized exactly once: the 60,000 training images
followed by the 10,000 test images, flattened row-major, are compared with ``torch.rand`` uniforms
from a CPU ``torch.Generator`` seeded with 0; pixel ``= u < value / 255`` (a Bernoulli draw with
probability value/255). The training images then split into train (the first 50,000) and valid (the
last 10,000).

Evaluation subsets must be seeded random subsets (:func:`seeded_subset`), never "the first N
rows": the MNIST test split is ordered by class.
"""

from __future__ import annotations

import pathlib
import warnings
import zipfile
import zlib

import numpy as np
import torch

from ..utils import atomic_write
from .errors import SPLITS, DataError, _check_split
from .search import _first_writable_dir, _format_dirs, _location_fix, candidate_dirs
from .validate import validate_binary


MNIST_NPZ = "binarized_mnist.npz"
FASHION_NPZ = "fashion_mnist_binarized.npz"

_IMAGE_PIXELS = 28 * 28  # 784; a multiple of 8, so packbits needs no padding
_PACKED_BYTES = _IMAGE_PIXELS // 8  # 98
_BINARIZATION_SEED = 0


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
        try:
            images = dataset_class(root=str(root), train=train, download=download).data
        except RuntimeError:
            images = _compressed_raw_images(dataset_class, class_name, root, train)
            if images is None:
                raise
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


def _compressed_raw_images(dataset_class, class_name: str, root: pathlib.Path, train: bool):
    """The images of ``root/<class_name>/raw/{train,t10k}-images-idx3-ubyte.gz`` read without extracting them,
    or None when that file is absent.

    torchvision reads only the extracted files and extracts the ``.gz`` ones only when it may download; the
    project's shared data folder holds the ``.gz`` files, read-only. The file's md5 is checked against the one
    torchvision checks (``dataset_class.resources``), then torchvision's own IDX reader parses it.
    """
    import gzip
    import tempfile

    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor
    from torchvision.datasets.utils import check_integrity

    name = f"{'train' if train else 't10k'}-images-idx3-ubyte.gz"
    path = pathlib.Path(root) / class_name / "raw" / name
    if not path.is_file():
        return None
    md5 = dict(getattr(dataset_class, "resources", ())).get(name)
    if md5 is not None and not check_integrity(str(path), md5):
        raise DataError(f"{path}: md5 differs from torchvision's {md5} for {class_name}: the file is damaged or "
                        "another data set's; replace it with the original")
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as error:
        raise DataError(f"{path} is not a readable gzip file ({error})") from error
    with tempfile.NamedTemporaryFile(suffix=name[:-3]) as tmp:
        tmp.write(data)
        tmp.flush()
        return read_sn3_pascalvincent_tensor(tmp.name, strict=False)


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
        f"np.packbits rows) in one of those directories; (2) {_location_fix(dirs)}; (3) pass --download "
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
        f"{FASHION_NPZ} or the FashionMNIST/raw folder in one of those directories; (2) {_location_fix(dirs)}; (3) pass "
        f"--download (download=True) to download it with torchvision."
    )

