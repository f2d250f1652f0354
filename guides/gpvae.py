r"""GPVAE: the FFG encoder plus Gaussian-process noise on its mean and scale (Kim & Pavlovic 2021,
"Reducing the amortization gap in variational autoencoders: a Bayesian random function approach";
equation numbers are the paper's).

The encoder's error is modelled as a random function of :math:`x`. With the plain VAE encoder's mean
and scale :math:`b(x), c(x)\in\mathbb R^d` and its features before the last layer
:math:`\psi(x)\in\mathbb R^p`, the noise functions are GPs with the linear deep kernels
:math:`k^m(x, x') = \psi^m(x)^\top\psi^m(x')` and :math:`k^s` likewise, written in weight space as
:math:`f(x) = W\psi^m(x)`, :math:`h(x) = U\psi^s(x)`. The paper's feature maps are networks of their own,
"the same architecture as the encoder, last layer removed", :math:`p = 256` (``features="separate"``,
``feature_width``); by default (``features="shared"``) both are the base encoder's own features,
:math:`\psi^m = \psi^s = \psi`, which costs no extra network. Below, :math:`\psi` in a term of
:math:`W` (:math:`\Sigma`, :math:`\mu`) is :math:`\psi^m` and in a term of :math:`U` (:math:`\Gamma`,
:math:`\eta`) is :math:`\psi^s`. With :math:`W, U\in\mathbb R^{d\times p}`, rows
:math:`w_j, u_j\sim\mathcal N(0, I_p)` a priori, and

.. math::

    q(z\mid x, W, U) = \mathcal N\big(b(x) + W\psi(x),\ \mathrm{diag}\,(c(x) + U\psi(x))^2\big)
    \quad\text{(eq. 9)}, \qquad
    q(W, U) = \prod_{j=1}^d \mathcal N(w_j;\mu_j,\Sigma_j)\,\mathcal N(u_j;\eta_j,\Gamma_j)
    \quad\text{(eq. 11)},

with full covariances :math:`\Sigma_j = L_jL_j^\top`, :math:`\Gamma_j = G_jG_j^\top` (lower-triangular
Cholesky factors, diagonal ``softplus`` of a free parameter).

**The marginal encoder** (eq. 13) matches the first two moments of :math:`\int q(z\mid x,W,U)\,q(W,U)`:
:math:`q(z\mid x) = \mathcal N(m(x), \mathrm{diag}\,v(x))` with

.. math::

    m_j = b_j + \mu_j^\top\psi, \qquad
    v_j = \underbrace{\psi^\top\Sigma_j\psi}_{\mathrm{Var} f_j}
        + \underbrace{(c_j + \eta_j^\top\psi)^2}_{\bar s_j^2}
        + \underbrace{\psi^\top\Gamma_j\psi}_{\mathrm{Var} h_j}

(:math:`\mathrm{Var}[z_j] = \mathbb E\,\mathrm{Var}[z_j\mid W,U] + \mathrm{Var}\,\mathbb E[z_j\mid W,U]
= \mathbb E(c_j + u_j^\top\psi)^2 + \mathrm{Var}(w_j^\top\psi)`). The :math:`2d` quadratic forms are
:math:`\|L_j^\top\psi\|^2` and :math:`\|G_j^\top\psi\|^2`, all computed by one matrix product of
:math:`\psi` with the stacked factors. This Gaussian is what the Pyro guide samples at site ``"z"``,
so estimators (IWAE, AIS, the gap report) see it as the amortized :math:`q(z\mid x)`; its per-datum
counterpart is the per-datum FFG (``pyro_vaegap.guides.ffg.LocalFFG``), so its amortization gap is
measured against the same :math:`q^*` as the plain VAE's.

**Training objective** (eq. 15), per datapoint,

.. math::

    \mathcal J(x) = \mathbb E_{q(z\mid x)}[\log p(x\mid z)]
        - \mathbb E_{q(W,U)}\,\mathrm{KL}\big(q(z\mid x,W,U)\,\Vert\,p(z)\big)
        - \tfrac1N\,\mathrm{KL}\big(q(W,U)\,\Vert\,\mathcal N(0, I)\big),

the reconstruction term with :math:`z` from the moment-matched marginal, :math:`N` the training-set
size. The expected KL is eq. 16 per dimension, with
:math:`\mathbb E(b_j + w_j^\top\psi)^2 = m_j^2 + \mathrm{Var}f_j` and
:math:`\mathbb E(c_j + u_j^\top\psi)^2 = \bar s_j^2 + \mathrm{Var}h_j`:

.. math::

    \mathbb E\,\mathrm{KL}_j = \tfrac12\big(m_j^2 + v_j - 1 - \mathbb E\log(c_j + u_j^\top\psi)^2\big),
    \qquad \mathbb E\log(c_j + u_j^\top\psi)^2 \approx \frac1S\sum_{s=1}^S
    \log\big(\bar s_j + \sqrt{\mathrm{Var}h_j}\,\epsilon_{sj}\big)^2,

reparameterized Monte Carlo over :math:`U` (``S = num_particles``): :math:`u_j^\top\psi` is exactly
:math:`\mathcal N(\bar s_j - c_j, \mathrm{Var}h_j)` under :math:`q(U)`, so it is drawn as a scalar per
datapoint and dimension instead of through a :math:`d\times p` matrix. The paper estimates this term so
(``expected_log="monte_carlo"``, the default). It also has a closed form, which the paper cites (Lloyd et
al. 2015) and ``expected_log="closed_form"`` uses (:func:`expected_log_square`): it has no variance, where
the Monte Carlo estimate is heavy-tailed whenever :math:`\bar s_j` is near 0 (:math:`\log s^2` has a
logarithmic singularity at :math:`s = 0`). By Jensen,
:math:`\mathbb E\log(\cdot)^2 \le \log v_j`, so this term is at least the marginal's own KL. The
weights' KL is closed form,
:math:`\tfrac12\sum_j[\mathrm{tr}\,\Sigma_j + \|\mu_j\|^2 - p - \log\det\Sigma_j]` plus the same for
:math:`U`, with :math:`\mathrm{tr}\,\Sigma_j = \|L_j\|_F^2` and
:math:`\log\det\Sigma_j = 2\sum_i\log (L_j)_{ii}`.

With the exact mixture :math:`\int q(z\mid x,W,U)\,q(W,U)` in the reconstruction term, :math:`N`
times the mean of :math:`\mathcal J` over the training set would be
:math:`\mathbb E_{q(W,U)}[\sum_n\mathcal L_n(W,U)] - \mathrm{KL}(q(W,U)\Vert p(W,U)) \le
\log\mathbb E_{p(W,U)}e^{\sum_n\mathcal L_n(W,U)} \le \sum_n\log p(x_n)`, as every
:math:`\mathcal L_n(W,U)` is an ELBO; the moment-matched reconstruction term makes eq. 15 an
approximation of that bound. Reported bounds and gaps are those of the marginal
:math:`q(z\mid x)` itself, scored like any guide.

**How eq. 15 reaches training.** It is not the ELBO of the trace's :math:`q(z\mid x)` (its KL term is
the expected KL of the conditional Gaussians, and it adds the weights' KL), and :math:`W, U` are
global: sampling them as Pyro sites would draw outside the data plate, which the scoring contract
(:mod:`pyro_vaegap.contract.guide`) forbids — estimators would then score :math:`q(z, W, U\mid x)` with one
:math:`W` shared by a whole batch. So the trace holds only the marginal ``"z"``, and eq. 15 is the
:meth:`~pyro_vaegap.contract.guide.Guide.elbo` hook (``custom_elbo = True``), which ``vaegap train`` optimizes
(:class:`pyro_vaegap.objectives.CustomELBO`: ``objective="elbo"``, no annealing, no free bits);
:math:`N` arrives through :meth:`~pyro_vaegap.contract.guide.Guide.set_training_size`, which
:func:`pyro_vaegap.train.train` calls.

**Uncertainty** of the posterior noise at :math:`x` (:meth:`GPVAEEncoder.uncertainty`):
:math:`\mathrm{Tr}\,\mathbb V(f(x)\mid D) + \mathrm{Tr}\,\mathbb V(h(x)\mid D)
= \psi^\top\big(\sum_j\Sigma_j\big)\psi + \psi^\top\big(\sum_j\Gamma_j\big)\psi`; the gap report
keeps it per datapoint.

**Initialization**: :math:`\mu = \eta = 0` and :math:`\Sigma_j = \Gamma_j = \sigma_0^2 I`
(``init_std`` :math:`\sigma_0`, 0.01), so training starts near the plain VAE. With ``noise=False`` the
weights are fixed at :math:`W = U = 0` (:math:`\mu = \eta = 0`, :math:`\Sigma = \Gamma = 0`): no
random weights and no weight KL, and the guide is exactly the FFG encoder with the same weights, its
objective the FFG ELBO with the KL in closed form.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import pyro
import pyro.distributions as dist
import torch
from torch import nn
from torch.nn.functional import softplus

from pyro_vaegap.contract.guide import Family, Guide
from pyro_vaegap.estimators.traces import log_joint_parts
from pyro_vaegap.models.networks import encoder_body
from pyro_vaegap.utils import ConfigError, check_positive_int
from .ffg import FFGEncoder, LocalFFG


def _safe_sqrt(v: torch.Tensor) -> torch.Tensor:
    """``sqrt(v)`` for ``v >= 0`` with a zero (not NaN) gradient where ``v == 0`` (e.g. ReLU features
    that are all zero, or ``noise=False``), where the plain square root's derivative is infinite."""
    positive = v > 0
    return torch.where(positive, v.clamp_min(torch.finfo(v.dtype).tiny).sqrt(), torch.zeros_like(v))


