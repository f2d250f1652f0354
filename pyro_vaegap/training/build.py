r"""The model and the amortized guide a :class:`~pyro_vaegap.runs.config.TrainConfig` describes.

A new encoder for a fixed model: ``decoder_from`` names a finished run folder whose model weights are loaded
(:func:`~pyro_vaegap.training.build.frozen_decoder`, which checks that the run's model options, :data:`~pyro_vaegap.runs.config.MODEL_FIELDS`, equal the config's)
and frozen (``requires_grad`` off, so Adam holds only the guide's parameters); the run's checkpoint then holds
that decoder unchanged, and resuming it needs the decoder's folder no more.
"""
from __future__ import annotations

from ..models import BernoulliVAE, DiscretizedLogisticVAE, GaussianVAE, MSEGaussianVAE, PixelCNNVAE
from ..contract.registry import get_family
from ..runs.checkpoint import read_checkpoint
from ..utils import ConfigError
from ..runs.config import MODEL_FIELDS, TrainConfig

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
