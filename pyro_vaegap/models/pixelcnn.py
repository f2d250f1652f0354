r"""A gated PixelCNN decoder conditioned on ``z`` (van den Oord et al., *Conditional Image Generation with
PixelCNN Decoders*, NeurIPS 2016) for binary images: the autoregressive likelihood

.. math::

    p(x\mid z) = \prod_{i=1}^{D} \mathrm{Bern}\big(x_i;\ \sigma(l_i(x_{<i}, z))\big),

pixels in raster order. Every factor is exact, so :math:`\log p(x\mid z)` is an ordinary
``log_prob`` and IWAE, AIS and the gap report trace this model like any other.

The network keeps two stacks (the paper's fix of the first PixelCNN's blind spot). At pixel
:math:`(r, c)` the *vertical* stack sees the rows above, :math:`r' < r` (all columns within the kernel's
reach), and the *horizontal* stack the pixels to the left in the same row, :math:`c' < c`, plus the
vertical stack's features of the same position. The first layer ("mask A") excludes the pixel itself;
later layers ("mask B") may include their own position, whose features already exclude it. Instead of
multiplying kernels by masks, the causal convolutions are written with one-sided padding and a one-pixel
shift for mask A (no weights that are trained and then zeroed). Each layer is gated,

.. math::

    h = \tanh(W_f * x + V_f z) \odot \sigma(W_g * x + V_g z),

with the projection of ``z`` added to both halves of both stacks (a spatially constant bias, the
paper's global conditioning). The horizontal stack is residual after the first layer; a 1x1
ELU head gives one logit per pixel (ELU, not ReLU: no unit of a small network is switched off for good).
"""
from __future__ import annotations

import math

import pyro.distributions as dist
import torch
from pyro.distributions.util import broadcast_shape
from torch import nn
from torch.distributions import constraints
from torch.nn import functional as F

from ..data import validate_binary
from ..utils import ConfigError, check_positive_int
from .base import VAEModel


def _gate(pre: torch.Tensor) -> torch.Tensor:
    """``tanh(a) * sigmoid(b)`` for ``pre = [a, b]`` split along the channel dimension."""
    a, b = pre.chunk(2, dim=1)
    return torch.tanh(a) * torch.sigmoid(b)


class GatedLayer(nn.Module):
    r"""One gated layer of both stacks.

    :param in_channels: channels of the stacks' inputs (1 for the image, ``channels`` after).
    :param channels: channels :math:`C` of the stacks' outputs.
    :param kernel: odd kernel width :math:`k`; the vertical kernel is :math:`(\lceil k/2\rceil, k)` over the
        rows above, the horizontal one :math:`(1, \lceil k/2\rceil)` over the pixels to the left.
    :param mask_a: the first layer: exclude the current pixel (its row from the vertical stack, itself
        from the horizontal one).
    :param latent_dim: ``d``; ``z`` adds :math:`V z` to the pre-activations of both stacks.
    """

    def __init__(self, in_channels: int, channels: int, kernel: int, mask_a: bool, latent_dim: int):
        super().__init__()
        self.kernel, self.mask_a = kernel, mask_a
        half = kernel // 2
        self.vertical = nn.Conv2d(in_channels, 2 * channels, (half + 1, kernel))
        self.horizontal = nn.Conv2d(in_channels, 2 * channels, (1, half + 1))
        self.v_to_h = nn.Conv2d(2 * channels, 2 * channels, 1)
        self.h_out = nn.Conv2d(channels, channels, 1)
        self.cond = nn.Linear(latent_dim, 4 * channels)  # [vertical | horizontal] biases from z

    def forward(self, v: torch.Tensor, h: torch.Tensor, z: torch.Tensor):
        """``v``, ``h``: ``(B, C_in, H, W)``; ``z``: ``(B, d)`` → the two stacks ``(B, C, H, W)``."""
        half, (H, W) = self.kernel // 2, v.shape[-2:]
        # vertical: output row r sees input rows r - half .. r (mask B) or r - half - 1 .. r - 1 (mask A:
        # pad one more row on top and drop the last row, i.e. shift down by one)
        shift = int(self.mask_a)
        v_pre = self.vertical(F.pad(v, (half, half, half + shift, 0))[..., :H + half, :])
        # horizontal: output column c sees input columns c - half .. c (B) or c - half - 1 .. c - 1 (A)
        h_pre = self.horizontal(F.pad(h, (half + shift, 0, 0, 0))[..., :W + half])
        cond_v, cond_h = self.cond(z)[..., None, None].chunk(2, dim=1)
        # the vertical features at row r only depend on rows < r of the image, so the horizontal stack may
        # read them at its own position
        v_new = _gate(v_pre + cond_v)
        h_new = self.h_out(_gate(h_pre + self.v_to_h(v_pre) + cond_h))
        if not self.mask_a:
            h_new = h_new + h  # residual (the first layer's input is the 1-channel image)
        return v_new, h_new


