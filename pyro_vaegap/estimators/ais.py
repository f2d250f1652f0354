r"""Annealed importance sampling (AIS) with HMC transitions, and bidirectional Monte Carlo (BDMC).

AIS (Neal 2001) anneals from the prior to the posterior through

.. math::

    f_\beta(z) = p(z)\, p(x\mid z)^{\beta}, \qquad 0 = \beta_0 < \beta_1 < \dots < \beta_T = 1,

which needs no encoder (as in Cremer et al. 2018 and Wu et al. 2017). Starting from
:math:`z_0\sim p(z)`, step :math:`t = 1..T` adds :math:`(\beta_t-\beta_{t-1})\log p(x\mid z_{t-1})`
to the chain's log-weight and, for :math:`t < T`, moves :math:`z` with one HMC transition
:math:`K_t` that leaves :math:`f_{\beta_t}` invariant. If every :math:`K_t` is fixed before the
chain starts, :math:`\mathbb E[w] = p(x)` exactly, so :math:`\log\frac1K\sum_k w_k` is a stochastic
lower bound of :math:`\log p(x)` and :math:`\frac1K\sum_k w_k` an unbiased estimate of :math:`p(x)`.

Run backwards from an *exact* posterior sample (available for data simulated from the model), with
the same kernels in reverse order, the same procedure gives :math:`\mathbb E[w_{\text{rev}}] =
1/p(x)` and hence a stochastic *upper* bound :math:`-\log\frac1K\sum_k w_{\text{rev},k}`; the
forward/reverse pair sandwiches :math:`\log p(x)` (BDMC, Grosse et al. 2015) and validates the AIS
settings for data like the simulated data.

Step sizes: frozen in advance
-----------------------------
HMC needs a step size :math:`\epsilon` per temperature. It is tuned by a **pilot run**
(:func:`tune_step_sizes`): ``pilot_chains`` extra chains per datapoint anneal forward from the prior,
and after every transition the datapoint's step size is multiplied by 1.02 if the pilot chains'
mean acceptance probability exceeded ``target_accept`` (0.65) and by 0.98 otherwise, clipped to
[1e-4, 0.5] — the rule of Cremer et al.'s released code, applied per datapoint instead of to one
step size for the whole batch. The pilot chains are then discarded, and the forward (and reverse)
AIS runs use the recorded schedule :math:`\epsilon_n(\beta_t)` unchanged: every kernel is fixed
before the chains that are scored start, so the unbiasedness above holds exactly (given the pilot,
which is independent of them).

``step_size="online-biased"`` instead adapts each chain's step size from that chain's own
acceptance history during the scored run (the rule of Wu et al.'s reference BDMC code). The kernel
of transition :math:`t` then depends on the chain's past, :math:`\mathbb E[w] \ne p(x)` in general,
and BDMC loses its guarantee; it is kept only to measure that bias.

Differences from the authors' released code (``models/utils/ais3.py`` of Cremer et al.'s
repository), stated exactly: their schedule is linear (``numpy.linspace(0, 1, n)``, ``n`` points in
all, so ``n - 1`` transitions), ours defaults to the sigmoid schedule of Wu et al. (``schedule=
"linear"`` is theirs); their step size starts at 0.1 (ours too) and is **one** value for all chains
and datapoints, adapted *during* the run from the batch-mean acceptance (ours: per datapoint, tuned
on discarded pilot chains, then frozen); their "10 leapfrog steps" make 11 position updates, ours make
``leapfrog_steps``; their :math:`T` = 500 is the number of distributions, ours the number of
transitions plus one (``num_steps`` = 500 gives 501 distributions).

Implementation notes
--------------------
* Densities come from the Pyro model itself via :func:`pyro_vaegap.estimators.traces.log_joint_parts`, traced once
  per data chunk into a pure function of the latents and checked against it (:mod:`pyro_vaegap.estimators.potential`).
* All ``K`` chains of all ``N`` datapoints move together as one ``(K, N, d)`` tensor.
* The leapfrog integrator is written here rather than taken from
  :func:`pyro.ops.integrator.velocity_verlet`: AIS needs :math:`\nabla\log p(z)` and
  :math:`\nabla\log p(x\mid z)` *separately* at the end of each trajectory so that the next
  transition, at a new :math:`\beta`, reuses them (and the cached :math:`\log p(x\mid z)` gives the
  weight increment) without another decoder pass; ``velocity_verlet`` only returns the gradient of
  the total potential at one temperature. Pyro's
  :class:`~pyro.infer.mcmc.adaptation.DualAveraging` is not used for the pilot because it converges
  to one step size for a *fixed* target, whereas the AIS target changes at every transition.
* A proposal with a non-finite energy or gradient is rejected; it never enters the state.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from ..contract.model import parameters_of, quiet_frozen_modules
from .potential import AnnealingTarget as _Target
from .potential import check_fast, check_gradient_dtype
from .traces import prior_latents, simulate
from ..utils import ConfigError, check_choice, check_positive_int, progress_bar

SCHEDULES = ("linear", "sigmoid")
STEP_SIZE_MODES = ("pilot", "online-biased")
#: the step-size rule of Cremer et al.'s released code: ×1.02 above the target acceptance, ×0.98 below
ADAPT_UP, ADAPT_DOWN = 1.02, 0.98
STEP_SIZE_BOUNDS = (1e-4, 0.5)
ROWS_PER_CHUNK = 10_000  #: default chains × datapoints per vectorized call (bounds memory)


def beta_schedule(num_steps: int, kind: str = "sigmoid", rad: float = 4.0,
                  dtype=torch.float64) -> torch.Tensor:
    r"""Inverse temperatures :math:`\beta_0=0<\dots<\beta_T=1`, shape ``(T + 1,)``.

    ``"linear"``: evenly spaced (Cremer et al.'s code). ``"sigmoid"``: :math:`\sigma` of ``T + 1``
    evenly spaced points in ``[-rad, rad]``, rescaled to [0, 1] (Wu et al. 2017), denser near both
    ends, where :math:`f_\beta` changes fastest.
    """
    T = check_positive_int("num_steps", num_steps)
    check_choice("schedule", kind, SCHEDULES)
    if kind == "linear":
        return torch.linspace(0, 1, T + 1, dtype=dtype)
    s = torch.sigmoid(torch.linspace(-rad, rad, T + 1, dtype=dtype))
    return (s - s[0]) / (s[-1] - s[0])


@contextmanager
def frozen(module):
    """Temporarily stop gradients to a model's parameters (decoder fixed during AIS / local opt).

    ``module`` is an ``nn.Module`` or any model callable (:func:`pyro_vaegap.contract.model.parameters_of`: a bound
    method's module, or Pyro's param store). ``pyro.module``'s warning about each frozen parameter, which a
    user's model would give at every call, is silenced meanwhile."""
    flags = [(p, p.requires_grad) for p in parameters_of(module)]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        with quiet_frozen_modules():
            yield module
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@dataclass
class AISResult:
    r"""Per-datapoint AIS output; tensors have shape ``(N,)`` unless stated."""

    log_px: torch.Tensor        #: forward: lower bound log-mean-exp(w); reverse: upper bound -log-mean-exp(w)
    log_weights: torch.Tensor   #: the chains' log-weights, ``(K, N)``
    ess: torch.Tensor           #: (Σ w)² / Σ w² over chains
    accept_rate: torch.Tensor   #: mean HMC acceptance probability over chains and transitions
    step_sizes: torch.Tensor    #: ε of the kernel at β_1..β_{T-1}, ``(T - 1, N)`` (chain mean when online)
    reverse: bool
    unbiased: bool              #: False for ``step_size="online-biased"``

    @property
    def se(self) -> torch.Tensor:
        r"""Delta-method standard error of ``log_px``: :math:`\sqrt{(K/\mathrm{ESS} - 1)/(K - 1)}`
        (relative standard error of the mean weight; unreliable when the weights are heavy-tailed)."""
        K = self.log_weights.shape[0]
        return ((K / self.ess - 1).clamp(min=0) / max(K - 1, 1)).sqrt()


def _finite_rows(*tensors):
    ok = None
    for t in tensors:
        f = torch.isfinite(t)
        f = f.all(-1) if f.dim() == 3 else f
        ok = f if ok is None else ok & f
    return ok


def _hmc(target, state, beta, eps, leapfrog_steps):
    r"""One HMC transition (identity mass matrix) leaving :math:`f_\beta` invariant, for every row.

    ``state`` is ``(z, log p(z), log p(x|z), ∇log p(z), ∇log p(x|z))``; ``eps`` broadcasts to
    ``(K, N, 1)``. Returns the new state and the acceptance probabilities ``(K, N)``.
    """
    z, lp, ll, gp, gl = state
    r = torch.randn_like(z)
    h0 = -(lp + beta * ll) + 0.5 * (r * r).sum(-1)
    z1, r1 = z, r + 0.5 * eps * (gp + beta * gl)
    for step in range(leapfrog_steps):
        z1 = z1 + eps * r1
        if step == leapfrog_steps - 1:  # the MH test needs the values (in full precision) at the end only
            lp1, ll1, gp1, gl1 = target(z1)
        else:
            gp1, gl1 = target.gradients(z1)
        g1 = gp1 + beta * gl1
        r1 = r1 + (0.5 if step == leapfrog_steps - 1 else 1.0) * eps * g1
    h1 = -(lp1 + beta * ll1) + 0.5 * (r1 * r1).sum(-1)
    ok = _finite_rows(z1, g1, h1)
    accept_prob = torch.where(ok, torch.exp((h0 - torch.where(ok, h1, h0)).clamp(max=0.0)), torch.zeros_like(h0))
    accept = torch.rand_like(accept_prob) < accept_prob
    a3 = accept.unsqueeze(-1)
    new = (torch.where(a3, z1, z), torch.where(accept, lp1, lp), torch.where(accept, ll1, ll),
           torch.where(a3, gp1, gp), torch.where(a3, gl1, gl))
    return new, accept_prob


class _Adapter:
    """The multiplicative step-size rule: ×1.02 when the acceptance statistic exceeds the target, else ×0.98.

    ``per_chain=False`` (pilot): one step size per datapoint, statistic = the mean acceptance
    probability of that datapoint's chains at the latest transition. ``per_chain=True``
    (online-biased, Wu et al.'s reference code): one per chain, statistic = that chain's mean
    acceptance over all its transitions so far.
    """

    def __init__(self, init, K, N, target_accept, per_chain, like):
        self.per_chain, self.target = per_chain, target_accept
        self.eps = like.new_full((K, N) if per_chain else (N,), float(init))
        self.history = like.new_zeros(K, N)
        self.count = 0

    def current(self):
        """Step sizes shaped to broadcast over ``(K, N, d)``."""
        return self.eps.unsqueeze(-1) if self.per_chain else self.eps.view(1, -1, 1)

    def update(self, accept_prob):
        self.count += 1
        self.history += accept_prob
        stat = self.history / self.count if self.per_chain else accept_prob.mean(0)
        factor = torch.where(stat > self.target, ADAPT_UP, ADAPT_DOWN)
        self.eps = (self.eps * factor).clamp(*STEP_SIZE_BOUNDS)


def _anneal(target, z, betas, leapfrog_steps, step_sizes=None, adapter=None, bar=None):
    r"""Run chains from ``z`` ``(K, N, d)`` through ``betas`` (in run order, forward or reverse).

    Kernels: ``step_sizes[i]`` ``(N,)`` is ε of the transition at ``betas[i + 1]`` (fixed), or the
    ``adapter`` supplies and updates it. Returns ``(log_w (K, N), mean acceptance (K, N), ε used
    (T - 1, N))``.
    """
    state = (z, *target(z))
    z, lp, ll, gp, gl = state
    # log p(x|z) = -inf is a legitimate start (that chain's weight is 0); NaN is not
    if not bool(_finite_rows(lp, gp, gl).all()) or bool(ll.isnan().any()):
        raise FloatingPointError("NaN or non-finite log-density or gradient at the AIS starting points")
    log_w = torch.zeros_like(lp)
    acc_sum = torch.zeros_like(lp)
    used = []
    T = len(betas) - 1
    for t in range(1, T + 1):
        log_w = log_w + (betas[t] - betas[t - 1]) * state[2]
        if t == T:  # the last kernel would not change the weight
            break
        eps = adapter.current() if adapter is not None else step_sizes[t - 1].view(1, -1, 1)
        used.append(eps.squeeze(-1).mean(0))
        state, accept_prob = _hmc(target, state, betas[t], eps, leapfrog_steps)
        acc_sum += accept_prob
        if adapter is not None:
            adapter.update(accept_prob)
        if bar is not None:
            bar.update()
    used = torch.stack(used) if used else lp.new_zeros(0, lp.shape[1])
    return log_w, acc_sum / max(T - 1, 1), used


def _fixed_schedule(step_size, num_steps, N, like) -> torch.Tensor:
    """A user's fixed step sizes (one number, ``(T - 1,)`` or ``(T - 1, N)``) as ``(T - 1, N)``."""
    s = torch.as_tensor(step_size, dtype=like.dtype, device=like.device)
    shape = (num_steps - 1, N)
    if s.dim() == 0 or (s.dim() == 1 and s.shape[0] == shape[0]):
        s = s.reshape(-1, 1).expand(shape) if s.dim() == 1 else s.expand(shape)
    if s.shape != shape or not bool(((s > 0) & torch.isfinite(s)).all()):
        raise ConfigError(f"AIS step size of shape {tuple(s.shape)} is not allowed: expected positive finite "
                          f"step sizes: one number, {shape[:1]} or {shape}")
    return s


def _chunks(N, K, data_chunk):
    chunk = max(1, ROWS_PER_CHUNK // K) if data_chunk is None else check_positive_int("data_chunk", data_chunk)
    return [(s, min(s + chunk, N)) for s in range(0, N, chunk)]


def _check_step_settings(init_step_size, target_accept):
    lo, hi = STEP_SIZE_BOUNDS
    if not (isinstance(init_step_size, (int, float)) and lo <= init_step_size <= hi):
        raise ConfigError(f"AIS initial step size {init_step_size!r} is not allowed: expected a number in [{lo}, {hi}]")
    if not (isinstance(target_accept, (int, float)) and 0 < target_accept < 1):
        raise ConfigError(f"AIS target acceptance {target_accept!r} is not allowed: expected a number in (0, 1)")


def tune_step_sizes(model, x: torch.Tensor, num_steps: int = 500, leapfrog_steps: int = 10,
                    schedule: str = "sigmoid", *, pilot_chains: int = 10, init_step_size: float = 0.1,
                    target_accept: float = 0.65, data_chunk: int | None = None,
                    progress: bool = False, fast: str = "traced", gradient_dtype=None) -> torch.Tensor:
    r"""Pilot run: the frozen step-size schedule :math:`\epsilon_n(\beta_t)`, shape ``(T - 1, N)``.

    ``pilot_chains`` chains per datapoint anneal forward from the prior through the same
    :math:`\beta` schedule as the run that will use the result, adapting one step size per datapoint
    by the rule of the module docstring; the schedule records the step size each transition used.
    The pilot chains are discarded. Cost: ``pilot_chains / num_chains`` of the AIS run it serves.
    ``fast`` and ``gradient_dtype``: as in :func:`ais` (pass the scored run's, so the tuned kernels are its).
    """
    K = check_positive_int("pilot_chains", pilot_chains)
    L = check_positive_int("leapfrog_steps", leapfrog_steps)
    _check_step_settings(init_step_size, target_accept)
    betas = beta_schedule(num_steps, schedule).to(x)
    parts = _chunks(x.shape[0], K, data_chunk)
    out, cache = [], {}
    with progress_bar((len(betas) - 2) * len(parts), "AIS pilot", progress, unit="step") as bar, frozen(model):
        for s, e in parts:
            xc = x[s:e]
            latents = prior_latents(model, xc, K)
            target = _Target(model, xc, latents, fast, gradient_dtype, cache)
            adapter = _Adapter(init_step_size, K, e - s, target_accept, per_chain=False, like=xc)
            out.append(_anneal(target, target.pack(latents).to(x.dtype), betas, L, adapter=adapter, bar=bar)[2])
    return torch.cat(out, 1)


def ais(model, x: torch.Tensor, num_chains: int = 100, num_steps: int = 500, leapfrog_steps: int = 10,
        schedule: str = "sigmoid", *, step_size="pilot", pilot_chains: int = 10, init_step_size: float = 0.1,
        target_accept: float = 0.65, data_chunk: int | None = None,
        initial: dict[str, torch.Tensor] | None = None, reverse: bool = False,
        progress: bool = False, fast: str = "traced", gradient_dtype=None) -> AISResult:
    r"""AIS estimate of :math:`\log p(x_n)` for every row of ``x`` (or the BDMC upper bound).

    :param num_chains: ``K`` independent chains per datapoint (paper: 100).
    :param num_steps: ``T``: ``T + 1`` distributions, ``T - 1`` HMC transitions (paper: 500).
    :param leapfrog_steps: ``L`` leapfrog steps per HMC transition (paper: 10).
    :param schedule: ``"sigmoid"`` (default) or ``"linear"`` spacing of :math:`\beta` (:func:`beta_schedule`).
    :param step_size: ``"pilot"`` (default): tune a frozen schedule with :func:`tune_step_sizes` first;
        a number, or a tensor of shape ``(T - 1,)`` or ``(T - 1, N)``: fixed kernels as given (e.g. a
        pilot's schedule shared by a forward and a reverse run); ``"online-biased"``: per-chain
        adaptation during the run (biased, see the module docstring).
    :param pilot_chains, init_step_size, target_accept: the pilot's (and the online rule's) settings.
    :param data_chunk: datapoints per vectorized batch (default: ``10000 // K``); the work is
        ``K * data_chunk`` rows per decoder call.
    :param reverse: run from :math:`\beta=1` to 0 starting at ``initial`` (exact posterior samples,
        ``{site: (N, *event)}``, shared by the ``K`` chains) and return the stochastic upper bound.
    :param fast: ``"traced"`` (default), ``"compiled"`` or ``"eager"``: how the log density and its gradient
        are evaluated at each leapfrog step (:mod:`pyro_vaegap.estimators.potential`; every fast function is checked
        against Pyro's eager evaluation before use). The estimate does not depend on it.
    :param gradient_dtype: ``None`` (the model's precision) or ``"bfloat16"``: the precision of the
        leapfrog gradients only; the MH test and the weights stay in the model's precision, so the
        estimate stays unbiased (:mod:`pyro_vaegap.estimators.potential`).
    """
    K = check_positive_int("num_chains", num_chains)
    check_fast(fast)
    check_gradient_dtype(gradient_dtype)
    L = check_positive_int("leapfrog_steps", leapfrog_steps)
    if reverse and initial is None:
        raise ConfigError("reverse AIS needs initial exact posterior samples")
    N = x.shape[0]
    betas = beta_schedule(num_steps, schedule).to(x)
    fixed = None
    if isinstance(step_size, str):
        check_choice("step_size", step_size, STEP_SIZE_MODES)
        _check_step_settings(init_step_size, target_accept)
        if step_size == "pilot":
            fixed = tune_step_sizes(model, x, num_steps, L, schedule, pilot_chains=pilot_chains,
                                    init_step_size=init_step_size, target_accept=target_accept,
                                    data_chunk=data_chunk, progress=progress, fast=fast,
                                    gradient_dtype=gradient_dtype)
    else:
        fixed = _fixed_schedule(step_size, num_steps, N, x)
    if reverse:
        betas = betas.flip(0)
        fixed = None if fixed is None else fixed.flip(0)  # kernel at β_{T-1} first
    parts = _chunks(N, K, data_chunk)
    lws, accs, used, cache = [], [], [], {}
    with progress_bar((num_steps - 1) * len(parts), "reverse AIS" if reverse else "AIS", progress,
                      unit="step") as bar, frozen(model):
        for s, e in parts:
            xc = x[s:e]
            if initial is None:
                latents = prior_latents(model, xc, K)
            else:
                latents = {n: v[s:e].unsqueeze(0).expand(K, *v[s:e].shape) for n, v in initial.items()}
            target = _Target(model, xc, latents, fast, gradient_dtype, cache)
            adapter = (_Adapter(init_step_size, K, e - s, target_accept, per_chain=True, like=xc)
                       if fixed is None else None)
            lw, acc, eps = _anneal(target, target.pack(latents).to(x.dtype), betas, L,
                                   None if fixed is None else fixed[:, s:e], adapter, bar)
            lws.append(lw), accs.append(acc), used.append(eps)
    lw = torch.cat(lws, 1)
    lme = torch.logsumexp(lw, 0) - math.log(K)
    ess = torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0))
    eps = torch.cat(used, 1)
    return AISResult(log_px=-lme if reverse else lme, log_weights=lw, ess=ess,
                     accept_rate=torch.cat(accs, 1).mean(0), step_sizes=eps.flip(0) if reverse else eps,
                     reverse=reverse, unbiased=fixed is not None)


