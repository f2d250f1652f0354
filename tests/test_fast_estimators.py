"""The traced step functions (:mod:`pyro_vaegap.estimators.potential`) and reduced-precision gradients, proved on exact models.

* ``fast="traced"`` runs the same kernels as Pyro's eager evaluation, so AIS, BDMC and the local
  optimization give the eager results bit for bit (the local optimizer's checks are parametrized over both
  in ``tests/test_local.py``; every exact check of ``tests/test_linear_gaussian.py`` runs AIS traced, its
  default);
* a model the trace cannot represent falls back to eager with a warning, and gives the eager result;
* bf16 gradients (trajectory / search only) keep AIS unbiased, BDMC's bounds bounds, and the FFG q* gap
  analytic. Autocast casts float32 (not float64) operands, so these run the closed-form models in float32,
  and the first test shows the bf16 gradients do differ from the fp32 ones.

Tolerances are those of the fp32/fp64 checks in ``tests/test_linear_gaussian.py`` (z = 4 standard errors
plus the stated optimization tolerance), at their settings.
"""
import json
import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from conftest import make_linear_gaussian, random_linear_gaussian
from pyro_vaegap.ais import ais, bdmc, tune_step_sizes
from pyro_vaegap.estimators import importance_sample
from pyro_vaegap.guides.ffg import LocalFFG
from pyro_vaegap.local import optimize_local
from pyro_vaegap.estimators.potential import AnnealingTarget, FastPathWarning
from pyro_vaegap.traces import prior_latents, simulate
from pyro_vaegap.utils import ConfigError

Z = 4.0


def _lg_data(model, n=8, dtype=torch.float64):
    torch.manual_seed(1)
    x, _ = simulate(model, n, torch.zeros(1, model.data_dim, dtype=dtype))
    return x


def test_traced_ais_and_bdmc_are_the_eager_ones_bit_for_bit(recwarn):
    m = make_linear_gaussian()
    x = _lg_data(m)
    runs = {}
    for fast in ("eager", "traced"):
        torch.manual_seed(5)
        # chunks of 3, 3 and 2 points: the second chunk reuses the first one's graph (the data are its input)
        runs[fast] = bdmc(m, 8, x, num_chains=20, num_steps=50, leapfrog_steps=3, data_chunk=3, fast=fast)
    for side in ("lower", "upper"):
        assert torch.equal(getattr(runs["eager"], side).log_weights, getattr(runs["traced"], side).log_weights)
    assert not [w for w in recwarn if issubclass(w.category, FastPathWarning)]


class Branchy(torch.nn.Module):
    """A linear-Gaussian model whose decoder branches on a latent's value in Python: not one graph."""

    latent_dim, data_dim = 2, 3

    def __init__(self, stateful=False):
        super().__init__()
        self.W = torch.tensor([[1.0, 0.5], [0.0, 1.0], [1.0, -1.0]], dtype=torch.float64)
        self.stateful, self.calls = stateful, 0

    def forward(self, x, idx=None, num_data=None):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", dist.Normal(torch.zeros(2, dtype=x.dtype), 1.0).to_event(1))
            loc = z @ self.W.T
            if self.stateful:  # hidden Python state: traceable, but the graph keeps the first call's value
                self.calls += 1
                loc = loc * (1.0 + 0.1 * (self.calls % 3))
            elif float(z.detach().mean()) > 0:  # value-dependent control flow
                loc = 2 * loc
            pyro.sample("x", dist.Normal(loc, 1.0).to_event(1), obs=x)


@pytest.mark.parametrize("stateful, why", [(False, "cannot be traced"), (True, "disagrees with it at a fresh point")])
def test_a_model_the_trace_cannot_represent_falls_back_to_eager(stateful, why):
    x = torch.randn(3, 3, dtype=torch.float64)
    out = {}
    for fast in ("eager", "traced"):
        model = Branchy(stateful)
        torch.manual_seed(2)
        if fast == "traced":
            with pytest.warns(FastPathWarning, match=why):
                out[fast] = ais(model, x, num_chains=5, num_steps=10, leapfrog_steps=2, step_size=0.1, fast=fast)
        else:
            out[fast] = ais(model, x, num_chains=5, num_steps=10, leapfrog_steps=2, step_size=0.1, fast=fast)
    if not stateful:  # the fallback is the eager computation (a stateful model's calls differ in number)
        assert torch.equal(out["eager"].log_weights, out["traced"].log_weights)


