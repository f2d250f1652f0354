r"""VAE vs IWAE on the tutorial's 2-D toy densities (R. Yu 2020, §6, Tables 1–2, Figs. 1–2).

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
* the NLL as the tutorial measures it, averaged over the true density by quadrature instead of over test
  points (:func:`pyro_vaegap.data.toy_quadrature`; ``--quad-cells``), free of the test set's sampling error;
* the inference gap NLL vs −ELBO, and NLL − H (= KL(p_data ‖ p_θ) ≥ 0 up to estimation error);

beside the tutorial's numbers (:mod:`pyro_vaegap.papers`, ``yu2020`` Tables 1–2). Profiles set the budget
(``--profile cpu``, the default: 30,000 VAE / 15,000 IWAE steps; ``long``: 3x; ``--quick``: a smoke run);
``--datasets`` and ``--objectives`` pick the models. Each model's training time is recorded in the results
file (``training``: the sum of the epochs' seconds of its ``log.csv``), also when a finished run is reused. Figures: ground-truth density vs the model's importance-sampled
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

from pyro_vaegap.report import papers
from pyro_vaegap.data import (TOY_DATASETS, TOY_ENTROPY_BITS, TOY_ENTROPY_ERROR_BITS, load_dataset, toy_log_density,
                              toy_quadrature)
from pyro_vaegap.data.toy import TOY_EXTENT as EXTENT
from pyro_vaegap.estimators import importance_sample, iwae_bounds
from pyro_vaegap.estimators.traces import log_weights
from pyro_vaegap.models import ACTIVATIONS
from pyro_vaegap.runs import LR_SCHEDULES, TrainConfig, load_run
from pyro_vaegap.utils import set_seed

from pyro_vaegap.harness import (LN2, Profiles, Progress, Setting, evaluate, make_parser, markdown_table, parse_args,
                                 finished_run, run_main, save_figure, train_run, training_cost, write_results)

NAME = "tutorial_toy2d"
OBJECTIVES = ("elbo", "iwae")
#: where the tutorial's numbers of each model are (pyro_vaegap.papers): Table 1 for the VAE, whose "loss" is its
#: −ELBO, Table 2 for the IWAE, whose loss is its training bound −L_10
PAPER_TABLE = {"elbo": ("1", "neg_elbo"), "iwae": ("2", "loss")}


def paper_numbers(ds: str, objective: str) -> tuple[float, float]:
    """The tutorial's (loss, NLL) of one model, in bits, from :mod:`pyro_vaegap.papers`."""
    table, loss = PAPER_TABLE[objective]
    return papers.value("yu2020", table, ds, loss), papers.value("yu2020", table, ds, "nll")


def paper_entropy(ds: str) -> str:
    """The tutorial's H of one set, as printed (Table 1)."""
    return papers.printed_value(papers.get("yu2020", "1", ds, "H"))


_BUDGET = dict(num_train=50_000, hidden=128, layers=4, iwae_k=10, eval_samples=250, num_test=5000, grid=80,
               grid_samples=100, quad_cells=144, check_points=500, check_samples=2500)