_EULER_GAMMA = 0.57721566490153286


def expected_log_square(mean: torch.Tensor, var: torch.Tensor, crossover: float = 10.0) -> torch.Tensor:
    r""":math:`\mathbb E\log X^2` for :math:`X\sim\mathcal N(\mu, \sigma^2)`, elementwise, exactly and
    differentiably in both arguments (``var`` :math:`=\sigma^2\ge0`).

    With :math:`X = \sigma(Z + r)`, :math:`r = \mu/\sigma`, :math:`(Z + r)^2` is a noncentral
    :math:`\chi^2_1` with noncentrality :math:`r^2`, i.e. a Poisson(:math:`a = r^2/2`) mixture of
    central :math:`\chi^2_{1 + 2J}`; as :math:`\mathbb E\log\chi^2_k = \log 2 + \psi(k/2)`,

    .. math::

        \mathbb E\log X^2 = \log\sigma^2 + \log 2
            + \sum_{j\ge0} e^{-a}\frac{a^j}{j!}\,\psi\big(\tfrac12 + j\big)

    (equal to Lloyd et al. 2015's form with the confluent hypergeometric function; at :math:`\mu = 0` it
    is :math:`\log\sigma^2 - \gamma - \log 2`). The series is summed to :math:`j < a_{max} + 8\sqrt{a_{max}}
    + 30` for :math:`|r| \le` ``crossover`` (the Poisson tail beyond is below :math:`e^{-30}`); above it the
    asymptotic expansion of :math:`\mathbb E\log(1 + Z/r)^2 = -\sum_k (2k-1)!!/(k\,r^{2k})`, five terms,
    whose first omitted term is below :math:`2\cdot10^{-9}` at :math:`r = 10`. With ``var = 0`` it is
    :math:`\log\mu^2`. Checked against adaptive quadrature in ``tests/test_gpvae.py``.
    """
    # a tensor is converted with .to (a no-op here), not torch.as_tensor, which a traced loss records as a constant
    var = (var if torch.is_tensor(var) else torch.tensor(var)).to(dtype=mean.dtype, device=mean.device)
    var = var.expand_as(mean)
    degenerate = var <= 0
    safe_var = torch.where(degenerate, torch.ones_like(var), var)
    r2 = mean.square() / safe_var
    small = r2 <= crossover ** 2
    # the double where keeps NaN/inf of the unused branch out of the gradient
    a = torch.where(small, 0.5 * r2, torch.zeros_like(r2))
    a_max = 0.5 * crossover ** 2
    j = torch.arange(int(a_max + 8 * math.sqrt(a_max) + 30), dtype=mean.dtype, device=mean.device)
    log_a = a.clamp_min(torch.finfo(mean.dtype).tiny).log().unsqueeze(-1)
    log_poisson = -a.unsqueeze(-1) + j * log_a - torch.lgamma(j + 1)
    series = math.log(2.0) + (log_poisson.exp() * torch.special.digamma(j + 0.5)).sum(-1)
    r2_large = torch.where(small, torch.full_like(r2, 4 * crossover ** 2), r2)
    inv = r2_large.reciprocal()
    asymptotic = r2_large.log() - inv * (1 + inv * (1.5 + inv * (5.0 + inv * (26.25 + inv * 189.0))))
    value = safe_var.log() + torch.where(small, series, asymptotic)
    point = torch.where(degenerate, mean.square(), torch.ones_like(mean)).log()  # σ² = 0: X = μ
    return torch.where(degenerate, point, value)


