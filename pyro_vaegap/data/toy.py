"""2-D toy densities of R. Yu's VAE tutorial (2020, §6): samplers, exact densities, entropies.

``8gaussians``, ``checkerboard``, ``2spirals``
    Generated, never downloaded: fixed-seed samples of 50,000 train / 5,000 valid / 5,000 test
    points of shape (N, 2), with exact log-densities and ground-truth differential entropies (see
    :func:`sample_toy`, :data:`~pyro_vaegap.data.toy.TOY_ENTROPY_BITS`).

Three generated data sets in the plane, each with a sampler, its exact log-density (used for the
ground-truth density maps) and its differential entropy H = -E[log2 p(x)] in bits. Because the
data are continuous, H is a *differential* entropy: it depends on the scale of the data (scaling
the plane by a changes H by 2 log2 a bits), which is why the tutorial shrinks every set by 1/8 so
that H is negative and comparable across sets. A model's NLL in bits is -log2 of a density, so it
is bounded below by H (Gibbs' inequality), not by 0.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import torch

from .errors import SPLITS, DataError, _check_split


#: Every generated toy data set; each is a (N, 2) float32 tensor.
TOY_DATASETS = ("8gaussians", "checkerboard", "2spirals")
#: Split sizes of the toy data sets. Each split is an independent fixed-seed sample (seed of the
#: split = position of (dataset, split) in a :class:`numpy.random.SeedSequence` spawn), so the
#: held-out splits are fresh draws from the same density, not a partition of one sample.
TOY_SPLIT_SIZES = {"train": 50_000, "valid": 5_000, "test": 5_000}
_TOY_SEED = 20200416

#: The tutorial's overall scale factor of every toy set.
TOY_SCALE = 1.0 / 8.0

# 8 Gaussians: centres at radius 4 and angles k·45°, std 0.5, then x / sqrt(2) / 8.
_G8_SCALE = TOY_SCALE / math.sqrt(2.0)
G8_RADIUS = 4.0 * _G8_SCALE   #: radius of the centres after scaling, 1/(2 sqrt 2) ≈ 0.354
G8_STD = 0.5 * _G8_SCALE      #: per-coordinate std of each component after scaling ≈ 0.0442

# 2 spirals: arm 1 is c(t) = t (-cos t, sin t) / 3 with t = 3π sqrt(u), u ~ U(0, 1) (so the arc
# makes 1.5 turns and points are spread evenly in t·dt, i.e. roughly evenly along the arc); arm 2
# is -c(t); each arm has probability 1/2; isotropic Gaussian noise of std 0.1; then everything is
# scaled by 1/8. t = 3π sqrt(u) means t has density 2t / (3π)² on [0, 3π].
SPIRAL_TURN = 3.0 * math.pi
SPIRAL_STD = 0.1 * TOY_SCALE  #: noise std after scaling, 0.0125

#: Ground-truth differential entropies in bits and their absolute error bounds (or standard errors).
#:
#: * ``checkerboard``: exact. The density is uniform on 8 cells of side 1/4, area 1/2, so p = 2 on
#:   the support and H = -log2 2 = -1.
#: * ``8gaussians``: -∫ p log2 p by the trapezoid rule on a 2001² grid over [-0.65, 0.65]² (the
#:   density is smooth and below 1e-100 outside it, so the trapezoid rule converges geometrically).
#:   :func:`toy_entropy_numerical` recomputes it: -1.914896; the 1001² grid agrees to 4e-13, so the
#:   stated error 1e-6 only covers rounding of the constant.
#: * ``2spirals``: Monte Carlo -mean(log2 p(x_i)) over 200,000 exact samples (seed 1), with p(x)
#:   from :func:`toy_log_density` with 8,000 quadrature nodes in t (step along the curve < σ/25,
#:   so the quadrature error is negligible beside the Monte Carlo error). The stated error is the
#:   Monte Carlo standard error std(log2 p)/sqrt(200,000) = 0.0023 bits.
#:
#: The tutorial reports -1.92, -1 and -2.34 bits.
TOY_ENTROPY_BITS = {"8gaussians": -1.914896, "checkerboard": -1.0, "2spirals": -2.3372}
TOY_ENTROPY_ERROR_BITS = {"8gaussians": 1e-6, "checkerboard": 0.0, "2spirals": 0.0023}

_LOG_2PI = math.log(2.0 * math.pi)


def _check_toy_name(name: str) -> None:
    if name not in TOY_DATASETS:
        raise DataError(f"unknown toy dataset {name!r}; allowed toy datasets are {', '.join(TOY_DATASETS)}")


def _g8_centres() -> np.ndarray:
    """The 8 component means after scaling, float64 (8, 2)."""
    angles = np.arange(8) * (np.pi / 4.0)
    return G8_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)


def _spiral_curve(t: np.ndarray) -> np.ndarray:
    """Arm 1 of the spirals after scaling: ``t (-cos t, sin t) / 3 / 8``; shape ``t.shape + (2,)``."""
    return (TOY_SCALE / 3.0) * t[..., None] * np.stack([-np.cos(t), np.sin(t)], axis=-1)


def sample_toy(name: str, n: int, rng: np.random.Generator) -> np.ndarray:
    """Draw ``n`` exact samples of a toy density.

    :param name: one of :data:`~pyro_vaegap.data.toy.TOY_DATASETS`.
    :param n: number of samples (>= 1).
    :param rng: the NumPy generator that drives every random choice.
    :returns: float64 array (n, 2).

    * ``8gaussians``: an equal mixture of N(c_k, G8_STD² I), c_k = G8_RADIUS (cos kπ/4, sin kπ/4).
    * ``checkerboard``: uniform on the cells [i, i+1) x [j, j+1) of [-2, 2]² with i + j even,
      scaled by 1/4 (support [-1/2, 1/2]², area 1/2). Drawn as x1 ~ U(-2, 2), then x2 uniform in
      one of the two cells of x1's column picked with probability 1/2.
    * ``2spirals``: ±c(t) + N(0, SPIRAL_STD² I), t = 3π sqrt(u), u ~ U(0, 1), sign ± w.p. 1/2.
    """
    _check_toy_name(name)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise DataError(f"n={n!r} is not allowed: expected an integer >= 1")
    if name == "8gaussians":
        k = rng.integers(0, 8, size=n)
        return _g8_centres()[k] + G8_STD * rng.standard_normal((n, 2))
    if name == "checkerboard":
        x1 = rng.uniform(-2.0, 2.0, size=n)
        column = np.floor(x1)
        # In column i the allowed rows j have j ≡ i (mod 2): j ∈ {-2, 0} for even i, {-1, 1} for odd.
        row = (column % 2) + 2.0 * rng.integers(0, 2, size=n) - 2.0
        x2 = row + rng.uniform(0.0, 1.0, size=n)
        return 0.25 * np.stack([x1, x2], axis=1)
    t = SPIRAL_TURN * np.sqrt(rng.uniform(0.0, 1.0, size=n))
    sign = np.where(rng.integers(0, 2, size=n) == 0, 1.0, -1.0)
    return sign[:, None] * _spiral_curve(t) + SPIRAL_STD * rng.standard_normal((n, 2))


def toy_log_density(name: str, x, quadrature_points: int = 4000, chunk: int = 1000) -> np.ndarray:
    """Exact (or quadrature-exact) log-density in nats of a toy data set at the points ``x``.

    :param x: array-like (N, 2).
    :param quadrature_points: midpoints in t for the spirals' integral
        p(x) = ∫ (2t/(3π)²) ½[N(x; c(t), s²I) + N(x; -c(t), s²I)] dt (ignored otherwise). With
        4,000 nodes the step along the curve is below σ/13, where the midpoint rule of a Gaussian
        bump is exact to far below float precision (only the curve's two ends add an O(h²) term).
    :param chunk: points evaluated at once for the spirals (memory ~ chunk x quadrature_points).
    :returns: float64 array (N,); ``-inf`` outside the checkerboard's support.

    Computed in log space (``logsumexp`` over mixture components / quadrature nodes).
    """
    from scipy.special import logsumexp

    _check_toy_name(name)
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 2 or x.shape[1] != 2:
        raise DataError(f"toy densities are defined on the plane: expected points of shape (N, 2), got {x.shape}")
    if name == "8gaussians":
        sq = ((x[:, None, :] - _g8_centres()[None]) ** 2).sum(-1)  # (N, 8)
        log_comp = -0.5 * sq / G8_STD**2 - _LOG_2PI - 2.0 * math.log(G8_STD)
        return logsumexp(log_comp, axis=1) - math.log(8.0)
    if name == "checkerboard":
        cells = np.floor(4.0 * x)
        inside = (np.abs(x) <= 0.5).all(axis=1) & ((cells.sum(axis=1) % 2) == 0)
        return np.where(inside, math.log(2.0), -np.inf)
    # Midpoint rule in t: the integrand is smooth in t (unlike in u = (t/3π)², where dt/du blows up).
    step = SPIRAL_TURN / quadrature_points
    t = (np.arange(quadrature_points) + 0.5) * step
    log_w = np.log(2.0 * t / SPIRAL_TURN**2 * step) + math.log(0.5)  # quadrature weight x arm prob
    curve = _spiral_curve(t)  # (M, 2)
    out = np.empty(x.shape[0])
    for s in range(0, x.shape[0], chunk):
        xb = x[s:s + chunk, None, :]
        arms = [((xb - sign * curve[None]) ** 2).sum(-1) for sign in (1.0, -1.0)]
        log_comp = np.concatenate([-0.5 * a / SPIRAL_STD**2 for a in arms], axis=1)
        log_comp += np.concatenate([log_w, log_w])[None]
        out[s:s + chunk] = logsumexp(log_comp, axis=1) - _LOG_2PI - 2.0 * math.log(SPIRAL_STD)
    return out


#: half-width of the square [-TOY_EXTENT, TOY_EXTENT]² that holds every toy set (radius <= 0.5 + noise)
TOY_EXTENT = 0.6


def toy_quadrature(name: str, cells: int = 144, tail: float = 1e-7) -> tuple[np.ndarray, np.ndarray, float]:
    r"""Midpoint rule of the true density over the square :math:`[-0.6, 0.6]^2`: nodes :math:`x_i` and weights
    :math:`w_i = p(x_i)\,h^2` (:math:`h = 1.2/` ``cells``), so that
    :math:`\mathbb E_{p}[g(x)] \approx \sum_i w_i\, g(x_i) / \sum_i w_i` for a smooth ``g`` — the tutorial's
    way of measuring a model's NLL ("a grid weighted by the true density"), without the sampling error of a
    finite test set.

    The midpoint rule is :math:`O(h^2)` for a smooth integrand. The checkerboard's density jumps at its cell
    edges (multiples of 1/4), which are cell edges of this grid when ``cells`` is a multiple of 24
    (:math:`h` divides 0.05): then :math:`p` is constant on every grid cell and only :math:`g` is integrated
    approximately. ``cells`` must be a multiple of 24 for that reason (144: h = 1/120, 2/3 of the spirals'
    noise s.d.; on the true density itself the rule gives the entropy to 1e-8 bits at 72 cells already).

    :param tail: the lightest nodes, of total weight at most ``tail``, are dropped (they would cost most of the
        evaluation and change an expectation of a bounded ``g`` by at most ``tail`` times its range); the
        captured mass is returned.
    :returns: ``(nodes (M, 2) float64, weights (M,) float64, mass)`` with ``mass`` :math:`= \sum_i w_i`
        (1 up to the rule's error and the mass outside the square).
    """
    _check_toy_name(name)
    if not isinstance(cells, int) or cells < 24 or cells % 24:
        raise DataError(f"cells={cells!r} is not allowed: it must be a positive multiple of 24 (cell edges on the "
                        "checkerboard's edges)")
    h = 2 * TOY_EXTENT / cells
    axis = -TOY_EXTENT + (np.arange(cells) + 0.5) * h
    xx, yy = np.meshgrid(axis, axis, indexing="ij")
    nodes = np.stack([xx.ravel(), yy.ravel()], 1)
    weights = np.exp(toy_log_density(name, nodes)) * h * h
    order = np.argsort(weights)
    dropped = order[np.cumsum(weights[order]) <= tail]
    keep = np.ones(len(weights), dtype=bool)
    keep[dropped] = False
    return nodes[keep], weights[keep], float(weights[keep].sum())


def toy_entropy_numerical(name: str, grid: int = 2001, num_samples: int = 200_000, seed: int = 1):
    """Recompute the differential entropy (bits) of :data:`~pyro_vaegap.data.toy.TOY_ENTROPY_BITS` and its
    error.

    :returns: ``(H_bits, error_bits)`` — checkerboard: ``(-1, 0)`` exactly; 8 Gaussians: trapezoid rule
        on a ``grid``² grid over [-0.65, 0.65]², error = |difference from a grid of half the
        resolution|; spirals: Monte Carlo over ``num_samples`` exact samples, error = standard error.
    """
    _check_toy_name(name)
    if name == "checkerboard":
        return -1.0, 0.0
    if name == "8gaussians":
        def trapezoid(m):
            axis = np.linspace(-0.65, 0.65, m)
            xx, yy = np.meshgrid(axis, axis, indexing="ij")
            log_p = toy_log_density(name, np.stack([xx.ravel(), yy.ravel()], 1)).reshape(m, m)
            integrand = -np.exp(log_p) * log_p / math.log(2.0)
            return float(np.trapezoid(np.trapezoid(integrand, axis, axis=1), axis))
        fine, coarse = trapezoid(grid), trapezoid((grid + 1) // 2)
        return fine, abs(fine - coarse)
    rng = np.random.default_rng(seed)
    samples = sample_toy(name, num_samples, rng)
    log2_p = toy_log_density(name, samples, quadrature_points=8000) / math.log(2.0)
    return float(-log2_p.mean()), float(log2_p.std() / math.sqrt(num_samples))


@functools.lru_cache(maxsize=16)
def _toy_split(name: str, split: str) -> np.ndarray:
    """The fixed-seed sample of one split (read-only float32 array, shared between calls)."""
    seeds = np.random.SeedSequence(_TOY_SEED).spawn(len(TOY_DATASETS) * len(SPLITS))
    seed = seeds[TOY_DATASETS.index(name) * len(SPLITS) + SPLITS.index(split)]
    array = sample_toy(name, TOY_SPLIT_SIZES[split], np.random.default_rng(seed)).astype(np.float32)
    array.setflags(write=False)
    return array


def load_toy(name: str, split: str) -> torch.Tensor:
    """One split of a 2-D toy data set (sizes in :data:`~pyro_vaegap.data.toy.TOY_SPLIT_SIZES`, drawn with fixed
    seeds).

    :param name: one of :data:`~pyro_vaegap.data.toy.TOY_DATASETS`.
    :param split: one of :data:`SPLITS`.
    :returns: float32 tensor (N, 2), a fresh copy.
    """
    _check_toy_name(name)
    _check_split(split)
    return torch.from_numpy(_toy_split(name, split).copy())
