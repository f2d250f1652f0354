"""Tests of pyro_vaegap.data: loaders, search order, caching, validation. Offline and fast."""

import collections
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from pyro_vaegap import data
from pyro_vaegap.data import (
    DATA_ENV,
    DataError,
    load_binarized_mnist,
    load_dataset,
    load_digits,
    load_digits_continuous,
    load_digits_uint8,
    load_fashion_mnist,
    seeded_subset,
    validate_binary,
    validate_continuous,
)

# The shipped binarized MNIST lives in ../shared/data beside the repository checkout.
SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SHIPPED_MNIST = SHARED_DATA / data.MNIST_NPZ
needs_shipped_mnist = pytest.mark.skipif(
    not SHIPPED_MNIST.is_file(), reason=f"shipped binarized MNIST not found at {SHIPPED_MNIST}"
)


@pytest.fixture(autouse=True)
def isolated_search_path(tmp_path, monkeypatch):
    """Keep every test away from the user's real data: no $PYRO_VAEGAP_DATA, and a fresh HOME so
    that ~/.cache/pyro_vaegap is an empty temporary directory."""
    monkeypatch.delenv(DATA_ENV, raising=False)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    return home


def random_images(n, seed):
    """uint8 (n, 28, 28) grey-level images with some exact 0 and 255 pixels."""
    images = np.random.default_rng(seed).integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    images[:, 0, :] = 0
    images[:, 1, :] = 255
    return images


def write_amat(path, bits):
    """Write a (N, 784) 0/1 array in the .amat text format: one image per line."""
    np.savetxt(path, bits, fmt="%d", delimiter=" ")


# --------------------------------------------------------------------------------------------
# digits
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("split, n", [("train", 1197), ("valid", 300), ("test", 300)])
def test_digits_shapes_and_values(split, n):
    bits = load_digits(split)
    assert bits.shape == (n, 64) and bits.dtype == torch.float32
    assert set(bits.unique().tolist()) == {0.0, 1.0}
    continuous = load_digits_continuous(split)
    assert continuous.shape == (n, 64) and continuous.dtype == torch.float32
    assert continuous.min() >= 0 and continuous.max() <= 1
    eight_bit = load_digits_uint8(split)
    assert eight_bit.shape == (n, 64) and eight_bit.dtype == torch.uint8
    assert eight_bit.min() == 0 and eight_bit.max() == 255
    # All three views are of the same images in the same order.
    assert torch.equal(eight_bit, torch.round(continuous * 255).to(torch.uint8))
    assert torch.all(bits[continuous == 0] == 0) and torch.all(bits[continuous == 1] == 1)


def test_digits_deterministic_and_seeded():
    assert torch.equal(load_digits("train"), load_digits("train"))
    assert torch.equal(load_digits_continuous("test", seed=3), load_digits_continuous("test", seed=3))
    assert not torch.equal(load_digits_continuous("test", seed=0), load_digits_continuous("test", seed=1))
    # Callers may modify what they get without corrupting later loads.
    load_digits("valid")[:] = 7
    assert set(load_digits("valid").unique().tolist()) == {0.0, 1.0}


def test_digits_splits_partition_all_images():
    from sklearn.datasets import load_digits as sklearn_load_digits

    def as_counter(pixels):
        return collections.Counter(map(tuple, np.asarray(pixels).round().astype(int)))

    rows = torch.cat([load_digits_continuous(split) for split in data.SPLITS]) * 16
    assert len(rows) == 1797
    assert as_counter(rows) == as_counter(sklearn_load_digits().data)


# --------------------------------------------------------------------------------------------
# binarized MNIST
# --------------------------------------------------------------------------------------------


@needs_shipped_mnist
def test_shipped_mnist_shapes_and_mean():
    sizes = {"train": 50000, "valid": 10000, "test": 10000}
    for split, n in sizes.items():
        x = load_binarized_mnist(split, data_dir=SHARED_DATA)
        assert x.shape == (n, 784) and x.dtype == torch.float32
        validate_binary(x)
        if split == "train":
            assert abs(x.mean().item() - 0.1306) < 1e-3


