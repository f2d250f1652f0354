r"""Generative models as Pyro model functions.

Every model here is a :class:`pyro.nn.PyroModule` whose ``forward(x, idx=None, num_data=None)`` is a
Pyro model with one local latent site ``"z"`` and one observed site ``"x"`` under the data plate
(see :func:`data_plate`):

.. math::

    z_n \sim \mathcal N(0, I_d), \qquad x_n \mid z_n \sim p_\theta(x_n \mid z_n), \qquad n = 1..N.

Conventions shared with the guides and the estimators:

* the data plate is ``pyro.plate("data", ..., dim=-1)``; estimators put samples, chains or particles
  in an outer plate at ``dim=-2``, so ``z`` has shape ``(S, N, d)`` there and every log-density is
  ``(S, N)``;
* densities keep every constant (the :math:`2\pi` terms of Gaussians), so all bounds are comparable;
* a model exposes ``latent_dim``, ``data_dim`` and :meth:`VAEModel.validate_data`, which is called on
  data entering training or evaluation (not on every trace: it would cost a pass over the data).

Nothing outside this module evaluates a model's density by hand: estimators trace these functions.
"""
from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule, PyroParam
from torch import nn
from torch.distributions import constraints

from .data import DataError, validate_binary, validate_continuous
from .networks import ACTIVATIONS, DenseMLP, decoder_net, mlp  # noqa: F401 - mlp, DenseMLP re-exported
from .utils import ConfigError, check_choice, check_positive_int



def data_plate(x: torch.Tensor, idx: torch.Tensor | None = None, num_data: int | None = None):
    """The plate over datapoints shared by every model and guide.

    :param x: the (mini)batch, shape ``(B, D)``.
    :param idx: global indices ``(B,)`` of the rows of ``x`` within the data set. Per-datapoint
        guides use them to pick their parameters; with ``num_data`` they are the plate's subsample.
    :param num_data: total number of datapoints ``N``. When given (with ``idx``), Pyro scales the
        log-densities of the batch by ``N / B`` (minibatch subsampling); when omitted the plate has
        size ``B`` and scale 1, which is what per-datapoint estimators want.
    """
    if num_data is None:
        return pyro.plate("data", x.shape[0], dim=-1)
    if idx is None:
        raise ConfigError("num_data was given without idx: subsampling needs the batch's global indices")
    return pyro.plate("data", num_data, subsample=idx, dim=-1)


