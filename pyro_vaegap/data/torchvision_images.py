"""Images read through torchvision: CIFAR-10 as 8-bit pixels, and the grey-level sets of the
Gaussian-decoder experiments (Kim & Pavlovic's GPVAE) as floats in [0, 1].

Every image is flattened channel-major (all of channel 0 row-major, then channel 1, ...), so
:func:`pyro_vaegap.models.networks.image_shape` recovers ``(C, H, W)`` from the row width. Each directory
of :func:`candidate_dirs` is searched in turn for torchvision's own files; only with
``download=True`` (``--download``) and nothing found does torchvision download them, into the first
writable directory. Missing files raise :class:`DataError` listing where the loader looked.

``cifar10``
    CIFAR-10 as uint8 (N, 3072) pixels read with torchvision (45,000 / 5,000 / 10,000), for bits/dim.
``cifar10_continuous``
    The same images and splits as float32 values ``pixel / 255`` (colour, 3 x 32 x 32).
``mnist_continuous``, ``fashion_mnist_continuous``
    Grey-level (not binarized) MNIST / Fashion-MNIST from torchvision's raw files (``MNIST/raw``,
    ``FashionMNIST/raw``), ``pixel / 255``, (N, 784): train = the first 50,000 of the 60,000
    training images, valid = the last 10,000 (the split of the binarized sets), test = the 10,000 test
    images. MNIST's test split is also read from ``mnist_test.npz`` (key ``images``, uint8
    (10000, 784), as shipped in the project's shared data folder) when torchvision's files are absent,
    so a grey-level evaluation works offline.
``omniglot``
    Omniglot through ``torchvision.datasets.Omniglot`` (``omniglot-py/``): the 30 alphabets of the
    *background* set give train and valid, the 20 alphabets of the *evaluation* set give test, so
    the test characters come from alphabets never seen in training (torchvision's split, which is
    reproducible from its files; the Burda et al. 2016 split mixes alphabets but exists only as a
    pre-processed file that torchvision does not provide). Valid is a fixed-seed random tenth of the
    background images (1,928 of 19,280; train the other 17,352; test 13,180), random rather than the
    last rows because the files are ordered by alphabet. Each 105 x 105 image is inverted (ink = 1,
    paper = 0, as in MNIST) and reduced to 28 x 28 by area averaging, so the MNIST-sized networks
    fit it: (N, 784).
``svhn``
    SVHN's cropped digits through ``torchvision.datasets.SVHN`` (``train_32x32.mat``,
    ``test_32x32.mat``; the ``extra`` set is not used): valid = the last 5 % of the 73,257
    training images (3,662; train the first 69,595), test = the 26,032 test images; (N, 3072).
``celeba``
    CelebA's aligned faces through ``torchvision.datasets.CelebA`` (``celeba/``), its own
    train / valid / test partition (162,770 / 19,867 / 19,962): each 178 x 218 image is centre-cropped
    to 148 x 148 (the face) and reduced to 64 x 64 by area averaging; (N, 12288).

Area averaging (PIL's box filter) makes each output pixel the mean of the input pixels it covers:
a constant image stays exactly constant and no value leaves [0, 1].
"""

from __future__ import annotations

import importlib
import pathlib

import numpy as np
import torch

from .binarized import _torchvision_images
from .errors import DataError, _check_split
from .search import _first_writable_dir, _format_dirs, _location_fix, candidate_dirs
from .validate import seeded_subset

#: Validation rows taken from the end of CIFAR-10's 50,000 training images.
CIFAR10_VALID_SIZE = 5_000


def _cifar10_valid_size() -> int:
    """:data:`CIFAR10_VALID_SIZE` as the package ``pyro_vaegap.data`` holds it.

    The package's name is the public one (tests shrink it for tiny fake copies), so that is the one
    that counts, not this module's copy."""
    return importlib.import_module(__package__).CIFAR10_VALID_SIZE


