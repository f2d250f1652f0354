r"""Building blocks shared by several guide families (no family is registered here).

* :class:`BatchedLinear` / :class:`BatchedMLP` — a *separate* affine layer (or MLP) for every one of
  ``N`` datapoints, evaluated for a batch of rows in one batched contraction. Per-datum guides
  (``LocalFlow``, ``LocalIAF``) use them so that every flow parameter is free per datapoint while
  the local optimizer still treats all datapoints as one batched problem.
* :class:`BatchedMADE` — a per-datapoint MADE (Germain et al. 2015) with Pyro's masks, the
  autoregressive network of the per-datum IAF.
* :func:`gaussian_head` — split a ``2d``-wide network output into a Gaussian's ``(loc, scale)``.

Shapes: parameters have a leading dimension ``N`` (``num_data``); inputs have shape
``(..., B, in)`` where ``B`` indexes the rows ``rows`` (global datapoint indices ``(B,)``, or ``slice(None)`` for all)
and ``...`` is any number of sample dimensions (the estimators' sample plate).
"""
from __future__ import annotations

import math
from functools import partial

import torch
from pyro.nn import PyroModule
from pyro.nn.auto_reg_nn import create_mask
from torch import nn

from pyro_vaegap.models import ACTIVATIONS
from pyro_vaegap.utils import check_choice

MIN_SCALE = 1e-5  #: floor of every softplus scale (as in ``pyro_vaegap.guides.ffg``), keeps log q finite


def gaussian_head(out: torch.Tensor, dim: int):
    r"""``(loc, scale)`` from an output ``(..., 2 dim)``: ``scale = softplus(raw) + 1e-5``."""
    loc, raw = out.split(dim, dim=-1)
    return loc, nn.functional.softplus(raw) + MIN_SCALE


class BatchedLinear(PyroModule):
    r"""One affine map per datapoint: :math:`y_{\cdot b} = h_{\cdot b} W_{r_b} + c_{r_b}`.

    :param num_data: ``N``; ``weight`` has shape ``(N, in, out)`` and ``bias`` ``(N, out)``.
    :param mask: optional fixed 0/1 tensor ``(in, out)`` multiplied into every weight (MADE).
    :param bias_init: initial value of every bias entry.

    Weights are Xavier-uniform per datapoint (bound :math:`\sqrt{6/(\text{in}+\text{out})}`), so each
    datapoint starts from an independently initialized network, as a separately built one would.
    """

    def __init__(self, num_data: int, in_features: int, out_features: int,
                 mask: torch.Tensor | None = None, bias_init: float = 0.0):
        super().__init__()
        bound = math.sqrt(6.0 / (in_features + out_features))
        self.weight = nn.Parameter(torch.empty(num_data, in_features, out_features).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.full((num_data, out_features), float(bias_init)))
        if mask is not None and mask.shape != (in_features, out_features):
            raise ValueError(f"mask has shape {tuple(mask.shape)}; expected ({in_features}, {out_features})")
        self.register_buffer("mask", None if mask is None else mask.to(self.weight.dtype))

    def forward(self, h: torch.Tensor, rows) -> torch.Tensor:
        W = self.weight[rows]  # (B, in, out)
        if self.mask is not None:
            W = W * self.mask
        # "..." broadcasts over sample dimensions: (..., B, in) x (B, in, out) -> (..., B, out)
        return torch.einsum("...bi,bio->...bo", h, W) + self.bias[rows]


class BatchedMLP(PyroModule):
    """``BatchedLinear → act → … → BatchedLinear`` over the widths ``sizes`` (no final activation)."""

    def __init__(self, num_data: int, sizes, activation: str = "elu", masks=None):
        super().__init__()
        self.act = ACTIVATIONS[check_choice("activation", activation, ACTIVATIONS)]()
        masks = masks if masks is not None else [None] * (len(sizes) - 1)
        self.layers = nn.ModuleList(BatchedLinear(num_data, a, b, mask=m)
                                    for a, b, m in zip(sizes[:-1], sizes[1:], masks))

    def forward(self, h: torch.Tensor, rows) -> torch.Tensor:
        for i, layer in enumerate(self.layers):
            h = layer(h, rows)
            if i < len(self.layers) - 1:
                h = self.act(h)
        return h


class BatchedMADE(PyroModule):
    r"""Per-datapoint MADE ``z → (m(z), s(z))`` with output ``i`` depending only on inputs before ``i``
    in the order ``permutation`` (masks from :func:`pyro.nn.auto_reg_nn.create_mask`, as Pyro's
    :class:`~pyro.nn.AutoRegressiveNN`).

    :meth:`bind` returns a callable with a ``permutation`` attribute, which is what
    :class:`pyro.distributions.transforms.AffineAutoregressive` needs as its ``autoregressive_nn``.
    """

    def __init__(self, num_data: int, dim: int, hidden_dims, permutation: torch.Tensor,
                 activation: str = "elu"):
        super().__init__()
        if any(h < dim for h in hidden_dims):
            raise ValueError(f"MADE hidden widths {list(hidden_dims)} must be >= the latent dimension {dim}")
        self.dim = dim
        self.register_buffer("permutation", permutation.long())
        masks, _ = create_mask(dim, 0, list(hidden_dims), self.permutation, 2)
        self.net = BatchedMLP(num_data, [dim, *hidden_dims, 2 * dim], activation, [m.T for m in masks])
        # Output weights start at 0, so every step starts near the identity (Kingma et al. 2016):
        # Xavier-random outputs give scale logits of several units, i.e. steps that shrink z by
        # ~100x, from which a per-datapoint optimization starts far off.
        with torch.no_grad():
            self.net.layers[-1].weight.zero_()

    def forward(self, z: torch.Tensor, rows):
        # Pyro's AffineAutoregressive inverse starts from zeros of the *default* dtype
        out = self.net(z.to(self.net.layers[0].weight.dtype), rows)
        # Pyro's layout: the first dim outputs are the shift, the next dim the (logit) scale
        mean, scale_param = out.reshape(out.shape[:-1] + (2, self.dim)).unbind(-2)
        return mean, scale_param

    def bind(self, rows):
        arn = partial(self.forward, rows=rows)
        arn.permutation = self.permutation
        return arn
