"""Tests of the tutorial's 2-D toy densities and of CIFAR-10 loading (pyro_vaegap.data). Offline, fast."""
import math
import os
import pickle

import numpy as np
import pytest
import torch

from pyro_vaegap import data
from pyro_vaegap.data import (TOY_DATASETS, TOY_ENTROPY_BITS, DataError, load_dataset, sample_toy,
                              toy_entropy_numerical, toy_log_density)
from pyro_vaegap.train import TrainConfig

N = 200_000


def draw(name, n=N, seed=0):
    return sample_toy(name, n, np.random.default_rng(seed))


def test_8gaussians_support_and_moments():
    x = draw("8gaussians")
    # every point is within 6 std of one of the 8 centres, and each centre gets ~1/8 of the points
    d = np.linalg.norm(x[:, None] - data._g8_centres()[None], axis=-1)
    assert d.min(1).max() < 6 * data.G8_STD * math.sqrt(2)
    np.testing.assert_allclose(np.bincount(d.argmin(1), minlength=8) / N, 1 / 8, atol=0.005)
    # mean 0, covariance (r²/2 + s²) I: the centres on a circle contribute r²/2 per axis
    var = data.G8_RADIUS**2 / 2 + data.G8_STD**2
    np.testing.assert_allclose(x.mean(0), 0, atol=5 * math.sqrt(var / N))
    np.testing.assert_allclose(np.cov(x.T), var * np.eye(2), atol=0.002)


def test_checkerboard_support_moments_and_entropy():
    x = draw("checkerboard")
    assert np.abs(x).max() <= 0.5
    cells = np.floor(4 * x)
    assert np.all(cells.sum(1) % 2 == 0)  # only the 8 cells with i + j even
    np.testing.assert_allclose(np.bincount((cells[:, 0] + 2).astype(int) * 4 + (cells[:, 1] + 2).astype(int),
                                           minlength=16)[[0, 2, 5, 7, 8, 10, 13, 15]] / N, 1 / 8, atol=0.005)
    # each coordinate is U(-1/2, 1/2) (variance 1/12); cell centres give covariance 2/8 / 16 = 1/64
    np.testing.assert_allclose(np.cov(x.T), [[1 / 12, 1 / 64], [1 / 64, 1 / 12]], atol=0.002)
    # p = 2 on the support: H = -E log2 p = -1 bit exactly, from the samples and from the constant
    assert np.all(toy_log_density("checkerboard", x) == math.log(2))
    assert TOY_ENTROPY_BITS["checkerboard"] == -1.0 and toy_entropy_numerical("checkerboard") == (-1.0, 0.0)
    assert toy_log_density("checkerboard", np.array([[0.1, -0.1], [0.7, 0.0]]))[0] == -np.inf


def test_spirals_support_and_moments():
    x = draw("2spirals", 20_000)
    r_max = data.SPIRAL_TURN / 3 * data.TOY_SCALE
    assert np.linalg.norm(x, axis=1).max() < r_max + 6 * data.SPIRAL_STD
    np.testing.assert_allclose(x.mean(0), 0, atol=0.01)  # the two arms are mirror images
    # the distance to the nearer arm's curve is noise of std SPIRAL_STD per coordinate
    t = np.linspace(0, data.SPIRAL_TURN, 4000)
    curve = data._spiral_curve(t)
    both = np.concatenate([curve, -curve])
    d2 = ((x[:500, None] - both[None]) ** 2).sum(-1).min(1)
    assert d2.mean() < 2 * data.SPIRAL_STD**2 * 1.1  # E|noise|² = 2σ²; the nearest point is a bit closer


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_log_density_integrates_to_one(name):
    axis = np.linspace(-0.65, 0.65, 201)
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    p = np.exp(toy_log_density(name, np.stack([xx.ravel(), yy.ravel()], 1), quadrature_points=600))
    # the checkerboard's edges make the Riemann sum exact only to O(h) per edge
    assert abs(p.sum() * (axis[1] - axis[0]) ** 2 - 1) < (0.02 if name == "checkerboard" else 1e-3)


def test_8gaussians_entropy_constant_reproduced():
    h, err = toy_entropy_numerical("8gaussians", grid=801)
    assert abs(h - TOY_ENTROPY_BITS["8gaussians"]) < 1e-5 and err < 1e-5


def test_toy_splits_fixed_and_registered():
    a, b = load_dataset("8gaussians", "test"), load_dataset("8gaussians", "test")
    assert a.shape == (5000, 2) and a.dtype == torch.float32 and torch.equal(a, b)
    assert not torch.equal(load_dataset("8gaussians", "valid"), a)
    assert load_dataset("2spirals", "train").shape == (50_000, 2)
    TrainConfig(dataset="8gaussians", model="gaussian", latent_dim=2)  # accepted


def test_toy_bad_input():
    with pytest.raises(DataError, match="unknown toy dataset 'moons'"):
        sample_toy("moons", 3, np.random.default_rng(0))
    with pytest.raises(DataError, match="n=0"):
        sample_toy("8gaussians", 0, np.random.default_rng(0))
    with pytest.raises(DataError, match=r"shape \(N, 2\)"):
        toy_log_density("8gaussians", np.zeros((3, 3)))


def _fake_cifar(root, per_batch=4):
    """torchvision's on-disk CIFAR-10 layout (cifar-10-batches-py/) with tiny random batches."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        with open(folder / name, "wb") as f:
            pickle.dump({"data": rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8),
                         "labels": list(rng.integers(0, 10, per_batch))}, f)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"c{i}" for i in range(10)]}, f)
    return folder


@pytest.fixture
def fake_cifar(tmp_path, monkeypatch):
    import torchvision.datasets.cifar

    _fake_cifar(tmp_path)
    # the fake files cannot match torchvision's MD5 sums, so its integrity check only asks that each
    # file exists; everything else is torchvision's own reader
    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", lambda path, md5=None: os.path.isfile(path))
    monkeypatch.setattr(data, "CIFAR10_VALID_SIZE", 5)
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    return tmp_path


def test_cifar10_from_torchvision_files(fake_cifar):
    train = load_dataset("cifar10", "train", data_dir=fake_cifar)
    valid = load_dataset("cifar10", "valid", data_dir=fake_cifar)
    test = load_dataset("cifar10", "test", data_dir=fake_cifar)
    assert train.shape == (15, 3072) and valid.shape == (5, 3072) and test.shape == (4, 3072)
    assert train.dtype == torch.uint8
    # channel-major: the first 1024 values are the red plane of the first image, row-major
    first = pickle.load(open(fake_cifar / "cifar-10-batches-py" / "data_batch_1", "rb"))["data"][0]
    assert torch.equal(train[0], torch.from_numpy(first))


def test_cifar10_missing(tmp_path, monkeypatch):
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    with pytest.raises(DataError, match="CIFAR-10 not found"):
        load_dataset("cifar10", "test", data_dir=tmp_path / "nowhere")
