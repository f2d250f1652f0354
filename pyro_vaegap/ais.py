r"""Annealed importance sampling (AIS) with HMC transitions, and bidirectional Monte Carlo (BDMC).

AIS (Neal 2001) anneals from the prior to the posterior through

.. math::

    f_\beta(z) = p(z)\, p(x\mid z)^{\beta}, \qquad 0 = \beta_0 < \beta_1 < \dots < \beta_T = 1,

which needs no encoder (as in Cremer et al. 2018 and Wu et al. 2017). Starting from
:math:`z^{(0)}\sim p(z)`, each step adds :math:`(\beta_t-\beta_{t-1})\log p(x\mid z^{(t-1)})` to the
chain's log-weight and then moves :math:`z` with one HMC trajectory that leaves :math:`f_{\beta_t}`
invariant. :math:`\mathbb E[w] = p(x)`, so :math:`\log\frac1K\sum_k w_k` is a stochastic lower bound.

Run backwards from an *exact* posterior sample (available for data simulated from the model), the
same procedure gives :math:`\mathbb E[w_{\text{rev}}] = 1/p(x)` and hence a stochastic *upper*
bound :math:`-\log\frac1K\sum_k w_{\text{rev},k}`; the forward/reverse pair sandwiches
:math:`\log p(x)` (BDMC, Grosse et al. 2015) and validates the AIS settings.

Implementation notes
--------------------
* Densities come from the Pyro model itself via :func:`pyro_vaegap.traces.log_joint_parts`.
* All ``K`` chains of all ``N`` datapoints move together as one ``(K, N, d)`` tensor.
* Each chain has its own step size, multiplied by ``adapt_factor`` after a transition whose smoothed
  acceptance rate is above ``target_accept`` and divided by it otherwise, clipped to
  ``step_size_bounds`` (the rule of Wu et al.'s reference code used by Cremer et al.). Pyro's
  :class:`~pyro.infer.mcmc.adaptation.DualAveraging` is not used because it converges to one step
  size for a *fixed* target, whereas the AIS target changes at every transition.
* The leapfrog integrator is written here rather than taken from
  :func:`pyro.ops.integrator.velocity_verlet`: AIS needs :math:`\nabla\log p(z)` and
  :math:`\nabla\log p(x\mid z)` *separately* at the end of each trajectory so that the next
  transition, at a new :math:`\beta`, reuses them (and the cached :math:`\log p(x\mid z)` gives the
  weight increment) without another decoder pass; ``velocity_verlet`` only returns the gradient of
  the total potential at one temperature.
* A proposal with a non-finite energy or gradient is rejected; it never enters the state.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .traces import log_joint_parts, prior_latents, simulate
from .utils import ConfigError, check_choice, check_positive_int

SCHEDULES = ("linear", "sigmoid")


def beta_schedule(num_steps: int, kind: str = "sigmoid", rad: float = 4.0,
                  dtype=torch.float64) -> torch.Tensor:
    r"""Inverse temperatures :math:`\beta_0=0<\dots<\beta_T=1`, shape ``(T + 1,)``.

    ``"linear"``: evenly spaced. ``"sigmoid"``: :math:`\sigma` of ``T + 1`` evenly spaced points in
    ``[-rad, rad]``, rescaled to [0, 1] (Wu et al. 2017), denser near both ends.
    """
    T = check_positive_int("num_steps", num_steps)
    check_choice("schedule", kind, SCHEDULES)
    if kind == "linear":
        return torch.linspace(0, 1, T + 1, dtype=dtype)
    s = torch.sigmoid(torch.linspace(-rad, rad, T + 1, dtype=dtype))
    return (s - s[0]) / (s[-1] - s[0])


@contextmanager
def frozen(module: torch.nn.Module):
    """Temporarily stop gradients to ``module``'s parameters (decoder fixed during AIS / local opt)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@dataclass
class AISResult:
    """Per-datapoint AIS output; every tensor has shape ``(N,)`` except ``log_weights`` ``(K, N)``."""

    log_px: torch.Tensor        #: forward: lower bound log-mean-exp(w); reverse: upper bound -log-mean-exp(w)
    log_weights: torch.Tensor   #: the chains' log-weights
    ess: torch.Tensor           #: (sum w)^2 / sum w^2 over chains
    accept_rate: torch.Tensor   #: mean HMC acceptance probability over chains and transitions
    step_size: torch.Tensor     #: mean final step size over chains
    reverse: bool


