r"""Training a VAE (model + amortized guide) with Pyro's ELBOs, in Pyro's module-local idiom.

Objectives (``objective``: ``"elbo"``, ``"mean_field"``, ``"iwae"``, ``"infovae"``), annealing (``anneal``: ``"entropy"``
or ``"kl"``, the factor rising linearly from 0 to 1 over the first ``anneal_epochs`` epochs, per
minibatch) and free bits (``free_bits``) are the :class:`pyro.infer.ELBO` subclasses of
:mod:`pyro_vaegap.objectives` (InfoVAE: :mod:`pyro_vaegap.infovae`, with ``alpha``, ``lambda_``, ``divergence``
and the divergence's options, all ``None`` = not given unless ``objective="infovae"``; an adversarial
InfoVAE's critic is trained before each step by :func:`training_step` and saved in the checkpoint).

A step is Pyro's :class:`~pyro.infer.elbo.ELBOModule` idiom (:func:`make_loss`, :func:`training_step`):
``loss_fn = objective(model, guide)``, then ``loss = loss_fn(x) / B`` (the per-datapoint mean, so
``lr`` means the same thing for every batch size), ``loss.backward()`` and one ``torch.optim.Adam``
step over the parameters of model and guide. Not :class:`pyro.infer.SVI`: SVI finds the parameters
to optimize by capturing ``pyro.param`` sites, which are in Pyro's global parameter store, and this
package keeps :class:`~pyro.nn.PyroModule` parameters module-local (two guides of a gap report both
own a ``loc``). It costs nothing: on the paper's MNIST architecture, batch 100, one thread, an
``ELBOModule`` step takes 0.97x the time of an SVI step with the global store (8.4 vs 8.7 ms) and
1.28x that of a hand-written PyTorch step of the same networks, the difference being Pyro's tracing
(``benchmarks/bench_train_step.py``, ``docs/benchmarks.md``).

Optimizer: Adam. ``lr_schedule="burda"`` is Burda et al.'s schedule, learning rate
:math:`10^{-3}\cdot 10^{-i/7}` for :math:`3^i` epochs, :math:`i = 0..7` (3280 epochs in all); the rate
is changed in place in the optimizer's parameter groups, so Adam's moments carry over.
``lr_schedule="cosine"``: :math:`\mathrm{lr}\cdot\tfrac12(1 + \cos(\pi e / E))` in 0-based epoch ``e`` of
``E = epochs`` (depends on ``epochs``, so extending a finished run by resuming changes its schedule).

A new encoder for a fixed model: ``decoder_from`` names a finished run folder whose model weights are loaded
(:func:`frozen_decoder`, which checks that the run's model options, :data:`MODEL_FIELDS`, equal the config's)
and frozen (``requires_grad`` off, so Adam holds only the guide's parameters); the run's checkpoint then holds
that decoder unchanged, and resuming it needs the decoder's folder no more.

A run lives in a folder: ``checkpoint.pt`` (parameters, optimizer state, epoch, every RNG state, log,
config) written atomically after every epoch, so an interrupted run resumes to exactly the result of
an uninterrupted one; ``log.csv`` (one row per epoch: objective, validation ELBO, learning rate,
annealing factor, seconds; an InfoVAE run adds its divergence estimate, see
:data:`pyro_vaegap.infovae.LOG_COLUMN`); and ``config.json`` (config, seed, package versions). The checkpoint is the
one source of truth: ``config.json`` is a readable copy of its config, rewritten when a resumed run
extends ``epochs``, never read back; :func:`load_run` says so on stderr when the two disagree or the
copy is missing or invalid. The folder is locked (:class:`~pyro_vaegap.utils.FolderLock`) while a
training writes it, so a second training into it is refused instead of overwriting it.
"""
from __future__ import annotations

import csv
import dataclasses
import io
import json
import math
import os
import random
import time
import warnings
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from . import infovae
from .data import DYNAMIC_DATASETS, DataError, dynamic_binarize, load_dataset, seeded_subset, validate_continuous
from .models import BernoulliVAE, DiscretizedLogisticVAE, GaussianVAE, MSEGaussianVAE, PixelCNNVAE
from .networks import ARCHITECTURES
from .registry import get_family
from .objectives import Annealing, make_objective
from .traces import log_weights
from .utils import (ConfigError, ConfigWarning, FolderLock, atomic_torch_save, atomic_write_json, atomic_write_text,
                    check_choice, check_folder, check_positive_int, progress_bar, provenance, resolve_device,
                    set_seed, signals_held, stable_seed)

