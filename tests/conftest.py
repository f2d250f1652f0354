"""Shared fixtures: a linear-Gaussian model with a correlated posterior (closed-form answers)."""
from pathlib import Path

import pytest
import torch

import pyro_vaegap  # noqa: F401  (sets module-local Pyro params)
from pyro_vaegap.models import LinearGaussian
from pyro_vaegap.traces import simulate

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def make_linear_gaussian(dtype=torch.float64):
    """D = 5, d = 2; W's columns are far from orthogonal, so the posterior is correlated and the
    FFG approximation gap 0.5 (Σ log Λ_ii − log det Λ) is clearly non-zero (≈ 0.15 nats)."""
    W = torch.tensor([[1.0, 0.8], [0.5, 1.0], [1.0, 1.0], [0.0, 1.0], [1.0, -0.3]], dtype=dtype)
    b = torch.linspace(-0.5, 0.5, 5, dtype=dtype)
    return LinearGaussian(5, 2, W=W, b=b, psi=torch.full((5,), 0.5, dtype=dtype))


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
