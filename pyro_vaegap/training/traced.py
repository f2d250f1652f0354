r"""The traced training loss: Pyro's ELBO recorded once per input shape, then replayed as a TorchScript graph.

A training step spends about a quarter of its time in Pyro's Python (tracing the guide, replaying the model,
the messengers, the ELBO's bookkeeping; ``docs/benchmarks.md``), the same work at every step. As Pyro's own
:class:`~pyro.infer.JitTrace_ELBO` does, :class:`TracedLoss` runs the Pyro loss once under
:func:`torch.jit.trace` with the parameters and buffers of model and guide (and the annealing factor) as the
graph's inputs, and from then on calls the recorded graph — the same tensor operations, the Pyro model and guide
still the only source of the loss. The graph draws its noise with the same operations on the same generator as
the eager loss, so a run draws the same random numbers either way.

A trace is only valid for code whose Python does not depend on tensor values. Tracing reports each place where
a tensor became a Python number or boolean (:class:`torch.jit.TracerWarning`); apart from Pyro's own bookkeeping
that never reaches the loss (:func:`pyro.infer.util.torch_item` of the ELBO's float, the NaN warning of
:func:`pyro.util.warn_if_nan`, the ``torch.as_tensor`` of ``pyro.factor``'s tensor, the comparisons of traced sizes in Pyro's
:func:`~pyro.distributions.util.broadcast_shape`), any such place makes :class:`TracedLoss` fall back to the eager loss for good,
with one warning (:class:`TraceFallbackWarning`) naming the place. So does a trace that fails, and a trace
whose first result disagrees with the eager loss: the first call at every input shape computes both from the
same random state and compares the losses and all gradients (:data:`RTOL`) and the generator's state after.

The graph runs with TorchScript's graph optimizations off (:func:`torch.jit.optimized_execution`): its
operations then run through the eager autograd, so its gradients are the eager ones (the optimizer's
differentiable subgraphs use other derivative formulas and differ in the last bits), and the optimizations
gained nothing measurable on the paper's model (``docs/benchmarks.md``).
"""
from __future__ import annotations

import inspect
import warnings
from pathlib import Path

import pyro
import pyro.distributions
import pyro.distributions.util
import pyro.infer.util
import pyro.util
import torch

#: relative tolerance of the first call's check, on the loss and on every gradient (as a fraction of the
#: largest absolute entry of the eager gradient, plus a floor for gradients that are all but zero)
RTOL = 1e-5


class TraceFallbackWarning(UserWarning):
    """The traced loss could not be used; training goes on with the eager loss (the message says why)."""


def _lines_of(fn) -> tuple[str, range]:
    lines, start = inspect.getsourcelines(fn)
    return str(Path(inspect.getsourcefile(fn)).resolve()), range(start, start + len(lines))


#: Pyro's code that the tracer warns about and that does not make the graph depend on tensor values: the float an
#: ELBO returns beside its differentiable loss, the NaN check that only warns, and ``pyro.factor``'s
#: ``torch.as_tensor`` of its (tensor) log-factor, which the trace records as an ``aten::to`` of it, and
#: Pyro's broadcasting of shapes, whose only tensors are traced sizes (fixed: a graph is traced per input shape)
_HARMLESS = [_lines_of(pyro.infer.util.torch_item), _lines_of(pyro.util.warn_if_nan),
             _lines_of(pyro.distributions.Unit.__init__), _lines_of(pyro.distributions.util.broadcast_shape)]


def _harmless(w: warnings.WarningMessage) -> bool:
    try:
        file = str(Path(w.filename).resolve())
    except OSError:
        return False
    return any(file == f and w.lineno in lines for f, lines in _HARMLESS)


def _get_rng(device: torch.device):
    return torch.cuda.get_rng_state(device) if device.type == "cuda" else torch.get_rng_state()


def _set_rng(device: torch.device, state) -> None:
    if device.type == "cuda":
        torch.cuda.set_rng_state(state, device)
    else:
        torch.set_rng_state(state)


