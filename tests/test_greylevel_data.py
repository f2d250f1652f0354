"""Tests of the grey-level image sets (pyro_vaegap.data.torchvision_images) on tiny fake copies written in
torchvision's own on-disk formats: idx files, Omniglot's PNG folders, SVHN's .mat files, CIFAR-10's
pickled batches, CelebA's image folder and text files. Offline and fast.

torchvision checks the MD5 sums of Omniglot's zip files, SVHN's .mat files, CIFAR-10's batches and
CelebA's text files; fakes cannot match them, so each test replaces that check by "the file exists"
(as tests/test_tutorial_data.py does for CIFAR-10). Everything else, the readers included, is
torchvision's own code.
"""
import importlib
import os
import pickle
import struct

import numpy as np
import pytest
import torch
from PIL import Image

from pyro_vaegap import data
from pyro_vaegap.cli import main
from pyro_vaegap.data import DataError, load_dataset
from conftest import SHARED_DATA
from test_tutorial_data import _fake_cifar  # tests/ is on sys.path under pytest


def _file_exists(path, md5=None):
    return os.path.isfile(path)


def _fake_copy(monkeypatch, module, write, root):
    """``write(root)``'s fake copy, with the MD5 check of ``torchvision.datasets.<module>`` reduced to
    "the file exists" (see the module docstring)."""
    monkeypatch.setattr(importlib.import_module(f"torchvision.datasets.{module}"), "check_integrity", _file_exists)
    return write(root)


