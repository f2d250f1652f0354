r"""Cremer, Li & Duvenaud (2018), Figure 2: true and approximate posteriors of a VAE with a 2-d latent.

A Bernoulli VAE with :math:`\dim z = 2` and the paper's decoder 2-100-784 (one tanh hidden layer) is
trained with the ELBO and an FFG encoder on binarized MNIST. For ``--num-points`` seeded test images
the true posterior :math:`p(z\mid x)` is tabulated on a grid (:mod:`pyro_vaegap.estimators.grid`) and drawn with

* the amortized FFG :math:`q(z\mid x)` (the encoder),
* the optimal FFG :math:`q^*_\mathrm{FFG}` and the optimal auxiliary flow :math:`q^*_\mathrm{flow}`
  (free parameters per image, fitted from the prior with :func:`pyro_vaegap.estimators.local.optimize_local`:
  100 samples per step, Adam lr 1e-3, the appendix 6.4 stopping rule — the paper's settings).

Per image it reports :math:`\log p(x)` by adaptive quadrature (exact up to a checked refinement
error), :math:`\mathcal L[q]`, :math:`\mathcal L[q^*_\mathrm{FFG}]`, :math:`\mathcal L[q^*_\mathrm{flow}]`
(each from ``--eval-samples`` draws, with its Monte Carlo standard error) and the gaps, and per
posterior two shape numbers: the KL divergence from the grid posterior to its moment-matched Gaussian
(0 for a Gaussian posterior) and the distance of each approximation's mean from the posterior mean in
posterior standard deviations. The flow's marginal :math:`q(z_T)` has no closed form (its auxiliary
:math:`v` is integrated out), so its contours are those of a histogram of ``--flow-draws`` draws.

Profiles: ``paper`` trains on all 50,000 images for 3000 epochs, lr 1e-4, batch 50 (the paper's);
``cpu`` (default) trains on a seeded 10,000-image subset for 100 epochs at lr 1e-3, batch 50
(about 15 minutes on one busy core); ``--quick`` is a smoke run whose numbers mean nothing::

    python -m experiments.cremer_fig2 --data-dir ../shared/data --out docs/results/cremer_fig2
"""
from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.estimators.importance import importance_sample
from pyro_vaegap.estimators.grid import adaptive_grid_log_px, grid_log_posterior
from pyro_vaegap.estimators.grid_windows import posterior_windows
from pyro_vaegap.estimators.local import optimize_local
from pyro_vaegap.contract.registry import get_family
from pyro_vaegap.runs import TrainConfig
from pyro_vaegap.utils import set_seed

from pyro_vaegap.harness import (Profiles, Progress, Setting, make_parser, markdown_table, parse_args, run_main,
                                 save_figure, train_run, write_results)

NAME = "cremer_fig2"
#: the evaluation every profile but quick uses (the paper's local optimization, 5000 draws)
EVALUATION = {"local_samples": 100, "local_max_steps": 50_000, "check_every": 100, "eval_samples": 5000,
              "flow_hidden": 100, "flow_draws": 100_000, "figure_nodes": 201, "coarse_spacing": 0.05, "levels": 2}
#: what the smoke run changes in the evaluation
QUICK = {"local_samples": 10, "local_max_steps": 200, "check_every": 50, "eval_samples": 200, "flow_hidden": 16,
         "flow_draws": 5000, "figure_nodes": 41, "coarse_spacing": 0.25, "levels": 1}
