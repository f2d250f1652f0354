"""What the InfoVAE experiments share (``experiments/infovae_*.py``; Zhao, Song & Ermon, AAAI 2019).

The two objectives every experiment compares (:data:`OBJECTIVES`): the ELBO, and the MMD InfoVAE
:math:`\\mathcal L_{\\alpha,\\lambda}` with :math:`\\alpha = 0` (the per-datapoint KL keeps weight 1) and
the MMD of the aggregate posterior weighted :math:`\\alpha + \\lambda - 1 = \\lambda - 1`
(:mod:`pyro_vaegap.objectives.infovae`; RBF kernel with :math:`2\\sigma^2 = \\dim z`, the paper's). The binarized
MNIST models (:func:`mnist_config`) are the library's Bernoulli MLP VAE with an FFG encoder, trained by
:func:`pyro_vaegap.training.train` (a finished run folder is reused, an interrupted one resumes).
:func:`aggregate_summary` measures the aggregate posterior :math:`q(z)` of an encoder over a data set
(:mod:`pyro_vaegap.estimators.aggregate`).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..estimators.aggregate import aggregate_moments, encode, log_det_cov, sample_aggregate
from ..data import DYNAMIC_DATASETS, candidate_dirs, dynamic_binarize, load_dataset, seeded_subset
from ..objectives.infovae import MMDKernel, mmd
from ..runs.config import TrainConfig
from ..utils import ConfigError, stable_seed

from ..harness.options import Profiles, Setting, parse_args

#: objective name -> (label, TrainConfig fields given a λ and α)
OBJECTIVES = ("elbo", "mmd")
LABELS = {"elbo": "ELBO", "mmd": "MMD-VAE"}
COLORS = {"elbo": "tab:red", "mmd": "tab:blue"}


def objective_fields(objective: str, lambda_: float, alpha: float = 0.0) -> dict:
    """The :class:`~pyro_vaegap.runs.TrainConfig` fields of ``objective`` (``"elbo"`` or ``"mmd"``)."""
    if objective == "elbo":
        return {"objective": "elbo"}
    return {"objective": "infovae", "alpha": float(alpha), "lambda_": float(lambda_), "divergence": "mmd"}


#: the options of the binarized-MNIST models (:func:`mnist_settings`, :func:`add_mnist_args`)
MNIST_SETTINGS = {
    "latent_dim": Setting(int, "dim z"),
    "hidden": Setting(int, "width of the hidden layers of encoder and decoder"),
    "layers": Setting(int, "hidden layers of encoder and of decoder (ELU MLPs)"),
    "batch_size": Setting(int, "minibatch size (the MMD is over the minibatch)"),
    "lr": Setting(float, "Adam learning rate (constant)"),
    "num_valid": Setting(int, "validation images of the per-epoch validation ELBO (a seeded subset of the 10,000)"),
}


def mnist_settings(*names: str) -> dict:
    """The :class:`~pyro_vaegap.harness.options.Setting` of each named model option, for an experiment whose
    profiles set them."""
    return {n: MNIST_SETTINGS[n] for n in names}


def add_mnist_args(p, runs: str, latent_dim: int, hidden: int = 200, layers: int = 2,
                   profiles: Profiles | None = None):
    """Options of the binarized-MNIST models: data folder, run folders, network and training; an option that is a
    setting of ``profiles`` is left to them (its default is then the profile's)."""
    p.add_argument("--data-dir", default=None,
                   help="folder with binarized_mnist.npz and mnist_test.npz (else $PYRO_VAEGAP_DATA, then the cache)")
    p.add_argument("--runs", default=runs, help="folder of the training runs (one sub-folder per model; reused "
                                                "when finished, resumed when interrupted)")
    defaults = {"latent_dim": latent_dim, "hidden": hidden, "layers": layers, "batch_size": 100, "lr": 1e-3,
                "num_valid": 1000}
    for dest, s in MNIST_SETTINGS.items():
        if profiles is None or dest not in profiles.settings:
            p.add_argument("--" + dest.replace("_", "-"), type=s.type, default=defaults[dest], help=s.help)
    p.add_argument("--alpha", type=float, default=0.0, help="InfoVAE's alpha of the MMD model")


def epochs_for(steps: int, num_train: int, batch_size: int) -> int:
    """Epochs that make at least ``steps`` Adam steps over ``num_train`` images in batches of ``batch_size``."""
    per_epoch = -(-num_train // batch_size)
    return max(1, -(-steps // per_epoch))


def mnist_config(args, objective: str, num_train: int | None, epochs: int, lambda_: float) -> TrainConfig:
    """A Bernoulli MLP VAE with an FFG encoder on (a seeded subset of) binarized MNIST."""
    net = {"hidden": args.hidden, "layers": args.layers, "activation": "elu"}
    return TrainConfig(dataset="binarized_mnist", data_dir=args.data_dir, num_train=num_train, model="bernoulli",
                       latent_dim=args.latent_dim, hidden=args.hidden, decoder_layers=args.layers, activation="elu",
                       guide="ffg", guide_options=net, epochs=epochs, batch_size=args.batch_size, lr=args.lr,
                       num_valid=args.num_valid, seed=args.seed,
                       **objective_fields(objective, lambda_, args.alpha))


def training_images(cfg: TrainConfig) -> torch.Tensor:
    """The training images of ``cfg``: the same seeded subset :func:`pyro_vaegap.training.train` uses. A dynamically
    binarized set's grey levels are binarized once here, seeded by ``stable_seed(cfg.seed, "training_images")``
    (one fixed draw, so a measure over the training images is repeatable)."""
    x = load_dataset(cfg.dataset, "train", data_dir=cfg.data_dir)
    x = x if cfg.num_train is None else x[seeded_subset(x.shape[0], cfg.num_train, cfg.seed)]
    return dynamic_binarize(x, stable_seed(cfg.seed, "training_images")) if cfg.dataset in DYNAMIC_DATASETS else x


def labelled_test_images(data_dir, num: int, seed: int, dataset: str = "binarized_mnist"
                         ) -> tuple[torch.Tensor, np.ndarray, torch.Tensor]:
    """``(x, labels, rows)``: a seeded random subset of ``num`` test images of ``dataset`` (``binarized_mnist``,
    its labels ``binarized_test_labels`` of ``mnist_test.npz``: exact, see the data README; or ``dynamic_mnist``,
    the test split binarized once with :data:`~pyro_vaegap.data.DYNAMIC_EVAL_SEED`, in MNIST's test order, with
    the labels of torchvision's ``t10k-labels`` file) with their digit classes."""
    if dataset not in ("binarized_mnist", "dynamic_mnist"):
        raise ConfigError(f"dataset={dataset!r} has no labelled test images here: choose binarized_mnist or "
                          "dynamic_mnist")
    x = load_dataset(dataset, "test", data_dir=data_dir)
    rows = seeded_subset(x.shape[0], num, seed)
    labels = binarized_test_labels(data_dir) if dataset == "binarized_mnist" else mnist_test_labels(data_dir)
    return x[rows], labels[rows.cpu().numpy()], rows


def mnist_test_labels(data_dir) -> np.ndarray:
    """The digit class of every MNIST test image, in the order of the grey-level test split: torchvision's
    ``MNIST/raw/t10k-labels-idx1-ubyte`` (or its ``.gz``, read without extracting it) by torchvision's IDX reader."""
    import gzip
    import tempfile

    from torchvision.datasets.mnist import read_sn3_pascalvincent_tensor

    for folder in candidate_dirs(data_dir):
        raw = Path(folder) / "MNIST" / "raw" / "t10k-labels-idx1-ubyte"
        if raw.is_file():
            return read_sn3_pascalvincent_tensor(str(raw)).long().numpy().astype(int)
        if raw.with_suffix(".gz").is_file():
            with tempfile.NamedTemporaryFile(suffix="-idx1-ubyte") as tmp:
                tmp.write(gzip.decompress(raw.with_suffix(".gz").read_bytes()))
                tmp.flush()
                return read_sn3_pascalvincent_tensor(tmp.name).long().numpy().astype(int)
    raise ConfigError("MNIST/raw/t10k-labels-idx1-ubyte(.gz) was not found in "
                      f"{', '.join(map(str, candidate_dirs(data_dir)))}: pass --data-dir")


def binarized_test_labels(data_dir) -> np.ndarray:
    """The digit class of every row of the binarized test split, from ``mnist_test.npz``."""
    for folder in candidate_dirs(data_dir):
        path = Path(folder) / "mnist_test.npz"
        if path.is_file():
            with np.load(path) as f:
                return np.asarray(f["binarized_test_labels"]).astype(int)
    raise ConfigError("mnist_test.npz (labels of the binarized test split) was not found in "
                      f"{', '.join(map(str, candidate_dirs(data_dir)))}: pass --data-dir")


@torch.no_grad()
def aggregate_summary(guide, x: torch.Tensor, draws: int, seed: int, mmd_points: int = 2000) -> dict:
    r"""The aggregate posterior :math:`q(z) = \frac1N\sum_n q(z\mid x_n)` of the encoder over the rows of ``x``:

    * ``log_det_cov_draws``: :math:`\log\det` of the sample covariance of ``draws`` encoder draws per row
      (the paper's Fig. 2 measure; :math:`\log\det I = 0` for the prior);
    * ``log_det_cov_exact``: the same of the mixture's exact covariance (law of total variance), and its
      split into the spread of the means (``log_det_cov_means``) and the mean encoder variance
      (``mean_log_var``: :math:`\frac1N\sum_n\sum_k\log\sigma_{nk}^2`, the log-volume of a typical q(z|x));
    * ``cov_eigenvalues`` (exact covariance, descending), ``mean_norm`` :math:`\Vert\mathbb E\,z\Vert`;
    * ``mmd2``: the unbiased MMD² (RBF, :math:`2\sigma^2 = d`) between ``mmd_points`` aggregate draws and as
      many prior draws (0 when :math:`q(z) = p(z)`; its scale: about ±0.001 for equal distributions).
    """
    gen = torch.Generator().manual_seed(seed)
    loc, scale = encode(guide, x)
    mean, cov = aggregate_moments(loc, scale)
    z = sample_aggregate(loc, scale, draws, gen)
    centred = loc.double() - loc.double().mean(0)
    cov_means = centred.T @ centred / loc.shape[0]
    pick = torch.randperm(z.shape[0], generator=gen)[:mmd_points]
    # drawn on the CPU generator, then moved: the same draws on every device
    prior = torch.randn(pick.numel(), z.shape[1], generator=gen, dtype=z.dtype).to(z.device)
    m2 = mmd(z[pick], prior, MMDKernel("rbf", (1.0,)))
    eig = torch.linalg.eigvalsh(cov).flip(0)
    return {"num_rows": x.shape[0], "draws": draws,
            "log_det_cov_draws": log_det_cov(z), "log_det_cov_exact": float(torch.logdet(cov)),
            "log_det_cov_means": float(torch.logdet(cov_means)) if loc.shape[0] > loc.shape[1] else float("nan"),
            "mean_log_var": float((2 * scale.double().log()).sum(-1).mean()),
            "cov_eigenvalues": [float(v) for v in eig], "mean_norm": float(mean.norm()), "mmd2": float(m2)}


def parse_infovae_args(parser, argv, profiles: Profiles, *, nonneg=("alpha",), positive=(), own_runs: bool = True):
    """Parse and check an InfoVAE experiment's options (the chosen profile's settings where none is given,
    positivity, ``--lambda > 0``); the ``quick`` profile keeps its training runs under ``--out`` (with
    ``own_runs``), away from the real runs."""
    args = parse_args(parser, argv, nonneg=nonneg, positive=positive, profiles=profiles)
    if args.lambda_ is not None and not args.lambda_ > 0:
        parser.error(f"--lambda={args.lambda_} is not allowed: it must be > 0")
    if args.profile == "quick" and own_runs:
        args.runs = str(Path(args.out) / "runs")
    return args
