"""vaegap: train VAEs with Pyro and measure their inference gaps (approximation and amortization).

Subcommands ``train``, ``gaps``, ``quickstart``, ``bdmc``, ``render`` and ``families``. Every option of
:class:`~pyro_vaegap.train.TrainConfig` and :class:`~pyro_vaegap.gaps.GapConfig` is a flag
(``--latent-dim 50``); ``--config FILE.json`` supplies any of them from a file, flags override the file.

Everything a user can cause (a bad option or file, damaged data or checkpoint, a folder in use, a full
or read-only disk, running out of memory, Ctrl-C) ends with one line ``vaegap: error: ...`` on stderr
and exit status 2 (:func:`run_command`); ``--debug`` shows the Python traceback instead. Anything else
is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import time
from pathlib import Path

from .ais import SCHEDULES, STEP_SIZE_MODES
from .data import DATASETS, load_dataset, seeded_subset
from .distributed import process_group, rank_device, rank_name, world_from_env
from .gaps import GapConfig, GapReport
from .train import TrainConfig, load_run, resume_config, train
from .harness.errors import USER_ERRORS, run_command, user_error  # noqa: F401 - their old home
from .harness.gap_runs import check_output_stem, run_gaps
from .harness.options import Parser, common_options, device_option
from .utils import (ConfigError, FileLock, check_folder, check_positive_int, provenance, resolve_device, set_seed,
                    set_threads)

_HELP = {
    # TrainConfig
    "dataset": f"training data: {', '.join(DATASETS)} (the digits sets are embedded in scikit-learn)",
    "data_dir": "directory holding the data files (else $PYRO_VAEGAP_DATA, then ~/.cache/pyro_vaegap); stored in "
                "the run as an absolute path, so the run finds its data from any folder",
    "num_train": "train on a seeded random subset of this many training rows",
    "train_split": "train, or train+valid (both splits, as Cremer et al.'s code trains MNIST)",
    "valid_split": "split of the per-epoch validation ELBO in log.csv: valid, or test (needed with train+valid)",
    "adam_eps": "Adam's epsilon (torch's 1e-8; Cremer et al.'s code: 1e-4)",
    "model": "likelihood: bernoulli (binary data), gaussian (continuous data), mse (Gaussian with fixed variance "
             "1/2: the MSE-loss VAE), dlogistic (discretized logistic, 8-bit data such as digits_uint8) or pixelcnn (gated "
             "PixelCNN conditioned on z, binary square images; --pixelcnn-layers, --pixelcnn-channels)",
    "latent_dim": "latent dimension d", "hidden": "width of the decoder's hidden layers",
    "decoder_layers": "number of decoder hidden layers (0, 2, 4 in Cremer et al. Table 5)",
    "activation": "elu, tanh or relu",
    "dense": "densely connected decoder (networks.DenseMLP); the encoder's is set in --guide-options",
    "arch": "mlp, or conv (3 convolutions with 4x4 kernels, then fully connected layers: networks.encoder_body); "
            "sets the decoder and, unless --guide-options gives its own, the encoder",
    "variance": "gaussian model: network, diagonal, scalar or fixed (homoscedastic, not learned: GPVAE's decoder "
                "on grey-level images)",
    "pixelcnn_layers": "pixelcnn model: gated layers (the first masked to exclude the current pixel)",
    "pixelcnn_channels": "pixelcnn model: channels of every gated layer",
    "sigma2": "gaussian model: the variance when --variance fixed, else the learned variance's initial value",
    "guide": "posterior family of the amortized guide (list them with: vaegap families)",
    "guide_options": "JSON object of options for the guide class, e.g. '{\"hidden\": 200}'",
    "objective": "elbo (Trace_ELBO), mean_field (TraceMeanField_ELBO), iwae (RenyiELBO alpha=0) or infovae "
                 "(Zhao et al.: E log p(x|z) - (1-alpha) KL(q(z|x)||p(z)) - (alpha+lambda-1) D(q(z)||p(z)); needs "
                 "--alpha and --lambda)",
    "num_particles": "samples per datapoint (k of IWAE)",
    "anneal": "none, entropy (Cremer et al.) or kl", "anneal_epochs": "epochs of linear annealing 0→1",
    "free_bits": "free bits per latent dimension and datapoint (R. Yu's tutorial: 0.05); ELBO objectives, "
                 "no annealing",
    "alpha": "InfoVAE's alpha: the per-datapoint KL weighs 1 - alpha (<= 1 unless --divergence kl); objective "
             "infovae only (no default: required there)",
    "lambda_": "InfoVAE's lambda: D(q(z)||p(z)) weighs alpha + lambda - 1 (>= 0 unless --divergence kl, where the "
               "objective is the beta-VAE with beta = lambda); objective infovae only (no default: required there)",
    "divergence": "InfoVAE's D: mmd (unbiased MMD of the aggregate posterior), stein (SVGD gradient of "
                  "KL(q(z)||p(z))), adversarial (a critic on z, JS/GAN loss as in the AAE) or kl (the per-datapoint KL: "
                  "beta-VAE) (default with --objective infovae: mmd)",
    "mmd_kernel": "MMD kernel: rbf, exp(-|z-z'|^2/(s d)), or imq, C/(C+|z-z'|^2) with C = 2 s d (divergence mmd; "
                  "default there: rbf)",
    "mmd_scales": "comma-separated bandwidth multipliers s, the kernel summed over them (multi-scale), e.g. "
                  "0.5,1,2 (divergence mmd; default there: 1)",
    "disc_lr": "the critic's Adam learning rate (divergence adversarial; default there: 0.001)",
    "disc_steps": "critic steps per generator step (divergence adversarial; default there: 1)",
    "disc_hidden": "width of the critic's two hidden layers (divergence adversarial; default there: 256)",
    "epochs": "training epochs (Burda schedule: 3280)", "batch_size": "minibatch size",
    "lr": "Adam learning rate (initial, for the Burda schedule)", "lr_schedule": "constant, burda or cosine",
    "micro_batches": "split every batch into this many parts, each with its own seeded random draws; needed by data-"
                     "parallel training under torchrun (at least the number of ranks), where the run is then the same "
                     "for any number of ranks up to it, one process included (default: one stream, one process)",
    "valid_samples": "samples of the per-epoch validation ELBO",
    "num_valid": "compute the per-epoch validation ELBO on a seeded random subset of this many validation rows "
                 "(default: all; cheaper for many short epochs)",
    "seed": "random seed (fixes the run)",
    "decoder_from": "a finished run folder: load its decoder, freeze it and train only a new encoder (its model "
                    "options must equal this run's; Cremer et al. Table 4) (default: train both)",
    # GapConfig
    "families": "comma-separated families whose per-datum optimum L[q*] is computed, e.g. ffg,fullcov,flow",
    "family_options": "JSON object {family: {option: value}} for the per-datum guides",
    "iwae_samples": "samples of the IWAE estimate of log p(x) (paper 5000)",
    "elbo_samples": "samples for L[q] and L[q*] (paper 5000)",
    "sample_chunk": "samples per vectorized call (memory)", "data_chunk": "datapoints per vectorized call",
    "ais": "run AIS", "ais_chains": "AIS chains per datapoint (paper 100)",
    "ais_steps": "AIS intermediate distributions (paper 500)", "ais_leapfrog": "leapfrog steps per HMC move (10)",
    "ais_schedule": "sigmoid or linear beta schedule",
    "ais_step_size": "pilot (frozen schedule tuned on discarded chains: unbiased) or online-biased",
    "ais_pilot_chains": "pilot chains per datapoint that tune the step sizes (then discarded)",
    "ais_init_step_size": "initial HMC step size of the pilot",
    "log_px": "log p̂: auto (AIS if it runs, else IWAE), ais, iwae, or max (the paper's per-point max; biased up)",
    "local_samples": "samples per step of the local optimization (paper 100)",
    "local_lr": "Adam lr of the local optimization (paper 1e-3)", "local_max_steps": "cap on local steps",
    "local_check_every": "stopping rule: window length (100)", "local_patience": "stopping rule: checks without improvement (10)",
    "local_init": "prior (paper) or encoder",
    "local_data_chunk": "datapoints per local-optimization piece (default: all in one problem); set it to spread "
                        "that stage over torchrun ranks", }


def _add_dataclass_args(parser, cls, skip=()):
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        flag = "--" + f.name.rstrip("_").replace("_", "-")  # lambda_ (a Python keyword) is --lambda
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        shown = ",".join(default) if isinstance(default, tuple) else json.dumps(default) if isinstance(default, dict) \
            else default
        text = _HELP.get(f.name, "")
        kw = {"dest": f.name, "default": None, "help": text if "default" in text else f"{text} (default: {shown})"}
        if f.name.endswith("_"):
            kw["metavar"] = f.name.rstrip("_").upper()
        annotation = str(f.type)  # "float | None": options that are None when not given
        if isinstance(default, bool):
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
        elif isinstance(default, dict):
            parser.add_argument(flag, type=_json_object(f.name), **kw)
        elif isinstance(default, tuple) or annotation.startswith("tuple"):
            parser.add_argument(flag, type=lambda s: tuple(p for p in s.split(",") if p), **kw)
        elif isinstance(default, float) or annotation.startswith("float"):
            parser.add_argument(flag, type=float, **kw)
        elif isinstance(default, int) or annotation.startswith("int"):
            parser.add_argument(flag, type=int, **kw)
        else:
            parser.add_argument(flag, type=str, **kw)


def _json_object(name):
    def parse(s):
        try:
            v = json.loads(s)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')} must be a JSON object: {e}")
        if not isinstance(v, dict):
            raise argparse.ArgumentTypeError(f"--{name.replace('_', '-')} must be a JSON object, got {s!r}")
        return v
    return parse


def _given(cls, args, from_file: dict | None = None) -> dict:
    """The fields of ``cls`` the user gave: from the ``--config`` file, overridden by flags."""
    values = dict(from_file or {})
    for f in dataclasses.fields(cls):
        v = getattr(args, f.name, None)
        if v is not None:
            values[f.name] = v
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown {cls.__name__} keys {unknown}; allowed: {sorted(known)}")
    return values


def _config(cls, args, from_file: dict | None = None):
    return cls(**_given(cls, args, from_file))


def _read_config_file(path):
    if path is None:
        return {}
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--config {path!r}: no such file")
    try:
        d = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"--config {path!r} is not valid JSON: {e}") from e
    if not isinstance(d, dict):
        raise ConfigError(f"--config {path!r} must hold a JSON object")
    return d.get("config", d)


def cmd_train(args):
    """Train, or with ``--resume`` continue the run's own config (only ``--epochs`` may be given anew)."""
    given = _given(TrainConfig, args, _read_config_file(args.config))
    cfg = resume_config(args.run_dir, given) if args.resume else TrainConfig(**given)
    resume = f'"vaegap train --run-dir {shlex.quote(str(args.run_dir))} --resume"'
    rank, world = world_from_env()  # launched by torchrun: data-parallel training (see train())
    device = rank_device(args.device)
    with process_group(world, device):
        res = train(cfg, args.run_dir, resume=args.resume, progress=not args.quiet, download=args.download,
                    resume_hint=resume, device=device)
    if rank != 0:
        return
    last = res.log[-1] if res.log else {}
    print(f"trained {cfg.guide} VAE on {cfg.dataset}: epoch {last.get('epoch')}, train objective "
          f"{last.get('train_objective', float('nan')):.3f}, validation ELBO {last.get('valid_elbo', float('nan')):.3f} nats; "
          f"run folder {res.run_dir}")


