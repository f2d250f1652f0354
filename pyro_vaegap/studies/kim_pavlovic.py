r"""Kim & Pavlovic (2021, GPVAE): the model and training settings the GPVAE experiments share.

``gpvae_table1`` and ``gpvae_gaps`` declare these as profile settings (:data:`MODEL_SETTINGS`), take the paper's
values from :data:`PAPER_MODEL`, and build a run's :class:`~pyro_vaegap.runs.TrainConfig` fields with
:func:`model_fields` and its guide options with :func:`guide_options`. The paper's Table 1 models (VAE, SA(K), IAF(K),
HF(K), ME(M), RME(M), GPVAE) are :class:`Spec` objects (:data:`FAMILIES`, :func:`parse_specs`), shared by
``gpvae_table1`` and ``gpvae_epoch_cost``.

The paper's setting (section 5, supplement 8, Table 6):

* grey-level images with :math:`p(x\mid z) = \mathcal N(g(z), \sigma_x^2 I)`, :math:`\sigma_x^2` "a fixed constant"
  (eq. 1, footnote 2) whose value is not stated. Its positive log-likelihoods bound it: a Gaussian of variance
  :math:`\sigma^2` on :math:`D = 784` pixels has density at most :math:`(2\pi\sigma^2)^{-D/2}`, so the VAE's
  1185.7 nats at dim z = 50 need :math:`\sigma_x^2 < e^{-2\cdot1185.7/784}/2\pi = 0.0077` for pixels in
  [0, 1] (less, by the reconstruction error and the KL). :data:`PAPER_SIGMA2` is **our choice** inside that bound;
* the convolutional networks of Table 6 (``arch="conv_kim"``: :mod:`pyro_vaegap.models.networks`), h = 256,
  one fully connected hidden layer in the encoder before its head and one in the decoder before the map to the
  first feature map;
* 10 % of the training set held out for validation, a new random split per run (``valid_split="holdout"``, the
  split seeded by the run's seed), the model of the best validation result kept (``keep_best``; the paper picks
  the best of three initializations by validation, which we do not);
* Adam, lr 5e-4, batch 128; GPVAE's feature maps :math:`\psi^m, \psi^s` two networks "exactly the same
  architecture as the encoder network except that the last fully connected layer is removed", :math:`p = h`;
* eq. 16's expected-log term: we default to its closed form (the paper estimates it by Monte Carlo and cites the
  closed form).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from ..guides.gpvae import EXPECTED_LOG, FEATURES
from ..harness import Setting
from ..models import GAUSSIAN_VARIANCES
from ..models.networks import ARCHITECTURES
from ..report import papers
from ..runs.config import MODELS, TRAIN_SPLITS, TrainConfig
from ..utils import ConfigError

#: σ_x² of our paper profiles (σ_x = 0.05): not the paper's (unstated), a value inside the bound derived above
PAPER_SIGMA2 = 0.0025

#: the paper's model and training settings (see the module docstring); experiments add their own sizes
PAPER_MODEL = dict(dataset="mnist_continuous", model="gaussian", variance="fixed", sigma2=PAPER_SIGMA2,
                   arch="conv_kim", hidden=256, layers=1, activation="relu", train_split="train+valid",
                   valid_split="holdout", keep_best=1, lr=5e-4, batch_size=128, gp_features="separate",
                   feature_width=256, expected_log="closed_form")

#: the converged CPU subset's model and training: the paper's data, decoder and training settings with MLP networks
#: (784-256-256 and d-256-256-784), all training images, 200 epochs — ``gpvae_table1 --profile cpu_converged``,
#: whose runs ``gpvae_gaps --profile cpu_converged --table-out`` evaluates. σ_x² is one learned scalar (started at
#: :data:`PAPER_SIGMA2`; footnote 2's "part of the model ... subsumed in θ"): the paper's numbers need σ_x² near
#: the decoder's per-pixel squared error (a fixed σ_x² only bounds them), which a learned scalar attains and any
#: one fixed value across dims z does not (docs/gpvae.rst, "σ_x²")
CPU_CONVERGED = dict(PAPER_MODEL, arch="mlp", layers=2, num_train=None, epochs=200, variance="scalar")

#: the binarized-MNIST MLP setting of the experiments' earlier CPU profiles (their committed runs), GPVAE as then:
#: shared features and the Monte Carlo expected-log term
BINARIZED_MLP = dict(dataset="binarized_mnist", model="bernoulli", variance="network", sigma2=1.0, arch="mlp",
                     hidden=200, layers=2, activation="elu", train_split="train", valid_split="valid", keep_best=0,
                     gp_features="shared", feature_width=None, expected_log="monte_carlo")

#: the profile settings of :data:`PAPER_MODEL`'s keys (``lr`` and ``batch_size`` are each experiment's own)
MODEL_SETTINGS = {
    "dataset": Setting(str, "data set (a grey-level one, e.g. mnist_continuous, with --model gaussian --variance fixed)"),
    "model": Setting(str, "the decoder's likelihood", choices=MODELS),
    "variance": Setting(str, "variance of a gaussian model (TrainConfig.variance)", choices=GAUSSIAN_VARIANCES),
    "sigma2": Setting(float, "a gaussian model's fixed variance σ_x² (or its learned one's start)"),
    "arch": Setting(str, "encoder and decoder architecture: mlp, conv or conv_kim (supplement Table 6)",
                    choices=ARCHITECTURES),
    "hidden": Setting(int, "width of the hidden layers (the paper's h)"),
    "layers": Setting(int, "fully connected hidden layers of encoder and decoder (mlp: 2; conv_kim: 1, Table 6)"),
    "activation": Setting(str, "activation (conv_kim: relu, its encoder LeakyReLU(0.01))"),
    "train_split": Setting(str, "train (50,000 images) or train+valid (all 60,000)", choices=TRAIN_SPLITS),
    "valid_split": Setting(str, "validation rows: valid, or holdout (10%% of the training rows, per seed)",
                           choices=("valid", "holdout")),
    "keep_best": Setting(int, "1: evaluate the epoch of the best validation ELBO; 0: the last", choices=(0, 1)),
    "gp_features": Setting(str, "GPVAE's ψ^m, ψ^s: shared (the base encoder's) or separate networks",
                           choices=FEATURES),
    "feature_width": Setting(int, "GPVAE's p with separate feature networks (the paper: 256)"),
    "expected_log": Setting(str, "GPVAE's E log(c + uᵀψ)²: closed_form or monte_carlo (the paper's)",
                            choices=EXPECTED_LOG),
}

#: GPVAE's guide options of the settings ``gp_features``, ``feature_width``, ``expected_log``, with the guide's own
#: defaults: an option at its default is left out of a run's config (runs trained before these settings existed
#: keep their config, so their folders are reused)
GPVAE_OPTIONS = {"gp_features": ("features", "shared"), "feature_width": ("feature_width", None),
                 "expected_log": ("expected_log", "monte_carlo")}


def guide_options(family: str, s: dict, **extra) -> dict:
    """The amortized guide's options of ``family`` under the settings ``s`` (``extra``: the family's own, e.g.
    ``num_steps``)."""
    opts = {"hidden": s["hidden"], "layers": s["layers"], "activation": s["activation"], **extra}
    if family == "gpvae":
        opts.update({name: s[key] for key, (name, default) in GPVAE_OPTIONS.items() if s[key] != default})
        if opts.get("features", "shared") == "shared":
            opts.pop("feature_width", None)  # shared features have the base encoder's width
    return opts


def model_fields(s: dict) -> dict:
    """The :class:`~pyro_vaegap.runs.TrainConfig` fields of the settings ``s`` (data, decoder, networks, validation)."""
    return dict(dataset=s["dataset"], model=s["model"], variance=s["variance"], sigma2=s["sigma2"],
                hidden=s["hidden"], decoder_layers=s["layers"], activation=s["activation"], arch=s["arch"],
                train_split=s["train_split"], valid_split=s["valid_split"], keep_best=bool(s["keep_best"]))


def train_config(spec: "Spec", dim: int, seed: int, s: dict, data_dir) -> TrainConfig:
    """The run of one model (``spec``: family and its K or M) at dim z ``dim`` and ``seed`` under the settings ``s``
    (:func:`model_fields`, ``num_train``, ``epochs``, ``batch_size``, ``lr`` and, if set, ``num_valid``). Every
    Kim & Pavlovic experiment builds its runs here, so equal settings give equal configs and one experiment's
    finished runs serve another (``gpvae_gaps --table-out`` evaluates ``gpvae_table1``'s)."""
    return TrainConfig(**model_fields(s), data_dir=data_dir, num_train=s["num_train"], latent_dim=dim,
                       guide=spec.family, guide_options=guide_options(spec.family, s, **spec.options), objective="elbo",
                       epochs=s["epochs"], batch_size=s["batch_size"], lr=s["lr"], num_valid=s.get("num_valid"),
                       seed=seed)


def describe(s: dict) -> str:
    """One sentence of the data, decoder, networks and validation of the settings ``s``."""
    var = {"fixed": ", σ_x² = {:g} fixed", "scalar": ", one σ_x² learned from {:g}"}.get(s["variance"], "")
    return (f"{s['dataset']} ({s['model']} decoder" + (var.format(s["sigma2"]) if s["model"] == "gaussian" else "")
            + "), "
            f"networks {s['arch']} (hidden width {s['hidden']}, {s['layers']} fully connected layers, "
            f"{s['activation']}), GPVAE's feature networks {s['gp_features']}"
            + (f" of width {s['feature_width']}" if s["gp_features"] == "separate" and s["feature_width"] else "")
            + f" and its expected-log term {s['expected_log'].replace('_', ' ')}; validation on "
            + ("a seeded 10% of the training images per seed" if s["valid_split"] == "holdout" else "the valid split")
            + (", the epoch of the best validation ELBO evaluated" if s["keep_best"] else ", the last epoch evaluated"))


def paper_values(label: str) -> tuple:
    """The K (or M) of the paper's rows ``label(K)`` in its Table 1 (:mod:`pyro_vaegap.report.papers`,
    ``kim2021:1``); ``(None,)`` for a row without one (``VAE``, ``GPVAE``)."""
    rows = [r for r, _ in papers.table_info("kim2021", "1").rows]
    ks = tuple(int(r[len(label) + 1:-1]) for r in rows if r.startswith(label + "(") and r.endswith(")"))
    if not ks and label not in rows:
        raise ConfigError(f"the paper's Table 1 has no row {label!r}")  # a misspelt label: not silently empty
    return ks or (None,)


#: key → (label, library family, the option K or M sets, the values the paper's table has)
FAMILIES = {key: (label, family, option, paper_values(label)) for key, (label, family, option) in {
    "vae": ("VAE", "ffg", None),
    "sa": ("SA", "sa", "num_steps"),
    "iaf": ("IAF", "iaf", "num_transforms"),
    "hf": ("HF", "householder", "num_transforms"),
    "me": ("ME", "mixture", "num_components"),
    "rme": ("RME", "rme", "num_components"),
    "gpvae": ("GPVAE", "gpvae", None),
}.items()}


@dataclass(frozen=True)
class Spec:
    """One row of the table: a family and its K (steps, flows) or M (components)."""

    key: str
    k: int | None = None

    @property
    def label(self) -> str:
        return FAMILIES[self.key][0] + ("" if self.k is None else f"({self.k})")

    @property
    def slug(self) -> str:
        return self.key + ("" if self.k is None else str(self.k))

    @property
    def family(self) -> str:
        return FAMILIES[self.key][1]

    @property
    def options(self) -> dict:
        option = FAMILIES[self.key][2]
        return {} if option is None else {option: self.k}


ALL_SPECS = tuple(Spec(key, k) for key, (_, _, _, ks) in FAMILIES.items() for k in ks)


def parse_specs(text: str) -> list[Spec]:
    """``"vae,sa,iaf4,ME(3)"`` → the specs: a family name alone means all its K (M) of the paper's table."""
    specs = []
    for item in filter(None, (t.strip() for t in text.split(","))):
        m = re.fullmatch(r"([a-z]+)\(?(\d+)?\)?", item.lower())
        if not m or m.group(1) not in FAMILIES:
            raise ConfigError(f"--families: {item!r} is not a model of the table; allowed: "
                              f"{', '.join(FAMILIES)}, each alone (all its K) or with one K, e.g. sa4 or SA(4)")
        key, ks = m.group(1), FAMILIES[m.group(1)][3]
        if m.group(2) is None:
            specs += [Spec(key, k) for k in ks]
        elif ks == (None,):
            raise ConfigError(f"--families: {item!r}: {key} takes no K; give it as {key!r}")
        elif int(m.group(2)) not in ks:
            what = "M" if FAMILIES[key][2] == "num_components" else "K"
            raise ConfigError(f"--families: {item!r}: {what}={m.group(2)} is not allowed for {FAMILIES[key][0]}; "
                              f"the paper's table has {what} in {', '.join(map(str, ks))}")
        else:
            specs.append(Spec(key, int(m.group(2))))
    if not specs:
        raise ConfigError(f"--families {text!r} names no model; allowed: {', '.join(FAMILIES)}")
    return list(dict.fromkeys(specs))