@needs_shipped_mnist
def test_shipped_mnist_found_via_environment_variable(monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(SHARED_DATA))
    assert data.candidate_dirs()[0] == SHARED_DATA
    from_env = load_dataset("binarized_mnist", "valid")
    assert torch.equal(from_env, load_binarized_mnist("valid", data_dir=SHARED_DATA))


def test_mnist_amat(tmp_path):
    bits = np.random.default_rng(0).integers(0, 2, size=(3, 784))
    write_amat(tmp_path / "binarized_mnist_test.amat", bits)
    x = load_binarized_mnist("test", data_dir=tmp_path)
    assert x.shape == (3, 784) and x.dtype == torch.float32
    assert torch.equal(x, torch.from_numpy(bits).float())


def test_explicit_dir_is_used_or_refused_never_replaced(tmp_path, monkeypatch):
    """A directory the user names is the only one searched: its data are read even when
    $PYRO_VAEGAP_DATA holds other data, and a missing file there (or a directory that does not exist)
    is an error naming it, never a silent read of the environment's directory."""
    explicit, from_env = tmp_path / "explicit", tmp_path / "env"
    explicit.mkdir()
    from_env.mkdir()
    write_amat(explicit / "binarized_mnist_train.amat", np.ones((2, 784), dtype=int))
    write_amat(from_env / "binarized_mnist_train.amat", np.zeros((2, 784), dtype=int))
    write_amat(from_env / "binarized_mnist_test.amat", np.zeros((2, 784), dtype=int))
    monkeypatch.setenv(DATA_ENV, str(from_env))
    assert data.candidate_dirs(explicit) == [explicit]
    assert data.candidate_dirs() == [from_env, Path.home() / ".cache" / "pyro_vaegap"]
    assert load_binarized_mnist("train", data_dir=explicit).mean() == 1
    assert load_binarized_mnist("train").mean() == 0
    for missing in (explicit, tmp_path / "nonexistent"):  # no test split there; no directory at all
        with pytest.raises(DataError, match=f"in {missing}") as info:
            load_binarized_mnist("test", data_dir=missing)
        assert str(from_env) not in str(info.value)


def test_missing_mnist_names_directories_and_fixes(tmp_path, monkeypatch):
    from_env = tmp_path / "env"
    monkeypatch.setenv(DATA_ENV, str(from_env))
    with pytest.raises(DataError) as info:
        load_binarized_mnist("train", data_dir=tmp_path / "explicit")
    message = str(info.value)
    assert str(tmp_path / "explicit") in message and str(from_env) not in message  # only the named one
    assert DATA_ENV in message and "download=True" in message and data.MNIST_NPZ in message
    assert "--download" in message and "\n" not in message  # one line; vaegap train/gaps/bdmc have --download


def test_mnist_download_is_binarized_once_and_cached_atomically(tmp_path, monkeypatch):
    import torchvision.datasets

    root = tmp_path / "data"  # does not exist yet: the download creates it

    class FakeMNIST:
        """Stands in for torchvision's MNIST: 12 training and 6 test images, no network."""

        def __init__(self, root, train=True, download=False):
            assert Path(root) == tmp_path / "data"
            self.data = torch.from_numpy(random_images(12 if train else 6, seed=int(train)))

    monkeypatch.setattr(torchvision.datasets, "MNIST", FakeMNIST)
    renames = []
    real_replace = os.replace

    def recording_replace(src, dst):
        renames.append((Path(src), Path(dst)))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", recording_replace)

    downloaded = {
        split: load_binarized_mnist(split, data_dir=root, download=True) for split in data.SPLITS
    }
    # The last sixth of the training images is the validation split (10k of 60k for real MNIST).
    assert {split: tuple(x.shape) for split, x in downloaded.items()} == {
        "train": (10, 784),
        "valid": (2, 784),
        "test": (6, 784),
    }
    for x in downloaded.values():
        validate_binary(x)
        # Pixels 0 and 255 are Bernoulli(0) and Bernoulli(1) draws.
        assert torch.all(x[:, :28] == 0) and torch.all(x[:, 28:56] == 1)
    cache = root / data.MNIST_NPZ
    assert cache.is_file()
    # Written under a temporary name in the same directory, then renamed; nothing left behind.
    # Only the first load downloads and writes; the others find the cache.
    assert len(renames) == 1 and renames[0][1] == cache and renames[0][0].parent == root
    assert [p.name for p in root.iterdir()] == [data.MNIST_NPZ]

    class NoNetwork:
        def __init__(self, *args, **kwargs):
            pytest.fail("the cache should have been used")

    monkeypatch.setattr(torchvision.datasets, "MNIST", NoNetwork)
    for split, x in downloaded.items():
        assert torch.equal(load_binarized_mnist(split, data_dir=root), x)