def _eval_data(cfg: TrainConfig, args):
    x = load_dataset(cfg.dataset, args.split, data_dir=args.data_dir or cfg.data_dir, download=args.download)
    if not 1 <= args.num_points <= x.shape[0]:
        raise ConfigError(f"--num-points {args.num_points} is not allowed: expected 1..{x.shape[0]} "
                          f"(the {args.split} split has {x.shape[0]} rows)")
    return x[seeded_subset(x.shape[0], args.num_points, args.subset_seed)]


def cmd_gaps(args):
    gcfg = _config(GapConfig, args, _read_config_file(args.config))
    gcfg.check_families()  # before anything is loaded or computed
    device = rank_device(args.device)
    model, guide, tcfg = load_run(args.run, device)
    out = check_output_stem(args.out or Path(args.run) / "gaps", args.overwrite)
    x = _eval_data(tcfg, args).to(device)
    run_gaps(model, guide, tcfg, gcfg, x, out, progress=not args.quiet, overwrite=args.overwrite)


def cmd_render(args):
    """Regenerate a gap report's markdown table from its JSON with the current code."""
    from .utils import atomic_write_text

    path = Path(args.report)
    if not path.is_file():
        raise ConfigError(f"{str(path)!r}: no such file (give a STEM.json written by vaegap gaps)")
    try:
        md = GapReport.load(path).to_markdown()
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as e:
        raise ConfigError(f"{str(path)!r} is not a gap report written by vaegap gaps ({type(e).__name__}: {e})") from e
    if args.out:
        check_folder(Path(args.out).parent, "output folder")
        print(f"wrote {atomic_write_text(args.out, md)}")
    else:
        print(md, end="")