def _open_torchvision(what: str, files: str, dirs: list[pathlib.Path], download: bool, make, extra: str = ""):
    """The torchvision data set ``make(root, download)`` built from the first of ``dirs`` holding its files.

    :param what: the data set's name in messages ("CIFAR-10").
    :param files: what torchvision looks for, in messages ("cifar-10-batches-py/").
    :param make: ``(root: str, download: bool) -> dataset``; raises ``RuntimeError`` (torchvision's
        "Dataset not found or corrupted") when ``root`` lacks the files.
    :param extra: a sentence appended to the not-found message (another way to provide the data).
    :raises DataError: when no directory holds the files and ``download`` is False (listing the
        directories and the ways to provide them), or when the download fails.
    """
    for d in dirs:
        try:
            return make(str(d), False)
        except RuntimeError:
            continue  # torchvision's "Dataset not found or corrupted"
    if download:
        root = _first_writable_dir(dirs)
        try:
            return make(str(root), True)
        except (RuntimeError, OSError) as error:
            raise DataError(f"downloading {what} with torchvision into {root} failed: {error}") from error
    raise DataError(
        f"{what} not found: looked for torchvision's {files} in {_format_dirs(dirs)}. "
        f"Put them in one of those directories, {_location_fix(dirs, 'them')}, or pass --download "
        f"(download=True) to download them with torchvision."
        + (f" {extra}" if extra else "")
    )


def _unit_interval(pixels: np.ndarray) -> torch.Tensor:
    """uint8 pixels (N, ...) as a float32 tensor (N, D) of ``pixel / 255``, one flattened image per row."""
    return torch.from_numpy(np.ascontiguousarray(pixels).reshape(len(pixels), -1)).to(torch.float32) / 255.0


def _tail_split(images, split: str, n_valid: int, what: str):
    """``train``: all but the last ``n_valid`` rows of the training images; ``valid``: those last rows;
    ``test`` rows are passed through. Raises :class:`DataError` if the split comes out empty."""
    n = len(images)
    if split == "train":
        images = images[:n - n_valid]
    elif split == "valid":
        images = images[n - n_valid:]
    if len(images) == 0:
        raise DataError(f"{what} split {split!r} is empty: the files hold only {n} images")
    return images


def _area_resized(path: pathlib.Path, mode: str, size: int, crop: int | None = None) -> np.ndarray:
    """The image file at ``path`` in PIL ``mode`` ("L" or "RGB"), cut to its centred ``crop`` x ``crop``
    square (None: the whole image) and reduced to ``size`` x ``size`` by area averaging: uint8 (C, size, size).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            box = None
            if crop is not None:
                width, height = image.size
                if min(width, height) < crop:
                    raise DataError(f"{path}: image is {width} x {height}; the centre crop needs at least "
                                    f"{crop} x {crop}")
                left, upper = (width - crop) // 2, (height - crop) // 2
                box = (left, upper, left + crop, upper + crop)
            image = image.convert(mode).resize((size, size), Image.Resampling.BOX, box=box)
    except (OSError, UnidentifiedImageError) as error:
        raise DataError(f"{path}: cannot be read as an image ({error})") from error
    pixels = np.asarray(image, dtype=np.uint8)
    return pixels[None] if pixels.ndim == 2 else pixels.transpose(2, 0, 1)


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
    dataset = _open_torchvision(
        "CIFAR-10", "cifar-10-batches-py/", candidate_dirs(data_dir), download,
        lambda root, download: torchvision.datasets.CIFAR10(root=root, train=split != "test", download=download))
    images = np.asarray(dataset.data)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise DataError(f"CIFAR-10 images have shape {images.shape} and dtype {images.dtype}; "
                        "expected uint8 (N, 32, 32, 3)")
    flat = images.transpose(0, 3, 1, 2).reshape(len(images), -1)
    if split != "test":
        flat = _tail_split(flat, split, _cifar10_valid_size(), "CIFAR-10")
    return torch.from_numpy(np.ascontiguousarray(flat))


def load_cifar10_continuous(split: str, data_dir=None, download: bool = False) -> torch.Tensor:
    """One split of CIFAR-10 (as :func:`load_cifar10`) as floats: float32 (N, 3072), ``pixel / 255``."""
    return load_cifar10(split, data_dir=data_dir, download=download).to(torch.float32) / 255.0


#: The file read for grey-level MNIST's test split when torchvision's MNIST files are absent.
MNIST_TEST_NPZ = "mnist_test.npz"


def _read_mnist_test_npz(path: pathlib.Path) -> np.ndarray:
    """The ``images`` array of ``mnist_test.npz``: uint8 (N, 784)."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            images = archive["images"]
    except (OSError, ValueError, KeyError, EOFError) as error:
        raise DataError(f"{path}: cannot be read as an .npz archive with an array 'images' "
                        f"(uint8 (10000, 784)) [{type(error).__name__}: {error}]") from error
    if images.dtype != np.uint8 or images.ndim != 2 or images.shape[1] != 28 * 28 or len(images) == 0:
        raise DataError(f"{path}: array 'images' has shape {images.shape} and dtype {images.dtype}; "
                        "expected uint8 (N, 784), one row-major 28x28 image per row")
    return images


