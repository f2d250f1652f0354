r"""The regularization term :math:`L_\mathrm{reg}(x) = D_\mathrm{KL}(q(z\mid x)\,\|\,p(z))` in closed form,
read off the Pyro traces.

The guide is traced once (one draw, under the estimators' sample plate) and the model replayed against
it; the KL divergence is ``torch.distributions.kl_divergence`` between the two distributions the
traces hold at the latent site — the guide's and the model's own objects, so a user's guide or prior
works unchanged as long as torch knows the pair's closed form.
"""
from __future__ import annotations

import torch
from pyro import poutine
from torch.distributions import kl_divergence

from ..estimators.traces import sample_plate
from ..utils import ConfigError


@torch.no_grad()
def site_distributions(model, guide, x: torch.Tensor, site: str = "z"):
    """``(q, p)``: the guide's and the model's distributions at ``site`` for the rows of ``x``, each with
    batch shape ``(1, N)`` (one draw under the sample plate at ``dim=-2``)."""
    with sample_plate(1):
        g = poutine.trace(guide).get_trace(x)
        m = poutine.trace(poutine.replay(model, trace=g)).get_trace(x)
    if site not in g.nodes or site not in m.nodes:
        raise ConfigError(f"site {site!r} is not in both the guide's and the model's trace")
    return g.nodes[site]["fn"], m.nodes[site]["fn"]


@torch.no_grad()
def analytic_kl(model, guide, x: torch.Tensor, site: str = "z") -> torch.Tensor:
    r""":math:`D_\mathrm{KL}(q(z\mid x_n)\,\|\,p(z))` for every row of ``x``, shape ``(N,)`` (nats).

    :raises ConfigError: if torch has no closed form for the pair of distributions.
    """
    q, p = site_distributions(model, guide, x, site)
    try:
        kl = kl_divergence(q, p)
    except NotImplementedError as e:
        raise ConfigError(f"no closed-form KL between {type(q).__name__} and {type(p).__name__} at site {site!r}") from e
    return kl.expand(1, x.shape[0]).reshape(-1)
