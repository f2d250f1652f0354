r"""Reparameterization noise keyed by ``(seed, datapoint, step)``: one datapoint's draws never depend on the others'.

:func:`pyro_vaegap.estimators.local.optimize_local` evaluates only the datapoints still running. With a single
random stream (``torch.randn``) the noise a datapoint receives would then depend on how many others
are drawn beside it; here instead element ``c`` of datapoint ``n``'s noise at step ``t`` of site
``s`` is a fixed function of ``(seed, n, t, s, c)``:

.. math::

    \epsilon = \Phi^{-1}\big((h + \tfrac12) / 2^{32}\big), \qquad
    h = \mathrm{mix}\big(\mathrm{mix}(c \oplus r_1) + r_2 \bmod 2^{32}\big),

where ``mix`` is a bijective 32-bit integer hash and :math:`r_1, r_2` are two hashes of
``(seed, n, t, s)`` with different salts (two, so that the blocks of two datapoints cannot coincide
unless 64 bits do). Torch offers no vectorized counter-based API — a :class:`torch.Generator` is one
stream, and one generator per datapoint would be a Python loop per step — so the hash is written
here with int32 tensor operations (products wrapping modulo :math:`2^{32}`), checked against exact integer
arithmetic by the tests. A uniform of 32 bits bounds the draws by
:math:`|\epsilon| \le 6.34`; that is ample for Monte Carlo ELBO gradients, and ``tests/test_keyed_noise.py``
checks the draws' moments, normality and independence across keys.

:class:`KeyedNoise` is a Pyro effect handler that draws every reparameterized Normal site of a guide
(possibly wrapped in ``Independent``, expanded by plates, or pushed through a
``TransformedDistribution``, i.e. FFG, flows on an FFG base) with this noise, as
``value = loc + scale * eps``; the keys index the site's data-plate dimension.
"""
from __future__ import annotations

import zlib

import pyro.distributions as dist
import torch
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample
from torch.distributions import Independent, Normal, TransformedDistribution

from ..utils import ConfigError

def _i32(v: int) -> int:
    """A Python integer's low 32 bits as a signed int32 value (two's complement)."""
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


_C1, _C2 = _i32(0x7FEB352D), _i32(0x846CA68B)


def _shr(x: torch.Tensor, k: int) -> torch.Tensor:
    """Logical right shift of int32 bit patterns (``>>`` is arithmetic on negative int32)."""
    return (x >> k) & ((1 << (32 - k)) - 1)


def mix32(x: torch.Tensor) -> torch.Tensor:
    """A bijection of 32-bit words with good avalanche (C. Wellons' "lowbias32") on int32 tensors.

    int32 products wrap modulo :math:`2^{32}` (what the vectorized kernels do, and int64 products are
    about 100x slower on CPU); ``tests/test_keyed_noise.py`` checks the bits against exact integer
    arithmetic, so a platform that did otherwise would be caught.
    """
    x = x ^ _shr(x, 16)
    x = x * _C1
    x = x ^ _shr(x, 15)
    x = x * _C2
    return x ^ _shr(x, 16)


def mix32_int(v: int) -> int:
    """:func:`mix32` in exact Python integer arithmetic on an unsigned 32-bit word (the reference)."""
    v &= 0xFFFFFFFF
    v ^= v >> 16
    v = (v * 0x7FEB352D) & 0xFFFFFFFF
    v ^= v >> 15
    v = (v * 0x846CA68B) & 0xFFFFFFFF
    return v ^ (v >> 16)


def hash_ints(*parts: int) -> int:
    """Chain-hash Python integers (low 32 bits of each) into one unsigned 32-bit word."""
    h = 0
    for p in parts:
        h = mix32_int(h ^ (int(p) & 0xFFFFFFFF))
    return h


def key_hash(seed: int, keys: torch.Tensor, *after: int) -> torch.Tensor:
    """One int32 word per key: ``mix(mix(keys ^ hash(seed)) ^ hash(*after))``; the scalar parts are
    hashed in Python, so a step costs two tensor passes per salt whatever the number of parts."""
    k = (keys.to(torch.int64) & 0xFFFFFFFF).to(torch.int32)
    h = mix32(k ^ _i32(hash_ints(seed)))
    return mix32(h ^ _i32(hash_ints(*after)))