def cmd_quickstart(args):
    """Train a small FFG VAE on the embedded digits data and print its gap table (≤ 5 min, 2 cores)."""
    out = Path(args.out)
    cfg = TrainConfig(dataset="digits", latent_dim=8, hidden=64, guide_options={"hidden": 64}, epochs=args.epochs,
                      batch_size=50, anneal="entropy", anneal_epochs=10, seed=args.seed)
    n_test = load_dataset("digits", "test").shape[0]
    if not 1 <= args.num_points <= n_test:
        raise ConfigError(f"--num-points {args.num_points} is not allowed: expected 1..{n_test} (the digits test "
                          "split)")
    check_folder(out, "output folder")
    run_dir = out / "run"
    device = resolve_device(args.device)
    res = train(cfg, run_dir, resume=(run_dir / "checkpoint.pt").exists(), progress=not args.quiet,
                resume_hint="the same command", device=device)
    saved = out / "gaps.json"
    if saved.exists():  # a finished quickstart: show it rather than recompute or overwrite it
        print(GapReport.load(saved).to_markdown())
        print(f"(the saved report {saved}; delete it to recompute)")
        return
    x = load_dataset("digits", "test")
    x = x[seeded_subset(x.shape[0], args.num_points, args.seed)].to(device)
    gcfg = GapConfig(families=("ffg",), iwae_samples=2000, elbo_samples=2000, ais_chains=50, ais_steps=200,
                     ais_leapfrog=5, local_samples=10, seed=args.seed)
    run_gaps(res.model, res.guide, cfg, gcfg, x, out / "gaps", progress=not args.quiet)


