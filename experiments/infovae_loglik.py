r"""InfoVAE, Table 1: test log-likelihood of ELBO, MMD-VAE, Stein-VAE and adversarial InfoVAE with a PixelCNN decoder.

Zhao, Song & Ermon (AAAI 2019), Table 1: on dynamically binarized MNIST with a PixelCNN decoder and
dim z = 5, the negated test log-likelihoods (nats) are ELBO 82.75, MMD-VAE 80.76, Stein-VAE 81.47 and
Adversarial 82.21 (:data:`PAPER`): MMD best, then Stein, adversarial, ELBO. Here the four models are the
library's gated PixelCNN decoder (:class:`pyro_vaegap.models.PixelCNNVAE`) with an FFG encoder (ELU MLP),
trained by :func:`pyro_vaegap.training.train` on the **statically** binarized MNIST of ``binarized_mnist.npz``
(the only binarization we have) with

* ``elbo``: the ELBO;
* ``mmd``, ``stein``, ``adversarial``: the InfoVAE objective :math:`\mathcal L_{\alpha,\lambda}` with
  :math:`\alpha = 0` and :math:`\lambda` = ``--lambda`` (1000) and that divergence between :math:`q(z)` and the
  prior (:mod:`pyro_vaegap.objectives.infovae`). The paper's :math:`\alpha, \lambda` for this table are our assumption
  (the values of its other MNIST experiments), stated beside the numbers.

Test log-likelihood: IWAE with ``--iwae-samples`` importance samples of the encoder on ``--num-test``
seeded random test images (:func:`pyro_vaegap.estimators.importance.importance_sample`), a lower bound of
:math:`\log p(x)` in expectation; with ``--ais-chains`` > 0 also AIS (:func:`pyro_vaegap.estimators.ais.ais`) on the first
``--ais-points`` of them. ``--profile cpu`` (default) is a small network, a training subset and a few epochs
(tens of minutes on one thread); ``--profile paper`` is the full training set and a larger network for a GPU
(the paper's exact PixelCNN and training length are not stated in enough detail for us to copy them).
A model whose training diverges is recorded as such, not dropped.
"""
from __future__ import annotations

import csv
import json
import math
import time
from pathlib import Path

import torch
from scipy.stats import linregress

from pyro_vaegap.estimators.aggregate import encode, mutual_information
from pyro_vaegap.estimators.ais import ais
from pyro_vaegap.estimators.importance import prior_importance
from pyro_vaegap.data import DYNAMIC_DATASETS, DYNAMIC_EVAL_SEED, load_dataset, seeded_subset

from pyro_vaegap.harness import (Progress, Setting, evaluate, fmt, json_clean, make_parser, markdown_table, run_main,
                                 save_figure, train_run, write_results)
from pyro_vaegap.report import papers
from pyro_vaegap.utils import ConfigError, atomic_write_json
from pyro_vaegap.studies.infovae_mnist import parse_infovae_args
from pyro_vaegap.studies.infovae_pixelcnn import add_pixelcnn_options, loglik_config, pixelcnn_profiles, protocol_text

NAME = "infovae_loglik"
#: Table 1 of Zhao, Song & Ermon (2019): negated test log-likelihood in nats (:mod:`pyro_vaegap.report.papers`,
#: ``zhao2019:1:OBJECTIVE:nll``)
PAPER = {obj: papers.value("zhao2019", "1", obj, "nll") for obj in ("elbo", "mmd", "stein", "adversarial")}
LABELS = {"elbo": "ELBO", "mmd": "MMD-VAE", "stein": "Stein-VAE", "adversarial": "Adversarial"}
OBJECTIVES = tuple(PAPER)
#: what the smoke run (``--quick``) changes in the cpu profile
QUICK = {"num_train": 100, "epochs": 1, "pixelcnn_layers": 2, "pixelcnn_channels": 4, "hidden": 16, "num_test": 3,
         "iwae_samples": 4, "ais_chains": 2, "ais_points": 1, "ais_steps": 4, "batch_size": 50, "num_valid": 10}
