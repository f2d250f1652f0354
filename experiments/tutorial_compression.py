r"""Real bits-back lossless compression with a Bernoulli VAE (R. Yu 2020, §4.1; BB-ANS).

Trains a small Bernoulli VAE with an FFG encoder on each data set (or loads a ``vaegap train`` run
with ``--run``), then compresses ``--num-images`` seeded random held-out test images into one ANS
stack with :class:`pyro_vaegap.tutorial.compression.BBANSCoder` (``constriction``), decodes them and checks
the round trip is exact. Reported per image, in bits: the achieved net rate
(stack growth / N), the rate including the initial random bits the first image needs, −ELBO
(Monte Carlo over ``--eval-samples`` draws) and −log2 p̂(x) (IWAE with k = ``--eval-samples``) on the
same images. Bits-back coding achieves −ELBO (plus a small discretization and coder overhead), not
−log p(x): the gap between the two is the inference gap the VAE pays in code length.
"""
from __future__ import annotations

import time
from pathlib import Path

from pyro_vaegap.tutorial.compression import compress_and_check
from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.runs import TrainConfig, load_run
from pyro_vaegap.utils import set_seed

from pyro_vaegap.harness import (Progress, evaluate, make_parser, markdown_table, parse_args, run_main,
                              train_run, write_results)

NAME = "tutorial_compression"
DATASETS = ("digits", "binarized_mnist")


def build_parser():
    p = make_parser(NAME, __doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=DATASETS,
                   help="binary data sets to compress (ignored with --run)")
    p.add_argument("--run", default=None, help="a `vaegap train` run folder (Bernoulli model, FFG guide) to use "
                                               "instead of training")
    p.add_argument("--data-dir", default=None, help="directory holding binarized_mnist.npz")
    p.add_argument("--download", action="store_true",
                   help="if binarized_mnist.npz is absent, download MNIST with torchvision and binarize it once "
                        "(not the standard binarization: see pyro_vaegap.data)")
    p.add_argument("--digits-epochs", type=int, default=100, help="training epochs on digits (1,197 images)")
    p.add_argument("--mnist-epochs", type=int, default=5, help="training epochs on binarized MNIST (50,000 images)")
    p.add_argument("--latent-dim", type=int, default=20, help="latent dimension of the trained VAEs")
    p.add_argument("--hidden", type=int, default=200, help="hidden width (2 layers) of decoder and encoder")
    p.add_argument("--latent-bits", type=int, default=12, help="b: 2^b prior-equal-mass buckets per latent coordinate")
    p.add_argument("--num-images", type=int, default=200, help="held-out test images compressed into one message")
    p.add_argument("--eval-samples", type=int, default=1000, help="importance samples for -ELBO and the IWAE NLL")
    return p


def main(argv=None):
    parser = build_parser()
    args = parse_args(parser, argv, positive=("digits_epochs", "mnist_epochs", "latent_dim", "hidden", "latent_bits",
                                              "num_images", "eval_samples"))
    if args.latent_bits > 20:
        parser.error(f"--latent-bits={args.latent_bits} is not allowed: it must be at most 20")
    out, progress = Path(args.out), Progress(args.quiet)
    if args.download and args.run is None and "binarized_mnist" in args.datasets:
        load_dataset("binarized_mnist", "train", data_dir=args.data_dir, download=True)  # fetch once, up front
    jobs = []
    if args.run is not None:
        model, guide, cfg = load_run(args.run)
        jobs.append((cfg.dataset, cfg.data_dir, model, guide, 0.0))
    else:
        for ds in args.datasets:
            epochs = args.digits_epochs if ds == "digits" else args.mnist_epochs
            cfg = TrainConfig(dataset=ds, data_dir=args.data_dir, model="bernoulli", latent_dim=args.latent_dim,
                              hidden=args.hidden, guide_options={"hidden": args.hidden}, epochs=epochs,
                              batch_size=50 if ds == "digits" else 100, seed=args.seed)
            model, guide, secs = train_run(cfg, out / "runs" / ds, progress, args.device)
            jobs.append((ds, args.data_dir, model, guide, secs))
    results, rows = {}, []
    for ds, data_dir, model, guide, secs in jobs:
        x = load_dataset(ds, "test", data_dir=data_dir)
        if args.num_images > x.shape[0]:
            parser.error(f"--num-images={args.num_images} exceeds the {x.shape[0]} test images of {ds}")
        x = x[seeded_subset(x.shape[0], args.num_images, args.seed)]
        t = time.time()
        # bits-back coding runs one image at a time through a CPU entropy coder: the trained model goes there
        model, guide = model.cpu(), guide.cpu()
        comp = compress_and_check(model, guide, x, latent_bits=args.latent_bits, seed=args.seed)
        coding_s = time.time() - t
        set_seed(args.seed)
        ev = evaluate(model, guide, x, args.eval_samples)
        rate = comp["net_bits_per_image"]
        results[ds] = {**ev, **comp, "train_seconds": secs, "coding_seconds": coding_s,
                       "rate_over_neg_elbo": rate / ev["neg_elbo_bits"]}
        progress(f"{ds}: {rate:.2f} bits/image (net) vs -ELBO {ev['neg_elbo_bits']:.2f}, "
                 f"NLL {ev['nll_bits']:.2f}; round trip exact; {coding_s:.1f}s")
        rows.append([ds, comp["num_images"], rate, comp["bits_per_image_with_overhead"], ev["neg_elbo_bits"],
                     ev["nll_bits"], f"{100 * (rate / ev['neg_elbo_bits'] - 1):+.2f}%", comp["initial_bits"],
                     rate / x.shape[1], "yes"])
    md = ("Bits per image on held-out test images (one message per data set). 'net' = stack growth / N; "
          "'with initial bits' also counts the random seed words the first image needs. −ELBO and NLL "
          f"(IWAE, k = {args.eval_samples}) in bits on the same images.\n\n")
    md += markdown_table(["data", "images", "net bits/image", "with initial bits", "−ELBO bits", "NLL bits",
                          "net vs −ELBO", "initial bits", "bits/pixel", "exact round trip"], rows)
    write_results(out, NAME, args, results, md, progress.elapsed)
    progress(f"done in {progress.elapsed / 60:.1f} min -> {out}")
    return results


if __name__ == "__main__":
    run_main(main, None)