class TracedLoss:
    r"""``loss_fn(x)`` of an :class:`~pyro.infer.elbo.ELBOModule`, computed by a graph traced once per input shape.

    A drop-in for ``loss_fn`` in :func:`~pyro_vaegap.training.steps.training_step`: ``traced(x)`` is the
    minibatch sum of per-datapoint losses with its autograd graph to the parameters of ``modules``, and
    ``traced.elbo``, ``.model``, ``.guide`` are ``loss_fn``'s. The annealing factor is read from ``annealing``
    at every call, as the eager loss reads it.

    :param loss_fn: the eager loss (:func:`~pyro_vaegap.training.steps.make_loss`).
    :param annealing: its :class:`~pyro_vaegap.objectives.elbos.Annealing`.
    :param modules: the modules whose parameters and buffers the loss reads (model and guide); any other
        tensor the loss reads is recorded as a constant.
    """

    def __init__(self, loss_fn, annealing, modules):
        self.loss_fn, self.annealing = loss_fn, annealing
        self.elbo, self.model, self.guide = loss_fn.elbo, loss_fn.model, loss_fn.guide
        seen, tensors = set(), []
        for m in modules:
            for t in (*m.parameters(), *m.buffers()):
                if id(t) not in seen:
                    seen.add(id(t))
                    tensors.append(t)
        self.tensors = tensors
        self.params = [t for t in tensors if t.requires_grad]
        self._graphs: dict = {}
        #: why the eager loss is used (``None`` while the traced one is)
        self.fallback: str | None = None

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.fallback is not None:
            return self.loss_fn(x)
        key = (tuple(x.shape), x.dtype, x.device, torch.is_grad_enabled())
        graph = self._graphs.get(key)
        if graph is None:
            return self._first_call(key, x)
        with torch.jit.optimized_execution(False):
            return graph(x, self._factor(x), *self.tensors)

    def _factor(self, x):
        return torch.tensor(self.annealing.factor, dtype=x.dtype, device=x.device)

    def _give_up(self, reason: str, x: torch.Tensor) -> torch.Tensor:
        self.fallback = reason
        self._graphs.clear()
        warnings.warn(f"training with the eager loss, not the traced one: {reason}", TraceFallbackWarning,
                      stacklevel=3)
        return self.loss_fn(x)

    def _trace(self, x: torch.Tensor):
        annealing, loss_fn = self.annealing, self.loss_fn

        def loss(x, factor, *tensors):  # the tensors are the graph's inputs: the same objects the loss reads
            with annealing.tensor_factor(factor):
                return loss_fn(x)

        with warnings.catch_warnings(record=True) as caught, pyro.validation_enabled(False):
            warnings.simplefilter("always", torch.jit.TracerWarning)
            warnings.filterwarnings("ignore", message=r".*torch\.jit\.trace.* is deprecated")
            graph = torch.jit.trace(loss, (x, self._factor(x), *self.tensors), check_trace=False)
        for w in caught:
            if issubclass(w.category, torch.jit.TracerWarning):
                if not _harmless(w):
                    first = str(w.message).split(". ")[0]
                    raise _ValueDependent(f"the loss's Python depends on tensor values at {w.filename}:{w.lineno} "
                                          f"({first})")
            else:
                warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        return graph

    def _first_call(self, key, x: torch.Tensor) -> torch.Tensor:
        """Trace at this input shape, then check the graph against the eager loss from the same random state."""
        state = _get_rng(x.device)
        try:
            graph = self._trace(x)
        except _ValueDependent as e:
            _set_rng(x.device, state)
            return self._give_up(str(e), x)
        except Exception as e:  # noqa: BLE001 - any failure to trace means: run eagerly, and say why
            _set_rng(x.device, state)
            return self._give_up(f"tracing failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})",
                                 x)
        _set_rng(x.device, state)
        if not torch.is_grad_enabled():
            with torch.no_grad():
                eager = self.loss_fn(x)
                after = _get_rng(x.device)
                _set_rng(x.device, state)
                with torch.jit.optimized_execution(False):
                    traced = graph(x, self._factor(x), *self.tensors)
            problem = self._compare(eager, traced, [], [], after, x.device)
        else:
            eager = self.loss_fn(x)
            eager_grads = torch.autograd.grad(eager, self.params, allow_unused=True)
            after = _get_rng(x.device)
            _set_rng(x.device, state)
            with torch.jit.optimized_execution(False):
                traced = graph(x, self._factor(x), *self.tensors)
            traced_grads = torch.autograd.grad(traced, self.params, allow_unused=True, retain_graph=True)
            problem = self._compare(eager, traced, eager_grads, traced_grads, after, x.device)
        if problem is not None:  # the step goes on with the eager loss, from the same random state
            _set_rng(x.device, state)
            return self._give_up(problem, x)
        self._graphs[key] = graph
        return traced

    def _compare(self, eager, traced, eager_grads, traced_grads, after, device) -> str | None:
        if not torch.equal(_get_rng(device), after):
            return "the traced loss drew other random numbers than the eager loss"
        e, t = float(eager.detach()), float(traced.detach())
        if not abs(e - t) <= RTOL * max(1.0, abs(e)):
            return f"the traced loss {t!r} differs from the eager loss {e!r}"
        for i, (a, b) in enumerate(zip(eager_grads, traced_grads)):
            if (a is None) != (b is None):
                return f"parameter {i} has a gradient in one of the eager and the traced loss only"
            if a is not None and not float((a - b).abs().max()) <= RTOL * max(1e-6, float(a.abs().max())):
                return f"the gradient of parameter {i} differs between the traced and the eager loss"
        return None


class _ValueDependent(Exception):
    pass


def traced_loss(loss_fn, annealing, modules):
    """``loss_fn`` as a :class:`TracedLoss` where tracing can apply, else ``loss_fn`` itself: an objective that
    trains a critic or logs Python values per minibatch (an InfoVAE) runs eagerly, since a trace would replay
    neither."""
    elbo = loss_fn.elbo
    if hasattr(elbo, "critic_step") or hasattr(elbo, "last_log"):
        return loss_fn
    return TracedLoss(loss_fn, annealing, modules)