def test_bad_fast_options_are_refused():
    m = make_linear_gaussian()
    x = _lg_data(m)
    with pytest.raises(ConfigError, match="fast='jit'"):
        ais(m, x, num_steps=5, fast="jit")
    with pytest.raises(ConfigError, match="gradient_dtype='int8'"):
        ais(m, x, num_steps=5, gradient_dtype="int8")
    with pytest.raises(ConfigError, match="fast='fastest'"):
        optimize_local(m, LocalFFG(m, 8).double(), x, max_steps=1, fast="fastest")


def d10_float32():
    return random_linear_gaussian(20, 10, scale=0.3, psi=0.5, seed=0).float()


def test_bf16_gradients_differ_but_ais_stays_unbiased_in_dimension_10():
    r"""The setting of ``test_ais_is_unbiased_for_p_in_dimension_10`` in float32 with bf16 leapfrog gradients
    (traced): over 5 repeated runs × 20 chains × 8 datapoints the mean of w / p(x) is 1 within 4 standard
    errors. The bf16 gradients differ from the fp32 ones (by about 1e-3 relative here), so the test
    exercises a trajectory that is not the fp32 one; the MH test and the weights are fp32."""
    m = d10_float32()
    torch.manual_seed(1)
    x, _ = simulate(m, 8, torch.zeros(1, 20))
    with torch.no_grad():
        lat = prior_latents(m, x, 20)
    grads = {}
    for gd in (None, torch.bfloat16):
        t = AnnealingTarget(m, x, lat, fast="traced", gradient_dtype=gd)
        grads[gd] = t.gradients(t.pack(lat))[1]
    rel = ((grads[None] - grads[torch.bfloat16]).abs().max() / grads[None].abs().max()).item()
    assert 1e-4 < rel < 0.05, rel
    exact = m.exact_log_marginal(x)
    torch.manual_seed(2)
    kw = dict(num_steps=200, leapfrog_steps=5, gradient_dtype="bfloat16")
    eps = tune_step_sizes(m, x, pilot_chains=10, **kw)
    ratios = torch.cat([(ais(m, x, num_chains=20, step_size=eps, **kw).log_weights.double() - exact).exp()
                        for _ in range(5)])
    mean, se = ratios.mean(), ratios.std() / math.sqrt(ratios.numel())
    assert se < 0.05
    assert abs(mean - 1) < Z * se, (mean, se)


def test_bdmc_with_bf16_gradients_brackets_exact_in_dimension_10():
    """``test_bdmc_brackets_exact_in_dimension_10`` in float32 with bf16 leapfrog gradients."""
    m = d10_float32()
    torch.manual_seed(4)
    res = bdmc(m, 8, torch.zeros(1, 20), num_chains=50, num_steps=300, leapfrog_steps=5, gradient_dtype="bfloat16")
    exact = m.exact_log_marginal(res.x)
    assert torch.all(res.lower.log_px < exact + Z * res.lower.se), (res.lower.log_px - exact, res.lower.se)
    assert torch.all(res.upper.log_px > exact - Z * res.upper.se), (res.upper.log_px - exact, res.upper.se)
    assert res.summary()["crossings_beyond_4se"] == 0, res.summary()


def test_ffg_qstar_gap_with_bf16_search_matches_analytic():
    """``test_ffg_optimum_matches_analytic`` in float32 with the search traced and its gradients in bf16;
    the gap is scored in fp32 (importance sampling, fresh draws)."""
    m = make_linear_gaussian(torch.float32)
    x = _lg_data(m, dtype=torch.float32)
    g = LocalFFG(m, x.shape[0])
    optimize_local(m, g, x, num_samples=100, lr=1e-2, max_steps=4000, check_every=100, patience=5,
                   fast="traced", gradient_dtype="bfloat16")
    post = m.exact_posterior(x)
    prec = m.posterior_precision()
    assert torch.allclose(g.loc.detach(), post.mean, atol=0.03)
    assert torch.allclose(g.scale.detach(), prec.diagonal().rsqrt().expand_as(g.scale), atol=0.03)
    r = importance_sample(m, g, x, 20000, psis=False)
    gap = m.exact_log_marginal(x) - r.elbo
    exact_gap = float(m.exact_ffg_gap())
    assert exact_gap > 0.1
    assert torch.all((gap - exact_gap).abs() < Z * r.elbo_se + 0.01), (gap, exact_gap)


