r"""Pure, traced step functions of a user's Pyro model and guide: Pyro's per-step tracing out of the hot loops.

AIS and the local optimization for :math:`q^*` evaluate the same log-density thousands of times at new
points. Run through Pyro's effect handlers at every step, each evaluation pays for a trace, the
handlers' bookkeeping and distribution validation on top of the tensor work. Here the model (and, for
the local optimization, the per-datum guide) is run through Pyro **once**, under
:func:`torch.fx.experimental.proxy_tensor.make_fx`, which records every tensor operation of the
log-density *and of its gradient* as one graph of ATen operations: a pure function

.. math::

    z \mapsto \big(\log p(z),\ \log p(x\mid z),\ \nabla_z \log p(z),\ \nabla_z \log p(x\mid z)\big)

of the latents (AIS), or :math:`(\lambda, \epsilon) \mapsto (\hat{\mathcal L}_n, \nabla_\lambda)` of the
guide's parameters and its reparameterization noise (local optimization). The model and guide stay the
source: nothing is written by hand, and a user's model works unchanged.

Modes (``fast=``):

* ``"traced"`` (default): the graph runs op by op — the same kernels in the same order as the eager
  evaluation, so results are bit-for-bit those of ``"eager"`` (checked by the tests), without Pyro's
  per-step overhead;
* ``"compiled"``: the graph compiled by ``torch.compile`` (inductor; fuses the elementwise work; needs a
  working C++ compiler on CPU, and compiles once per shape, tens of seconds for the paper's decoder);
  where compilation fails the traced graph is used, with a one-line warning saying why;
* ``"eager"``: Pyro's handlers at every step, as before.

**Every graph is checked before use.** It is evaluated beside the eager Pyro computation at two fresh
points (seeded by a private generator, so the estimators' random streams are untouched): the tracing
point moved by Gaussian noise, and its negation. If any value or gradient disagrees beyond a relative
tolerance of ``100 × machine epsilon`` (``0.02`` for bf16 gradients), or if the function cannot be traced
at all (value-dependent Python control flow in the model, which ``make_fx`` refuses), the eager
computation is used for that estimator call, with a one-line :class:`FastPathWarning` saying why. A graph
is specific to its shapes (a new one is traced and checked for each new shape).

Reduced-precision gradients (``gradient_dtype=torch.bfloat16``)
---------------------------------------------------------------
The gradient may be computed under ``torch.autocast`` (matrix products in bf16) while the values that
decide what an estimator means stay in the model's precision:

* **HMC / AIS**: the leapfrog trajectory uses the bf16 gradient *everywhere* (the first half step too,
  so the integrator is one deterministic, reversible, volume-preserving map); the Metropolis–Hastings
  test and the AIS weight increments use the full-precision :math:`\log p(z)` and
  :math:`\log p(x\mid z)`. Each kernel still leaves its full-precision target exactly invariant, so AIS
  stays unbiased and BDMC's bounds stay bounds.
* **local optimization**: the search follows the bf16 gradient (and its stopping rule reads the
  bf16-evaluated ELBO); the reported :math:`\mathcal L[q^*]` is scored afterwards by the estimators in
  full precision with fresh draws, so it stays a valid bound.

Autocast on CPU casts float32 (not float64) operands; on a float64 model the option changes nothing.
On CPUs without bf16 units (AVX2 only, like this project's machine) bf16 products are emulated and
*slower* than fp32 (``docs/benchmarks.md``): the option is for machines with AMX / avx512_bf16 or GPUs.
"""
from __future__ import annotations

import shutil
import warnings
from contextlib import contextmanager

import pyro
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from ..contract.model import quiet_frozen_modules
from .keyed_noise import KeyedNoise, _unwrap, keyed_normal, noise_layout, reparameterize
from .traces import log_joint_parts
from ..utils import ConfigError, check_choice

FAST_MODES = ("traced", "compiled", "eager")
#: relative tolerance of the check, in machine epsilons of the model's dtype
CHECK_ULPS = 100.0
BF16_TOLERANCE = 0.02
_CHECK_SEED = 20_240_613  #: the private generator of the check points (the estimators' streams are untouched)


class FastPathWarning(UserWarning):
    """A traced or compiled step function was not used (or not compiled); the message says why."""


class NotTraceable(Exception):
    pass


def check_fast(fast: str) -> str:
    check_choice("fast", fast, FAST_MODES)
    return fast


def check_gradient_dtype(gradient_dtype):
    """``None`` (the model's precision), or ``torch.bfloat16`` / ``torch.float16`` (autocast); strings allowed."""
    if gradient_dtype is None:
        return None
    names = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
             "float32": None, "fp32": None}
    if isinstance(gradient_dtype, str) and gradient_dtype in names:
        return names[gradient_dtype]
    if gradient_dtype in (torch.bfloat16, torch.float16):
        return gradient_dtype
    if gradient_dtype == torch.float32:
        return None
    raise ConfigError(f"gradient_dtype={gradient_dtype!r} is not allowed: expected None, 'float32', 'bfloat16' "
                      "or 'float16'")


def _warn(msg: str):
    warnings.warn(msg, FastPathWarning, stacklevel=3)


@contextmanager
def _pyro_plumbing_off():
    """Distribution validation off (its checks are value-dependent control flow, and pure overhead in a step
    that was validated when traced); ``pyro.module``'s warnings for frozen parameters off."""
    with pyro.validation_enabled(False), quiet_frozen_modules():
        yield


def autocast_gradients(device, dtype):
    """``torch.autocast`` to ``dtype`` on ``device``'s type, or nothing when ``dtype`` is None."""
    return torch.autocast(device.type, dtype=dtype) if dtype is not None else _nullcontext()


_autocast = autocast_gradients


@contextmanager
def _nullcontext():
    yield


def _grads(out, inputs):
    """Gradients of ``out.sum()`` w.r.t. each input (zeros where ``out`` does not depend on it)."""
    if not out.requires_grad:
        return [torch.zeros_like(i) for i in inputs]
    gs = torch.autograd.grad(out.sum(), inputs, retain_graph=True, allow_unused=True)
    return [torch.zeros_like(i) if g is None else g for i, g in zip(inputs, gs)]


def trace_graph(fn, *example):
    """``fn`` recorded as a graph of ATen operations (:func:`make_fx`, real tensors); raises
    :class:`NotTraceable` with the reason when the computation depends on tensor values in Python."""
    from torch.fx.experimental.proxy_tensor import make_fx

    def pure(*args):  # a plain function of exactly the example's arguments (make_fx counts a method's self)
        return fn(*args)

    try:
        with _pyro_plumbing_off(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return make_fx(pure)(*example)
    except Exception as e:  # noqa: BLE001 - any failure to trace means: use eager
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise NotTraceable(f"{type(e).__name__}: {first[:200]}") from e


_COMPILER = {}


def compiler_problem() -> str | None:
    """Why ``torch.compile`` cannot be used on this machine (None when it can): checked once per process."""
    if "problem" not in _COMPILER:
        problem = None
        if shutil.which("gcc") is None and shutil.which("g++") is None and shutil.which("clang") is None:
            problem = "no C++ compiler (gcc, g++ or clang) on PATH"
        _COMPILER["problem"] = problem
    return _COMPILER["problem"]


def compile_graph(gm, mode: str):
    """The graph as run in ``mode``: itself (``"traced"``) or ``torch.compile``\\ d (``"compiled"``), falling
    back to itself with a one-line warning when compilation is impossible."""
    if mode != "compiled":
        return gm
    problem = compiler_problem()
    if problem is not None:
        _warn(f"fast='compiled' falls back to the traced graph: {problem}")
        return gm
    return torch.compile(gm, dynamic=False, fullgraph=True)


def _close(fast, eager, tol) -> str | None:
    """None when every tensor of ``fast`` matches ``eager`` (relative to ``1 + max|eager|`` per tensor)."""
    for i, (a, b) in enumerate(zip(fast, eager)):
        if a.shape != b.shape:
            return f"output {i} has shape {tuple(a.shape)} instead of {tuple(b.shape)}"
        fin = torch.isfinite(b)
        if not torch.equal(fin, torch.isfinite(a)) or not torch.equal(a[~fin].nan_to_num(), b[~fin].nan_to_num()):
            return f"output {i} differs in its non-finite entries"
        if fin.any():
            scale = 1.0 + float(b[fin].abs().max())
            err = float((a[fin] - b[fin]).abs().max())
            if not err <= tol * scale:
                return f"output {i} differs by {err:.3g} (tolerance {tol * scale:.3g})"
    return None


def tolerance(dtype, gradient_dtype=None) -> float:
    t = CHECK_ULPS * torch.finfo(dtype).eps
    return max(t, BF16_TOLERANCE) if gradient_dtype is not None else t


def _checked(name: str, mode: str, eager, build, points, tol):
    """The function to step with: the graph ``build()`` returns (compiled when ``mode == "compiled"``) if it
    matches ``eager`` at every one of ``points`` within ``tol``; otherwise ``eager``, with a one-line
    :class:`FastPathWarning` saying why. A compiled graph that fails or disagrees falls back to the traced one."""
    try:
        gm = build()
    except NotTraceable as e:
        _warn(f"{name}: eager Pyro evaluation used, the step function cannot be traced ({e})")
        return eager
    chosen = eager
    candidates = [("traced", gm)] + ([("compiled", None)] if mode == "compiled" else [])
    for kind, fn in candidates:
        if kind == "compiled":
            fn = compile_graph(gm, "compiled")
            if fn is gm:  # no compiler: compile_graph has warned
                break
        try:
            why = None
            for p in points:
                with torch.no_grad():
                    why = _close(_as_list(fn(*p)), _as_list(eager(*p)), tol)
                if why:
                    break
        except Exception as e:  # noqa: BLE001 - a compiler failure is a reason to fall back, not to stop
            why = f"{type(e).__name__}: {str(e).strip().splitlines()[0][:200] if str(e).strip() else ''}"
        if why:
            if kind == "traced":
                _warn(f"{name}: eager Pyro evaluation used, the traced step disagrees with it at a fresh "
                      f"point ({why}); the model's computation depends on its values")
                return eager
            _warn(f"{name}: fast='compiled' falls back to the traced graph ({why})")
            break
        chosen = fn
    return chosen


def _as_list(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


# ----- AIS / HMC: the model's log joint as a pure function of the latents ----------------------------------

class AnnealingTarget:
    r"""``log p(z)``, ``log p(x|z)`` and their gradients for flattened latents ``(K, N, d)`` of one data chunk.

    ``target(z)`` returns ``(log p(z), log p(x|z), ∇ log p(z), ∇ log p(x|z))``, all detached: the values in
    the model's precision, the gradients in ``gradient_dtype`` (the model's when None).
    ``target.gradients(z)`` returns the two gradients only (a leapfrog step inside a trajectory needs no
    values; with bf16 gradients it then costs no full-precision pass). ``cache``: a dict shared by the
    targets of one estimator call over data chunks of one frozen model.
    """

    def __init__(self, model, x, template: dict[str, torch.Tensor], fast: str = "traced", gradient_dtype=None,
                 cache: dict | None = None):
        import math

        self.model, self.x = model, x
        self.names = list(template)
        self.shapes = [template[n].shape[2:] for n in self.names]
        self.sizes = [int(math.prod(s)) for s in self.shapes]
        self.mode = check_fast(fast)
        self.gradient_dtype = check_gradient_dtype(gradient_dtype)
        # z shape -> (values_and_grads, grads_only); the data are a graph input, so the chunks of one call
        # (one frozen model) share a ``cache`` and same-shaped chunks trace (and compile) once
        self._fns = {} if cache is None else cache

    def pack(self, latents):
        return torch.cat([latents[n].reshape(*latents[n].shape[:2], -1) for n in self.names], -1)

    def unpack(self, flat):
        parts = flat.split(self.sizes, -1)
        return {n: p.reshape(*flat.shape[:2], *s) for n, p, s in zip(self.names, parts, self.shapes)}

    # eager references: Pyro's handlers, as every estimator did before
    def _eager_values(self, z, x):
        with torch.no_grad(), quiet_frozen_modules():
            lp, ll = log_joint_parts(self.model, x, self.unpack(z))
        return lp, ll

    def _eager_grads(self, z, x):
        with torch.enable_grad(), _autocast(z.device, self.gradient_dtype), quiet_frozen_modules():
            z = z.detach().requires_grad_(True)
            lp, ll = log_joint_parts(self.model, x, self.unpack(z))
            gp, gl = _grads(lp, [z])[0], _grads(ll, [z])[0]
        return gp.to(z.dtype), gl.to(z.dtype)

    def _eager_all(self, z, x):
        if self.gradient_dtype is not None:
            return (*self._eager_values(z, x), *self._eager_grads(z, x))
        with torch.enable_grad(), quiet_frozen_modules():
            z = z.detach().requires_grad_(True)
            lp, ll = log_joint_parts(self.model, x, self.unpack(z))
            gl = _grads(ll, [z])[0]
            gp = _grads(lp, [z])[0]
        return lp.detach(), ll.detach(), gp, gl

    def _functions(self, z):
        key = tuple(z.shape)
        if key not in self._fns:
            if self.mode == "eager":
                self._fns[key] = (self._eager_all, self._eager_grads)
            else:
                gen = torch.Generator(device=z.device).manual_seed(_CHECK_SEED)
                fresh = z + 0.5 * torch.randn(z.shape, generator=gen, device=z.device, dtype=z.dtype)
                points = [(fresh, self.x), (-z, self.x)]
                tol = tolerance(z.dtype, self.gradient_dtype)
                name = "AIS/HMC log density"
                full = _checked(name, self.mode, self._eager_all,
                                lambda: trace_graph(self._eager_all, z, self.x), points, tol)
                if self.gradient_dtype is None:
                    grads = (lambda zz, xx: full(zz, xx)[2:])
                else:
                    grads = _checked(name + " (reduced-precision gradient)", self.mode, self._eager_grads,
                                     lambda: trace_graph(self._eager_grads, z, self.x), points, tol)
                self._fns[key] = (full, grads)
        return self._fns[key]

    def __call__(self, flat):
        """``(log p(z), log p(x|z), grad log p(z), grad log p(x|z))``, all detached."""
        with torch.no_grad():
            return tuple(self._functions(flat)[0](flat.detach(), self.x))

    def gradients(self, flat):
        """``(grad log p(z), grad log p(x|z))``, detached, in the gradient precision."""
        with torch.no_grad():
            return tuple(self._functions(flat)[1](flat.detach(), self.x))


# ----- local optimization: the per-datum ELBO and its gradient as a pure function of parameters and noise ----

class _Noise(Messenger):
    """Draw every latent reparameterized Normal site as :class:`~pyro_vaegap.estimators.keyed_noise.KeyedNoise`
    does (:func:`~pyro_vaegap.estimators.keyed_noise.reparameterize`), with ``eps = given[name]`` (e.g. a graph
    input); with ``given=None`` nothing is drawn and each site's noise layout
    (:func:`~pyro_vaegap.estimators.keyed_noise.noise_layout`, as KeyedNoise keys it) is recorded in ``specs``.
    Use it outside every plate, like KeyedNoise."""

    def __init__(self, plate, given=None):
        super().__init__()
        self.plate, self.given, self.specs = plate, given, {}

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["value"] is not None or site_is_subsample(msg):
            return
        normal, transforms = _unwrap(msg["fn"])
        if normal is None:
            return  # a Delta (deterministic); anything else is refused by KeyedNoise on the eager path
        if self.given is None:
            layout = noise_layout(msg, normal, self.plate)
            if layout is not None:
                self.specs[msg["name"]] = layout
            return
        msg["value"] = reparameterize(normal, transforms, self.given[msg["name"]])


class _Elbo(torch.nn.Module):
    """``guide.elbo`` as a module call, so :func:`torch.func.functional_call` can substitute the parameters."""

    def __init__(self, guide, model, num_samples):
        super().__init__()
        self.guide = guide
        self.model_fn, self.S = model, num_samples

    def forward(self, x, rows):
        return self.guide.elbo(self.model_fn, x, self.S, idx=rows)


class LocalStep:
    r"""One step of the row-subset local optimization: ``(per-row ELBO (B,), gradients of −Σ ELBO)``.

    ``step(x_rows, rows, seed, step)`` gives what ``guide.elbo(model, x[rows], S, idx=rows)`` under
    :class:`~pyro_vaegap.keyed_noise.KeyedNoise` ``(seed, rows, step)`` and
    ``autograd.grad(-elbo.sum(), params)`` give, from a graph traced (and checked) once per number ``B`` of
    running rows; the keyed noise is computed outside the graph, by the same function, and fed in.
    """

    def __init__(self, model, guide, num_samples: int, params, plate: str, fast: str = "traced",
                 gradient_dtype=None):
        self.model, self.guide, self.S, self.plate = model, guide, num_samples, plate
        self.mode = check_fast(fast)
        self.gradient_dtype = check_gradient_dtype(gradient_dtype)
        named = dict(guide.named_parameters())
        self.names = [next(n for n, q in named.items() if q is p) for p in params]
        self.params = params
        self.module = _Elbo(guide, model, num_samples)
        self._specs, self._fns = {}, {}

    def _eager(self, params, eps, x, rows):
        """The reference (and fallback): Pyro's handlers, the guide's parameters replaced by ``params``."""
        with torch.enable_grad(), _autocast(x.device, self.gradient_dtype), quiet_frozen_modules():
            ps = {"guide." + n: p.detach().requires_grad_(True) for n, p in zip(self.names, params)}
            with _Noise(self.plate, given=eps):
                elbo = torch.func.functional_call(self.module, ps, (x, rows))
            grads = _grads(-elbo, list(ps.values()))
        return [elbo.detach().to(x.dtype), *grads]

    def noise(self, x, rows, seed, step):
        """This step's keyed noise, one tensor per site; the layout is read from one eager pass per ``B``."""
        B = rows.shape[0]
        if B not in self._specs:
            rec = _Noise(self.plate)
            # under KeyedNoise, which refuses a draw it cannot key, as the eager path does
            with torch.no_grad(), quiet_frozen_modules(), KeyedNoise(seed, rows, step, plate=self.plate), rec:
                self.guide.elbo(self.model, x, self.S, idx=rows)
            self._specs[B] = rec.specs
        return {name: keyed_normal(seed, rows, step, crc, shape, dim, dtype)
                for name, (crc, shape, dim, dtype) in self._specs[B].items()}

    def bucket(self, B: int) -> int:
        r"""Rows evaluated when ``B`` run: ``B`` itself, or with ``fast="compiled"`` the smallest of
        :math:`\lceil N / 2^k \rceil` that holds them (at most ``log2 N + 1`` shapes to compile, at most
        twice the running rows' work)."""
        if self.mode != "compiled":
            return B
        size = self.guide.num_data
        while size > 1 and -(-size // 2) >= B:
            size = -(-size // 2)
        return size

    def __call__(self, x, rows, seed, step):
        """``x``: all ``N`` rows; ``rows``: the running ones. Returns their ELBO ``(B,)`` and full-size gradients.

        Padding rows (``fast="compiled"``, :meth:`bucket`) are datapoints that are not running: each row's
        ELBO and gradient depend on that row's parameters and keyed noise only, so theirs are computed and
        ignored (the optimizer steps the running rows only)."""
        B = rows.shape[0]
        size = self.bucket(B)
        if size > B:
            idle = torch.ones(x.shape[0], dtype=torch.bool, device=rows.device)
            idle[rows] = False
            rows = torch.cat([rows, idle.nonzero().squeeze(-1)[:size - B]])
        xr = x[rows]
        eps = self.noise(xr, rows, seed, step)
        fn = self._function(xr, rows, eps)
        with torch.no_grad():
            out = fn([p.detach() for p in self.params], eps, xr, rows)
        return out[0][:B], list(out[1:])

    def _function(self, x, rows, eps):
        B = rows.shape[0]
        if B not in self._fns:
            if self.mode == "eager":
                self._fns[B] = self._eager
            else:
                gen = torch.Generator(device=x.device).manual_seed(_CHECK_SEED)

                def fresh(t, s):
                    return t + s * torch.randn(t.shape, generator=gen, device=t.device, dtype=t.dtype)
                now = [p.detach() for p in self.params]
                pts = [([fresh(p, 0.1) for p in now], {k: fresh(e, 1.0) for k, e in eps.items()}, x, rows),
                       (now, {k: -e for k, e in eps.items()}, x, rows)]
                tol = tolerance(x.dtype, self.gradient_dtype)
                self._fns[B] = _checked("local-optimization step", self.mode, self._eager,
                                        lambda: trace_graph(self._eager, now, eps, x, rows), pts, tol)
        return self._fns[B]


__all__ = ["AnnealingTarget", "LocalStep", "FastPathWarning", "FAST_MODES", "check_fast", "check_gradient_dtype",
           "compiler_problem", "trace_graph", "compile_graph"]