# --------------------------------------------------------------------------------------------
# Fashion-MNIST through torchvision's raw files
# --------------------------------------------------------------------------------------------


def write_idx(path, array):
    """Write a uint8 array in the idx format torchvision reads: a big-endian int32 magic number
    (2051 = 0x0803 for 3-D uint8 images, 2049 = 0x0801 for 1-D uint8 labels), the dimensions as
    big-endian int32, then the raw bytes."""
    magic = {3: 2051, 1: 2049}[array.ndim]
    header = np.array([magic, *array.shape], dtype=">i4")
    path.write_bytes(header.tobytes() + np.ascontiguousarray(array, dtype=np.uint8).tobytes())


def write_fake_fashion_mnist(root, n_train=12, n_test=6):
    raw = root / "FashionMNIST" / "raw"
    raw.mkdir(parents=True)
    for prefix, n, seed in [("train", n_train, 0), ("t10k", n_test, 1)]:
        write_idx(raw / f"{prefix}-images-idx3-ubyte", random_images(n, seed))
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8) % 10)


def test_fashion_mnist_from_raw_files(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    x = {split: load_fashion_mnist(split, data_dir=tmp_path) for split in data.SPLITS}
    assert {split: tuple(v.shape) for split, v in x.items()} == {
        "train": (10, 784),
        "valid": (2, 784),
        "test": (6, 784),
    }
    for v in x.values():
        validate_binary(v)
        assert torch.all(v[:, :28] == 0) and torch.all(v[:, 28:56] == 1)
    cache = tmp_path / data.FASHION_NPZ
    assert cache.is_file()
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    # The binarization is a fixed function of the images: redoing it gives the same bits.
    cache.unlink()
    assert torch.equal(load_dataset("fashion_mnist", "train", data_dir=tmp_path), x["train"])

    # Once cached, the raw files are no longer needed.
    for f in (tmp_path / "FashionMNIST" / "raw").iterdir():
        f.unlink()
    assert torch.equal(load_fashion_mnist("test", data_dir=tmp_path), x["test"])


def test_missing_fashion_mnist(tmp_path):
    with pytest.raises(DataError, match=DATA_ENV) as info:
        load_fashion_mnist("train", data_dir=tmp_path)
    assert str(tmp_path) in str(info.value)


def test_malformed_fashion_mnist_raw_files(tmp_path):
    write_fake_fashion_mnist(tmp_path)
    (tmp_path / "FashionMNIST" / "raw" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x00\x00")
    with pytest.raises(DataError, match="malformed"):
        load_fashion_mnist("train", data_dir=tmp_path)


# --------------------------------------------------------------------------------------------
# Bad data
# --------------------------------------------------------------------------------------------


def test_npz_with_wrong_shape(tmp_path):
    np.savez(tmp_path / data.MNIST_NPZ, train=np.zeros((3, 97), dtype=np.uint8))
    with pytest.raises(DataError, match=r"\(3, 97\)"):
        load_binarized_mnist("train", data_dir=tmp_path)
    with pytest.raises(DataError, match="'valid'"):
        load_binarized_mnist("valid", data_dir=tmp_path)


def test_npz_that_is_not_an_archive(tmp_path):
    (tmp_path / data.MNIST_NPZ).write_bytes(b"not a zip file")
    with pytest.raises(DataError, match="binarized_mnist.npz is damaged or not an .npz archive") as info:
        load_binarized_mnist("train", data_dir=tmp_path)
    assert "allow_pickle" not in str(info.value) and "\n" not in str(info.value)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.99])
