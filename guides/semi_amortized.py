r"""Semi-amortized FFG, SA(K) (Kim et al. 2018).

The FFG encoder gives :math:`\lambda_0 = (\mu_0(x), \log\sigma_0(x))`; ``num_steps`` :math:`K`
gradient-ascent steps on the per-datapoint ELBO refine it,

.. math::

    \lambda_{k+1} = \lambda_k + \eta\,\nabla_\lambda \hat{\mathcal L}(\lambda_k; x), \qquad
    \hat{\mathcal L}(\lambda; x) = \frac1J\sum_{j=1}^J \big[\log p(x, z_j) - \log\mathcal N(z_j;\mu,\sigma^2)\big],
    \quad z_j = \mu + \sigma\epsilon_j,

(``step_size`` :math:`\eta`, default 1e-3; ``inner_samples`` :math:`J`, default 1), and
:math:`q(z\mid x) = \mathcal N(\mu_K, \mathrm{diag}\,\sigma_K^2)`. Training back-propagates through the
``K`` steps (``create_graph=True``), so the encoder learns a good *starting point* for the
refinement and the decoder receives the total derivative; at test time the same ``K`` steps run.

:math:`\log p(x,z)` is read off a trace of the model conditioned on ``z`` (the trace plumbing of
:mod:`pyro_vaegap.estimators.traces`; the guide never re-implements the model's density). The inner
computation is hidden from any enclosing trace with ``poutine.block`` and folds its ``J`` draws into
the data dimension, so it opens no plate that could clash with an estimator's sample plate.

Given the inner noise, :math:`q` is an exact Gaussian, so its importance weights are unbiased for
:math:`p(x)`. The per-datum counterpart is the per-datum FFG (``pyro_vaegap.guides.ffg.LocalFFG``): with all
parameters free per datapoint, refinement steps add nothing.
"""
from __future__ import annotations

import pyro.distributions as dist
import pyro
import torch
from pyro import poutine

from pyro_vaegap.contract.guide import Family, Guide
from pyro_vaegap.contract.model import call
from pyro_vaegap.estimators.traces import sum_log_prob
from pyro_vaegap.utils import ConfigError, check_positive_int
from .ffg import FFGEncoder, LocalFFG


def model_log_joint(model, x: torch.Tensor, z: torch.Tensor, values=None) -> torch.Tensor:
    r""":math:`\log p(x_b, z_{jb})` for ``z`` of shape ``(J, B, d)``: shape ``(J, B)``, with gradients.

    The ``J`` draws are folded into the data plate (``x`` repeated ``J`` times), and the trace is
    blocked so it never reaches a handler of the caller (e.g. a training or scoring trace).
    ``values`` maps the flat latents to ``{site: value}`` (a guide's
    :meth:`~pyro_vaegap.contract.guide.Guide.latent_values`; default: the site ``"z"``).
    """
    J, B, d = z.shape
    with poutine.block():
        flat = z.reshape(J * B, d)
        data = values(flat) if values is not None else {"z": flat}
        tr = poutine.trace(poutine.condition(call, data=data)).get_trace(model, x.repeat(J, *([1] * (x.dim() - 1))))
    return sum_log_prob(tr, (J * B,)).reshape(J, B)


class SemiAmortized(Guide):
    """SA(K): :class:`~pyro_vaegap.guides.ffg.FFGEncoder` output refined by ``num_steps`` ELBO gradient steps.

    :param num_steps: ``K`` (1, 2, 4, 8 in the issue); ``step_size``: ``η``; ``inner_samples``: ``J``.
    :param hidden, layers, activation, arch: the encoder (as ``ffg``).

    The model is held as a plain reference, not a submodule: its parameters belong to the model
    (no duplicate in the optimizer or in the guide's checkpoint).
    """

    def __init__(self, model, num_steps: int = 1, step_size: float = 1e-3, inner_samples: int = 1,
                 hidden: int = 200, layers: int = 2, activation: str = "elu", arch: str = "mlp"):
        super().__init__(model)
        self.num_steps = check_positive_int("num_steps", num_steps, minimum=0)
        self.inner_samples = check_positive_int("inner_samples", inner_samples)
        if not step_size > 0:
            raise ConfigError(f"step_size={step_size!r} is not allowed: expected a positive number")
        self.step_size = float(step_size)
        self.encoder = FFGEncoder(model, hidden, layers, activation, arch=arch)
        self._model = (model,)

    def encode(self, x):
        """The refined ``(loc, scale)``, each ``(B, d)``."""
        loc, scale = self.encoder.encode(x)
        if self.num_steps == 0:
            return loc, scale
        model = self._model[0]
        # end to end when the caller differentiates (training); otherwise (scoring under no_grad)
        # the steps run on detached leaves and the result is detached again
        outer_grad = torch.is_grad_enabled() and loc.requires_grad
        with torch.enable_grad():
            log_scale = scale.log()
            if not outer_grad:
                loc, log_scale = loc.detach().requires_grad_(), log_scale.detach().requires_grad_()
            for _ in range(self.num_steps):
                s = log_scale.exp()
                z = loc + s * torch.randn((self.inner_samples,) + loc.shape, dtype=loc.dtype, device=loc.device)
                log_q = dist.Normal(loc, s).log_prob(z).sum(-1)
                elbo = (model_log_joint(model, x, z, self.latent_values) - log_q).mean(0).sum()  # rows are independent
                g_loc, g_log_scale = torch.autograd.grad(elbo, (loc, log_scale), create_graph=outer_grad)
                loc, log_scale = loc + self.step_size * g_loc, log_scale + self.step_size * g_log_scale
        if not outer_grad:
            loc, log_scale = loc.detach(), log_scale.detach()
        return loc, log_scale.exp()

    def forward(self, x, idx=None, num_data=None):
        loc, scale = self.encode(x)
        with self.data_plate(x, idx, num_data):
            return self.sample_latents(dist.Normal(loc, scale).to_event(1))


FAMILY = Family("sa", amortized=SemiAmortized, local=LocalFFG,
                description="semi-amortized FFG, SA(K): encoder output refined by K ELBO gradient steps")
