r"""VAE vs IWAE on the tutorial's 2-D toy densities (R. Yu 2020, §3, Tables 1–2, Figs. 3–6).

For each toy set (8 Gaussians, checkerboard, 2 spirals) a typical VAE — 2-d latent, Gaussian decoder
whose mean and log-variance are outputs of a densely connected network (the tutorial's dense blocks,
:class:`pyro_vaegap.models.DenseMLP`), FFG encoder of the same shape — is trained once with the ELBO
(with the tutorial's free bits, :class:`pyro_vaegap.objectives.elbos.FreeBitsELBO`) and once with the IWAE
bound (k = 10), both through :func:`pyro_vaegap.training.train`, several models at a time in worker
processes (``--workers``). On held-out samples it reports, in bits (nats / ln 2; the data are
continuous, so an NLL in bits is :math:`-\log_2` of a *density* and is bounded below by the
differential entropy H, not by 0):

* H, the ground truth (:data:`pyro_vaegap.data.toy.TOY_ENTROPY_BITS`);
* :math:`-\mathrm{ELBO}` (250-sample Monte Carlo mean; the true ELBO, not the free-bits objective),
  each model's own training bound (the tutorial's "loss") and the NLL
  :math:`-\log_2\hat p(x)` (IWAE with k = 250), each averaged over the test points;
* the inference gap NLL vs −ELBO, and NLL − H (= KL(p_data ‖ p_θ) ≥ 0 up to estimation error);

beside the tutorial's numbers. Figures: ground-truth density vs the model's importance-sampled
density on a grid (``density_maps.png``), and the latent colour correspondence
(``latent_<objective>.png``): data coloured by position, their encoder means in latent space in the
same colours, and a latent grid coloured by the true log-density at the decoder mean (dark = the
latent region decodes into a low-density area of the data plane).
"""
from __future__ import annotations

import math
import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch

from pyro_vaegap.data import TOY_DATASETS, TOY_ENTROPY_BITS, TOY_ENTROPY_ERROR_BITS, load_dataset, toy_log_density
from pyro_vaegap.estimators import importance_sample, iwae_bounds
from pyro_vaegap.traces import log_weights
from pyro_vaegap.models import ACTIVATIONS
from pyro_vaegap.runs import LR_SCHEDULES, TrainConfig, load_run
from pyro_vaegap.utils import set_seed

from pyro_vaegap.harness import (LN2, Progress, evaluate, make_parser, markdown_table, parse_args, run_main,
                              save_figure, train_run, write_results)

NAME = "tutorial_toy2d"
#: The tutorial's Tables 1–2: (loss = −ELBO or −IWAE bound, NLL) in bits.
PAPER = {
    "elbo": {"8gaussians": (-1.83, -1.87), "checkerboard": (-0.72, -0.81), "2spirals": (-1.99, -2.15)},
    "iwae": {"8gaussians": (-1.84, -1.91), "checkerboard": (-0.81, -0.87), "2spirals": (-2.24, -2.29)},
}
PAPER_ENTROPY = {"8gaussians": -1.92, "checkerboard": -1.0, "2spirals": -2.34}
EXTENT = 0.6  #: the data square [-0.6, 0.6]² holds every toy set (radius <= 0.5 + noise)


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(TOY_DATASETS), choices=TOY_DATASETS,
                   help="toy data sets to run")
    p.add_argument("--num-train", type=int, default=50_000, help="training points (of the 50,000-point train split)")
    p.add_argument("--epochs", type=int, default=120, help="training epochs of each VAE (over --num-train points)")
    p.add_argument("--batch-size", type=int, default=200, help="minibatch size of the VAEs (the tutorial's 200)")
    p.add_argument("--iwae-epochs", type=int, default=30, help="training epochs of each IWAE")
    p.add_argument("--iwae-batch-size", type=int, default=100,
                   help="minibatch size of the IWAEs (each point costs k decoder passes)")
    p.add_argument("--lr", type=float, default=1e-3, help="initial Adam learning rate")
    p.add_argument("--lr-schedule", default="cosine", choices=LR_SCHEDULES,
                   help="learning-rate schedule over the epochs (cosine: decays to ~0 at the end)")
    p.add_argument("--free-bits", type=float, default=0.05,
                   help="free bits per latent dimension of the VAE objective (the tutorial's 0.05); 0 disables")
    p.add_argument("--anneal-epochs", type=int, default=0,
                   help="epochs of linear KL annealing (beta 0 -> 1) of the models trained without free bits: "
                        "the IWAEs, and the VAEs when --free-bits 0 (0 disables)")
    p.add_argument("--hidden", type=int, default=128, help="width of the hidden layers of decoder and encoder")
    p.add_argument("--layers", type=int, default=4, help="hidden layers of decoder and of encoder")
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS, help="hidden-layer activation")
    p.add_argument("--plain", action="store_true",
                   help="plain MLPs instead of the densely connected ones (models.DenseMLP)")
    p.add_argument("--iwae-k", type=int, default=10, help="k of the IWAE training objective")
    p.add_argument("--eval-samples", type=int, default=250, help="importance samples per test point (k of the NLL)")
    p.add_argument("--num-test", type=int, default=5000, help="held-out test points evaluated (of 5,000)")
    p.add_argument("--grid", type=int, default=80, help="density-map grid points per axis")
    p.add_argument("--grid-samples", type=int, default=100, help="importance samples per grid point of the map")
    p.add_argument("--workers", type=int, default=2,
                   help="models trained and evaluated at once, one process and one thread each")
    return p


def _rgb(x: np.ndarray) -> np.ndarray:
    """Colour each point of the data square by its position: red ~ x1, green ~ x2, blue fixed."""
    u = np.clip((x + EXTENT) / (2 * EXTENT), 0, 1)
    return np.stack([u[:, 0], u[:, 1], np.full(len(u), 0.6)], axis=1)


@torch.no_grad()
def density_grid(model, guide, grid: int, samples: int):
    """log p̂(x) (IWAE, nats) of the model on a ``grid x grid`` grid over the data square."""
    axis = np.linspace(-EXTENT, EXTENT, grid)
    xx, yy = np.meshgrid(axis, axis, indexing="xy")
    pts = torch.tensor(np.stack([xx.ravel(), yy.ravel()], 1), dtype=torch.float32)
    r = importance_sample(model, guide, pts, samples, psis=False, data_chunk=500)
    return axis, r.iwae.cpu().numpy().reshape(grid, grid)


@torch.no_grad()
def training_bound(model, guide, x: torch.Tensor, k: int, num_samples: int, chunk: int = 500) -> tuple[float, float]:
    r"""The model's own training objective on ``x``: :math:`-\mathcal L_k` in bits (k = 1: −ELBO; the IWAE
    bound for k > 1), mean over points of the average over ``num_samples // k`` independent groups of k
    draws, with its standard error across points."""
    vals = []
    for s in range(0, x.shape[0], chunk):
        lw = log_weights(model, guide, x[s:s + chunk], max(k, num_samples - num_samples % k))
        vals.append(iwae_bounds(lw, [k])[k][0])
    v = -torch.cat(vals) / LN2
    return float(v.mean()), float(v.std() / math.sqrt(len(v)))


def density_figure(maps: dict, datasets, grid: int):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(datasets), 3, figsize=(9, 3 * len(datasets)), squeeze=False)
    axis = np.linspace(-EXTENT, EXTENT, grid)
    xx, yy = np.meshgrid(axis, axis, indexing="xy")
    for i, ds in enumerate(datasets):
        truth = np.exp(toy_log_density(ds, np.stack([xx.ravel(), yy.ravel()], 1))).reshape(grid, grid)
        panels = [("ground truth", truth)] + [(f"{o.upper()} p(x)", np.exp(maps[ds][o])) for o in ("elbo", "iwae")]
        for j, (title, img) in enumerate(panels):
            ax = axes[i, j]
            # one colour scale per row, the true density's: a few spiky model grid points would
            # otherwise set the scale and turn the rest of the map black
            ax.imshow(img, origin="lower", extent=(-EXTENT, EXTENT, -EXTENT, EXTENT), cmap="magma",
                      vmin=0.0, vmax=float(truth.max()))
            ax.set_title(f"{ds}: {title.replace('ELBO', 'VAE')}", fontsize=9)
            ax.set_xticks([]), ax.set_yticks([])
    fig.tight_layout()
    return fig