@pytest.fixture(autouse=True)
def isolated_search_path(tmp_path, monkeypatch):
    """Only the directories a test passes are searched: no $PYRO_VAEGAP_DATA, an empty home."""
    monkeypatch.delenv(data.DATA_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _load_splits(name, root):
    """``({split: shape}, {split: tensor})`` of every split of ``name`` read from ``root``; every split is
    checked to be float32 with values in [0, 1]."""
    x = {split: load_dataset(name, split, data_dir=root) for split in data.SPLITS}
    for v in x.values():
        assert v.dtype == torch.float32 and v.min() >= 0 and v.max() <= 1
    return {s: tuple(v.shape) for s, v in x.items()}, x


def _write_idx(path, array):
    """An idx file as torchvision reads it: magic (0, 0, type 0x08 = uint8, ndim), big-endian sizes, data."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def _fake_mnist(root, class_name, n_train=12, n_test=4):
    """torchvision's raw MNIST layout (<class_name>/raw/, uncompressed idx files); image i is filled with
    the value i (train) or 100 + i (test), except pixel (0, 27), which is 255."""
    raw = root / class_name / "raw"
    for prefix, n, offset in (("train", n_train, 0), ("t10k", n_test, 100)):
        images = np.broadcast_to(offset + np.arange(n, dtype=np.uint8)[:, None, None], (n, 28, 28)).copy()
        images[:, 0, 27] = 255
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", images)
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", np.arange(n) % 10)
    return root


@pytest.mark.parametrize("name,class_name", [("mnist_continuous", "MNIST"),
                                             ("fashion_mnist_continuous", "FashionMNIST")])
def test_mnist_like_from_torchvision_files(tmp_path, name, class_name):
    root = _fake_mnist(tmp_path / "data", class_name)
    shapes, x = _load_splits(name, root)
    # the last sixth of the training images is valid: 12 -> 10 / 2, as 60,000 -> 50,000 / 10,000
    assert shapes == {"train": (10, 784), "valid": (2, 784), "test": (4, 784)}
    # row-major: pixel (0, 27) is column 27; valid starts at training image 10, test at test image 0
    assert x["valid"][0, 0] == pytest.approx(10 / 255) and x["valid"][0, 27] == 1.0
    assert x["test"][3, 100] == pytest.approx(103 / 255) and x["train"][0, 27] == 1.0
    assert torch.equal(x["train"][:, 0], torch.arange(10) / 255.0)


def test_mnist_like_from_compressed_raw_files_with_torchvisions_md5(tmp_path, monkeypatch):
    """Only the ``.gz`` raw files, as the shared data folder holds them (read-only: torchvision would extract
    them only when it may download): read directly, after torchvision's md5 check, which refuses a file whose
    md5 is not MNIST's."""
    import gzip
    import shutil

    root = _fake_mnist(tmp_path / "data", "MNIST")
    for f in (root / "MNIST" / "raw").iterdir():
        with open(f, "rb") as src, gzip.open(f"{f}.gz", "wb") as dst:
            shutil.copyfileobj(src, dst)
        f.unlink()
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: md5 differs from torchvision's f68b3c2d"):
        load_dataset("mnist_continuous", "train", data_dir=root)
    monkeypatch.setattr("torchvision.datasets.utils.check_integrity", _file_exists)
    shapes, x = _load_splits("mnist_continuous", root)
    assert shapes == {"train": (10, 784), "valid": (2, 784), "test": (4, 784)}
    assert torch.equal(x["train"][:, 0], torch.arange(10) / 255.0) and x["test"][3, 100] == pytest.approx(103 / 255)


@pytest.mark.skipif(not (SHARED_DATA / "MNIST" / "raw" / "train-images-idx3-ubyte.gz").is_file(),
                    reason="the shared data folder's MNIST/raw is absent")
def test_shared_full_mnist_train_split_is_real_mnist():
    """The full grey-level MNIST of the shared folder, read from its .gz files: 60,000 training images (50,000
    train + 10,000 valid), and test images equal to mnist_test.npz's."""
    train = load_dataset("mnist_continuous", "train", data_dir=SHARED_DATA)
    valid = load_dataset("mnist_continuous", "valid", data_dir=SHARED_DATA)
    assert train.shape == (50_000, 784) and valid.shape == (10_000, 784)
    test = load_dataset("mnist_continuous", "test", data_dir=SHARED_DATA)
    npz = np.load(SHARED_DATA / "mnist_test.npz")["images"]
    assert np.array_equal((test.numpy() * 255).round().astype(np.uint8), npz)


def test_mnist_test_split_from_shared_npz(tmp_path):
    """mnist_test.npz stands in for MNIST's test split only; asking for train names it in the error."""
    images = np.random.default_rng(0).integers(0, 256, (5, 784), dtype=np.uint8)
    np.savez(tmp_path / "mnist_test.npz", images=images, labels=np.arange(5, dtype=np.uint8))
    test = load_dataset("mnist_continuous", "test", data_dir=tmp_path)
    assert test.dtype == torch.float32 and torch.equal(test, torch.from_numpy(images).float() / 255)
    with pytest.raises(DataError, match="grey-level MNIST not found.*mnist_test.npz.*only the 10,000 test"):
        load_dataset("mnist_continuous", "train", data_dir=tmp_path)


@pytest.mark.skipif(not (SHARED_DATA / "mnist_test.npz").is_file() or not (SHARED_DATA / data.MNIST_NPZ).is_file(),
                    reason="the shared data folder (mnist_test.npz, binarized_mnist.npz) is absent")
def test_shared_mnist_test_split_is_real_mnist():
    """The shipped grey-level test images: the test-set statistics usually quoted for MNIST (mean 0.1325,
    std 0.3105 of pixel / 255, rounded), and the binarized test set, Bernoulli(pixel / 255) draws of the
    same images, has the same mean up to its Monte Carlo error (sd <= sqrt(0.25 / 7.84e6) = 1.8e-4;
    tolerance 5e-4)."""
    x = load_dataset("mnist_continuous", "test", data_dir=SHARED_DATA)
    assert x.shape == (10_000, 784) and x.dtype == torch.float32
    assert float(x.mean()) == pytest.approx(0.1325, abs=5e-5) and float(x.std()) == pytest.approx(0.3105, abs=5e-5)
    binarized = load_dataset("binarized_mnist", "test", data_dir=SHARED_DATA)
    assert float(binarized.mean()) == pytest.approx(float(x.mean()), abs=5e-4)


def test_mnist_test_npz_malformed(tmp_path):
    np.savez(tmp_path / "mnist_test.npz", images=np.zeros((5, 28, 28), dtype=np.uint8))
    with pytest.raises(DataError, match=r"mnist_test.npz: array 'images' has shape \(5, 28, 28\)"):
        load_dataset("mnist_continuous", "test", data_dir=tmp_path)


def _fake_omniglot(root, n_background=20, n_evaluation=3):
    """torchvision's Omniglot layout: omniglot-py/images_{background,evaluation}.zip (checked for
    existence only, see the module docstring) and the unpacked <alphabet>/<character>/<n>.png folders.
    Background image k (k-th in sorted path order) is filled with grey value 10 k; evaluation image 0 has
    black ink on its top 15 rows and white paper below."""
    base = root / "omniglot-py"
    for folder, n in (("images_background", n_background), ("images_evaluation", n_evaluation)):
        for k in range(n):
            path = base / folder / f"alpha{k // 6}" / f"char{k // 3}" / f"{k:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            pixels = np.full((105, 105), 10 * k, dtype=np.uint8)
            if folder == "images_evaluation":
                pixels[:] = 255
                pixels[:15] = 0 if k == 0 else 255
            Image.fromarray(pixels, mode="L").save(path)
        (base / f"{folder}.zip").write_bytes(b"")
    return root


def test_omniglot_from_torchvision_files(tmp_path, monkeypatch):
    root = _fake_copy(monkeypatch, "omniglot", _fake_omniglot, tmp_path / "data")
    shapes, x = _load_splits("omniglot", root)
    assert shapes == {"train": (18, 784), "valid": (2, 784), "test": (3, 784)}
    # a constant image stays constant under area averaging, inverted: 1 - 10 k / 255; train and valid
    # partition the background set
    levels = torch.cat([x["train"], x["valid"]])
    assert torch.equal(levels, levels[:, :1].expand(-1, 784))
    assert sorted(torch.round((1 - levels[:, 0]) * 255).long().tolist()) == [10 * k for k in range(20)]
    # 105 / 28 = 3.75 input rows per output row, so the 15 inked rows are exactly output rows 0-3
    ink = x["test"][0].reshape(28, 28)
    assert torch.equal(ink[:4], torch.ones(4, 28)) and torch.equal(ink[4:], torch.zeros(24, 28))
    assert torch.equal(x["test"][1:], torch.zeros(2, 784))


def _fake_svhn(root, n_train=40, n_test=3):
    """SVHN's .mat files: X uint8 (32, 32, 3, N) (height, width, channel, image), y (N, 1) with 10 for 0."""
    from scipy.io import savemat

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, n in (("train", n_train), ("test", n_test)):
        savemat(root / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                                              "y": rng.integers(1, 11, (n, 1))})
    return root