def cmd_bdmc(args):
    """Sandwich log p(x) of data simulated from a trained model: how tight are these AIS settings?"""
    from .ais import bdmc
    from .utils import atomic_write_json

    for name in ("num_points", "ais_chains", "ais_steps", "ais_leapfrog", "ais_pilot_chains"):
        check_positive_int("--" + name.replace("_", "-"), getattr(args, name))
    check_positive_int("--seed", args.seed, minimum=0)
    if not 0 < args.ais_init_step_size < float("inf"):
        raise ConfigError(f"--ais-init-step-size {args.ais_init_step_size} is not allowed: expected a finite positive "
                          "number")
    device = resolve_device(args.device)
    model, _, tcfg = load_run(args.run, device)
    target = Path(args.out or Path(args.run) / "bdmc.json")
    like = load_dataset(tcfg.dataset, "test", data_dir=args.data_dir or tcfg.data_dir, download=args.download)[:1]
    like = like.to(device)
    check_folder(target.parent, "output folder")
    with FileLock(target, "output"):  # a second bdmc into the same file is refused, not silently overwritten
        if target.exists() and not args.overwrite:
            raise ConfigError(f"{target} already holds a BDMC result: pass --overwrite to replace it, or choose "
                              "another --out")
        set_seed(args.seed)
        t = time.time()
        res = bdmc(model, args.num_points, like, num_chains=args.ais_chains, num_steps=args.ais_steps,
                   leapfrog_steps=args.ais_leapfrog, schedule=args.ais_schedule, step_size=args.ais_step_size,
                   pilot_chains=args.ais_pilot_chains, init_step_size=args.ais_init_step_size,
                   progress=not args.quiet)
        summary = res.summary()
        out = {"summary": summary,
               "per_point": {"lower": res.lower.log_px.tolist(), "upper": res.upper.log_px.tolist(),
                             "gap": res.gap.tolist(), "lower_se": res.lower.se.tolist(),
                             "upper_se": res.upper.se.tolist(), "lower_accept": res.lower.accept_rate.tolist(),
                             "upper_accept": res.upper.accept_rate.tolist()},
               "config": {k: v for k, v in vars(args).items() if k not in ("func", "debug", "overwrite", "download")},
               "meta": {**provenance(), "seconds": time.time() - t, "train_config": tcfg.to_dict()}}
        path = atomic_write_json(target, out)
    verdict = ("the sandwich holds on every point" if summary["sandwich_holds"] else
               f"FAILED: the upper bound fell below the lower bound on {summary['crossings']} of "
               f"{summary['num_points']} points (more chains or steps needed)")
    print(f"BDMC on {args.num_points} simulated points, AIS {args.ais_chains}×{args.ais_steps}×{args.ais_leapfrog} "
          f"({args.ais_schedule}, {args.ais_step_size} step sizes): lower {summary['mean_lower']:.3f}, upper "
          f"{summary['mean_upper']:.3f}; |upper − lower| mean {summary['mean_abs_gap']:.3f}, max "
          f"{summary['max_abs_gap']:.3f} nats; {verdict}; saved {path}")


