"""The traced training loss: the eager Pyro loss's values, gradients and random numbers, or an eager fallback."""
import random

import pyro
import pytest
import torch

from pyro_vaegap.models import BernoulliVAE
from pyro_vaegap.models.bernoulli import BernoulliLogits
from pyro_vaegap.runs import TrainConfig
from pyro_vaegap.training import make_loss, train, training_step
from pyro_vaegap.training.build import build_guide, build_model
from pyro_vaegap.training.traced import TraceFallbackWarning, TracedLoss, traced_loss

SMALL = dict(dataset="digits", latent_dim=4, hidden=32, guide_options={"hidden": 32}, batch_size=100,
             num_train=400)


def _setup(cfg, model=None, n=64):
    torch.manual_seed(0)
    model = model or build_model(cfg, n)
    guide = build_guide(cfg, model)
    if hasattr(guide, "set_training_size"):  # GPVAE's weight KL is per training point, as train() sets it
        guide.set_training_size(cfg.num_train)
    loss_fn, annealing = make_loss(cfg, model, guide)
    opt = torch.optim.Adam([*model.parameters(), *guide.parameters()], lr=1e-2)
    return model, guide, loss_fn, annealing, opt


def _steps(cfg, jit, xs, model=None):
    """Losses, final parameters and generator state of a few optimizer steps from seed 1, the annealing
    factor changing between steps (0 included), eager or traced."""
    model, guide, loss_fn, annealing, opt = _setup(cfg, model)
    fn = TracedLoss(loss_fn, annealing, (model, guide)) if jit else loss_fn
    torch.manual_seed(1)
    losses = []
    for i, x in enumerate(xs):
        annealing.factor = i / (len(xs) - 1)
        losses.append(training_step(fn, opt, x))
    params = [p.detach().clone() for p in (*model.parameters(), *guide.parameters())]
    return losses, params, torch.get_rng_state(), fn


@pytest.mark.parametrize("guide,objective,anneal,particles,options", [
    ("ffg", "elbo", "entropy", 1, {}), ("flow", "elbo", "entropy", 1, {}), ("ffg", "mean_field", "kl", 1, {}),
    ("iaf", "iwae", "none", 3, {}),
    # the guides with their own estimator (GPVAE's eq. 15, the mixtures' bounds) trace too
    ("gpvae", "elbo", "none", 1, {"features": "separate", "feature_width": 16, "expected_log": "closed_form"}),
    ("gpvae", "elbo", "none", 1, {}), ("mixture", "elbo", "none", 1, {"num_components": 2})])
