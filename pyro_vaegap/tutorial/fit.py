r"""Training a model and guide on an in-memory data tensor by SVI (Pyro's ``Trace_ELBO``).

:func:`pyro_vaegap.train.train` trains on the library's named data sets with run folders and checkpoints;
the tutorial's constructions (§5.2's Gaussian data, small test models) need only a few thousand steps
on a tensor, which :func:`fit` does in one call.
"""
from __future__ import annotations

import pyro
import torch
from pyro.infer import Trace_ELBO

from ..utils import check_positive_int


def fit(model, guide, x: torch.Tensor, steps: int = 3000, batch_size: int = 256, lr: float = 1e-3,
        num_particles: int = 1, seed: int = 0) -> list[float]:
    r"""Train ``model`` and ``guide`` from their current weights on ``x`` by SVI (Pyro's ``Trace_ELBO``,
    Adam on minibatches); returns the per-step loss :math:`-\mathcal L` per datapoint (nats)."""
    check_positive_int("steps", steps)
    pyro.set_rng_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    elbo = Trace_ELBO(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)
    params = list(model.parameters()) + list(guide.parameters())
    opt = torch.optim.Adam(params, lr=lr)
    losses = []
    for _ in range(steps):
        xb = x[torch.randint(0, x.shape[0], (min(batch_size, x.shape[0]),), generator=gen)]
        loss = elbo.differentiable_loss(model, guide, xb) / xb.shape[0]
        if not torch.isfinite(loss):
            raise FloatingPointError("non-finite ELBO during training; lower lr")
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses
