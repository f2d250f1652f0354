r"""Cremer, Li & Duvenaud (2018) on MNIST: the VAE, its options and profiles, and one trained-and-evaluated model.

Every Cremer experiment (``cremer_gaps``, ``cremer_tables``, ``cremer_table4``) is built on :func:`add_options`
(the model's and the evaluation's options), :data:`PROFILES` (named sets of their values), :func:`configs`
(the :class:`~pyro_vaegap.runs.TrainConfig` and :class:`~pyro_vaegap.report.compute.GapConfig` of the options) and
:func:`run` (train or reuse the model, then its gap report).

Profiles (a given option overrides the profile's value):

* ``standard`` — 250 epochs at a constant learning rate on the 50,000 training images, entropy annealing over
  20; the paper's evaluation (AIS 100 × 500 × 10, IWAE 5000, L[q*] with 100 samples per step and the appendix
  6.4 stopping rule) on 100 random test points.
* ``cpu`` — minutes per model on one core: 20 epochs (annealing over 5), 20 test points, AIS 20 × 100 × 5,
  1000 samples, q* with 20 samples per step and a 20,000-step cap.
* ``paper`` — the authors' protocol (their released code): 3280 epochs on Burda et al.'s schedule, entropy
  annealing over 400 epochs, training on the 60,000 training and validation images (the per-epoch validation
  ELBO on 2000 test images), Adam's epsilon 1e-4; evaluated on the **first 1000 training images**, AIS 100 ×
  500 × 10, IWAE 5000, L[q*] with 100 samples per step and the paper's stopping rule, families ffg and flow.
* ``quick`` — a smoke run of the pipeline (2 epochs on 2,000 images, a tiny evaluation) whose numbers mean
  nothing.

Which points are evaluated: ``--eval-split`` (train, valid or test) and ``--eval-points`` (``first``: the
split's first rows, as the authors' code; ``random``: a seeded random subset, ours —
:func:`pyro_vaegap.data.evaluation_rows`).
"""
from __future__ import annotations

from pathlib import Path

import torch

from ..estimators.ais import SCHEDULES, STEP_SIZE_MODES
from ..estimators.potential import FAST_MODES
from ..data import EVAL_POINTS
from ..report.config import LOCAL_INITS, LOG_PX_ESTIMATORS, GapConfig
from ..harness.gap_runs import EVAL_SPLITS, check_output_stem, evaluation_data, run_gaps
from ..harness.options import WORKERS_HELP, Profiles, Setting
from ..harness.runs import Progress, train_run
from ..runs.config import LR_SCHEDULES, TRAIN_SPLITS, VALID_SPLITS, TrainConfig
from ..training.distributed import default_workers
from ..utils import ConfigError, check_positive_int, resolve_device, set_threads

#: data set -> (model, architecture) of the VAE trained on it
DATASETS = {"binarized_mnist": ("bernoulli", "mlp"), "fashion_mnist": ("bernoulli", "mlp"),
            "cifar10": ("dlogistic", "conv")}
QUICK_RUN_DIR = "runs/cremer_quick"
#: the default training run folder of each profile (``--run-dir`` overrides it)
RUN_DIRS = {"standard": "runs/cremer_mnist_ffg", "cpu": "runs/cremer_cpu", "paper": "runs/cremer_paper",
            "quick": QUICK_RUN_DIR}

_STANDARD = dict(epochs=250, lr_schedule="constant", anneal_epochs=20, num_train=None, train_split="train",
                 valid_split="valid", adam_eps=1e-8, num_valid=None, eval_split="test", eval_points="random",
                 num_points=100, iwae_samples=5000, ais_chains=100, ais_steps=500, ais_leapfrog=10, local_samples=100,
                 local_max_steps=50_000, local_check_every=100, flow_hidden=100, ais_fast="traced", local_fast="eager")
#: the CPU profile of the Cremer tables, as the values it changes: minutes per model on one core instead of days
CPU_PROFILE = dict(epochs=20, anneal_epochs=5, num_points=20, iwae_samples=1000, ais_chains=20, ais_steps=100,
                   ais_leapfrog=5, local_samples=20, local_max_steps=20_000)
#: the authors' protocol: training as their released code trains MNIST, evaluation as their code evaluates it
PAPER_PROFILE = dict(epochs=3280, lr_schedule="burda", anneal_epochs=400, train_split="train+valid",
                     valid_split="test", adam_eps=1e-4, num_valid=2000, eval_split="train", eval_points="first",
                     num_points=1000,
                     # docs/benchmarks.md, on the paper's decoder: the compiled AIS step is 1.54x eager. The local
                     # step stays eager: traced, it retraces at every change of the running count (10-57 s each);
                     # compiled, it pads stopped rows (up to 2x the work) against a 1.21-1.69x step
                     ais_fast="compiled", local_fast="eager")
PROFILES = Profiles(
    profiles={"standard": _STANDARD, "cpu": {**_STANDARD, **CPU_PROFILE}, "paper": {**_STANDARD, **PAPER_PROFILE},
              "quick": {**_STANDARD, "epochs": 2, "num_train": 2000, "iwae_samples": 200, "ais_chains": 10,
                        "ais_steps": 20, "ais_leapfrog": 2, "local_samples": 5, "local_max_steps": 300,
                        "local_check_every": 50, "flow_hidden": 20}},
    settings={
        "epochs": Setting(int, "training epochs (the paper: 3280 on the Burda schedule)"),
        "lr_schedule": Setting(str, "Adam's learning-rate schedule", choices=LR_SCHEDULES),
        "anneal_epochs": Setting(int, "entropy-annealing warm-up epochs (0: no annealing, the paper's Table 6)"),
        "num_train": Setting(int, "train on a seeded subset of this many training images (None: all)"),
        "train_split": Setting(str, "what the model trains on: train, or train+valid (the authors' code)",
                               choices=TRAIN_SPLITS),
        "valid_split": Setting(str, "split of the per-epoch validation ELBO in log.csv", choices=VALID_SPLITS),
        "adam_eps": Setting(float, "Adam's epsilon (the authors' code: 1e-4)"),
        "num_valid": Setting(int, "images of the per-epoch validation ELBO (a seeded subset; None: all)"),
        "eval_split": Setting(str, "split whose points are evaluated (the authors' code: train)", choices=EVAL_SPLITS),
        "eval_points": Setting(str, "which points of it: first (the authors' code) or a seeded random subset",
                               choices=EVAL_POINTS),
        "num_points": Setting(int, "points evaluated (the paper: 1000)"),
        "iwae_samples": Setting(int, "IWAE and L[q] samples (the paper: 5000)"),
        "ais_chains": Setting(int, "AIS chains (the paper: 100)"),
        "ais_steps": Setting(int, "AIS intermediate distributions (the paper: 500)"),
        "ais_leapfrog": Setting(int, "leapfrog steps per transition (the paper: 10)"),
        "local_samples": Setting(int, "samples per local-optimization step (the paper: 100)"),
        "local_max_steps": Setting(int, "cap on local-optimization steps"),
        "local_check_every": Setting(int, "the stopping rule's window of local-optimization steps (the paper: 100)"),
        "flow_hidden": Setting(int, "width of the flow q*'s networks"),
        "ais_fast": Setting(str, "how AIS evaluates the model (traced: the eager values bit for bit; compiled: "
                                 "equal to rounding)", choices=FAST_MODES),
        "local_fast": Setting(str, "how the local optimization evaluates its step", choices=FAST_MODES),
    },
    default="standard",
    help={"standard": "250 epochs, the paper's evaluation on 100 random test points",
          "cpu": "minutes per model on one core", "paper": "the authors' protocol (GPU or days)"})


