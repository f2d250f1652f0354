r"""Beyond the InfoVAE paper: the inference gaps and the mutual information of ELBO- vs MMD-trained VAEs.

The two binarized-MNIST models of ``experiments.infovae_variance`` at 10,000 training images
(dim z = 10, ELU MLPs 784-200-200, FFG encoder; one trained with the ELBO, one with the MMD InfoVAE,
:math:`\lambda = 1000`, :math:`\alpha = 0`) are reused from their run folders (``--runs``; trained there
with the same options when missing). For each:

* the gap report of Cremer, Li & Duvenaud (2018) on ``--num-points`` seeded test images
  (:func:`pyro_vaegap.report.compute.gap_report`): :math:`\log\hat p(x)` (AIS), :math:`\mathcal L[q^*_{\mathrm{FFG}}]`
  (per-datapoint FFG optimization), :math:`\mathcal L[q]` of the encoder, the approximation gap
  :math:`\log\hat p - \mathcal L[q^*]` and the amortization gap :math:`\mathcal L[q^*] - \mathcal L[q]`. For the
  MMD-trained model :math:`\mathcal L[q]` is still the ELBO of the trained model and encoder (the
  quantity the gaps are defined with), not its training objective. The evaluation is a reduced CPU
  profile of the paper's (see ``--help`` and the markdown for every setting that differs);
* the mutual information :math:`I_q(x; z) = \mathbb E_x\,\mathrm{KL}(q(z\mid x)\Vert q(z))` with :math:`q(z)` the
  mixture of the encoders over all training images (:func:`pyro_vaegap.estimators.aggregate.mutual_information`:
  exact for the training images' empirical distribution up to Monte Carlo error, at most :math:`\log N`),
  its leave-one-out upper bound, the average KL to the prior and the marginal
  :math:`\mathrm{KL}(q(z)\Vert p(z))`; and, to show the estimator's bias, the minibatch version with the
  mixture over ``--mi-batch`` images (at most :math:`\log B`).
"""
from __future__ import annotations

import math
import shutil
from pathlib import Path

import torch

from pyro_vaegap.estimators.aggregate import encode, mutual_information
from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.report.compute import gap_report
from pyro_vaegap.report.config import GapConfig
from pyro_vaegap.report.render import GapReport
from pyro_vaegap.utils import FolderLock

from pyro_vaegap.harness import (Profiles, Progress, Setting, json_clean, make_parser, markdown_table, run_main,
                                 save_figure, train_run, write_results)
from pyro_vaegap.studies.infovae_mnist import (COLORS, LABELS, OBJECTIVES, add_mnist_args, epochs_for, mnist_config,
                                               mnist_settings, parse_infovae_args, training_images)

NAME = "infovae_gaps"
#: the evaluation of Cremer et al. (2018), Table 2 (pyro_vaegap.gaps.PAPERS), beside ours in the markdown
PAPER_SCALE = {"num_points": 1000, "ais_chains": 100, "ais_steps": 500, "ais_leapfrog": 10, "iwae_samples": 5000,
               "local_samples": 100, "local_lr": 1e-3, "local_max_steps": "stopping rule (median ≈ 10,000 steps in "
               "our Table 2 run)", "local_init": "prior"}
#: the default profile: the settings of the committed results
CPU = {"size": 10_000, "steps": 15_000, "hidden": 200, "latent_dim": 10, "num_valid": 1000, "num_points": 50,
       "ais_chains": 50, "ais_steps": 500, "ais_leapfrog": 10, "iwae_samples": 2000, "local_samples": 50,
       "local_max_steps": 6000, "mi_points": 2000, "mi_draws": 5, "mi_batch": 100}
#: what the quick profile changes (a smoke run whose numbers mean nothing; its runs under OUT/runs)
QUICK = {"size": 200, "steps": 6, "hidden": 16, "latent_dim": 3, "num_valid": 50, "num_points": 4, "ais_chains": 3,
         "ais_steps": 5, "ais_leapfrog": 2, "iwae_samples": 20, "local_samples": 3, "local_max_steps": 20,
         "mi_points": 50, "mi_draws": 2, "mi_batch": 20}
