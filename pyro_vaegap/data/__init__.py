"""Data sets for measuring VAE inference gaps.

Every loader returns one split (``"train"``, ``"valid"`` or ``"test"``) as a 2-D tensor with one
flattened image per row. Every problem with missing or malformed data raises :class:`DataError`,
whose message names the offending value and says what is allowed or where the loader looked.
:func:`load_dataset` loads any of :data:`DATASETS` by name.

One module per job; everything public is re-exported here, so ``from pyro_vaegap.data import X``
is the way to use them:

* ``errors``: :class:`DataError` and :data:`SPLITS`;
* ``search``: where data files are looked for (:func:`candidate_dirs`);
* ``validate``: checks of data handed to a likelihood, and seeded evaluation subsets;
* ``binarized``: statically binarized MNIST and Fashion-MNIST;
* ``dynamic``: dynamically binarized MNIST and Fashion-MNIST (a fresh draw at every use in training);
* ``digits``: scikit-learn's 8x8 digits;
* ``toy``: the 2-D toy densities of R. Yu's tutorial;
* ``torchvision_images``: CIFAR-10 (8-bit), and the grey-level image sets in [0, 1] of the
  Gaussian-decoder experiments (:data:`GREYLEVEL_DATASETS`), through torchvision.
"""

from __future__ import annotations

import torch

from .binarized import load_binarized_mnist, load_fashion_mnist
from .dynamic import DYNAMIC_DATASETS, DYNAMIC_EVAL_SEED, dynamic_binarize, load_dynamic
from .digits import load_digits, load_digits_continuous, load_digits_uint8
from .errors import SPLITS, DataError, _check_split
from .search import DATA_ENV, candidate_dirs
from .torchvision_images import (load_celeba, load_cifar10, load_cifar10_continuous, load_fashion_mnist_continuous,
                                 load_mnist_continuous, load_omniglot, load_svhn)
from .toy import (TOY_DATASETS, TOY_ENTROPY_BITS, TOY_ENTROPY_ERROR_BITS, load_toy, sample_toy,
                  toy_entropy_numerical, toy_log_density, toy_quadrature)
from .validate import EVAL_POINTS, evaluation_rows, seeded_subset, validate_binary, validate_continuous

# Constants and helpers outside __all__ that users and tests reach as ``pyro_vaegap.data.<name>``
# (file names, toy-density geometry; ``CIFAR10_VALID_SIZE`` is read from here, see torchvision_images).
from .binarized import FASHION_NPZ, MNIST_NPZ, _write_packed_npz  # noqa: F401
from .torchvision_images import CELEBA_CROP, CELEBA_SIDE, CIFAR10_VALID_SIZE, MNIST_TEST_NPZ, OMNIGLOT_SIDE  # noqa: F401
from .toy import (G8_RADIUS, G8_STD, SPIRAL_STD, SPIRAL_TURN, TOY_SCALE, TOY_SPLIT_SIZES,  # noqa: F401
                  _g8_centres, _spiral_curve)


__all__ = [
    "DATA_ENV",
    "DataError",
    "BINARY_DATASETS",
    "DATASETS",
    "SPLITS",
    "candidate_dirs",
    "load_binarized_mnist",
    "load_fashion_mnist",
    "DYNAMIC_DATASETS",
    "DYNAMIC_EVAL_SEED",
    "dynamic_binarize",
    "load_dynamic",
    "load_digits",
    "load_digits_continuous",
    "load_digits_uint8",
    "TOY_DATASETS",
    "TOY_ENTROPY_BITS",
    "TOY_ENTROPY_ERROR_BITS",
    "sample_toy",
    "toy_log_density",
    "toy_quadrature",
    "toy_entropy_numerical",
    "load_toy",
    "load_cifar10",
    "GREYLEVEL_DATASETS",
    "load_mnist_continuous",
    "load_fashion_mnist_continuous",
    "load_omniglot",
    "load_svhn",
    "load_cifar10_continuous",
    "load_celeba",
    "load_dataset",
    "validate_binary",
    "validate_continuous",
    "seeded_subset", "evaluation_rows", "EVAL_POINTS",
]

BINARY_DATASETS = ("binarized_mnist", "fashion_mnist", "digits")
_GREYLEVEL_LOADERS = {
    "mnist_continuous": load_mnist_continuous,
    "fashion_mnist_continuous": load_fashion_mnist_continuous,
    "omniglot": load_omniglot,
    "svhn": load_svhn,
    "cifar10_continuous": load_cifar10_continuous,
    "celeba": load_celeba,
}
#: Image sets with values in [0, 1] (float32, channel-major rows) for Gaussian decoders, as in Kim &
#: Pavlovic's GPVAE experiments (grey-level MNIST, Omniglot, SVHN, CIFAR-10, CelebA), each read through
#: torchvision (see ``torchvision_images``).
GREYLEVEL_DATASETS = tuple(_GREYLEVEL_LOADERS)
#: Every name :func:`load_dataset` accepts: the binary data sets, the non-binary digits variants,
#: the generated 2-D toy densities (:data:`~pyro_vaegap.data.toy.TOY_DATASETS`, defined with their
#: samplers in ``toy``), 8-bit CIFAR-10 and the grey-level image sets (:data:`GREYLEVEL_DATASETS`).
DATASETS = BINARY_DATASETS + ("digits_continuous", "digits_uint8", "8gaussians", "checkerboard", "2spirals",
                              "cifar10") + GREYLEVEL_DATASETS + DYNAMIC_DATASETS

def load_dataset(name: str, split: str, data_dir=None, download: bool = False) -> torch.Tensor:
    """Load one split of the data set called ``name``.

    :param name: one of :data:`DATASETS`: ``binarized_mnist``, ``fashion_mnist``, ``digits``,
        ``digits_continuous``, ``digits_uint8``, or a toy set ``8gaussians``, ``checkerboard``,
        ``2spirals`` (generated; ignore ``data_dir`` and ``download``), ``dynamic_mnist`` or
        ``dynamic_fashion_mnist`` (train: grey levels to draw bits from at each use; valid, test: binarized
        once; see ``dynamic``), ``cifar10`` (uint8,
        through torchvision), or a grey-level image set of :data:`GREYLEVEL_DATASETS` (float32 in
        [0, 1], through torchvision): ``mnist_continuous``, ``fashion_mnist_continuous``,
        ``omniglot``, ``svhn``, ``cifar10_continuous``, ``celeba``.
    :param split: one of :data:`SPLITS`.
    :param data_dir: directory searched first (every file-based set; digits ship with
        scikit-learn and ignore it, as they ignore ``download``).
    :param download: allow downloading (through torchvision).
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
    if name in DYNAMIC_DATASETS:
        return load_dynamic(name, split, data_dir=data_dir, download=download)
    if name in TOY_DATASETS:
        return load_toy(name, split)
    if name == "cifar10":
        return load_cifar10(split, data_dir=data_dir, download=download)
    if name in _GREYLEVEL_LOADERS:
        return _GREYLEVEL_LOADERS[name](split, data_dir=data_dir, download=download)
    digits_loaders = {
        "digits": load_digits,
        "digits_continuous": load_digits_continuous,
        "digits_uint8": load_digits_uint8,
    }
    return digits_loaders[name](split)