PROFILES = pixelcnn_profiles(
    # sized on the 2-core development CPU (one thread): one model trains in about 5 minutes
    cpu={"num_train": 3000, "epochs": 3, "pixelcnn_layers": 4, "pixelcnn_channels": 16, "hidden": 200,
         "num_test": 100, "iwae_samples": 50, "ais_chains": 0, "ais_points": 0, "ais_steps": 500,
         "ais_leapfrog": 10, "prior_samples": 0, "prior_points": 0},
    # the authors' protocol and sizes (12 gated layers x 32 maps; 40,000 steps of batch 100; prior importance
    # sampling with 50,000 draws on 2,000 test images): for a GPU
    paper={"epochs": 80, "pixelcnn_layers": 12, "pixelcnn_channels": 32,
           "num_test": 2000, "iwae_samples": 1000, "ais_chains": 16, "ais_points": 500, "ais_steps": 1000,
           "ais_leapfrog": 10, "prior_samples": 50_000, "prior_points": 2000},
    # the authors' protocol with a PixelCNN small enough for one CPU thread: 64 epochs (32,000 steps, against the
    # authors' 40,000-67,000) took 4-5 hours per model with four models on two loaded cores (measured:
    # benchmarks/bench_infovae_step.py and the runs' log.csv, docs/infovae.rst); 32 epochs still rose by 0.05-0.1
    # nats per epoch. Whether the curves are flat by the end is what the results report
    converged={"epochs": 64, "pixelcnn_layers": 3, "pixelcnn_channels": 8,
               # evaluation sized by the measured ~1-5 ms per PixelCNN pass on this machine (docs/infovae.rst)
               "num_test": 1000, "iwae_samples": 50, "ais_chains": 4, "ais_points": 100, "ais_steps": 50,
               "ais_leapfrog": 5, "prior_samples": 50_000, "prior_points": 2},
    quick={**QUICK, "prior_samples": 8, "prior_points": 2, "ais_leapfrog": 2},
    settings={"num_test": Setting(int, "seeded random test images of the IWAE estimate"),
              "iwae_samples": Setting(int, "importance samples per test image"),
              "ais_chains": Setting(int, "AIS chains per point (0: no AIS)"),
              "ais_points": Setting(int, "test images (the first of them) that AIS estimates too"),
              "ais_steps": Setting(int, "AIS intermediate distributions (with --ais-chains)"),
              "ais_leapfrog": Setting(int, "leapfrog steps of each AIS transition"),
              "prior_samples": Setting(int, "prior draws of the authors' estimator, importance sampling from p(z) "
                                            "(0: not run)"),
              "prior_points": Setting(int, "test images (the first of them) that the prior-proposal estimate covers")},
    help={"cpu": "small PixelCNN, training subset, few epochs (static binarization, Adam, alpha = 0)",
          "paper": "the authors' protocol and network sizes (GPU)",
          "converged": "the authors' protocol, a 3-layer x 8-map PixelCNN trained to convergence on a CPU"})


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0], profiles=PROFILES)
    add_pixelcnn_options(p, NAME)
    p.add_argument("--latent-dim", type=int, default=5, help="dim z (the paper's 5)")
    p.add_argument("--objectives", nargs="+", choices=OBJECTIVES, default=list(OBJECTIVES),
                   help="the models to train and evaluate (default: all four; the table lists those evaluated)")
    p.add_argument("--train-only", nargs="+", choices=OBJECTIVES, default=None,
                   help="train (or resume) only these models' runs and stop, evaluating nothing: to train the models "
                        "in parallel processes before one evaluating run")
    return p


def _summary(nll: torch.Tensor) -> dict:
    """Mean and standard error over the images of per-image negated log-likelihoods ``nll`` (nats)."""
    nll = nll.double().cpu()
    return {"num_points": int(nll.numel()), "nll_nats": float(nll.mean()),
            "nll_nats_se": float(nll.std() / math.sqrt(nll.numel())) if nll.numel() > 1 else float("nan"),
            "nll_nats_per_point": [float(v) for v in nll]}


