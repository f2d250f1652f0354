"""Where a 2-d posterior lives: windows for the adaptive grid quadrature (:mod:`pyro_vaegap.estimators.grid`).

:func:`posterior_windows` locates each datapoint's true posterior on a coarse grid of the joint density, so the fine
quadrature of :func:`~pyro_vaegap.estimators.grid.adaptive_grid_log_px` can be spent where the mass is (used by the Cremer et
al. Figure 2 and InfoVAE 2-d latent experiments).
"""
from __future__ import annotations

import math

import torch

from .grid import grid_log_joint


def posterior_windows(model, x, lim: float, spacing: float, margin: float) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Locate each true posterior on a coarse grid over [-lim, lim]²: ``(centers (N, 2), half_widths (N,),
    touching)``, the square around every node within ``margin`` nats of the point's largest log p(x, z),
    widened by two coarse spacings; ``touching`` counts the windows that reach the coarse grid's edge."""
    n = 1 + math.ceil(2 * lim / spacing)
    axes, lj = grid_log_joint(model, x, lim, n)
    zz = torch.cartesian_prod(axes[0], axes[1]).double()
    h = float(axes[0, 1] - axes[0, 0])
    centers, halves, touching = [], [], 0
    for i in range(x.shape[0]):
        pts = zz[lj[:, i] > lj[:, i].max() - margin]
        lo, hi = pts.min(0).values - 2 * h, pts.max(0).values + 2 * h
        touching += int(bool((pts.abs() >= lim - 1e-6).any()))
        centers.append((lo + hi) / 2)
        halves.append(float((hi - lo).max()) / 2)
    return torch.stack(centers), torch.tensor(halves, dtype=torch.float64), touching