#: ``cpu`` (the default): 30,000 VAE / 15,000 IWAE steps, ≤ 20 minutes on the 2-core CPU; ``long``: 3x the steps;
#: ``quick``: a smoke run of the whole pipeline whose numbers mean nothing
PROFILES = Profiles(
    profiles={"cpu": {"epochs": 120, "iwae_epochs": 30, **_BUDGET},
              "long": {"epochs": 360, "iwae_epochs": 90, **_BUDGET},
              "quick": {"epochs": 1, "iwae_epochs": 1, "num_train": 300, "hidden": 8, "layers": 2, "iwae_k": 2,
                        "eval_samples": 4, "num_test": 20, "grid": 6, "grid_samples": 2, "quad_cells": 48,
                        "check_points": 5, "check_samples": 16}},
    settings={
        "epochs": Setting(int, "training epochs of each VAE (over --num-train points)"),
        "iwae_epochs": Setting(int, "training epochs of each IWAE"),
        "num_train": Setting(int, "training points (of the 50,000-point train split)"),
        "hidden": Setting(int, "width of the hidden layers of decoder and encoder"),
        "layers": Setting(int, "hidden layers of decoder and of encoder"),
        "iwae_k": Setting(int, "k of the IWAE training objective"),
        "eval_samples": Setting(int, "importance samples per test point and per quadrature node (k of the NLL)"),
        "num_test": Setting(int, "held-out test points evaluated (of 5,000)"),
        "grid": Setting(int, "density-map grid points per axis"),
        "grid_samples": Setting(int, "importance samples per grid point of the map"),
        "quad_cells": Setting(int, "cells per axis of the quadrature NLL (a multiple of 48; it is also computed "
                                   "on half as many, to show the rule's error)"),
        "check_points": Setting(int, "test points (the first ones) of the check of the NLL estimator's bias: the NLL "
                                     "with --eval-samples and with --check-samples draws, paired (0: no check)"),
        "check_samples": Setting(int, "importance samples per point of that check"),
    },
    default="cpu",
    help={"cpu": "30,000 VAE / 15,000 IWAE steps, <= 20 minutes on 2 cores",
          "long": "3x the cpu profile's steps (about 66 minutes on 2 cores)"})


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0], PROFILES)
    p.add_argument("--datasets", nargs="+", default=list(TOY_DATASETS), choices=TOY_DATASETS,
                   help="toy data sets to run")
    p.add_argument("--objectives", nargs="+", default=list(OBJECTIVES), choices=OBJECTIVES,
                   help="models to train and evaluate on each set: elbo (the VAE) and/or iwae")
    p.add_argument("--batch-size", type=int, default=200, help="minibatch size of the VAEs (the tutorial's 200)")
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
    p.add_argument("--activation", default="relu", choices=ACTIVATIONS, help="hidden-layer activation")
    p.add_argument("--plain", action="store_true",
                   help="plain MLPs instead of the densely connected ones (models.DenseMLP)")
    p.add_argument("--test-set-check", nargs="+", metavar="RESULTS_JSON", default=None,
                   help="train nothing: for results files of this experiment, the test NLLs with the test sample's own "
                        "deviation from H removed (NLL - (H_test - H)), beside the paper's (written to --out)")
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


@torch.no_grad()
def quadrature_nll(model, guide, nodes: np.ndarray, weights: np.ndarray, num_samples: int) -> dict:
    r"""The model's NLL as the tutorial measures it, the cross-entropy
    :math:`-\mathbb E_{p_\text{data}}[\log_2\hat p_\theta(x)]` by quadrature against the true density
    (:func:`pyro_vaegap.data.toy_quadrature`: nodes and weights :math:`p(x_i)h^2`), with
    :math:`\log\hat p_\theta(x_i)` the IWAE estimate of ``num_samples`` draws at each node; and the same
    average of −ELBO. Free of a test set's sampling error: what is left is the importance-sampling error at the
    nodes (``nll_quad_mc_se_bits``, from the per-node Monte Carlo errors) and the rule's own error."""
    x = torch.as_tensor(nodes, dtype=torch.float32, device=next(model.parameters()).device)
    r = importance_sample(model, guide, x, num_samples, psis=False, data_chunk=500)
    w = torch.as_tensor(weights / weights.sum(), dtype=torch.float64)
    iwae, elbo, se = (t.detach().cpu().double() for t in (r.iwae, r.elbo, r.iwae_se))
    return {"nll_quad_bits": float(-(w * iwae).sum()) / LN2,
            "nll_quad_mc_se_bits": float((w.square() * se.square()).sum().sqrt()) / LN2,
            "neg_elbo_quad_bits": float(-(w * elbo).sum()) / LN2,
            "quad_nodes": len(nodes), "quad_mass": float(weights.sum())}


@torch.no_grad()
def sample_size_check(model, guide, x: torch.Tensor, k: int, big: int) -> dict:
    r"""How much the NLL estimate moves with more importance samples: :math:`-\log\hat p(x)` with ``k`` and with
    ``big`` independent draws on the same points, in bits, and their paired difference ± its standard error
    across points (the IWAE estimate is biased upward by :math:`O(1/k)`; a difference near 0 says ``k`` is
    enough)."""
    small = importance_sample(model, guide, x, k, psis=False, data_chunk=100).iwae.double()
    large = importance_sample(model, guide, x, big, psis=False, data_chunk=100).iwae.double()
    d = (small - large) / LN2  # NLL(k) - NLL(big)
    return {"points": int(x.shape[0]), "k": k, "big_k": big, "nll_bits_k": float(-small.mean()) / LN2,
            "nll_bits_big_k": float(-large.mean()) / LN2, "nll_k_minus_big_bits": float(d.mean()),
            "nll_k_minus_big_bits_se": float(d.std() / math.sqrt(len(d))) if len(d) > 1 else float("nan")}


