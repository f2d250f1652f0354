r"""What defines a training run: :class:`TrainConfig` and the choices of its fields.

Objectives (``objective``: ``"elbo"``, ``"mean_field"``, ``"iwae"``, ``"infovae"``), annealing (``anneal``: ``"entropy"``
or ``"kl"``, the factor rising linearly from 0 to 1 over the first ``anneal_epochs`` epochs, per
minibatch) and free bits (``free_bits``) are the :class:`pyro.infer.ELBO` subclasses of
:mod:`pyro_vaegap.objectives` (InfoVAE: :mod:`pyro_vaegap.objectives.infovae`, with ``alpha``, ``lambda_``, ``divergence``
and the divergence's options, all ``None`` = not given unless ``objective="infovae"``; an adversarial
InfoVAE's critic is trained before each step by :func:`~pyro_vaegap.training.steps.training_step` and saved in the checkpoint).
"""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass, field

from ..objectives import infovae
from ..models.networks import ARCHITECTURES
from ..utils import ConfigError, check_choice, check_positive_int

OBJECTIVES = ("elbo", "mean_field", "iwae", "infovae")


ANNEALING = ("none", "entropy", "kl")


LR_SCHEDULES = ("constant", "burda", "cosine")


#: the optimizer of model and guide: torch's Adam (with ``adam_eps``) or RMSprop with TensorFlow 1's defaults (smoothing
#: 0.9; eps 1e-5 outside the square root for TF's 1e-10 inside; Zhao et al.'s InfoVAE PixelCNN code uses
#: ``tf.train.RMSPropOptimizer(1e-3)``)
OPTIMIZERS = ("adam", "rmsprop")


#: what a run trains on: the training split, or training and validation splits together (Cremer et al.'s released
#: code trains its MNIST models on all 60,000 non-test images)
TRAIN_SPLITS = ("train", "train+valid")


#: the split of the per-epoch validation ELBO in log.csv: valid, test, or "holdout" — a seeded random fraction
#: ``holdout_fraction`` of the training rows (after ``train_split``, before ``num_train``), held out of training
#: (Kim & Pavlovic: 10% of the training set, a new split per run). With ``keep_best`` the checkpoint also keeps
#: the weights of the epoch with the best validation ELBO; otherwise no choice is made by it.
VALID_SPLITS = ("valid", "test", "holdout")


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
    valid_split: str = "valid"        #: split of log.csv's per-epoch validation ELBO: valid, test or holdout
    holdout_fraction: float = 0.1     #: valid_split="holdout": the fraction of training rows held out (seeded)
    keep_best: bool = False           #: keep the weights of the best validation ELBO's epoch (checkpoint "best")
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
    # InfoVAE (objective="infovae", pyro_vaegap.objectives.infovae); None: not given (filled in where they apply)
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
    optimizer: str = "adam"           #: adam or rmsprop (:data:`OPTIMIZERS`)
    clip_value: float | None = None   #: clip every gradient entry to [-clip_value, clip_value] before each step (None: off)
    #: per-epoch MMD² between q(z) (one encoder draw per image) and p(z) on this many validation images, logged in
    #: log.csv as ``valid_mmd2`` (None: not logged). Monitoring only: the InfoVAE Fig. 6 (D) curve of any objective
    monitor_mmd: int | None = None
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
        if self.arch != "mlp" and self.dense:
            raise ConfigError(f"dense=True is an MLP option; it cannot be combined with arch={self.arch!r}")
        check_choice("objective", self.objective, OBJECTIVES)
        check_choice("anneal", self.anneal, ANNEALING)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("optimizer", self.optimizer, OPTIMIZERS)
        if self.clip_value is not None and not (isinstance(self.clip_value, (int, float)) and math.isfinite(self.clip_value)
                                               and self.clip_value > 0):
            raise ConfigError(f"clip_value={self.clip_value!r} is not allowed: expected a finite positive gradient bound "
                              "(or none: no clipping)")
        if self.monitor_mmd is not None:
            check_positive_int("monitor_mmd", self.monitor_mmd, minimum=2)
        check_choice("train_split", self.train_split, TRAIN_SPLITS)
        check_choice("valid_split", self.valid_split, VALID_SPLITS)
        if self.train_split == "train+valid" and self.valid_split == "valid":
            raise ConfigError("train_split='train+valid' trains on the validation split: give valid_split='test' "
                              "for the per-epoch validation ELBO")
        if not (isinstance(self.holdout_fraction, (int, float)) and 0 < self.holdout_fraction < 1):
            raise ConfigError(f"holdout_fraction={self.holdout_fraction!r} is not allowed: expected a number "
                              "strictly between 0 and 1")
        if not isinstance(self.keep_best, bool):
            raise ConfigError(f"keep_best={self.keep_best!r} is not allowed: expected true or false")
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