def keyed_normal(seed: int, keys: torch.Tensor, step: int, site: int, shape, dim: int,
                 dtype=torch.float32) -> torch.Tensor:
    r"""Standard normal draws of ``shape`` whose slice ``i`` along ``dim`` depends only on
    ``(seed, keys[i], step, site)`` and the position inside the slice.

    :param keys: integer ``(shape[dim],)``, the datapoints' keys (on the device the draws are made on).
    :param dim: the dimension indexed by ``keys`` (negative or not).
    """
    shape = torch.Size(shape)
    dim = dim % len(shape)
    if keys.shape != (shape[dim],):
        raise ValueError(f"keys has shape {tuple(keys.shape)}; expected ({shape[dim]},) for draws of shape "
                         f"{tuple(shape)} keyed along dim {dim}")
    view = [1] * len(shape)
    view[dim] = -1
    r1 = key_hash(seed, keys, step, site, 1).view(view)
    r2 = key_hash(seed, keys, step, site, 2).view(view)
    # the element counter runs over every dimension but dim, so it does not depend on shape[dim]
    inner = list(shape)
    inner[dim] = 1
    c = torch.arange(torch.Size(inner).numel(), dtype=torch.int32, device=keys.device).view(inner)
    h = mix32(mix32(c ^ r1) + r2)
    # the int32 pattern read as an offset in [-2^31, 2^31): a uniform on (0, 1) after the shift
    u = (h.to(torch.float64) + (2.0 ** 31 + 0.5)) * 2.0 ** -32
    return torch.special.ndtri(u).to(dtype)


def _unwrap(fn):
    """``(normal, transforms)``: the Normal at the bottom of Independent / expanded wrappers and the
    transforms of any TransformedDistribution on the way (applied in order); ``(None, _)`` otherwise."""
    transforms = []
    while True:
        if isinstance(fn, TransformedDistribution):
            transforms = list(fn.transforms) + transforms
            fn = fn.base_dist
        elif isinstance(fn, (Independent, dist.ExpandedDistribution)):
            fn = fn.base_dist
        elif isinstance(fn, Normal):
            return fn, transforms
        else:
            return None, transforms


def noise_layout(msg, normal, plate: str):
    """``(site key, shape, keyed dim, dtype)`` of a Normal sample site's noise, as :class:`KeyedNoise` keys it:
    the crc of the site's name (stable across processes), the distribution's full shape, the dimension of the
    data plate ``plate`` in it, and the Normal's dtype; ``None`` when the site is outside that plate."""
    fn = msg["fn"]
    frames = [f for f in msg["cond_indep_stack"] if f.name == plate]
    if not frames:
        return None
    return (zlib.crc32(msg["name"].encode()), tuple(fn.batch_shape + fn.event_shape),
            len(fn.batch_shape) + frames[0].dim, normal.loc.dtype)


def reparameterize(normal, transforms, eps: torch.Tensor) -> torch.Tensor:
    """``loc + scale · eps`` pushed through ``transforms``; calling the distribution's own transforms caches
    value → inverse, so its ``log_prob`` of the result is exact."""
    value = normal.loc + normal.scale * eps
    for t in transforms:
        value = t(value)
    return value


class KeyedNoise(Messenger):
    """Draw every latent, reparameterized site with noise keyed by ``(seed, keys[b], step, site)``.

    :param keys: int64 ``(B,)``: the key of each row of the data plate (the datapoints' indices).
    :param plate: the name of the data plate (:func:`pyro_vaegap.models.data_plate`: ``"data"``).

    Use it *outside* every plate (so a site's distribution is already broadcast to its full
    ``(S, B, ...)`` shape when this handler sees it). Sites with a value (observed, replayed) and
    deterministic ``Delta`` sites are left alone; any other distribution raises :class:`ConfigError`,
    since its draw could not be keyed.
    """

    def __init__(self, seed: int, keys: torch.Tensor, step: int, plate: str = "data"):
        super().__init__()
        self.seed, self.keys, self.step, self.plate = int(seed), keys, int(step), plate

    def _pyro_sample(self, msg):
        if msg["is_observed"] or msg["value"] is not None or site_is_subsample(msg):
            return
        fn = msg["fn"]
        normal, transforms = _unwrap(fn)
        if normal is None:
            base = fn
            while hasattr(base, "base_dist"):
                base = base.base_dist
            if isinstance(base, dist.Delta):
                return  # deterministic: nothing to draw
            raise ConfigError(f"site {msg['name']!r} draws from {type(base).__name__}: keyed noise (row-subset local "
                              "optimization) supports reparameterized Normal sites only; a guide with other sites "
                              "must keep row_subsets = False")
        layout = noise_layout(msg, normal, self.plate)
        if layout is None:
            raise ConfigError(f"site {msg['name']!r} is outside the {self.plate!r} plate; keyed noise needs every "
                              "draw inside it")
        site, shape, dim, dtype = layout
        msg["value"] = reparameterize(normal, transforms, keyed_normal(self.seed, self.keys, self.step, site, shape,
                                                                       dim, dtype))
