"""The vlae family (guides/vlae.py): exact on a linear-Gaussian decoder after one step, Gauss–Newton toward the
mode on a nonlinear one, trainable, and refused where it does not apply. Seeded, float64 where values are compared."""
import pyro
import pytest
import torch

from pyro_vaegap.contract.guide import check_guide
from pyro_vaegap.contract.registry import get_family
from pyro_vaegap.estimators.traces import log_joint_parts
from pyro_vaegap.models import BernoulliVAE, GaussianVAE, LinearGaussian
from pyro_vaegap.utils import ConfigError


def _linear(seed=0):
    torch.manual_seed(seed)
    model = LinearGaussian.random(12, 3, scale=0.7, shared=0.8, psi=0.3, seed=seed)
    model.b.data = torch.randn(12, dtype=torch.float64)
    model.psi = torch.rand(12, dtype=torch.float64) + 0.2  # a diagonal, not constant, variance
    x = torch.randn(7, 12, dtype=torch.float64) * 2
    return model, x


@pytest.mark.parametrize("steps", [1, 3])
def test_linear_gaussian_posterior_is_exact(steps):
    """For g(z) = Wz + b the linearization is exact: from any encoder output the mean and covariance equal the
    exact posterior's after one step (and stay there)."""
    model, x = _linear()
    guide = get_family("vlae").make_amortized(model, num_steps=steps, hidden=8).double()
    with torch.no_grad():
        for p in guide.encoder.parameters():  # a far-off starting point: the result must not depend on it
            p.add_(torch.randn_like(p))
        loc, scale_tril = guide.encode(x)
    exact = model.exact_posterior(x)
    assert torch.allclose(loc, exact.mean, rtol=0, atol=1e-10)
    assert torch.allclose(scale_tril @ scale_tril.transpose(-1, -2), exact.covariance_matrix, rtol=0, atol=1e-10)
    # and the guide's trace scores that Gaussian: log q = log p(z|x) for any z it draws
    tr = pyro.poutine.trace(guide).get_trace(x)
    z = tr.nodes["z"]["value"]
    assert torch.allclose(tr.nodes["z"]["fn"].log_prob(z), exact.log_prob(z), atol=1e-9)


def test_steps_climb_the_log_joint_of_a_nonlinear_decoder():
    """Gauss–Newton on log p(x, z) with a tanh decoder: the mode estimate improves on the encoder's mean, and more
    steps reach a point where one more step barely moves (a fixed point: the mode)."""
    torch.manual_seed(1)
    model = GaussianVAE(10, latent_dim=2, hidden=16, variance="fixed", sigma2=0.05, activation="tanh").double()
    x = model.likelihood(torch.randn(5, 2, dtype=torch.float64)).sample()
    log_joint = {}
    for steps in (1, 2, 8, 9):
        guide = get_family("vlae").make_amortized(model, num_steps=steps, hidden=8).double()
        torch.manual_seed(2)
        guide.encoder.load_state_dict(get_family("vlae").make_amortized(model, hidden=8).double().encoder.state_dict())
        with torch.no_grad():
            loc = guide.encode(x)[0]
            log_joint[steps] = sum(log_joint_parts(model, x, {"z": loc}))
            if steps == 1:
                start = sum(log_joint_parts(model, x, {"z": guide.encoder.encode(x)[0]}))
    assert bool((log_joint[1] > start).all())
    assert bool((log_joint[8] >= log_joint[1] - 1e-9).all())
    assert torch.allclose(log_joint[9], log_joint[8], atol=1e-6)


def test_trains_end_to_end_and_follows_the_guide_contract():
    torch.manual_seed(0)
    model = GaussianVAE(10, latent_dim=3, hidden=8, variance="scalar", sigma2=0.5)
    guide = get_family("vlae").make_amortized(model, num_steps=2, hidden=8)
    x = torch.rand(6, 10)
    check_guide(model, guide, x)
    loss = pyro.infer.Trace_ELBO().differentiable_loss(model, guide, x)
    loss.backward()
    enc = [p.grad for p in guide.encoder.parameters()]
    dec = [p.grad for p in model.decoder.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in enc + dec)
    assert any(g.abs().sum() > 0 for g in enc) and any(g.abs().sum() > 0 for g in dec)
    assert not any(p is q for p in guide.parameters() for q in model.parameters())  # the decoder is not the guide's


@pytest.mark.parametrize("make,message", [
    (lambda: GaussianVAE(784, 2, 8, variance="fixed", arch="conv"), "fully connected decoder"),
    (lambda: BernoulliVAE(10, 2, 8), "Gaussian likelihood"),
    (lambda: GaussianVAE(10, 2, 8, variance="network"), "does not depend on z"),
])
def test_refused_where_it_does_not_apply(make, message):
    model = make()
    with pytest.raises(ConfigError, match=message):
        guide = get_family("vlae").make_amortized(model, hidden=8)
        guide.encode(torch.rand(3, model.data_dim))


def test_num_steps_is_checked():
    with pytest.raises(ConfigError, match="num_steps"):
        get_family("vlae").make_amortized(GaussianVAE(10, 2, 8, variance="fixed"), num_steps=0)