@dataclass
class BDMCResult:
    """Forward (lower) and reverse (upper) AIS bounds on simulated data ``x``, with their latents."""

    x: torch.Tensor
    latents: dict
    lower: AISResult
    upper: AISResult

    @property
    def gap(self) -> torch.Tensor:
        """Per-datapoint upper − lower: bounds the AIS estimate's error on such data when ≥ 0."""
        return self.upper.log_px - self.lower.log_px

    @property
    def crossings(self) -> torch.Tensor:
        """Datapoints whose upper bound fell below their lower bound: a failed sandwich."""
        return self.gap < 0

    def crossings_beyond_noise(self, z: float = 4.0) -> torch.Tensor:
        r"""Crossings deeper than ``z`` combined standard errors,
        :math:`	ext{upper} < 	ext{lower} - z\sqrt{\mathrm{se}_{lo}^2 + \mathrm{se}_{hi}^2}`. When AIS is
        nearly exact (upper ≈ lower), shallow crossings are Monte Carlo noise; deep ones are not."""
        return self.gap < -z * torch.hypot(self.lower.se, self.upper.se)

    def summary(self) -> dict:
        """Mean and max of ``|upper − lower|``, the signed mean, and the number of crossings (any
        crossing fails the sandwich)."""
        g = self.gap
        return {"num_points": int(g.numel()), "mean_lower": float(self.lower.log_px.mean()),
                "mean_upper": float(self.upper.log_px.mean()), "mean_abs_gap": float(g.abs().mean()),
                "max_abs_gap": float(g.abs().max()), "mean_signed_gap": float(g.mean()),
                "crossings": int(self.crossings.sum()), "sandwich_holds": not bool(self.crossings.any()),
                "crossings_beyond_4se": int(self.crossings_beyond_noise().sum()),
                "lower_mean_se": float(self.lower.se.mean()), "upper_mean_se": float(self.upper.se.mean())}


