"""Cremer, Li & Duvenaud (2018), Table 2, MNIST column: the inference gaps of an FFG VAE.

Trains (or resumes) the paper's 784-200-200-50 Bernoulli VAE with an FFG encoder on statically
binarized MNIST, then prints the gap table for a seeded random subset of test points with the
paper's numbers beside ours, the differences, and the settings that differ::

    python -m experiments.cremer_gaps --data-dir ../shared/data --out results/cremer_gaps

Training is resumable: the run folder keeps a checkpoint after every epoch, and a rerun with the
same options continues where it stopped (or goes straight to the evaluation when training is done).
The evaluation defaults are the paper's (AIS 100 chains × 500 steps × 10 leapfrog, IWAE 5000,
L[q*] with 100 samples per step, the appendix 6.4 stopping rule); ``--quick`` shrinks everything for a
smoke run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from pyro_vaegap.cli import run_command, run_gaps
from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.gaps import GapConfig
from pyro_vaegap.train import TrainConfig, train
from pyro_vaegap.utils import ConfigError


def build_parser():
    p = argparse.ArgumentParser(prog="python -m experiments.cremer_gaps", description=__doc__.split("\n")[0])
    p.add_argument("--data-dir", help="folder with binarized_mnist.npz (else $PYRO_VAEGAP_DATA)")
    p.add_argument("--run-dir", default="runs/cremer_mnist_ffg", help="training run folder (resumed if present)")
    p.add_argument("--out", default="results/cremer_gaps/gaps", help="output stem: STEM.json, STEM.md")
    p.add_argument("--epochs", type=int, default=250, help="training epochs (paper: 3280 with the Burda schedule)")
    p.add_argument("--lr-schedule", default="constant", choices=("constant", "burda"), help="Adam schedule")
    p.add_argument("--anneal-epochs", type=int, default=20, help="entropy-annealing warm-up epochs")
    p.add_argument("--decoder-layers", type=int, default=2, choices=(0, 2, 4), help="decoder hidden layers")
    p.add_argument("--num-points", type=int, default=100, help="seeded random test points (paper: 1000)")
    p.add_argument("--families", default="ffg", help="comma-separated families for L[q*] (e.g. ffg,fullcov,flow)")
    p.add_argument("--ais-chains", type=int, default=100, help="AIS chains (paper 100)")
    p.add_argument("--ais-steps", type=int, default=500, help="AIS intermediate distributions (paper 500)")
    p.add_argument("--ais-leapfrog", type=int, default=10, help="leapfrog steps per transition (paper 10)")
    p.add_argument("--no-ais", action="store_true", help="skip AIS: log p̂(x) = IWAE only")
    p.add_argument("--iwae-samples", type=int, default=5000, help="IWAE and L[q] samples (paper 5000)")
    p.add_argument("--local-samples", type=int, default=100, help="samples per local-optimization step (paper 100)")
    p.add_argument("--local-init", default="prior", choices=("prior", "encoder"), help="q* initialization")
    p.add_argument("--seed", type=int, default=0, help="seed of training, the test subset and the evaluation")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 epochs on 2000 images, tiny evaluation")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    return run_command("cremer_gaps", run, args)


def run(args):
    """Train (or resume) the paper's VAE, then write the gap report with the paper's numbers beside it."""
    tcfg = TrainConfig(dataset="binarized_mnist", data_dir=args.data_dir, latent_dim=50, hidden=200,
                       decoder_layers=args.decoder_layers, activation="elu", guide="ffg", objective="elbo",
                       anneal="entropy", anneal_epochs=min(args.anneal_epochs, args.epochs),
                       epochs=args.epochs, batch_size=100, lr=1e-3, lr_schedule=args.lr_schedule,
                       seed=args.seed, num_train=2000 if args.quick else None)
    q = args.quick
    gcfg = GapConfig(families=tuple(f for f in args.families.split(",") if f),
                     iwae_samples=200 if q else args.iwae_samples, elbo_samples=200 if q else args.iwae_samples,
                     ais=not args.no_ais, ais_chains=10 if q else args.ais_chains,
                     ais_steps=20 if q else args.ais_steps, ais_leapfrog=2 if q else args.ais_leapfrog,
                     local_samples=5 if q else args.local_samples, local_max_steps=300 if q else 50_000,
                     local_check_every=50 if q else 100, local_init=args.local_init, seed=args.seed)
    run_dir = Path(args.run_dir)
    res = train(tcfg, run_dir, resume=(run_dir / "checkpoint.pt").exists())
    x = load_dataset("binarized_mnist", "test", data_dir=args.data_dir)
    if not 1 <= args.num_points <= x.shape[0]:
        raise ConfigError(f"--num-points {args.num_points} is not allowed: expected 1..{x.shape[0]}")
    x = x[seeded_subset(x.shape[0], args.num_points, args.seed)]
    run_gaps(res.model.eval(), res.guide.eval(), tcfg, gcfg, x, args.out)


if __name__ == "__main__":
    sys.exit(main())