PROFILES = Profiles(
    profiles={"cpu": CPU, "quick": {**CPU, **QUICK}},
    settings={
        "size": Setting(int, "training images of the models (infovae_variance's largest)"),
        "steps": Setting(int, "Adam steps of each model (as in infovae_variance)"),
        **mnist_settings("hidden", "latent_dim", "num_valid"),
        "num_points": Setting(int, "seeded random test images of the gap report (paper 1000)"),
        "ais_chains": Setting(int, "AIS chains (paper 100)"),
        "ais_steps": Setting(int, "AIS intermediate distributions (paper 500)"),
        "ais_leapfrog": Setting(int, "leapfrog steps per HMC move (paper 10)"),
        "iwae_samples": Setting(int, "samples of IWAE, L[q] and L[q*] (paper 5000)"),
        "local_samples": Setting(int, "samples per step of the per-datapoint FFG (paper 100)"),
        "local_max_steps": Setting(int, "cap on the per-datapoint optimization (paper: its stopping rule alone)"),
        "mi_points": Setting(int, "training images of the outer expectation of I_q"),
        "mi_draws": Setting(int, "draws z ~ q(z|x) per image for I_q"),
        "mi_batch": Setting(int, "minibatch size of the (biased) minibatch estimate of I_q"),
    },
    default="cpu", help={"cpu": "the committed results' settings"})


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0], profiles=PROFILES)
    p.add_argument("--lambda", dest="lambda_", type=float, default=1000.0, help="InfoVAE's lambda of the MMD model")
    add_mnist_args(p, runs="runs/infovae_variance", latent_dim=10, profiles=PROFILES)
    p.add_argument("--local-init", default="encoder", choices=("encoder", "prior"),
                   help="start of the per-datapoint optimization (paper: prior)")
    return p


def gap_config(args) -> GapConfig:
    return GapConfig(families=("ffg",), iwae_samples=args.iwae_samples, elbo_samples=args.iwae_samples,
                     ais=True, ais_chains=args.ais_chains, ais_steps=args.ais_steps, ais_leapfrog=args.ais_leapfrog,
                     ais_pilot_chains=min(10, args.ais_chains), ais_data_chunk=25, log_px="ais",
                     local_samples=args.local_samples, local_max_steps=args.local_max_steps,
                     local_check_every=min(100, args.local_max_steps), local_init=args.local_init, seed=args.seed)


@torch.no_grad()
def minibatch_mi(loc, scale, batch: int, batches: int, seed: int) -> dict:
    """The mean over ``batches`` seeded minibatches of the with-self estimate with the mixture over the batch."""
    gen = torch.Generator().manual_seed(seed)
    vals = []
    for b in range(batches):
        rows = torch.randperm(loc.shape[0], generator=gen)[:batch]
        vals.append(mutual_information(loc[rows], scale[rows], seed=seed + b)["mi"])
    v = torch.tensor(vals)
    return {"mi": float(v.mean()), "mi_se": float(v.std() / math.sqrt(len(v))), "batch": batch, "batches": batches,
            "log_b": math.log(batch)}


