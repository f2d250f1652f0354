r"""The inference-gap report of Cremer, Li & Duvenaud (2018).

For a trained model :math:`p_\theta` and amortized guide :math:`q` of family :math:`\mathcal Q`,
per datapoint :math:`x`:

.. math::

    \underbrace{\log p(x) - \mathcal L[q]}_{\text{inference gap}}
    = \underbrace{\log p(x) - \mathcal L[q^*]}_{\text{approximation gap}}
    + \underbrace{\mathcal L[q^*] - \mathcal L[q]}_{\text{amortization gap}},

where :math:`q^* = \arg\max_{q\in\mathcal Q}\mathcal L[q]` is found by per-datapoint optimization
(:mod:`pyro_vaegap.estimators.local`) for every family in ``GapConfig.families``. Every term is estimated from
the Pyro model and guides through their traces, so any registered family works.

The estimate :math:`\log\hat p(x)` (``GapConfig.log_px``)
----------------------------------------------------------
``"auto"`` (default): AIS when it runs (:mod:`pyro_vaegap.estimators.ais`, kernels frozen in advance, so its
mean weight is unbiased for :math:`p(x)`), IWAE-:math:`S` of the encoder otherwise. One estimator is
chosen *per run*, never per datapoint. ``"ais"`` and ``"iwae"`` force one. ``"max"`` is the paper's
definition, :math:`\max(\text{IWAE}, \text{AIS})` per datapoint: the maximum of two noisy
estimates is biased upward, and the bias enters the approximation gap in full, so it is offered
only to reproduce the paper's protocol. Both estimates are kept per datapoint in the report.

:func:`gap_report` computes the report in resumable pieces (:mod:`pyro_vaegap.report.pieces`) from a
:class:`~pyro_vaegap.report.config.GapConfig` and returns a :class:`~pyro_vaegap.report.render.GapReport`:
per-datapoint arrays, means with standard errors, JSON (config, seed, package versions, git commit) and a markdown
table laid out like the paper's Table 2, which :meth:`~pyro_vaegap.report.render.GapReport.from_dict` re-creates
from the JSON alone (:mod:`pyro_vaegap.report.render`).
A guide with an ``uncertainty(x)`` method (``gpvae``) also has that value kept per datapoint, under
``"uncertainty"``.
"""
from __future__ import annotations

import time

import numpy as np
import torch

from ..contract.model import as_model, check_sites, inspect_model, validate_data
from ..contract.registry import get_family
from ..estimators.ais import ais
from ..estimators.importance import importance_sample
from ..estimators.local import optimize_local
from ..utils import ConfigError, provenance, stable_seed
from .config import LOCAL_INITS, LOG_PX_ESTIMATORS, GapConfig  # noqa: F401 - also this module's public names
from .paper_columns import PAPERS, PaperColumn, paper_for  # noqa: F401 - (pyro_vaegap.gaps, before the split)
from .pieces import Interrupted, Pieces, fingerprint  # noqa: F401
from .render import GapReport, mean_se  # noqa: F401


def check_guides(model, guide, x: torch.Tensor, cfg: GapConfig, rows: int = 3) -> None:
    """Before any estimator runs: the amortized guide and every family's per-datum guide sample exactly the
    model's latent sites, inside its data plate, with its shapes and supports
    (:func:`pyro_vaegap.contract.model.check_sites`, on the first ``rows`` datapoints); one clear error otherwise."""
    spec = inspect_model(model, x, rows)
    xb = x[:rows]
    B = xb.shape[0]
    check_sites(spec, guide, xb, torch.arange(B, device=x.device), who="the amortized guide")
    for name in cfg.families:
        local = get_family(name).make_local(model, B, **cfg.family_options.get(name, {}))
        check_sites(spec, local.to(dtype=x.dtype, device=x.device), xb,
                    who=f"the per-datum guide of family {name!r}")