def test_svhn_from_torchvision_files(tmp_path, monkeypatch):
    from scipy.io import loadmat

    root = _fake_copy(monkeypatch, "svhn", _fake_svhn, tmp_path / "data")
    shapes, x = _load_splits("svhn", root)
    # valid: the last 5 % (40 // 20 = 2) of the training images
    assert shapes == {"train": (38, 3072), "valid": (2, 3072), "test": (3, 3072)}
    # channel-major: each row is image i's red plane (row-major), then green, then blue
    X = loadmat(root / "train_32x32.mat")["X"]
    for split, i in (("train", 0), ("valid", 1)):
        image = X[..., 38 * (split == "valid") + i]  # (32, 32, 3)
        expected = torch.from_numpy(image.transpose(2, 0, 1).reshape(-1).astype(np.float32)) / 255
        assert torch.equal(x[split][i], expected)


def test_cifar10_continuous_is_cifar10_over_255(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "CIFAR10_VALID_SIZE", 5)
    folder = _fake_copy(monkeypatch, "cifar", _fake_cifar, tmp_path)
    first = pickle.load(open(folder / "data_batch_1", "rb"))["data"][0]
    shapes, x = _load_splits("cifar10_continuous", tmp_path)
    assert shapes == {"train": (15, 3072), "valid": (5, 3072), "test": (4, 3072)}
    assert torch.equal(x["train"][0], torch.from_numpy(first).float() / 255)


