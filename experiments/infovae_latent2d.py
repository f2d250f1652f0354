r"""InfoVAE Figs. 3–5 (Zhao, Song & Ermon, AAAI 2019): 2-d latents trained on 500 binarized MNIST images.

Two VAEs with dim z = 2 — Bernoulli decoder and FFG encoder, ELU MLPs 784-200-200 — are trained on the
same seeded 500 training images, one with the ELBO and one with the MMD InfoVAE (:math:`\lambda = 1000`,
:math:`\alpha = 0`), for ``--steps`` Adam steps each. With two latent dimensions everything can be
looked at and computed exactly:

* **the aggregate posterior** against the prior (``latent2d_aggregate.png``): encoder means and draws of
  the 500 training images (the binarized training split has no labels), and draws of seeded test images
  coloured by their digit class (``binarized_test_labels`` of ``mnist_test.npz``, exact); its
  :math:`\log\det\mathrm{Cov}` and MMD² against the prior;
* **approximate vs true posteriors** (``latent2d_posteriors.png``): for ``--posterior-points`` test
  images (taken in a seeded random order: the split is sorted by class), :math:`q(z\mid x)` against
  the true :math:`p(z\mid x)` on a grid (:func:`pyro_vaegap.estimators.grid.grid_log_posterior`); and for
  ``--grid-points`` test images the exact :math:`\log p(x)` by adaptive quadrature
  (:func:`~pyro_vaegap.estimators.grid.adaptive_grid_log_px`), so the inference gap
  :math:`\log p(x) - \mathcal L[q] = \mathrm{KL}(q(z\mid x)\Vert p(z\mid x))` is known up to the Monte
  Carlo error of :math:`\mathcal L[q]`;
* **samples vs reconstructions** (``latent2d_samples.png``): decoder means of prior draws, and of the
  encoder means of training and test images.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from pyro_vaegap.estimators.aggregate import encode, sample_aggregate
from pyro_vaegap.estimators.importance import importance_sample
from pyro_vaegap.estimators.grid import adaptive_grid_log_px, grid_log_posterior
from pyro_vaegap.estimators.grid_windows import posterior_windows
from pyro_vaegap.utils import set_seed

from pyro_vaegap.harness import (Profiles, Progress, Setting, evaluate, fmt, json_clean, make_parser, markdown_table,
                                 run_main, save_figure, train_run, write_results)
from pyro_vaegap.studies.infovae_mnist import (LABELS, OBJECTIVES, add_mnist_args, aggregate_summary, epochs_for,
                                               labelled_test_images, mnist_config, mnist_settings, parse_infovae_args,
                                               training_images)

NAME = "infovae_latent2d"
#: the default profile: the settings of the committed results
CPU = {"num_train": 500, "steps": 12_000, "hidden": 200, "num_valid": 1000, "num_test": 2000, "eval_samples": 500,
       "posterior_points": 6, "grid_points": 100, "coarse_lim": 10.0, "coarse_spacing": 0.1, "levels": 2,
       "figure_nodes": 301}
#: what the quick profile changes (a smoke run whose numbers mean nothing; its runs under OUT/runs)
QUICK = {"num_train": 200, "steps": 6, "hidden": 16, "num_valid": 50, "num_test": 40, "eval_samples": 8,
         "posterior_points": 2, "grid_points": 3, "coarse_lim": 6.0, "coarse_spacing": 0.5, "levels": 1,
         "figure_nodes": 31}
PROFILES = Profiles(
    profiles={"cpu": CPU, "quick": {**CPU, **QUICK}},
    settings={
        "num_train": Setting(int, "training images (a seeded subset of the 50,000)"),
        "steps": Setting(int, "Adam steps of each model"),
        **mnist_settings("hidden", "num_valid"),
        "num_test": Setting(int, "seeded test images: aggregate scatter, ELBO and IWAE"),
        "eval_samples": Setting(int, "importance samples per image (ELBO, IWAE)"),
        "posterior_points": Setting(int, "test images whose posteriors are plotted"),
        "grid_points": Setting(int, "test images whose log p(x) is computed on the grid"),
        "coarse_lim": Setting(float, "half-width of the coarse grid that locates each true posterior"),
        "coarse_spacing": Setting(float, "spacing of that coarse grid"),
        "levels": Setting(int, "adaptive quadrature: refinement levels (finest spacing: coarse spacing / "
                               "refine^levels)"),
        "figure_nodes": Setting(int, "nodes per axis of each plotted posterior"),
    },
    default="cpu", help={"cpu": "the committed results' settings"})


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0], profiles=PROFILES)
    p.add_argument("--lambda", dest="lambda_", type=float, default=1000.0, help="InfoVAE's lambda of the MMD model")
    add_mnist_args(p, runs=f"runs/{NAME}", latent_dim=2, profiles=PROFILES)
    p.add_argument("--margin", type=float, default=15.0,
                   help="adaptive quadrature: cells within this many nats of the peak (and their neighbours) are refined")
    p.add_argument("--refine", type=int, default=4, help="adaptive quadrature: sub-cells per axis of a refined cell")
    return p


@torch.no_grad()
def aggregate_figure(encoded: dict, labels: np.ndarray, lim: float, seed: int):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(encoded), 2, figsize=(10, 5 * len(encoded)), squeeze=False)
    gen = torch.Generator().manual_seed(seed)
    t = np.linspace(0, 2 * np.pi, 200)
    for row, (obj, e) in enumerate(encoded.items()):
        z_train = sample_aggregate(*e["train"], 4, gen).cpu().numpy()
        z_test = sample_aggregate(*e["test"], 1, gen).cpu().numpy()
        ax = axes[row, 0]
        ax.scatter(*z_train.T, s=1, color="0.6", label="draws of q(z|x), 4 per image")
        ax.scatter(*e["train"][0].cpu().numpy().T, s=4, color="k", label="encoder means")
        ax.set_title(f"{LABELS[obj]}: the {e['train'][0].shape[0]} training images (no labels)", fontsize=9)
        ax = axes[row, 1]
        sc = ax.scatter(*z_test.T, s=2, c=labels, cmap="tab10", vmin=-0.5, vmax=9.5)
        ax.set_title(f"{LABELS[obj]}: {len(labels)} test images, one draw each, by digit", fontsize=9)
        fig.colorbar(sc, ax=ax, ticks=range(10))
        for ax in axes[row]:
            for r in (1, 2, 3):
                ax.plot(r * np.cos(t), r * np.sin(t), color="purple", lw=0.6)
            ax.set_xlim(-lim, lim), ax.set_ylim(-lim, lim), ax.set_aspect("equal")
        axes[row, 0].legend(fontsize=7, loc="upper right")
    fig.suptitle("Aggregate posterior q(z) vs the prior N(0, I) (purple: radii 1, 2, 3)")
    fig.tight_layout()
    return fig


def posterior_figure(posteriors: dict):
    import matplotlib.pyplot as plt

    objs = list(posteriors)
    n = len(posteriors[objs[0]]["panels"])
    fig, axes = plt.subplots(len(objs), n, figsize=(2.6 * n, 2.8 * len(objs)), squeeze=False)
    for row, obj in enumerate(objs):
        p = posteriors[obj]
        for col, (grid_axes, logp, _) in enumerate(p["panels"]):
            ax = axes[row, col]
            a0, a1 = grid_axes[0].cpu().numpy(), grid_axes[1].cpu().numpy()
            dens = np.exp((logp - logp.max()).cpu().numpy())          # [i, j]: z = (a0_i, a1_j)
            loc, scale = p["loc"][col].cpu().numpy(), p["scale"][col].cpu().numpy()
            ax.contourf(a0, a1, dens.T, levels=[0.01, 0.1, 0.3, 0.6, 1.01], cmap="Greys")
            u, v = np.meshgrid(a0, a1, indexing="ij")
            q = np.exp(-0.5 * (((u - loc[0]) / scale[0]) ** 2 + ((v - loc[1]) / scale[1]) ** 2))
            if q.max() > 0.01:
                ax.contour(a0, a1, q.T, levels=[0.01, 0.1, 0.3, 0.6], colors="tab:red", linewidths=0.8)
            ax.plot(*loc, "+", color="tab:red")
            ax.set_xlim(a0[0], a0[-1]), ax.set_ylim(a1[0], a1[-1])
            ax.set_aspect("equal"), ax.tick_params(labelsize=6)
            ax.set_title(f"{LABELS[obj]}, digit {p['labels'][col]}: gap {p['gap'][col]:.2f}", fontsize=8)
    fig.suptitle("true posterior p(z|x) (grey, levels 1%-60% of its peak) vs q(z|x) (red, same levels relative to "
                 "its peak; + its mean)", fontsize=9)
    fig.tight_layout()
    return fig


@torch.no_grad()
def samples_figure(models: dict, x_train, x_test, seed: int):
    import matplotlib.pyplot as plt

    n = 12
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(n, 2, generator=gen)
    rows = []
    for obj, (model, guide) in models.items():
        mean = lambda zz: torch.sigmoid(model.likelihood(zz).base_dist.logits)  # noqa: E731
        rows += [(f"{LABELS[obj]}: samples (prior z)", mean(z)),
                 (f"{LABELS[obj]}: reconstructions, training", mean(guide.encode(x_train[:n])[0])),
                 (f"{LABELS[obj]}: reconstructions, test", mean(guide.encode(x_test[:n])[0]))]
    rows = [("training images", x_train[:n]), ("test images", x_test[:n])] + rows
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 0.9, len(rows) * 1.05))
    for r, (title, imgs) in enumerate(rows):
        for c in range(n):
            axes[r, c].imshow(imgs[c].reshape(28, 28).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
            axes[r, c].axis("off")
        axes[r, 0].set_title(title, fontsize=8, loc="left")
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = build_parser()
    args = parse_infovae_args(parser, argv, PROFILES, nonneg=("alpha",),
                              positive=("num_train", "steps", "hidden", "layers", "batch_size", "lr", "num_valid",
                                "num_test", "eval_samples", "posterior_points", "grid_points", "coarse_lim",
                                "coarse_spacing", "margin", "refine", "figure_nodes"))
    if args.latent_dim != 2:
        parser.error(f"--latent-dim={args.latent_dim}: this experiment's grid posteriors need dim z = 2")
    if not args.posterior_points <= args.grid_points <= args.num_test <= 10_000:
        parser.error("expected --posterior-points <= --grid-points <= --num-test <= 10000")
    if args.refine < 2 or args.levels < 0:
        parser.error(f"--refine={args.refine} / --levels={args.levels}: expected --refine >= 2 and --levels >= 0")
    out, progress = Path(args.out), Progress(args.quiet)
    x_test, labels, _ = labelled_test_images(args.data_dir, args.num_test, args.seed)
    # a seeded random order: the subset comes sorted like the split, which is sorted by class, and the first
    # --grid-points and --posterior-points images must be a random sample of it, not its zeros
    order = torch.randperm(args.num_test, generator=torch.Generator().manual_seed(args.seed + 1))
    x_test, labels = x_test[order].to(args.device), labels[order.cpu().numpy()]
    epochs = epochs_for(args.steps, args.num_train, args.batch_size)
    models, encoded, results, rows, gap_rows = {}, {}, {}, [], []
    for obj in OBJECTIVES:
        cfg = mnist_config(args, obj, args.num_train, epochs, args.lambda_)
        model, guide, secs = train_run(cfg, Path(args.runs) / obj, progress, args.device)
        x_train = model.validate_data(training_images(cfg).to(args.device))
        models[obj] = (model, guide)
        encoded[obj] = {"train": encode(guide, x_train), "test": encode(guide, x_test)}
        set_seed(args.seed)
        train_ev = evaluate(model, guide, x_train, args.eval_samples)
        test_ev = evaluate(model, guide, x_test, args.eval_samples)
        results[obj] = {"epochs": epochs, "train_seconds": secs, "train_eval": train_ev, "test": test_ev,
                        "train_aggregate": aggregate_summary(guide, x_train, 10, args.seed),
                        "test_aggregate": aggregate_summary(guide, x_test, 10, args.seed)}
    lim = 1.0 + max(4.0, max(float(e[k][0].abs().max()) for e in encoded.values() for k in e))
    posteriors = {}
    for obj, (model, guide) in models.items():
        # exact log p(x) by adaptive quadrature, beside the ELBO and IWAE of the same images
        n = args.grid_points
        xg = x_test[:n]
        log_px, info = adaptive_grid_log_px(model, xg, lim=args.coarse_lim, spacing=args.coarse_spacing,
                                            refine=args.refine, levels=args.levels, margin=args.margin)
        est = info["estimates"]
        set_seed(args.seed)
        r = importance_sample(model, guide, xg, args.eval_samples, psis=False)
        gap = log_px - r.elbo.double()
        se = lambda v: float(v.std() / math.sqrt(len(v))) if len(v) > 1 else float("nan")  # noqa: E731
        results[obj]["grid"] = {
            "num_points": n, "coarse_lim": args.coarse_lim, "coarse_spacing": args.coarse_spacing,
            "margin": args.margin, "refine": args.refine, "levels": args.levels, "finest_spacing": info["spacing"],
            "posteriors_at_coarse_edge": int(sum(info["edge"])),
            "last_level_change_max_abs": float((est[:, -1] - est[:, -2]).abs().max()) if args.levels else None,
            "finest_cells_median": float(np.median(info["cells"])),
            "log_px": float(log_px.mean()), "log_px_se": se(log_px), "elbo": float(r.elbo.mean()),
            "iwae": float(r.iwae.mean()), "inference_gap": float(gap.mean()), "inference_gap_se": se(gap),
            "inference_gap_median": float(gap.median()),
            "iwae_minus_grid_max": float((r.iwae.double() - log_px).max()),
            "grid_minus_iwae_mean": float((log_px - r.iwae.double()).mean()),
            "per_point": {"log_px": log_px.tolist(), "elbo": r.elbo.tolist(), "iwae": r.iwae.tolist(),
                          "labels": labels[:n].tolist(), "estimates_by_level": est.tolist()}}
        g = results[obj]["grid"]
        progress(f"{LABELS[obj]}: grid log p(x) {log_px.mean():.2f}, ELBO {r.elbo.mean():.2f}, IWAE {r.iwae.mean():.2f}, "
                 f"exact inference gap {gap.mean():.2f} nats on {n} test images (last refinement changed log p(x) by "
                 f"at most {g['last_level_change_max_abs']} nats)")
        # the plotted posteriors: each on its window, widened to show q(z|x) within 6 times the window
        m = args.posterior_points
        centers, halves, _ = posterior_windows(model, xg[:m], args.coarse_lim, args.coarse_spacing, 25.0)
        loc, scale = encode(guide, xg[:m])
        panels = []
        for i in range(m):
            c, hw = centers[i], float(halves[i])
            lo = torch.minimum(c - hw, loc[i].double() - 2 * scale[i].double())
            hi = torch.maximum(c + hw, loc[i].double() + 2 * scale[i].double())
            half = min(float((hi - lo).max()) / 2, max(6 * hw, 0.5))
            axes, log_post, lp = grid_log_posterior(model, xg[i:i + 1], lim=half, n=args.figure_nodes,
                                                    center=(lo + hi) / 2)
            panels.append((axes, log_post[0], float(lp[0])))
        posteriors[obj] = {"panels": panels, "loc": loc, "scale": scale, "labels": labels[:m].tolist(),
                           "gap": gap[:m].tolist()}
        results[obj]["plotted_posteriors"] = {"points": m, "loc": loc.tolist(), "scale": scale.tolist(),
                                              "window_center": centers.tolist(), "window_half_width": halves.tolist()}
        g, ta, te = results[obj]["grid"], results[obj]["train_aggregate"], results[obj]["test_aggregate"]
        rows.append([LABELS[obj], epochs, fmt(-results[obj]["train_eval"]["neg_elbo_nats"]),
                     f"{-results[obj]['test']['neg_elbo_nats']:.2f} ± {results[obj]['test']['neg_elbo_nats_se']:.2f}",
                     f"{-results[obj]['test']['nll_nats']:.2f} ± {results[obj]['test']['nll_nats_se']:.2f}",
                     fmt(ta["log_det_cov_draws"]), fmt(te["log_det_cov_draws"]), fmt(ta["mmd2"], 4),
                     fmt(te["mmd2"], 4)])
        gap_rows.append([LABELS[obj], f"{g['log_px']:.2f} ± {g['log_px_se']:.2f}", fmt(g["iwae"]), fmt(g["elbo"]),
                         f"{g['inference_gap']:.2f} ± {g['inference_gap_se']:.2f}", fmt(g["inference_gap_median"]),
                         fmt(g["iwae_minus_grid_max"], 3), fmt(g["last_level_change_max_abs"], 4),
                         g["posteriors_at_coarse_edge"]])
    progress("figures")
    save_figure(aggregate_figure(encoded, labels, lim, args.seed), out / "latent2d_aggregate.png")
    save_figure(posterior_figure(posteriors), out / "latent2d_posteriors.png")
    save_figure(samples_figure(models, training_images(mnist_config(args, "elbo", args.num_train, epochs,
                                                                    args.lambda_)), x_test, args.seed),
                out / "latent2d_samples.png")
    md = (f"{args.num_train} binarized MNIST training images, dim z = 2, ELU MLPs "
          f"784-{'-'.join([str(args.hidden)] * args.layers)}, {args.steps} Adam steps per model ({epochs} epochs, lr "
          f"{args.lr}, batch {args.batch_size}); MMD-VAE: α = {args.alpha}, λ = {args.lambda_}. Nats; ELBO and IWAE "
          f"with k = {args.eval_samples} on all training images and on {args.num_test} seeded test images (± standard "
          "error over images). log det Cov[q(z)] (prior: 0) and MMD² of q(z) against the prior, over the training "
          "and the test images.\n\n")
    md += markdown_table(["objective", "epochs", "ELBO train", "ELBO test", "IWAE test", "log det train",
                          "log det test", "MMD² train", "MMD² test"], rows)
    g0 = results[OBJECTIVES[0]]["grid"]
    md += (f"\nExact log p(x) by adaptive quadrature (pyro_vaegap.grid.adaptive_grid_log_px) for the first "
           f"{g0['num_points']} of those test images: a grid over [−{args.coarse_lim:g}, {args.coarse_lim:g}]² with "
           f"spacing {args.coarse_spacing:g}, then {args.levels} levels of refinement ({args.refine}² sub-cells) of "
           f"every cell within {args.margin:g} nats of the peak and its neighbours, down to spacing "
           f"{g0['finest_spacing']:.2g}. Beside it the IWAE (k = {args.eval_samples}) and the ELBO of the same images; "
           "the inference gap log p(x) − ELBO = KL(q(z|x) ‖ p(z|x)) (mean ± standard error over images, and median). "
           "'max IWAE − grid': the largest excess of the IWAE (a lower bound) over the quadrature value; 'last "
           "refinement': the largest change of log p(x) in the last level; 'edge': posteriors with mass near the "
           "edge of the square. All three small when the quadrature is accurate.\n\n")
    md += markdown_table(["objective", "log p(x) (grid)", "IWAE", "ELBO", "inference gap", "median gap",
                          "max IWAE − grid", "last refinement", "edge"], gap_rows)
    md += "\nFigures: latent2d_aggregate.png, latent2d_posteriors.png, latent2d_samples.png\n"
    write_results(out, NAME, args, json_clean(results), md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