EXPECTED_LOG = ("monte_carlo", "closed_form")
"""How :class:`GPVAEEncoder` computes eq. 16's log-scale term."""
FEATURES = ("shared", "separate")
r"""Where :class:`GPVAEEncoder`'s GP features :math:`\psi^m, \psi^s` come from."""


@dataclass
class GPMoments:
    r"""The quantities of eq. 13 for a batch; every tensor has shape ``(B, d)`` except ``psi``
    ``(B, 2, p)``, :math:`\psi^m` (``psi[:, 0]``) and :math:`\psi^s` (``psi[:, 1]``).

    ``base_loc``, ``base_scale``: :math:`b, c`; ``loc``: :math:`m = b + \mu\psi`; ``scale_mean``:
    :math:`\bar s = c + \eta\psi`; ``var_f``, ``var_h``: :math:`\psi^\top\Sigma_j\psi`,
    :math:`\psi^\top\Gamma_j\psi`; ``var``: :math:`v = \mathrm{Var}f + \bar s^2 + \mathrm{Var}h`;
    ``scale``: :math:`\sqrt v`.
    """

    psi: torch.Tensor
    base_loc: torch.Tensor
    base_scale: torch.Tensor
    loc: torch.Tensor
    scale_mean: torch.Tensor
    var_f: torch.Tensor
    var_h: torch.Tensor
    var: torch.Tensor
    scale: torch.Tensor