OBJECTIVES = ("elbo", "mean_field", "iwae", "infovae")
ANNEALING = ("none", "entropy", "kl")
LR_SCHEDULES = ("constant", "burda", "cosine")
#: what a run trains on: the training split, or training and validation splits together (Cremer et al.'s released
#: code trains its MNIST models on all 60,000 non-test images)
TRAIN_SPLITS = ("train", "train+valid")
#: the split of the per-epoch validation ELBO in log.csv (monitoring only: no choice is made by it)
VALID_SPLITS = ("valid", "test")
#: "mse": Gaussian with fixed σ² = 1/2 (the MSE-loss VAE; ignores ``variance``); "dlogistic": discretized
#: logistic over 8-bit pixels (uint8 data such as ``digits_uint8``); "pixelcnn": a gated PixelCNN over binary
#: square images (models.PixelCNNVAE; ``pixelcnn_layers``, ``pixelcnn_channels``; ignores the MLP decoder's options)
MODELS = ("bernoulli", "gaussian", "mse", "dlogistic", "pixelcnn")
BURDA_EPOCHS = sum(3 ** i for i in range(8))  # 3280
#: the TrainConfig fields that define the model (the decoder): a run's ``decoder_from`` must agree on all of them
MODEL_FIELDS = ("dataset", "model", "latent_dim", "hidden", "decoder_layers", "activation", "dense", "arch", "variance",
                "sigma2", "pixelcnn_layers", "pixelcnn_channels")