def cmd_sweep_plan(args):
    from .sweep import parse_grid, plan

    command = args.command_words[1:] if args.command_words[:1] == ["--"] else args.command_words
    p = plan(args.out, command, parse_grid(args.grid), out_option=args.out_option, out_suffix=args.out_suffix,
             overwrite=args.overwrite)
    print(f"planned {len(p['jobs'])} jobs in {Path(args.out) / 'jobs.txt'} (one command per line); run job K with: "
          f"vaegap sweep-run {shlex.quote(str(args.out))} --job K; merge with: vaegap sweep-merge "
          f"{shlex.quote(str(args.out))}")


def cmd_sweep_run(args):
    from .sweep import run_job

    code = run_job(args.sweep, args.job)
    if code:
        raise ConfigError(f"job {args.job} of {args.sweep} exited with status {code} (its own error is above); "
                          "rerun it with the same command")


def cmd_sweep_merge(args):
    from .sweep import merge

    m = merge(args.sweep, fields=args.field or None, over=args.over)
    done = len(m["jobs"]) - len(m["missing"])
    print((Path(args.sweep) / "merged.md").read_text(), end="")
    print(f"merged {done} of {len(m['jobs'])} jobs into {Path(args.sweep) / 'merged.json'}"
          + ("" if m["complete"] else f"; INCOMPLETE, missing: {', '.join(m['missing'])}"))


