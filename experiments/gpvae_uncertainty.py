r"""Kim & Pavlovic (2021), Fig. 1 made quantitative: does GPVAE's uncertainty flag the points its Gaussian encoder fits badly?

Trains a GPVAE (``gpvae``: FFG encoder plus linear-kernel GP noise, eq. 15) with a 2-d latent on
binarized MNIST, so that for every test point the true posterior :math:`p(z\mid x)` and
:math:`\log p(x)` are known by quadrature on a grid (:mod:`pyro_vaegap.estimators.grid`). For a seeded random
subset of test points it computes

* the GPVAE uncertainty :math:`u(x) = \mathrm{Tr}\,\mathbb V(f(x)\mid D) + \mathrm{Tr}\,\mathbb V(h(x)\mid D)`
  (:meth:`pyro_vaegap.guides.gpvae.GPVAEEncoder.uncertainty`);
* the FFG approximation gap :math:`\log p(x) - \mathcal L[q^*_{\mathrm{FFG}}]`, with :math:`\log p(x)` from
  the grid and :math:`q^*_{\mathrm{FFG}}` the per-datapoint FFG optimized by
  :func:`pyro_vaegap.estimators.local.optimize_local` (through :func:`pyro_vaegap.report.compute.gap_report`, which also gives
  :math:`\mathcal L[q]` of the GPVAE marginal and keeps every finished piece, so an interrupted run resumes);

and reports the Spearman rank correlation of the two, with a permutation p-value and a bootstrap
confidence interval (scipy), beside the same for the amortization gap
:math:`\mathcal L[q^*] - \mathcal L[q]`, the inference gap :math:`\log p(x) - \mathcal L[q]` and
:math:`\log p(x)` itself; and, to see what the GP noise does to the bound, :math:`\mathcal L[q_{\mathrm{base}}]`
of the base encoder :math:`\mathcal N(b(x), \mathrm{diag}\,c(x)^2)` alone. Figures: six test points at evenly spaced ranks of :math:`u` (lowest to highest)
with input, reconstruction, the grid posterior and the base encoder's :math:`q` and GPVAE's marginal
:math:`q` (``uncertainty_examples.png``), and :math:`u` against the gap for every point
(``uncertainty_vs_gap.png``).

Profiles: ``cpu`` (default; 10,000 training images, 100 epochs at lr 3e-4, MLP networks, 300 test points, local
optimization with 10 samples per step from the encoder's output, at most 6000 steps), ``paper``
(paper-scale: all 50,000 training images, the convolutional networks, 1000 test points, local
optimization as Cremer et al.: 100 samples per step from the prior, at most 50,000 steps) and
``--quick`` (a smoke run whose numbers mean nothing). Single options override the profile.
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import torch

from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.estimators.importance import importance_sample
from pyro_vaegap.report.compute import gap_report
from pyro_vaegap.report.config import GapConfig
from pyro_vaegap.estimators.grid import grid_posterior
from pyro_vaegap.runs import TrainConfig
from pyro_vaegap.utils import FolderLock, set_seed

from pyro_vaegap.harness import Profiles, Setting, Progress, make_parser, markdown_table, parse_args, run_main, save_figure, train_run, write_results

NAME = "gpvae_uncertainty"
#: profile → settings (single options override them)
PROFILES = {
    "cpu": dict(num_train=10_000, epochs=100, lr=3e-4, arch="mlp", num_points=300, eval_samples=5000, local_samples=10,
                local_max_steps=6000, local_init="encoder", grid_lim=12.0, grid_n=1201),
    "paper": dict(num_train=None, epochs=200, lr=3e-4, arch="conv", num_points=1000, eval_samples=5000, local_samples=100,
                  local_max_steps=50_000, local_init="prior", grid_lim=12.0, grid_n=1201),
    "quick": dict(num_train=500, epochs=2, lr=1e-3, arch="mlp", num_points=12, eval_samples=50, local_samples=3,
                  local_max_steps=40, local_init="encoder", grid_lim=5.0, grid_n=61),
}
SETTINGS = Profiles(PROFILES, {
    "num_train": Setting(int, "training images (seeded subset)"), "epochs": Setting(int, "training epochs"),
    "lr": Setting(float, "Adam learning rate (at 1e-3 the GPVAE objective oscillated and diverged in our runs)"),
    "arch": Setting(str, "encoder and decoder networks", choices=("mlp", "conv")),
    "num_points": Setting(int, "seeded random test points"),
    "eval_samples": Setting(int, "samples of L[q], IWAE and L[q*] per point"),
    "local_samples": Setting(int, "samples per step of the local FFG optimization"),
    "local_max_steps": Setting(int, "cap on local-optimization steps"),
    "local_init": Setting(str, "start of q*_FFG", choices=("prior", "encoder")),
    "grid_lim": Setting(float, "the grid covers [-lim, lim]²"),
    "grid_n": Setting(int, "grid points per axis (spacing 2 lim / (n - 1))")},
    default="cpu", help={"cpu": "10k images, 100 epochs, MLP, 300 points, local FFG 10 samples/step from the encoder "
                                "(≤ 6000 steps)",
                         "paper": "50k images, conv, 1000 points, 100 samples/step from the prior"})
NUM_EXAMPLES = 6


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0], SETTINGS)
    p.add_argument("--data-dir", help="folder with binarized_mnist.npz (else $PYRO_VAEGAP_DATA)")
    p.add_argument("--hidden", type=int, default=200, help="hidden width of encoder and decoder (2 layers, ELU)")
    p.add_argument("--permutations", type=int, default=10_000, help="permutations of the p-values")
    p.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples of the confidence intervals")
    return p


def settings(args) -> dict:
    """The chosen profile's settings, with the options given on the command line in place."""
    return SETTINGS.apply(args)


