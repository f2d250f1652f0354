r"""The InfoVAE objective family (Zhao, Song & Ermon, *InfoVAE: Balancing Learning and Inference in
Variational Autoencoders*, AAAI 2019), as a :class:`pyro.infer.ELBO` read off Pyro traces.

.. math::

    \mathcal L_{\alpha,\lambda} = \mathbb E_{p_D(x)}\mathbb E_{q(z\mid x)}[\log p(x\mid z)]
        - (1-\alpha)\,\mathbb E_{p_D(x)}\mathrm{KL}(q(z\mid x)\,\Vert\,p(z))
        - (\alpha+\lambda-1)\,D(q(z)\,\Vert\,p(z)),
    \qquad q(z) = \mathbb E_{p_D(x)}\,q(z\mid x),

:math:`q(z)` being the *aggregate* posterior. :math:`\alpha` weights the mutual information between
:math:`x` and :math:`z`, :math:`\lambda` the match of :math:`q(z)` to the prior. Special cases (each
tested in ``tests/test_infovae.py``):

* :math:`\alpha = 0,\ \lambda = 1`: the ELBO (the D term has weight 0);
* :math:`\alpha + \lambda - 1 = 0`: the :math:`\beta`-VAE with :math:`\beta = 1-\alpha` (any D);
* ``divergence="kl"``: :math:`D` is read as the per-datapoint KL
  :math:`\mathbb E_{p_D}\mathrm{KL}(q(z\mid x)\Vert p(z))` (the marginal
  :math:`\mathrm{KL}(q(z)\Vert p(z))` has no tractable estimate), so the objective is the
  :math:`\beta`-VAE :math:`\mathbb E\log p(x\mid z) - \beta\,\mathrm{KL}` with
  :math:`\beta = (1-\alpha) + (\alpha+\lambda-1) = \lambda`: :math:`\alpha` cancels;
* :math:`\alpha = 1,\ \lambda = 1` with ``divergence="adversarial"``: the adversarial autoencoder
  (AAE; no per-datapoint KL term); with ``"mmd"`` the MMD-VAE.

Estimation. The guide is run under an outer plate of ``S = num_particles`` draws and the model is
replayed against it (:func:`pyro_vaegap.estimators.traces.guide_model_traces`), as every estimator here does:

* :math:`\log p(x\mid z)` is the sum of the model's observed sites' log-densities;
* :math:`\mathrm{KL}(q(z\mid x)\Vert p(z))` is the single-draw estimate
  :math:`\log q - \log p(z)` (every guide site, auxiliary ones and ``pyro.factor`` reverse models
  included, minus the model's latent sites), as in :class:`pyro.infer.Trace_ELBO`; so
  :math:`\alpha = 0, \lambda = 1` gives Trace_ELBO's value on the same draws;
* the aggregate posterior's draws are the guide's values of the model's latent sites, flattened
  and concatenated into one vector per draw, :math:`n = S\cdot B` points for a minibatch of
  :math:`B`; as the minibatch's :math:`x_b` are (close to) i.i.d. from :math:`p_D`, draws of
  *different* datapoints are i.i.d. from :math:`q(z)`. Prior draws (as many, :math:`n`) are drawn
  from the replayed model trace's own latent-site distribution (one latent site, the models of
  :mod:`pyro_vaegap.models`) or, with several latent sites, by an independent trace of the model
  (ancestral sampling, as :class:`pyro.infer.Trace_MMD` does).

``differentiable_loss(model, guide, x)`` is, like every objective of :mod:`pyro_vaegap.objectives`,
the minibatch *sum* of per-datapoint losses: :math:`-\sum_b[\dots] + B\,(\alpha+\lambda-1)\,\hat D`,
so ``loss / B`` is the per-datapoint loss and the divergence enters with its own weight. Site scales
(plate subsampling, annealing) are not applied: InfoVAE is refused with annealing and free bits.

Divergences (``divergence``): ``"mmd"`` (:func:`mmd`, :class:`MMDKernel`), ``"stein"``
(:func:`svgd_direction`), ``"adversarial"`` (:class:`Critic`, trained by :meth:`InfoVAE.critic_step`)
and ``"kl"``. Guides with their own ELBO estimator (``custom_elbo``, e.g. the mixture) train through
their strata (:meth:`InfoVAE.strata`), so they get every term with the right gradients.
"""
from __future__ import annotations

import math
from contextlib import contextmanager, nullcontext

import torch
from pyro import poutine
from pyro.infer import Trace_ELBO
from pyro.util import warn_if_nan
from torch import nn

from ..traces import guide_model_traces, log_joint_parts, sample_plate, sample_sites, sum_log_prob
from ..utils import ConfigError, check_choice, check_positive_int