def figure(reports: dict, infos: dict):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2))
    keys = [("approximation:ffg", "approximation gap"), ("amortization:ffg", "amortization gap"),
            ("inference", "inference gap")]
    width = 0.38
    for i, obj in enumerate(reports):
        s = reports[obj].summary()
        axes[0].bar([j + (i - 0.5) * width for j in range(len(keys))], [s[k][0] for k, _ in keys], width,
                    yerr=[s[k][1] for k, _ in keys], color=COLORS[obj], label=LABELS[obj])
        mi = infos[obj]
        vals = [mi["avg_kl"], mi["mi"], mi["mi_loo"], mi["marginal_kl"], mi["minibatch"]["mi"]]
        errs = [mi["avg_kl_se"], mi["mi_se"], mi["mi_loo_se"], mi["marginal_kl_se"], mi["minibatch"]["mi_se"]]
        axes[1].bar([j + (i - 0.5) * width for j in range(len(vals))], vals, width, yerr=errs, color=COLORS[obj],
                    label=LABELS[obj])
    axes[0].set_xticks(range(len(keys)), [k for _, k in keys])
    axes[0].set_title("gaps on the test images (nats, ± s.e.)", fontsize=9)
    names = ["E KL(q(z|x)‖p)", "I_q (mixture of N)", "I_q leave-one-out", "KL(q(z)‖p(z))", "I_q minibatch"]
    axes[1].set_xticks(range(len(names)), names, fontsize=7)
    axes[1].set_title("information terms over the training images (nats, ± s.e.)", fontsize=9)
    any_mi = next(iter(infos.values()))
    axes[1].axhline(any_mi["log_n"], color="k", lw=0.6, ls="--", label=f"log N = {any_mi['log_n']:.2f}")
    axes[1].axhline(any_mi["minibatch"]["log_b"], color="k", lw=0.6, ls=":",
                    label=f"log B = {any_mi['minibatch']['log_b']:.2f}")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = build_parser()
    args = parse_infovae_args(parser, argv, PROFILES, nonneg=("alpha",),
                              positive=("size", "steps", "latent_dim", "hidden", "layers", "batch_size", "lr",
                                "num_valid", "num_points", "ais_chains", "ais_steps", "ais_leapfrog", "iwae_samples",
                                "local_samples", "local_max_steps", "mi_points", "mi_draws", "mi_batch"))
    if args.size > 50_000 or args.num_points > 10_000 or args.mi_points > args.size or args.mi_batch > args.size:
        parser.error("--size must be at most 50000, --num-points at most 10000, --mi-points and --mi-batch at most "
                     "--size")
    out, progress = Path(args.out), Progress(args.quiet)
    gcfg = gap_config(args)
    gcfg.check_families()
    x_test = load_dataset("binarized_mnist", "test", data_dir=args.data_dir)
    x_test = x_test[seeded_subset(x_test.shape[0], args.num_points, args.seed)].to(args.device)
    epochs = epochs_for(args.steps, args.size, args.batch_size)
    reports, infos, results, rows = {}, {}, {}, []
    for obj in OBJECTIVES:
        cfg = mnist_config(args, obj, args.size, epochs, args.lambda_)
        run = Path(args.runs) / f"{obj}_n{args.size}"
        model, guide, secs = train_run(cfg, run, progress, args.device)
        # the gap report, checkpointed: an interrupted run resumes where it stopped
        stem = out / f"gaps_{obj}"
        partial = out / f"gaps_{obj}.partial"
        progress(f"{LABELS[obj]}: gap report on {args.num_points} test images")
        with FolderLock(partial, "evaluation checkpoint folder"):
            rep = gap_report(model, guide, model.validate_data(x_test), gcfg, family="ffg", progress=False,
                             log=None if args.quiet else progress, checkpoint=partial)
            rep.meta.update({"train_config": cfg.to_dict(), "paper": None, "run_dir": str(run)})
            rep = GapReport.from_dict(rep.to_dict())  # the markdown of exactly what the JSON holds (inf -> null)
            rep.save(stem)
        shutil.rmtree(partial, ignore_errors=True)
        reports[obj] = GapReport.load(stem.with_suffix(".json"))  # exactly what was saved
        # the information terms over the training images
        x_train = model.validate_data(training_images(cfg).to(args.device))
        loc, scale = encode(guide, x_train)
        mi = mutual_information(loc, scale, num_points=args.mi_points, draws=args.mi_draws, seed=args.seed)
        mi["minibatch"] = minibatch_mi(loc, scale, args.mi_batch, max(1, args.mi_points // args.mi_batch), args.seed)
        infos[obj] = mi
        s = reports[obj].summary()
        results[obj] = {"run_dir": str(run), "train_seconds": secs, "gap_report": f"gaps_{obj}.json",
                        "summary": {k: {"mean": m, "se": e} for k, (m, e) in s.items()},
                        "gap_seconds": reports[obj].meta.get("seconds"), "information": mi}
        progress(f"{LABELS[obj]}: log p̂ {s['log_px'][0]:.2f}, L[q*] {s['local:ffg'][0]:.2f}, L[q] "
                 f"{s['amortized'][0]:.2f}; I_q {mi['mi']:.2f} (log N {mi['log_n']:.2f}), KL(q(z)||p) "
                 f"{mi['marginal_kl']:.2f}")
        pm = lambda k: f"{s[k][0]:.2f} ± {s[k][1]:.2f}"  # noqa: E731
        rows.append([LABELS[obj], pm("log_px"), pm("local:ffg"), pm("amortized"), pm("approximation:ffg"),
                     pm("amortization:ffg"), pm("inference")])
    progress("figure")
    save_figure(figure(reports, infos), out / "gaps.png")
    md = (f"Models: binarized MNIST, {args.size} training images, dim z = {args.latent_dim}, ELU MLPs "
          f"784-{'-'.join([str(args.hidden)] * args.layers)}, {args.steps} Adam steps ({epochs} epochs); MMD-VAE: "
          f"α = {args.alpha}, λ = {args.lambda_} (run folders under {args.runs}). Gap report (nats, mean ± standard "
          f"error over {args.num_points} seeded test images; L[q] is the ELBO of the trained encoder for both "
          "models; the full reports are gaps_elbo.md and gaps_mmd.md):\n\n")
    md += markdown_table(["objective", "log p̂ (AIS)", "L[q*_FFG]", "L[q]", "approximation gap", "amortization gap",
                          "inference gap"], rows)
    md += ("\nEvaluation settings against the paper-scale ones of Cremer et al. (2018), Table 2 (ours / theirs): "
           f"test images {args.num_points} / {PAPER_SCALE['num_points']}; AIS {args.ais_chains} chains × "
           f"{args.ais_steps} steps × {args.ais_leapfrog} leapfrog / {PAPER_SCALE['ais_chains']} × "
           f"{PAPER_SCALE['ais_steps']} × {PAPER_SCALE['ais_leapfrog']}; IWAE, L[q] and L[q*] with "
           f"{args.iwae_samples} / {PAPER_SCALE['iwae_samples']} samples; per-datapoint FFG with {args.local_samples} "
           f"/ {PAPER_SCALE['local_samples']} samples per step, lr {gcfg.local_lr} / {PAPER_SCALE['local_lr']}, "
           f"started at the {args.local_init} / {PAPER_SCALE['local_init']}, at most {args.local_max_steps} steps / "
           f"{PAPER_SCALE['local_max_steps']}.\n")
    irows = []
    for obj, mi in infos.items():
        b = mi["minibatch"]
        irows.append([LABELS[obj], f"{mi['avg_kl']:.2f} ± {mi['avg_kl_se']:.2f}", f"{mi['mi']:.3f} ± {mi['mi_se']:.3f}",
                      f"{mi['mi_loo']:.3f} ± {mi['mi_loo_se']:.3f}", f"{mi['marginal_kl']:.2f} ± {mi['marginal_kl_se']:.2f}",
                      f"{b['mi']:.3f} ± {b['mi_se']:.3f}"])
    any_mi = next(iter(infos.values()))
    md += (f"\nInformation terms over the training images (nats, ± standard error over the {any_mi['num_points']} "
           f"sampled images, {any_mi['draws']} draws each): the average KL to the prior, I_q(x; z) with q(z) the "
           f"mixture of all {any_mi['num_rows']} training encoders (exact for their empirical distribution; at most "
           f"log N = {any_mi['log_n']:.2f}), its leave-one-out version (an upper bound for the population), the "
           f"marginal KL(q(z) ‖ p(z)) (E KL = I_q + marginal KL), and the minibatch estimate with the mixture over "
           f"{any_mi['minibatch']['batch']} images (at most log B = {any_mi['minibatch']['log_b']:.2f}; mean over "
           f"{any_mi['minibatch']['batches']} batches).\n\n")
    md += markdown_table(["objective", "E KL(q(z\\|x) ‖ p(z))", "I_q(x;z)", "I_q leave-one-out", "KL(q(z) ‖ p(z))",
                          f"I_q minibatch (B = {any_mi['minibatch']['batch']})"], irows)
    md += "\nFigure: gaps.png\n"
    write_results(out, NAME, args, json_clean(results), md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