def spearman(a, b, permutations: int, bootstrap: int, seed: int) -> dict:
    """Spearman's ρ of paired samples, its two-sided permutation p-value and a 95 % bootstrap (BCa) interval."""
    from scipy import stats

    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)

    def rho(u, v):
        return stats.spearmanr(u, v).statistic

    perm = stats.permutation_test((a, b), rho, permutation_type="pairings", n_resamples=permutations,
                                  alternative="two-sided", random_state=seed)
    boot = stats.bootstrap((a, b), rho, paired=True, vectorized=False, n_resamples=bootstrap, confidence_level=0.95,
                           random_state=seed)
    return {"rho": float(rho(a, b)), "p_permutation": float(perm.pvalue), "p_asymptotic": float(stats.spearmanr(a, b).pvalue),
            "ci95": [float(boot.confidence_interval.low), float(boot.confidence_interval.high)],
            "permutations": permutations, "bootstrap": bootstrap}


def example_rows(u: np.ndarray, k: int = NUM_EXAMPLES) -> list[int]:
    """Indices of ``k`` points at evenly spaced ranks of ``u``, lowest to highest."""
    order = np.argsort(u, kind="stable")
    return [int(order[round(q * (len(u) - 1))]) for q in np.linspace(0, 1, k)]


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv, positive=("hidden", "permutations", "bootstrap"))
    s = settings(args)
    for k in ("num_train", "epochs", "lr", "num_points", "eval_samples", "local_samples", "local_max_steps", "grid_n"):
        if s[k] is not None and s[k] <= 0:
            parser.error(f"--{k.replace('_', '-')}={s[k]} is not allowed: it must be > 0")
    if s["grid_lim"] <= 0 or s["grid_n"] < 3:
        parser.error("--grid-lim must be > 0 and --grid-n >= 3")
    if args.quick:
        args.permutations, args.bootstrap = min(args.permutations, 200), min(args.bootstrap, 100)
    out, progress = Path(args.out), Progress(args.quiet)
    x_test = load_dataset("binarized_mnist", "test", data_dir=args.data_dir).to(args.device)
    if s["num_points"] > x_test.shape[0]:
        parser.error(f"--num-points={s['num_points']} is not allowed: the test split has {x_test.shape[0]} images")
    cfg = TrainConfig(dataset="binarized_mnist", data_dir=args.data_dir, num_train=s["num_train"], latent_dim=2,
                      hidden=args.hidden, decoder_layers=2, activation="elu", arch=s["arch"], guide="gpvae",
                      guide_options={"hidden": args.hidden, "layers": 2, "activation": "elu"}, objective="elbo",
                      epochs=s["epochs"], batch_size=100, lr=s["lr"], seed=args.seed)
    run_dir = out / "runs" / f"gpvae_z2_{'quick' if args.quick else args.profile}"
    model, guide, train_seconds = train_run(cfg, run_dir, progress, args.device)
    test_index = seeded_subset(x_test.shape[0], s["num_points"], args.seed)
    x = model.validate_data(x_test[test_index])
    with torch.no_grad():
        u = guide.uncertainty(x).double().cpu().numpy()
        mo = guide.moments(x)
    examples = example_rows(u)

    progress(f"grid: {s['grid_n']}² points over [-{s['grid_lim']}, {s['grid_lim']}]² for {len(x)} test points")
    grid = grid_posterior(model, x, s["grid_lim"], s["grid_n"], keep=examples)
    coarse = grid_posterior(model, x, s["grid_lim"], (s["grid_n"] + 1) // 2)
    grid_check = float((grid.log_px - coarse.log_px).abs().max())
    progress(f"grid: max |log p(x) at spacing {grid.spacing:.4g} − at twice that| = {grid_check:.2e} nats; smallest "
             f"posterior std {float(grid.min_std.min()):.4f}; largest edge mass {float(grid.edge_mass.max()):.2e}")

    gcfg = GapConfig(families=("ffg",), iwae_samples=s["eval_samples"], elbo_samples=s["eval_samples"], ais=False,
                     log_px="iwae", local_samples=s["local_samples"], local_max_steps=s["local_max_steps"],
                     local_check_every=10 if args.quick else 100, local_init=s["local_init"], seed=args.seed)
    partial = out / "gaps.partial"
    with FolderLock(partial, "evaluation checkpoint folder"):
        rep = gap_report(model, guide, x, gcfg, family="gpvae", progress=not args.quiet,
                         log=None if args.quiet else progress, checkpoint=partial)
    p = rep.per_point
    set_seed(args.seed)  # the base encoder's q = N(b(x), c(x)²), GPVAE without its noise
    base_elbo = importance_sample(model, guide.base, x, s["eval_samples"], psis=False).elbo.double().cpu().numpy()
    log_px = grid.log_px.cpu().numpy()
    gaps = {"approximation": log_px - p["local:ffg"], "amortization": p["local:ffg"] - p["amortized"],
            "inference": log_px - p["amortized"], "log_px": log_px}
    set_seed(args.seed)
    corr = {k: spearman(u, v, args.permutations, args.bootstrap, args.seed) for k, v in gaps.items()}
    n = len(x)
    se_star = np.asarray(p["local_se:ffg"])

    def ms(v):
        v = np.asarray(v, dtype=float)
        return float(v.mean()), float(v.std(ddof=1) / math.sqrt(len(v))) if len(v) > 1 else float("nan")

    results = {
        "settings": s, "train_config": cfg.to_dict(), "train_seconds": train_seconds,
        "training": training_summary(run_dir),
        "grid": {"lim": s["grid_lim"], "n": s["grid_n"], "spacing": grid.spacing,
                 "max_abs_diff_half_resolution": grid_check, "min_posterior_std": float(grid.min_std.min()),
                 "max_edge_mass": float(grid.edge_mass.max())},
        "local": {"steps_median": float(np.median(p["steps:ffg"])), "steps_max": int(np.max(p["steps:ffg"])),
                  "stopped_by_rule": int(np.sum(p["converged:ffg"])),
                  "negative_approximation_gaps_beyond_2se": int(np.sum(gaps["approximation"] < -2 * se_star))},
        "means": {"log_px_grid": ms(log_px), "iwae": ms(p["iwae"]), "local_ffg": ms(p["local:ffg"]),
                  "amortized": ms(p["amortized"]), "base_encoder": ms(base_elbo),
                  "amortized_minus_base": ms(p["amortized"] - base_elbo), "uncertainty": ms(u),
                  **{f"{k}_gap": ms(v) for k, v in gaps.items() if k != "log_px"}},
        "spearman": corr, "examples": examples,
        "per_point": {"uncertainty": u.tolist(), "log_px_grid": log_px.tolist(), "iwae": p["iwae"].tolist(),
                      "local_ffg": p["local:ffg"].tolist(), "local_ffg_se": se_star.tolist(),
                      "amortized": p["amortized"].tolist(), "base_encoder": base_elbo.tolist(), "steps": p["steps:ffg"].tolist(),
                      "posterior_min_std": grid.min_std.tolist(), "test_index": test_index.tolist()},
    }
    labels = {"approximation": "approximation gap log p(x) − L[q*_FFG]",
              "amortization": "amortization gap L[q*_FFG] − L[q]", "inference": "inference gap log p(x) − L[q]",
              "log_px": "log p(x)"}
    rows = [[labels[k], f"{c['rho']:+.3f}", f"[{c['ci95'][0]:+.3f}, {c['ci95'][1]:+.3f}]",
             f"{c['p_permutation']:.2g}" if c["p_permutation"] * args.permutations >= 1 else f"< {1 / args.permutations:.0e}",
             f"{c['p_asymptotic']:.2g}"] for k, c in corr.items()]
    m = results["means"]
    md = (f"GPVAE with a 2-d latent, {cfg.num_train or 50000} training images, {cfg.epochs} epochs at lr {cfg.lr:g} "
          f"(Adam, batch 100; final validation ELBO {results['training']['valid_elbo']:.2f}), {cfg.arch} networks "
          f"(hidden {cfg.hidden}); {n} seeded random test points. log p(x) by quadrature on a {s['grid_n']}² grid over "
          f"[−{s['grid_lim']:g}, {s['grid_lim']:g}]² (spacing {grid.spacing:.3g}; the grid at twice the spacing agrees "
          f"to {grid_check:.1e} nats; smallest posterior standard deviation {results['grid']['min_posterior_std']:.3f}; "
          f"largest posterior mass in the grid's outer tenth {results['grid']['max_edge_mass']:.1e}). L[q*_FFG]: "
          f"per-datapoint FFG, {s['local_samples']} samples per step, lr 1e-3, start {s['local_init']}, stopping rule of "
          f"Cremer et al. (check every {gcfg.local_check_every} steps, patience {gcfg.local_patience}), at most {s['local_max_steps']} steps "
          f"(median {results['local']['steps_median']:.0f}, stopped by the rule {results['local']['stopped_by_rule']}/{n}); "
          f"L[q*] and L[q] with {s['eval_samples']} samples.\n\n"
          f"Spearman rank correlation of the GPVAE uncertainty u(x) with each quantity over the {n} points "
          f"(two-sided permutation p-value, {args.permutations} permutations; 95 % BCa bootstrap interval, "
          f"{args.bootstrap} resamples; asymptotic p-value for reference):\n\n")
    md += markdown_table(["u(x) against", "Spearman ρ", "95 % CI", "p (permutation)", "p (asymptotic)"], rows)
    md += ("\nMeans over the points (nats, ± standard error):\n\n"
           + markdown_table(["quantity", "mean ± s.e."], [
               ["log p(x) (grid)", "%.2f ± %.2f" % m["log_px_grid"]], ["IWAE of q", "%.2f ± %.2f" % m["iwae"]],
               ["L[q*_FFG]", "%.2f ± %.2f" % m["local_ffg"]], ["L[q] (GPVAE marginal)", "%.2f ± %.2f" % m["amortized"]],
               ["L[q_base] (its base encoder N(b, c²), no GP noise)", "%.2f ± %.2f" % m["base_encoder"]],
               ["L[q] − L[q_base] (paired)", "%.3f ± %.3f" % m["amortized_minus_base"]],
               ["approximation gap", "%.3f ± %.3f" % m["approximation_gap"]],
               ["amortization gap", "%.3f ± %.3f" % m["amortization_gap"]],
               ["inference gap", "%.3f ± %.3f" % m["inference_gap"]], ["u(x)", "%.3g ± %.2g" % m["uncertainty"]]]))
    md += (f"\nApproximation gaps below −2 s.e. of L[q*] (q* above log p(x)): "
           f"{results['local']['negative_approximation_gaps_beyond_2se']}/{n}.\n")
    write_results(out, NAME, args, results, md, progress.elapsed)
    save_figure(examples_figure(model, x, u, gaps["approximation"], grid, mo, examples), out / "uncertainty_examples.png")
    save_figure(scatter_figure(u, gaps, corr), out / "uncertainty_vs_gap.png")
    shutil.rmtree(partial, ignore_errors=True)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}\n\n{md}")
    return results