#: CelebA's text files besides list_eval_partition.txt, with the header torchvision skips (header=1):
#: a count line, then the column names; every data row is the image name and integers.
_CELEBA_TABLES = {"identity_CelebA.txt": (None, 1), "list_bbox_celeba.txt": ("x_1 y_1 width height", 4),
                  "list_landmarks_align_celeba.txt": ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y "
                                                      "leftmouth_x leftmouth_y rightmouth_x rightmouth_y", 10),
                  "list_attr_celeba.txt": (" ".join(f"attr{j}" for j in range(40)), 40)}

_CELEBA_COLOURS = [(10, 100, 200), (0, 50, 255), (30, 60, 90), (255, 0, 7), (128, 64, 32), (1, 2, 3), (254, 253, 0)]


def _fake_celeba(root, partition=(0, 0, 0, 1, 1, 2, 2)):
    """torchvision's CelebA layout: celeba/img_align_celeba/<000001>.jpg plus the five text files.
    Image i is 178 x 218 (width x height) like the aligned faces: white, except the centred 148 x 148
    square (columns 15-162, rows 35-182), filled with colour i. The images are PNG-encoded (PIL reads
    by content, not by suffix): JPEG's loss would blur the square's edge that the test checks. Every
    split has at least two images: torchvision's CelebA fails on a split of one (it iterates over a
    squeezed 0-d index tensor)."""
    base = root / "celeba"
    (base / "img_align_celeba").mkdir(parents=True)
    names = [f"{i + 1:06d}.jpg" for i in range(len(partition))]
    for name, colour in zip(names, _CELEBA_COLOURS):
        pixels = np.full((218, 178, 3), 255, dtype=np.uint8)
        pixels[35:183, 15:163] = colour
        Image.fromarray(pixels, mode="RGB").save(base / "img_align_celeba" / name, format="PNG")
    (base / "list_eval_partition.txt").write_text("".join(f"{n} {p}\n" for n, p in zip(names, partition)))
    for file, (header, width) in _CELEBA_TABLES.items():
        rows = [f"{n} " + " ".join(["1"] * width) for n in names]
        lines = rows if header is None else [str(len(names)), header] + rows
        (base / file).write_text("\n".join(lines) + "\n")
    (base / "img_align_celeba.zip").write_bytes(b"")  # listed by torchvision, but not checked
    return root


def test_celeba_from_torchvision_files(tmp_path, monkeypatch):
    root = _fake_copy(monkeypatch, "celeba", _fake_celeba, tmp_path / "data")
    x = {split: load_dataset("celeba", split, data_dir=root) for split in data.SPLITS}
    side = data.CELEBA_SIDE
    assert {s: tuple(v.shape) for s, v in x.items()} == {"train": (3, 3 * side * side), "valid": (2, 3 * side * side),
                                                       "test": (2, 3 * side * side)}
    # the crop is exactly the coloured square: not one white pixel is averaged in; channel-major rows
    for split, i, row in (("train", 0, 0), ("train", 2, 2), ("valid", 3, 0), ("valid", 4, 1), ("test", 6, 1)):
        row = x[split][row]
        expected = torch.tensor(_CELEBA_COLOURS[i], dtype=torch.float32).repeat_interleave(side * side) / 255
        assert row.dtype == torch.float32 and torch.equal(row, expected)


