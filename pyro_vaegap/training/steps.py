r"""One training step: the loss, an optimizer step, and the data-parallel step over micro-batches.

A step is Pyro's :class:`~pyro.infer.elbo.ELBOModule` idiom (:func:`~pyro_vaegap.training.steps.make_loss`, :func:`~pyro_vaegap.training.steps.training_step`):
``loss_fn = objective(model, guide)``, then ``loss = loss_fn(x) / B`` (the per-datapoint mean, so
``lr`` means the same thing for every batch size), ``loss.backward()`` and one ``torch.optim.Adam``
step over the parameters of model and guide. Not :class:`pyro.infer.SVI`: SVI finds the parameters
to optimize by capturing ``pyro.param`` sites, which are in Pyro's global parameter store, and this
package keeps :class:`~pyro.nn.PyroModule` parameters module-local (two guides of a gap report both
own a ``loc``); an ``ELBOModule`` step took 0.97x the time of an SVI step with the global store.
What a step spends in Pyro's Python beyond a hand-written PyTorch step of the same networks (tracing the guide,
replaying the model) :func:`~pyro_vaegap.training.train` removes by default with
:class:`~pyro_vaegap.training.traced.TracedLoss`, the loss traced once per batch shape
(``benchmarks/bench_train_step.py``, ``docs/benchmarks.md``).
"""
from __future__ import annotations

import math
from contextlib import nullcontext

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

from ..objectives import Annealing, make_objective
from ..objectives.infovae import MMDKernel, mmd
from ..estimators.traces import guide_model_traces, log_weights, sample_sites
from ..runs.config import TrainConfig
from .schedules import learning_rate

@torch.no_grad()
def mean_elbo(model, guide, x, num_samples: int = 1, chunk: int = 1000) -> float:
    """Average over the rows of ``x`` of the ``num_samples``-sample ELBO estimate."""
    total = 0.0
    for s in range(0, x.shape[0], chunk):
        total += float(log_weights(model, guide, x[s:s + chunk], num_samples).mean(0).sum())
    return total / x.shape[0]


def make_loss(cfg: TrainConfig, model, guide):
    """``(loss_fn, annealing)``: the :class:`~pyro.infer.elbo.ELBOModule` ``objective(model, guide)``
    of ``cfg``'s objective, built on ``cfg.anneal``'s :class:`~pyro_vaegap.objectives.elbos.Annealing`
    wrappers (set ``annealing.factor`` before each minibatch). ``loss_fn(x)`` is the minibatch sum of
    per-datapoint losses."""
    objective = make_objective(cfg, guide)  # validates first
    annealing = Annealing(cfg.anneal, model, guide)
    return objective(annealing.model, annealing.guide), annealing


def make_optimizer(cfg: TrainConfig, params) -> torch.optim.Optimizer:
    """``cfg.optimizer`` over ``params``: :class:`torch.optim.Adam` (eps ``cfg.adam_eps``) or
    :class:`torch.optim.RMSprop` with TensorFlow 1's smoothing 0.9 (its eps 1e-10 sits under the square root, so
    1e-5 outside), at the schedule's first learning rate. (TF 1 also starts the mean square at 1, torch at 0.)

    Adam runs torch's fused implementation (one kernel over all parameters) where it applies: the same update,
    equal to the per-parameter loop's to rounding; on one CPU thread it made the GPVAE sweep's training steps
    1.04–1.18 times faster (``benchmarks/bench_gpvae_train_step.py``, ``docs/benchmarks.md``)."""
    params = list(params)
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=learning_rate(cfg, 0), alpha=0.9, eps=1e-5)
    return torch.optim.Adam(params, lr=learning_rate(cfg, 0), eps=cfg.adam_eps, fused=_fusable(params) or None)


def _fusable(params) -> bool:
    """Whether torch's fused Adam takes ``params``: floating tensors, all on one CPU or CUDA device."""
    devices = {p.device for p in params}
    return (len(devices) == 1 and next(iter(devices)).type in ("cpu", "cuda")
            and all(p.is_floating_point() for p in params))


def restore_optimizer(opt: torch.optim.Optimizer, state: dict) -> None:
    """Load a checkpoint's optimizer ``state`` into ``opt``, keeping ``opt``'s implementation (fused, foreach):
    :meth:`~torch.optim.Optimizer.load_state_dict` would take the saved run's, so a run saved before the fused
    Adam would resume on the slow loop."""
    impl = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in opt.param_groups]
    opt.load_state_dict(state)
    for g, kept in zip(opt.param_groups, impl):
        g.update(kept)


def _clip(opt: torch.optim.Optimizer, clip_value: float | None) -> None:
    """Clip every gradient entry of ``opt``'s parameters to ``[-clip_value, clip_value]`` (TF's ``clip_by_value``)."""
    if clip_value is not None:
        torch.nn.utils.clip_grad_value_([p for g in opt.param_groups for p in g["params"]], clip_value)