class PixelCNN(nn.Module):
    r"""Gated PixelCNN mapping ``(x, z)`` to the logits of every pixel: ``(B, H*W)``, ``(B, d)`` →
    ``(B, H*W)``; logit :math:`i` depends only on :math:`x_{<i}` (raster order) and ``z``.

    :param image_shape: ``(H, W)``.
    :param layers: gated layers (the first with mask A).
    :param channels: :math:`C` of every layer.
    :param first_kernel: kernel width of the first layer (7 in van den Oord et al.); later layers use 3.
    """

    def __init__(self, image_shape: tuple[int, int], latent_dim: int, layers: int, channels: int,
                 first_kernel: int = 7):
        super().__init__()
        self.image_shape = tuple(image_shape)
        kernels = [first_kernel] + [3] * (layers - 1)
        self.layers = nn.ModuleList(
            GatedLayer(1 if i == 0 else channels, channels, k, i == 0, latent_dim) for i, k in enumerate(kernels))
        self.head = nn.Sequential(nn.ELU(), nn.Conv2d(channels, channels, 1), nn.ELU(), nn.Conv2d(channels, 1, 1))

    def forward(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        img = (2 * x - 1).reshape(-1, 1, *self.image_shape)  # centred input, so an all-zero image is not "no input"
        v = h = img
        for layer in self.layers:
            v, h = layer(v, h, z)
        return self.head(h).reshape(x.shape)


class PixelCNNBernoulli(dist.TorchDistribution):
    r""":math:`p(x\mid z)` of a :class:`PixelCNN`: batch shape ``z.shape[:-1]``, event shape ``(D,)``.

    ``log_prob(x)`` runs the network once on ``x`` (teacher forcing: every conditional
    :math:`p(x_i\mid x_{<i}, z)` at once) with ``x`` and ``z`` broadcast against each other, e.g. ``x``
    ``(N, D)`` and ``z`` ``(S, N, d)`` → ``(S, N)``; :meth:`sample` draws pixel by pixel (``D`` passes).
    """

    arg_constraints = {}
    support = constraints.independent(constraints.boolean, 1)
    has_rsample = False

    def __init__(self, net: PixelCNN, z: torch.Tensor, validate_args=None):
        self.net, self.z = net, z
        data_dim = math.prod(net.image_shape)
        super().__init__(z.shape[:-1], torch.Size([data_dim]), validate_args=validate_args)

    def expand(self, batch_shape, _instance=None):
        new = self._get_checked_instance(PixelCNNBernoulli, _instance)
        new.net = self.net
        new.z = self.z.expand(*batch_shape, self.z.shape[-1])
        super(PixelCNNBernoulli, new).__init__(torch.Size(batch_shape), self.event_shape, validate_args=False)
        new._validate_args = self._validate_args
        return new

    def logits(self, value: torch.Tensor) -> torch.Tensor:
        """The logit of every pixel given the pixels before it in ``value``: shape ``batch + (D,)``."""
        shape = broadcast_shape(value.shape[:-1], self.z.shape[:-1])
        x = value.expand(*shape, value.shape[-1]).reshape(-1, value.shape[-1])
        z = self.z.expand(*shape, self.z.shape[-1]).reshape(-1, self.z.shape[-1])
        return self.net(x.to(z.dtype), z).reshape(*shape, -1)

    def log_prob(self, value):
        # log Bern(x; σ(l)) = -softplus((1 - 2x) l) for binary x (the models validate data on entry)
        return -F.softplus((1 - 2 * value.to(self.z.dtype)) * self.logits(value)).sum(-1)

    @torch.no_grad()
    def sample(self, sample_shape=torch.Size()):
        """Ancestral sampling in raster order: pixel ``i`` from its conditional given the pixels drawn before."""
        shape = self._extended_shape(sample_shape)
        x = self.z.new_zeros(shape)
        z = self.z.expand(*shape[:-1], self.z.shape[-1])
        for i in range(shape[-1]):
            logit = self.net(x.reshape(-1, shape[-1]), z.reshape(-1, z.shape[-1]))[:, i].reshape(shape[:-1])
            x[..., i] = torch.bernoulli(torch.sigmoid(logit))
        return x


class PixelCNNVAE(VAEModel):
    r"""Binary images with a gated PixelCNN likelihood conditioned on ``z`` (:class:`PixelCNNBernoulli`).

    ``likelihood(z)`` is a distribution whose ``log_prob(x)`` runs the network on ``x``, so the model is
    traced by the estimators exactly like :class:`~pyro_vaegap.models.BernoulliVAE`: ``z`` of any leading
    batch shape (samples × datapoints, AIS chains) broadcast against the ``(N, D)`` data.

    :param data_dim: ``D = H W`` (784 for MNIST).
    :param image_shape: ``(H, W)``; default the square of side :math:`\sqrt D`.
    :param layers: gated layers (the first with mask A).
    :param channels: channels of every layer.
    :param first_kernel: odd kernel width of the first layer.
    """

    def __init__(self, data_dim: int = 784, latent_dim: int = 5, layers: int = 5, channels: int = 32,
                 first_kernel: int = 7, image_shape: tuple[int, int] | None = None):
        super().__init__(latent_dim, data_dim)
        if image_shape is None:
            side = math.isqrt(data_dim)
            if side * side != data_dim:
                raise ConfigError(f"data_dim={data_dim} is not a square number of pixels: a PixelCNN needs "
                                  "image_shape=(H, W) with H * W = data_dim")
            image_shape = (side, side)
        if len(image_shape) != 2 or math.prod(image_shape) != data_dim:
            raise ConfigError(f"image_shape={tuple(image_shape)} does not have data_dim={data_dim} pixels")
        check_positive_int("layers", layers)
        check_positive_int("channels", channels)
        if check_positive_int("first_kernel", first_kernel) % 2 == 0:
            raise ConfigError(f"first_kernel={first_kernel} is not allowed: expected an odd width")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.net = PixelCNN(self.image_shape, latent_dim, layers, channels, first_kernel)

    def likelihood(self, z):
        return PixelCNNBernoulli(self.net, z)

    @torch.no_grad()
    def generate(self, z: torch.Tensor) -> torch.Tensor:
        """Images drawn from :math:`p(x\\mid z)` for every row of ``z`` ``(..., d)``: shape ``(..., D)``."""
        return self.likelihood(z).sample()

    def validate_data(self, x):
        x = validate_binary(x)
        self._check_width(x)
        return x