DIVERGENCES = ("mmd", "stein", "adversarial", "kl")
MMD_KERNELS = ("rbf", "imq")
#: what each divergence logs per epoch (the column of ``log.csv``); the Stein surrogate is *not* a divergence
LOG_COLUMN = {"mmd": "mmd2", "stein": "stein_surrogate", "adversarial": "js", "kl": "kl"}
#: defaults filled in for ``objective="infovae"`` (``None`` in a config means "not given")
DEFAULTS = {"divergence": "mmd", "mmd_kernel": "rbf", "mmd_scales": (1.0,), "disc_lr": 1e-3, "disc_steps": 1,
            "disc_hidden": 256}
MMD_OPTIONS = ("mmd_kernel", "mmd_scales")
DISC_OPTIONS = ("disc_lr", "disc_steps", "disc_hidden")
OPTIONS = ("alpha", "lambda_", "divergence") + MMD_OPTIONS + DISC_OPTIONS


# ------------------------------------------------------------------------------------------------
# MMD
# ------------------------------------------------------------------------------------------------
def squared_distances(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r""":math:`\Vert x_i - y_j\Vert^2`, shape ``(n, m)`` for ``x`` ``(n, d)`` and ``y`` ``(m, d)``.

    Computed from differences (``cdist``'s direct mode), not from :math:`\Vert x\Vert^2 + \Vert y\Vert^2 -
    2x\cdot y`: the expansion loses the small distances to cancellation, which the kernels are most
    sensitive to."""
    return torch.cdist(x, y, compute_mode="donot_use_mm_for_euclid_dist").pow(2)


class MMDKernel:
    r"""The kernel of the MMD, a sum over bandwidth multipliers :math:`s` in ``scales`` (multi-scale):

    * ``"rbf"``: :math:`k(x, y) = \sum_s \exp(-\Vert x-y\Vert^2 / (2\sigma_s^2))` with
      :math:`2\sigma_s^2 = s\,d`, :math:`d` the latent size. :math:`s = 1` is the InfoVAE paper's
      :math:`2\sigma^2 = \dim z`. (The code of the paper's MMD tutorial computes
      :math:`\exp(-\mathrm{mean}_j(x_j-y_j)^2/d) = \exp(-\Vert x-y\Vert^2/d^2)`, i.e. :math:`2\sigma^2 = d^2`:
      that is ``scales=(d,)`` here.)
    * ``"imq"`` (inverse multiquadric): :math:`k(x, y) = \sum_s C_s / (C_s + \Vert x-y\Vert^2)` with
      :math:`C_s = 2 d\, s`; :math:`s = 1` is the WAE paper's :math:`C = 2d\sigma_p^2` for the prior
      :math:`\mathcal N(0, I)` (Tolstikhin et al. 2018, who sum :math:`s \in \{.1,.2,.5,1,2,5,10\}`).

    Both are characteristic, so :math:`\mathrm{MMD} = 0` only when the distributions are equal.
    ``kernel(x, y)`` maps ``(n, d)``, ``(m, d)`` to the ``(n, m)`` Gram matrix.
    """

    def __init__(self, kind: str = "rbf", scales=(1.0,)):
        self.kind = check_choice("mmd_kernel", kind, MMD_KERNELS)
        self.scales = check_scales(scales)

    def bandwidths(self, d: int) -> list[float]:
        r""":math:`2\sigma_s^2` (RBF) or :math:`C_s` (IMQ) for latent size ``d``."""
        return [s * d if self.kind == "rbf" else 2.0 * s * d for s in self.scales]

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d2 = squared_distances(x, y)
        out = 0.0
        for h in self.bandwidths(x.shape[-1]):
            out = out + (torch.exp(-d2 / h) if self.kind == "rbf" else h / (h + d2))
        return out


def check_scales(scales) -> tuple:
    """``scales`` as a tuple of positive finite floats, else :class:`ConfigError`."""
    try:
        out = tuple(float(s) for s in scales)
    except (TypeError, ValueError):
        out = ()
    if not out or not all(math.isfinite(s) and s > 0 for s in out):
        shown = ",".join(map(str, scales)) if isinstance(scales, (list, tuple)) else repr(scales)
        raise ConfigError(f"mmd_scales={shown} is not allowed: expected one or more positive finite bandwidth "
                          "multipliers, e.g. 1 or 0.5,1,2")
    return out


def mmd(zq: torch.Tensor, zp: torch.Tensor, kernel, group: torch.Tensor | None = None,
        weight: torch.Tensor | None = None, unbiased: bool = True) -> torch.Tensor:
    r"""The squared MMD between the distributions of the rows of ``zq`` ``(n, d)`` and ``zp`` ``(m, d)``:

    .. math::

        \widehat{\mathrm{MMD}}{}^2 = \frac{\sum_{i\ne j} w_i w_j\,k(z_i, z_j)}{\sum_{i\ne j} w_i w_j}
            + \frac{1}{m(m-1)}\sum_{i\ne j} k(y_i, y_j)
            - \frac{2}{m\sum_i w_i}\sum_{i,j} w_i\,k(z_i, y_j),

    the unbiased U-statistic (Gretton et al. 2012, eq. 3) when the :math:`z_i` are i.i.d. and the
    weights :math:`w_i` equal. ``group`` (``(n,)`` integers) marks dependent draws: pairs in the same
    group (draws of one datapoint) are left out of the first sum, which stays unbiased for draws of
    *different* groups being independent; default: every row its own group. ``weight`` ``(n,)``
    weights the :math:`z_i` (a mixture guide's strata; default equal), differentiably.
    ``unbiased=False`` gives the V-statistic, every pair (the diagonal included) averaged with
    the weights: the estimator of :class:`pyro.infer.Trace_MMD`.
    """
    n, m = zq.shape[0], zp.shape[0]
    w = zq.new_ones(n) if weight is None else weight
    kqq, kpp, kqp = kernel(zq, zq), kernel(zp, zp), kernel(zq, zp)
    ww = w.unsqueeze(-1) * w.unsqueeze(-2)
    if unbiased:
        g = torch.arange(n, device=zq.device) if group is None else group
        ww = ww * (g.unsqueeze(-1) != g.unsqueeze(-2))
        if m < 2 or not bool((ww.detach() > 0).any()):
            raise ConfigError(f"the unbiased MMD needs two independent draws on each side (got {n} posterior "
                              f"draws in {len(torch.unique(g))} independent groups, {m} prior draws): use a batch "
                              "of at least 2 datapoints")
        pp = (kpp.sum() - kpp.diagonal().sum()) / (m * (m - 1))
    else:
        pp = kpp.mean()
    qq = (ww * kqq).sum() / ww.sum()
    qp = (w.unsqueeze(-1) * kqp).sum() / (m * w.sum())
    return qq + pp - 2 * qp


# ------------------------------------------------------------------------------------------------
# Stein
# ------------------------------------------------------------------------------------------------
def median_bandwidth(z: torch.Tensor) -> float:
    r"""SVGD's median heuristic (Liu & Wang 2016): :math:`h = \mathrm{med}\{\Vert z_i - z_j\Vert^2\}_{i<j}
    / \log(n+1)`, for the kernel :math:`\exp(-\Vert z-z'\Vert^2/h)` (i.e. :math:`2\sigma^2 = h`), so that a
    particle's kernel weights sum to about 1 over its median-distance neighbours. Computed without
    gradient; 1.0 for a single particle (whose direction has no repulsive term)."""
    n = z.shape[0]
    if n < 2:
        return 1.0
    with torch.no_grad():
        d2 = squared_distances(z, z)
        med = d2[torch.triu_indices(n, n, 1, device=z.device).unbind()].median()
    return max(float(med) / math.log(n + 1), 1e-12)


def svgd_direction(z: torch.Tensor, score: torch.Tensor, bandwidth: float | None = None,
                   weight: torch.Tensor | None = None) -> torch.Tensor:
    r"""The Stein variational gradient direction at the particles ``z`` ``(n, d)``:

    .. math::

        \phi(z_i) = \sum_j w_j\big[k(z_j, z_i)\,\nabla_{z_j}\log p(z_j) + \nabla_{z_j} k(z_j, z_i)\big],
        \qquad k(z, z') = \exp(-\Vert z - z'\Vert^2 / h),

    with ``score`` :math:`=\nabla\log p` at the particles, ``weight`` :math:`w` (default :math:`1/n`,
    normalized to sum 1) and ``bandwidth`` :math:`h` (default :func:`median_bandwidth`). Moving the
    particles along :math:`\phi` is the steepest descent of :math:`\mathrm{KL}(q\Vert p)` in the RKHS
    (Liu & Wang 2016); :math:`\phi` is the kernel-smoothed :math:`\nabla\log p - \nabla\log q`.
    Returned without gradient (it is a stop-gradient direction)."""
    with torch.no_grad():
        n = z.shape[0]
        h = median_bandwidth(z) if bandwidth is None else float(bandwidth)
        w = z.new_full((n,), 1.0 / n) if weight is None else weight / weight.sum()
        k = torch.exp(-squared_distances(z, z) / h)        # k[j, i] = k(z_j, z_i), symmetric
        wk = w.unsqueeze(-1) * k                            # w_j k(z_j, z_i)
        # ∇_{z_j} k(z_j, z_i) = -(2/h)(z_j - z_i) k(z_j, z_i)
        repulsive = (2.0 / h) * (z * wk.sum(0).unsqueeze(-1) - wk.T @ z)
        return wk.T @ score + repulsive


# ------------------------------------------------------------------------------------------------
# Adversarial
# ------------------------------------------------------------------------------------------------
class Critic(nn.Module):
    r"""The discriminator of the adversarial divergence: an MLP ``d → hidden → hidden → 1`` (ReLU)
    whose output :math:`\ell(z)` is the logit that :math:`z` is a prior draw rather than a draw of the
    aggregate posterior, :math:`D(z) = \sigma(\ell(z))`."""

    def __init__(self, latent_dim: int, hidden: int = 256):
        super().__init__()
        self.latent_dim = check_positive_int("latent_dim", latent_dim)
        self.net = nn.Sequential(nn.Linear(latent_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(),
                                 nn.Linear(hidden, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1)


@contextmanager
def _frozen(module: nn.Module):
    """The module's parameters out of autograd meanwhile: the generator's loss must not train the critic."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, f in zip(module.parameters(), flags):
            p.requires_grad_(f)


def critic_loss(critic: Critic, zq: torch.Tensor, zp: torch.Tensor, weight: torch.Tensor | None = None):
    r"""The discriminator's binary cross-entropy, :math:`-\mathbb E_p\log D(y) - \mathbb E_q\log(1-D(z))`
    (``weight`` averages the posterior side, default equally). At the optimal :math:`D^*` it equals
    :math:`\log 4 - 2\,\mathrm{JS}(q\Vert p)`."""
    w = zq.new_full((zq.shape[0],), 1.0 / zq.shape[0]) if weight is None else weight / weight.sum()
    return nn.functional.softplus(-critic(zp)).mean() + (w * nn.functional.softplus(critic(zq))).sum()


# ------------------------------------------------------------------------------------------------
# Config
# ------------------------------------------------------------------------------------------------
def _finite(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ConfigError(f"{name}={value!r} is not allowed: expected a finite number")
    return float(value)


def check_config(cfg) -> None:
    """Validate the InfoVAE fields of a :class:`~pyro_vaegap.runs.TrainConfig` and fill in the defaults
    of those that apply (in place), so a run's saved config states every value it used.

    Fields that do not apply (any of them without ``objective="infovae"``, the MMD options without
    ``divergence="mmd"``, the discriminator's without ``"adversarial"``) must be left out (``None``):
    a value given there would be silently ignored."""
    given = [k for k in OPTIONS if getattr(cfg, k) is not None]
    if cfg.objective != "infovae":
        if given:
            raise ConfigError(f"{', '.join(f'{k}={getattr(cfg, k)!r}' for k in given)} "
                              f"appl{'ies' if len(given) == 1 else 'y'} only to objective='infovae', not to "
                              f"objective={cfg.objective!r}: leave {'it' if len(given) == 1 else 'them'} out or pass "
                              "--objective infovae")
        return
    missing = [k for k in ("alpha", "lambda_") if getattr(cfg, k) is None]
    if missing:
        raise ConfigError(f"objective='infovae' needs {' and '.join(missing)} (--alpha A --lambda L; alpha=0, "
                          "lambda_=1 is the ELBO)")
    cfg.alpha, cfg.lambda_ = _finite("alpha", cfg.alpha), _finite("lambda_", cfg.lambda_)
    if cfg.divergence is None:
        cfg.divergence = DEFAULTS["divergence"]
    check_choice("divergence", cfg.divergence, DIVERGENCES)
    for names, div in ((MMD_OPTIONS, "mmd"), (DISC_OPTIONS, "adversarial")):
        for k in names:
            if cfg.divergence != div and getattr(cfg, k) is not None:
                raise ConfigError(f"{k}={getattr(cfg, k)!r} applies only to divergence={div!r}, not to "
                                  f"divergence={cfg.divergence!r}: leave it out")
            if cfg.divergence == div and getattr(cfg, k) is None:
                setattr(cfg, k, DEFAULTS[k])
    if cfg.divergence == "mmd":
        check_choice("mmd_kernel", cfg.mmd_kernel, MMD_KERNELS)
        cfg.mmd_scales = check_scales(cfg.mmd_scales if isinstance(cfg.mmd_scales, (list, tuple))
                                      else [cfg.mmd_scales])
    if cfg.divergence == "adversarial":
        if not (_finite("disc_lr", cfg.disc_lr) > 0):
            raise ConfigError(f"disc_lr={cfg.disc_lr!r} is not allowed: expected a finite positive number")
        check_positive_int("disc_steps", cfg.disc_steps)
        check_positive_int("disc_hidden", cfg.disc_hidden)
    check_weights(cfg.alpha, cfg.lambda_, cfg.divergence)
    if cfg.anneal != "none" or cfg.free_bits:
        raise ConfigError(f"objective='infovae' weights its KL terms itself (alpha, lambda_): it cannot be combined "
                          f"with anneal={cfg.anneal!r} / free_bits={cfg.free_bits!r}")


def check_batches(cfg, num_train: int) -> None:
    """Refuse, before training starts, a training set whose last minibatch would hold one row: the
    unbiased MMD needs draws of two datapoints (:func:`mmd`)."""
    if cfg.objective == "infovae" and cfg.divergence == "mmd" and cfg.alpha + cfg.lambda_ - 1 != 0 \
            and (num_train % cfg.batch_size == 1 or num_train == 1):
        raise ConfigError(f"divergence='mmd' needs at least 2 datapoints in every minibatch, but {num_train} training rows "
                          f"in batches of {cfg.batch_size} leave a last batch of 1: choose another batch_size or num_train")


def check_weights(alpha: float, lambda_: float, divergence: str) -> None:
    """Refuse weights for which the objective rewards a divergence (and is unbounded or meaningless)."""
    if divergence == "kl":
        if lambda_ < 0:
            raise ConfigError(f"lambda_={lambda_!r} is not allowed with divergence='kl' (the beta-VAE, beta = lambda_): "
                              "expected lambda_ >= 0")
        return
    if alpha > 1:
        raise ConfigError(f"alpha={alpha!r} is not allowed with divergence={divergence!r}: the per-datapoint KL would get "
                          "weight 1 - alpha < 0 and be rewarded without bound; expected alpha <= 1")
    if alpha + lambda_ - 1 < 0:
        raise ConfigError(f"alpha + lambda_ - 1 = {alpha + lambda_ - 1:g} < 0 is not allowed with "
                          f"divergence={divergence!r}: the divergence of q(z) from p(z) would be maximized; expected "
                          f"lambda_ >= 1 - alpha = {1 - alpha:g}")


# ------------------------------------------------------------------------------------------------
# The objective
# ------------------------------------------------------------------------------------------------
def _check_strata(guide) -> None:
    """A guide with its own ELBO estimator (``custom_elbo``) can be reweighted only if that estimator is the
    stratified ELBO of a mixture (``stratified_elbo``: ME(M)), whose strata InfoVAE then uses."""
    if getattr(guide, "custom_elbo", False) and not getattr(guide, "stratified_elbo", False):
        raise ConfigError(f"guide {type(guide).__name__} trains with an objective of its own, not a mixture's "
                          "stratified ELBO (stratified_elbo, stratum(m), mixture(x, idx)): objective='infovae' "
                          "cannot weight its terms")


class InfoVAE(Trace_ELBO):
    r"""The InfoVAE objective :math:`\mathcal L_{\alpha,\lambda}` (module docstring) as a Pyro ELBO.

    ``differentiable_loss(model, guide, x)`` is
    :math:`-\sum_{b=1}^B \tfrac1S\sum_s\big[\log p(x_b\mid z_{sb}) - (1-\alpha)\,\widehat{\mathrm{KL}}_{sb}\big]
    + B\,(\alpha+\lambda-1)\,\hat D`, where the per-datapoint part is read from the traces and
    :math:`\hat D` is

    * ``"mmd"``: the U-statistic :func:`mmd` of the :math:`n = SB` posterior draws (pairs of one
      datapoint left out) against :math:`n` prior draws, kernel :class:`MMDKernel` (``mmd_kernel``,
      ``mmd_scales``). *Not* built on :class:`pyro.infer.Trace_MMD`: Trace_MMD treats each particle's
      whole-minibatch latent vector (dimension :math:`B d`) as one point (its documented limitation),
      so it compares the joint of the :math:`B` latents with :math:`p(z)^B` on ``num_particles``
      points instead of the aggregate posterior across datapoints; it uses the biased V-statistic;
      and it has no KL term. ``tests/test_infovae.py`` checks that :func:`mmd` with
      ``unbiased=False`` gives Trace_MMD's own estimator on the same draws.
    * ``"stein"``: the surrogate :math:`-\tfrac1n\sum_i \mathrm{sg}[\phi(z_i)]\cdot z_i` with :math:`\phi`
      the SVGD direction (:func:`svgd_direction`, RBF kernel with the median-heuristic bandwidth,
      :math:`\nabla\log p` from the model trace), so its gradient with respect to the encoder is
      :math:`-\tfrac1n\sum_i\phi(z_i)\cdot\partial z_i/\partial\theta \approx \nabla_\theta\mathrm{KL}(q(z)\Vert p(z))`
      (the paper's appendix). Its *value* is not a divergence: it enters the loss's value as 0 (the
      loss is the rest of the objective) and is logged separately as ``stein_surrogate``.
    * ``"adversarial"``: the Jensen–Shannon estimate of the critic,
      :math:`\widehat{\mathrm{JS}} = \log 2 - \tfrac12\,` :func:`critic_loss`, as the value; its gradient
      with respect to the encoder is that of the non-saturating generator loss
      :math:`\tfrac12\,\mathbb E_q[-\log D(z)]` (same fixed point :math:`q(z) = p(z)` as the JS game,
      with gradients that do not vanish while the critic wins; the AAE's practice). The critic is
      trained alternately by :meth:`critic_step` with its own Adam (``disc_lr``, ``disc_steps`` steps
      per generator step); its state, optimizer included, is :meth:`state_dict` (saved in a run's
      checkpoint, so resuming is exact).
    * ``"kl"``: :math:`\widehat{\mathrm{KL}}` itself, per datapoint (the :math:`\beta`-VAE reading,
      :math:`\beta = \lambda`).

    With weight :math:`\alpha+\lambda-1 = 0` no divergence is computed (and no extra random numbers
    drawn); with :math:`\alpha = 1` no KL. ``last_log`` holds the minibatch's divergence estimate
    (``{LOG_COLUMN[divergence]: value}``) after each call, for the training log.

    :param latent_dim: the size of the flattened latents (the critic's input); needed for
        ``"adversarial"`` only.
    """

    def __init__(self, alpha: float, lambda_: float, divergence: str = "mmd", num_particles: int = 1,
                 mmd_kernel: str = "rbf", mmd_scales=(1.0,), disc_lr: float = 1e-3, disc_steps: int = 1,
                 disc_hidden: int = 256, latent_dim: int | None = None):
        super().__init__(num_particles=num_particles, vectorize_particles=True, max_plate_nesting=1)
        self.alpha, self.lambda_ = _finite("alpha", alpha), _finite("lambda_", lambda_)
        self.divergence = check_choice("divergence", divergence, DIVERGENCES)
        check_weights(self.alpha, self.lambda_, self.divergence)
        self.kl_weight = 1.0 - self.alpha + (self.alpha + self.lambda_ - 1.0 if divergence == "kl" else 0.0)
        self.d_weight = 0.0 if divergence == "kl" else self.alpha + self.lambda_ - 1.0
        self.kernel = MMDKernel(mmd_kernel, mmd_scales) if divergence == "mmd" else None
        self.critic = self.critic_optimizer = None
        if divergence == "adversarial":
            if latent_dim is None:
                raise ConfigError("divergence='adversarial' needs latent_dim (the size of z, the critic's input)")
            self.critic = Critic(latent_dim, check_positive_int("disc_hidden", disc_hidden))
            if not (_finite("disc_lr", disc_lr) > 0):
                raise ConfigError(f"disc_lr={disc_lr!r} is not allowed: expected a finite positive number")
            self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=disc_lr)
            self.disc_steps = check_positive_int("disc_steps", disc_steps)
        self.last_log: dict[str, float] = {}

    @classmethod
    def from_config(cls, cfg, guide) -> "InfoVAE":
        """The objective of a validated :class:`~pyro_vaegap.runs.TrainConfig` for ``guide``."""
        opts = {k: getattr(cfg, k) for k in MMD_OPTIONS + DISC_OPTIONS if getattr(cfg, k) is not None}
        _check_strata(guide)  # before a run folder is made, not at the first step
        return cls(cfg.alpha, cfg.lambda_, cfg.divergence, cfg.num_particles, latent_dim=guide.latent_dim, **opts)

    # --- state (the critic) -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        """The critic's parameters and optimizer state (empty for the other divergences)."""
        if self.critic is None:
            return {}
        return {"critic": self.critic.state_dict(), "critic_optimizer": self.critic_optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.critic is None:
            if state:
                raise ConfigError(f"this InfoVAE (divergence={self.divergence!r}) has no state to load; got "
                                  f"{sorted(state)}")
            return
        missing = [k for k in ("critic", "critic_optimizer") if k not in state]
        if missing:
            raise ConfigError(f"the saved InfoVAE state lacks {', '.join(missing)}: it was not saved by an adversarial "
                              "InfoVAE run")
        self.critic.load_state_dict(state["critic"])
        self.critic_optimizer.load_state_dict(state["critic_optimizer"])

    # --- draws ------------------------------------------------------------------------------------
    def strata(self, guide, x, idx=None):
        r"""``[(weight, context)]``: how the guide's draws are made. One stratum of weight 1 for every
        guide trained by Pyro's ELBOs; a guide with its own estimator (``custom_elbo``, the mixture)
        draws each component :math:`m` under ``guide.stratum(m)`` with weight :math:`\alpha_m(x)`
        ``(B,)``, differentiable (:meth:`pyro_vaegap.contract.guide.Guide.elbo`'s stratification), so the
        per-datapoint terms, the MMD and the adversarial term have gradients for the mixture weights
        too. The Stein surrogate only moves the draws: it gives the mixture weights no gradient (a
        surrogate's value has no meaning to differentiate), so with a mixture guide its divergence
        term acts on the components' locations and scales alone."""
        if not getattr(guide, "custom_elbo", False):
            return [(None, nullcontext())]
        _check_strata(guide)
        _, _, logits = guide.mixture(x, idx)
        weights = torch.softmax(logits, -1)
        return [(weights[:, m], guide.stratum(m)) for m in range(guide.num_components)]

    def _draws(self, model, guide, x, idx=None):
        """Per stratum: ``(weight (B,) or None, guide trace, model trace, draws per datapoint)``."""
        strata = self.strata(guide, x, idx)
        per = self.num_particles if len(strata) == 1 else max(1, math.ceil(self.num_particles / len(strata)))
        out = []
        for weight, ctx in strata:
            with ctx:
                g, m = guide_model_traces(model, guide, x, per, idx)
            out.append((weight, g, m, per))
        return out

    @staticmethod
    def latent_names(model_trace) -> list[str]:
        return [name for name, _ in sample_sites(model_trace, observed=False)]

    @staticmethod
    def flatten(values: dict, names, S: int, B: int) -> torch.Tensor:
        """The latents ``{name: (S, B, *event)}`` as one ``(S*B, D)`` matrix (row ``s*B + b``)."""
        return torch.cat([values[k].expand(S, B, *values[k].shape[2:]).reshape(S * B, -1) for k in names], -1)

    def prior_draws(self, model, model_trace, x, S: int, idx=None) -> dict:
        """``S`` draws of the model's latents per datapoint from the prior, ``{name: (S, B, *event)}``."""
        names = self.latent_names(model_trace)
        shape = torch.Size((S, x.shape[0]))
        if len(names) == 1:  # the site's own distribution, as the replayed model trace holds it
            fn = model_trace.nodes[names[0]]["fn"]
            fn = fn if fn.batch_shape == shape else fn.expand(shape)
            return {names[0]: fn.rsample() if fn.has_rsample else fn.sample()}
        with sample_plate(S):  # ancestral sampling from an independent trace of the model
            tr = poutine.trace(model).get_trace(x, idx=idx)
        return {k: tr.nodes[k]["value"] for k in names}

    def prior_score(self, model, model_trace, x, values: dict, idx=None) -> dict:
        r""":math:`\nabla_z\log p(z)` at ``values`` ``{name: (S, B, *event)}``, from the model's traces."""
        names = self.latent_names(model_trace)
        with torch.enable_grad():
            leaves = {k: v.detach().requires_grad_() for k, v in values.items()}
            if len(names) == 1:
                lp = model_trace.nodes[names[0]]["fn"].log_prob(leaves[names[0]]).sum()
            else:
                lp = log_joint_parts(model, x, leaves, idx)[0].sum()
            grads = torch.autograd.grad(lp, [leaves[k] for k in names])
        return dict(zip(names, grads))

    # --- the loss ---------------------------------------------------------------------------------
    def differentiable_loss(self, model, guide, x, idx=None) -> torch.Tensor:
        r""":math:`-\sum_b[\dots] + B(\alpha+\lambda-1)\hat D`, a scalar tensor (see the class docstring)."""
        B = x.shape[0]
        draws = self._draws(model, guide, x, idx)
        objective = 0.0                 # Σ_b of the per-datapoint part
        zq, wq, groups, kl_mean = [], [], [], 0.0
        names = None
        for weight, g, m, S in draws:
            shape = (S, B)
            f = sum_log_prob(m, shape, observed=True)
            kl = None
            if self.kl_weight != 0 or self.divergence == "kl":
                kl = sum_log_prob(g, shape) - sum_log_prob(m, shape, observed=False)
                f = f - self.kl_weight * kl
            f = f.mean(0)               # (B,): mean over the stratum's draws
            objective = objective + (f if weight is None else weight * f).sum()
            if kl is not None:
                kl_b = kl.detach().mean(0)
                kl_mean = kl_mean + float((kl_b if weight is None else weight.detach() * kl_b).mean())
            names = self.latent_names(m)
            if self.d_weight != 0:
                zq.append(self.flatten({k: g.nodes[k]["value"] for k in names}, names, S, B))
                w = x.new_full((S, B), 1.0 / S) if weight is None else (weight / S).expand(S, B)
                wq.append(w.reshape(-1))
                groups.append(torch.arange(B, device=x.device).repeat(S))
        loss = -objective
        self.last_log = {"kl": kl_mean} if self.divergence == "kl" else {}
        if self.d_weight != 0:
            zq, wq, groups = torch.cat(zq), torch.cat(wq), torch.cat(groups)
            d_value = self._divergence(model, draws, x, idx, zq, wq, groups, names)
            loss = loss + B * self.d_weight * d_value
        warn_if_nan(loss, "loss")
        return loss

    def _divergence(self, model, draws, x, idx, zq, wq, groups, names) -> torch.Tensor:
        """:math:`\\hat D` (or the Stein surrogate with value 0) of the posterior draws ``zq``."""
        B = x.shape[0]
        m_trace = draws[0][2]
        n = zq.shape[0]
        S_prior = -(-n // B)  # n prior draws (whole plates of B; the rows beyond n are not used)
        if self.divergence in ("mmd", "adversarial"):
            zp = self.flatten(self.prior_draws(model, m_trace, x, S_prior, idx), names, S_prior, B)[:n]
        if self.divergence == "mmd":
            value = mmd(zq, zp, self.kernel, group=groups, weight=wq)
            self.last_log = {"mmd2": float(value.detach())}
            return value
        if self.divergence == "adversarial":
            self._check_critic_input(zq)
            with _frozen(self.critic):
                js = math.log(2.0) - 0.5 * critic_loss(self.critic, zq, zp, wq)
                generator = 0.5 * (wq / wq.sum() * nn.functional.softplus(-self.critic(zq))).sum()
            self.last_log = {"js": float(js.detach())}
            return js.detach() + (generator - generator.detach())
        # stein: the score of the prior at the (detached) draws, read from the model trace
        scores = []
        for weight, g, m, S in draws:
            values = {k: g.nodes[k]["value"].detach() for k in names}
            score = self.prior_score(model, m, x, values, idx)
            scores.append(self.flatten(score, names, S, B))
        score = torch.cat(scores)
        # the weights only weigh particles here: a gradient of the mixture weights through a
        # surrogate's value would be meaningless
        phi = svgd_direction(zq.detach(), score, weight=wq.detach())
        surrogate = -((wq.detach() / wq.detach().sum()).unsqueeze(-1) * phi * zq).sum()
        self.last_log = {"stein_surrogate": float(surrogate.detach())}
        return surrogate - surrogate.detach()

    def _check_critic_input(self, zq):
        if zq.shape[-1] != self.critic.latent_dim:
            raise ConfigError(f"the critic reads latents of size {self.critic.latent_dim}, but the model's latent sites "
                              f"flatten to {zq.shape[-1]}")

    def critic_step(self, model, guide, x, idx=None) -> float | None:
        r"""``disc_steps`` Adam steps of the critic on fresh draws of the aggregate posterior (no gradient
        to the guide) and of the prior, minimizing :func:`critic_loss`; returns the last loss (None
        when there is no critic, or its weight :math:`\alpha+\lambda-1` is 0).

        :raises FloatingPointError: on a non-finite critic loss, before the critic is touched."""
        if self.critic is None or self.d_weight == 0:
            return None
        value = None
        for _ in range(self.disc_steps):
            with torch.no_grad():
                draws = self._draws(model, guide, x, idx)
                names = self.latent_names(draws[0][2])
                B = x.shape[0]
                zq = torch.cat([self.flatten({k: g.nodes[k]["value"] for k in names}, names, S, B)
                                for _, g, _, S in draws])
                wq = torch.cat([(x.new_full((S, B), 1.0 / S) if w is None else (w / S).expand(S, B)).reshape(-1)
                                for w, _, _, S in draws])
                n = zq.shape[0]
                S_prior = -(-n // B)
                zp = self.flatten(self.prior_draws(model, draws[0][2], x, S_prior, idx), names, S_prior, B)[:n]
            self._check_critic_input(zq)
            self.critic_optimizer.zero_grad(set_to_none=True)
            loss = critic_loss(self.critic, zq, zp, wq)
            value = float(loss.detach())
            if not math.isfinite(value):
                raise FloatingPointError("non-finite critic loss; lower --disc-lr or check the data")
            loss.backward()
            self.critic_optimizer.step()
        return value

    # Pyro's other entry points, from differentiable_loss (as _LossFromDifferentiable does)
    def loss(self, model, guide, *args, **kwargs) -> float:
        with torch.no_grad():
            loss = float(self.differentiable_loss(model, guide, *args, **kwargs))
        warn_if_nan(loss, "loss")
        return loss

    def loss_and_grads(self, model, guide, *args, **kwargs) -> float:
        loss = self.differentiable_loss(model, guide, *args, **kwargs)
        loss.backward(retain_graph=self.retain_graph)
        loss = float(loss.detach())
        warn_if_nan(loss, "loss")
        return loss