@pytest.mark.slow  # torch.compile: tens of seconds per shape
def test_compiled_ais_and_local_optimization_match_the_exact_answers():
    """``fast="compiled"`` (inductor; skipped where no C++ compiler works): AIS on the linear-Gaussian model
    matches the exact log p(x) (settings of ``test_iwae_and_ais_match_exact_log_marginal``) and the FFG q*
    matches the analytic optimum, in float32."""
    from pyro_vaegap.estimators.potential import compiler_problem

    if compiler_problem():
        pytest.skip(compiler_problem())
    m = make_linear_gaussian(torch.float32)
    x = _lg_data(m, dtype=torch.float32)
    exact = m.exact_log_marginal(x)
    a = ais(m, x, num_chains=100, num_steps=500, leapfrog_steps=5, fast="compiled")
    assert torch.all((a.log_px - exact).abs() < Z * a.se + 1e-3), (a.log_px - exact, a.se)
    g = LocalFFG(m, x.shape[0])
    optimize_local(m, g, x, num_samples=100, lr=1e-2, max_steps=4000, check_every=100, patience=5, fast="compiled")
    assert torch.allclose(g.loc.detach(), m.exact_posterior(x).mean, atol=0.03)
    assert torch.allclose(g.scale.detach(), m.posterior_precision().diagonal().rsqrt().expand_as(g.scale), atol=0.03)


def test_gap_report_runs_its_estimators_traced_as_configured_and_saved_reports_compare_equal(recwarn):
    """``GapConfig(ais_fast=, local_fast=)`` reach the report's AIS and local optimization: traced, every
    per-point value is the eager report's bit for bit (the traced graphs run the eager kernels in order), and
    a report saved before the fields existed reads back with the values it was computed with."""
    from pyro_vaegap.gaps import GapConfig, gap_report
    from pyro_vaegap.guides.ffg import FFGEncoder
    from pyro_vaegap.report.render import GapReport

    m = make_linear_gaussian()
    x = _lg_data(m, n=6)
    enc = FFGEncoder(m, hidden=8).double()
    reports = {}
    for fast in ("eager", "traced"):
        cfg = GapConfig(iwae_samples=200, elbo_samples=200, ais_chains=10, ais_steps=30, ais_leapfrog=3,
                        local_samples=10, local_lr=1e-2, local_max_steps=300, local_check_every=50,
                        local_patience=2, ais_fast=fast, local_fast=fast)
        reports[fast] = gap_report(m, enc, x, cfg, progress=False, log=None)
    assert reports["traced"].config["ais_fast"] == "traced" and reports["traced"].config["local_fast"] == "traced"
    for k, v in reports["eager"].per_point.items():
        assert torch.equal(torch.as_tensor(v), torch.as_tensor(reports["traced"].per_point[k])), k
    assert not [w for w in recwarn if issubclass(w.category, FastPathWarning)]
    old = json.loads(json.dumps(reports["eager"].to_dict()))  # as saved
    for k in ("ais_fast", "local_fast", "gradient_dtype"):
        del old["config"][k]
    # what an experiment's reuse check compares: the saved config against today's GapConfig of the same settings
    today = GapConfig(**old["config"])
    assert GapReport.from_dict(old).config == json.loads(json.dumps(today.to_dict()))


@pytest.mark.parametrize("field, value", [("ais_fast", "jit"), ("local_fast", "fast"), ("gradient_dtype", "fp8")])
def test_gap_config_refuses_unknown_fast_modes(field, value):
    from pyro_vaegap.gaps import GapConfig

    with pytest.raises(ConfigError, match=f"{field}={value!r}"):
        GapConfig(**{field: value})
