r"""Trained models shipped with the package, loaded by name.

Training Cremer et al.'s MNIST models at the authors' protocol takes hours of CPU (3,280 epochs); a user who
wants to evaluate a new guide on *those* models should not have to repeat it. A shipped model is one file,
``<name>.pt`` beside this module: the model's and the amortized guide's weights (no optimizer state), the
training config, the training log and the provenance of the run (commit, versions), and a **check**: the mean
ELBO :math:`\bar L[q] = \frac1n \sum_n \frac1S \sum_s \log w_{sn}` on named points, with its Monte Carlo
standard error

.. math:: \mathrm{se} = \frac1n \Big(\sum_n \hat\sigma_n^2 / S\Big)^{1/2},

:math:`\hat\sigma_n^2` the sample variance of point :math:`n`'s log-weights. A fresh estimate on the same points
with other draws differs from it by a normal error of standard deviation :math:`\sqrt2\,\mathrm{se}`, which is
what :func:`verify` tests, so a file that loads into other networks (or other code) is caught.

    >>> from pyro_vaegap.pretrained import available, load
    >>> available()                                   # doctest: +SKIP
    >>> model, guide, config = load("cremer2018_mnist_ffg")   # doctest: +SKIP

Files are written by :func:`export` (``python -m pyro_vaegap.pretrained export --run RUN --name NAME``) from a
finished training run folder.
"""
from __future__ import annotations

import math
from pathlib import Path

import torch

from ..data import DYNAMIC_DATASETS, load_dataset
from ..estimators.traces import log_weights
from ..utils import ConfigError, atomic_torch_save, provenance

#: where the shipped files live (package data)
HERE = Path(__file__).resolve().parent
FORMAT = 1
_KEYS = ("format", "name", "config", "data_dim", "model", "guide", "log", "run_provenance", "check")


def available(directory=None) -> list[str]:
    """Names of the shipped models (the ``*.pt`` files of ``directory``, default this package's)."""
    return sorted(p.stem for p in Path(directory or HERE).glob("*.pt"))


def _path(name: str, directory=None) -> Path:
    names = available(directory)
    if name not in names:
        raise ConfigError(f"no shipped model named {name!r}; available: {', '.join(names) or 'none'}")
    return Path(directory or HERE) / f"{name}.pt"


def read(name: str, directory=None) -> dict:
    """The contents of the shipped file ``name`` (see the module docstring)."""
    path = _path(name, directory)
    try:
        blob = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - a damaged file raises any of several types
        raise ConfigError(f"{path} is damaged ({type(e).__name__}); reinstall the package") from e
    missing = [k for k in _KEYS if not isinstance(blob, dict) or k not in blob]
    if missing:
        raise ConfigError(f"{path} is not a shipped model of this package (it lacks {', '.join(missing)})")
    return blob


def load(name: str, device=None, directory=None):
    """``(model, guide, config)`` of the shipped model ``name``, in eval mode, on ``device`` (default cpu)."""
    from ..runs import TrainConfig
    from ..training import build_guide, build_model

    blob = read(name, directory)
    cfg = TrainConfig.from_dict(blob["config"])
    model = build_model(cfg, blob["data_dim"])
    guide = build_guide(cfg, model)
    model.load_state_dict(blob["model"])
    guide.load_state_dict(blob["guide"])
    device = torch.device(device or "cpu")
    return model.to(device).eval(), guide.to(device).eval(), cfg


def check_points(cfg, split: str, num_points: int) -> torch.Tensor:
    """The first ``num_points`` rows of ``split`` of the model's data set (the points of the check)."""
    if cfg.dataset in DYNAMIC_DATASETS and split == "train":
        # its training rows are grey levels that training binarizes anew at each use: no fixed points to check on
        raise ConfigError(f"split='train' of {cfg.dataset!r} holds grey levels, not the bits the model scores: "
                          "check on 'valid' or 'test' (binarized once with a fixed seed)")
    x = load_dataset(cfg.dataset, split, data_dir=cfg.data_dir)
    if not 1 <= num_points <= x.shape[0]:
        raise ConfigError(f"num_points={num_points} is not allowed: expected 1..{x.shape[0]}")
    return x[:num_points]


@torch.no_grad()
def mean_elbo(model, guide, x: torch.Tensor, num_samples: int, seed: int, chunk: int = 100) -> tuple[float, float]:
    """``(mean ELBO, its Monte Carlo standard error)`` over the rows of ``x`` with ``num_samples`` draws each."""
    torch.manual_seed(seed)
    means, variances = [], []
    for s in range(0, x.shape[0], chunk):
        lw = log_weights(model, guide, x[s:s + chunk], num_samples)  # (S, n)
        means.append(lw.mean(0))
        variances.append(lw.var(0))
    n = x.shape[0]
    return float(torch.cat(means).mean()), math.sqrt(float(torch.cat(variances).sum()) / num_samples) / n


def export(run_dir, name: str, directory=None, split: str = "train", num_points: int = 1000,
           num_samples: int = 100, seed: int = 0) -> Path:
    """Write ``<directory>/<name>.pt`` from the finished run ``run_dir``, with its check (module docstring)."""
    import json

    from ..runs import load_run, read_checkpoint

    ckpt = read_checkpoint(run_dir)
    if ckpt["epoch"] < ckpt["config"]["epochs"]:
        raise ConfigError(f"{run_dir} is not finished ({ckpt['epoch']} of {ckpt['config']['epochs']} epochs): "
                          "ship a finished run")
    model, guide, cfg = load_run(run_dir)
    x = check_points(cfg, split, num_points)
    value, se = mean_elbo(model, guide, x, num_samples, seed)
    try:
        run_provenance = json.loads((Path(run_dir) / "config.json").read_text())
        run_provenance = {k: v for k, v in run_provenance.items() if k != "config"}
    except (OSError, ValueError):
        run_provenance = {}
    blob = {"format": FORMAT, "name": name, "config": cfg.to_dict(), "data_dim": ckpt["data_dim"],
            "model": ckpt["model"], "guide": ckpt["guide"], "log": ckpt["log"], "run_provenance": run_provenance,
            "check": {"split": split, "points": "first", "num_points": num_points, "num_samples": num_samples,
                      "seed": seed, "mean_elbo": value, "se": se, "exported_with": provenance()}}
    path = Path(directory or HERE) / f"{name}.pt"
    atomic_torch_save(path, blob)
    return path


def verify(name: str, seed: int = 1, z: float = 4.0, directory=None) -> dict:
    """Recompute the check of the shipped model ``name`` with other draws (``seed``): ``{"recorded", "now",
    "tolerance", "ok"}``, ``ok`` when they differ by less than ``z`` standard deviations of the difference."""
    blob = read(name, directory)
    model, guide, cfg = load(name, directory=directory)
    check = blob["check"]
    x = check_points(cfg, check["split"], check["num_points"])
    now, se = mean_elbo(model, guide, x, check["num_samples"], seed)
    tolerance = z * math.hypot(check["se"], se)
    return {"recorded": check["mean_elbo"], "now": now, "tolerance": tolerance,
            "ok": abs(now - check["mean_elbo"]) < tolerance}