class GPVAEEncoder(Guide):
    r"""Amortized GPVAE: :math:`q(z\mid x) = \mathcal N(m(x), \mathrm{diag}\,v(x))` of eq. 13, trained on eq. 15.

    :param hidden, layers, activation, dense: the base encoder (as ``ffg``); :math:`p` is the width of
        its features (``hidden``, or the data width when ``layers = 0``).
    :param init_std: :math:`\sigma_0`, the initial standard deviation of every entry of :math:`W` and
        :math:`U` (their means start at 0).
    :param noise: ``False`` fixes :math:`W = U = 0` (:math:`\Lambda = 0`): the plain VAE encoder.
    :param features: ``"shared"`` (:math:`\psi^m = \psi^s` = the base encoder's features) or
        ``"separate"`` (two networks of the base encoder's architecture without its last layer, of width
        ``feature_width``, the paper's choice).
    :param feature_width: :math:`p` of the separate feature networks (default ``hidden``; the paper: 256).
    :param expected_log: how eq. 16's :math:`\mathbb E\log(c_j + u_j^\top\psi)^2` is computed:
        ``"monte_carlo"`` (the paper's reparameterized draws) or ``"closed_form"`` (:func:`expected_log_square`).

    Parameters: ``base`` (the FFG encoder, see :meth:`make_base`); ``loc`` ``(2, d, p)``, the means
    :math:`\mu_j` (``loc[0]``) and :math:`\eta_j` (``loc[1]``); ``tril_raw`` ``(p, 2, d, p)``, entry
    ``[r, k, j, c]`` the unconstrained entry :math:`(r, c)` of :math:`L_j` (``k = 0``) or :math:`G_j`
    (``k = 1``) — kept where :math:`r > c`, ``softplus`` of it on the diagonal, ignored above. The row
    index comes first so that :math:`\psi^\top` times all :math:`2d` factors is one matrix product
    ``(B, p) @ (p, 2dp)`` on the parameter's own memory (the product dominates the cost of
    :meth:`moments`).

    The base encoder is used only through ``features(x)`` (:math:`\psi`, the features before its last
    layer), ``encode_features(ψ)`` (:math:`b, c`) and ``feature_dim`` (:math:`p`), so an encoder with
    another trunk works unchanged by overriding :meth:`make_base`; ``arch="conv"`` gives the paper's
    convolutional encoder, whose features before the last layer are then :math:`\psi`.
    """

    custom_elbo = True

    def __init__(self, model, hidden: int = 200, layers: int = 2, activation: str = "elu", dense: bool = False,
                 init_std: float = 0.01, noise: bool = True, arch: str = "mlp", expected_log: str = "monte_carlo",
                 features: str = "shared", feature_width: int | None = None):
        super().__init__(model)
        if features not in FEATURES:
            raise ConfigError(f"features={features!r} is not allowed: expected one of {', '.join(FEATURES)}")
        if features == "shared" and feature_width is not None:
            raise ConfigError(f"feature_width={feature_width!r} needs features='separate': shared features have "
                              "the base encoder's width")
        self.feature_source = features
        if expected_log not in EXPECTED_LOG:
            raise ConfigError(f"expected_log={expected_log!r} is not allowed: expected one of {', '.join(EXPECTED_LOG)}")
        self.expected_log = expected_log
        if not (isinstance(init_std, (int, float)) and math.isfinite(init_std) and init_std > 0):
            raise ConfigError(f"init_std={init_std!r} is not allowed: expected a finite positive number")
        self.noise = bool(noise)
        self.base = self.make_base(model, hidden=hidden, layers=layers, activation=activation, dense=dense, arch=arch)
        if features == "separate":
            width = hidden if feature_width is None else check_positive_int("feature_width", feature_width)
            bodies = [encoder_body(self.data_dim, width, layers, activation, dense, arch) for _ in range(2)]
            self.feature_nets = nn.ModuleList(body for body, _ in bodies)
            self.feature_dim = bodies[0][1]
        else:
            self.feature_nets = None
            self.feature_dim = self.base.feature_dim  #: p, the width of ψ^m and ψ^s
        d, p = self.latent_dim, self.feature_dim
        self.training_size: int | None = None
        loc = torch.zeros(2, d, p)
        tril_raw = torch.zeros(p, 2, d, p)
        if self.noise:
            tril_raw.diagonal(dim1=0, dim2=3).fill_(math.log(math.expm1(init_std)))  # softplus⁻¹(σ0)
            self.loc = nn.Parameter(loc)
            self.tril_raw = nn.Parameter(tril_raw)
        else:  # Λ = 0 held fixed: zero means and zero Cholesky factors, not trained
            self.register_buffer("loc", loc)
            self.register_buffer("tril_raw", tril_raw)
        self.register_buffer("_strict_lower", torch.ones(p, p).tril(-1)[:, None, None, :], persistent=False)

    def make_base(self, model, **options) -> Guide:
        """The base encoder giving :math:`b, c` and :math:`\\psi`: an :class:`~pyro_vaegap.guides.ffg.FFGEncoder`."""
        return FFGEncoder(model, **options)

    def set_training_size(self, num_data: int) -> None:
        """Keep :math:`N`, the weight :math:`1/N` of the weights' KL in :meth:`elbo`."""
        self.training_size = check_positive_int("num_data", num_data)

    def scale_tril_stacked(self) -> torch.Tensor:
        """All :math:`2d` Cholesky factors in the layout of ``tril_raw``, ``(p, 2, d, p)``."""
        if not self.noise:
            return self.tril_raw  # zeros: Σ = Γ = 0
        raw = self.tril_raw
        tril = raw * self._strict_lower
        # a fresh tensor: writing its diagonal in place is recorded by autograd like any copy
        tril.diagonal(dim1=0, dim2=3).copy_(softplus(raw.diagonal(dim1=0, dim2=3)))
        return tril

    def weight_distribution(self) -> dist.MultivariateNormal:
        r""":math:`q(W, U)` (eq. 11) as a batch ``(2, d)`` of :math:`p`-variate normals: ``[0, j]`` is
        :math:`\mathcal N(\mu_j, \Sigma_j)`, ``[1, j]`` is :math:`\mathcal N(\eta_j, \Gamma_j)`."""
        if not self.noise:
            raise ConfigError("with noise=False the weights are fixed at W = U = 0: there is no q(W, U)")
        return dist.MultivariateNormal(self.loc, scale_tril=self.scale_tril_stacked().permute(1, 2, 0, 3))

    def gp_features(self, x: torch.Tensor, psi: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        r""":math:`(\psi^m, \psi^s)`, each ``(B, p)``; ``psi``: the base encoder's features of ``x``."""
        if self.feature_nets is None:
            return psi, psi
        return self.feature_nets[0](x), self.feature_nets[1](x)

    def moments(self, x: torch.Tensor, tril: torch.Tensor | None = None) -> GPMoments:
        """Eq. 13 for the rows of ``x``; ``tril``: :meth:`scale_tril_stacked`, if already computed."""
        d, p = self.latent_dim, self.feature_dim
        tril = self.scale_tril_stacked() if tril is None else tril
        base_psi = self.base.features(x)
        b, c = self.base.encode_features(base_psi)
        psi_m, psi_s = self.gp_features(x, base_psi)
        if psi_m is psi_s:  # one product with all 2d factors
            shift = (psi_m @ self.loc.reshape(2 * d, p).T).unflatten(-1, (2, d))          # (B, 2, d): μψ, ηψ
            quad = (psi_m @ tril.reshape(p, 2 * d * p)).unflatten(-1, (2, d, p)).square().sum(-1)  # ‖L_jᵀψ‖², ‖G_jᵀψ‖²
        else:
            shift = torch.stack([psi_m @ self.loc[0].T, psi_s @ self.loc[1].T], -2)
            quad = torch.stack([(psi_k @ tril[:, k].reshape(p, d * p)).unflatten(-1, (d, p)).square().sum(-1)
                                for k, psi_k in enumerate((psi_m, psi_s))], -2)
        loc, scale_mean = b + shift[..., 0, :], c + shift[..., 1, :]
        var_f, var_h = quad[..., 0, :], quad[..., 1, :]
        # hypot(s̄, 0) is exactly |s̄|: with no noise the scale is the base encoder's c, bit for bit
        scale = torch.hypot(scale_mean, _safe_sqrt(var_f + var_h))
        return GPMoments(psi=torch.stack([psi_m, psi_s], -2), base_loc=b, base_scale=c, loc=loc,
                         scale_mean=scale_mean, var_f=var_f, var_h=var_h, var=var_f + scale_mean.square() + var_h,
                         scale=scale)

    def encode(self, x):
        """The marginal's ``(m, sqrt v)``, each ``(B, d)`` (per-datum FFG guides start from it). Without
        gradients (evaluation) it uses :meth:`covariances`, computed once per parameter state."""
        if torch.is_grad_enabled():
            mo = self.moments(x)
            return mo.loc, mo.scale
        d, p = self.latent_dim, self.feature_dim
        base_psi = self.base.features(x)
        b, c = self.base.encode_features(base_psi)
        psi_m, psi_s = self.gp_features(x, base_psi)
        cov = self.covariances()
        if psi_m is psi_s:  # ψᵀ(Σ_j + Γ_j)ψ: one product
            quad = ((psi_m @ cov.sum(0)).unflatten(-1, (d, p)) * psi_m.unsqueeze(-2)).sum(-1)
        else:
            quad = sum(((psi_k @ cov[k]).unflatten(-1, (d, p)) * psi_k.unsqueeze(-2)).sum(-1)
                       for k, psi_k in enumerate((psi_m, psi_s)))
        loc = b + psi_m @ self.loc[0].T
        return loc, torch.hypot(c + psi_s @ self.loc[1].T, _safe_sqrt(quad.clamp_min(0.0)))

    def covariances(self) -> torch.Tensor:
        r""":math:`\Sigma_j` (``[0]``) and :math:`\Gamma_j` (``[1]``) for every :math:`j`, laid out ``(2, p, d·p)``
        so that :math:`\psi^\top\Sigma_j\psi` for all :math:`j` is one product with :math:`\psi` and a row-wise
        dot product; with shared features :math:`\psi^\top(\Sigma_j + \Gamma_j)\psi` is one product
        (:math:`Bdp^2` multiply-adds, half of :meth:`moments`' :math:`2Bdp^2`), and no Cholesky factors are
        rebuilt per call. Only :math:`\mathrm{Var}f_j + \mathrm{Var}h_j` enters the marginal's variance, so
        this is exact. Computed once per parameter state: in-place optimizer steps and ``load_state_dict``
        bump a tensor's version, and moving it changes its storage, either of which recomputes it."""
        key = tuple((t._version, t.data_ptr(), t.dtype, t.device) for t in (self.loc, self.tril_raw))
        cached = getattr(self, "_covariance_cache", None)
        if cached is None or cached[0] != key:
            with torch.no_grad():
                tril = self.scale_tril_stacked()                         # (p, 2, d, p): [r, k, j, c] = (L_j)_rc
                d, p = self.latent_dim, self.feature_dim
                cov = torch.einsum("rkjc,skjc->krjs", tril, tril).reshape(2, p, d * p)
            cached = (key, cov)
            self._covariance_cache = cached
        return cached[1]

    def uncertainty(self, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\mathrm{Tr}\,\mathbb V(f(x)\mid D) + \mathrm{Tr}\,\mathbb V(h(x)\mid D)
        = \sum_j\psi^\top(\Sigma_j + \Gamma_j)\psi` for each row of ``x``: shape ``(B,)``."""
        mo = self.moments(x)
        return (mo.var_f + mo.var_h).sum(-1)

    def expected_kl(self, mo: GPMoments, num_samples: int) -> torch.Tensor:
        r""":math:`\sum_j\mathbb E_{q(W,U)}\mathrm{KL}(q(z_j\mid x,W,U)\Vert\mathcal N(0,1))` (eq. 16),
        the log-scale term by ``num_samples`` reparameterized draws of :math:`u_j^\top\psi`, or in closed
        form (``expected_log="closed_form"``, ``num_samples`` unused): shape ``(B,)``."""
        if self.expected_log == "closed_form":
            e_log_s2 = expected_log_square(mo.scale_mean, mo.var_h)
        else:
            eps = torch.randn((num_samples,) + mo.scale_mean.shape, dtype=mo.scale_mean.dtype,
                              device=mo.scale_mean.device)
            s = mo.scale_mean + _safe_sqrt(mo.var_h) * eps
            e_log_s2 = s.square().log().mean(0)
        return 0.5 * (mo.loc.square() + mo.var - 1.0 - e_log_s2).sum(-1)

    def weight_kl(self, tril: torch.Tensor | None = None) -> torch.Tensor:
        r""":math:`\mathrm{KL}(q(W,U)\,\Vert\,\mathcal N(0, I))`, a scalar (0 with ``noise=False``)."""
        if not self.noise:
            return self.loc.new_zeros(())
        tril = self.scale_tril_stacked() if tril is None else tril
        log_diag = tril.diagonal(dim1=0, dim2=3).log()
        return 0.5 * (tril.square().sum() + self.loc.square().sum() - self.loc.numel()) - log_diag.sum()

    def elbo(self, model, x, num_samples, idx=None):
        r"""Eq. 15 for each row of ``x``, shape ``(B,)``: the reconstruction term with ``num_samples``
        draws of :math:`z` from the marginal, minus eq. 16, minus the weights' KL over :math:`N`."""
        if self.noise and self.training_size is None:
            raise ConfigError("the gpvae objective weights KL(q(W,U) || p(W,U)) by 1/N: call "
                              "guide.set_training_size(N) first (pyro_vaegap.train.train does)")
        tril = self.scale_tril_stacked()
        mo = self.moments(x, tril)
        z = mo.loc + mo.scale * torch.randn((num_samples,) + mo.loc.shape, dtype=mo.loc.dtype, device=mo.loc.device)
        _, log_lik = log_joint_parts(model, x, self.latent_values(z), idx)
        weight_kl = self.weight_kl(tril) / self.training_size if self.noise else 0.0
        return log_lik.mean(0) - self.expected_kl(mo, num_samples) - weight_kl

    def forward(self, x, idx=None, num_data=None):
        loc, scale = self.encode(x)
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(dist.Normal(loc, scale).to_event(1))


FAMILY = Family("gpvae", amortized=GPVAEEncoder, local=LocalFFG,
                description="GP encoder (Kim & Pavlovic 2021): FFG encoder with linear-kernel GP noise, moment-matched")