def reference(ds: str, num_test: int, quadrature: dict, cells: int) -> dict:
    r"""The true density's side of the comparison, in bits: H by the quadrature rule of ``cells`` (and of the
    other rules in ``quadrature``), and the test points' own mean :math:`-\log_2 p(x)` ± its standard error —
    how far this test sample's average is from H. A model close to the truth shares that deviation, so
    :math:`\mathrm{NLL}_\text{test} - (H_\text{test} - H)` estimates the cross-entropy with far less sampling
    error than the plain test-set mean (a control variate with coefficient 1). Returns also ``log_p_test``
    (nats per test point; popped before results are written)."""
    out = {}
    for c, (nodes, weights, mass) in quadrature.items():
        log_p = np.log(weights) - 2 * math.log(2 * EXTENT / c)  # w = p h²
        h = float(-(weights * log_p).sum() / weights.sum()) / LN2
        out["entropy_quad_bits" if c == cells else f"entropy_quad_bits_{c}"] = h
    log_p_test = toy_log_density(ds, load_dataset(ds, "test")[:num_test].double().numpy())
    v = -log_p_test / LN2
    out.update(test_entropy_bits=float(v.mean()), test_entropy_bits_se=float(v.std(ddof=1) / math.sqrt(len(v))),
               num_test=int(len(v)), log_p_test=log_p_test)
    return out


def density_figure(maps: dict, datasets, grid: int):
    import matplotlib.pyplot as plt

    cols = 1 + max(len(maps[ds]) for ds in datasets)
    fig, axes = plt.subplots(len(datasets), cols, figsize=(3 * cols, 3 * len(datasets)), squeeze=False)
    axis = np.linspace(-EXTENT, EXTENT, grid)
    xx, yy = np.meshgrid(axis, axis, indexing="xy")
    for i, ds in enumerate(datasets):
        truth = np.exp(toy_log_density(ds, np.stack([xx.ravel(), yy.ravel()], 1))).reshape(grid, grid)
        panels = [("ground truth", truth)] + [(f"{o.upper()} p(x)", np.exp(maps[ds][o])) for o in maps[ds]]
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


def fit_and_evaluate(args, ds: str, objective: str, quadrature: dict, ref: dict):
    r"""Train (or reuse / resume) one model and evaluate it; runs in a worker process.

    :param quadrature: ``{cells: (nodes, weights, mass)}`` of the set's density (:func:`toy_quadrature`).
    :param ref: the set's :func:`reference` (H by quadrature, the test points' log-densities).
    :returns: ``(results, log_density_map)`` — the numbers of one table row and the model's
        :math:`\log\hat p(x)` on the density-map grid.
    """
    progress = Progress(args.quiet)
    cfg = train_config(args, ds, objective)
    reused = finished_run(cfg, run_dir(args, ds, objective))
    model, guide, secs = train_run(cfg, run_dir(args, ds, objective), progress, args.device)
    x_test = load_dataset(ds, "test")[: args.num_test].to(args.device)
    set_seed(args.seed)
    ev = evaluate(model, guide, x_test, args.eval_samples, keep_per_point=True)
    # the test NLL with the test sample's own deviation from H removed, paired per point (see ``reference``)
    excess = (np.asarray(ev.pop("nll_nats_per_point")) + ref["log_p_test"]) / LN2  # -log2 p̂(x) + log2 p(x)
    ev["nll_cv_bits"] = ref["entropy_quad_bits"] + float(excess.mean())
    ev["nll_cv_bits_se"] = float(excess.std(ddof=1) / math.sqrt(len(excess))) if len(excess) > 1 else float("nan")
    k = cfg.num_particles
    bound, bound_se = training_bound(model, guide, x_test, k, args.eval_samples)
    quad = {}
    for cells, (nodes, weights, _) in sorted(quadrature.items(), reverse=True):
        set_seed(args.seed)
        q = quadrature_nll(model, guide, nodes, weights, args.eval_samples)
        quad.update(q if cells == args.quad_cells else {f"{key}_{cells}": v for key, v in q.items()})
    check = None
    if args.check_points:
        set_seed(args.seed)
        check = sample_size_check(model, guide, x_test[: args.check_points], args.eval_samples, args.check_samples)
    _, logp_map = density_grid(model, guide, args.grid, args.grid_samples)
    progress(f"{ds} {objective}: -ELBO {ev['neg_elbo_bits']:.3f} bits, -L_{k} {bound:.3f}, "
             f"NLL {ev['nll_bits']:.3f} bits (test points), {quad['nll_quad_bits']:.3f} (quadrature) "
             f"(H = {TOY_ENTROPY_BITS[ds]:.3f}); this call took {secs:.0f}s")
    paper_loss, paper_nll = paper_numbers(ds, objective)
    return ({"train_seconds": secs, "reused_training": reused, "training": training_cost(run_dir(args, ds, objective)), **ev, **quad,
             "quad_cells": args.quad_cells, "sample_size_check": check, "train_bound_k": k, "train_bound_bits": bound,
             "train_bound_bits_se": bound_se, "paper_loss_bits": paper_loss, "paper_nll_bits": paper_nll},
            logp_map)


