r"""The regularization term of an isotropic encoder as a noisy Gaussian channel (R. Yu 2020, §4.3).

With :math:`p(z) = \mathcal N(0, I_d)` and :math:`q(z\mid x) = \mathcal N(\mu(x), N(x) I_d)`, power
:math:`P(x) = \lVert\mu(x)\rVert^2/d` and noise :math:`N(x)`, the KL term (eq. 36) is

.. math::

    L_\mathrm{reg}(x) = \tfrac12\lVert\mu\rVert^2 + \tfrac12\big[dN - d - d\log N\big]
    = -\tfrac d2\log N(x) \;+\; \tfrac d2\big(P(x) + N(x) - 1\big).

So :math:`L_\mathrm{reg}(x) = -\tfrac d2\log N(x)` (eq. 38, the capacity of :math:`d` uses of a channel of
power :math:`P` and noise :math:`N`) **for a datapoint exactly when** :math:`P(x) + N(x) = 1`, and
:math:`\mathbb E_x L_\mathrm{reg} = \mathbb E_x[-\tfrac d2\log N]` **on average exactly when**
:math:`\mathbb E_x[P + N] = 1` — the power constraint in expectation, which says that the aggregate
posterior has the prior's second moment :math:`\mathbb E\lVert z\rVert^2 = d`.

:func:`channel_terms` reads everything off the Pyro traces: :math:`L_\mathrm{reg}` is
``torch.distributions.kl_divergence`` between the guide's and the model's distributions at site ``z``
(:func:`~pyro_vaegap.tutorial.kl.site_distributions`),
and :math:`\mu`, :math:`N` are the guide site's own ``loc`` and ``scale`` — no second copy of the
encoder's arithmetic.
"""
from __future__ import annotations

import torch
from torch.distributions import Independent, Normal, kl_divergence

from ..utils import ConfigError
from .kl import site_distributions


def _normal(fn):
    """The diagonal Normal under an ``Independent``/expanded site distribution, or None."""
    while isinstance(fn, Independent):
        fn = fn.base_dist
    return fn if isinstance(fn, Normal) else None


@torch.no_grad()
def channel_terms(model, guide, x: torch.Tensor, site: str = "z", rtol: float = 1e-6) -> dict:
    r"""Per-datapoint channel quantities of an isotropic Gaussian guide: each value has shape ``(N,)``.

    :returns: ``{"kl": L_reg (nats), "capacity": -d/2 log N, "power": P, "noise": N,
        "excess": d/2 (P + N - 1), "d": d}``.
    :raises ConfigError: if the guide's ``site`` is not a diagonal Normal with one variance per datapoint
        (to relative precision ``rtol``) or the prior is not a diagonal Normal.
    """
    q_fn, p_fn = site_distributions(model, guide, x, site)
    q, p = _normal(q_fn), _normal(p_fn)
    if q is None or p is None:
        raise ConfigError(f"site {site!r}: the channel reading needs a diagonal Normal guide and prior, got "
                          f"{type(q_fn).__name__} and {type(p_fn).__name__}")
    kl = kl_divergence(q_fn, p_fn).expand(1, x.shape[0])
    shape = (1, x.shape[0], q.loc.shape[-1])
    loc, scale = q.loc.expand(shape)[0], q.scale.expand(shape)[0]   # (N, d): drop the sample dim
    var = scale.pow(2)
    noise = var.mean(-1)
    if not torch.allclose(var, noise.unsqueeze(-1).expand_as(var), rtol=rtol, atol=0.0):
        raise ConfigError(f"site {site!r}: the guide's variance differs across latent dimensions; the channel "
                          "reading (§4.3) needs an isotropic encoder N(mu, N I)")
    d = loc.shape[-1]
    power = loc.pow(2).mean(-1)
    return {"kl": kl.reshape(-1), "capacity": -0.5 * d * noise.log(), "power": power, "noise": noise,
            "excess": 0.5 * d * (power + noise - 1.0), "d": d}