@torch.no_grad()
def aggregate_mmd2(model, guide, x: torch.Tensor, seed: int) -> float:
    r"""The unbiased MMD² (RBF, :math:`2\sigma^2 = \dim z`, the InfoVAE paper's kernel) between one draw of the
    guide per row of ``x`` (the model's latent sites, concatenated) and as many draws of :math:`\mathcal N(0, I)`:
    how far the aggregate posterior :math:`q(z)` is from a standard normal prior, seeded by ``seed`` (the random
    state outside is restored). The per-epoch monitor ``monitor_mmd`` of :func:`~pyro_vaegap.training.train`."""
    with torch.random.fork_rng(devices=[x.device] if x.device.type == "cuda" else []):
        torch.manual_seed(seed)
        _, m = guide_model_traces(model, guide, x, 1)
        z = torch.cat([site["value"].reshape(x.shape[0], -1) for _, site in sample_sites(m, observed=False)], -1)
        prior = torch.randn(z.shape, dtype=z.dtype, device=z.device)
        return float(mmd(z, prior, MMDKernel("rbf", (1.0,))))


def training_step(loss_fn, opt: torch.optim.Optimizer, x: torch.Tensor, where: str = "",
                  clip_value: float | None = None) -> float:
    """One optimizer step on the per-datapoint mean loss ``loss_fn(x) / B``; returns its value. With ``clip_value``
    every gradient entry is clipped to ``[-clip_value, clip_value]`` first.

    :raises FloatingPointError: on a non-finite loss, or non-finite parameters of a distribution inside the model or
        guide (Pyro's validation), before the parameters are touched.
    """
    critic_step = getattr(getattr(loss_fn, "elbo", None), "critic_step", None)
    if critic_step is not None:  # an adversarial objective trains its critic first, with its own optimizer
        critic_step(loss_fn.model, loss_fn.guide, x)
    opt.zero_grad(set_to_none=True)
    try:
        loss = loss_fn(x) / x.shape[0]
    except ValueError as e:  # Pyro's check of a distribution's parameters: NaN inside the model or guide
        if "found invalid values" not in str(e):
            raise
        raise FloatingPointError(f"non-finite values in the model or guide{where} ({str(e).split(' but found')[0]}); "
                                 "lower the learning rate (or the guide's step size) or check the data") from None
    value = float(loss.detach())
    if not math.isfinite(value):
        raise FloatingPointError(f"non-finite training loss{where}; lower the learning rate or check the data")
    loss.backward()
    _clip(opt, clip_value)
    opt.step()
    return value


def _sum_gradients(process_group, bucket):
    """DDP communication hook: the *sum* of the ranks' gradients (DDP's default averages them). Each rank's
    loss is already divided by the global batch size, so the sum is the one-process gradient."""
    work = dist.all_reduce(bucket.buffer(), group=process_group, async_op=True)
    return work.get_future().then(lambda fut: fut.value()[0])


def data_parallel(loss_fn, device: torch.device):
    """``loss_fn`` wrapped in :class:`~torch.nn.parallel.DistributedDataParallel` inside a process group
    of several ranks (its backward sums the ranks' gradients, :func:`_sum_gradients`), else itself.

    Every parameter of model and guide must take part in every step's loss (DDP's default, the cheap one;
    every registered family does): DDP names a parameter left out at the next step."""
    if not (dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
        return loss_fn
    ddp = DistributedDataParallel(loss_fn, device_ids=[device.index] if device.type == "cuda" else None,
                                  find_unused_parameters=False)
    ddp.register_comm_hook(None, _sum_gradients)
    return ddp


def micro_batch_step(net, opt: torch.optim.Optimizer, x: torch.Tensor, seeds: list[int], rank: int = 0,
                     world: int = 1, where: str = "", clip_value: float | None = None) -> float:
    r"""One optimizer step on the batch ``x`` split into ``M = len(seeds)`` micro-batches, shared by the ranks.

    Micro-batch :math:`m` (the :math:`m`-th of :func:`torch.tensor_split`'s ``M`` contiguous parts of ``x``)
    draws its random numbers after ``torch.manual_seed(seeds[m])`` and is computed by rank ``m % world``;
    the gradient of :math:`\sum_m \text{loss}(x_m) / B` is accumulated over a rank's micro-batches and
    summed over the ranks (``net`` from :func:`data_parallel`). So the step — and a whole training run —
    is the same for every number of ranks up to ``M``, up to the order of floating-point additions.

    :returns: the batch's per-datapoint mean loss (summed over the ranks).
    :raises FloatingPointError: on a non-finite loss, or non-finite parameters of a distribution inside the model or
        guide (Pyro's validation), before the parameters are touched.
    """
    parts = torch.tensor_split(x, len(seeds))
    mine = list(range(rank, len(seeds), world))
    opt.zero_grad(set_to_none=True)
    total = torch.zeros((), dtype=x.dtype, device=x.device)
    for i, m in enumerate(mine):
        torch.manual_seed(seeds[m])
        # DDP reduces the gradients in the backward pass of the rank's last micro-batch only
        sync = nullcontext() if world == 1 or i == len(mine) - 1 else net.no_sync()
        with sync:
            loss = net(parts[m]) / x.shape[0]
            loss.backward()
        total += loss.detach()
    if world > 1:
        dist.all_reduce(total)
    value = float(total)
    if not math.isfinite(value):
        raise FloatingPointError(f"non-finite training loss{where}; lower the learning rate or check the data")
    _clip(opt, clip_value)  # the summed gradient: the same clipping on any number of ranks
    opt.step()
    return value


def _world() -> tuple[int, int]:
    """``(rank, world size)`` of the process group this process has joined, else ``(0, 1)``."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