def test_celeba_image_smaller_than_crop(tmp_path, monkeypatch):
    root = _fake_copy(monkeypatch, "celeba", _fake_celeba, tmp_path / "data")
    Image.new("RGB", (100, 120)).save(root / "celeba" / "img_align_celeba" / "000001.jpg", format="PNG")
    with pytest.raises(DataError, match=r"000001.jpg: image is 100 x 120; the centre crop needs at least 148"):
        load_dataset("celeba", "train", data_dir=root)


@pytest.mark.parametrize("name,looked_for", [
    ("mnist_continuous", "MNIST/raw"), ("fashion_mnist_continuous", "FashionMNIST/raw"),
    ("omniglot", "omniglot-py/"), ("svhn", "train_32x32.mat"), ("cifar10_continuous", "cifar-10-batches-py/"),
    ("celeba", "celeba/")])
def test_missing_files_name_directories_and_fixes(tmp_path, name, looked_for):
    with pytest.raises(DataError) as info:
        load_dataset(name, "train", data_dir=tmp_path / "nowhere")
    message = str(info.value)
    assert "not found" in message and looked_for in message and str(tmp_path / "nowhere") in message
    assert "(does not exist)" in message and "--download" in message and data.DATA_ENV in message


@pytest.mark.parametrize("name,make,channels", [("mnist_continuous", lambda root: _fake_mnist(root, "MNIST"), 1),
                                                ("svhn", _fake_svhn, 3)])
def test_train_gaussian_conv_on_greylevel_set(tmp_path, monkeypatch, capsys, name, make, channels):
    """vaegap train with GPVAE's decoder (homoscedastic Gaussian, fixed variance) and the conv nets, one
    epoch on a fake copy: a 1-channel 28 x 28 set and a 3-channel 32 x 32 one."""
    root = _fake_copy(monkeypatch, "svhn", make, tmp_path / "data")
    run = tmp_path / "run"
    argv = ["train", "--run-dir", str(run), "--dataset", name, "--data-dir", str(root), "--model", "gaussian",
            "--variance", "fixed", "--sigma2", "0.01", "--arch", "conv", "--epochs", "1", "--latent-dim", "2",
            "--hidden", "8", "--batch-size", "5", "--quiet"]
    assert main(argv) == 0, capsys.readouterr().err
    checkpoint = torch.load(run / "checkpoint.pt", weights_only=False)
    assert checkpoint["data_dim"] == channels * (28 if channels == 1 else 32) ** 2
    assert np.isfinite(checkpoint["log"][-1]["train_objective"])


@pytest.mark.parametrize("name,model", [("fashion_mnist", "bernoulli"), ("cifar10", "dlogistic")])
def test_cremer_gaps_on_other_datasets(tmp_path, monkeypatch, capsys, name, model):
    """experiments.cremer_gaps --dataset: the whole pipeline (training, AIS, IWAE, the local FFG) on a fake
    Fashion-MNIST and a fake CIFAR-10 in torchvision's formats; no paper column is claimed for them."""
    import json

    from experiments import cremer_gaps
    from test_data import write_fake_fashion_mnist

    root = tmp_path / "data"
    if name == "cifar10":
        monkeypatch.setattr(data, "CIFAR10_VALID_SIZE", 5)
        _fake_copy(monkeypatch, "cifar", _fake_cifar, root)
    else:
        root.mkdir()
        write_fake_fashion_mnist(root)
    out = tmp_path / "gaps"
    argv = ["--quick", "--dataset", name, "--data-dir", str(root), "--num-train", "10", "--num-points", "2",
            "--families", "ffg", "--run-dir", str(tmp_path / "run"), "--out", str(out)]
    assert cremer_gaps.main(argv) == 0, capsys.readouterr().err
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["meta"]["train_config"]["dataset"] == name and report["meta"]["train_config"]["model"] == model
    assert report["meta"]["paper"] is None and len(report["per_point"]["log_px"]) == 2
    assert np.isfinite(report["per_point"]["log_px"]).all() and np.isfinite(report["per_point"]["local:ffg"]).all()