def evaluate_model(args, model, guide, x_test, device, progress=None) -> dict:
    """The negated test log-likelihood (nats) by three estimators, each a stochastic lower bound of log p(x) (so the
    highest, the lowest −log p̂, is the tightest): IWAE with the encoder as proposal on all of ``x_test``; the
    authors' importance sampling from the prior (:func:`~pyro_vaegap.estimators.importance.prior_importance`,
    ``--prior-samples`` draws) on the first ``--prior-points`` images; AIS on the first ``--ais-points``. Beside them,
    how much the encoder uses z there: the average KL of q(z|x) to the prior and the mutual information I_q(x; z) of
    the test images' empirical distribution (:func:`pyro_vaegap.estimators.aggregate.mutual_information`, at most
    log N). A decoder that ignores z (the information preference of a flexible decoder) shows as both near 0."""
    progress = progress or (lambda msg: None)
    x = x_test.to(device)
    t = time.time()
    # about 200 decoder rows per call: a PixelCNN pass per image costs 1.6x more at 1,000 rows than at 50 on this
    # CPU (the activations fall out of cache), and the tracing per call is small beside 200 passes
    res = evaluate(model, guide, x, args.iwae_samples, keep_per_point=True,
                   sample_chunk=max(1, min(args.iwae_samples, 50)), data_chunk=max(1, 200 // args.iwae_samples))
    res["iwae_seconds"] = time.time() - t
    loc, scale = encode(guide, x)
    info = mutual_information(loc.cpu(), scale.cpu(), draws=10, seed=args.seed)  # it samples with a CPU generator
    res["information"] = {k: info[k] for k in ("avg_kl", "avg_kl_se", "mi", "mi_se", "log_n")}
    if args.prior_samples > 0 and args.prior_points > 0:
        progress(f"  prior importance sampling, {args.prior_samples} draws on {args.prior_points} images")
        t = time.time()
        torch.manual_seed(args.seed)
        p = prior_importance(model, x[:args.prior_points], args.prior_samples,
                             sample_chunk=min(args.prior_samples, 100), data_chunk=2)
        res["prior"] = {"samples": args.prior_samples, **_summary(-p.log_px),
                        "mc_se_max_nats": float(p.log_px_se.max()), "ess_mean": float(p.ess.double().mean()),
                        "ess_min": float(p.ess.min()), "seconds": time.time() - t}
    if args.ais_chains > 0 and args.ais_points > 0:
        progress(f"  AIS, {args.ais_chains} chains x {args.ais_steps} steps on {args.ais_points} images")
        t = time.time()
        torch.manual_seed(args.seed)
        a = ais(model, x[:args.ais_points], num_chains=args.ais_chains, num_steps=args.ais_steps,
                leapfrog_steps=args.ais_leapfrog, data_chunk=max(1, 400 // args.ais_chains))
        res["ais"] = {"chains": args.ais_chains, "steps": args.ais_steps, "leapfrog": args.ais_leapfrog,
                      **_summary(-a.log_px),
                      "accept_rate": float(a.accept_rate.mean()), "seconds": time.time() - t}
    return res


def _paired(a, b) -> dict:
    """Mean and standard error over the first images both cover of the per-image difference ``a − b``."""
    k = min(len(a), len(b))
    d = torch.tensor(a[:k], dtype=torch.float64) - torch.tensor(b[:k], dtype=torch.float64)
    return {"mean": float(d.mean()), "se": float(d.std() / math.sqrt(k)) if k > 1 else float("nan"), "num_points": k}


#: the fewest shared images on which one estimator can be judged looser than another: below 10 the standard error
#: itself is too uncertain for a two-standard-error rule (Student's 97.5 % quantile exceeds 2.26 there), and the
#: authors' estimator covers only two images in the converged profile
MIN_PAIRED = 10


def tightest(res: dict) -> dict:
    """Which estimators give the highest lower bound (lowest −log p̂). Each is paired with IWAE on the images it
    covers (the first ``k`` of IWAE's: ``minus_iwae``, mean ± s.e. of its −log p̂ minus IWAE's). An estimator is
    *loose* when another one's −log p̂ is below it by more than two standard errors of their paired difference on
    the images both cover, if they share at least :data:`MIN_PAIRED`; the others are ``tight`` (within their noise
    of the best), and ``best`` is the tight one with the lowest mean difference from IWAE. A difference of a few
    hundredths of a nat between AIS and IWAE on a hundred images is noise, and two images cannot resolve anything:
    only a resolved difference counts."""
    per = {"iwae": res["nll_nats_per_point"]}
    per.update({n: res[n]["nll_nats_per_point"] for n in ("prior", "ais") if n in res})
    minus = {n: _paired(v, per["iwae"]) for n, v in per.items()}
    loose = {e for e in per for f in per if f != e
             and (d := _paired(per[e], per[f]))["num_points"] >= MIN_PAIRED and d["mean"] > 2 * d["se"]}
    tight = [e for e in per if e not in loose] or list(per)
    return {"minus_iwae": minus, "tight": tight, "best": min(tight, key=lambda e: minus[e]["mean"])}


def per_point(r: dict, estimator: str):
    """The per-image −log p̂ of one model's results by ``estimator`` (iwae, prior or ais), or None."""
    if estimator == "iwae":
        return r.get("nll_nats_per_point")
    return r.get(estimator, {}).get("nll_nats_per_point")


def paired_differences(results: dict, estimator: str = "iwae") -> dict:
    """Per objective, the mean and standard error over the test images of its −log p̂ (by ``estimator``) minus the
    ELBO model's on the same image: the comparison the shared test images allow (much tighter than the two
    standard errors)."""
    base = per_point(results.get("elbo", {}), estimator)
    if base is None:
        return {}
    return {obj: _paired(v, base) for obj, r in results.items()
            if obj != "elbo" and (v := per_point(r, estimator)) is not None}


def learning_curves(results: dict):
    """The validation ELBO (and, where logged, MMD² of q(z) to the prior) of every model by epoch."""
    import matplotlib.pyplot as plt

    logs = {o: r["train_log"] for o, r in results.items() if isinstance(r, dict) and r.get("train_log")}
    mmd = any("valid_mmd2" in row for log in logs.values() for row in log)
    fig, axes = plt.subplots(1, 2 if mmd else 1, figsize=(11 if mmd else 5.5, 4), squeeze=False)
    for obj, log in logs.items():
        ep = [row["epoch"] for row in log]
        axes[0, 0].plot(ep, [-row["valid_elbo"] for row in log], marker=".", label=LABELS[obj])
        if mmd:
            axes[0, 1].plot(ep, [row.get("valid_mmd2", float("nan")) for row in log], marker=".", label=LABELS[obj])
    axes[0, 0].set_title("validation −ELBO (nats) by epoch", fontsize=9)
    axes[0, 0].set_xlabel("epoch"), axes[0, 0].legend(fontsize=8)
    if mmd:
        axes[0, 1].set_title("MMD²(q(z), p(z)) on validation images by epoch", fontsize=9)
        axes[0, 1].set_yscale("symlog", linthresh=1e-3), axes[0, 1].set_xlabel("epoch"), axes[0, 1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def last_change(log: list[dict], epochs: int = 2) -> float:
    """How much the validation ELBO moved over the last ``epochs`` epochs (nats): near 0 for a converged run."""
    return float(log[-1]["valid_elbo"] - log[-1 - epochs]["valid_elbo"]) if len(log) > epochs else float("nan")


#: the windows (epochs) over which the results give the learning curves' late slopes
SLOPE_WINDOWS = (5, 10, 20)


def late_slope(log: list[dict], key: str = "valid_elbo", epochs: int = 5) -> dict:
    """Least-squares slope of ``key`` over the last ``epochs`` epochs (nats per epoch) and its standard error
    (:func:`scipy.stats.linregress`): the curve is flat when the slope is within about two standard errors of 0,
    i.e. when its remaining trend is smaller than its epoch-to-epoch noise."""
    rows = [r for r in log if key in r][-epochs:]
    if len(rows) < 3:  # a slope's standard error needs n - 2 > 0 degrees of freedom
        return {"slope": float("nan"), "se": float("nan"), "epochs": len(rows)}
    fit = linregress([r["epoch"] for r in rows], [r[key] for r in rows])
    return {"slope": float(fit.slope), "se": float(fit.stderr), "epochs": len(rows)}


def train_log(run: Path) -> list[dict]:
    """The run's ``log.csv``, one dict per epoch (numbers as floats): how far training had come."""
    with open(run / "log.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


#: the options an evaluation depends on (besides the run): a run's cached evaluation is reused only for the same
EVAL_SETTINGS = ("dataset", "data_dir", "seed", "num_test", "iwae_samples", "prior_samples", "prior_points",
                 "ais_chains", "ais_points", "ais_steps", "ais_leapfrog")
#: a run's evaluations, one per EVAL_SETTINGS key (so evaluating the models one at a time, then all, redoes nothing)
EVAL_FILE = "loglik_eval.json"


def load_eval_cache(run: Path) -> dict:
    path = run / EVAL_FILE
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is damaged ({e}): delete it to evaluate this model again") from None


def main(argv=None):
    parser = build_parser()
    args = parse_infovae_args(parser, argv, PROFILES, nonneg=("alpha",),
                              positive=("latent_dim", "batch_size", "lr", "num_valid", "ais_steps", "num_train", "epochs",
                                        "pixelcnn_layers", "pixelcnn_channels", "hidden", "num_test", "iwae_samples",
                                        "ais_leapfrog"))
    for k in ("ais_chains", "ais_points", "prior_samples", "prior_points"):
        if getattr(args, k) < 0:
            parser.error(f"--{k.replace('_', '-')}={getattr(args, k)} is not allowed: it must be >= 0")
    for k in ("ais_points", "prior_points"):
        if getattr(args, k) > args.num_test:
            parser.error(f"--{k.replace('_', '-')}={getattr(args, k)} is not allowed: at most --num-test="
                         f"{args.num_test} (they are the first of the test images)")
    if args.num_train > 50_000 or args.num_test > 10_000:
        parser.error(f"--num-train={args.num_train} / --num-test={args.num_test}: at most 50000 / 10000 images")
    device = args.device
    out, progress = Path(args.out), Progress(args.quiet)
    if args.train_only:
        for obj in args.train_only:
            _, _, secs = train_run(loglik_config(args, obj), Path(args.runs) / obj, progress, device)
            progress(f"{LABELS[obj]}: trained in {secs / 60:.1f} min -> {Path(args.runs) / obj}")
        return {}
    x_test = load_dataset(args.dataset, "test", data_dir=args.data_dir)
    x_test = x_test[seeded_subset(x_test.shape[0], args.num_test, args.seed)]
    results, rows = {}, []
    for obj in args.objectives:
        cfg = loglik_config(args, obj)
        run = Path(args.runs) / obj
        try:
            model, guide, secs = train_run(cfg, run, progress, device)
        except FloatingPointError as e:  # a diverged objective is a result, not a crash of the experiment
            progress(f"{LABELS[obj]}: training diverged ({e})")
            results[obj] = {"run_dir": str(run), "diverged": str(e), "paper_nll_nats": PAPER[obj]}
            continue
        key = json.dumps({**{k: getattr(args, k) for k in EVAL_SETTINGS}, "epochs": cfg.epochs}, sort_keys=True)
        cache = load_eval_cache(run)
        if key in cache:  # evaluated before with the same settings (an earlier run of this command)
            progress(f"{LABELS[obj]}: reusing its evaluation in {run / EVAL_FILE}")
            ev = cache[key]
        else:
            progress(f"{LABELS[obj]}: IWAE({args.iwae_samples}) on {args.num_test} test images")
            ev = json_clean(evaluate_model(args, model, guide, model.validate_data(x_test), device, progress))
            atomic_write_json(run / EVAL_FILE, {**cache, key: ev})
        ev = {**ev, "tightest": tightest(ev)}  # judged from the per-image values, never from a saved verdict
        log = train_log(run)
        results[obj] = {"run_dir": str(run), "train_seconds": secs, "config": cfg.to_dict(), "train_log": log,
                        "valid_elbo_change_last_2_epochs": last_change(log),
                        **{f"{k}_slope_last_{n}_epochs": late_slope(log, k, n)
                           for k in ("valid_elbo", "train_objective") for n in SLOPE_WINDOWS},
                        "paper_nll_nats": PAPER[obj], "difference_nats": ev["nll_nats"] - PAPER[obj], **ev}
        progress(f"{LABELS[obj]}: -log p̂ IWAE {ev['nll_nats']:.2f} ± {ev['nll_nats_se']:.2f}"
                 + (f", prior IS {ev['prior']['nll_nats']:.2f}" if "prior" in ev else "")
                 + (f", AIS {ev['ais']['nll_nats']:.2f}" if "ais" in ev else "")
                 + f" (paper {PAPER[obj]:.2f}); tightest {ev['tightest']['best']}; "
                 f"-ELBO {ev['neg_elbo_nats']:.2f}, KL(q(z|x)||p) {ev['information']['avg_kl']:.2f}, "
                 f"I_q {ev['information']['mi']:.2f}")
    finished = [o for o in args.objectives if "nll_nats" in results.get(o, {})]
    # the estimator for the ranking: the one tight (not resolved looser than another) for most models; ties: the
    # one covering more images, so that two images of the prior estimate never outvote a hundred of AIS
    votes = {e: sum(e in results[o]["tightest"]["tight"] for o in finished) for e in ("iwae", "prior", "ais")}
    covered = {e: min((results[o]["tightest"]["minus_iwae"][e]["num_points"] for o in finished
                       if e in results[o]["tightest"]["minus_iwae"]), default=0) for e in votes}
    rank_by = max(("ais", "prior", "iwae"), key=lambda e: (votes[e], covered[e])) if finished else "iwae"
    paired = {e: paired_differences(results, e) for e in ("iwae", "prior", "ais")}
    score = {o: (results[o]["nll_nats"] if rank_by == "iwae" else results[o][rank_by]["nll_nats"]) for o in finished}
    order = sorted(score, key=score.get)
    results["paired_vs_elbo"] = paired
    results["estimator_votes"], results["ranked_by"] = votes, rank_by
    results["ranking"], results["paper_ranking"] = order, sorted(PAPER, key=PAPER.get)
    results["test_binarization"] = ({"dataset": args.dataset, "seed": DYNAMIC_EVAL_SEED + 1}
                                    if args.dataset in DYNAMIC_DATASETS else {"dataset": args.dataset})

    def cell(r, key):
        if key == "iwae":
            return f"{fmt(r['nll_nats'])} ± {fmt(r['nll_nats_se'])}"
        return f"{fmt(r[key]['nll_nats'])} ± {fmt(r[key]['nll_nats_se'])}" if key in r else "—"

    def slope_cell(d):  # "—" while too few epochs were logged for a slope with a standard error
        return f"{d['slope']:+.3f} ± {fmt(d['se'])}" if math.isfinite(d["se"]) else "—"

    def tight_cell(t):  # the tight ones, the best first, then every other estimator's paired difference from IWAE
        tight = " = ".join([t["best"]] + [e for e in t["tight"] if e != t["best"]])
        return tight + "; " + ", ".join(f"{n} {d['mean']:+.2f} ± {fmt(d['se'])} ({d['num_points']})"
                                        for n, d in t["minus_iwae"].items() if n != "iwae")

    def pcell(obj, key):
        d = paired[key].get(obj)
        return f"{d['mean']:+.2f} ± {fmt(d['se'])}" if d else "—"

    for obj in args.objectives:
        r = results[obj]
        if "diverged" in r:
            rows.append([LABELS[obj], f"{PAPER[obj]:.2f}", "diverged"] + ["—"] * 11)
            continue
        rows.append([LABELS[obj], f"{PAPER[obj]:.2f}", cell(r, "prior"), cell(r, "iwae"), cell(r, "ais"),
                     tight_cell(r["tightest"]), pcell(obj, rank_by), pcell(obj, "iwae"),
                     f"{r['neg_elbo_nats']:.2f} ± {r['neg_elbo_nats_se']:.2f}",
                     f"{r['information']['avg_kl']:.2f}", f"{r['information']['mi']:.2f} ± {fmt(r['information']['mi_se'])}",
                     fmt(r['valid_elbo_change_last_2_epochs'])]
                    + ["; ".join(slope_cell(r[f"{k}_slope_last_{n}_epochs"]) for n in SLOPE_WINDOWS)
                       for k in ("valid_elbo", "train_objective")])
    if finished:
        save_figure(learning_curves(results), out / "curves.png")
    ev0 = results[finished[0]] if finished else {}
    n_prior = ev0.get("prior", {}).get("num_points", 0)
    n_ais = ev0.get("ais", {}).get("num_points", 0)
    md = ("Negated test log-likelihood, nats (lower is better), mean ± standard error over the test images. Every "
          "estimator is a stochastic lower bound of log p(x), so the lowest −log p̂ is the tightest. "
          f"Prior IS: the authors' estimator, importance sampling from p(z) with {args.prior_samples} draws, on the "
          f"first {n_prior} test images; IWAE: the encoder as proposal, {args.iwae_samples} samples, on "
          f"{args.num_test} seeded test images; AIS: {args.ais_chains} chains × {args.ais_steps} steps "
          f"({args.ais_leapfrog} leapfrog steps each) on the first {n_ais}. 'tightest': the estimators that are tight — no other "
          "one's −log p̂ below theirs by more than two standard errors, paired over the images both cover — the lowest "
          "first, then each other estimator's −log p̂ minus IWAE's, paired over the images it covers (mean ± s.e., "
          "their number in brackets). The ranking uses the estimator that is tight for the most models (ties: the one "
          "covering more images).\n\n")
    md += markdown_table(["objective", "paper", f"ours: prior IS ({args.prior_samples})",
                          f"ours: IWAE ({args.iwae_samples})", "ours: AIS", "tightest",
                          f"ours − ELBO, paired ({rank_by})", f"ours − ELBO, paired (IWAE, {args.num_test} images)",
                          "ours: −ELBO", "E KL(q(z\\|x) ‖ p(z))", "I_q(x; z)",
                          "valid ELBO change, last 2 epochs", "valid ELBO slope, last 5; 10; 20 epochs",
                          "training objective slope, last 5; 10; 20 epochs"], rows)
    md += (f"\nRanking (best first) by {rank_by} (tight for {votes[rank_by]} of {len(finished)} models, on the images it "
           f"covers): ours {' < '.join(LABELS[o] for o in order)}; the paper "
           f"{' < '.join(LABELS[o] for o in results['paper_ranking'])}.\n\n"
           f"Our settings ({args.profile} profile): {protocol_text(args)} dim z = {args.latent_dim}. "
           "'ours − ELBO, paired': the mean ± standard error over the same test images of the per-image difference "
           "of −log p̂ from the ELBO model's, by the ranking's estimator. E KL(q(z|x) ‖ p(z)) and I_q(x; z) (nats, "
           f"on the IWAE test images; I_q is at most log {args.num_test} = {math.log(args.num_test):.2f}, 10 draws "
           "per image) say how much the model uses z. 'valid ELBO change': the validation ELBO's change over the "
           "last two epochs; 'slope': its least-squares slope (and the training objective's) over the last five, "
           "ten and twenty, nats per epoch ± standard error, positive while the model still improves (learning "
           "curves: curves.png).\n")
    write_results(out, NAME, args, json_clean(results), md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
