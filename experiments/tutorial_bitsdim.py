r"""Bits/dim of a VAE with a discretized logistic likelihood on 8-bit images (R. Yu 2020, §4.2).

8-bit pixels are discrete, so a proper likelihood is a *pmf* over the 256 values of each pixel, not a
density (a density on discrete data can be made arbitrarily large). The model is
:class:`pyro_vaegap.models.DiscretizedLogisticVAE` (``model="dlogistic"``): per pixel, the mass of
a logistic :math:`(\mu_i(z), s_i(z))` on the bin of width 2/255 around the pixel's value, edge bins
extended to infinity. The reported number is

.. math::

    \text{bits/dim} = \frac{-\log_2 \hat p(x)}{D},

with :math:`\hat p(x)` the IWAE estimate (k = ``--eval-samples``) averaged over test images, beside
:math:`-\mathrm{ELBO}/(D\ln 2)`. Data: ``digits_uint8`` (8x8, D = 64) by default; ``--dataset cifar10``
reads CIFAR-10 with torchvision from ``--data-dir`` (``--download`` to fetch it).
"""
from __future__ import annotations

from pathlib import Path

from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.runs import TrainConfig
from pyro_vaegap.utils import set_seed

from pyro_vaegap.harness import (Progress, evaluate, make_parser, markdown_table, parse_args, run_main,
                              train_run, write_results)

NAME = "tutorial_bitsdim"
DATASETS = ("digits_uint8", "cifar10")


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="digits_uint8", choices=DATASETS, help="8-bit image data set")
    p.add_argument("--data-dir", default=None, help="directory holding torchvision's cifar-10-batches-py/")
    p.add_argument("--download", action="store_true", help="let torchvision download CIFAR-10 if absent")
    p.add_argument("--epochs", type=int, default=200, help="training epochs")
    p.add_argument("--num-train", type=int, default=None, help="seeded subset of the training split (default: all)")
    p.add_argument("--batch-size", type=int, default=50, help="minibatch size")
    p.add_argument("--latent-dim", type=int, default=16, help="latent dimension")
    p.add_argument("--hidden", type=int, default=200, help="hidden width (2 layers) of decoder and encoder")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate")
    p.add_argument("--eval-samples", type=int, default=500, help="importance samples per test image")
    p.add_argument("--num-test", type=int, default=300, help="seeded random test images evaluated")
    return p


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv, positive=("epochs", "batch_size", "latent_dim", "hidden", "lr",
                                              "eval_samples", "num_test"))
    if args.num_train is not None and args.num_train <= 0:
        parser.error(f"--num-train={args.num_train} is not allowed: it must be > 0")
    out, progress = Path(args.out), Progress(args.quiet)
    if args.download and args.dataset == "cifar10":
        load_dataset("cifar10", "train", data_dir=args.data_dir, download=True)  # fetch once, up front
    x_test = load_dataset(args.dataset, "test", data_dir=args.data_dir)
    if args.num_test > x_test.shape[0]:
        parser.error(f"--num-test={args.num_test} exceeds the {x_test.shape[0]} test images of {args.dataset}")
    x_test = x_test[seeded_subset(x_test.shape[0], args.num_test, args.seed)].to(args.device)
    cfg = TrainConfig(dataset=args.dataset, data_dir=args.data_dir, num_train=args.num_train, model="dlogistic",
                      latent_dim=args.latent_dim, hidden=args.hidden, guide_options={"hidden": args.hidden},
                      epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed)
    model, guide, secs = train_run(cfg, out / "runs" / args.dataset, progress, args.device)
    set_seed(args.seed)
    ev = evaluate(model, guide, x_test, args.eval_samples, dims=x_test.shape[1])
    progress(f"{args.dataset}: {ev['nll_bits_per_dim']:.4f} bits/dim (IWAE), "
             f"{ev['neg_elbo_bits_per_dim']:.4f} (-ELBO)")
    results = {args.dataset: {**ev, "train_seconds": secs, "data_dim": x_test.shape[1]}}
    md = markdown_table(["data", "D", "−ELBO bits/dim", f"NLL bits/dim (IWAE k={args.eval_samples})",
                         "NLL nats/image", "test images"],
                        [[args.dataset, x_test.shape[1], ev["neg_elbo_bits_per_dim"], ev["nll_bits_per_dim"],
                          ev["nll_nats"], ev["num_points"]]])
    write_results(out, NAME, args, results, md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