def training_summary(run_dir: Path) -> dict:
    """The last epoch's training objective and validation ELBO, and the median seconds per epoch (``log.csv``)."""
    import csv

    with open(Path(run_dir) / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    seconds = [float(r["seconds"]) for r in rows]
    return {"epoch": int(rows[-1]["epoch"]), "train_objective": float(rows[-1]["train_objective"]),
            "valid_elbo": float(rows[-1]["valid_elbo"]), "median_epoch_seconds": float(np.median(seconds))}


def _ellipse(ax, loc, scale, **kw):
    """The 2-standard-deviation contour of N(loc, diag scale²)."""
    from matplotlib.patches import Ellipse

    ax.add_patch(Ellipse(loc, 4 * scale[0], 4 * scale[1], fill=False, **kw))


def examples_figure(model, x, u, gap, grid, mo, examples):
    import matplotlib.pyplot as plt

    k = len(examples)
    fig, axes = plt.subplots(3, k, figsize=(2.1 * k, 6.6), gridspec_kw={"height_ratios": [1, 1, 1.6]})
    axis = grid.axis.cpu().numpy()
    with torch.no_grad():
        recon = torch.sigmoid(model.decoder(mo.loc[examples])).cpu().numpy()
    for c, i in enumerate(examples):
        axes[0, c].imshow(x[i].reshape(28, 28).cpu().numpy(), cmap="gray", vmin=0, vmax=1)
        axes[0, c].set_title(f"u = {u[i]:.3g}\ngap = {gap[i]:.2f} nats", fontsize=8)
        axes[1, c].imshow(recon[c].reshape(28, 28), cmap="gray", vmin=0, vmax=1)
        for ax in axes[:2, c]:
            ax.set_xticks([]), ax.set_yticks([])
        ax = axes[2, c]
        lj = grid.log_joint[i].cpu().numpy()
        dens = np.exp(lj - lj.max())
        mean, std = grid.mean[i].cpu().numpy(), np.sqrt(np.diag(grid.cov[i].cpu().numpy()))
        half = max(5 * std.max(), 3 * float(mo.scale[i].max()), 3 * float(mo.base_scale[i].max()),
                   float(np.abs(mo.loc[i].cpu().numpy() - mean).max()) * 1.3, 4 * grid.spacing)
        lo, hi = mean - half, mean + half
        ax.imshow(dens.T, origin="lower", extent=(axis[0], axis[-1], axis[0], axis[-1]), cmap="Greys",
                  interpolation="nearest", aspect="auto")
        _ellipse(ax, mo.base_loc[i].cpu().numpy(), mo.base_scale[i].cpu().numpy(), color="tab:blue", ls="--", lw=1.2)
        _ellipse(ax, mo.loc[i].cpu().numpy(), mo.scale[i].cpu().numpy(), color="tab:red", lw=1.2)
        ax.set_xlim(lo[0], hi[0]), ax.set_ylim(lo[1], hi[1])
        ax.tick_params(labelsize=6)
        ax.set_xlabel("z₁", fontsize=7)
    axes[0, 0].set_ylabel("input", fontsize=8)
    axes[1, 0].set_ylabel("reconstruction\n(decoder at m(x))", fontsize=8)
    axes[2, 0].set_ylabel("z₂", fontsize=7)
    fig.suptitle("test points by GPVAE uncertainty u(x), lowest to highest. Bottom: true posterior (grid, grey), "
                 "2σ contours of the base encoder's q (blue, dashed) and of GPVAE's marginal q (red)", fontsize=8)
    fig.tight_layout()
    return fig


def scatter_figure(u, gaps, corr):
    import matplotlib.pyplot as plt

    keys = ("approximation", "amortization")
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 3.6))
    for ax, k in zip(axes, keys):
        ax.scatter(u, gaps[k], s=6, alpha=0.6)
        ax.set_xscale("log")
        ax.set_xlabel("GPVAE uncertainty u(x)")
        ax.set_ylabel(f"{k} gap (nats)")
        c = corr[k]
        ax.set_title(f"Spearman ρ = {c['rho']:+.2f} [{c['ci95'][0]:+.2f}, {c['ci95'][1]:+.2f}], "
                     f"p = {c['p_permutation']:.2g}", fontsize=8)
    fig.tight_layout()
    return fig


if __name__ == "__main__":
    run_main(main, None)