def add_options(p, default_profile: str = "standard") -> None:
    """The options of a Cremer MNIST model and its evaluation, and :data:`PROFILES` (default ``default_profile``)."""
    p.add_argument("--dataset", default="binarized_mnist", choices=tuple(DATASETS),
                   help="binarized_mnist (the paper's Table 2), fashion_mnist (binarized), cifar10 (8-bit pixels, "
                        "discretized logistic, conv nets)")
    p.add_argument("--data-dir", help="folder with the data set's files (binarized_mnist.npz, or torchvision's; else "
                                      "$PYRO_VAEGAP_DATA)")
    p.add_argument("--download", action="store_true",
                   help="when the data set is not found, download it with torchvision (binarized MNIST is then "
                        "binarized with a fixed seed, not the paper's binarization: its numbers are not comparable)")
    p.add_argument("--run-dir", help="training run folder: reused when it holds the finished training of these options "
                                     "(e.g. a run trained elsewhere with the same config), resumed when interrupted, "
                                     "else created (default: " + ", ".join(f"{k} {v}" for k, v in RUN_DIRS.items())
                                     + ")")
    p.add_argument("--out", default="results/cremer_gaps/gaps", help="output stem: STEM.json, STEM.md")
    p.add_argument("--guide", default="ffg", help="family of the amortized encoder the model is trained with "
                                                  "(ffg; fullcov: Table 10; flow: Table 2's second column)")
    p.add_argument("--encoder-hidden", type=int, default=200, help="width of the encoder's hidden layers (200; "
                                                                    "Table 3: a larger encoder)")
    p.add_argument("--encoder-layers", type=int, default=2, help="encoder hidden layers (2)")
    p.add_argument("--lr", type=float, default=1e-3, help="Adam learning rate (paper 1e-3, initial for --lr-schedule "
                                                          "burda)")
    p.add_argument("--decoder-layers", type=int, default=2, choices=(0, 2, 4), help="decoder hidden layers")
    p.add_argument("--families", default="ffg,flow", help="comma-separated families for L[q*] (ffg,flow: "
                                                           "the paper's rows)")
    p.add_argument("--ais-schedule", default="sigmoid", choices=SCHEDULES, help="beta schedule (sigmoid)")
    p.add_argument("--ais-step-size", default="pilot", choices=STEP_SIZE_MODES,
                   help="pilot: frozen schedule (unbiased); online-biased: for comparison only (pilot)")
    p.add_argument("--no-ais", action="store_true", help="skip AIS: log p̂(x) = IWAE only")
    p.add_argument("--log-px", default="auto", choices=LOG_PX_ESTIMATORS,
                   help="log p̂: auto (AIS if it runs), ais, iwae, or max (the paper's per-point max; biased up)")
    p.add_argument("--local-init", default="prior", choices=LOCAL_INITS, help="q* initialization (paper: prior)")
    p.add_argument("--seed", type=int, default=0, help="seed of training, the evaluation subset and the evaluation")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: $PYRO_VAEGAP_THREADS, else 1)")
    p.add_argument("--workers", type=int, default=None, help=WORKERS_HELP)
    p.add_argument("--overwrite", action="store_true", help="replace a finished report at --out")
    p.add_argument("--debug", action="store_true", help="show the Python traceback of an error instead of its "
                                                        "one-line message (for bug reports)")
    p.add_argument("--quiet", action="store_true", help="no progress lines")
    PROFILES.add_to(p)
    p.set_defaults(profile=default_profile)


def apply_profile(args) -> None:
    """Fill in the chosen profile's settings and check what the options must satisfy."""
    PROFILES.apply(args)
    if args.num_train == 0:
        args.num_train = None
    for name in ("epochs", "num_points", "iwae_samples", "ais_chains", "ais_steps", "ais_leapfrog", "local_samples",
                 "local_max_steps", "local_check_every", "flow_hidden"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} {getattr(args, name)} is not allowed: expected >= 1")


