"""The batched local optimizer is N independent optimizations, evaluated on the running rows only."""
import pytest
import torch

from pyro_vaegap.guides.ffg import LocalFFG
from pyro_vaegap.local import optimize_local
from pyro_vaegap.models import BernoulliVAE
from pyro_vaegap.estimators.potential import LocalStep
from pyro_vaegap.utils import ConfigError


class FullFFG(LocalFFG):
    """The FFG without the row-subset opt-in: the full evaluation (every row, every step)."""

    row_subsets = False


def _setup(n=5, dtype=torch.float32):
    torch.manual_seed(0)
    model = BernoulliVAE(20, 3, 16).to(dtype)
    x = (torch.rand(n, 20) < 0.4).to(dtype)
    return model, x


def _run(model, x, active=None, steps=300, seed=7, cls=LocalFFG, **kwargs):
    torch.manual_seed(seed)
    g = cls(model, x.shape[0]).to(x.dtype)
    res = optimize_local(model, g, x, num_samples=10, lr=1e-2, max_steps=steps, check_every=50, patience=2,
                         active=active, **kwargs)
    return g, res


def test_full_evaluation_batched_equals_per_datapoint_loop():
    """Full evaluation (a guide that does not opt in): datapoint n's trajectory in the batch equals
    the run in which n alone is optimized, bit for bit.

    With the same seed both runs draw identical noise and evaluate tensors of identical shapes, so
    equality (not closeness) is expected: any coupling between datapoints (a shared normalization, a
    shared step size, the convergence of another datapoint) would break it.
    """
    model, x = _setup()
    batched, bres = _run(model, x, cls=FullFFG)
    for n in range(x.shape[0]):
        only = torch.zeros(x.shape[0], dtype=torch.bool)
        only[n] = True
        single, sres = _run(model, x, active=only, cls=FullFFG)
        assert torch.equal(single.loc[n], batched.loc[n])
        assert torch.equal(single.scale[n], batched.scale[n])
        assert sres.steps[n] == bres.steps[n]
        others = ~only
        # frozen rows never move from their initial values
        assert torch.all(single.loc[others] == 0) and torch.all(single.scale[others] == 1)


# Row subsets change the shapes a datapoint is evaluated in (B rows instead of N), and torch's CPU
# kernels compute the tail of a vectorized loop with scalar exp/log/pow that differ from the vector
# ones in the last bit; so across *different* sets of running rows agreement is checked in float64
# to 1e-10, nine orders below what any coupling does (sharing noise between datapoints, one Adam
# step count, or moving stopped rows each change the parameters by more than 1e-3 here).
TOL = dict(rtol=0, atol=1e-10)


@pytest.mark.parametrize("fast", ["eager", "traced"])
def test_row_subsets_batched_equals_per_datapoint_loop(fast):
    """Only the running rows are evaluated, and datapoint n's trajectory is that of n alone (with Pyro's
    handlers at every step, and with the traced step function of :mod:`pyro_vaegap.estimators.potential`)."""
    model, x = _setup(dtype=torch.float64)
    batched, bres = _run(model, x, seed=7, fast=fast)
    assert bres.steps.unique().numel() > 1  # the others stop at other times
    for n in (0, 2, 4):
        only = torch.zeros(x.shape[0], dtype=torch.bool)
        only[n] = True
        single, sres = _run(model, x, active=only, seed=7, fast=fast)
        assert sres.steps[n] == bres.steps[n]
        assert torch.allclose(single.loc[n], batched.loc[n], **TOL)
        assert torch.allclose(single.scale[n], batched.scale[n], **TOL)
        assert single.loc[n].abs().max() > 1e-3  # it did move
        assert torch.all(single.loc[~only] == 0) and torch.all(single.scale[~only] == 1)


def test_a_datapoints_result_does_not_depend_on_how_many_run_beside_it():
    """x_0 optimized with 0, 4 or 49 other datapoints (other data, stopping at other times) ends at
    the same place after the same number of steps."""
    model, x = _setup(50, dtype=torch.float64)
    out = {}
    for n in (1, 5, 50):
        g, res = _run(model, x[:n], seed=7, steps=300)
        out[n] = (g.loc[0].detach().clone(), g.scale[0].detach().clone(), int(res.steps[0]), res.steps)
    assert (out[50][3][1:] < out[50][2]).any() and (out[50][3][1:] > out[50][2]).any()  # others stopped earlier/later
    for n in (5, 50):
        assert out[n][2] == out[1][2]
        assert torch.allclose(out[n][0], out[1][0], **TOL) and torch.allclose(out[n][1], out[1][1], **TOL)


