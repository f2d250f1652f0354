"""8-bit images (R. Yu 2020's VAE tutorial): a discretized logistic over the 256 pixel values and its VAE."""
from __future__ import annotations

import pyro.distributions as dist
import torch
from torch import nn
from torch.distributions import constraints

from ..data import DataError, validate_continuous
from .networks import decoder_net
from .base import VAEModel


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