def _load_mnist_like(class_name: str, what: str, split: str, data_dir, download: bool) -> torch.Tensor:
    """Grey-level MNIST or Fashion-MNIST from torchvision's raw files (MNIST's test split also from
    ``mnist_test.npz``), split like the binarized sets."""
    _check_split(split)
    dirs = candidate_dirs(data_dir)
    train = split != "test"
    if class_name == "MNIST" and not train:
        for d in dirs:
            try:
                return _unit_interval(_torchvision_images(class_name, d, train=False, download=False).numpy())
            except RuntimeError:
                pass  # no torchvision files here: the npz may stand in for the test split
            if (d / MNIST_TEST_NPZ).is_file():
                return _unit_interval(_read_mnist_test_npz(d / MNIST_TEST_NPZ))
    extra = ""
    if class_name == "MNIST":
        extra = (f"({MNIST_TEST_NPZ}, which stands in for the test split, holds only the 10,000 test images, "
                 f"so it cannot give the {split} split.)" if train else
                 f"Or put {MNIST_TEST_NPZ} (key 'images', uint8 (10000, 784)) in one of those directories.")
    images = _open_torchvision(
        what, f"{class_name}/raw/*-ubyte files", dirs, download,
        lambda root, download: _torchvision_images(class_name, pathlib.Path(root), train=train, download=download),
        extra=extra)
    if train:
        # the last sixth of the 60,000 training images is valid, as in the binarized sets
        images = _tail_split(images, split, len(images) // 6, what)
    return _unit_interval(images.numpy())


def load_mnist_continuous(split: str, data_dir=None, download: bool = False) -> torch.Tensor:
    """One split of grey-level MNIST: float32 (N, 784), ``pixel / 255``.

    :param split: ``"train"`` (the first 50,000 training images), ``"valid"`` (the last 10,000) or
        ``"test"`` (10,000; read from ``mnist_test.npz`` when torchvision's files are absent).
    :raises DataError: when no files are found and ``download`` is False (listing the directories), or
        when they are malformed.
    """
    return _load_mnist_like("MNIST", "grey-level MNIST", split, data_dir, download)


def load_fashion_mnist_continuous(split: str, data_dir=None, download: bool = False) -> torch.Tensor:
    """One split of grey-level Fashion-MNIST: float32 (N, 784), ``pixel / 255``, split as
    :func:`load_mnist_continuous` (50,000 / 10,000 / 10,000)."""
    return _load_mnist_like("FashionMNIST", "grey-level Fashion-MNIST", split, data_dir, download)


#: Side of the square images of :func:`load_omniglot` (105 x 105 originals).
OMNIGLOT_SIDE = 28
_OMNIGLOT_VALID_SEED = 0


def load_omniglot(split: str, data_dir=None, download: bool = False) -> torch.Tensor:
    """One split of Omniglot, inverted (ink = 1) and reduced to 28 x 28: float32 (N, 784) in [0, 1].

    :param split: ``"train"`` (17,352 background images), ``"valid"`` (a fixed-seed random tenth of the
        background set, 1,928) or ``"test"`` (the 13,180 images of the evaluation set).
    :returns: rows ordered by alphabet, character and file name (torchvision lists them in the file
        system's order, which differs between machines, so they are sorted here).
    :raises DataError: when no files are found and ``download`` is False (listing the directories), or
        when an image cannot be read.
    """
    import torchvision.datasets

    _check_split(split)
    dataset = _open_torchvision(
        "Omniglot", "omniglot-py/ (images_background.zip and its unpacked folder; images_evaluation "
        "likewise for the test split)", candidate_dirs(data_dir), download,
        lambda root, download: torchvision.datasets.Omniglot(root=root, background=split != "test",
                                                             download=download))
    paths = sorted(pathlib.Path(dataset.target_folder).glob("*/*/*.png"))
    if not paths:
        raise DataError(f"Omniglot: no PNG images under {dataset.target_folder} (expected "
                        "<alphabet>/<character>/<image>.png); unpack the zip file there")
    if split != "test":
        valid = torch.zeros(len(paths), dtype=torch.bool)
        valid[seeded_subset(len(paths), max(len(paths) // 10, 1), _OMNIGLOT_VALID_SEED)] = True
        keep = valid if split == "valid" else ~valid
        paths = [p for p, k in zip(paths, keep.tolist()) if k]
        if not paths:
            raise DataError("Omniglot split 'train' is empty: the background set holds a single image")
    pixels = np.stack([_area_resized(p, "L", OMNIGLOT_SIDE) for p in paths])
    return 1.0 - _unit_interval(pixels)  # ink is black (0) in the files; make it 1, as in MNIST


def load_svhn(split: str, data_dir=None, download: bool = False) -> torch.Tensor:
    """One split of SVHN (cropped 32 x 32 digits): float32 (N, 3072), ``pixel / 255``, channel-major.

    :param split: ``"train"`` (the first 69,595 training images), ``"valid"`` (the last 5 %, 3,662) or
        ``"test"`` (26,032).
    :raises DataError: when no files are found and ``download`` is False (listing the directories), or
        when they are malformed.
    """
    import torchvision.datasets

    _check_split(split)
    source = "test" if split == "test" else "train"
    dataset = _open_torchvision(
        "SVHN", f"{source}_32x32.mat", candidate_dirs(data_dir), download,
        lambda root, download: torchvision.datasets.SVHN(root=root, split=source, download=download))
    images = np.asarray(dataset.data)  # torchvision transposes the .mat's (H, W, C, N) to (N, C, H, W)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (3, 32, 32):
        raise DataError(f"SVHN images have shape {images.shape} and dtype {images.dtype}; "
                        "expected uint8 (N, 3, 32, 32) (X of the .mat file: (32, 32, 3, N))")
    if split != "test":
        images = _tail_split(images, split, len(images) // 20, "SVHN")
    return _unit_interval(images)


#: Side of the centred square cropped from CelebA's aligned 178 x 218 faces, and of the output images.
CELEBA_CROP = 148
CELEBA_SIDE = 64


def load_celeba(split: str, data_dir=None, download: bool = False) -> torch.Tensor:
    """One split of CelebA's aligned faces, centre-cropped to 148 x 148 and reduced to 64 x 64:
    float32 (N, 12288) in [0, 1], channel-major.

    Reading a split decodes every one of its JPEG files (no cache), and the float32 train split
    takes 8 GB. torchvision downloads CelebA from Google Drive with the ``gdown`` package, which
    often fails on Drive's download quota; the files can be put in place by hand instead.

    :param split: CelebA's own partition (``list_eval_partition.txt``): ``"train"`` (162,770),
        ``"valid"`` (19,867) or ``"test"`` (19,962).
    :raises DataError: when no files are found and ``download`` is False (listing the directories), or
        when an image cannot be read or is smaller than the crop.
    """
    import torchvision.datasets

    _check_split(split)
    dataset = _open_torchvision(
        "CelebA", "celeba/ (img_align_celeba/ and the five list_*.txt / identity_CelebA.txt files)",
        candidate_dirs(data_dir), download,
        lambda root, download: torchvision.datasets.CelebA(root=root, split=split, target_type=[],
                                                            download=download))
    folder = pathlib.Path(dataset.root) / dataset.base_folder / "img_align_celeba"
    if len(dataset.filename) == 0:
        raise DataError(f"CelebA split {split!r} is empty: list_eval_partition.txt under {folder.parent} "
                        "assigns no image to it")
    faces = [_area_resized(folder / name, "RGB", CELEBA_SIDE, crop=CELEBA_CROP) for name in dataset.filename]
    return _unit_interval(np.stack(faces))