def gap_report(model, guide, x: torch.Tensor, config: GapConfig | None = None, *, family: str = "ffg",
               progress: bool = True, log=print, checkpoint=None, shard: tuple[int, int] = (0, 1)) -> GapReport | None:
    r"""Estimate :math:`\log\hat p(x)`, :math:`\mathcal L[q]`, :math:`\mathcal L[q^*]` for each family, and the gaps.

    :param model: a trained Pyro model: any callable ``model(x)`` with its latents and observations inside a
        plate over the rows of ``x`` (:mod:`pyro_vaegap.contract`: sites, data plate, shapes and supports are
        read from its trace); it is frozen throughout.
    :param guide: the trained amortized guide: any Pyro callable ``guide(x)`` sampling the model's latent
        sites inside the data plate (an encoder, a fitted ``AutoNormal``, a family's guide). It and every
        family's per-datum guide are checked against the model's trace before anything is computed.
    :param x: evaluation data ``(N, D)`` — take a seeded random subset (:func:`pyro_vaegap.data.seeded_subset`).
    :param family: the amortized guide's family name (its q* defines the headline gaps).
    :param log: where progress lines go (``print`` by default; ``None`` to silence).
    :param checkpoint: a folder that keeps every finished piece (:class:`~pyro_vaegap.report.pieces.Pieces`): an interrupted call
        with the same arguments resumes there and returns exactly what an uninterrupted call returns.
        The caller deletes it once the report is saved.
    :param shard: ``(rank, world)``: compute only the pieces of chunks ``c`` with ``c % world == rank`` into
        ``checkpoint`` (shared by the ranks) and return None — the first pass of a sharded evaluation
        (:mod:`pyro_vaegap.training.distributed`), whose report a later unsharded call assembles from the folder. A piece is seeded by its chunk alone, so the
        report assembled from the ranks' pieces is the one a single process computes.
    """
    cfg = config or GapConfig()
    cfg.check_families()
    get_family(family)  # the amortized guide's family must exist: its name labels the report
    x = validate_data(model, x)
    model = as_model(model, x)
    check_guides(model, guide, x, cfg)  # before any estimator: a guide that misses a site is a wrong number
    log = log or (lambda *a: None)
    N = x.shape[0]
    if shard[1] > 1 and checkpoint is None:
        raise ConfigError("a sharded evaluation needs a checkpoint folder shared by its ranks")
    pieces = Pieces(checkpoint, fingerprint(model, guide, x, cfg, family), shard)
    per = {}
    is_kw = dict(sample_chunk=cfg.sample_chunk, progress=progress)
    where = "[1/4] L[q] and IWAE"
    try:
        log(f"{where}-{max(cfg.iwae_samples, cfg.elbo_samples)} with the amortized guide on {N} datapoints")

        def importance(c, s, e):
            # global row indices: a guide with per-datapoint parameters (a fitted AutoNormal) reads its rows
            r = importance_sample(model, guide, x[s:e], max(cfg.iwae_samples, cfg.elbo_samples), desc="L[q], IWAE",
                                  data_chunk=e - s, idx=torch.arange(s, e, device=x.device), **is_kw)
            out = {"amortized": r.elbo, "amortized_se": r.elbo_se, "iwae": r.iwae, "iwae_se": r.iwae_se,
                   "iwae_ess": r.ess, "psis_khat": r.khat}
            if hasattr(guide, "uncertainty"):  # a family's own per-point measure of its encoder's uncertainty
                with torch.no_grad():
                    out["uncertainty"] = guide.uncertainty(x[s:e])
            return out

        per.update(pieces.chunked("importance", cfg.seed, N, cfg.data_chunk, importance))

        if cfg.ais:
            where = "[2/4] AIS"
            log(f"{where}: {cfg.ais_chains} chains × {cfg.ais_steps} steps × {cfg.ais_leapfrog} leapfrog "
                f"({cfg.ais_schedule} schedule, {cfg.ais_step_size} step sizes), {cfg.ais_data_chunk} datapoints at a time")

            def anneal(c, s, e):
                a = ais(model, x[s:e], num_chains=cfg.ais_chains, num_steps=cfg.ais_steps,
                        leapfrog_steps=cfg.ais_leapfrog, schedule=cfg.ais_schedule, step_size=cfg.ais_step_size,
                        pilot_chains=cfg.ais_pilot_chains, init_step_size=cfg.ais_init_step_size,
                        data_chunk=e - s, progress=progress, fast=cfg.ais_fast,
                        gradient_dtype=cfg.gradient_dtype)
                return {"ais": a.log_px, "ais_se": a.se, "ais_ess": a.ess, "ais_accept": a.accept_rate,
                        "ais_step_size": a.step_sizes.mean(0) if a.step_sizes.numel() else torch.zeros_like(a.log_px)}

            per.update(pieces.chunked("ais", cfg.seed, N, cfg.ais_data_chunk, anneal))

        lchunk = cfg.local_data_chunk or N
        for i, fam_name in enumerate(cfg.families):
            where = f"[3/4] local optimization of family {fam_name!r}"
            log(f"{where} ({i + 1}/{len(cfg.families)}), {lchunk} datapoints at a time")

            def optimize_and_score(c, s, e, fam_name=fam_name):
                # the initialization is random for some families: seeded by the piece (Pieces.chunked)
                local = get_family(fam_name).make_local(model, e - s, **cfg.family_options.get(fam_name, {}))
                local = local.to(dtype=x.dtype, device=x.device)
                if cfg.local_init == "encoder":
                    local.init_from_amortized(guide, x[s:e])
                key = f"local-{fam_name}-{c}-state"
                state = pieces.get(key)
                t0, before = time.perf_counter(), state["seconds"] if state else 0.0
                if state is None or not state.get("done"):
                    def save_state(st):
                        pieces.put(key, {**st, "seconds": before + time.perf_counter() - t0})

                    res = optimize_local(model, local, x[s:e], num_samples=cfg.local_samples, lr=cfg.local_lr,
                                         max_steps=cfg.local_max_steps, check_every=cfg.local_check_every,
                                         patience=cfg.local_patience, progress=progress, desc=f"local {fam_name}",
                                         state=state, save_state=save_state, fast=cfg.local_fast,
                                         gradient_dtype=cfg.gradient_dtype)
                    state = {"guide": local.state_dict(), "steps": res.steps, "converged": res.converged,
                             "done": True, "seconds": before + time.perf_counter() - t0}
                    pieces.put(key, state)  # scoring may be interrupted: the optimum is kept
                local.load_state_dict(state["guide"])
                torch.manual_seed(stable_seed(cfg.seed, f"score-{fam_name}", c))  # whether or not it resumed
                r = importance_sample(model, local, x[s:e], cfg.elbo_samples, psis=False, desc=f"L[q*_{fam_name}]",
                                      data_chunk=e - s, **is_kw)
                return ({f"local:{fam_name}": r.elbo, f"local_se:{fam_name}": r.elbo_se,
                         f"steps:{fam_name}": state["steps"], f"converged:{fam_name}": state["converged"]},
                        before)

            per.update(pieces.chunked(f"local-{fam_name}", cfg.seed, N, lchunk, optimize_and_score))
            for c in range(-(-N // lchunk)):  # a chunk's optimizer state goes once its piece is saved
                if pieces.has(f"local-{fam_name}-{c}"):
                    pieces.drop(f"local-{fam_name}-{c}-state")
    except KeyboardInterrupt:
        kept = (f"the finished parts are kept in {str(pieces.folder)!r}: rerun the same command to resume"
                if pieces.folder is not None else "nothing was kept (no checkpoint folder)")
        raise Interrupted(f"interrupted during {where}; {kept}") from None

    if pieces.missing:  # the first pass of a sharded evaluation: other ranks' pieces are still coming
        return None
    log("[4/4] gaps")
    if cfg.ais:
        per["ais_minus_iwae"] = per["ais"] - per["iwae"]
    estimator = cfg.log_px_estimator
    per["log_px"] = (per["iwae"] if estimator == "iwae" else per["ais"] if estimator == "ais"
                     else torch.maximum(per["ais"], per["iwae"]))
    for f in cfg.families:
        per[f"approximation:{f}"] = per["log_px"] - per[f"local:{f}"]
        per[f"amortization:{f}"] = per[f"local:{f}"] - per["amortized"]
    per["inference"] = per["log_px"] - per["amortized"]
    per = {k: (v.detach().cpu().numpy() if torch.is_tensor(v) else np.asarray(v)) for k, v in per.items()}
    approx_fam = family if family in cfg.families else cfg.families[0]
    # compute time per stage, summed over the processes that computed its pieces (a resumed evaluation
    # reports what the whole evaluation cost, not what its last process did)
    meta = {**provenance(), "seconds": pieces.seconds, "num_points": N, "log_px_estimator": estimator}
    return GapReport(family=family, approx_family=approx_fam, per_point=per, config=cfg.to_dict(), meta=meta)
