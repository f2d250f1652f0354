r"""InfoVAE Fig. 6: how well :math:`q(z)` matches the prior, sample class balance and semi-supervised error
across latent dimensions, for five objectives with a PixelCNN decoder.

Zhao, Song & Ermon (AAAI 2019), Fig. 6 compares, over dim z, the ELBO, the MMD, Stein and adversarial
InfoVAE and an unregularized autoencoder. Here each is the PixelCNN VAE of
:mod:`experiments.infovae_loglik` (gated PixelCNN decoder, FFG encoder; statically binarized MNIST) with

* ``ae``: the reconstruction term alone, InfoVAE with :math:`\alpha = 1,\ \lambda = 0`: the per-datapoint KL
  has weight :math:`1-\alpha = 0` and the divergence :math:`\alpha+\lambda-1 = 0`, so no regularizer at all
  (the encoder stays stochastic, as in the paper's family; nothing pulls its variance up);
* ``elbo``: the ELBO; ``mmd``, ``stein``, ``adversarial``: InfoVAE with ``--alpha`` (0) and ``--lambda``
  (1000) and that divergence.

For each model and dim z it reports (the figure's panels A–E):

* (A) the unbiased MMD² (RBF, :math:`2\sigma^2 = d`, :func:`pyro_vaegap.objectives.infovae.mmd`) between one encoder
  draw per training image (at most ``--mmd-points`` of them) and as many prior draws;
* (B) :math:`\log\det\mathrm{Cov}[q(z)]/d` of the aggregate posterior over the training images (the
  mixture's exact covariance; 0 for the prior);
* (C) the cross-entropy :math:`-\sum_k p(k)\log\hat q(k)` between the class frequencies :math:`p` of the
  labelled test images and the class distribution :math:`\hat q` of ``--num-samples`` generated images
  (:math:`z\sim p(z)`, :math:`x` by pixel-by-pixel PixelCNN sampling), :math:`\hat q(k)` the mean of a
  logistic-regression classifier's class probabilities (finite for any class count; the arg-max histogram
  is reported too). The classifier is trained on ``--classifier-images`` binarized test images and its
  accuracy measured on as many others (exact labels, ``mnist_test.npz``). The floor is the entropy
  :math:`H(p)`;
* (D) the MMD² of (A) on a fixed subset of ``--curve-images`` training images after every epoch (each
  model is trained one epoch at a time through its checkpoint, so every objective gets the same measure);
* (E) the test error of an RBF SVM (:class:`sklearn.svm.SVC`, standardized features) on the encoder means,
  trained on ``--svm-labels`` labelled binarized test images and tested on ``--svm-test`` disjoint ones.

``--profile cpu`` (default) is small (dims 2, 5, 10; a training subset; a few epochs; few samples: PixelCNN
sampling takes 784 network passes); ``--profile paper`` is for a GPU. Every model's metrics are saved in its run
folder as they finish (``fig6_metrics.json``) and reused by a rerun, as the trained runs are.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
import torch

from pyro_vaegap.estimators.aggregate import encode
from pyro_vaegap.runs import read_checkpoint
from pyro_vaegap.utils import ConfigError, atomic_write_json, set_seed

from pyro_vaegap.harness import (Progress, Setting, fmt, json_clean, make_parser, markdown_table, run_main, save_figure,
                                 train_run, write_results)
from pyro_vaegap.studies.infovae_mnist import aggregate_summary, labelled_test_images, parse_infovae_args, training_images
from pyro_vaegap.studies.infovae_pixelcnn import add_pixelcnn_options, loglik_config, pixelcnn_profiles, protocol_text

NAME = "infovae_metrics"
OBJECTIVES = ("elbo", "mmd", "stein", "adversarial", "ae")
LABELS = {"elbo": "ELBO", "mmd": "MMD-VAE", "stein": "Stein-VAE", "adversarial": "Adversarial", "ae": "Autoencoder"}
COLORS = {"elbo": "tab:red", "mmd": "tab:blue", "stein": "tab:green", "adversarial": "tab:orange", "ae": "tab:gray"}
#: what the smoke run (``--quick``) changes in the cpu profile
QUICK = {"dims": [2, 3], "num_train": 60, "epochs": 2, "pixelcnn_layers": 1, "pixelcnn_channels": 2, "hidden": 8,
         "num_samples": 2, "mmd_points": 60, "curve_images": 20, "classifier_images": 200, "svm_labels": 50,
         "svm_test": 50, "batch_size": 30, "num_valid": 10}
PROFILES = pixelcnn_profiles(
    # sized on the 2-core development CPU (one thread): about 1 minute per model, most of it sampling
    cpu={"dims": [2, 5, 10], "num_train": 1500, "epochs": 3, "pixelcnn_layers": 4, "pixelcnn_channels": 16,
         "hidden": 200, "num_samples": 20, "mmd_points": 1500, "curve_images": 500, "classifier_images": 5000,
         "svm_labels": 1000, "svm_test": 2000},
    # the authors' protocol and sizes (pyro_vaegap.studies.infovae_pixelcnn.AUTHORS): for a GPU
    paper={"dims": [2, 5, 10, 20, 40], "epochs": 80, "pixelcnn_layers": 12, "pixelcnn_channels": 32,
           "num_samples": 1000, "mmd_points": 10_000, "curve_images": 2000,
           "classifier_images": 5000, "svm_labels": 1000, "svm_test": 9000},
    # infovae_loglik's converged profile at dim z = 5 (its runs reused with --loglik-runs), the autoencoder beside
    converged={"dims": [5], "epochs": 64, "pixelcnn_layers": 3, "pixelcnn_channels": 8,
               "num_samples": 50, "mmd_points": 10_000, "curve_images": 500,
               "classifier_images": 5000, "svm_labels": 1000, "svm_test": 9000},
    quick=QUICK,
    settings={"dims": Setting(int, "latent dimensions", nargs="+"),
              "num_samples": Setting(int, "generated images per model for the class balance (C)"),
              "mmd_points": Setting(int, "training images (one encoder draw each) of the MMD (A)"),
              "curve_images": Setting(int, "training images of the per-epoch MMD curve (D)"),
              "classifier_images": Setting(int, "labelled test images the classifier trains on (and as many it is "
                                                "scored on)"),
              "svm_labels": Setting(int, "labelled test images the SVM trains on (E)"),
              "svm_test": Setting(int, "disjoint test images the SVM is scored on (E)")},
    help={"cpu": "small PixelCNN, training subset, few epochs and samples (static binarization, Adam, alpha = 0)",
          "paper": "the authors' protocol and network sizes (GPU)",
          "converged": "the authors' protocol, infovae_loglik's converged 3-layer x 8-map PixelCNN, dim z = 5"})
METRICS_FILE = "fig6_metrics.json"


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0], profiles=PROFILES)
    add_pixelcnn_options(p, NAME)
    p.add_argument("--objectives", nargs="+", choices=OBJECTIVES, default=list(OBJECTIVES),
                   help="the models to measure (default: all five)")
    p.add_argument("--loglik-runs", default=None,
                   help="infovae_loglik's run folder (one sub-folder per objective, dim z = 5): its finished runs of "
                        "the same settings are reused for dim z = 5 instead of training new ones")
    return p


def run_folder(args, objective: str, dim: int) -> Path:
    """Where the run of ``objective`` at dim z = ``dim`` lives: infovae_loglik's (``--loglik-runs``, dim z = 5, not
    the autoencoder), else ``--runs/OBJECTIVE_dDIM``."""
    if args.loglik_runs is not None and dim == 5 and objective != "ae":
        return Path(args.loglik_runs) / objective
    return Path(args.runs) / f"{objective}_d{dim}"


def check_args(parser, args) -> None:
    """Refuse settings the data cannot serve (one line, exit status 2); the profile is filled in by then."""
    for k in PROFILES.profiles["cpu"]:
        if k not in ("dims", "clip_value", "monitor_mmd") and isinstance(getattr(args, k), (int, float)) \
                and getattr(args, k) <= 0:
            parser.error(f"--{k.replace('_', '-')}={getattr(args, k)} is not allowed: it must be > 0")
    for k in ("clip_value", "monitor_mmd"):
        if getattr(args, k) < 0:
            parser.error(f"--{k.replace('_', '-')}={getattr(args, k)} is not allowed: it must be >= 0 (0: off)")
    if any(d < 1 for d in args.dims):
        parser.error(f"--dims {' '.join(map(str, args.dims))}: every latent dimension must be >= 1")
    if args.num_train > 50_000:
        parser.error(f"--num-train={args.num_train} is not allowed: at most the 50000 training images")
    if 2 * args.classifier_images > 10_000 or args.svm_labels + args.svm_test > 10_000:
        parser.error(f"--classifier-images={args.classifier_images} (twice that), --svm-labels={args.svm_labels} + "
                     f"--svm-test={args.svm_test}: each must fit in the 10000 labelled test images")
    if min(args.mmd_points, args.curve_images) < 2:
        parser.error("--mmd-points and --curve-images must be >= 2 (the unbiased MMD needs two draws)")


def metrics_config(args, objective: str, dim: int):
    """The run of ``objective`` at dim z = ``dim``: :func:`experiments.infovae_loglik.loglik_config`'s
    PixelCNN VAE; the autoencoder is InfoVAE with alpha = 1, lambda = 0 (no KL, no divergence)."""
    at_dim = argparse.Namespace(**{**vars(args), "latent_dim": dim})
    cfg = loglik_config(at_dim, "mmd" if objective == "ae" else objective)
    return dataclasses.replace(cfg, alpha=1.0, lambda_=0.0) if objective == "ae" else cfg


class LabelledSplits:
    """One seeded permutation of the 10,000 labelled binarized test images, cut into the classifier's training and
    accuracy halves and the SVM's labelled and test sets (the two uses are independent of each other)."""

    def __init__(self, args):
        x, y, _ = labelled_test_images(args.data_dir, 10_000, args.seed, args.dataset)  # all rows
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(args.seed))
        self.x, self.y = x[perm], y[perm.numpy()]
        n, m = args.classifier_images, args.svm_labels
        self.cls_train, self.cls_test = slice(0, n), slice(n, 2 * n)
        self.svm_train, self.svm_test = slice(0, m), slice(m, m + args.svm_test)
        counts = np.bincount(self.y, minlength=10)
        self.class_freq = counts / counts.sum()


