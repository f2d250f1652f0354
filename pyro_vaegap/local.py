r"""Per-datapoint optimization of a guide family: :math:`q^* = \arg\max_{q\in\mathcal Q} \mathcal L[q]`.

With the decoder frozen, the parameters :math:`\lambda_n` of a per-datum guide
(:class:`pyro_vaegap.guide.LocalGuide`) are fitted to each datapoint by maximizing

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
frozen — its rows are restored after every later Adam step, since Adam's momentum would otherwise
keep moving them — while the others continue.

Long optimizations are resumable: at check boundaries (at most every ``save_every`` seconds) the whole
state — parameters, Adam's moments, the stopping rule's counters and the random-number generator —
goes to ``save_state``; passing it back as ``state`` continues to exactly the result of an
uninterrupted run.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .ais import frozen
from .guide import LocalGuide
from .utils import ConfigError, check_finite, check_positive_int, progress_bar


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
                   state: dict | None = None, save_state=None, save_every: float = 120.0) -> LocalResult:
    """Fit ``guide`` (a per-datum guide for the ``N`` rows of ``x``) with the model frozen.

    :param num_samples: ``S`` reparameterized samples per datapoint and step.
    :param active: optional boolean ``(N,)``; datapoints that are False are frozen from the start
        (used to show that one datapoint's optimization does not depend on the others).
    :param state: a state saved by an earlier, interrupted call with the same arguments: continue it.
    :param save_state: ``save_state(state)`` is called at check boundaries, at most every
        ``save_every`` seconds, with everything needed to continue.
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
    # fused: one pass per step over (possibly millions of) per-datum parameters instead of several
    opt = torch.optim.Adam(params, lr=lr, fused=True)
    dev = x.device
    running = active.clone().to(dev) if active is not None else torch.ones(N, dtype=torch.bool, device=dev)
    steps = torch.zeros(N, dtype=torch.long, device=dev)
    window = torch.zeros(N, dtype=x.dtype, device=dev)
    best = torch.full((N,), -float("inf"), dtype=x.dtype, device=dev)
    bad = torch.zeros(N, dtype=torch.long, device=dev)
    converged = torch.zeros(N, dtype=torch.bool, device=dev)
    first = 1
    if state is not None:
        guide.load_state_dict(state["guide"])
        opt.load_state_dict(state["optimizer"])
        running, steps, best, bad, converged = (state[k].to(dev) for k in ("running", "steps", "best", "bad", "converged"))
        _set_rng(state["rng"], dev)
        first = state["step"] + 1
    # rows of stopped datapoints are restored from here after every step: Adam's momentum would
    # otherwise keep moving them; refreshed for each datapoint at the moment it stops
    snapshot = [p.detach().clone() for p in params]
    last_save = time.time()
    with progress_bar(N, f"{desc} (datapoints stopped)", progress) as bar, frozen(model):
        bar.update(int((~running).sum()))
        for step in range(first, max_steps + 1):
            if not running.any():
                break
            elbo = guide.elbo(model, x, S)  # (N,); the plain MC ELBO unless the family overrides it
            check_finite("per-datapoint ELBO during local optimization", elbo[running])
            opt.zero_grad(set_to_none=True)
            (-elbo.sum()).backward()
            opt.step()
            if not running.all():
                with torch.no_grad():  # put the stopped rows back where they stopped
                    rows = (~running).nonzero().squeeze(-1)
                    for p, snap in zip(params, snapshot):
                        p[rows] = snap[rows]
            window += torch.where(running, elbo.detach(), torch.zeros_like(window))
            steps += running.long()
            if step % check_every == 0:
                avg = window / check_every
                improved = running & (avg > best)
                best = torch.where(improved, avg, best)
                bad = torch.where(improved, torch.zeros_like(bad), bad + running.long())
                stop = running & (bad >= patience)
                converged |= stop
                running &= ~stop
                if stop.any():
                    with torch.no_grad():
                        for p, snap in zip(params, snapshot):
                            snap[stop] = p[stop]
                window.zero_()
                bar.update(int(stop.sum()))
                bar.set_postfix_str(f"step {step}/{max_steps}")
                if save_state is not None and time.time() - last_save >= save_every and running.any():
                    save_state({"step": step, "guide": guide.state_dict(), "optimizer": opt.state_dict(),
                                "running": running, "steps": steps, "best": best, "bad": bad,
                                "converged": converged, "rng": _get_rng(dev)})
                    last_save = time.time()
    return LocalResult(guide=guide, steps=steps, converged=converged, best_avg=best)


def _get_rng(device):
    return {"cpu": torch.get_rng_state(), "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None}


def _set_rng(rng, device):
    torch.set_rng_state(rng["cpu"])
    if rng["cuda"] is not None:
        torch.cuda.set_rng_state(rng["cuda"], device)
