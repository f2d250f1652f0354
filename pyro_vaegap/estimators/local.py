r"""Per-datapoint optimization of a guide family: :math:`q^* = \arg\max_{q\in\mathcal Q} \mathcal L[q]`.

With the decoder frozen, the parameters :math:`\lambda_n` of a per-datum guide
(:class:`pyro_vaegap.contract.guide.LocalGuide`) are fitted to each datapoint by maximizing

.. math::

    \sum_{n=1}^N \hat{\mathcal L}_n(\lambda_n), \qquad
    \hat{\mathcal L}_n(\lambda_n) = \frac1S \sum_{s=1}^S \big[\log p(x_n, z_{sn}) - \log q_{\lambda_n}(z_{sn}\mid x_n)\big],
    \quad z_{sn} = g(\epsilon_{sn}; \lambda_n),

with Adam (lr 1e-3, ``S = 100`` in Cremer et al. 2018). Row ``n`` of every parameter affects only
term ``n`` and Adam's update is per coordinate, so this single batched problem *is* ``N``
independent optimizations; each datapoint's samples share its one parameter set.

Stopping rule (Cremer et al. 2018, appendix 6.4): every ``check_every`` (100) steps the last
``check_every`` ELBO values of a datapoint are averaged; a datapoint stops once its best average has
not improved for ``patience`` (10) consecutive checks, or at ``max_steps``. A stopped datapoint is
frozen while the others continue (how, below).

Evaluating only the running datapoints
--------------------------------------
Once most datapoints have stopped, evaluating all of them wastes most of each step. A guide that sets
:attr:`~pyro_vaegap.contract.guide.LocalGuide.row_subsets` (FFG and every family built on its base: ``flow``,
``iaf``, ``householder``) is evaluated on the running rows only, ``guide.elbo(model, x[r], S, idx=r)``,
and each datapoint's trajectory stays independent of which others run:

* its reparameterization noise at step ``t`` depends only on ``(seed, n, t)``
  (:mod:`pyro_vaegap.estimators.keyed_noise`), not on a shared random stream;
* Adam is applied by hand to the running rows only (:class:`_RowAdam`), with a step count per row:
  a stopped row's parameters and moments never change again, the work per step is proportional to
  the running rows, and each row's update is exactly Adam's
  (:math:`m \leftarrow \beta_1 m + (1-\beta_1) g`, :math:`v \leftarrow \beta_2 v + (1-\beta_2) g^2`,
  :math:`\lambda \leftarrow \lambda - \frac{\eta}{1-\beta_1^{t_n}} \frac{m}{\sqrt{v}/\sqrt{1-\beta_2^{t_n}} + 10^{-8}}`).
  A fused Adam over all rows with the stopped rows restored afterwards (the full-evaluation path)
  would touch every row at every step and count steps globally.

Other guides keep the full evaluation: every row every step, one fused Adam, and the stopped rows
restored after every step (Adam's momentum would otherwise keep moving them).

Long optimizations are resumable: at check boundaries (at most every ``save_every`` seconds) the whole
state — parameters, Adam's moments, the stopping rule's counters and the noise seed (or, for the full
evaluation, the random-number generator) — goes to ``save_state``; passing it back as ``state``
continues to exactly the result of an uninterrupted run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .ais import frozen
from ..contract.guide import LocalGuide
from .keyed_noise import KeyedNoise
from .potential import LocalStep, autocast_gradients, check_fast, check_gradient_dtype
from ..utils import ConfigError, check_finite, check_positive_int, progress_bar


@dataclass
class LocalResult:
    """Outcome of :func:`optimize_local`; tensors have shape ``(N,)``."""

    guide: LocalGuide
    steps: torch.Tensor       #: optimization steps each datapoint took before it stopped
    converged: torch.Tensor   #: True where the stopping rule fired (False: hit ``max_steps``)
    best_avg: torch.Tensor    #: the best windowed average of the S-sample ELBO


def optimize_local(model, guide: LocalGuide, x: torch.Tensor, *, num_samples: int = 100, lr: float = 1e-3,
                   max_steps: int = 50_000, check_every: int = 100, patience: int = 10,
                   active: torch.Tensor | None = None, progress: bool = False, desc: str = "local optimization",
                   state: dict | None = None, save_state=None, save_every: float = 120.0,
                   seed: int | None = None, fast: str = "eager", gradient_dtype=None) -> LocalResult:
    """Fit ``guide`` (a per-datum guide for the ``N`` rows of ``x``) with the model frozen.

    :param num_samples: ``S`` reparameterized samples per datapoint and step.
    :param active: optional boolean ``(N,)``; datapoints that are False are frozen from the start
        (used to show that one datapoint's optimization does not depend on the others).
    :param state: a state saved by an earlier, interrupted call with the same arguments: continue it.
    :param save_state: ``save_state(state)`` is called at check boundaries, at most every
        ``save_every`` seconds, with everything needed to continue.
    :param seed: the noise seed of a guide with ``row_subsets`` (default: drawn from torch's global
        generator, so ``torch.manual_seed`` fixes it); unused by the full evaluation, which draws
        from the global generator at every step.
    :param fast: ``"eager"`` (default), ``"traced"`` or ``"compiled"``: how a row-subset guide's step is
        evaluated (:class:`pyro_vaegap.estimators.potential.LocalStep`: one traced, checked graph per number of running
        rows, bit-for-bit the eager step when ``"traced"``); the full evaluation is always eager. Eager by
        default: ``"traced"`` traces and checks a new graph each time the number of running rows changes
        (seconds each for the paper's decoder), and its net gain over a whole optimization is not measured;
        ``"compiled"`` pads the running rows to a few sizes instead (``docs/benchmarks.md``).
    :param gradient_dtype: ``None`` or ``"bfloat16"``: the search's gradients (and the ELBO values its
        stopping rule reads) under autocast; the guide's parameters, Adam and any bound reported later stay
        in full precision.
    """
    if not isinstance(guide, LocalGuide):
        raise ConfigError(f"{type(guide).__name__} is not a per-datum guide (LocalGuide)")
    N = x.shape[0]
    if guide.num_data != N:
        raise ConfigError(f"the guide has {guide.num_data} datapoints but x has {N} rows")
    S = check_positive_int("num_samples", num_samples)
    max_steps = check_positive_int("max_steps", max_steps)
    check_every = check_positive_int("check_every", check_every)
    patience = check_positive_int("patience", patience)
    if not (isinstance(lr, (int, float)) and 0 < lr < float("inf")):
        raise ConfigError(f"lr={lr!r} is not allowed: expected a finite positive learning rate")
    params = list(guide.local_parameters().values())
    check_fast(fast)
    gradient_dtype = check_gradient_dtype(gradient_dtype)
    dev = x.device
    rule = _StoppingRule(N, check_every, patience, x.dtype, dev, active)
    subsets = bool(getattr(guide, "row_subsets", False))
    plate = guide.spec.plate  # the model's data plate, whose rows the keyed noise indexes
    if subsets:
        opt = _RowAdam(params, lr, N)
        fast_step = (LocalStep(model, guide, S, params, plate, fast, gradient_dtype)
                     if fast != "eager" or gradient_dtype is not None else None)
    else:
        # fused: one pass per step over (possibly millions of) per-datum parameters instead of several
        opt = torch.optim.Adam(params, lr=lr, fused=True)
    first = 1
    if state is not None:
        if ("seed" in state) != subsets:
            made, now = (("row subsets", "the full evaluation") if "seed" in state else
                         ("the full evaluation", "row subsets"))
            raise ConfigError(f"the saved local-optimization state was made by {made}, but {type(guide).__name__} "
                              f"now uses {now}; it cannot be continued: delete the saved state and start afresh")
        guide.load_state_dict(state["guide"])
        opt.load_state_dict(state["optimizer"])
        rule.load(state, dev)
        if subsets:
            seed = state["seed"]
        else:
            _set_rng(state["rng"], dev)
        first = state["step"] + 1
    elif subsets and seed is None:
        seed = int(torch.randint(0, 2 ** 31 - 1, ()))
    # full evaluation: rows of stopped datapoints are restored from here after every step (Adam's
    # momentum would otherwise keep moving them); refreshed for each datapoint at the moment it stops
    snapshot = None if subsets else [p.detach().clone() for p in params]
    last_save = time.time()
    with progress_bar(N, f"{desc} (datapoints stopped)", progress) as bar, frozen(model):
        bar.update(int((~rule.running).sum()))
        for step in range(first, max_steps + 1):
            if not rule.running.any():
                break
            if subsets:
                rows = rule.running.nonzero().squeeze(-1)
                if fast_step is not None:
                    elbo, grads = fast_step(x, rows, seed, step)
                else:
                    with KeyedNoise(seed, rows, step, plate=plate):
                        elbo = guide.elbo(model, x[rows], S, idx=rows)  # (B,) for the running rows
                    grads = None
                check_finite("per-datapoint ELBO during local optimization", elbo)
                if grads is None:
                    grads = torch.autograd.grad(-elbo.sum(), params, allow_unused=True)
                opt.step(grads, rows)
            else:
                rows = None
                with autocast_gradients(x.device, gradient_dtype):
                    elbo = guide.elbo(model, x, S)  # (N,); the plain MC ELBO unless the family overrides it
                check_finite("per-datapoint ELBO during local optimization", elbo[rule.running])
                opt.zero_grad(set_to_none=True)
                (-elbo.sum()).backward()
                opt.step()
                if not rule.running.all():
                    with torch.no_grad():  # put the stopped rows back where they stopped
                        stopped = (~rule.running).nonzero().squeeze(-1)
                        for p, snap in zip(params, snapshot):
                            p[stopped] = snap[stopped]
            rule.record(elbo.detach(), rows)
            if step % check_every == 0:
                stop = rule.check()
                if snapshot is not None and stop.any():
                    with torch.no_grad():
                        for p, snap in zip(params, snapshot):
                            snap[stop] = p[stop]
                bar.update(int(stop.sum()))
                bar.set_postfix_str(f"step {step}/{max_steps}")
                if save_state is not None and time.time() - last_save >= save_every and rule.running.any():
                    noise = {"seed": seed} if subsets else {"rng": _get_rng(dev)}
                    save_state({"step": step, "guide": guide.state_dict(), "optimizer": opt.state_dict(),
                                **rule.state(), **noise})
                    last_save = time.time()
    steps, converged, best = rule.steps, rule.converged, rule.best
    return LocalResult(guide=guide, steps=steps, converged=converged, best_avg=best)


class _StoppingRule:
    """The appendix 6.4 rule's counters for ``N`` datapoints, all ``(N,)`` tensors on the data's device."""

    KEYS = ("running", "steps", "best", "bad", "converged")

    def __init__(self, N, check_every, patience, dtype, device, active=None):
        self.check_every, self.patience = check_every, patience
        self.running = active.clone().to(device) if active is not None else torch.ones(N, dtype=torch.bool, device=device)
        self.steps = torch.zeros(N, dtype=torch.long, device=device)
        self.window = torch.zeros(N, dtype=dtype, device=device)
        self.best = torch.full((N,), -float("inf"), dtype=dtype, device=device)
        self.bad = torch.zeros(N, dtype=torch.long, device=device)
        self.converged = torch.zeros(N, dtype=torch.bool, device=device)

    def record(self, elbo, rows=None):
        """Add one step's ELBO: ``elbo`` is ``(N,)`` (``rows`` None) or the ``(B,)`` values of ``rows``."""
        if rows is None:
            self.window += torch.where(self.running, elbo, torch.zeros_like(self.window))
        else:
            self.window[rows] += elbo
        self.steps += self.running.long()

    def check(self) -> torch.Tensor:
        """At a check boundary: update best averages and patience counters; return the rows stopping now."""
        avg = self.window / self.check_every
        improved = self.running & (avg > self.best)
        self.best = torch.where(improved, avg, self.best)
        self.bad = torch.where(improved, torch.zeros_like(self.bad), self.bad + self.running.long())
        stop = self.running & (self.bad >= self.patience)
        self.converged |= stop
        self.running &= ~stop
        self.window.zero_()
        return stop

    def state(self) -> dict:
        return {k: getattr(self, k).clone() for k in self.KEYS}

    def load(self, state, device):
        for k in self.KEYS:
            setattr(self, k, state[k].to(device))


class _RowAdam:
    r"""Adam (Kingma & Ba 2015; torch's defaults :math:`\beta = (0.9, 0.999)`, :math:`\epsilon = 10^{-8}`)
    applied to a subset of rows of ``(N, ...)`` parameters, with one step count per row.

    Only the given rows' parameters and moments change, so a row that is left out (stopped) stays
    exactly where it is, and a row's trajectory depends only on its own gradients. Elementwise
    multiplies and adds only (no fused multiply-add kernels), so a row's bits do not depend on how
    many rows are updated with it.
    """

    def __init__(self, params, lr, N, betas=(0.9, 0.999), eps=1e-8):
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self.m = [torch.zeros_like(p) for p in params]
        self.v = [torch.zeros_like(p) for p in params]
        self.t = torch.zeros(N, dtype=torch.long, device=params[0].device)

    @torch.no_grad()
    def step(self, grads, rows):
        """One Adam step on ``rows`` (``(B,)`` indices) given full-size gradients ``grads`` (None: zero)."""
        b1, b2 = self.betas
        self.t[rows] += 1
        t = self.t[rows].to(self.params[0].dtype)
        for p, g, m, v in zip(self.params, grads, self.m, self.v):
            g = g[rows] if g is not None else torch.zeros_like(p[rows])
            view = (-1,) + (1,) * (p.dim() - 1)
            bc1 = (1 - b1 ** t).view(view)
            bc2 = (1 - b2 ** t).view(view).sqrt()
            m_r = m[rows] * b1 + g * (1 - b1)
            v_r = v[rows] * b2 + (g * g) * (1 - b2)
            m[rows], v[rows] = m_r, v_r
            p[rows] = p[rows] - (m_r * self.lr / bc1) / (v_r.sqrt() / bc2 + self.eps)

    def state_dict(self) -> dict:
        return {"m": [m.clone() for m in self.m], "v": [v.clone() for v in self.v], "t": self.t.clone()}

    def load_state_dict(self, state):
        for mine, saved in zip(self.m + self.v, state["m"] + state["v"]):
            mine.copy_(saved)
        self.t.copy_(state["t"])


def _get_rng(device):
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng(rng, device):
    torch.set_rng_state(rng["cpu"])
    if rng["cuda"] is not None:
        torch.cuda.set_rng_state(rng["cuda"], device)