class VAEModel(PyroModule):
    r"""Base class: standard-normal prior on ``z`` and a likelihood given by :meth:`likelihood`.

    Subclasses implement ``likelihood(z) -> Distribution`` with batch shape ``z.shape[:-1]`` and one
    event dimension of size ``data_dim``, and ``validate_data``.
    """

    def __init__(self, latent_dim: int, data_dim: int):
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.data_dim = check_positive_int("data_dim", data_dim)

    def prior(self, like: torch.Tensor) -> dist.Distribution:
        """:math:`\\mathcal N(0, I_d)` as one event of size ``d`` on ``like``'s device and dtype."""
        zeros = like.new_zeros(self.latent_dim)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def forward(self, x: torch.Tensor, idx: torch.Tensor | None = None, num_data: int | None = None):
        with data_plate(x, idx, num_data):
            z = pyro.sample("z", self.prior(x))
            pyro.sample("x", self.likelihood(z), obs=x)
        return z

    def likelihood(self, z: torch.Tensor) -> dist.Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def validate_data(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_width(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.data_dim:
            raise ConfigError(
                f"data has shape {tuple(x.shape)} but the model expects (N, {self.data_dim})"
            )


class BernoulliLogits(dist.Bernoulli):
    r"""``Bernoulli(logits=l)`` whose ``log_prob`` is one fused expression, :math:`-\mathrm{softplus}((1-2x)\,l)`.

    For :math:`x\in\{0,1\}` this equals :math:`x\log\sigma(l) + (1-x)\log(1-\sigma(l))` exactly; it
    makes two passes over the ``(S, N, D)`` logits where torch's binary-cross-entropy path makes
    about six, and the likelihood is the bulk of the elementwise work of AIS and local optimization
    (``benchmarks/bench_gaps.py``). Values must be binary — models validate data on entry.
    """

    def log_prob(self, value):
        return -nn.functional.softplus((1 - 2 * value) * self.logits)


class BernoulliVAE(VAEModel):
    r"""MLP decoder with a Bernoulli likelihood: :math:`p(x\mid z)=\prod_i \mathrm{Bern}(x_i;\sigma(f_\theta(z))_i)`.

    :param data_dim: ``D`` (784 for MNIST).
    :param latent_dim: ``d`` (50 in Cremer et al. 2018).
    :param hidden: width of each decoder hidden layer (200).
    :param decoder_layers: number of hidden layers, 0, 2 or 4 (Cremer et al. Table 5 uses all three;
        0 is a linear decoder ``z → logits``).
    :param activation: ``"elu"`` (the paper), ``"tanh"`` or ``"relu"``.
    :param dense: a densely connected decoder (:class:`~pyro_vaegap.networks.DenseMLP`) of the same widths.
    :param arch: ``"mlp"`` or ``"conv"`` (:func:`~pyro_vaegap.networks.decoder_net`: fully connected
        layers, then transposed convolutions).
    """

    def __init__(self, data_dim: int = 784, latent_dim: int = 50, hidden: int = 200,
                 decoder_layers: int = 2, activation: str = "elu", dense: bool = False, arch: str = "mlp"):
        super().__init__(latent_dim, data_dim)
        self.hidden = check_positive_int("hidden", hidden)
        self.decoder_layers = check_positive_int("decoder_layers", decoder_layers, minimum=0)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.decoder = decoder_net(latent_dim, data_dim, 1, hidden, decoder_layers, activation, dense, arch)

    def likelihood(self, z):
        return BernoulliLogits(logits=self.decoder(z), validate_args=False).to_event(1)

    def pairwise_log_likelihood(self, z: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        r""":math:`\log p(x_n\mid z_g)` for every pair of the rows of ``z`` ``(G, d)`` and ``x`` ``(N, D)``:
        shape ``(G, N)``, the decoder run once per :math:`z_g`.

        For binary :math:`x`, :math:`\log p(x\mid z) = \sum_i [x_i l_i - \mathrm{softplus}(l_i)]` with the
        logits :math:`l = f_\theta(z)` (:math:`\log\sigma(l) - \log\sigma(-l) = l`): one matrix product
        :math:`l\,x^\top` instead of :math:`G\times N\times D` elementwise terms. It equals
        :meth:`likelihood`'s ``log_prob`` (to float rounding); grid integration
        (:mod:`pyro_vaegap.grid`) uses it to score every datapoint against a whole grid of latents.
        """
        logits = self.decoder(z)
        return logits @ x.to(logits.dtype).T - nn.functional.softplus(logits).sum(-1, keepdim=True)

    def validate_data(self, x):
        x = validate_binary(x)
        self._check_width(x)
        return x


GAUSSIAN_VARIANCES = ("network", "diagonal", "scalar", "fixed")


class GaussianVAE(VAEModel):
    r"""MLP decoder with a Gaussian likelihood :math:`\mathcal N(x; \mu_\theta(z), \mathrm{diag}\,\sigma^2)`.

    :param variance: how :math:`\sigma^2` is obtained —
        ``"network"``: the decoder outputs :math:`\log\sigma^2(z)` beside :math:`\mu(z)`;
        ``"diagonal"``: one learned variance per dimension; ``"scalar"``: one learned variance shared
        by all dimensions (its optimum is the reconstruction MSE); ``"fixed"``: ``sigma2`` is not
        learned (the "MSE loss" VAE: MSE / (2 σ²) up to constants).
    :param sigma2: initial (or fixed) variance.
    :param dense: a densely connected decoder (:class:`~pyro_vaegap.networks.DenseMLP`) of the same widths.
    :param arch: ``"mlp"`` or ``"conv"`` (:func:`~pyro_vaegap.networks.decoder_net`).
    """

    def __init__(self, data_dim: int, latent_dim: int = 2, hidden: int = 100, decoder_layers: int = 2,
                 activation: str = "elu", variance: str = "network", sigma2: float = 1.0,
                 min_variance: float = 1e-6, dense: bool = False, arch: str = "mlp"):
        super().__init__(latent_dim, data_dim)
        self.variance = check_choice("variance", variance, GAUSSIAN_VARIANCES)
        if not (sigma2 > 0 and math.isfinite(sigma2)):
            raise ConfigError(f"sigma2={sigma2!r} is not allowed: expected a finite positive variance")
        self.min_variance = float(min_variance)
        outputs = 2 if variance == "network" else 1
        self.decoder = decoder_net(latent_dim, data_dim, outputs, hidden, decoder_layers, activation, dense, arch)
        if variance == "diagonal":
            self.sigma2 = PyroParam(torch.full((data_dim,), float(sigma2)), constraint=constraints.positive)
        elif variance == "scalar":
            self.sigma2 = PyroParam(torch.tensor(float(sigma2)), constraint=constraints.positive)
        elif variance == "fixed":
            self.register_buffer("fixed_sigma2", torch.tensor(float(sigma2)))

    def likelihood(self, z):
        out = self.decoder(z)
        if self.variance == "network":
            loc, log_var = out.split(self.data_dim, dim=-1)
            scale = (log_var.exp() + self.min_variance).sqrt()
        else:
            loc = out
            var = self.fixed_sigma2 if self.variance == "fixed" else self.sigma2
            scale = var.sqrt().expand_as(loc)
        return dist.Normal(loc, scale, validate_args=False).to_event(1)

    def validate_data(self, x):
        x = validate_continuous(x)
        self._check_width(x)
        return x


class LinearGaussian(VAEModel):
    r"""Linear-Gaussian model :math:`p(x\mid z)=\mathcal N(Wz+b,\ \mathrm{diag}\,\psi)`, :math:`z\sim\mathcal N(0,I)`.

    Everything is closed form, which is why every estimator is validated on it:

    .. math::

        p(x) = \mathcal N(x;\ b,\ WW^\top + \mathrm{diag}\,\psi), \qquad
        p(z\mid x) = \mathcal N(\Lambda^{-1} W^\top \Psi^{-1}(x - b),\ \Lambda^{-1}),\quad
        \Lambda = I + W^\top \Psi^{-1} W.

    The best fully factorized Gaussian (the per-datum FFG optimum of the ELBO) has means equal to the
    posterior mean and variances :math:`1/\Lambda_{ii}`, so the FFG approximation gap is the same for
    every ``x``: :math:`\tfrac12(\sum_i \log \Lambda_{ii} - \log\det\Lambda)`.
    """

    def __init__(self, data_dim: int, latent_dim: int, W: torch.Tensor | None = None,
                 b: torch.Tensor | None = None, psi: torch.Tensor | None = None):
        super().__init__(latent_dim, data_dim)
        W = torch.randn(data_dim, latent_dim) if W is None else torch.as_tensor(W)
        b = torch.zeros(data_dim, dtype=W.dtype) if b is None else torch.as_tensor(b, dtype=W.dtype)
        psi = torch.ones(data_dim, dtype=W.dtype) if psi is None else torch.as_tensor(psi, dtype=W.dtype)
        if W.shape != (data_dim, latent_dim):
            raise ConfigError(f"W has shape {tuple(W.shape)}; expected ({data_dim}, {latent_dim})")
        if b.shape != (data_dim,) or psi.shape != (data_dim,) or not bool((psi > 0).all()):
            raise ConfigError("b and psi must have shape (data_dim,) and psi must be positive")
        self.W = nn.Parameter(W.clone())
        self.b = nn.Parameter(b.clone())
        self.psi = PyroParam(psi.clone(), constraint=constraints.positive)

    @classmethod
    def random(cls, data_dim: int, latent_dim: int, scale: float = 1.0, shared: float = 0.0, psi: float = 1.0,
               seed: int = 0, dtype=torch.float64) -> "LinearGaussian":
        r"""A seeded random instance: :math:`W = \text{scale}\,(G + \text{shared}\cdot G_{:,1}\mathbf 1^\top)`
        with :math:`G` standard normal, :math:`b = 0`, :math:`\psi` constant. ``shared`` > 0 mixes the
        first column into every column, which correlates the posterior (a larger FFG approximation gap)."""
        g = torch.randn(data_dim, latent_dim, generator=torch.Generator().manual_seed(seed), dtype=dtype)
        return cls(data_dim, latent_dim, W=scale * (g + shared * g[:, :1]),
                   psi=torch.full((data_dim,), float(psi), dtype=dtype))

    def likelihood(self, z):
        return dist.Normal(z @ self.W.T + self.b, self.psi.sqrt(), validate_args=False).to_event(1)

    def validate_data(self, x):
        x = validate_continuous(x)
        self._check_width(x)
        return x

    # ----- closed forms (used only by tests and validation reports, never by the estimators) -----
    @torch.no_grad()
    def posterior_precision(self) -> torch.Tensor:
        """:math:`\\Lambda = I + W^\\top \\Psi^{-1} W`, shape ``(d, d)``."""
        W, psi = self.W, self.psi
        return torch.eye(self.latent_dim, dtype=W.dtype, device=W.device) + (W.T / psi) @ W

    @torch.no_grad()
    def exact_posterior(self, x: torch.Tensor) -> dist.MultivariateNormal:
        """:math:`p(z\\mid x)` for every row of ``x``: batch shape ``(N,)``, event ``(d,)``."""
        prec = self.posterior_precision()
        mean = torch.linalg.solve(prec, ((x - self.b) / self.psi @ self.W).T).T
        return dist.MultivariateNormal(mean, precision_matrix=prec.expand(x.shape[0], -1, -1))

    @torch.no_grad()
    def exact_log_marginal(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`\\log p(x)`, shape ``(N,)``, with all constants."""
        cov = self.W @ self.W.T + torch.diag(self.psi)
        return dist.MultivariateNormal(self.b, covariance_matrix=cov).log_prob(x)

    @torch.no_grad()
    def exact_ffg_gap(self) -> torch.Tensor:
        """Approximation gap of the optimal fully factorized Gaussian (same for every ``x``)."""
        prec = self.posterior_precision()
        return 0.5 * (prec.diagonal().log().sum() - torch.logdet(prec))


# --------------------------------------------------------------------------------------------
# Models of the VAE tutorial (R. Yu 2020): the "MSE loss" VAE and a discretized logistic for 8-bit data
# --------------------------------------------------------------------------------------------


class MSEGaussianVAE(GaussianVAE):
    r"""The "MSE loss" VAE: a Gaussian likelihood with fixed :math:`\sigma^2 = 1/2`.

    With :math:`\sigma^2 = 1/2`, :math:`-\log p(x\mid z) = \lVert x - \mu(z)\rVert^2 + \tfrac D2\log\pi`,
    i.e. the summed squared error plus a constant — the reconstruction loss that VAE code often
    uses in place of a likelihood. It is still a proper density, so its ELBO and NLL are comparable
    with those of a learned-variance model (R. Yu 2020, §5.1: the misconception is that the scale
    does not matter; it sets the weight of reconstruction against the KL term).
    """

    MSE_SIGMA2 = 0.5

    def __init__(self, data_dim: int, latent_dim: int = 2, hidden: int = 100, decoder_layers: int = 2,
                 activation: str = "elu", dense: bool = False, arch: str = "mlp"):
        super().__init__(data_dim, latent_dim, hidden, decoder_layers, activation,
                         variance="fixed", sigma2=self.MSE_SIGMA2, dense=dense, arch=arch)


#: Number of values of an 8-bit pixel.
PIXEL_LEVELS = 256
_HALF_LEVELS = (PIXEL_LEVELS - 1) / 2.0  # 127.5: pixel k sits at k / 127.5 - 1 in [-1, 1]


def pixels_to_grid(x: torch.Tensor) -> torch.Tensor:
    """uint8 pixels 0..255 → float32 values ``k / 127.5 - 1`` on the grid of 256 points of [-1, 1]."""
    return x.to(torch.float32) / _HALF_LEVELS - 1.0


def grid_to_pixels(u: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`pixels_to_grid`: int64 pixel values ``round((u + 1) * 127.5)``."""
    return torch.round((u + 1.0) * _HALF_LEVELS).to(torch.int64)


class DiscretizedLogistic(dist.TorchDistribution):
    r"""Discretized logistic over the 256 pixel values (Salimans et al. 2017; Kingma et al. 2016).

    Values live on the grid :math:`u_k = k/127.5 - 1`, :math:`k = 0..255` (see :func:`pixels_to_grid`),
    and bin :math:`k` is :math:`[u_k - \delta, u_k + \delta]` with :math:`\delta = 1/255`, the two edge
    bins extended to :math:`\mp\infty`:

    .. math::

        P(k) = F\Big(\frac{u_k + \delta - \mu}{s}\Big) - F\Big(\frac{u_k - \delta - \mu}{s}\Big),
        \qquad F = \text{sigmoid},

    with :math:`F(+\infty) = 1`, :math:`F(-\infty) = 0`, so :math:`\sum_k P(k) = 1` exactly (the sum
    telescopes). In log space, with :math:`a, b` the upper and lower standardized edges,
    :math:`\sigma(a) - \sigma(b) = \sigma(a)\,\sigma(-b)\,(1 - e^{b-a})`, so

    .. math::

        \log P(k) = \log\sigma(a) + \log\sigma(-b) + \log(1 - e^{-2\delta/s}),

    every term computed stably (``logsigmoid``, ``log(-expm1)``) for any :math:`\mu, s`: no
    cancellation of two nearly equal CDF values. Edge bins drop the term of their infinite edge.

    :param loc: :math:`\mu` (any shape), in grid units.
    :param log_scale: :math:`\log s`, broadcastable with ``loc``.

    Batch shape is the broadcast shape; the event shape is ``()`` (use ``.to_event(1)`` for images).
    """

    arg_constraints = {"loc": constraints.real, "log_scale": constraints.real}
    support = constraints.real  # the grid points; checked by DiscretizedLogisticVAE.validate_data
    has_rsample = False
    HALF_BIN = 1.0 / (PIXEL_LEVELS - 1)

    def __init__(self, loc, log_scale, validate_args=None):
        self.loc, self.log_scale = torch.broadcast_tensors(torch.as_tensor(loc), torch.as_tensor(log_scale))
        super().__init__(self.loc.shape, validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(DiscretizedLogistic, _instance)
        new.loc = self.loc.expand(batch_shape)
        new.log_scale = self.log_scale.expand(batch_shape)
        super(DiscretizedLogistic, new).__init__(torch.Size(batch_shape), validate_args=False)
        new._validate_args = self._validate_args
        return new

    def log_prob(self, value):
        inv_s = torch.exp(-self.log_scale)
        upper = (value + self.HALF_BIN - self.loc) * inv_s   # a
        lower = (value - self.HALF_BIN - self.loc) * inv_s   # b
        log_bin = torch.log(-torch.expm1(-2.0 * self.HALF_BIN * inv_s))  # log(1 - e^{b - a})
        interior = nn.functional.logsigmoid(upper) + nn.functional.logsigmoid(-lower) + log_bin
        first = nn.functional.logsigmoid(upper)    # k = 0: F(a) - F(-inf)
        last = nn.functional.logsigmoid(-lower)    # k = 255: F(inf) - F(b)
        edge = 1.0 - self.HALF_BIN  # the grid's end points are ±1; half a bin is a safe threshold
        return torch.where(value < -edge, first, torch.where(value > edge, last, interior))

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()):
        """Sample the continuous logistic and round to the nearest grid point (clamped to [-1, 1])."""
        shape = self._extended_shape(sample_shape)
        u = torch.rand(shape, dtype=self.loc.dtype, device=self.loc.device).clamp(1e-6, 1 - 1e-6)
        y = self.loc.expand(shape) + self.log_scale.exp().expand(shape) * (torch.log(u) - torch.log1p(-u))
        return pixels_to_grid(grid_to_pixels(y.clamp(-1.0, 1.0)))


class DiscretizedLogisticVAE(VAEModel):
    r"""MLP decoder with a per-pixel discretized logistic likelihood for 8-bit images.

    :math:`p(x\mid z) = \prod_i \mathrm{DLogistic}(x_i; \mu_i(z), s_i(z))` over 256 levels per pixel,
    so :math:`-\log_2 p(x)/D` is the usual bits/dim. Data enter as uint8 pixels 0..255 and are mapped
    once, by :meth:`validate_data`, to the grid :math:`k/127.5 - 1` of [-1, 1] (what the encoder sees
    and what the likelihood scores).

    :param min_log_scale: floor of :math:`\log s` (-7 as in PixelCNN++) so that a collapsing scale
        cannot make the likelihood of a training pixel overflow the ``log(1 - e^{-2δ/s})`` term.
    """

    def __init__(self, data_dim: int, latent_dim: int = 10, hidden: int = 200, decoder_layers: int = 2,
                 activation: str = "elu", min_log_scale: float = -7.0, dense: bool = False, arch: str = "mlp"):
        super().__init__(latent_dim, data_dim)
        self.min_log_scale = float(min_log_scale)
        self.decoder = decoder_net(latent_dim, data_dim, 2, hidden, decoder_layers, activation, dense, arch)

    def likelihood(self, z):
        loc, log_scale = self.decoder(z).split(self.data_dim, dim=-1)
        return DiscretizedLogistic(loc, log_scale.clamp(min=self.min_log_scale)).to_event(1)

    def validate_data(self, x):
        """uint8 0..255 → grid floats; float input must already lie on the grid (idempotent)."""
        if isinstance(x, torch.Tensor) and x.dtype == torch.uint8:
            x = pixels_to_grid(x)
        else:
            x = validate_continuous(x)
            off = (x.abs() > 1) | ((x + 1) * _HALF_LEVELS - grid_to_pixels(x)).abs().gt(1e-3)
            if bool(off.any()):
                row, col = (int(i) for i in off.nonzero()[0])
                raise DataError(
                    f"data: {int(off.sum())} entries are not 8-bit pixels (first at row {row}, column {col}, "
                    f"value {float(x[row, col]):g}); a discretized logistic likelihood needs a uint8 tensor "
                    "of values 0..255 (or floats k/127.5 - 1 on its grid in [-1, 1])"
                )
        self._check_width(x)
        return x.contiguous()
