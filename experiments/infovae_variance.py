r"""InfoVAE Fig. 2 (Zhao, Song & Ermon, AAAI 2019): variance over-estimation of the aggregate posterior.

For each training-set size in ``--sizes`` (seeded random subsets of the 50,000 binarized-MNIST training
images) two VAEs with dim z = 10 — Bernoulli decoder and FFG encoder, ELU MLPs 784-200-200 — are
trained, one with the ELBO and one with the MMD InfoVAE (:math:`\lambda = 1000`, :math:`\alpha = 0`), for
the same number of Adam steps (``--steps``; the epochs follow from the size). For each model it reports

* :math:`\log\det\mathrm{Cov}[q(z)]` of the aggregate posterior over the model's own training images,
  estimated from ``--draws`` encoder draws per image (the paper's measure; the prior's is
  :math:`\log\det I = 0`), beside the exact covariance of the mixture and its split into the spread of
  the encoder means and the mean encoder variance (:func:`pyro_vaegap.studies.infovae_mnist.aggregate_summary`);
  the same over test images, and the MMD² of :math:`q(z)` against the prior;
* the ELBO on its training images and the ELBO and IWAE (:math:`k` = ``--eval-samples``) on a seeded
  subset of test images, in nats (:func:`pyro_vaegap.harness.evaluate`): their difference shows
  how far each model over-fits its training set.

The CPU profile's sizes are 500, 2,000, 10,000 and all 50,000 images, where the paper's figure ends.
The run folders (``--runs``) are reused by ``experiments.infovae_gaps``.
"""
from __future__ import annotations

from pathlib import Path

from pyro_vaegap.utils import set_seed

from pyro_vaegap.harness import (Profiles, Progress, Setting, evaluate, fmt, json_clean, make_parser, markdown_table,
                                 run_main, save_figure, train_run, write_results)
from pyro_vaegap.studies.infovae_mnist import (COLORS, LABELS, OBJECTIVES, add_mnist_args, aggregate_summary, epochs_for,
                                               labelled_test_images, mnist_config, mnist_settings, parse_infovae_args,
                                               training_images)

NAME = "infovae_variance"
#: the default profile: the settings of the committed results (hours on one core)
CPU = {"sizes": [500, 2000, 10_000, 50_000], "steps": 15_000, "hidden": 200, "latent_dim": 10, "num_valid": 1000,
       "num_test": 1000, "eval_samples": 200, "draws": 10}
#: what the quick profile changes (a smoke run whose numbers mean nothing; its runs under OUT/runs)
QUICK = {"sizes": [200, 400], "steps": 6, "hidden": 16, "latent_dim": 3, "num_valid": 50, "num_test": 20,
         "eval_samples": 4, "draws": 2}
PROFILES = Profiles(
    profiles={"cpu": CPU, "quick": {**CPU, **QUICK}},
    settings={
        "sizes": Setting(int, "training-set sizes (seeded subsets of the 50,000 images; 50000: all of them)",
                         nargs="+"),
        "steps": Setting(int, "Adam steps of every model (epochs = steps x batch / size)"),
        **mnist_settings("hidden", "latent_dim", "num_valid"),
        "num_test": Setting(int, "seeded random test images evaluated"),
        "eval_samples": Setting(int, "importance samples per image (k of the IWAE)"),
        "draws": Setting(int, "encoder draws per image for log det Cov[q(z)]"),
    },
    default="cpu", help={"cpu": "the committed results' settings"})


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0], profiles=PROFILES)
    p.add_argument("--lambda", dest="lambda_", type=float, default=1000.0, help="InfoVAE's lambda of the MMD model")
    add_mnist_args(p, runs=f"runs/{NAME}", latent_dim=10, profiles=PROFILES)
    return p


def run_dir(args, objective: str, size: int) -> Path:
    return Path(args.runs) / f"{objective}_n{size}"