def test_traced_steps_equal_the_eager_steps(guide, objective, anneal, particles, options):
    small = dict(SMALL, guide_options={**SMALL["guide_options"], **options})
    cfg = TrainConfig(guide=guide, objective=objective, anneal=anneal, anneal_epochs=int(anneal != "none"),
                      num_particles=particles, **small)
    xs = [torch.bernoulli(torch.full((20, 64), p)) for p in (0.2, 0.3, 0.4, 0.5)] + \
         [torch.bernoulli(torch.full((7, 64), 0.3))]  # a second batch shape: a second trace
    eager, traced = _steps(cfg, False, xs), _steps(cfg, True, xs)
    assert traced[3].fallback is None and len(traced[3]._graphs) == 2
    assert traced[0] == pytest.approx(eager[0], rel=1e-6)
    for a, b in zip(eager[1], traced[1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)
    assert torch.equal(eager[2], traced[2])  # the same random numbers were drawn


def test_replayed_graph_gives_the_eager_loss_and_gradients_at_a_fixed_seed():
    cfg = TrainConfig(guide="flow", anneal="entropy", anneal_epochs=1, **SMALL)
    model, guide, loss_fn, annealing, _ = _setup(cfg)
    traced = TracedLoss(loss_fn, annealing, (model, guide))
    params = [p for p in (*model.parameters(), *guide.parameters())]
    x = torch.bernoulli(torch.full((10, 64), 0.3))
    traced(x)  # traces and checks
    annealing.factor = 0.3
    out = []
    for fn in (loss_fn, traced):
        torch.manual_seed(5)
        value = fn(x)
        out.append((value.detach(), torch.autograd.grad(value, params)))
    torch.testing.assert_close(out[0][0], out[1][0], rtol=1e-6, atol=0)
    for a, b in zip(out[0][1], out[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


class BranchingVAE(BernoulliVAE):
    """A model whose Python branches on tensor values: a trace would keep the branch of its first input."""

    def forward(self, x, idx=None, num_data=None):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(x))
            logits = self.decoder(z)
            if x.mean() > 0.5:
                logits = logits + 3.0
            pyro.sample("x", BernoulliLogits(logits=logits).to_event(1), obs=x)


def test_value_dependent_control_flow_falls_back_to_eager_with_a_warning():
    cfg = TrainConfig(**SMALL)
    model, guide, loss_fn, annealing, _ = _setup(cfg, BranchingVAE(64, latent_dim=4, hidden=32))
    traced = TracedLoss(loss_fn, annealing, (model, guide))
    dark, light = torch.zeros(10, 64), torch.ones(10, 64)
    with pytest.warns(TraceFallbackWarning, match=r"depends on tensor values at .*test_traced.py:\d+ \(Converting a "
                                                  r"tensor to a Python boolean"):
        traced(dark)
    assert traced.fallback is not None and not traced._graphs
    for x in (light, dark):  # a stale trace of the dark branch would give the light batch the wrong loss
        torch.manual_seed(2)
        expected = loss_fn(x)
        torch.manual_seed(2)
        assert float(traced(x).detach()) == float(expected.detach())


def test_an_objective_with_python_side_outputs_is_not_traced():
    cfg = TrainConfig(objective="infovae", alpha=0.0, lambda_=1000.0, **SMALL)
    model, guide, loss_fn, annealing, _ = _setup(cfg)
    assert traced_loss(loss_fn, annealing, (model, guide)) is loss_fn
    cfg = TrainConfig(**SMALL)
    model, guide, loss_fn, annealing, _ = _setup(cfg)
    assert isinstance(traced_loss(loss_fn, annealing, (model, guide)), TracedLoss)


def test_a_run_resumes_with_or_without_the_traced_loss_and_ends_where_either_ends(tmp_path):
    cfg = TrainConfig(epochs=3, anneal="entropy", anneal_epochs=2, guide="flow", **SMALL)
    eager = train(cfg, tmp_path / "eager", progress=False, jit=False)
    traced = train(cfg, tmp_path / "traced", progress=False, jit=True)
    train(cfg, tmp_path / "mixed", stop_after=1, progress=False, jit=True)
    mixed = train(cfg, tmp_path / "mixed", stop_after=1, resume=True, progress=False, jit=False)
    mixed = train(cfg, tmp_path / "mixed", resume=True, progress=False, jit=True)
    for other in (traced, mixed):
        assert [r["train_objective"] for r in other.log] == pytest.approx([r["train_objective"] for r in eager.log],
                                                                           rel=1e-5)
        for a, b in zip(eager.model.state_dict().values(), other.model.state_dict().values()):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


class PythonNoiseVAE(BernoulliVAE):
    """A model that reads a Python random number: no tracer warning, but a trace would keep its first value."""

    def forward(self, x, idx=None, num_data=None):
        shift = random.random()
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", self.prior(x))
            pyro.sample("x", BernoulliLogits(logits=self.decoder(z) + shift).to_event(1), obs=x)


def test_a_trace_that_disagrees_with_the_eager_loss_at_its_first_call_is_not_used():
    cfg = TrainConfig(**SMALL)
    model, guide, loss_fn, annealing, _ = _setup(cfg, PythonNoiseVAE(64, latent_dim=4, hidden=32))
    traced = TracedLoss(loss_fn, annealing, (model, guide))
    with pytest.warns(TraceFallbackWarning, match="the traced loss .* differs from the eager loss"):
        traced(torch.ones(10, 64))
    assert traced.fallback is not None and not traced._graphs
