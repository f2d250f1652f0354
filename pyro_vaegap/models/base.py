"""The data plate and the base class of every model: a standard-normal prior on ``z`` and a likelihood."""
from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import PyroModule

from ..utils import ConfigError, check_positive_int


def data_plate(x: torch.Tensor, idx: torch.Tensor | None = None, num_data: int | None = None, name: str = "data"):
    """The plate over datapoints shared by every model and guide.

    :param x: the (mini)batch, shape ``(B, D)``.
    :param idx: global indices ``(B,)`` of the rows of ``x`` within the data set. Per-datapoint
        guides use them to pick their parameters; with ``num_data`` they are the plate's subsample.
    :param num_data: total number of datapoints ``N``. When given (with ``idx``), Pyro scales the
        log-densities of the batch by ``N / B`` (minibatch subsampling); when omitted the plate has
        size ``B`` and scale 1, which is what per-datapoint estimators want.
    :param name: the plate's name (a guide uses its model's, read from the model's trace).
    """
    if num_data is None:
        return pyro.plate(name, x.shape[0], dim=-1)
    if idx is None:
        raise ConfigError("num_data was given without idx: subsampling needs the batch's global indices")
    return pyro.plate(name, num_data, subsample=idx, dim=-1)


class VAEModel(PyroModule):
    r"""Base class: standard-normal prior on ``z`` and a likelihood given by :meth:`likelihood`.

    Subclasses implement ``likelihood(z) -> Distribution`` with batch shape ``z.shape[:-1]`` and one
    event dimension of size ``data_dim``, and ``validate_data``.
    """

    def __init__(self, latent_dim: int, data_dim: int):
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.data_dim = check_positive_int("data_dim", data_dim)

    def prior(self, like: torch.Tensor) -> dist.Distribution:
        """:math:`\\mathcal N(0, I_d)` as one event of size ``d`` on ``like``'s device and dtype."""
        zeros = like.new_zeros(self.latent_dim)
        return dist.Normal(zeros, torch.ones_like(zeros)).to_event(1)

    def forward(self, x: torch.Tensor, idx: torch.Tensor | None = None, num_data: int | None = None):
        with data_plate(x, idx, num_data):
            z = pyro.sample("z", self.prior(x))
            pyro.sample("x", self.likelihood(z), obs=x)
        return z

    def likelihood(self, z: torch.Tensor) -> dist.Distribution:  # pragma: no cover - abstract
        raise NotImplementedError

    def validate_data(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def _check_width(self, x: torch.Tensor) -> None:
        if x.dim() != 2 or x.shape[1] != self.data_dim:
            raise ConfigError(
                f"data has shape {tuple(x.shape)} but the model expects (N, {self.data_dim})"
            )
