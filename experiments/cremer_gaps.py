"""Cremer, Li & Duvenaud (2018), Table 2, MNIST column: the inference gaps of an FFG VAE.

Trains (or resumes) the paper's 784-200-200-50 Bernoulli VAE with an FFG encoder on statically
binarized MNIST, then prints the gap table for a seeded random subset of test points, with rows
L[q*_FFG] and L[q*_AF] (the auxiliary flow), the paper's numbers beside ours, the differences, and
the settings that differ::

    python -m experiments.cremer_gaps --data-dir ../shared/data --out results/cremer_gaps/gaps

The paper's other MNIST tables are variations of this run: ``--decoder-layers 0|4`` (Table 5),
``--encoder-hidden`` / ``--encoder-layers`` (a larger encoder, Table 3), ``--anneal-epochs 0`` (no entropy
annealing, Table 6), ``--guide fullcov`` (the model trained with a full-covariance Gaussian encoder,
Table 10; its q* family ``fullcov`` then belongs in ``--families``).

Training is resumable: the run folder keeps a checkpoint after every epoch, and a rerun with the
same options continues where it stopped (or goes straight to the evaluation when training is done).
Profiles (:mod:`pyro_vaegap.studies.cremer`; a given option overrides the profile's value): ``standard``
(default: 250 epochs at a constant rate; the paper's evaluation — AIS 100 chains × 500 steps × 10 leapfrog
with a frozen, pilot-tuned step-size schedule, IWAE 5000, L[q*] with 100 samples per step and the appendix
6.4 stopping rule — on 100 random test points), ``cpu`` (minutes on one core), ``paper`` (the authors'
protocol: 3280 epochs on the Burda schedule over the 60,000 training and validation images, Adam eps 1e-4,
annealing over 400 epochs; evaluated on the first 1000 training images, as their code does) and ``quick``
(``--quick``: a smoke run of the whole pipeline, 2 epochs on 2,000 images, a tiny evaluation, its own run
folder, whose numbers mean nothing). ``--eval-split train|valid|test`` and ``--eval-points first|random``
choose the evaluated points. A run trained elsewhere with the same config is reused (``--run-dir``)::

    python -m experiments.cremer_gaps --profile paper --data-dir ../shared/data \
        --run-dir runs/cremer_authors_ffg --out results/cremer_paper/ffg

Other data sets (``--dataset``), read through torchvision where the user has them: ``fashion_mnist``
(statically binarized with a fixed seed, the same Bernoulli model) and ``cifar10`` (8-bit pixels, a
discretized-logistic decoder and convolutional networks: our choice, since the paper's CIFAR-10
architecture is not available here). The paper's numbers are printed for binarized MNIST only.
"""
from __future__ import annotations

import sys

from pyro_vaegap.harness import run_command
from pyro_vaegap.studies import cremer
from pyro_vaegap.studies.cremer import CPU_PROFILE, DATASETS, PROFILES, QUICK_RUN_DIR, configs, run

__all__ = ["CPU_PROFILE", "DATASETS", "PROFILES", "QUICK_RUN_DIR", "build_parser", "configs", "main", "run"]
OOM_HINT = "--num-points, --ais-chains or --iwae-samples (finished parts are kept: the command resumes)"


def build_parser(default_profile: str = "standard"):
    return cremer.build_parser(default_profile=default_profile, description=__doc__.split("\n")[0])


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_command("cremer_gaps", run, args, debug=args.debug, oom_hint=OOM_HINT)


if __name__ == "__main__":
    sys.exit(main())