def run_jobs(args, jobs, quadrature: dict, refs: dict):
    """``fit_and_evaluate`` of every ``(dataset, objective)`` job, ``args.workers`` at a time (``quadrature``, ``refs``:
    each set's quadrature rules and :func:`reference`, computed once here rather than in every worker).

    Each job seeds its own training and evaluation, so the numbers do not depend on the number of
    workers or on which worker ran a job. Workers are spawned (not forked: a forked child would
    inherit the parent's OpenMP state) and use one thread each.
    """
    if args.workers == 1 or len(jobs) == 1:
        return {job: fit_and_evaluate(args, *job, quadrature[job[0]], refs[job[0]]) for job in jobs}
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(args.workers, len(jobs)), mp_context=ctx,
                             initializer=torch.set_num_threads, initargs=(1,)) as pool:
        futures = {job: pool.submit(fit_and_evaluate, args, *job, quadrature[job[0]], refs[job[0]]) for job in jobs}
        return {job: f.result() for job, f in futures.items()}


def check_results_file(path, num_test: int) -> str | None:
    """What is wrong with ``path`` as a results file of this experiment over ``num_test`` test points (None: fine)."""
    import json

    try:
        res = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        return f"cannot be read as JSON ({type(e).__name__})"
    if res.get("experiment") != NAME:
        return f"not a results file of {NAME} (experiment: {res.get('experiment')!r})"
    if res.get("config", {}).get("num_test") != num_test:
        return f"its NLLs are over {res.get('config', {}).get('num_test')} test points, this check's over {num_test}"
    return None