@torch.no_grad()
def latent_figure(runs: dict, datasets, objective: str, x_tests: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(datasets), 3, figsize=(10, 3.2 * len(datasets)), squeeze=False)
    for i, ds in enumerate(datasets):
        model, guide = runs[ds][objective]
        x = x_tests[ds][:2000]
        loc, _ = guide.encode(x)
        colours = _rgb(x.cpu().numpy())
        axes[i, 0].scatter(*x.cpu().numpy().T, c=colours, s=2)
        axes[i, 0].set_title(f"{ds}: data, coloured by position", fontsize=9)
        axes[i, 1].scatter(*loc.cpu().numpy().T, c=colours, s=2)
        axes[i, 1].set_title("encoder means in latent space", fontsize=9)
        g = np.linspace(-3, 3, 120)
        zz = torch.tensor(np.stack(np.meshgrid(g, g, indexing="xy"), -1).reshape(-1, 2), dtype=torch.float32)
        decoded = model.likelihood(zz).base_dist.loc.cpu().numpy()
        logp = toy_log_density(ds, decoded).reshape(len(g), len(g))
        floor = np.nanmax(logp[np.isfinite(logp)]) - 12 if np.isfinite(logp).any() else -12
        axes[i, 2].imshow(np.maximum(logp, floor), origin="lower", extent=(-3, 3, -3, 3), cmap="gray")
        axes[i, 2].set_title("latent grid: true log p(decoder mean)\n(dark = decodes off the data)", fontsize=9)
        for ax in axes[i]:
            ax.set_aspect("equal")
    fig.suptitle(f"Latent colour correspondence, {'VAE (ELBO)' if objective == 'elbo' else 'IWAE'}")
    fig.tight_layout()
    return fig


def train_config(args, ds: str, objective: str) -> TrainConfig:
    """The training run of one model: the VAE (``objective="elbo"``, free bits) or the IWAE."""
    vae = objective == "elbo"
    free_bits = args.free_bits if vae else 0.0
    anneal = 0 if free_bits else args.anneal_epochs
    net = {"hidden": args.hidden, "layers": args.layers, "activation": args.activation, "dense": not args.plain}
    return TrainConfig(dataset=ds, num_train=args.num_train, model="gaussian", variance="network", latent_dim=2,
                       hidden=args.hidden, decoder_layers=args.layers, activation=args.activation,
                       dense=not args.plain, guide="ffg", guide_options=net, objective=objective,
                       num_particles=1 if vae else args.iwae_k, free_bits=free_bits,
                       anneal="kl" if anneal else "none", anneal_epochs=anneal,
                       epochs=args.epochs if vae else args.iwae_epochs,
                       batch_size=args.batch_size if vae else args.iwae_batch_size,
                       lr=args.lr, lr_schedule=args.lr_schedule, seed=args.seed)


def run_dir(args, ds: str, objective: str) -> Path:
    return Path(args.out) / "runs" / f"{ds}_{objective}"


def fit_and_evaluate(args, ds: str, objective: str):
    r"""Train (or reuse / resume) one model and evaluate it; runs in a worker process.

    :returns: ``(results, log_density_map)`` — the numbers of one table row and the model's
        :math:`\log\hat p(x)` on the density-map grid.
    """
    progress = Progress(args.quiet)
    cfg = train_config(args, ds, objective)
    model, guide, secs = train_run(cfg, run_dir(args, ds, objective), progress, args.device)
    x_test = load_dataset(ds, "test")[: args.num_test].to(args.device)
    set_seed(args.seed)
    ev = evaluate(model, guide, x_test, args.eval_samples)
    k = cfg.num_particles
    bound, bound_se = training_bound(model, guide, x_test, k, args.eval_samples)
    _, logp_map = density_grid(model, guide, args.grid, args.grid_samples)
    progress(f"{ds} {objective}: -ELBO {ev['neg_elbo_bits']:.3f} bits, -L_{k} {bound:.3f}, "
             f"NLL {ev['nll_bits']:.3f} bits (H = {TOY_ENTROPY_BITS[ds]:.3f}); trained in {secs:.0f}s")
    paper_loss, paper_nll = PAPER[objective][ds]
    return ({"train_seconds": secs, **ev, "train_bound_k": k, "train_bound_bits": bound,
             "train_bound_bits_se": bound_se, "paper_loss_bits": paper_loss, "paper_nll_bits": paper_nll},
            logp_map)