class _Target:
    """Evaluates ``log p(z)``, ``log p(x|z)`` and their gradients for flattened latents ``(K, N, d)``."""

    def __init__(self, model, x, template: dict[str, torch.Tensor]):
        self.model, self.x = model, x
        self.names = list(template)
        self.shapes = [template[n].shape[2:] for n in self.names]
        self.sizes = [int(math.prod(s)) for s in self.shapes]

    def pack(self, latents):
        return torch.cat([latents[n].reshape(*latents[n].shape[:2], -1) for n in self.names], -1)

    def unpack(self, flat):
        parts = flat.split(self.sizes, -1)
        return {n: p.reshape(*flat.shape[:2], *s) for n, p, s in zip(self.names, parts, self.shapes)}

    def __call__(self, flat):
        """``(log p(z), log p(x|z), grad log p(z), grad log p(x|z))``, all detached."""
        with torch.enable_grad():
            z = flat.detach().requires_grad_(True)
            lp, ll = log_joint_parts(self.model, self.x, self.unpack(z))
            gl = _grad(ll, z, retain_graph=True)
            gp = _grad(lp, z)
        return lp.detach(), ll.detach(), gp, gl


def _grad(out, z, retain_graph=False):
    """Gradient of ``out.sum()`` w.r.t. ``z``; zero where ``out`` does not depend on ``z`` at all."""
    if not out.requires_grad:
        return torch.zeros_like(z)
    (g,) = torch.autograd.grad(out.sum(), z, retain_graph=retain_graph, allow_unused=True)
    return torch.zeros_like(z) if g is None else g


def _finite_rows(*tensors):
    ok = None
    for t in tensors:
        f = torch.isfinite(t)
        f = f.all(-1) if f.dim() == 3 else f
        ok = f if ok is None else ok & f
    return ok


def _ais_chunk(model, x, betas, num_chains, leapfrog_steps, init_step_size, target_accept,
               bounds, adapt_factor, initial, bar):
    K, N = num_chains, x.shape[0]
    if initial is None:
        latents = prior_latents(model, x, K)
    else:
        latents = {n: v.unsqueeze(0).expand(K, *v.shape) for n, v in initial.items()}
    target = _Target(model, x, latents)
    z = target.pack(latents).to(x.dtype)
    lp, ll, gp, gl = target(z)
    # log p(x|z) = -inf is a legitimate start (that chain's weight is 0); NaN is not
    if not bool(_finite_rows(lp, gp, gl).all()) or bool(ll.isnan().any()):
        raise FloatingPointError("NaN or non-finite log-density or gradient at the AIS starting points")
    log_w = torch.zeros(K, N, dtype=x.dtype)
    eps = torch.full((K, N, 1), float(init_step_size), dtype=x.dtype)
    acc_avg = torch.full((K, N), float(target_accept), dtype=x.dtype)
    acc_sum = torch.zeros(K, N, dtype=x.dtype)
    betas = betas.to(x.dtype)
    for t in range(1, len(betas)):
        b_prev, b = betas[t - 1], betas[t]
        log_w = log_w + (b - b_prev) * ll
        # one HMC trajectory targeting f_b, identity mass matrix
        r = torch.randn_like(z)
        h0 = -(lp + b * ll) + 0.5 * (r * r).sum(-1)
        z1, r1 = z, r + 0.5 * eps * (gp + b * gl)
        for step in range(leapfrog_steps):
            z1 = z1 + eps * r1
            lp1, ll1, gp1, gl1 = target(z1)
            g1 = gp1 + b * gl1
            r1 = r1 + (0.5 if step == leapfrog_steps - 1 else 1.0) * eps * g1
        h1 = -(lp1 + b * ll1) + 0.5 * (r1 * r1).sum(-1)
        ok = _finite_rows(z1, g1, h1)
        accept_prob = torch.where(ok, torch.exp((h0 - torch.where(ok, h1, h0)).clamp(max=0.0)),
                                  torch.zeros_like(h0))
        accept = torch.rand_like(accept_prob) < accept_prob
        a3 = accept.unsqueeze(-1)
        z, gp, gl = torch.where(a3, z1, z), torch.where(a3, gp1, gp), torch.where(a3, gl1, gl)
        lp, ll = torch.where(accept, lp1, lp), torch.where(accept, ll1, ll)
        acc_sum += accept_prob
        acc_avg = 0.9 * acc_avg + 0.1 * accept_prob
        factor = torch.where(acc_avg > target_accept, adapt_factor, 1.0 / adapt_factor)
        eps = (eps * factor.unsqueeze(-1)).clamp(*bounds)
        if bar is not None:
            bar.update()
    return log_w, acc_sum / (len(betas) - 1), eps.squeeze(-1)