@dataclass
class TrainConfig:
    """Everything that defines a training run (saved in the run's checkpoint; ``config.json`` is a copy).

    ``data_dir`` is stored resolved to an absolute path, so a run evaluated from another folder finds
    its data."""

    dataset: str = "digits"
    data_dir: str | None = None
    num_train: int | None = None      #: seeded random subset of the training split (None: all)
    train_split: str = "train"        #: train, or train+valid (the two splits concatenated, in that order)
    valid_split: str = "valid"        #: split of log.csv's per-epoch validation ELBO: valid, or test
    model: str = "bernoulli"
    latent_dim: int = 50
    hidden: int = 200
    decoder_layers: int = 2
    activation: str = "elu"
    dense: bool = False               #: densely connected decoder (networks.DenseMLP)
    arch: str = "mlp"                 #: decoder and encoder architecture: mlp or conv (networks.ARCHITECTURES)
    variance: str = "network"         #: Gaussian models only (see GaussianVAE)
    sigma2: float = 1.0               #: gaussian model: the fixed variance, or the learned one's start
    pixelcnn_layers: int = 5          #: pixelcnn model: gated layers (the first with mask A)
    pixelcnn_channels: int = 32       #: pixelcnn model: channels of every gated layer
    guide: str = "ffg"
    guide_options: dict = field(default_factory=dict)
    objective: str = "elbo"
    num_particles: int = 1            #: samples per datapoint; k of IWAE
    anneal: str = "none"
    anneal_epochs: int = 0
    free_bits: float = 0.0            #: bits per latent dimension (FreeBitsELBO); 0: off
    # InfoVAE (objective="infovae", pyro_vaegap.infovae); None: not given (filled in where they apply)
    alpha: float | None = None        #: InfoVAE's α: weight 1 − α on the per-datapoint KL
    lambda_: float | None = None      #: InfoVAE's λ (``--lambda``): D(q(z) ‖ p(z)) weighs α + λ − 1
    divergence: str | None = None     #: mmd, stein, adversarial or kl (default mmd)
    mmd_kernel: str | None = None     #: rbf or imq (divergence="mmd"; default rbf)
    mmd_scales: tuple | None = None   #: bandwidth multipliers summed over (divergence="mmd"; default (1.0,))
    disc_lr: float | None = None      #: the critic's Adam learning rate (divergence="adversarial"; default 1e-3)
    disc_steps: int | None = None     #: critic steps per generator step (divergence="adversarial"; default 1)
    disc_hidden: int | None = None    #: width of the critic's two hidden layers (divergence="adversarial"; 256)
    epochs: int = 100
    batch_size: int = 100
    lr: float = 1e-3
    lr_schedule: str = "constant"
    adam_eps: float = 1e-8            #: Adam's epsilon (torch's default 1e-8; Cremer et al.'s code 1e-4)
    micro_batches: int | None = None  #: split each batch into this many seeded parts (torchrun; see train())
    valid_samples: int = 1            #: samples of the validation ELBO each epoch
    num_valid: int | None = None      #: seeded random subset of the validation split for that ELBO (None: all)
    seed: int = 0
    #: a finished run folder (stored as an absolute path) whose decoder is loaded and frozen: only the guide is
    #: trained (a new encoder for a fixed model, Cremer et al.'s Table 4); its model options must equal these
    decoder_from: str | None = None

    def __post_init__(self):
        if self.data_dir is not None:
            self.data_dir = os.path.abspath(os.path.expanduser(self.data_dir)) if str(self.data_dir) else None
        if self.decoder_from is not None:
            if not isinstance(self.decoder_from, (str, os.PathLike)) or not str(self.decoder_from):
                raise ConfigError(f"decoder_from={self.decoder_from!r} is not allowed: expected the path of a "
                                  "finished run folder")
            self.decoder_from = os.path.abspath(os.path.expanduser(self.decoder_from))
        check_choice("model", self.model, MODELS)
        check_choice("arch", self.arch, ARCHITECTURES)
        if self.arch == "conv" and self.dense:
            raise ConfigError("dense=True is an MLP option; it cannot be combined with arch='conv'")
        check_choice("objective", self.objective, OBJECTIVES)
        check_choice("anneal", self.anneal, ANNEALING)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("train_split", self.train_split, TRAIN_SPLITS)
        check_choice("valid_split", self.valid_split, VALID_SPLITS)
        if self.train_split == "train+valid" and self.valid_split == "valid":
            raise ConfigError("train_split='train+valid' trains on the validation split: give valid_split='test' "
                              "for the per-epoch validation ELBO")
        if not (isinstance(self.adam_eps, (int, float)) and math.isfinite(self.adam_eps) and self.adam_eps > 0):
            raise ConfigError(f"adam_eps={self.adam_eps!r} is not allowed: expected a finite positive number")
        for name in ("latent_dim", "hidden", "epochs", "batch_size", "num_particles", "valid_samples",
                     "pixelcnn_layers", "pixelcnn_channels"):
            check_positive_int(name, getattr(self, name))
        check_positive_int("decoder_layers", self.decoder_layers, minimum=0)
        check_positive_int("anneal_epochs", self.anneal_epochs, minimum=0)
        check_positive_int("seed", self.seed, minimum=0)
        for name in ("num_train", "num_valid", "micro_batches"):
            if getattr(self, name) is not None:
                check_positive_int(name, getattr(self, name))
        if not (isinstance(self.sigma2, (int, float)) and math.isfinite(self.sigma2) and self.sigma2 > 0):
            raise ConfigError(f"sigma2={self.sigma2!r} is not allowed: expected a finite positive variance")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr={self.lr!r} is not allowed: expected a finite positive number")
        if self.anneal != "none" and self.anneal_epochs == 0:
            raise ConfigError(f"anneal={self.anneal!r} needs anneal_epochs >= 1")
        if not (isinstance(self.free_bits, (int, float)) and math.isfinite(self.free_bits) and self.free_bits >= 0):
            raise ConfigError(f"free_bits={self.free_bits!r} is not allowed: expected a number of bits >= 0")
        if self.free_bits and (self.objective == "iwae" or self.anneal != "none"):
            raise ConfigError(f"free_bits={self.free_bits!r} replaces annealing in an ELBO objective; it cannot be "
                              f"combined with objective={self.objective!r} / anneal={self.anneal!r}")
        if self.anneal == "entropy" and self.objective == "iwae":
            raise ConfigError("anneal='entropy' applies to the ELBO objectives, not to objective='iwae'")
        if not isinstance(self.guide_options, dict):
            raise ConfigError(f"guide_options={self.guide_options!r} must be a JSON object")
        if self.micro_batches is not None and self.micro_batches > self.batch_size:
            raise ConfigError(f"micro_batches={self.micro_batches} exceeds batch_size={self.batch_size}: every "
                              "micro-batch needs at least one row")
        if self.micro_batches is not None and self.objective == "infovae":
            raise ConfigError(f"micro_batches={self.micro_batches} cannot be combined with objective='infovae': its "
                              "divergence D(q(z)||p(z)) is estimated over the whole minibatch and does not split into "
                              "micro-batches (train InfoVAE in one process)")
        infovae.check_config(self)  # fills in the InfoVAE defaults that apply

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ConfigError(f"unknown config keys {unknown}; allowed: {sorted(known)}")
        return cls(**d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def build_model(cfg: TrainConfig, data_dim: int):
    """The model described by ``cfg`` for data of width ``data_dim``."""
    net = dict(latent_dim=cfg.latent_dim, hidden=cfg.hidden, decoder_layers=cfg.decoder_layers,
               activation=cfg.activation, dense=cfg.dense, arch=cfg.arch)
    if cfg.model == "bernoulli":
        return BernoulliVAE(data_dim, **net)
    if cfg.model == "mse":
        return MSEGaussianVAE(data_dim, **net)
    if cfg.model == "dlogistic":
        return DiscretizedLogisticVAE(data_dim, **net)
    if cfg.model == "pixelcnn":
        return PixelCNNVAE(data_dim, cfg.latent_dim, layers=cfg.pixelcnn_layers, channels=cfg.pixelcnn_channels)
    return GaussianVAE(data_dim, variance=cfg.variance, sigma2=cfg.sigma2, **net)


def guide_options(cfg: TrainConfig) -> dict:
    """The amortized guide's options: ``cfg.guide_options``, plus ``arch`` when the run's architecture is
    not the default and the options do not set the encoder's own (so ``--arch conv`` means a
    convolutional encoder and decoder)."""
    if cfg.arch == "mlp" or "arch" in cfg.guide_options:
        return dict(cfg.guide_options)
    if not get_family(cfg.guide).takes_option("amortized", "arch"):
        raise ConfigError(f"arch={cfg.arch!r}: the encoder of family {cfg.guide!r} has no 'arch' option; "
                          "use arch='mlp', or a family whose encoder takes one")
    return {**cfg.guide_options, "arch": cfg.arch}


def build_guide(cfg: TrainConfig, model):
    """The amortized guide of family ``cfg.guide`` for ``model``."""
    return get_family(cfg.guide).make_amortized(model, **guide_options(cfg))


def frozen_decoder(cfg: TrainConfig) -> dict:
    """The model weights (``state_dict``) of the finished run ``cfg.decoder_from``.

    :raises ConfigError: naming the folder when it is not a finished training run, or naming every
        :data:`MODEL_FIELDS` option in which its model differs from ``cfg``'s.
    """
    try:
        ckpt = read_checkpoint(cfg.decoder_from)
    except ConfigError as e:
        raise ConfigError(f"decoder_from: {e}") from None
    theirs = TrainConfig.from_dict(ckpt["config"])
    differ = [k for k in MODEL_FIELDS if getattr(theirs, k) != getattr(cfg, k)]
    if differ:
        raise ConfigError(f"decoder_from={cfg.decoder_from!r}: its model differs from this config's in "
                          + ", ".join(f"{k} ({getattr(theirs, k)!r} there, {getattr(cfg, k)!r} here)" for k in differ)
                          + "; give the run's model options")
    if ckpt["epoch"] < theirs.epochs:
        raise ConfigError(f"decoder_from={cfg.decoder_from!r} is not finished ({ckpt['epoch']} of {theirs.epochs} "
                          "epochs trained): finish that run first, so the frozen decoder is the one it reports")
    return ckpt["model"]


def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate of 0-based ``epoch``."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(epoch, cfg.epochs) / cfg.epochs))
    start = 0
    for i in range(8):
        start += 3 ** i
        if epoch < start:
            return cfg.lr * 10 ** (-i / 7)
    return cfg.lr * 10 ** (-7 / 7)


@torch.no_grad()
def mean_elbo(model, guide, x, num_samples: int = 1, chunk: int = 1000) -> float:
    """Average over the rows of ``x`` of the ``num_samples``-sample ELBO estimate."""
    total = 0.0
    for s in range(0, x.shape[0], chunk):
        total += float(log_weights(model, guide, x[s:s + chunk], num_samples).mean(0).sum())
    return total / x.shape[0]


def make_loss(cfg: TrainConfig, model, guide):
    """``(loss_fn, annealing)``: the :class:`~pyro.infer.elbo.ELBOModule` ``objective(model, guide)``
    of ``cfg``'s objective, built on ``cfg.anneal``'s :class:`~pyro_vaegap.objectives.Annealing`
    wrappers (set ``annealing.factor`` before each minibatch). ``loss_fn(x)`` is the minibatch sum of
    per-datapoint losses."""
    objective = make_objective(cfg, guide)  # validates first
    annealing = Annealing(cfg.anneal, model, guide)
    return objective(annealing.model, annealing.guide), annealing


def training_step(loss_fn, opt: torch.optim.Optimizer, x: torch.Tensor, where: str = "") -> float:
    """One optimizer step on the per-datapoint mean loss ``loss_fn(x) / B``; returns its value.

    :raises FloatingPointError: on a non-finite loss, before the parameters are touched.
    """
    critic_step = getattr(getattr(loss_fn, "elbo", None), "critic_step", None)
    if critic_step is not None:  # an adversarial objective trains its critic first, with its own optimizer
        critic_step(loss_fn.model, loss_fn.guide, x)
    opt.zero_grad(set_to_none=True)
    loss = loss_fn(x) / x.shape[0]
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(f"non-finite training loss{where}; lower the learning rate or check the data")
    loss.backward()
    opt.step()
    return value


def _sum_gradients(process_group, bucket):
    """DDP communication hook: the *sum* of the ranks' gradients (DDP's default averages them). Each rank's
    loss is already divided by the global batch size, so the sum is the one-process gradient."""
    work = dist.all_reduce(bucket.buffer(), group=process_group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def data_parallel(loss_fn, device: torch.device):
    """``loss_fn`` wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` inside a process group
    of several ranks (its backward sums the ranks' gradients, :func:`_sum_gradients`), else itself.

    Every parameter of model and guide must take part in every step's loss (DDP's default, the cheap one;
    every registered family does): DDP names a parameter left out at the next step."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return loss_fn
    ddp = DistributedDataParallel(loss_fn, device_ids=[device.index] if device.type == "cuda" else None,
                                  find_unused_parameters=False)
    ddp.register_comm_hook(None, _sum_gradients)
    return ddp


def micro_batch_step(net, opt: torch.optim.Optimizer, x: torch.Tensor, seeds: list[int], rank: int = 0,
                     world: int = 1, where: str = "") -> float:
    r"""One optimizer step on the batch ``x`` split into ``M = len(seeds)`` micro-batches, shared by the ranks.

    Micro-batch :math:`m` (the :math:`m`-th of :func:`torch.tensor_split`'s ``M`` contiguous parts of ``x``)
    draws its random numbers after ``torch.manual_seed(seeds[m])`` and is computed by rank ``m % world``;
    the gradient of :math:`\sum_m \text{loss}(x_m) / B` is accumulated over a rank's micro-batches and
    summed over the ranks (``net`` from :func:`data_parallel`). So the step — and a whole training run —
    is the same for every number of ranks up to ``M``, up to the order of floating-point additions.

    :returns: the batch's per-datapoint mean loss (summed over the ranks).
    :raises FloatingPointError: on a non-finite loss, before the parameters are touched.
    """
    parts = torch.tensor_split(x, len(seeds))
    mine = list(range(rank, len(seeds), world))
    opt.zero_grad(set_to_none=True)
    total = torch.zeros((), dtype=x.dtype, device=x.device)
    for i, m in enumerate(mine):
        torch.manual_seed(seeds[m])
        # DDP reduces the gradients in the backward pass of the rank's last micro-batch only
        sync = nullcontext() if world == 1 or i == len(mine) - 1 else net.no_sync()
        with sync:
            loss = net(parts[m]) / x.shape[0]
            loss.backward()
        total += loss.detach()
    if world > 1:
        dist.all_reduce(total)
    value = float(total)
    if not math.isfinite(value):
        raise FloatingPointError(f"non-finite training loss{where}; lower the learning rate or check the data")
    opt.step()
    return value


def _world() -> tuple[int, int]:
    """``(rank, world size)`` of the process group this process has joined, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def load_split(cfg: TrainConfig, split: str, download: bool = False) -> torch.Tensor:
    return load_dataset(cfg.dataset, split, data_dir=cfg.data_dir, download=download)


def _rng_state(shuffle: torch.Generator, device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
             "shuffle": shuffle.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, shuffle: torch.Generator, device: torch.device) -> None:
    """Restore the RNG states of a checkpoint. A run resumed on another kind of device than it was saved on
    continues with that device's generator (same seed-determined micro-batch draws, other stream otherwise)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    shuffle.set_state(state["shuffle"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


LOG_FIELDS = ("epoch", "train_objective", "valid_elbo", "lr", "anneal_factor", "seconds")


def _log_csv(rows) -> str:
    buf = io.StringIO()
    extra = [k for k in (rows[0] if rows else {}) if k not in LOG_FIELDS]  # e.g. an InfoVAE's divergence
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS + tuple(extra))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


@dataclass
class TrainResult:
    model: torch.nn.Module
    guide: torch.nn.Module
    config: TrainConfig
    log: list
    run_dir: Path


class TrainingInterrupted(ConfigError):
    """Ctrl-C during a training: the message says which epochs are saved and how to resume."""


CHECKPOINT = "checkpoint.pt"
_CHECKPOINT_KEYS = ("model", "guide", "optimizer", "epoch", "rng", "log", "config", "data_dim")


def read_checkpoint(run_dir) -> dict:
    """The checkpoint of the run folder ``run_dir``; :class:`ConfigError` (one line naming the file and
    what to do) when it is missing, empty, truncated, damaged or not a training checkpoint."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{str(run_dir)!r} is a file, not a run folder (a folder written by vaegap train)")
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a training run: no {CHECKPOINT} there (train with vaegap train)")
    fix = f"restore it from a backup, or delete the run folder {str(run_dir)!r} and train again"
    if path.stat().st_size == 0:
        raise ConfigError(f"{path} is empty (damaged, e.g. by a full disk or a copy that stopped): {fix}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)  # a GPU run's checkpoint loads anywhere
    except PermissionError:
        raise  # not damaged but unreadable: reported as such
    except Exception as e:  # noqa: BLE001 - torch.load of a damaged file raises any of several types
        raise ConfigError(f"{path} is damaged ({type(e).__name__} while reading it; truncated or overwritten): "
                          f"{fix}") from e
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ConfigError(f"{path} is not a training checkpoint of this package (it lacks {', '.join(missing)}): {fix}")
    return ckpt


def _config_json_problem(run_dir, config: dict) -> str | None:
    """What is wrong with ``run_dir/config.json`` as a copy of ``config``, or None."""
    path = Path(run_dir) / "config.json"
    try:
        copy = json.loads(path.read_text())["config"]
        copy.items()
    except FileNotFoundError:
        return "is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return f"is not a valid copy of the run's config ({type(e).__name__})"
    config = json.loads(json.dumps(config))
    differ = sorted(k for k in set(config) | set(copy) if k not in copy or k not in config or copy[k] != config[k])
    if not differ:
        return None
    return "differs from the checkpoint in " + ", ".join(
        f"{k} ({copy.get(k, '(missing)')!r} there, {config.get(k, '(missing)')!r} in the checkpoint)" for k in differ)


def check_config_json(run_dir, config: dict) -> bool:
    """Whether ``run_dir/config.json`` holds ``config`` (the checkpoint's); if not, a one-line
    :class:`~pyro_vaegap.utils.ConfigWarning` names the file and says that the checkpoint's config is used.

    ``config.json`` is only a readable copy: an edit there changes nothing, so it must not pass in silence."""
    problem = _config_json_problem(run_dir, config)
    if problem:
        warnings.warn(f"{Path(run_dir) / 'config.json'} {problem}; the config saved in {CHECKPOINT} is used "
                      "(config.json is only a readable copy of it)", ConfigWarning, stacklevel=3)
    return problem is None


def _write_config_json(run_dir: Path, cfg: TrainConfig) -> None:
    """``config.json``: the readable copy of ``cfg``, with the seed and the provenance it was first written with."""
    path = run_dir / "config.json"
    try:
        keep = json.loads(path.read_text())
        keep = keep if isinstance(keep, dict) else {}
    except (OSError, ValueError):
        keep = {}
    extra = {k: v for k, v in keep.items() if k not in ("config", "seed")} or provenance()
    atomic_write_json(path, {"config": cfg.to_dict(), "seed": cfg.seed, **extra})


def _flag(name: str, value) -> str:
    if isinstance(value, bool):
        return f"--{'' if value else 'no-'}{name.rstrip('_').replace('_', '-')}"
    shown = json.dumps(value) if isinstance(value, dict) else ",".join(map(str, value)) if isinstance(value, tuple) \
        else value
    return f"--{name.rstrip('_').replace('_', '-')} {shown}"


def resume_config(run_dir, given: dict | None = None) -> TrainConfig:
    """The config of resuming the run in ``run_dir``: the checkpoint's own, with ``epochs`` from ``given``
    (options the user passed, field -> value). Any other given option that differs from the run's is an
    error naming it: a resumed run cannot change what it is."""
    ckpt = read_checkpoint(run_dir)
    saved = TrainConfig.from_dict(ckpt["config"])
    given = dict(given or {})
    try:
        wanted = TrainConfig.from_dict({**saved.to_dict(), **given})  # normalizes and validates the values
    except ConfigError as e:
        raise ConfigError(f"{e} (resuming {run_dir})") from None
    differ = [k for k in given if k != "epochs" and getattr(wanted, k) != getattr(saved, k)]
    if differ:
        verb = "differs" if len(differ) == 1 else "differ"
        raise ConfigError(f"{', '.join(_flag(k, given[k]) for k in differ)} {verb} from the run's "
                          f"{', '.join(f'{k}={getattr(saved, k)!r}' for k in differ)}; only --epochs may change when "
                          "resuming: leave the other options out (--resume reads the run's own config)")
    if wanted.epochs < ckpt["epoch"]:
        raise ConfigError(f"--epochs {wanted.epochs} is fewer than the {ckpt['epoch']} epochs already trained in "
                          f"{str(run_dir)!r}: give at least {ckpt['epoch']}, or leave --epochs out")
    return dataclasses.replace(saved, epochs=wanted.epochs)


def _check_start(run_dir: Path, resume: bool) -> None:
    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists() and not resume:
        raise ConfigError(f"{run_dir} already holds a checkpoint: pass --resume (resume=True) to continue it, or "
                          "choose another run folder")
    if resume and not ckpt_path.exists():
        raise ConfigError(f"cannot resume: no {CHECKPOINT} in {run_dir}")


def train(cfg: TrainConfig, run_dir, *, resume: bool = False, stop_after: int | None = None,
          progress: bool = True, download: bool = False, resume_hint: str = "train(..., resume=True)",
          device=None) -> TrainResult:
    """Train ``cfg``'s model and guide, writing the run folder ``run_dir`` (locked meanwhile).

    Data parallel: called in every process of a ``torch.distributed`` process group (``torchrun
    --nproc-per-node N -m pyro_vaegap.cli train ...``), each rank computes its share of every batch's
    micro-batches (``cfg.micro_batches`` ``M``, at least the number of ranks; :func:`micro_batch_step`),
    :class:`~torch.nn.parallel.DistributedDataParallel` sums the gradients, and rank 0 alone writes the run
    folder. Every micro-batch is seeded by ``(seed, epoch, batch, micro-batch)``, so the run is the same on
    any number of ranks up to ``M`` — one process with the same ``M`` included — and a checkpoint resumes
    on a different number of ranks. Without ``micro_batches`` a run draws from one random stream, in one process.

    :param resume: continue from ``run_dir/checkpoint.pt``. Its config must equal ``cfg`` except
        for ``epochs`` (so a finished run can be extended). Without ``resume`` an existing
        checkpoint is an error: nothing saved is overwritten.
    :param stop_after: stop after this many epochs *of this call* (as an interruption would).
    :param download: let the data loader download the data set (torchvision) when it is not found.
    :param resume_hint: how the caller resumes, for the message of an interruption (Ctrl-C raises
        :class:`TrainingInterrupted`, saying which epochs are saved).
    :param device: ``cpu``, ``cuda`` or ``cuda:N`` (:func:`~pyro_vaegap.utils.resolve_device`; default cpu):
        data, model and guide live there. It is not part of the run: a run resumes on any device.
    """
    run_dir = Path(run_dir)
    ckpt_path = run_dir / CHECKPOINT
    device = resolve_device(device)
    rank, world = _world()
    if world > 1 and (cfg.micro_batches is None or cfg.micro_batches < world):
        raise ConfigError(f"training on {world} ranks needs micro_batches >= {world} (--micro-batches; it was "
                          f"{cfg.micro_batches}): each rank computes micro-batches of every batch, each seeded on "
                          "its own, so the run is the same for any number of ranks up to micro_batches")
    _check_start(run_dir, resume)  # fast answers first; checked again under the lock
    get_family(cfg.guide).check_options("amortized", guide_options(cfg))  # before any data is read
    # a resumed run's checkpoint holds the frozen decoder already: the decoder's run is read only at the start
    decoder = frozen_decoder(cfg) if cfg.decoder_from is not None and not resume else None
    saved_epoch, epoch = None, None
    try:
        set_seed(cfg.seed)
        x_train = load_split(cfg, "train", download)
        if cfg.train_split == "train+valid":
            x_train = torch.cat([x_train, load_split(cfg, "valid")])
        if cfg.num_train is not None:
            if cfg.num_train > x_train.shape[0]:
                raise ConfigError(f"num_train={cfg.num_train} exceeds the {x_train.shape[0]} training rows")
            x_train = x_train[seeded_subset(x_train.shape[0], cfg.num_train, cfg.seed)]
        infovae.check_batches(cfg, x_train.shape[0])
        x_valid = load_split(cfg, cfg.valid_split)
        if cfg.num_valid is not None:  # a cheaper per-epoch validation ELBO (many short epochs of a small set)
            if cfg.num_valid > x_valid.shape[0]:
                raise ConfigError(f"num_valid={cfg.num_valid} exceeds the {x_valid.shape[0]} validation rows")
            x_valid = x_valid[seeded_subset(x_valid.shape[0], cfg.num_valid, cfg.seed)]
        last_rows = x_train.shape[0] % cfg.batch_size
        if cfg.micro_batches is not None and 0 < last_rows < cfg.micro_batches:
            raise ConfigError(f"micro_batches={cfg.micro_batches}: the last batch of each epoch has only {last_rows} "
                              f"rows ({x_train.shape[0]} training rows, batch_size={cfg.batch_size}); choose at most "
                              f"{last_rows} micro-batches, or a batch size or num_train that leaves none or more rows")
        model = build_model(cfg, x_train.shape[1]).to(device)
        try:
            x_valid = model.validate_data(x_valid.to(device))
            # a dynamically binarized set trains on Bernoulli probabilities, drawn anew for every minibatch
            dynamic = cfg.dataset in DYNAMIC_DATASETS
            x_train = model.validate_data(x_train.to(device)) if not dynamic else \
                validate_continuous(x_train.to(device), name=f"{cfg.dataset} train")
            if dynamic:  # the model must take the bits drawn from these probabilities (a width check, too)
                model.validate_data(dynamic_binarize(x_train[:1], cfg.seed))
        except DataError as e:
            raise DataError(f"dataset {cfg.dataset!r} does not suit model {cfg.model!r}: {e}") from None
        guide = build_guide(cfg, model).to(device)
        guide.set_training_size(x_train.shape[0])  # a family with global latents weights their KL by 1/N
        if decoder is not None:
            model.load_state_dict(decoder)
        if cfg.decoder_from is not None:  # a fixed decoder: Adam gets only the guide's parameters
            model.requires_grad_(False)
        params = [p for p in (*model.parameters(), *guide.parameters()) if p.requires_grad]
        opt = torch.optim.Adam(params, lr=learning_rate(cfg, 0), eps=cfg.adam_eps)
        loss_fn, annealing = make_loss(cfg, model, guide)
        net = data_parallel(loss_fn, device)
        shuffle = torch.Generator().manual_seed(cfg.seed)
        if rank == 0:
            check_folder(run_dir, "run folder")
        # rank 0 alone writes (and locks) the run folder; the others read its checkpoint to resume
        with FolderLock(run_dir, "run folder") if rank == 0 else nullcontext():
            _check_start(run_dir, resume)
            log, start_epoch, json_current = [], 0, True
            if resume:
                ckpt = read_checkpoint(run_dir)
                saved = TrainConfig.from_dict(ckpt["config"])
                diff = [k for k, v in saved.to_dict().items() if k != "epochs" and getattr(cfg, k) != v]
                if diff:
                    raise ConfigError(f"{', '.join(f'{k}={getattr(cfg, k)!r}' for k in diff)} "
                                      f"{'differs' if len(diff) == 1 else 'differ'} from the run's "
                                      f"{', '.join(f'{k}={getattr(saved, k)!r}' for k in diff)}; only epochs may "
                                      "change when resuming")
                if cfg.epochs < ckpt["epoch"]:
                    raise ConfigError(f"epochs={cfg.epochs} is fewer than the {ckpt['epoch']} epochs already trained "
                                      f"in {str(run_dir)!r}: give at least {ckpt['epoch']} to resume it")
                model.load_state_dict(ckpt["model"])
                guide.load_state_dict(ckpt["guide"])
                opt.load_state_dict(ckpt["optimizer"])
                if hasattr(loss_fn.elbo, "load_state_dict"):  # an adversarial InfoVAE's critic
                    loss_fn.elbo.load_state_dict(ckpt.get("objective", {}))
                _set_rng_state(ckpt["rng"], shuffle, device)
                log, start_epoch = ckpt["log"], ckpt["epoch"]
                saved_epoch = start_epoch
                json_current = True
                if rank == 0:
                    check_config_json(run_dir, ckpt["config"])
                    json_current = _config_json_problem(run_dir, cfg.to_dict()) is None
                    if not json_current and cfg.to_dict() == json.loads(json.dumps(ckpt["config"])):
                        _write_config_json(run_dir, cfg)  # a copy edited or lost: the checkpoint's config again
                        json_current = True
                    if not (run_dir / "log.csv").is_file() or (run_dir / "log.csv").read_text() != _log_csv(log):
                        atomic_write_text(run_dir / "log.csv", _log_csv(log))  # repairs a write cut short
            elif rank == 0:
                _write_config_json(run_dir, cfg)
            N, B = x_train.shape[0], cfg.batch_size
            batches_per_epoch = -(-N // B)
            end_epoch = cfg.epochs if stop_after is None else min(cfg.epochs, start_epoch + stop_after)
            bar = progress_bar(cfg.epochs, "training", progress and rank == 0, unit="epoch")
            try:
                bar.update(start_epoch)
                for epoch in range(start_epoch, end_epoch):
                    t0 = time.time()
                    lr = learning_rate(cfg, epoch)
                    for g in opt.param_groups:  # in place: Adam's moments survive the schedule's steps
                        g["lr"] = lr
                    perm = torch.randperm(N, generator=shuffle).to(device)
                    total, extra = 0.0, {}
                    for b in range(batches_per_epoch):
                        idx = perm[b * B:(b + 1) * B]
                        factor = (1.0 if cfg.anneal == "none" else
                                  min(1.0, (epoch + b / batches_per_epoch) / cfg.anneal_epochs))
                        annealing.factor = factor
                        where = f" at epoch {epoch + 1}, batch {b + 1}"
                        xb = x_train[idx]
                        if dynamic:  # its own seed: the same bits on any number of ranks, and after a resume
                            xb = dynamic_binarize(xb, stable_seed(cfg.seed, "binarize", epoch, b))
                        if cfg.micro_batches is None:
                            loss = training_step(loss_fn, opt, xb, where=where)
                        else:
                            seeds = [stable_seed(cfg.seed, "train", epoch, b, m) for m in range(cfg.micro_batches)]
                            loss = micro_batch_step(net, opt, xb, seeds, rank, world, where=where)
                        total += loss * idx.numel()
                        for k, v in getattr(loss_fn.elbo, "last_log", {}).items():
                            extra[k] = extra.get(k, 0.0) + v * idx.numel()
                    if cfg.micro_batches is not None:  # its own seed: the same draws whichever rank computed the epoch
                        torch.manual_seed(stable_seed(cfg.seed, "valid", epoch))
                    row = {"epoch": epoch + 1, "train_objective": -total / N,
                           "valid_elbo": mean_elbo(model, guide, x_valid, cfg.valid_samples) if rank == 0 else None,
                           "lr": lr,
                           "anneal_factor": factor, "seconds": round(time.time() - t0, 3),
                           **{k: v / N for k, v in extra.items()}}
                    log.append(row)
                    if rank != 0:  # rank 0 alone shows progress and writes the run folder
                        continue
                    bar.set_postfix(train=f"{row['train_objective']:.2f}", valid=f"{row['valid_elbo']:.2f}",
                                    refresh=False)
                    bar.update()
                    with signals_held():  # the interruption message names the epochs the file holds
                        atomic_torch_save(ckpt_path, {"model": model.state_dict(), "guide": guide.state_dict(),
                                                      "optimizer": opt.state_dict(), "epoch": epoch + 1,
                                                      "rng": _rng_state(shuffle, device), "log": log,
                                                      "config": cfg.to_dict(), "data_dim": model.data_dim,
                                                      "objective": _objective_state(loss_fn)})
                        saved_epoch = epoch + 1
                        if not json_current:  # the copy follows the checkpoint (e.g. extended epochs)
                            _write_config_json(run_dir, cfg)
                            json_current = True
                        atomic_write_text(run_dir / "log.csv", _log_csv(log))
            finally:
                bar.close()  # a message after an error starts on a clean line
    except KeyboardInterrupt:
        if rank != 0:
            raise TrainingInterrupted("interrupted; rank 0 writes the checkpoint and says what it holds") from None
        raise TrainingInterrupted(_interrupted(run_dir, cfg, epoch, saved_epoch, resume, resume_hint)) from None
    return TrainResult(model, guide, cfg, log, run_dir)


def _objective_state(loss_fn) -> dict:
    """What the objective must keep across a resume (an adversarial InfoVAE's critic and its optimizer)."""
    state = getattr(loss_fn.elbo, "state_dict", None)
    return state() if state is not None else {}


def _interrupted(run_dir: Path, cfg: TrainConfig, epoch, saved_epoch, resume: bool, resume_hint: str) -> str:
    where = "before training started" if epoch is None else f"during epoch {epoch + 1} of {cfg.epochs}"
    if saved_epoch:
        return (f"interrupted {where}; {run_dir / CHECKPOINT} holds epochs 1-{saved_epoch} (nothing is lost): "
                f"resume with {resume_hint}")
    if resume:
        return f"interrupted {where}; {run_dir / CHECKPOINT} is unchanged: resume with {resume_hint}"
    return f"interrupted {where}, before any epoch was saved: run the same command again to start afresh"


def load_run(run_dir, device=None):
    """``(model, guide, config)`` of a trained run folder, in eval mode, on ``device`` (default cpu).

    The config is the checkpoint's; a ``config.json`` that disagrees with it (or is missing or invalid)
    is reported on stderr (:func:`check_config_json`), never silently used or ignored."""
    run_dir = Path(run_dir)
    ckpt = read_checkpoint(run_dir)
    cfg = TrainConfig.from_dict(ckpt["config"])
    check_config_json(run_dir, ckpt["config"])
    model = build_model(cfg, ckpt["data_dim"])
    guide = build_guide(cfg, model)
    model.load_state_dict(ckpt["model"])
    guide.load_state_dict(ckpt["guide"])
    device = resolve_device(device)
    return model.to(device).eval(), guide.to(device).eval(), cfg
