"""Argument plumbing of the ``vaegap`` commands: every field of a config dataclass as a flag, and ``--config FILE``.

Every option of :class:`~pyro_vaegap.runs.TrainConfig` and :class:`~pyro_vaegap.report.compute.GapConfig` is a flag
(``--latent-dim 50``; :func:`_add_dataclass_args`, help texts in :data:`_HELP`); ``--config FILE.json`` supplies any
of them from a file, flags override the file (:func:`_given`).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from ..data import DATASETS
from ..utils import ConfigError

_HELP = {
    # TrainConfig
    "dataset": f"training data: {', '.join(DATASETS)} (the digits sets are embedded in scikit-learn)",
    "data_dir": "directory holding the data files (else $PYRO_VAEGAP_DATA, then ~/.cache/pyro_vaegap); stored in "
                "the run as an absolute path, so the run finds its data from any folder",
    "num_train": "train on a seeded random subset of this many training rows",
    "train_split": "train, or train+valid (both splits, as Cremer et al.'s code trains MNIST)",
    "valid_split": "split of the per-epoch validation ELBO in log.csv: valid, test (needed with train+valid), or "
                   "holdout (a seeded random --holdout-fraction of the training rows, held out of training)",
    "holdout_fraction": "with --valid-split holdout: the fraction of training rows held out (Kim & Pavlovic: 0.1)",
    "keep_best": "keep the weights of the epoch with the best validation ELBO in the checkpoint (experiments "
                 "evaluate those)",
    "adam_eps": "Adam's epsilon (torch's 1e-8; Cremer et al.'s code: 1e-4)",
    "optimizer": "adam, or rmsprop with TensorFlow 1's smoothing 0.9 (Zhao et al.'s InfoVAE code: RMSProp)",
    "clip_value": "clip every gradient entry to [-v, v] before each step (Zhao et al.'s code: 1) (default: no clipping)",
    "monitor_mmd": "log the MMD^2 between q(z) and p(z) on this many validation images every epoch (log.csv "
                   "valid_mmd2; default: not logged)",
    "model": "likelihood: bernoulli (binary data), gaussian (continuous data), mse (Gaussian with fixed variance "
             "1/2: the MSE-loss VAE), dlogistic (discretized logistic, 8-bit data such as digits_uint8) or pixelcnn (gated "
             "PixelCNN conditioned on z, binary square images; --pixelcnn-layers, --pixelcnn-channels)",
    "latent_dim": "latent dimension d", "hidden": "width of the decoder's hidden layers",
    "decoder_layers": "number of decoder hidden layers (0, 2, 4 in Cremer et al. Table 5)",
    "activation": "elu, tanh or relu",
    "dense": "densely connected decoder (networks.DenseMLP); the encoder's is set in --guide-options",
    "arch": "mlp, conv (3 convolutions with 4x4 kernels, then fully connected layers: networks.encoder_body), or "
            "conv_kim (Kim & Pavlovic's supplement Table 6; needs --activation relu); "
            "sets the decoder and, unless --guide-options gives its own, the encoder",
    "variance": "gaussian model: network, diagonal, scalar or fixed (homoscedastic, not learned: GPVAE's decoder "
                "on grey-level images)",
    "pixelcnn_layers": "pixelcnn model: gated layers (the first masked to exclude the current pixel)",
    "pixelcnn_channels": "pixelcnn model: channels of every gated layer",
    "sigma2": "gaussian model: the variance when --variance fixed, else the learned variance's initial value",
    "guide": "posterior family of the amortized guide (list them with: vaegap families)",
    "guide_options": "JSON object of options for the guide class, e.g. '{\"hidden\": 200}'",
    "objective": "elbo (Trace_ELBO), mean_field (TraceMeanField_ELBO), iwae (RenyiELBO alpha=0) or infovae "
                 "(Zhao et al.: E log p(x|z) - (1-alpha) KL(q(z|x)||p(z)) - (alpha+lambda-1) D(q(z)||p(z)); needs "
                 "--alpha and --lambda)",
    "num_particles": "samples per datapoint (k of IWAE)",
    "anneal": "none, entropy (Cremer et al.) or kl", "anneal_epochs": "epochs of linear annealing 0→1",
    "free_bits": "free bits per latent dimension and datapoint (R. Yu's tutorial: 0.05); ELBO objectives, "
                 "no annealing",
    "alpha": "InfoVAE's alpha: the per-datapoint KL weighs 1 - alpha (<= 1 unless --divergence kl); objective "
             "infovae only (no default: required there)",
    "lambda_": "InfoVAE's lambda: D(q(z)||p(z)) weighs alpha + lambda - 1 (>= 0 unless --divergence kl, where the "
               "objective is the beta-VAE with beta = lambda); objective infovae only (no default: required there)",
    "divergence": "InfoVAE's D: mmd (unbiased MMD of the aggregate posterior), stein (SVGD gradient of "
                  "KL(q(z)||p(z))), adversarial (a critic on z, JS/GAN loss as in the AAE) or kl (the per-datapoint KL: "
                  "beta-VAE) (default with --objective infovae: mmd)",
    "mmd_kernel": "MMD kernel: rbf, exp(-|z-z'|^2/(s d)), or imq, C/(C+|z-z'|^2) with C = 2 s d (divergence mmd; "
                  "default there: rbf)",
    "mmd_scales": "comma-separated bandwidth multipliers s, the kernel summed over them (multi-scale), e.g. "
                  "0.5,1,2 (divergence mmd; default there: 1)",
    "disc_lr": "the critic's Adam learning rate (divergence adversarial; default there: 0.001)",
    "disc_steps": "critic steps per generator step (divergence adversarial; default there: 1)",
    "disc_hidden": "width of the critic's two hidden layers (divergence adversarial; default there: 256)",
    "epochs": "training epochs (Burda schedule: 3280)", "batch_size": "minibatch size",
    "lr": "Adam learning rate (initial, for the Burda schedule)", "lr_schedule": "constant, burda or cosine",
    "micro_batches": "split every batch into this many parts, each with its own seeded random draws; needed by data-"
                     "parallel training under torchrun (at least the number of ranks), where the run is then the same "
                     "for any number of ranks up to it, one process included (default: one stream, one process)",
    "valid_samples": "samples of the per-epoch validation ELBO",
    "num_valid": "compute the per-epoch validation ELBO on a seeded random subset of this many validation rows "
                 "(default: all; cheaper for many short epochs)",
    "seed": "random seed (fixes the run)",
    "decoder_from": "a finished run folder: load its decoder, freeze it and train only a new encoder (its model "
                    "options must equal this run's; Cremer et al. Table 4) (default: train both)",
    # GapConfig
    "families": "comma-separated families whose per-datum optimum L[q*] is computed, e.g. ffg,fullcov,flow",
    "family_options": "JSON object {family: {option: value}} for the per-datum guides",
    "iwae_samples": "samples of the IWAE estimate of log p(x) (paper 5000)",
    "elbo_samples": "samples for L[q] and L[q*] (paper 5000)",
    "sample_chunk": "samples per vectorized call (memory)", "data_chunk": "datapoints per vectorized call",
    "ais": "run AIS", "ais_chains": "AIS chains per datapoint (paper 100)",
    "ais_steps": "AIS intermediate distributions (paper 500)", "ais_leapfrog": "leapfrog steps per HMC move (10)",
    "ais_schedule": "sigmoid or linear beta schedule",
    "ais_step_size": "pilot (frozen schedule tuned on discarded chains: unbiased) or online-biased",
    "ais_pilot_chains": "pilot chains per datapoint that tune the step sizes (then discarded)",
    "ais_init_step_size": "initial HMC step size of the pilot",
    "log_px": "log p̂: auto (AIS if it runs, else IWAE), ais, iwae, or max (the paper's per-point max; biased up)",
    "local_samples": "samples per step of the local optimization (paper 100)",
    "local_lr": "Adam lr of the local optimization (paper 1e-3)", "local_max_steps": "cap on local steps",
    "local_check_every": "stopping rule: window length (100)", "local_patience": "stopping rule: checks without improvement (10)",
    "local_init": "prior (paper) or encoder",
    "ais_fast": "how AIS evaluates log p(x,z) and its gradient: traced (the eager values bit for bit, without "
                "Pyro's per-step overhead), compiled (torch.compile; equal to rounding, faster on the paper's model) "
                "or eager",
    "local_fast": "the same for the local optimization's step of families with row subsets (ffg, flow, ...): "
                  "eager, traced or compiled",
    "gradient_dtype": "bfloat16: AIS's leapfrog and the local search follow bf16 gradients while every reported "
                      "value stays in the model's precision (for GPUs and AMX CPUs; slower on AVX2-only CPUs) "
                      "(default: the model's precision)",
    "local_data_chunk": "datapoints per local-optimization piece (default: all in one problem); set it to spread "
                        "that stage over torchrun ranks", }


def _add_dataclass_args(parser, cls, skip=()):
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.rstrip("_").replace("_", "-")  # lambda_ (a Python keyword) is --lambda
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ",".join(default) if isinstance(default, tuple) else json.dumps(default) if isinstance(default, dict) \
            else default
        text = _HELP.get(f.name, "")
        kw = {"dest": f.name, "default": None, "help": text if "default" in text else f"{text} (default: {shown})"}
        if f.name.endswith("_"):
            kw["metavar"] = f.name.rstrip("_").upper()
        annotation = str(f.type)  # "float | None": options that are None when not given
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(default, dict):
            parser.add_argument(flag, type=_json_object(f.name), **kw)
        elif isinstance(default, tuple) or annotation.startswith("tuple"):
            parser.add_argument(flag, type=lambda s: tuple(p for p in s.split(",") if p), **kw)
        elif isinstance(default, float) or annotation.startswith("float"):
            parser.add_argument(flag, type=float, **kw)
        elif isinstance(default, int) or annotation.startswith("int"):
            parser.add_argument(flag, type=int, **kw)
        else:
            parser.add_argument(flag, type=str, **kw)


def _json_object(name):
    def parse(s):
        try:
            v = json.loads(s)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')} must be a JSON object: {e}")
        if not isinstance(v, dict):
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')} must be a JSON object, got {s!r}")
        return v
    return parse


def _given(cls, args, from_file: dict | None = None) -> dict:
    """The fields of ``cls`` the user gave: from the ``--config`` file, overridden by flags."""
    values = dict(from_file or {})
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys {unknown}; allowed: {sorted(known)}")
    return values


def _config(cls, args, from_file: dict | None = None):
    return cls(**_given(cls, args, from_file))


def _read_config_file(path):
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {path!r}: no such file")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config {path!r} is not valid JSON: {e}") from e
    if not isinstance(d, dict):
        raise ConfigError(f"--config {path!r} must hold a JSON object")
    return d.get("config", d)