def test_truncated_npz_is_reported_as_damaged(tmp_path, keep):
    """A download or copy cut short: one line naming the file (numpy and zipfile raise BadZipFile, EOFError,
    zlib errors or a ValueError with a misleading allow_pickle hint, depending on where the cut falls)."""
    bits = np.random.default_rng(0).integers(0, 2, size=(40, 784), dtype=np.uint8)
    path = tmp_path / data.MNIST_NPZ
    data._write_packed_npz(path, {split: bits for split in data.SPLITS})
    whole = path.read_bytes()
    path.write_bytes(whole[: int(len(whole) * keep)])
    with pytest.raises(DataError, match=r"binarized_mnist.npz is damaged or not an .npz archive") as info:
        load_binarized_mnist("test", data_dir=tmp_path)
    assert str(path) in str(info.value) and "allow_pickle" not in str(info.value)


@pytest.mark.parametrize(
    "bad_value, problem", [("0.5", "not 0 or 1"), ("nan", "not finite"), ("2", "not 0 or 1")]
)
def test_amat_with_bad_values(tmp_path, bad_value, problem):
    rows = [["0"] * 784 for _ in range(3)]
    rows[2][17] = bad_value
    (tmp_path / "binarized_mnist_train.amat").write_text("\n".join(" ".join(r) for r in rows) + "\n")
    with pytest.raises(DataError, match=f"{problem} \\(first at row 2, column 17"):
        load_binarized_mnist("train", data_dir=tmp_path)


def test_amat_with_wrong_width(tmp_path):
    write_amat(tmp_path / "binarized_mnist_train.amat", np.zeros((2, 100), dtype=int))
    with pytest.raises(DataError, match="784"):
        load_binarized_mnist("train", data_dir=tmp_path)


def test_validate_binary():
    x = torch.zeros(7, 20)
    x[5, 17] = x[6, 0] = x[6, 3] = 0.5
    with pytest.raises(DataError) as info:
        validate_binary(x, name="batch")
    assert str(info.value) == (
        "batch: 3 entries are not 0 or 1 (first at row 5, column 17, value 0.5); "
        "a Bernoulli likelihood needs binary data"
    )
    x = torch.ones(2, 3, dtype=torch.float64)
    x[1, 2] = float("nan")
    with pytest.raises(DataError, match=r"1 entry is not finite \(first at row 1, column 2, value nan\)"):
        validate_binary(x)
    for bad in (torch.ones(4), torch.ones(2, 3, dtype=torch.int64), np.ones((2, 3)), torch.ones(0, 3)):
        with pytest.raises(DataError):
            validate_binary(bad)
    good = validate_binary(torch.ones(3, 2, dtype=torch.float64).t())
    assert good.dtype == torch.float64 and good.is_contiguous() and good.shape == (2, 3)


def test_validate_continuous():
    x = torch.rand(4, 5)
    assert torch.equal(validate_continuous(x), x)
    x[3, 1] = float("inf")
    with pytest.raises(DataError, match=r"not finite \(first at row 3, column 1, value inf\)"):
        validate_continuous(x)
    with pytest.raises(DataError, match="2-D"):
        validate_continuous(torch.rand(2, 3, 4))


def test_unknown_name_or_split():
    with pytest.raises(DataError, match="'cifar'.*binarized_mnist, fashion_mnist, digits, digits_continuous"):
        load_dataset("cifar", "train")
    with pytest.raises(DataError, match="'validation'.*train, valid, test"):
        load_dataset("digits", "validation")
    with pytest.raises(DataError, match="'dev'.*train, valid, test"):
        load_binarized_mnist("dev")
    assert torch.equal(load_dataset("digits_uint8", "valid"), load_digits_uint8("valid"))


# --------------------------------------------------------------------------------------------
# seeded_subset
# --------------------------------------------------------------------------------------------


def test_seeded_subset():
    idx = seeded_subset(10000, 500, seed=1)
    assert idx.dtype == torch.int64 and idx.shape == (500,)
    assert torch.equal(idx, seeded_subset(10000, 500, seed=1))
    assert not torch.equal(idx, seeded_subset(10000, 500, seed=2))
    assert len(idx.unique()) == 500 and torch.all(idx[1:] > idx[:-1])
    assert idx.min() >= 0 and idx.max() < 10000
    assert not torch.equal(idx, torch.arange(500))
    assert torch.equal(seeded_subset(5, 5, seed=0), torch.arange(5))
    for n in (0, 10001):
        with pytest.raises(DataError, match=f"n={n}"):
            seeded_subset(10000, n, seed=0)