def configs(args) -> tuple[TrainConfig, GapConfig]:
    """The training and evaluation configs of these options (after :func:`apply_profile`)."""
    if getattr(args, "eval_split", None) is None:
        apply_profile(args)
    model, arch = DATASETS[args.dataset]
    tcfg = TrainConfig(dataset=args.dataset, data_dir=args.data_dir, model=model, arch=arch, latent_dim=50,
                       hidden=200, decoder_layers=args.decoder_layers, activation="elu", guide=args.guide,
                       # the encoder's defaults are 200 × 2: only a change is written, so earlier runs still resume
                       guide_options={k: v for k, v in (("hidden", args.encoder_hidden), ("layers", args.encoder_layers))
                                      if v != {"hidden": 200, "layers": 2}[k]},
                       objective="elbo", anneal="entropy" if args.anneal_epochs else "none",
                       anneal_epochs=min(args.anneal_epochs, args.epochs), epochs=args.epochs, batch_size=100,
                       lr=args.lr, lr_schedule=args.lr_schedule, adam_eps=args.adam_eps, train_split=args.train_split,
                       valid_split=args.valid_split, num_valid=args.num_valid, seed=args.seed, num_train=args.num_train)
    families = tuple(f for f in args.families.split(",") if f)
    gcfg = GapConfig(families=families,
                     family_options={"flow": {"flow_hidden": args.flow_hidden}} if "flow" in families else {},
                     iwae_samples=args.iwae_samples, elbo_samples=args.iwae_samples, ais=not args.no_ais,
                     ais_chains=args.ais_chains, ais_steps=args.ais_steps, ais_leapfrog=args.ais_leapfrog,
                     ais_schedule=args.ais_schedule, ais_step_size=args.ais_step_size, log_px=args.log_px,
                     local_samples=args.local_samples, local_max_steps=args.local_max_steps,
                     local_check_every=args.local_check_every, local_init=args.local_init, ais_fast=args.ais_fast,
                     local_fast=args.local_fast, seed=args.seed)
    return tcfg, gcfg


def run_dir(args) -> Path:
    """The training run folder: ``--run-dir``, else the profile's (:data:`RUN_DIRS`; the guide named when not ffg)."""
    if args.run_dir:
        return Path(args.run_dir)
    default = RUN_DIRS[args.profile]
    return Path(default if args.guide == "ffg" or args.profile in ("standard", "quick") else f"{default}_{args.guide}")


def run(args):
    """Train (or reuse, or resume) the model of these options, then write its gap report with the paper's numbers
    beside it; returns the report."""
    set_threads(args.threads)
    device = resolve_device(args.device)  # before anything is loaded
    apply_profile(args)
    tcfg, gcfg = configs(args)
    gcfg.check_families()
    x, points = evaluation_data(args.dataset, args.eval_split, args.num_points, args.seed, args.eval_points,
                                data_dir=args.data_dir, download=args.download)
    check_output_stem(args.out, args.overwrite)  # before hours of training and evaluation
    model, guide, _ = train_run(tcfg, run_dir(args), Progress(args.quiet), device, download=args.download)
    return run_gaps(model, guide, tcfg, gcfg, x.to(device), args.out, progress=not args.quiet,
                    overwrite=args.overwrite, points=points, split=args.eval_split, workers=evaluation_workers(args, device))


def evaluation_workers(args, device) -> int:
    """``--workers``, by default as many processes of ``--threads`` threads as fit the usable cores
    (:func:`~pyro_vaegap.training.distributed.default_workers`)."""
    if args.workers is not None:
        return check_positive_int("--workers", args.workers)
    return default_workers(torch.get_num_threads(), device)


def build_parser(prog: str = "python -m experiments.cremer_gaps", name: str = "cremer_gaps",
                 default_profile: str = "standard", description: str | None = None):
    """The parser of one Cremer model and its evaluation (``experiments.cremer_gaps``' options)."""
    from ..harness.options import Parser, device_option

    p = Parser(prog=prog, description=description, error_name=name, parents=[device_option()])
    add_options(p, default_profile)
    return p
