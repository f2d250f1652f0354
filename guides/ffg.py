r"""Fully factorized Gaussian (FFG): :math:`q(z\mid x) = \mathcal N(\mu, \mathrm{diag}\,\sigma^2)`.

* :class:`FFGEncoder` — amortized: an MLP ``x → h → (μ(x), σ(x))`` (Cremer et al. 2018 use
  784-200-200-(50+50) with ELU).
* :class:`LocalFFG` — per datum: a free ``(μ_n, log σ_n)`` for each datapoint (what Pyro's
  ``AutoNormal`` would create over the data plate), initialized at the prior N(0, I) as in the paper,
  or at an encoder's output with :meth:`LocalFFG.init_from_amortized`.
"""
import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroParam
from torch import nn
from torch.distributions import constraints

from pyro_vaegap.contract.guide import Family, Guide, LocalGuide, gaussian_output
from pyro_vaegap.models.networks import encoder_body
from pyro_vaegap.utils import ConfigError

MIN_SCALE = 1e-5  # keeps log q finite when an encoder's softplus underflows


class FFGEncoder(Guide):
    """Amortized FFG. ``hidden``: width of each of ``layers`` hidden layers; ``activation``:
    elu/tanh/relu; ``dense``: densely connected layers (:class:`~pyro_vaegap.models.networks.DenseMLP`);
    ``arch``: ``"mlp"`` or ``"conv"`` (convolutions first; :func:`~pyro_vaegap.models.networks.encoder_body`).

    :meth:`encode` returns ``(loc, scale)`` of shape ``(B, d)``; ``scale = softplus(raw) + 1e-5``
    (softplus rather than ``exp(log σ)`` keeps early training from overflowing). It is
    :meth:`encode_features` (the last layer) of :meth:`features` (everything before it), so a guide
    built on the encoder's features (``gpvae``) reuses both.
    """

    def __init__(self, model, hidden: int = 200, layers: int = 2, activation: str = "elu",
                 dense: bool = False, arch: str = "mlp"):
        super().__init__(model)
        self.body, width = encoder_body(self.data_dim, hidden, layers, activation, dense, arch)
        self.feature_dim = width  #: p, the width of the features the last layer reads
        self.head = nn.Linear(width, 2 * self.latent_dim)

    def features(self, x):
        """The encoder's features before its last layer, shape ``(B, p)``."""
        return self.body(x)

    def encode_features(self, h):
        """``(loc, scale)``, each ``(B, d)``, from the features ``h = features(x)`` (the last layer)."""
        loc, raw = self.head(h).split(self.latent_dim, dim=-1)
        return loc, nn.functional.softplus(raw) + MIN_SCALE

    def encode(self, x):
        return self.encode_features(self.features(x))

    def forward(self, x, idx=None, num_data=None):
        loc, scale = self.encode(x)
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(dist.Normal(loc, scale).to_event(1))


class LocalFFG(LocalGuide):
    """Per-datum FFG: parameters ``loc`` and ``scale`` of shape ``(num_data, d)``.

    ``scale`` is a positive-constrained :class:`~pyro.nn.PyroParam`, so the optimizer works on
    ``log σ`` (its unconstrained value). Rows are independent and the one draw is a Normal, so the
    local optimizer may evaluate running rows only (``row_subsets``; subclasses that put a flow on
    this base inherit it and must keep both properties).
    """

    row_subsets = True

    def __init__(self, model, num_data: int, init_scale: float = 1.0):
        super().__init__(model, num_data)
        self.loc = PyroParam(torch.zeros(num_data, self.latent_dim))
        self.scale = PyroParam(torch.full((num_data, self.latent_dim), float(init_scale)),
                               constraint=constraints.positive)

    def forward(self, x, idx=None, num_data=None):
        rows = self.rows(x, idx)
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(dist.Normal(self.loc[rows], self.scale[rows]).to_event(1))

    @torch.no_grad()
    def init_from_amortized(self, guide, x):
        """Start ``(loc, scale)`` at an FFG-style encoder's output (:func:`~pyro_vaegap.contract.guide.gaussian_output`:
        ``guide.encode(x)``, or the Normal sites of the guide's trace); subclasses that put a flow on this base
        (``flow``, ``iaf``, ``householder``) keep their flow's own initialization."""
        out = gaussian_output(guide, x, self.spec)
        if out is None:
            raise ConfigError(f"{type(self).__name__} can start only from an encoder with an FFG output "
                              f"(encode(x) -> (loc, scale), or Normal draws at the latent sites); got "
                              f"{getattr(guide, '__name__', type(guide).__name__)}")
        self.loc = out[0].detach().clone()
        self.scale = out[1].detach().clone()

FAMILY = Family("ffg", amortized=FFGEncoder, local=LocalFFG,
                description="fully factorized Gaussian (encoder MLP / free mean and scale per datapoint)")