def test_set_check(args, refs: dict, progress) -> dict:
    r"""``--test-set-check``: for each given results file of this experiment, every model's test NLL corrected by
    the test sample's deviation from H, :math:`\mathrm{NLL}_\text{test} - (H_\text{test} - H)`, and its distance
    to the tutorial's NLL. The files' models are not needed (only their mean NLLs: the correction is additive),
    so this is exact for files written before the experiment recorded the paired estimate ``nll_cv_bits``; it
    has no standard error of its own (the files keep no per-point values)."""
    import json

    results, rows = {"reference": {ds: {k: v for k, v in r.items() if k != "log_p_test"} for ds, r in refs.items()},
                     "files": {}}, []
    for path in args.test_set_check:
        res = json.loads(Path(path).read_text())
        per_file = results["files"][str(path)] = {}
        for ds in args.datasets:
            ref = refs[ds]
            shift = ref["test_entropy_bits"] - ref["entropy_quad_bits"]
            for objective in OBJECTIVES:
                m = res["results"].get(ds, {}).get(objective)
                if m is None:
                    continue
                paper_nll = paper_numbers(ds, objective)[1]
                corrected = m["nll_bits"] - shift
                per_file[f"{ds}/{objective}"] = {"nll_bits": m["nll_bits"], "nll_bits_se": m["nll_bits_se"],
                                                 "shift_bits": shift, "nll_corrected_bits": corrected,
                                                 "paper_nll_bits": paper_nll, "delta_bits": m["nll_bits"] - paper_nll,
                                                 "delta_corrected_bits": corrected - paper_nll}
                rows.append([path, ds, "VAE" if objective == "elbo" else "IWAE",
                             f"{m['nll_bits']:.3f} ± {m['nll_bits_se']:.3f}", f"{shift:+.4f}", f"{corrected:.3f}",
                             paper_nll, m["nll_bits"] - paper_nll, corrected - paper_nll])
    md = ("Bits. H: the true density's entropy by quadrature (data.toy_quadrature, "
          f"{args.quad_cells}² cells); H_test: the mean −log2 p(x) of the first {args.num_test} test points under "
          "the true density ± s.e. A model close to the truth shares the test sample's deviation H_test − H, so "
          "NLL − (H_test − H) estimates its cross-entropy with the test sample's luck removed.\n\n")
    md += markdown_table(["data", "H (quadrature)", f"H ({args.quad_cells // 2}² cells)", "H_test", "H_test − H",
                          "H in data.toy"],
                         [[ds, f"{r['entropy_quad_bits']:.5f}", f"{r[f'entropy_quad_bits_{args.quad_cells // 2}']:.5f}",
                           f"{r['test_entropy_bits']:.4f} ± {r['test_entropy_bits_se']:.4f}",
                           f"{r['test_entropy_bits'] - r['entropy_quad_bits']:+.4f}",
                           f"{TOY_ENTROPY_BITS[ds]} ± {TOY_ENTROPY_ERROR_BITS[ds]}"] for ds, r in refs.items()])
    md += "\n" + markdown_table(["results file", "data", "model", "NLL test", "H_test − H", "NLL corrected",
                                  "NLL paper", "Δ NLL", "Δ NLL corrected"], rows)
    write_results(Path(args.out), NAME, args, results, md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {args.out}")
    return results


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv, nonneg=("anneal_epochs", "free_bits", "check_points"),
                      positive=("epochs", "iwae_epochs", "num_train", "batch_size", "iwae_batch_size", "lr", "hidden",
                                "layers", "iwae_k", "eval_samples", "num_test", "grid", "grid_samples", "quad_cells",
                                "check_samples", "workers"), profiles=PROFILES)
    if args.check_points > args.num_test:
        parser.error(f"--check-points={args.check_points} is not allowed: at most --num-test={args.num_test}")
    if args.num_train > 50_000 or args.num_test > 5_000:
        parser.error(f"--num-train={args.num_train} / --num-test={args.num_test} exceed the split sizes 50000 / 5000")
    if args.quad_cells % 48:
        parser.error(f"--quad-cells={args.quad_cells} is not allowed: it must be a multiple of 48 (it and half of it "
                     "put cell edges on the checkerboard's edges)")
    args.datasets = list(dict.fromkeys(args.datasets))  # in the order given, each once
    for path in args.test_set_check or ():
        problem = check_results_file(path, args.num_test)
        if problem:
            parser.error(f"--test-set-check {path}: {problem}")
    args.objectives = [o for o in OBJECTIVES if o in args.objectives]
    out = Path(args.out)
    progress = Progress(args.quiet)
    jobs = [(ds, objective) for ds in args.datasets for objective in args.objectives]
    progress(f"quadrature rules of the true densities ({args.quad_cells} and {args.quad_cells // 2} cells per axis)")
    quadrature = {ds: {c: toy_quadrature(ds, c) for c in (args.quad_cells, args.quad_cells // 2)}
                  for ds in args.datasets}
    refs = {ds: reference(ds, args.num_test, quadrature[ds], args.quad_cells) for ds in args.datasets}
    if args.test_set_check:
        return test_set_check(args, refs, progress)
    progress(f"{len(jobs)} models, {min(args.workers, len(jobs))} at a time")
    outs = run_jobs(args, jobs, quadrature, refs)
    results, runs, maps, x_tests, rows = {}, {}, {}, {}, []
    for ds in args.datasets:
        results[ds], runs[ds], maps[ds] = {}, {}, {}
        x_tests[ds] = load_dataset(ds, "test")[: args.num_test].to(args.device)
        for objective in args.objectives:
            res, maps[ds][objective] = outs[(ds, objective)]
            results[ds][objective] = res
            runs[ds][objective] = load_run(run_dir(args, ds, objective), args.device)[:2]
            k = res["train_bound_k"]
            rows.append([ds, "VAE" if objective == "elbo" else f"IWAE (k={k})",
                         f"{TOY_ENTROPY_BITS[ds]:.3f} ({paper_entropy(ds)})",
                         f"{res['neg_elbo_bits']:.3f} ± {res['neg_elbo_bits_se']:.3f}",
                         f"{res['train_bound_bits']:.3f} ± {res['train_bound_bits_se']:.3f}", res["paper_loss_bits"],
                         res["train_bound_bits"] - res["paper_loss_bits"],
                         f"{res['nll_bits']:.3f} ± {res['nll_bits_se']:.3f}",
                         f"{res['nll_quad_bits']:.3f} ± {res['nll_quad_mc_se_bits']:.3f}",
                         f"{res['nll_cv_bits']:.3f} ± {res['nll_cv_bits_se']:.3f}", res["paper_nll_bits"],
                         res["nll_bits"] - res["paper_nll_bits"], res["nll_quad_bits"] - res["paper_nll_bits"],
                         res["nll_cv_bits"] - res["paper_nll_bits"],
                         res["neg_elbo_bits"] - res["nll_bits"], res["nll_quad_bits"] - TOY_ENTROPY_BITS[ds],
                         f"{res['training']['total_seconds']:.0f}"])
        results[ds]["entropy_bits"] = TOY_ENTROPY_BITS[ds]
        results[ds]["entropy_error_bits"] = TOY_ENTROPY_ERROR_BITS[ds]
        results[ds]["reference"] = {k: v for k, v in refs[ds].items() if k != "log_p_test"}
    progress("figures")
    save_figure(density_figure(maps, args.datasets, args.grid), out / "density_maps.png")
    for objective in args.objectives:
        save_figure(latent_figure(runs, args.datasets, objective, x_tests), out / f"latent_{objective}.png")
    half = args.quad_cells // 2
    md = ("All values in bits (−log2 of a density; lower is better, bounded below by H). "
          "Ours: mean over held-out test points ± standard error across points; −ELBO is the "
          f"{args.eval_samples}-sample mean of −log w, NLL is −IWAE with k = {args.eval_samples}. "
          "'NLL quad' is the same estimator averaged over the true density instead of the test points (the "
          f"tutorial's protocol: a midpoint rule of {args.quad_cells}² cells weighted by p(x), "
          "data.toy_quadrature), ± its Monte Carlo error; it has no test-set sampling error. 'NLL corrected' is "
          "the test NLL with the test sample's own deviation from H removed, paired per point: H + mean over test "
          "points of log2 p(x) − log2 p̂(x), ± its standard error. "
          "'loss' is each model's own training objective as in the tutorial: −ELBO (= −L_1) for the VAE, "
          f"the IWAE bound −L_{args.iwae_k} for the IWAE (mean over {args.eval_samples // args.iwae_k} independent "
          f"groups of {args.iwae_k} draws per point); Δ loss compares it with the paper's loss. The −ELBO column "
          "of the IWAE row shows how loose the IWAE-trained model's ELBO is. 'train s' is the training's own "
          "time, the sum of the epochs' seconds in the run's log.csv (also when this command reused the run). "
          "Paper: R. Yu (2020) Tables 1–2; H in parentheses.\n\n")
    md += markdown_table(["data", "model", "H ours (paper)", "−ELBO ours", "loss ours", "loss paper", "Δ loss",
                          "NLL ours", "NLL quad", "NLL corrected", "NLL paper", "Δ NLL", "Δ NLL quad",
                          "Δ NLL corrected", "gap −ELBO − NLL",
                          "NLL quad − H", "train s"], rows)
    md += (f"\nQuadrature check: NLL quad on {half}² cells minus on {args.quad_cells}² cells (the rule's error is "
           "of this order or smaller): " + ", ".join(
               f"{ds} {o} {results[ds][o][f'nll_quad_bits_{half}'] - results[ds][o]['nll_quad_bits']:+.4f}"
               for ds in args.datasets for o in args.objectives) + " bits.\n")
    checks = [(ds, o, results[ds][o]["sample_size_check"]) for ds in args.datasets for o in args.objectives
              if results[ds][o]["sample_size_check"]]
    if checks:
        md += (f"\nSample-size check (first {args.check_points} test points): NLL with k = {args.eval_samples} minus "
               f"NLL with k = {args.check_samples} independent draws, paired, ± s.e.: " + ", ".join(
                   f"{ds} {o} {c['nll_k_minus_big_bits']:+.4f} ± {c['nll_k_minus_big_bits_se']:.4f}"
                   for ds, o, c in checks) + " bits.\n")
    md += "\nFigures: density_maps.png, " + ", ".join(f"latent_{o}.png" for o in args.objectives) + "\n"
    reused = [f"{ds}_{o}" for (ds, o) in jobs if outs[(ds, o)][0]["reused_training"]]
    write_results(out, NAME, args, results, md, progress.elapsed,
                  reused=f"the finished training runs {', '.join(reused)} (their time is in 'train s')" if reused
                  else None)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
