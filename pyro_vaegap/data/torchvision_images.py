"""Colour images read through torchvision.

``cifar10``
    CIFAR-10 as uint8 (N, 3072) pixels read with torchvision (45,000 / 5,000 / 10,000), for bits/dim.
"""

from __future__ import annotations

import importlib

import numpy as np
import torch

from .errors import DataError, _check_split
from .search import DATA_ENV, _first_writable_dir, _format_dirs, candidate_dirs


#: Validation rows taken from the end of CIFAR-10's 50,000 training images.
CIFAR10_VALID_SIZE = 5_000


def _cifar10_valid_size() -> int:
    """:data:`CIFAR10_VALID_SIZE` as the package ``pyro_vaegap.data`` holds it.

    The package's name is the public one (tests shrink it for tiny fake copies), so that is the one
    that counts, not this module's copy."""
    return importlib.import_module(__package__).CIFAR10_VALID_SIZE


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
    valid_size = _cifar10_valid_size()
    if split == "train":
        flat = flat[:-valid_size]
    elif split == "valid":
        flat = flat[-valid_size:]
    if len(flat) == 0:
        raise DataError(f"CIFAR-10 split {split!r} is empty: the files hold only {len(images)} images")
    return torch.from_numpy(np.ascontiguousarray(flat))