PROFILES = Profiles(
    profiles={"cpu": {"num_train": 10_000, "epochs": 100, "lr": 1e-3, **EVALUATION},
              "paper": {"num_train": None, "epochs": 3000, "lr": 1e-4, **EVALUATION},
              "quick": {"num_train": 300, "epochs": 2, "lr": 1e-3, **QUICK}},
    settings={
        "num_train": Setting(int, "training images (a seeded subset; None: all 50,000)"),
        "epochs": Setting(int, "training epochs (paper 3000)"),
        "lr": Setting(float, "Adam learning rate of the training (paper 1e-4)"),
        "local_samples": Setting(int, "samples per local-optimization step (paper 100)"),
        "local_max_steps": Setting(int, "cap on local-optimization steps"),
        "check_every": Setting(int, "stopping-rule window (paper 100; patience 10)"),
        "eval_samples": Setting(int, "draws for L[q] and L[q*] (paper 5000)"),
        "flow_hidden": Setting(int, "width of the per-image flow networks (paper 100)"),
        "flow_draws": Setting(int, "draws of q*_flow for its contour histogram"),
        "figure_nodes": Setting(int, "grid nodes per axis of each plotted posterior"),
        "coarse_spacing": Setting(float, "spacing of the quadrature's coarse grid"),
        "levels": Setting(int, "quadrature refinement levels (4x finer each)"),
    },
    default="cpu", help={"cpu": "10,000 images, 100 epochs at lr 1e-3", "paper": "all images, 3000 epochs at lr 1e-4"})


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0], profiles=PROFILES)
    p.set_defaults(out="docs/results/cremer_fig2")
    p.add_argument("--trained-with", default="ffg", choices=("ffg", "flow"),
                   help="the encoder the VAE is trained with: ffg, or the auxiliary flow on an FFG base (the paper "
                        "shows both)")
    p.add_argument("--data-dir", default=None, help="folder with binarized_mnist.npz (else $PYRO_VAEGAP_DATA)")
    p.add_argument("--runs", default=None, help="training run folder (default runs/cremer_fig2_PROFILE; reused when "
                                                "finished, resumed when interrupted)")
    p.add_argument("--num-points", type=int, default=4, help="seeded test images (the paper shows 4)")
    p.add_argument("--local-lr", type=float, default=1e-3, help="local-optimization Adam lr (paper 1e-3)")
    return p


def train_config(args) -> TrainConfig:
    return TrainConfig(dataset="binarized_mnist", data_dir=args.data_dir, num_train=args.num_train,
                       model="bernoulli", latent_dim=2, hidden=100, decoder_layers=1, activation="tanh",
                       guide=args.trained_with,
                       guide_options={"hidden": 200, "layers": 2, "activation": "elu",
                                      **({"flow_hidden": args.flow_hidden} if args.trained_with == "flow" else {})},
                       epochs=args.epochs, batch_size=50, lr=args.lr, num_valid=1000, seed=args.seed)


def fit_local(model, family: str, x, args, **options):
    """The optimal ``family`` approximation of each row of ``x``, fitted from the prior (the paper's start)."""
    local = get_family(family).make_local(model, x.shape[0], **options).to(x.device)
    res = optimize_local(model, local, x, num_samples=args.local_samples, lr=args.local_lr,
                         max_steps=args.local_max_steps, check_every=args.check_every, patience=10)
    return local, res


@torch.no_grad()
def shape_numbers(axes, log_post, means: dict) -> dict:
    r"""From a grid posterior ``log_post`` ``(n, n)`` on ``axes`` ``(2, n)``: its mean and covariance, the KL
    divergence to its moment-matched Gaussian, and each of ``means``' distance from its mean in the
    posterior's Mahalanobis metric (posterior standard deviations)."""
    h2 = float((axes[0, 1] - axes[0, 0]) * (axes[1, 1] - axes[1, 0]))
    z = torch.cartesian_prod(axes[0], axes[1]).double()
    lp = log_post.reshape(-1).double()
    w = torch.softmax(lp, 0)  # grid-cell probabilities
    mean = w @ z
    cov = (w[:, None] * (z - mean)).T @ (z - mean)
    gauss = torch.distributions.MultivariateNormal(mean, cov)
    kl = float((w * (torch.log_softmax(lp, 0) - (gauss.log_prob(z) + math.log(h2)))).sum())
    prec = torch.linalg.inv(cov)
    dist = {k: float(((m.double() - mean) @ prec @ (m.double() - mean)).sqrt()) for k, m in means.items()}
    return {"mean": mean.tolist(), "cov": cov.tolist(), "kl_to_gaussian": kl, "mean_distance": dist}


def _histogram(z: torch.Tensor, axes: torch.Tensor):
    """``numpy.histogram2d`` of draws ``z`` ``(num, 2)`` over the window of the grid ``axes`` ``(2, n)``, 60 bins a side."""
    z, a0, a1 = z.double().cpu().numpy(), axes[0].cpu().numpy(), axes[1].cpu().numpy()
    return np.histogram2d(z[:, 0], z[:, 1], bins=60, range=[[a0[0], a0[-1]], [a1[0], a1[-1]]])