def cmd_families(args):
    from .registry import broken_plugins, families

    for name, fam in sorted(families().items()):
        kinds = "/".join(k for k, c in (("amortized", fam.amortized), ("per-datum", fam.local)) if c)
        print(f"{name:14s} {kinds:20s} {fam.description}")
    for source, why in broken_plugins().items():
        print(f"(left out) {source}: {why}")


def build_parser():
    p = Parser(prog="vaegap", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    common = common_options()

    def command(name, help, func, computes=True):
        c = sub.add_parser(name, parents=[common, device] if computes else [common], help=help, description=help,
                           error_name="vaegap")
        c.set_defaults(func=func)
        return c

    device = device_option()

    download = dict(action="store_true", help="download the data set with torchvision when it is not found "
                                              "(fashion_mnist, cifar10, the grey-level image sets mnist_continuous ... "
                                              "celeba; binarized_mnist with a fixed-seed binarization)")

    t = command("train", "train a VAE; writes a run folder (config.json, log.csv, checkpoint.pt)", cmd_train)
    t.add_argument("--run-dir", required=True, help="run folder to create (or to continue with --resume); locked "
                                                    "while training")
    t.add_argument("--config", help="JSON file of TrainConfig fields (flags override it)")
    t.add_argument("--resume", action="store_true",
                   help="continue the run folder's checkpoint with the run's own config; only --epochs may be given, "
                        "to extend the run")
    t.add_argument("--download", **download)
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_dataclass_args(t, TrainConfig)

    g = command("gaps", "approximation / amortization gap report of a trained run", cmd_gaps)
    g.add_argument("--run", "--run-dir", dest="run", required=True,
                   help="a run folder written by vaegap train (--run-dir: the spelling torchrun passes through)")
    g.add_argument("--config", help="JSON file of GapConfig fields (flags override it)")
    g.add_argument("--split", default="test", choices=("train", "valid", "test"), help="evaluation split (test)")
    g.add_argument("--num-points", type=int, default=100, help="size of the seeded random evaluation subset (100)")
    g.add_argument("--subset-seed", type=int, default=0, help="seed of the evaluation subset (0)")
    g.add_argument("--data-dir", help="override the run's data directory")
    g.add_argument("--download", **download)
    g.add_argument("--out", help="output stem; writes STEM.json and STEM.md, keeps finished parts in STEM.partial/ "
                                 "until then (default: RUN/gaps)")
    g.add_argument("--overwrite", action="store_true", help="replace a finished report at --out")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_dataclass_args(g, GapConfig)

    q = command("quickstart", "train a small FFG VAE on the embedded digits data and print its gaps", cmd_quickstart)
    q.add_argument("--out", default="results/quickstart", help="output folder (results/quickstart)")
    q.add_argument("--epochs", type=int, default=100, help="training epochs (100)")
    q.add_argument("--num-points", type=int, default=100, help="test points in the gap table (100)")
    q.add_argument("--seed", type=int, default=0, help="random seed (0)")
    q.add_argument("--quiet", action="store_true", help="no progress bars")

    b = command("bdmc", "BDMC sandwich of log p(x) on data simulated from a trained model", cmd_bdmc)
    b.add_argument("--run", required=True, help="a run folder written by vaegap train")
    b.add_argument("--num-points", type=int, default=10, help="simulated datapoints (10)")
    b.add_argument("--ais-chains", type=int, default=100, help="chains per datapoint (100)")
    b.add_argument("--ais-steps", type=int, default=500, help="intermediate distributions (500)")
    b.add_argument("--ais-leapfrog", type=int, default=10, help="leapfrog steps per transition (10)")
    b.add_argument("--ais-schedule", default="sigmoid", choices=SCHEDULES, help="beta schedule (sigmoid)")
    b.add_argument("--ais-step-size", default="pilot", choices=STEP_SIZE_MODES,
                   help="pilot: frozen schedule tuned on discarded chains (unbiased); online-biased: per-chain "
                        "adaptation during the run (biased, for comparison) (pilot)")
    b.add_argument("--ais-pilot-chains", type=int, default=10, help="pilot chains per datapoint (10)")
    b.add_argument("--ais-init-step-size", type=float, default=0.1, help="initial HMC step size of the pilot (0.1)")
    b.add_argument("--seed", type=int, default=0, help="random seed (0)")
    b.add_argument("--data-dir", help="override the run's data directory")
    b.add_argument("--download", **download)
    b.add_argument("--out", help="output JSON (default: RUN/bdmc.json); locked while computing")
    b.add_argument("--overwrite", action="store_true", help="replace an existing result at --out")
    b.add_argument("--quiet", action="store_true", help="no progress bars")

    r = command("render", "regenerate a gap report's markdown table from its JSON", cmd_render, computes=False)
    r.add_argument("report", help="a STEM.json written by vaegap gaps")
    r.add_argument("--out", help="write the table here (default: print it)")

    command("families", "list the registered posterior families", cmd_families, computes=False)

    sp = command("sweep-plan", "plan a sweep: one experiment command over a grid of settings, one job per "
                               "combination (SWEEP/jobs.txt, one command per line, for a cluster scheduler)",
                 cmd_sweep_plan, computes=False)
    sp.add_argument("--out", required=True, help="sweep folder (sweep.json, jobs.txt; jobs write under jobs/)")
    sp.add_argument("--grid", action="append", default=[], metavar="OPTION=V1,V2,...",
                    help="an option of the command and its values (repeat for more axes), e.g. seed=0,1,2")
    sp.add_argument("--out-option", default="--out", help="the command's option for a job's output (--out)")
    sp.add_argument("--out-suffix", default="",
                    help="appended to a job's output folder, e.g. /gaps for a command whose --out is a file stem")
    sp.add_argument("--overwrite", action="store_true", help="replace another plan in the folder (results stay)")
    sp.add_argument("command_words", nargs=argparse.REMAINDER, metavar="-- COMMAND",
                    help="the experiment command, after --, e.g. -- python -m experiments.gpvae_gaps --quick; {job} in "
                         "it stands for the job's folder (e.g. --run-dir {job}/run)")
    sr = command("sweep-run", "run one job of a planned sweep (e.g. --job $SLURM_ARRAY_TASK_ID)", cmd_sweep_run,
                 computes=False)
    sr.add_argument("sweep", help="the sweep folder")
    sr.add_argument("--job", type=int, required=True, help="job number, 1-based (the line of jobs.txt)")
    sm = command("sweep-merge", "merge the finished jobs' results of a sweep into SWEEP/merged.json and merged.md",
                 cmd_sweep_merge, computes=False)
    sm.add_argument("sweep", help="the sweep folder")
    sm.add_argument("--field", action="append", default=[],
                    help="dotted path into each job's results file to tabulate (repeat), e.g. "
                         "summary.amortization:ffg.mean (default for gap reports: log p, L[q], inference gap)")
    sm.add_argument("--over", help="a grid axis to aggregate over (mean ± SD of each field), e.g. seed")
    p.commands = sub.choices
    return p


#: which settings to lower when a command runs out of memory
OOM_HINTS = {
    "train": "--batch-size (or --num-particles, --hidden)",
    "gaps": "--data-chunk, --sample-chunk, --ais-data-chunk or --ais-chains (the finished parts are kept: the "
            "command resumes)",
    "bdmc": "--num-points or --ais-chains",
    "quickstart": "--num-points",
}


def main(argv=None):
    args = build_parser().parse_args(argv)
    return run_command("vaegap" + rank_name(), _with_threads(args.func), args, debug=args.debug,
                       oom_hint=OOM_HINTS.get(args.command))


def _with_threads(fn):
    def run(args):
        set_threads(args.threads)
        return fn(args)
    return run


if __name__ == "__main__":
    sys.exit(main())