def figure(results: dict, sizes):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for obj in OBJECTIVES:
        r = [results[str(n)][obj] for n in sizes]
        kw = {"color": COLORS[obj], "marker": "o"}
        axes[0].plot(sizes, [v["train_aggregate"]["log_det_cov_draws"] for v in r], label=f"{LABELS[obj]}", **kw)
        axes[0].plot(sizes, [v["test_aggregate"]["log_det_cov_draws"] for v in r], ls="--",
                     label=f"{LABELS[obj]} (test images)", **kw)
        axes[1].plot(sizes, [v["train_aggregate"]["log_det_cov_means"] for v in r], label=f"{LABELS[obj]}: means", **kw)
        axes[1].plot(sizes, [v["train_aggregate"]["mean_log_var"] for v in r], ls=":",
                     label=f"{LABELS[obj]}: Σ log σ² (mean)", **kw)
        axes[2].plot(sizes, [-v["train_elbo_nats"] for v in r], ls=":", label=f"{LABELS[obj]} −ELBO train", **kw)
        axes[2].plot(sizes, [v["test"]["neg_elbo_nats"] for v in r], label=f"{LABELS[obj]} −ELBO test", **kw)
        axes[2].plot(sizes, [v["test"]["nll_nats"] for v in r], ls="--", label=f"{LABELS[obj]} −IWAE test", **kw)
    axes[0].axhline(0.0, color="purple", lw=0.8, label="prior (log det I = 0)")
    axes[0].set_title("log det Cov[q(z)] (training images unless marked)", fontsize=9)
    axes[1].set_title("its parts: log det Cov[encoder means], mean Σ_k log σ_k²", fontsize=9)
    axes[2].set_title("nats per image", fontsize=9)
    for ax in axes:
        ax.set_xscale("log"), ax.set_xlabel("training images"), ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv=None):
    parser = build_parser()
    args = parse_infovae_args(parser, argv, PROFILES, nonneg=("alpha",),
                              positive=("steps", "latent_dim", "hidden", "layers", "batch_size", "lr", "num_valid",
                                "draws", "num_test", "eval_samples"))
    if any(n < 2 or n > 50_000 for n in args.sizes):
        parser.error(f"--sizes {args.sizes}: every size must be between 2 and 50000")
    if args.num_test > 10_000:
        parser.error(f"--num-test={args.num_test} exceeds the 10000 test images")
    out, progress = Path(args.out), Progress(args.quiet)
    sizes = sorted(set(args.sizes))
    x_test, _, _ = labelled_test_images(args.data_dir, args.num_test, args.seed)
    x_test = x_test.to(args.device)
    results, rows = {}, []
    for n in sizes:
        results[str(n)] = {}
        epochs = epochs_for(args.steps, n, args.batch_size)
        for obj in OBJECTIVES:
            cfg = mnist_config(args, obj, n, epochs, args.lambda_)
            model, guide, secs = train_run(cfg, run_dir(args, obj, n), progress, args.device)
            x_train = model.validate_data(training_images(cfg).to(args.device))
            set_seed(args.seed)
            train_agg = aggregate_summary(guide, x_train, args.draws, args.seed)
            test_agg = aggregate_summary(guide, x_test, args.draws, args.seed)
            train_ev = evaluate(model, guide, x_train[: args.num_test], args.eval_samples)
            test_ev = evaluate(model, guide, x_test, args.eval_samples)
            results[str(n)][obj] = {"epochs": epochs, "steps": epochs * -(-n // args.batch_size),
                                    "train_seconds": secs, "train_aggregate": train_agg, "test_aggregate": test_agg,
                                    "train_elbo_nats": -train_ev["neg_elbo_nats"], "train_eval": train_ev,
                                    "test": test_ev, "run_dir": str(run_dir(args, obj, n))}
            progress(f"n={n} {LABELS[obj]}: log det Cov[q(z)] {train_agg['log_det_cov_draws']:.2f} (train), "
                     f"{test_agg['log_det_cov_draws']:.2f} (test); ELBO train {-train_ev['neg_elbo_nats']:.2f}, "
                     f"test {-test_ev['neg_elbo_nats']:.2f}, IWAE test {-test_ev['nll_nats']:.2f}")
            rows.append([n, LABELS[obj], epochs, fmt(train_agg["log_det_cov_draws"]),
                         fmt(train_agg["log_det_cov_exact"]), fmt(train_agg["log_det_cov_means"]),
                         fmt(train_agg["mean_log_var"]), fmt(test_agg["log_det_cov_draws"]),
                         fmt(train_agg["mmd2"], 4), fmt(-train_ev["neg_elbo_nats"]),
                         f"{-test_ev['neg_elbo_nats']:.2f} ± {test_ev['neg_elbo_nats_se']:.2f}",
                         f"{-test_ev['nll_nats']:.2f} ± {test_ev['nll_nats_se']:.2f}"])
    progress("figure")
    save_figure(figure(results, sizes), out / "variance.png")
    md = (f"Binarized MNIST, dim z = {args.latent_dim}, ELU MLPs 784-{'-'.join([str(args.hidden)] * args.layers)}, "
          f"{args.steps} Adam steps per model (lr {args.lr}, batch {args.batch_size}); MMD-VAE: α = {args.alpha}, "
          f"λ = {args.lambda_}. log det Cov[q(z)] of the aggregate posterior over the model's training images from "
          f"{args.draws} encoder draws per image (the prior's is 0); 'exact' is the mixture's covariance, split "
          "into the spread of the encoder means ('means') and the mean Σ_k log σ_k² of the encoder; 'test' is the "
          f"same over the {args.num_test} test images. MMD² of q(z) (train) against the prior (RBF, 2σ² = dim z). "
          f"ELBO (train: the first {args.num_test} training images, or all of them) and ELBO / IWAE (k = "
          f"{args.eval_samples}) on {args.num_test} seeded test images, nats, ± standard error over images.\n\n")
    md += markdown_table(["train images", "objective", "epochs", "log det (draws)", "log det (exact)", "means",
                          "Σ log σ²", "log det (test)", "MMD²", "ELBO train", "ELBO test", "IWAE test"], rows)
    md += "\nFigure: variance.png\n"
    write_results(out, NAME, args, json_clean(results), md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