def figure(panels, rows_info, labels, encoder: str):
    import matplotlib.pyplot as plt

    n = len(panels)
    fig, axes = plt.subplots(2, n, figsize=(3.0 * n, 6.2), squeeze=False)
    levels = [0.05, 0.3, 0.7]
    for col, p in enumerate(panels):
        a0, a1 = p["axes"][0].cpu().numpy(), p["axes"][1].cpu().numpy()
        dens = np.exp((p["log_post"] - p["log_post"].max()).cpu().numpy())
        u, v = np.meshgrid(a0, a1, indexing="ij")
        for row in range(2):
            ax = axes[row, col]
            ax.contourf(a0, a1, dens.T, levels=levels + [1.01], cmap="Greens", alpha=0.8)
            drawn = (("amortized", "tab:red"), ("ffg", "tab:blue")) if row == 0 else (("flow", "tab:purple"),)
            for key, color in drawn:
                kind, data = p[key]
                if kind == "gauss":  # an FFG's density, exactly
                    loc, scale = data
                    q = np.exp(-0.5 * (((u - loc[0]) / scale[0]) ** 2 + ((v - loc[1]) / scale[1]) ** 2))
                    ax.contour(a0, a1, q.T, levels=levels, colors=color, linewidths=0.9)
                    ax.plot(*loc, "+", color=color)
                else:  # a flow's marginal q(z_T): a histogram of its draws
                    hist, e0, e1 = data
                    c0, c1 = (e0[1:] + e0[:-1]) / 2, (e1[1:] + e1[:-1]) / 2
                    if hist.max() > 0:
                        ax.contour(c0, c1, (hist / hist.max()).T, levels=levels, colors=color, linewidths=0.9)
            ax.set_xlim(a0[0], a0[-1]), ax.set_ylim(a1[0], a1[-1]), ax.set_aspect("equal")
            ax.tick_params(labelsize=6)
            r = rows_info[col]
            title = (f"{labels[row]}\nlog p(x) {r['log_px']:.2f}; " +
                     (f"L[q] {r['elbo_amortized']:.2f}, L[q*] {r['elbo_ffg']:.2f}" if row == 0
                      else f"L[q*_flow] {r['elbo_flow']:.2f}"))
            ax.set_title(title, fontsize=7)
    fig.suptitle(f"true posterior (green, 5/30/70 % of its peak); top: amortized {encoder} (red) and optimal FFG "
                 "(blue); bottom: optimal flow (purple); flows drawn from histograms of draws", fontsize=8)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv, positive=("num_points", "local_samples", "local_lr", "local_max_steps",
                                              "check_every", "flow_hidden", "eval_samples", "flow_draws",
                                              "figure_nodes", "coarse_spacing", "epochs", "lr", "num_train"),
                      nonneg=("levels",), profiles=PROFILES)
    device = args.device
    out, progress = Path(args.out), Progress(args.quiet)
    cfg = train_config(args)
    suffix = "" if args.trained_with == "ffg" else f"_{args.trained_with}"
    runs = Path(args.runs or f"runs/{NAME}_{args.profile}{suffix}")
    model, guide, train_secs = train_run(cfg, runs, progress, device)
    x_all = load_dataset("binarized_mnist", "test", data_dir=args.data_dir)
    rows = seeded_subset(x_all.shape[0], args.num_points, args.seed)
    x = model.validate_data(x_all[rows].to(device))

    progress("true posteriors: adaptive quadrature of log p(x)")
    log_px, info = adaptive_grid_log_px(model, x, lim=8.0, spacing=args.coarse_spacing, refine=4, levels=args.levels)
    set_seed(args.seed)
    progress("optimal FFG and flow per image (local optimization from the prior)")
    ffg, ffg_res = fit_local(model, "ffg", x, args)
    flow, flow_res = fit_local(model, "flow", x, args, flow_hidden=args.flow_hidden)
    progress("bounds")
    bounds = {}
    for key, q in (("amortized", guide), ("ffg", ffg), ("flow", flow)):
        set_seed(args.seed)
        bounds[key] = importance_sample(model, q, x, args.eval_samples, psis=False)
    with torch.no_grad():
        if args.trained_with == "ffg":
            amort_loc, amort_scale = guide.encode(x)
        else:  # an amortized flow: drawn as a histogram, like the optimal flow
            amort_z = _flow_draws(guide, x, args.flow_draws)
            amort_loc = amort_z.mean(0)
        set_seed(args.seed)
        flow_z = _flow_draws(flow, x, args.flow_draws)

    progress("figure windows and shape numbers")
    # each window: where p(x, z) is within 8 nats of its peak
    centers, halves, _ = posterior_windows(model, x, 8.0, 0.1, 8.0)
    panels, per_point = [], []
    for i in range(x.shape[0]):
        loc_i = {"amortized": amort_loc[i], "ffg": ffg.loc[i].detach()}
        pts = torch.stack([centers[i] - halves[i], centers[i] + halves[i]] +
                          [m.double().cpu() for m in loc_i.values()])
        lo, hi = pts.min(0).values, pts.max(0).values
        half = float((hi - lo).max()) / 2 * 1.1
        axes, log_post, _ = grid_log_posterior(model, x[i:i + 1], lim=half, n=args.figure_nodes,
                                               center=((lo + hi) / 2).to(x.dtype))
        axes, log_post = axes.cpu(), log_post[0].cpu()
        flow_mean = flow_z[:, i].double().cpu().mean(0)
        shapes = shape_numbers(axes, log_post, {**{k: v.cpu() for k, v in loc_i.items()}, "flow": flow_mean})
        amortized = (("gauss", (amort_loc[i].cpu().numpy(), amort_scale[i].cpu().numpy()))
                     if args.trained_with == "ffg" else ("hist", _histogram(amort_z[:, i], axes)))
        panels.append({"axes": axes, "log_post": log_post, "flow": ("hist", _histogram(flow_z[:, i], axes)),
                       "amortized": amortized,
                       "ffg": ("gauss", (ffg.loc[i].detach().cpu().numpy(), ffg.scale[i].detach().cpu().numpy()))})
        r = {"test_row": int(rows[i]), "log_px": float(log_px[i]),
             "log_px_last_refinement": float(info["estimates"][i, -1] - info["estimates"][i, -2])
             if args.levels else None}
        for key in ("amortized", "ffg", "flow"):
            r[f"elbo_{key}"], r[f"elbo_{key}_se"] = float(bounds[key].elbo[i]), float(bounds[key].elbo_se[i])
        r["iwae_amortized"] = float(bounds["amortized"].iwae[i])
        r["approximation_gap_ffg"] = r["log_px"] - r["elbo_ffg"]
        r["approximation_gap_flow"] = r["log_px"] - r["elbo_flow"]
        r["amortization_gap_ffg"] = r["elbo_ffg"] - r["elbo_amortized"]
        r["amortization_gap_flow"] = r["elbo_flow"] - r["elbo_amortized"]
        r["inference_gap"] = r["log_px"] - r["elbo_amortized"]
        r["steps_ffg"], r["steps_flow"] = int(ffg_res.steps[i]), int(flow_res.steps[i])
        r["converged_ffg"], r["converged_flow"] = bool(ffg_res.converged[i]), bool(flow_res.converged[i])
        r["posterior"] = shapes
        r["amortized_q"] = ({"loc": amort_loc[i].tolist(), "scale": amort_scale[i].tolist()}
                            if args.trained_with == "ffg" else {"mean_of_draws": amort_loc[i].tolist()})
        r["optimal_ffg"] = {"loc": ffg.loc[i].tolist(), "scale": ffg.scale[i].tolist()}
        per_point.append(r)
    enc = "FFG" if args.trained_with == "ffg" else "flow"
    save_figure(figure(panels, per_point, [f"amortized {enc} and optimal FFG", "optimal flow"], enc), out / "fig2.png")

    def mean_of(k):
        return float(np.mean([r[k] for r in per_point]))

    summary = {k: mean_of(k) for k in ("log_px", "elbo_amortized", "elbo_ffg", "elbo_flow", "approximation_gap_ffg",
                                       "approximation_gap_flow", "amortization_gap_ffg", "amortization_gap_flow",
                                       "inference_gap")}
    checks = {
        "posterior_non_gaussian_points": sum(r["posterior"]["kl_to_gaussian"] > 0.05 for r in per_point),
        "flow_better_than_ffg_points": sum(r["elbo_flow"] - r["elbo_ffg"] > 2 * math.hypot(r["elbo_flow_se"], r["elbo_ffg_se"])
                                           for r in per_point),
        "amortized_mean_further_than_optimal_points": sum(
            r["posterior"]["mean_distance"]["amortized"] > r["posterior"]["mean_distance"]["ffg"] for r in per_point),
        "quadrature_edge_points": int(sum(info["edge"])),
    }
    results = {"train": {"config": asdict(cfg), "seconds": train_secs,
                         "profile": args.profile},
               "local": {"samples": args.local_samples, "lr": args.local_lr, "check_every": args.check_every,
                         "patience": 10, "max_steps": args.local_max_steps, "init": "prior",
                         "flow_hidden": args.flow_hidden},
               "quadrature": {"lim": 8.0, "coarse_spacing": args.coarse_spacing, "refine": 4, "levels": args.levels,
                              "finest_spacing": info["spacing"]},
               "points": per_point, "mean": summary, "checks": checks}
    table = [[r["test_row"], f"{r['log_px']:.2f}", f"{r['elbo_amortized']:.2f} ± {r['elbo_amortized_se']:.2f}",
              f"{r['elbo_ffg']:.2f} ± {r['elbo_ffg_se']:.2f}", f"{r['elbo_flow']:.2f} ± {r['elbo_flow_se']:.2f}",
              f"{r['approximation_gap_ffg']:.2f}", f"{r['approximation_gap_flow']:.2f}",
              f"{r['amortization_gap_ffg']:.2f}", f"{r['amortization_gap_flow']:.2f}",
              f"{r['posterior']['kl_to_gaussian']:.3f}",
              f"{r['posterior']['mean_distance']['amortized']:.2f} / {r['posterior']['mean_distance']['ffg']:.2f} / "
              f"{r['posterior']['mean_distance']['flow']:.2f}", f"{r['steps_ffg']} / {r['steps_flow']}"]
             for r in per_point]
    encoder = ("FFG encoder 784-200-200-(2+2) (ELU)" if args.trained_with == "ffg" else
               f"auxiliary-flow encoder (FFG base 784-200-200-(2+2), ELU; 2 coupling steps of width {args.flow_hidden})")
    md = (f"Bernoulli VAE, dim z = 2, decoder 2-100-784 (tanh), {encoder}, trained with the "
          f"ELBO for {cfg.epochs} epochs on {cfg.num_train or 50000} binarized MNIST images (lr {cfg.lr}, batch "
          f"{cfg.batch_size}; profile {results['train']['profile']}). {args.num_points} seeded test images. log p(x) by "
          f"adaptive quadrature (finest spacing {info['spacing']:.3g}); L[·] from {args.eval_samples} draws "
          f"(± Monte Carlo s.e.); q* fitted from the prior with {args.local_samples} samples/step, lr {args.local_lr}, "
          f"stopping rule {args.check_every}/10. 'KL→Gauss': KL(p(z|x) ‖ its moment-matched Gaussian); 'mean dist': "
          "distance of the amortized / optimal FFG / optimal flow mean from the posterior mean, in posterior "
          "standard deviations (Mahalanobis).\n\n")
    md += markdown_table(["test row", "log p(x)", "L[q]", "L[q*_FFG]", "L[q*_flow]", "approx. gap FFG",
                          "approx. gap flow", "amort. gap FFG", "amort. gap flow", "KL→Gauss", "mean dist q / q*_FFG / q*_flow",
                          "steps FFG / flow"], table)
    md += ("\nMeans over the points: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.items()) + ".\n\n"
           f"Checks: {checks}\n\nFigure: fig2.png\n")
    write_results(out, NAME, args, results, md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


@torch.no_grad()
def _flow_draws(flow, x, num: int) -> torch.Tensor:
    """``num`` draws of :math:`z_T` from a flow guide (per-image or amortized: anything with ``parts(x)``) for each
    row of ``x``: ``(num, N, 2)``, in chunks of 10,000 (the networks hold ``chunk × N × flow_hidden`` activations)."""
    from pyro import poutine

    from pyro_vaegap.models import data_plate
    from pyro_vaegap.estimators.traces import sample_plate

    parts, out = flow.parts(x), []
    for k in range(0, num, 10_000):
        # block outermost: the plates must still broadcast the sites, but no outer handler should see them
        with poutine.block(), sample_plate(min(10_000, num - k)), data_plate(x):
            out.append(parts.sample())
    return torch.cat(out)


if __name__ == "__main__":
    run_main(main, None)