def run_jobs(args, jobs):
    """``fit_and_evaluate`` of every ``(dataset, objective)`` job, ``args.workers`` at a time.

    Each job seeds its own training and evaluation, so the numbers do not depend on the number of
    workers or on which worker ran a job. Workers are spawned (not forked: a forked child would
    inherit the parent's OpenMP state) and use one thread each.
    """
    if args.workers == 1 or len(jobs) == 1:
        return {job: fit_and_evaluate(args, *job) for job in jobs}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(args.workers, len(jobs)), mp_context=ctx,
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = {job: pool.submit(fit_and_evaluate, args, *job) for job in jobs}
        return {job: f.result() for job, f in futures.items()}


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv, nonneg=("anneal_epochs", "free_bits"),
                      positive=("epochs", "iwae_epochs", "num_train", "batch_size", "iwae_batch_size", "lr", "hidden",
                                "layers", "iwae_k", "eval_samples", "num_test", "grid", "grid_samples", "workers"))
    if args.num_train > 50_000 or args.num_test > 5_000:
        parser.error(f"--num-train={args.num_train} / --num-test={args.num_test} exceed the split sizes 50000 / 5000")
    out = Path(args.out)
    progress = Progress(args.quiet)
    jobs = [(ds, objective) for ds in args.datasets for objective in ("elbo", "iwae")]
    progress(f"{len(jobs)} models, {min(args.workers, len(jobs))} at a time")
    outs = run_jobs(args, jobs)
    results, runs, maps, x_tests, rows = {}, {}, {}, {}, []
    for ds in args.datasets:
        results[ds], runs[ds], maps[ds] = {}, {}, {}
        x_tests[ds] = load_dataset(ds, "test")[: args.num_test].to(args.device)
        for objective in ("elbo", "iwae"):
            res, maps[ds][objective] = outs[(ds, objective)]
            results[ds][objective] = res
            runs[ds][objective] = load_run(run_dir(args, ds, objective), args.device)[:2]
            k = res["train_bound_k"]
            rows.append([ds, "VAE" if objective == "elbo" else f"IWAE (k={k})",
                         f"{TOY_ENTROPY_BITS[ds]:.3f} ({PAPER_ENTROPY[ds]})",
                         f"{res['neg_elbo_bits']:.3f} ± {res['neg_elbo_bits_se']:.3f}",
                         f"{res['train_bound_bits']:.3f} ± {res['train_bound_bits_se']:.3f}", res["paper_loss_bits"],
                         res["train_bound_bits"] - res["paper_loss_bits"],
                         f"{res['nll_bits']:.3f} ± {res['nll_bits_se']:.3f}", res["paper_nll_bits"],
                         res["nll_bits"] - res["paper_nll_bits"], res["neg_elbo_bits"] - res["nll_bits"],
                         res["nll_bits"] - TOY_ENTROPY_BITS[ds]])
        results[ds]["entropy_bits"] = TOY_ENTROPY_BITS[ds]
        results[ds]["entropy_error_bits"] = TOY_ENTROPY_ERROR_BITS[ds]
    progress("figures")
    save_figure(density_figure(maps, args.datasets, args.grid), out / "density_maps.png")
    for objective in ("elbo", "iwae"):
        save_figure(latent_figure(runs, args.datasets, objective, x_tests), out / f"latent_{objective}.png")
    md = ("All values in bits (−log2 of a density; lower is better, bounded below by H). "
          "Ours: mean over held-out test points ± standard error across points; −ELBO is the "
          f"{args.eval_samples}-sample mean of −log w, NLL is −IWAE with k = {args.eval_samples}. "
          "'loss' is each model's own training objective as in the tutorial: −ELBO (= −L_1) for the VAE, "
          f"the IWAE bound −L_{args.iwae_k} for the IWAE (mean over {args.eval_samples // args.iwae_k} independent "
          f"groups of {args.iwae_k} draws per point); Δ loss compares it with the paper's loss. The −ELBO column "
          "of the IWAE row shows how loose the IWAE-trained model's ELBO is. "
          "Paper: R. Yu (2020) Tables 1–2; H in parentheses.\n\n")
    md += markdown_table(["data", "model", "H ours (paper)", "−ELBO ours", "loss ours", "loss paper", "Δ loss",
                          "NLL ours", "NLL paper", "Δ NLL", "gap −ELBO − NLL", "NLL − H"], rows)
    md += "\nFigures: density_maps.png, latent_elbo.png, latent_iwae.png\n"
    write_results(out, NAME, args, results, md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