@pytest.mark.parametrize("fast", ["eager", "traced"])
def test_only_running_rows_are_evaluated(monkeypatch, fast):
    model, x = _setup()
    sizes = []
    if fast == "eager":  # Pyro's handlers at every step: the guide's elbo is called with the running rows
        original = LocalFFG.elbo

        def spy(self, model, x, num_samples, idx=None):
            sizes.append(x.shape[0])
            return original(self, model, x, num_samples, idx)

        monkeypatch.setattr(LocalFFG, "elbo", spy)
    else:  # the traced step is called with the running rows (the guide itself only when a graph is traced)
        original = LocalStep.__call__

        def spy(self, x, rows, seed, step):
            sizes.append(rows.shape[0])
            return original(self, x, rows, seed, step)

        monkeypatch.setattr(LocalStep, "__call__", spy)
    _, res = _run(model, x, steps=5000, fast=fast)
    assert sizes[0] == 5 and sizes[-1] == 1
    # the number of rows evaluated at step t is the number of datapoints that had not stopped before t
    expected = [int((res.steps >= t).sum()) for t in range(1, len(sizes) + 1)]
    assert sizes == expected


@pytest.mark.parametrize("cls", [LocalFFG, FullFFG])
def test_resume_after_interrupt_equals_uninterrupted(cls):
    model, x = _setup()
    ref, rres = _run(model, x, steps=400, cls=cls)
    saved = []

    def save_then_stop(state):
        saved.append(state)
        if len(saved) == 4:  # interrupted after the 4th check (step 200), some datapoints already stopped
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _run(model, x, steps=400, cls=cls, save_state=save_then_stop, save_every=0.0)
    state = saved[-1]
    assert state["step"] == 200 and not state["running"].all()
    torch.manual_seed(123)  # the resumed run must not depend on the global generator's state
    fresh = cls(model, x.shape[0])
    res = optimize_local(model, fresh, x, num_samples=10, lr=1e-2, max_steps=400, check_every=50, patience=2,
                         state=state)
    assert torch.equal(fresh.loc, ref.loc) and torch.equal(fresh.scale, ref.scale)
    assert torch.equal(res.steps, rres.steps) and torch.equal(res.best_avg, rres.best_avg)


def test_a_state_of_the_other_evaluation_is_refused():
    """A state saved by the full evaluation (e.g. before the row-subset change) cannot continue a row-subset
    run, and the reverse: a clear error instead of a KeyError deep inside."""
    model, x = _setup()
    saved = []
    _run(model, x, steps=100, cls=FullFFG, save_state=saved.append, save_every=0.0)
    with pytest.raises(ConfigError, match="made by the full evaluation, but LocalFFG now uses row subsets"):
        optimize_local(model, LocalFFG(model, 5), x, num_samples=10, max_steps=200, check_every=50, state=saved[-1])


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


@pytest.mark.parametrize("family", ["iaf", "householder"])
def test_flows_on_the_ffg_base_are_evaluated_by_rows_independently(family):
    """Families whose draw is a Normal pushed through a TransformedDistribution inherit the FFG's opt-in:
    datapoint n alone follows its batched trajectory in every parameter (float64, 40 steps)."""
    from pyro_vaegap.registry import get_family

    model, x = _setup(3, dtype=torch.float64)

    def run(active):
        torch.manual_seed(3)
        g = get_family(family).make_local(model, 3).double()
        assert g.row_subsets
        optimize_local(model, g, x, num_samples=5, lr=1e-2, max_steps=40, check_every=100, patience=50,
                       active=active, seed=11)
        return {k: p.detach().clone() for k, p in g.local_parameters().items()}

    batched = run(None)
    only = torch.tensor([False, True, False])
    alone = run(only)
    for k in batched:
        assert torch.allclose(alone[k][1], batched[k][1], **TOL), k
    assert any(not torch.equal(alone[k][0], batched[k][0]) for k in batched)  # row 0 ran only in the batch


def test_padded_rows_of_the_compiled_step_do_not_change_the_running_ones(monkeypatch):
    """``fast="compiled"`` evaluates the running rows padded with stopped ones up to ``ceil(N / 2^k)`` rows
    (few shapes to compile). Padding rows are computed and ignored: every datapoint's trajectory equals the
    eager one (float64, to the 1e-10 of the row-subset checks above). The compiler itself is replaced by the
    traced graph here (compiling takes tens of seconds; ``tests/test_fast_estimators.py`` compiles, marked slow)."""
    import pyro_vaegap.estimators.potential as potential

    monkeypatch.setattr(potential, "compile_graph", lambda gm, mode: gm)
    sizes = []
    original = LocalStep.__call__

    def spy(self, x, rows, seed, step):
        sizes.append((rows.shape[0], self.bucket(rows.shape[0])))
        return original(self, x, rows, seed, step)

    monkeypatch.setattr(LocalStep, "__call__", spy)
    model, x = _setup(n=7, dtype=torch.float64)
    eager, eres = _run(model, x, seed=7)
    padded, pres = _run(model, x, seed=7, fast="compiled")
    assert {b for _, b in sizes} <= {7, 4, 2, 1} and any(b > r for r, b in sizes)  # padding happened
    assert torch.equal(eres.steps, pres.steps)
    assert torch.allclose(padded.loc, eager.loc, **TOL) and torch.allclose(padded.scale, eager.scale, **TOL)
