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
import math
from pathlib import Path

import torch

from pyro_vaegap.estimators.aggregate import encode, mutual_information
from pyro_vaegap.estimators.ais import ais
from pyro_vaegap.data import load_dataset, seeded_subset

from pyro_vaegap.harness import (Progress, Setting, evaluate, json_clean, make_parser, markdown_table, run_main,
                                 train_run, write_results)
from pyro_vaegap.report import papers
from pyro_vaegap.studies.infovae_mnist import parse_infovae_args
from pyro_vaegap.studies.infovae_pixelcnn import add_pixelcnn_options, loglik_config, pixelcnn_profiles

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
         "prior_samples": 0, "prior_points": 0},
    # the authors' protocol and sizes (12 gated layers x 32 maps; 40,000 steps of batch 100; prior importance
    # sampling with 50,000 draws on 2,000 test images): for a GPU
    paper={"epochs": 80, "pixelcnn_layers": 12, "pixelcnn_channels": 32,
           "num_test": 2000, "iwae_samples": 1000, "ais_chains": 16, "ais_points": 500, "ais_steps": 1000,
           "prior_samples": 50_000, "prior_points": 2000},
    # the authors' protocol with a PixelCNN small enough to train to convergence on one CPU thread in about half
    # an hour per model (measured: benchmarks/bench_infovae_step.py, docs/infovae.rst)
    converged={"epochs": 12, "pixelcnn_layers": 3, "pixelcnn_channels": 8,
               "num_test": 1000, "iwae_samples": 1000, "ais_chains": 8, "ais_points": 50, "ais_steps": 200,
               "prior_samples": 50_000, "prior_points": 20},
    quick={**QUICK, "prior_samples": 8, "prior_points": 2},
    settings={"num_test": Setting(int, "seeded random test images of the IWAE estimate"),
              "iwae_samples": Setting(int, "importance samples per test image"),
              "ais_chains": Setting(int, "AIS chains per point (0: no AIS)"),
              "ais_points": Setting(int, "test images (the first of them) that AIS estimates too"),
              "ais_steps": Setting(int, "AIS intermediate distributions (with --ais-chains)"),
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
    p.add_argument("--train-only", nargs="+", choices=OBJECTIVES, default=None,
                   help="train (or resume) only these models' runs and stop, evaluating nothing: to train the models "
                        "in parallel processes before one evaluating run")
    return p


def evaluate_model(args, model, guide, x_test, device) -> dict:
    """IWAE (and optionally AIS) negated log-likelihoods on the test subset, in nats, and how much the
    encoder uses z there: the average KL of q(z|x) to the prior and the mutual information I_q(x; z) of the
    test images' empirical distribution (:func:`pyro_vaegap.estimators.aggregate.mutual_information`, at most log N).
    A decoder that ignores z (the information preference of a flexible decoder) shows as both near 0."""
    x = x_test.to(device)
    res = evaluate(model, guide, x, args.iwae_samples, keep_per_point=True,
                   sample_chunk=max(1, min(args.iwae_samples, 50)), data_chunk=20)
    loc, scale = encode(guide, x)
    info = mutual_information(loc.cpu(), scale.cpu(), draws=10, seed=args.seed)  # it samples with a CPU generator
    res["information"] = {k: info[k] for k in ("avg_kl", "avg_kl_se", "mi", "mi_se", "log_n")}
    if args.ais_chains > 0 and args.ais_points > 0:
        a = ais(model, x[:args.ais_points], num_chains=args.ais_chains, num_steps=args.ais_steps,
                leapfrog_steps=2 if args.profile == "quick" else 10, data_chunk=max(1, 200 // args.ais_chains))
        nll = -a.log_px.double().cpu()
        res["ais"] = {"num_points": int(nll.numel()), "chains": args.ais_chains, "steps": args.ais_steps,
                      "nll_nats": float(nll.mean()),
                      "nll_nats_se": float(nll.std() / math.sqrt(nll.numel())) if nll.numel() > 1 else float("nan"),
                      "accept_rate": float(a.accept_rate.mean())}
    return res


def paired_differences(results: dict) -> dict:
    """Per objective, the mean and standard error over the test images of its −log p̂ minus the ELBO model's on the
    same image: the comparison the shared test images allow (much tighter than the two standard errors)."""
    if "nll_nats_per_point" not in results.get("elbo", {}):
        return {}
    base = torch.tensor(results["elbo"]["nll_nats_per_point"], dtype=torch.float64)
    out = {}
    for obj, r in results.items():
        if obj != "elbo" and "nll_nats_per_point" in r:
            d = torch.tensor(r["nll_nats_per_point"], dtype=torch.float64) - base
            out[obj] = {"mean": float(d.mean()),
                        "se": float(d.std() / math.sqrt(d.numel())) if d.numel() > 1 else float("nan")}
    return out


def train_log(run: Path) -> list[dict]:
    """The run's ``log.csv``, one dict per epoch (numbers as floats): how far training had come."""
    with open(run / "log.csv", newline="") as f:
        return [{k: float(v) for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def main(argv=None):
    parser = build_parser()
    args = parse_infovae_args(parser, argv, PROFILES, nonneg=("alpha",),
                              positive=("latent_dim", "batch_size", "lr", "num_valid", "ais_steps", "num_train", "epochs",
                                        "pixelcnn_layers", "pixelcnn_channels", "hidden", "num_test", "iwae_samples"))
    if args.ais_chains < 0 or args.ais_points < 0:
        parser.error("--ais-chains and --ais-points must be >= 0")
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
    for obj in OBJECTIVES:
        cfg = loglik_config(args, obj)
        run = Path(args.runs) / obj
        try:
            model, guide, secs = train_run(cfg, run, progress, device)
        except FloatingPointError as e:  # a diverged objective is a result, not a crash of the experiment
            progress(f"{LABELS[obj]}: training diverged ({e})")
            results[obj] = {"run_dir": str(run), "diverged": str(e), "paper_nll_nats": PAPER[obj]}
            rows.append([LABELS[obj], f"{PAPER[obj]:.2f}", "diverged", "—", "—", "—", "—", "—"])
            continue
        progress(f"{LABELS[obj]}: IWAE({args.iwae_samples}) on {args.num_test} test images")
        ev = evaluate_model(args, model, guide, model.validate_data(x_test), device)
        diff = ev["nll_nats"] - PAPER[obj]
        results[obj] = {"run_dir": str(run), "train_seconds": secs, "config": cfg.to_dict(),
                        "train_log": train_log(run),
                        "paper_nll_nats": PAPER[obj], "difference_nats": diff, **ev}
        progress(f"{LABELS[obj]}: -log p̂ {ev['nll_nats']:.2f} ± {ev['nll_nats_se']:.2f} (paper {PAPER[obj]:.2f}), "
                 f"-ELBO {ev['neg_elbo_nats']:.2f}, KL(q(z|x)||p) {ev['information']['avg_kl']:.2f}, "
                 f"I_q {ev['information']['mi']:.2f}")
        ais_cell = (f"{ev['ais']['nll_nats']:.2f} ± {ev['ais']['nll_nats_se']:.2f}" if "ais" in ev else "—")
        rows.append([LABELS[obj], f"{PAPER[obj]:.2f}", f"{ev['nll_nats']:.2f} ± {ev['nll_nats_se']:.2f}",
                     f"{diff:+.2f}", ais_cell, f"{ev['neg_elbo_nats']:.2f} ± {ev['neg_elbo_nats_se']:.2f}",
                     f"{ev['information']['avg_kl']:.2f} ± {ev['information']['avg_kl_se']:.2f}",
                     f"{ev['information']['mi']:.2f} ± {ev['information']['mi_se']:.2f}"])
    paired = paired_differences(results)
    for row, obj in zip(rows, OBJECTIVES):
        row.append(f"{paired[obj]['mean']:+.2f} ± {paired[obj]['se']:.2f}" if obj in paired else "—")
    results["paired_vs_elbo"] = paired
    finished = {o: r["nll_nats"] for o, r in results.items() if "nll_nats" in r}
    order = sorted(finished, key=finished.get)
    results["ranking"] = order
    results["paper_ranking"] = sorted(PAPER, key=PAPER.get)
    md = ("Negated test log-likelihood, nats (lower is better), mean ± standard error over the test images. "
          f"Ours: IWAE with {args.iwae_samples} samples on {args.num_test} seeded test images of the **statically** "
          "binarized MNIST; the paper: dynamically binarized MNIST (its Table 1).\n\n")
    md += markdown_table(["objective", "paper", f"ours: −log p̂ (IWAE {args.iwae_samples})", "ours − paper",
                          "ours: AIS", "ours: −ELBO", "E KL(q(z\\|x) ‖ p(z))", "I_q(x; z)",
                          "ours − ELBO, paired"], rows)
    md += (f"\nRanking (best first): ours {' < '.join(LABELS[o] for o in order)}; the paper "
           f"{' < '.join(LABELS[o] for o in results['paper_ranking'])}.\n\n"
           f"Our settings ({args.profile} profile): {args.num_train} training images, {args.epochs} epochs, batch "
           f"{args.batch_size}, Adam lr {args.lr}; gated PixelCNN with {args.pixelcnn_layers} layers of "
           f"{args.pixelcnn_channels} channels (first kernel 7, then 3), dim z = {args.latent_dim}; FFG encoder "
           f"784-{args.hidden}-{args.hidden} (ELU); InfoVAE α = {args.alpha}, λ = {args.lambda_} (assumed). Settings "
           "that differ from the paper: the binarization (static vs dynamic), the training set and length, the "
           "network sizes (the paper's are not ours), the evaluation (IWAE on a test subset, not the full test "
           "set).\n\nE KL(q(z|x) ‖ p(z)) and I_q(x; z) (nats, on the same test images; I_q is at most log "
           f"{args.num_test} = {math.log(args.num_test):.2f}, with 10 draws per image) say how much the model uses z: "
           "a PixelCNN that ignores z has both near 0 (the information preference the paper's Table 1 is about). "
           "'ours − ELBO, paired': the mean ± standard error over the test images of the per-image difference of "
           "−log p̂ from the ELBO model's.\n")
    write_results(out, NAME, args, json_clean(results), md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