def train_classifier(splits: LabelledSplits, seed: int):
    """A multinomial logistic regression on the pixels: ``(classifier, accuracy on the held-out half)``."""
    from sklearn.linear_model import LogisticRegression

    x = splits.x.cpu().numpy()
    clf = LogisticRegression(C=0.1, max_iter=300, random_state=seed)
    clf.fit(x[splits.cls_train], splits.y[splits.cls_train])
    acc = float((clf.predict(x[splits.cls_test]) == splits.y[splits.cls_test]).mean())
    return clf, acc


def class_cross_entropy(clf, x_gen: torch.Tensor, class_freq: np.ndarray) -> dict:
    r"""Cross-entropy :math:`-\sum_k p(k)\log\hat q(k)` (nats) of the generated images' class distribution
    :math:`\hat q` (mean classifier probabilities) against the true frequencies ``class_freq``, its floor
    :math:`H(p)`, and the arg-max class counts."""
    prob = clf.predict_proba(x_gen.cpu().numpy())
    q = np.zeros(10)
    q[clf.classes_] = prob.mean(0)
    if not (q > 0).all():
        raise FloatingPointError(f"generated images' class distribution has a zero: {q.tolist()}")
    counts = np.bincount(clf.classes_[prob.argmax(1)], minlength=10)
    ce = float(-(class_freq * np.log(q)).sum())
    ent = float(-(class_freq * np.log(class_freq)).sum())
    return {"cross_entropy": ce, "entropy_true": ent, "kl": ce - ent, "class_probs": q.tolist(),
            "argmax_counts": counts.tolist()}


