r"""Schedules of a training run: the learning rate per epoch and the annealing factor per minibatch.

Optimizer: Adam. ``lr_schedule="burda"`` is Burda et al.'s schedule, learning rate
:math:`10^{-3}\cdot 10^{-i/7}` for :math:`3^i` epochs, :math:`i = 0..7` (3280 epochs in all); the rate
is changed in place in the optimizer's parameter groups, so Adam's moments carry over.
``lr_schedule="cosine"``: :math:`\mathrm{lr}\cdot\tfrac12(1 + \cos(\pi e / E))` in 0-based epoch ``e`` of
``E = epochs`` (depends on ``epochs``, so extending a finished run by resuming changes its schedule).
"""
from __future__ import annotations

import math

from ..runs.config import TrainConfig

def learning_rate(cfg: TrainConfig, epoch: int) -> float:
    """Learning rate of 0-based ``epoch``."""
    if cfg.lr_schedule == "constant":
        return cfg.lr
    if cfg.lr_schedule == "cosine":
        return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * min(epoch, cfg.epochs) / cfg.epochs))
    start = 0
    for i in range(8):
        start += 3 ** i
        if epoch < start:
            return cfg.lr * 10 ** (-i / 7)
    return cfg.lr * 10 ** (-7 / 7)


def anneal_factor(cfg: TrainConfig, epoch: int, batch: int, batches_per_epoch: int) -> float:
    """The annealing factor of minibatch ``batch`` of 0-based ``epoch``: rising linearly from 0 to 1 over the first
    ``cfg.anneal_epochs`` epochs, per minibatch (1 without annealing)."""
    if cfg.anneal == "none":
        return 1.0
    return min(1.0, (epoch + batch / batches_per_epoch) / cfg.anneal_epochs)
