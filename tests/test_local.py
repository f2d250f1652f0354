"""The batched local optimizer is N independent optimizations."""
import pytest
import torch

from pyro_vaegap.guides.ffg import LocalFFG
from pyro_vaegap.local import optimize_local
from pyro_vaegap.models import BernoulliVAE
from pyro_vaegap.utils import ConfigError


def _setup(n=5):
    torch.manual_seed(0)
    model = BernoulliVAE(20, 3, 16)
    x = (torch.rand(n, 20) < 0.4).float()
    return model, x


def _run(model, x, active=None, steps=300, seed=7):
    torch.manual_seed(seed)
    g = LocalFFG(model, x.shape[0])
    res = optimize_local(model, g, x, num_samples=10, lr=1e-2, max_steps=steps, check_every=50, patience=2,
                         active=active)
    return g, res


def test_batched_equals_per_datapoint_loop():
    """Datapoint n's trajectory in the batch equals the run in which n alone is optimized.

    With the same seed both runs draw identical noise, so equality (not closeness) is expected:
    any coupling between datapoints (a shared normalization, a shared step size, the convergence of
    another datapoint) would break it.
    """
    model, x = _setup()
    batched, bres = _run(model, x)
    for n in range(x.shape[0]):
        only = torch.zeros(x.shape[0], dtype=torch.bool)
        only[n] = True
        single, sres = _run(model, x, active=only)
        assert torch.equal(single.loc[n], batched.loc[n])
        assert torch.equal(single.scale[n], batched.scale[n])
        assert sres.steps[n] == bres.steps[n]
        others = ~only
        # frozen rows never move from their initial values
        assert torch.all(single.loc[others] == 0) and torch.all(single.scale[others] == 1)


def test_stopping_rule_freezes_converged_datapoints():
    model, x = _setup()
    g, res = _run(model, x, steps=5000)
    assert res.converged.all()
    assert torch.all(res.steps < 5000) and torch.all(res.steps % 50 == 0)
    assert res.steps.unique().numel() > 1  # datapoints stop at different times


def test_decoder_is_frozen_and_restored():
    model, x = _setup()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    _run(model, x, steps=20)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert all(p.requires_grad for p in model.parameters())


def test_bad_arguments():
    model, x = _setup()
    with pytest.raises(ConfigError, match="3 datapoints but x has 5 rows"):
        optimize_local(model, LocalFFG(model, 3), x)
    with pytest.raises(ConfigError, match="lr"):
        optimize_local(model, LocalFFG(model, 5), x, lr=-1.0)