def svm_error(guide, splits: LabelledSplits, device, seed: int) -> float:
    """Test error of an RBF SVM on the standardized encoder means (``svm_train`` labelled, ``svm_test`` held out)."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    feats = {}
    for name, rows in (("train", splits.svm_train), ("test", splits.svm_test)):
        loc, _ = encode(guide, splits.x[rows].to(device))
        feats[name] = loc.double().cpu().numpy()
    svm = make_pipeline(StandardScaler(), SVC(kernel="rbf", random_state=seed))
    svm.fit(feats["train"], splits.y[splits.svm_train])
    return float((svm.predict(feats["test"]) != splits.y[splits.svm_test]).mean())


def load_metrics(run: Path) -> dict:
    path = run / METRICS_FILE
    if not path.is_file():
        return {"curve": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is damaged ({e}): delete it to recompute this model's metrics") from None


def train_with_curve(args, cfg, run: Path, progress: Progress, x_curve: torch.Tensor):
    """Train ``cfg`` one epoch at a time (resuming its checkpoint) and record MMD² of q(z) on ``x_curve`` after
    each epoch in ``run/fig6_metrics.json`` (panel D). :returns: ``(model, guide, seconds, metrics)``."""
    metrics, secs = load_metrics(run), 0.0
    if cfg.monitor_mmd:  # the training logged MMD² of q(z) on validation images after every epoch: one run
        model, guide, secs = train_run(cfg, run, progress, args.device)
        log = read_checkpoint(run)["log"]
        metrics["curve"] = {str(row["epoch"]): row["valid_mmd2"] for row in log}
        metrics["curve_images"] = f"{cfg.monitor_mmd} validation images (log.csv valid_mmd2)"
        return model, guide, secs, metrics
    for epoch in range(1, cfg.epochs + 1):
        if str(epoch) in metrics["curve"] and epoch < cfg.epochs:
            continue
        done = read_checkpoint(run)["epoch"] if (run / "checkpoint.pt").exists() else 0
        if done > epoch and str(epoch) not in metrics["curve"]:
            raise ConfigError(f"{run} has {done} epochs trained but no MMD at epoch {epoch} in {METRICS_FILE}: "
                              "delete the run folder to retrain it")
        model, guide, s = train_run(dataclasses.replace(cfg, epochs=epoch), run, progress, args.device)
        secs += s
        if str(epoch) not in metrics["curve"]:
            summ = aggregate_summary(guide, model.validate_data(x_curve), 1, args.seed, x_curve.shape[0])
            metrics["curve"][str(epoch)] = summ["mmd2"]
            atomic_write_json(run / METRICS_FILE, metrics)
    return model, guide, secs, metrics


def measure(args, model, guide, x_train, splits, clf, progress) -> dict:
    """Panels A, B, C and E of one trained model (``x_train``: its training images)."""
    x_train = model.validate_data(x_train.to(args.device))
    set_seed(args.seed)
    agg = aggregate_summary(guide, x_train, 1, args.seed, min(args.mmd_points, x_train.shape[0]))
    progress(f"  sampling {args.num_samples} images pixel by pixel")
    z = torch.randn(args.num_samples, guide.latent_dim, generator=torch.Generator().manual_seed(args.seed))
    x_gen = model.generate(z.to(args.device))
    return {"mmd2": agg["mmd2"], "mmd_points": min(args.mmd_points, x_train.shape[0]),
            "log_det_cov_per_dim": agg["log_det_cov_exact"] / guide.latent_dim, "aggregate": agg,
            "samples": class_cross_entropy(clf, x_gen, splits.class_freq),
            "svm_error": svm_error(guide, splits, args.device, args.seed)}


def figure(results: dict, dims, curve_dim: int):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 5, figsize=(22, 4.2))
    panels = [("(A) MMD²(q(z), p(z))", lambda r: r["mmd2"]),
              ("(B) log det Cov[q(z)] / dim z", lambda r: r["log_det_cov_per_dim"]),
              ("(C) class cross-entropy of samples (nats)", lambda r: r["samples"]["cross_entropy"]),
              None, ("(E) SVM error, 1,000 labels", lambda r: r["svm_error"])]
    for obj in OBJECTIVES:
        kw = {"color": COLORS[obj], "marker": "o", "label": LABELS[obj]}
        for ax, panel in zip(axes, panels):
            if panel is not None:
                ds = [d for d in dims if "mmd2" in results[str(d)].get(obj, {})]
                ax.plot(ds, [panel[1](results[str(d)][obj]) for d in ds], **kw)
        curve = results[str(curve_dim)].get(obj, {}).get("curve", {})
        axes[3].plot([int(e) for e in curve], list(curve.values()), **kw)
    for ax, panel in zip(axes, panels):
        if panel is not None:
            ax.set_title(panel[0], fontsize=9), ax.set_xlabel("dim z"), ax.set_xscale("log")
            ax.set_xticks(dims, [str(d) for d in dims]), ax.minorticks_off()
    axes[3].set_title(f"(D) MMD² during training (dim z = {curve_dim})", fontsize=9)
    axes[3].set_xlabel("epoch"), axes[3].xaxis.get_major_locator().set_params(integer=True)
    for ax in (axes[0], axes[3]):
        ax.set_yscale("symlog", linthresh=1e-3)
    ent = next(r["samples"]["entropy_true"] for d in dims for r in results[str(d)].values() if "samples" in r)
    axes[2].axhline(ent, color="purple", lw=0.8, label="H(true classes)")
    axes[1].axhline(0.0, color="purple", lw=0.8, label="prior")
    for ax in axes:
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def main(argv=None):
    from threadpoolctl import threadpool_limits

    parser = build_parser()
    args = parse_infovae_args(parser, argv, PROFILES, nonneg=("alpha",),
                              positive=("batch_size", "lr", "num_valid"))
    check_args(parser, args)
    # sklearn's BLAS would otherwise start a thread per core: many times slower on a shared CPU
    with threadpool_limits(limits=torch.get_num_threads()):
        return run(args)


def run(args) -> dict:
    """The experiment with parsed and checked options."""
    out, progress = Path(args.out), Progress(args.quiet)
    dims = sorted(set(args.dims))
    splits = LabelledSplits(args)
    progress(f"classifier on {args.classifier_images} labelled test images")
    clf, clf_acc = train_classifier(splits, args.seed)
    progress(f"classifier accuracy {clf_acc:.4f} on {args.classifier_images} others")
    x_train = training_images(metrics_config(args, "elbo", dims[0]))  # every model's: same size and seed
    results, rows = {}, []
    for d in dims:
        results[str(d)] = {}
        for obj in args.objectives:
            cfg = metrics_config(args, obj, d)
            run = run_folder(args, obj, d)
            try:
                model, guide, secs, metrics = train_with_curve(args, cfg, run, progress,
                                                               x_train[: args.curve_images].to(args.device))
            except FloatingPointError as e:  # a diverged objective is a result, not a crash of the experiment
                progress(f"dim {d} {LABELS[obj]}: training diverged ({e})")
                results[str(d)][obj] = {"run_dir": str(run), "diverged": str(e)}
                rows.append([d, LABELS[obj], "diverged"] + ["—"] * 5)
                continue
            if "final" not in metrics:
                metrics["final"] = measure(args, model, guide, x_train, splits, clf, progress)
                atomic_write_json(run / METRICS_FILE, json_clean(metrics))
            r = {"run_dir": str(run), "train_seconds": secs, "config": cfg.to_dict(), "curve": metrics["curve"],
                 **metrics["final"]}
            results[str(d)][obj] = r
            s = r["samples"]
            progress(f"dim {d} {LABELS[obj]}: MMD² {r['mmd2']:.4f}, log det Cov/d {r['log_det_cov_per_dim']:.2f}, "
                     f"class CE {s['cross_entropy']:.3f} (floor {s['entropy_true']:.3f}), "
                     f"SVM error {r['svm_error']:.3f}")
            rows.append([d, LABELS[obj], fmt(r["mmd2"], 4), fmt(r["log_det_cov_per_dim"]), fmt(s["cross_entropy"], 3),
                         " ".join(map(str, s["argmax_counts"])), fmt(r["svm_error"], 3),
                         " ".join(fmt(v, 4) for v in r["curve"].values())])
    curve_dim = dims[len(dims) // 2]
    results["classifier"] = {"accuracy": clf_acc, "train_images": args.classifier_images,
                             "test_images": args.classifier_images, "model": "LogisticRegression(C=0.1)",
                             "true_class_freq": splits.class_freq.tolist()}
    results["curve_dim"] = curve_dim
    progress("figure")
    save_figure(figure(results, dims, curve_dim), out / "metrics.png")
    md = (f"{protocol_text(args)} Autoencoder: α = 1, λ = 0 (reconstruction "
          f"only). MMD²: unbiased, RBF 2σ² = dim z, one encoder draw per training image ({args.mmd_points} at most) "
          f"vs as many prior draws (its noise for equal distributions is about ±0.001). log det Cov: the aggregate "
          f"posterior's exact covariance over the training images, divided by dim z (prior: 0). Class cross-entropy: "
          f"{args.num_samples} generated images (z ~ prior, PixelCNN sampled pixel by pixel) labelled by a logistic "
          f"regression trained on {args.classifier_images} labelled binarized test images ({args.dataset}) (accuracy "
          f"{clf_acc:.4f} on {args.classifier_images} others); the true class frequencies' entropy, the floor, is "
          f"{splits.class_freq @ -np.log(splits.class_freq):.3f} nats. SVM: RBF SVC on standardized encoder means, "
          f"{args.svm_labels} labelled binarized test images, error on {args.svm_test} others. MMD² by epoch: "
          + (f"{args.monitor_mmd} validation images (log.csv valid_mmd2).\n\n" if args.monitor_mmd else
             f"{args.curve_images} fixed training images.\n\n"))
    md += markdown_table(["dim z", "objective", "(A) MMD²", "(B) log det Cov / d", "(C) class CE (nats)",
                          "argmax class counts 0–9", "(E) SVM error", "(D) MMD² by epoch"], rows)
    md += "\nFigure: metrics.png\n"
    write_results(out, NAME, args, json_clean(results), md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
