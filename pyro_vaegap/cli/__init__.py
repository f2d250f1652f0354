r"""vaegap: train VAEs with Pyro and measure their inference gaps (approximation and amortization).

Subcommands ``train``, ``gaps``, ``quickstart``, ``bdmc``, ``render`` and ``families``. Every option of
:class:`~pyro_vaegap.runs.TrainConfig` and :class:`~pyro_vaegap.report.compute.GapConfig` is a flag
(``--latent-dim 50``); ``--config FILE.json`` supplies any of them from a file, flags override the file
(:mod:`pyro_vaegap.cli.options`). One module per command or group: :mod:`~pyro_vaegap.cli.train`,
:mod:`~pyro_vaegap.cli.gaps` (gaps, bdmc, render), :mod:`~pyro_vaegap.cli.quickstart`,
:mod:`~pyro_vaegap.cli.sweep`, :mod:`~pyro_vaegap.cli.families`.

Everything a user can cause (a bad option or file, damaged data or checkpoint, a folder in use, a full
or read-only disk, running out of memory, Ctrl-C) ends with one line ``vaegap: error: ...`` on stderr
and exit status 2 (:func:`pyro_vaegap.harness.run_command`, the harness's one error path); ``--debug`` shows the Python traceback instead. Anything else
is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse

from ..estimators.ais import SCHEDULES, STEP_SIZE_MODES
from ..data import DATASETS, EVAL_POINTS
from ..training.distributed import rank_name
from ..report.config import GapConfig
from ..harness.errors import USER_ERRORS, run_command, user_error
from ..harness.gap_runs import check_output_stem, run_gaps
from ..harness.options import WORKERS_HELP, Parser, common_options, device_option
from ..runs import TrainConfig
from ..utils import set_threads
from .families import cmd_families
from .gaps import cmd_bdmc, cmd_gaps, cmd_render
from .options import _add_dataclass_args
from .quickstart import cmd_quickstart
from .sweep import cmd_sweep_merge, cmd_sweep_plan, cmd_sweep_run
from .train import cmd_train

#: names kept where they were before the harness took them (their home is :mod:`pyro_vaegap.harness`)
__all__ = ["main", "build_parser", "OOM_HINTS", "Parser", "common_options", "device_option", "run_command",
           "user_error", "USER_ERRORS", "run_gaps", "check_output_stem", "cmd_train", "cmd_gaps", "cmd_render",
           "cmd_bdmc", "cmd_quickstart", "cmd_sweep_plan", "cmd_sweep_run", "cmd_sweep_merge", "cmd_families"]


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
    t.add_argument("--jit", action=argparse.BooleanOptionalAction, default=True,
                   help="trace the Pyro loss once per batch shape and replay the graph, checked against the eager loss "
                        "at its first call (same random numbers and gradients; not part of the run: a run resumes with "
                        "or without it; eager with a warning where it cannot apply) (default: --jit)")
    _add_dataclass_args(t, TrainConfig)

    g = command("gaps", "approximation / amortization gap report of a trained run", cmd_gaps)
    g.add_argument("--run", "--run-dir", dest="run",
                   help="a run folder written by vaegap train (--run-dir: the spelling torchrun passes through)")
    g.add_argument("--model", help="instead of --run, your own model: MODULE:FUNCTION (or path/file.py:FUNCTION), a "
                                   "function returning an object with model and guide methods, a pair (model, guide) "
                                   "or a dict; needs --dataset and --out (see docs/byom.rst)")
    g.add_argument("--checkpoint", help="with --model: trained weights (a state_dict of the built module, or a saved "
                                        "Pyro param store)")
    g.add_argument("--dataset", choices=sorted(DATASETS), help="with --model: the data set to evaluate on")
    g.add_argument("--family", default="ffg", help="with --model: the family of your guide, which names the q* that "
                                                   "defines the headline gaps (ffg)")
    g.add_argument("--config", help="JSON file of GapConfig fields (flags override it)")
    g.add_argument("--split", default="test", choices=("train", "valid", "test"), help="evaluation split (test)")
    g.add_argument("--num-points", type=int, default=100, help="size of the seeded random evaluation subset (100)")
    g.add_argument("--subset-seed", type=int, default=0, help="seed of the evaluation subset (0)")
    g.add_argument("--eval-points", default="random", choices=EVAL_POINTS,
                   help="random: a seeded random subset of the split (--subset-seed); first: its first --num-points "
                        "rows, as Cremer et al.'s code evaluates the training split (random)")
    g.add_argument("--data-dir", help="override the run's data directory")
    g.add_argument("--download", **download)
    g.add_argument("--out", help="output stem; writes STEM.json and STEM.md, keeps finished parts in STEM.partial/ "
                                 "until then (default: RUN/gaps)")
    g.add_argument("--overwrite", action="store_true", help="replace a finished report at --out")
    g.add_argument("--quiet", action="store_true", help="no progress bars")
    g.add_argument("--workers", type=int, help=WORKERS_HELP)
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