def bdmc(model, num_data: int, like: torch.Tensor, *, step_size="pilot", **ais_kwargs) -> BDMCResult:
    """Simulate ``num_data`` points from the model and sandwich their log p(x) with forward/reverse AIS.

    With ``step_size="pilot"`` one pilot run (:func:`tune_step_sizes`) tunes the schedule, and both
    directions use it unchanged: identical fixed kernels, so both bounds hold in expectation.

    :param like: a tensor with the data's row shape and dtype (e.g. a real batch).
    :param ais_kwargs: passed to both :func:`ais` runs (``num_chains``, ``num_steps``, …).
    """
    x, latents = simulate(model, check_positive_int("num_data", num_data), like)
    if isinstance(step_size, str) and step_size == "pilot":
        tune_kw = {k: ais_kwargs[k] for k in ("num_steps", "leapfrog_steps", "schedule", "pilot_chains",
                                              "init_step_size", "target_accept", "data_chunk", "progress",
                                              "fast", "gradient_dtype")
                   if k in ais_kwargs}
        step_size = tune_step_sizes(model, x, **tune_kw)
    kw = {k: v for k, v in ais_kwargs.items() if k != "pilot_chains"}
    lower = ais(model, x, step_size=step_size, **kw)
    upper = ais(model, x, initial=latents, reverse=True, step_size=step_size, **kw)
    return BDMCResult(x=x, latents=latents, lower=lower, upper=upper)
