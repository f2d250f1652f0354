"""Shared fixtures and exact answers: linear-Gaussian models (closed forms) and grid integration
(:func:`pyro_vaegap.grid.grid_log_px`)."""
from pathlib import Path

import pyro.distributions as dist
import pytest
import torch
from torch.distributions import kl_divergence

import pyro_vaegap  # noqa: F401  (sets module-local Pyro params)
from pyro_vaegap.grid import grid_log_px  # noqa: F401  (re-exported: tests import it from here)
from pyro_vaegap.models import LinearGaussian
from pyro_vaegap.traces import simulate

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


#: environment variables of the user's shell that change what the library does; no test may depend on them
USER_ENV = ("PYRO_VAEGAP_DATA", "PYRO_VAEGAP_THREADS")


@pytest.fixture(autouse=True)
def _hermetic(monkeypatch):
    """Every test sees neither the user's data directory nor their thread setting (a test that needs one
    sets it), and torch's thread count is restored after it (commands set it from ``--threads``)."""
    for name in USER_ENV:
        monkeypatch.delenv(name, raising=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def make_linear_gaussian(dtype=torch.float64):
    """D = 5, d = 2; W's columns are far from orthogonal, so the posterior is correlated and the
    FFG approximation gap 0.5 (Σ log Λ_ii − log det Λ) is clearly non-zero (≈ 0.15 nats)."""
    W = torch.tensor([[1.0, 0.8], [0.5, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, -0.3]], dtype=dtype)
    b = torch.linspace(-0.5, 0.5, 5, dtype=dtype)
    return LinearGaussian(5, 2, W=W, b=b, psi=torch.full((5,), 0.5, dtype=dtype))


def random_linear_gaussian(data_dim, latent_dim, scale, shared=0.0, psi=1.0, seed=0):
    """:meth:`LinearGaussian.random` (float64)."""
    return LinearGaussian.random(data_dim, latent_dim, scale=scale, shared=shared, psi=psi, seed=seed)


@pytest.fixture
def lg_model():
    return make_linear_gaussian()


@pytest.fixture
def lg_data(lg_model):
    torch.manual_seed(1)
    x, _ = simulate(lg_model, 8, torch.zeros(1, 5, dtype=torch.float64))
    return x


@pytest.fixture
def mnist_dir():
    if not (SHARED_DATA / "binarized_mnist.npz").exists():
        pytest.skip(f"binarized MNIST not found at {SHARED_DATA}")
    return SHARED_DATA


def exact_elbo(model: LinearGaussian, x, loc, scale) -> torch.Tensor:
    """Closed-form L[q] = log p(x) − KL(q ‖ p(z|x)) of q = N(loc, diag scale²) (or of ``scale`` as a
    Cholesky factor when it is ``(N, d, d)``), shape ``(N,)``."""
    tril = scale if scale.dim() == loc.dim() + 1 else torch.diag_embed(scale)
    q = dist.MultivariateNormal(loc, scale_tril=tril)
    return model.exact_log_marginal(x) - kl_divergence(q, model.exact_posterior(x))