def ais(model, x: torch.Tensor, num_chains: int = 100, num_steps: int = 500, leapfrog_steps: int = 10,
        schedule: str = "sigmoid", init_step_size: float = 0.05, target_accept: float = 0.65,
        step_size_bounds: tuple[float, float] = (1e-4, 0.5), adapt_factor: float = 1.02,
        data_chunk: int | None = None, initial: dict[str, torch.Tensor] | None = None,
        reverse: bool = False, progress: bool = False) -> AISResult:
    r"""AIS estimate of :math:`\log p(x_n)` for every row of ``x`` (or the BDMC upper bound).

    :param num_chains: ``K`` independent chains per datapoint (paper: 100).
    :param num_steps: ``T`` intermediate distributions (paper: 500).
    :param leapfrog_steps: ``L`` leapfrog steps per HMC transition (paper: 10).
    :param schedule: ``"sigmoid"`` or ``"linear"`` spacing of :math:`\beta` (:func:`beta_schedule`).
    :param data_chunk: datapoints per vectorized batch (default: all; lower it to bound memory,
        the work is ``K * data_chunk`` rows per decoder call).
    :param reverse: run from :math:`\beta=1` to 0 starting at ``initial`` (exact posterior samples,
        ``{site: (N, *event)}``, shared by the ``K`` chains) and return the stochastic upper bound.
    """
    K = check_positive_int("num_chains", num_chains)
    L = check_positive_int("leapfrog_steps", leapfrog_steps)
    lo, hi = step_size_bounds
    if not (0 < lo <= init_step_size <= hi):
        raise ConfigError(f"init_step_size={init_step_size} must lie in step_size_bounds={step_size_bounds}")
    if not 0 < target_accept < 1 or adapt_factor <= 1:
        raise ConfigError("target_accept must be in (0, 1) and adapt_factor > 1")
    if reverse and initial is None:
        raise ConfigError("reverse AIS needs initial exact posterior samples")
    betas = beta_schedule(num_steps, schedule)
    if reverse:
        betas = betas.flip(0)
    N = x.shape[0]
    chunk = N if data_chunk is None else check_positive_int("data_chunk", data_chunk)
    bar = tqdm(total=num_steps * math.ceil(N / chunk), desc="reverse AIS" if reverse else "AIS",
               disable=not progress, leave=False)
    lws, accs, eps = [], [], []
    with frozen(model):
        for s in range(0, N, chunk):
            init = None if initial is None else {n: v[s:s + chunk] for n, v in initial.items()}
            lw, acc, e = _ais_chunk(model, x[s:s + chunk], betas, K, L, init_step_size, target_accept,
                                    step_size_bounds, adapt_factor, init, bar)
            lws.append(lw), accs.append(acc), eps.append(e)
    bar.close()
    lw = torch.cat(lws, 1)
    lme = torch.logsumexp(lw, 0) - math.log(K)
    ess = torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))
    return AISResult(log_px=-lme if reverse else lme, log_weights=lw, ess=ess,
                     accept_rate=torch.cat(accs, 1).mean(0), step_size=torch.cat(eps, 1).mean(0),
                     reverse=reverse)


@dataclass
class BDMCResult:
    """Forward (lower) and reverse (upper) AIS bounds on simulated data ``x``."""

    x: torch.Tensor
    lower: AISResult
    upper: AISResult

    @property
    def gap(self) -> torch.Tensor:
        """Per-datapoint upper − lower: a bound on the AIS estimate's error on such data."""
        return self.upper.log_px - self.lower.log_px


def bdmc(model, num_data: int, like: torch.Tensor, **ais_kwargs) -> BDMCResult:
    """Simulate ``num_data`` points from the model and sandwich their log p(x) with forward/reverse AIS.

    :param like: a tensor with the data's row shape and dtype (e.g. a real batch).
    :param ais_kwargs: passed to both :func:`ais` runs (``num_chains``, ``num_steps``, …).
    """
    x, latents = simulate(model, check_positive_int("num_data", num_data), like)
    lower = ais(model, x, **ais_kwargs)
    upper = ais(model, x, initial=latents, reverse=True, **ais_kwargs)
    return BDMCResult(x=x, lower=lower, upper=upper)
