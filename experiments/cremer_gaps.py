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
The evaluation defaults are the paper's (AIS 100 chains × 500 steps × 10 leapfrog with a frozen,
pilot-tuned step-size schedule, IWAE 5000, L[q*] with 100 samples per step and the appendix 6.4
stopping rule); ``--quick`` is a smoke run of the whole pipeline (2 epochs on 2,000 images, a tiny
evaluation, its own run folder) whose numbers mean nothing.

Other data sets (``--dataset``), read through torchvision where the user has them: ``fashion_mnist``
(statically binarized with a fixed seed, the same Bernoulli model) and ``cifar10`` (8-bit pixels, a
discretized-logistic decoder and convolutional networks: our choice, since the paper's CIFAR-10
architecture is not available here). The paper's numbers are printed for binarized MNIST only.
"""
from __future__ import annotations

import sys
from pathlib import Path

from pyro_vaegap.ais import SCHEDULES, STEP_SIZE_MODES
from pyro_vaegap.cli import Parser, check_output_stem, device_option, run_command, run_gaps
from pyro_vaegap.data import load_dataset, seeded_subset
from pyro_vaegap.gaps import LOCAL_INITS, LOG_PX_ESTIMATORS, GapConfig
from pyro_vaegap.train import TrainConfig, train
from pyro_vaegap.utils import ConfigError, resolve_device, set_threads

QUICK_RUN_DIR = "runs/cremer_quick"
#: the CPU profile of the Cremer tables (experiments.cremer_tables, experiments.cremer_table4), as values of this
#: command's options: minutes per model on one core instead of the paper's days
CPU_PROFILE = dict(epochs=20, anneal_epochs=5, num_points=20, iwae_samples=1000, ais_chains=20, ais_steps=100,
                   ais_leapfrog=5, local_samples=20, local_max_steps=20_000)
#: data set -> (model, architecture) of the VAE trained on it
DATASETS = {"binarized_mnist": ("bernoulli", "mlp"), "fashion_mnist": ("bernoulli", "mlp"),
            "cifar10": ("dlogistic", "conv")}


def build_parser():
    p = Parser(prog="python -m experiments.cremer_gaps", description=__doc__.split("\n")[0], error_name="cremer_gaps",
               parents=[device_option()])
    p.add_argument("--dataset", default="binarized_mnist", choices=tuple(DATASETS),
                   help="binarized_mnist (the paper's Table 2), fashion_mnist (binarized), cifar10 (8-bit pixels, "
                        "discretized logistic, conv nets)")
    p.add_argument("--num-train", type=int, default=None,
                   help="train on a seeded subset of this many training images (default: all; 2000 with --quick)")
    p.add_argument("--data-dir", help="folder with the data set's files (binarized_mnist.npz, or torchvision's; else "
                                      "$PYRO_VAEGAP_DATA)")
    p.add_argument("--download", action="store_true",
                   help="when the data set is not found, download it with torchvision (binarized MNIST is then "
                        "binarized with a fixed seed, not the paper's binarization: its numbers are not comparable)")
    p.add_argument("--run-dir", help="training run folder, resumed if present (default runs/cremer_mnist_ffg; "
                                     f"{QUICK_RUN_DIR} with --quick)")
    p.add_argument("--out", default="results/cremer_gaps/gaps", help="output stem: STEM.json, STEM.md")
    p.add_argument("--epochs", type=int, default=250, help="training epochs (paper: 3280 with the Burda schedule)")
    p.add_argument("--lr-schedule", default="constant", choices=("constant", "burda"), help="Adam schedule")
    p.add_argument("--anneal-epochs", type=int, default=20,
                   help="entropy-annealing warm-up epochs (0: no annealing, the paper's Table 6)")
    p.add_argument("--guide", default="ffg", help="family of the amortized encoder the model is trained with "
                                                  "(ffg; fullcov: Table 10; flow: Table 2's second column)")
    p.add_argument("--encoder-hidden", type=int, default=200, help="width of the encoder's hidden layers (200; "
                                                                    "Table 3: a larger encoder)")
    p.add_argument("--encoder-layers", type=int, default=2, help="encoder hidden layers (2)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (paper 1e-3, initial for --lr-schedule "
                                                          "burda)")
    p.add_argument("--decoder-layers", type=int, default=2, choices=(0, 2, 4), help="decoder hidden layers")
    p.add_argument("--num-points", type=int, default=100, help="seeded random test points (paper: 1000)")
    p.add_argument("--families", default="ffg,flow", help="comma-separated families for L[q*] (ffg,flow: "
                                                           "the paper's rows)")
    p.add_argument("--ais-chains", type=int, default=100, help="AIS chains (paper 100)")
    p.add_argument("--ais-steps", type=int, default=500, help="AIS intermediate distributions (paper 500)")
    p.add_argument("--ais-leapfrog", type=int, default=10, help="leapfrog steps per transition (paper 10)")
    p.add_argument("--ais-schedule", default="sigmoid", choices=SCHEDULES, help="beta schedule (sigmoid)")
    p.add_argument("--ais-step-size", default="pilot", choices=STEP_SIZE_MODES,
                   help="pilot: frozen schedule (unbiased); online-biased: for comparison only (pilot)")
    p.add_argument("--no-ais", action="store_true", help="skip AIS: log p̂(x) = IWAE only")
    p.add_argument("--log-px", default="auto", choices=LOG_PX_ESTIMATORS,
                   help="log p̂: auto (AIS if it runs), ais, iwae, or max (the paper's per-point max; biased up)")
    p.add_argument("--iwae-samples", type=int, default=5000, help="IWAE and L[q] samples (paper 5000)")
    p.add_argument("--local-samples", type=int, default=100, help="samples per local-optimization step (paper 100)")
    p.add_argument("--local-max-steps", type=int, default=50_000, help="cap on local-optimization steps")
    p.add_argument("--local-init", default="prior", choices=LOCAL_INITS, help="q* initialization (paper: prior)")
    p.add_argument("--seed", type=int, default=0, help="seed of training, the test subset and the evaluation")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: $PYRO_VAEGAP_THREADS, else 1)")
    p.add_argument("--overwrite", action="store_true", help="replace a finished report at --out")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error instead of its "
                                                        "one-line message (for bug reports)")
    p.add_argument("--quick", action="store_true", help="smoke run: 2 epochs on 2000 images, tiny evaluation, "
                                                        f"run folder {QUICK_RUN_DIR}")
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_command("cremer_gaps", run, args, debug=args.debug,
                       oom_hint="--num-points, --ais-chains or --iwae-samples (finished parts are kept: the command "
                                "resumes)")


def configs(args) -> tuple[TrainConfig, GapConfig]:
    """The training and evaluation configs of these options (``--quick`` shrinks both)."""
    q = args.quick
    epochs = 2 if q else args.epochs
    model, arch = DATASETS[args.dataset]
    tcfg = TrainConfig(dataset=args.dataset, data_dir=args.data_dir, model=model, arch=arch, latent_dim=50,
                       hidden=200, decoder_layers=args.decoder_layers, activation="elu", guide=args.guide,
                       # the encoder's defaults are 200 × 2: only a change is written, so earlier runs still resume
                       guide_options={k: v for k, v in (("hidden", args.encoder_hidden), ("layers", args.encoder_layers))
                                      if v != {"hidden": 200, "layers": 2}[k]},
                       objective="elbo", anneal="entropy" if args.anneal_epochs else "none",
                       anneal_epochs=min(args.anneal_epochs, epochs),
                       epochs=epochs, batch_size=100, lr=args.lr, lr_schedule=args.lr_schedule,
                       seed=args.seed, num_train=args.num_train or (2000 if q else None))
    gcfg = GapConfig(families=tuple(f for f in args.families.split(",") if f),
                     family_options={"flow": {"flow_hidden": 20 if q else 100}} if "flow" in args.families else {},
                     iwae_samples=200 if q else args.iwae_samples, elbo_samples=200 if q else args.iwae_samples,
                     ais=not args.no_ais, ais_chains=10 if q else args.ais_chains,
                     ais_steps=20 if q else args.ais_steps, ais_leapfrog=2 if q else args.ais_leapfrog,
                     ais_schedule=args.ais_schedule, ais_step_size=args.ais_step_size,
                     log_px=args.log_px, local_samples=5 if q else args.local_samples,
                     local_max_steps=300 if q else args.local_max_steps,
                     local_check_every=50 if q else 100, local_init=args.local_init, seed=args.seed)
    return tcfg, gcfg


def run(args):
    """Train (or resume) the paper's VAE, then write the gap report with the paper's numbers beside it."""
    set_threads(args.threads)
    device = resolve_device(args.device)  # before anything is loaded
    tcfg, gcfg = configs(args)
    gcfg.check_families()
    x = load_dataset(args.dataset, "test", data_dir=args.data_dir, download=args.download)
    if not 1 <= args.num_points <= x.shape[0]:
        raise ConfigError(f"--num-points {args.num_points} is not allowed: expected 1..{x.shape[0]}")
    check_output_stem(args.out, args.overwrite)  # before hours of training and evaluation
    run_dir = Path(args.run_dir or (QUICK_RUN_DIR if args.quick else "runs/cremer_mnist_ffg"))
    res = train(tcfg, run_dir, resume=(run_dir / "checkpoint.pt").exists(), resume_hint="the same command",
                device=device)
    x = x[seeded_subset(x.shape[0], args.num_points, args.seed)].to(device)
    run_gaps(res.model.eval(), res.guide.eval(), tcfg, gcfg, x, args.out, overwrite=args.overwrite)


if __name__ == "__main__":
    sys.exit(main())
