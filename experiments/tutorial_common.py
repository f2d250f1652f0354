"""Plumbing shared by the tutorial experiments (``experiments/tutorial_*.py``).

Each experiment parses its options with :func:`make_parser` / :func:`parse_args` (bad values stop
with a clear message and exit status 2), trains its models with :func:`pyro_vaegap.train.train`
through :func:`train_run` (a finished run folder is reused, an interrupted one resumes), evaluates
them with :func:`pyro_vaegap.estimators.importance_sample` through :func:`evaluate`, and writes
``results.json`` (config, seed, package versions, numbers), ``results.md`` and PNG figures
atomically with :func:`write_results` and :func:`save_figure`.
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

from pyro_vaegap.estimators import importance_sample
from pyro_vaegap.train import TrainConfig, train
from pyro_vaegap.cli import Parser, device_option, run_command
from pyro_vaegap.utils import (ConfigError, atomic_write, atomic_write_json, atomic_write_text, module_device,
                               provenance, resolve_device, set_threads)

LN2 = math.log(2.0)


def make_parser(name: str, description: str) -> argparse.ArgumentParser:
    """A parser with the options every experiment has: ``--out``, ``--seed``, ``--quiet``, ``--threads``,
    ``--device``, ``--debug``; a bad option is one line ``NAME: error: ...`` and exit status 2, like every other error."""
    p = Parser(prog=f"python -m experiments.{name}", description=description, error_name=name,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=[device_option()])
    p.add_argument("--out", default=f"results/{name}",
                   help="results folder (JSON, markdown, PNG figures and one training-run folder per model)")
    p.add_argument("--seed", type=int, default=0, help="seed of training (weights, minibatches) and evaluation")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads of this process (default: $PYRO_VAEGAP_THREADS, else 1)")
    p.add_argument("--debug", action="store_true",
                   help="show the Python traceback of an error instead of its one-line message (for bug reports)")
    return p


def parse_args(parser: argparse.ArgumentParser, argv, positive=(), nonneg=(), probability=()):
    """Parse ``argv`` and check numeric options; a bad value calls ``parser.error`` (exit status 2).

    :param positive: option dests that must be > 0; ``nonneg``: >= 0; ``probability``: in (0, 1).
    """
    args = parser.parse_args(argv)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads={args.threads} is not allowed: it must be >= 1")
    set_threads(args.threads)
    try:
        args.device = resolve_device(args.device)  # a GPU asked for and absent stops here, before any work
    except ConfigError as e:
        parser.error(str(e))
    for dest in positive:
        if getattr(args, dest) <= 0:
            parser.error(f"--{dest.replace('_', '-')}={getattr(args, dest)} is not allowed: it must be > 0")
    for dest in ("seed", *nonneg):
        if getattr(args, dest) < 0:
            parser.error(f"--{dest.replace('_', '-')}={getattr(args, dest)} is not allowed: it must be >= 0")
    for dest in probability:
        if not 0 < getattr(args, dest) < 1:
            parser.error(f"--{dest.replace('_', '-')}={getattr(args, dest)} is not allowed: it must be in (0, 1)")
    return args


class Progress:
    """Timestamped progress lines on stdout (silenced by ``--quiet``)."""

    def __init__(self, quiet: bool):
        self.quiet, self.t0 = quiet, time.time()

    def __call__(self, msg: str) -> None:
        if not self.quiet:
            print(f"[{time.time() - self.t0:7.1f}s] {msg}", flush=True)

    @property
    def elapsed(self) -> float:
        return time.time() - self.t0


def train_run(cfg: TrainConfig, run_dir: Path, progress: Progress, device=None):
    """Train ``cfg`` in ``run_dir`` on ``device``, or reuse/resume the run already there (same config).

    :returns: ``(model, guide, seconds)``, in eval mode.
    """
    t = time.time()
    resume = (Path(run_dir) / "checkpoint.pt").exists()
    progress(f"{'resuming' if resume else 'training'} {cfg.model} / {cfg.objective} (k={cfg.num_particles}) "
             f"on {cfg.dataset} for {cfg.epochs} epochs -> {run_dir}")
    res = train(cfg, run_dir, resume=resume, progress=False, resume_hint="the same command", device=device)
    return res.model.eval(), res.guide.eval(), time.time() - t


def evaluate(model, guide, x: torch.Tensor, num_samples: int, dims: int | None = None,
             keep_per_point: bool = False, **chunks) -> dict:
    r"""Per-datapoint ELBO and IWAE(``num_samples``) on ``x``, summarized in nats and bits.

    Returns means over datapoints of :math:`-\mathrm{ELBO}` and of :math:`-\log\hat p(x)` (IWAE with
    ``k = num_samples``), each with its standard error across datapoints (the data's sampling error,
    which dominates the per-point Monte Carlo error here), the inference gap
    :math:`\log\hat p(x) - \mathrm{ELBO} \ge 0`, and, with ``dims``, the same per dimension in bits.
    Bits are nats / ln 2 exactly: for continuous data this is :math:`-\log_2` of a density.
    ``chunks`` (``sample_chunk``, ``data_chunk``) go to :func:`~pyro_vaegap.estimators.importance_sample`;
    ``keep_per_point`` adds ``nll_nats_per_point``, the list of :math:`-\log\hat p(x_n)` (for paired
    comparisons of models on the same data).
    """
    x = model.validate_data(x.to(module_device(model)))
    r = importance_sample(model, guide, x, num_samples, psis=False, **chunks)
    n = x.shape[0]
    out = {}
    for key, per_point in (("neg_elbo", -r.elbo), ("nll", -r.iwae), ("gap", r.iwae - r.elbo)):
        mean, se = float(per_point.mean()), float(per_point.std() / math.sqrt(n)) if n > 1 else float("nan")
        out[f"{key}_nats"], out[f"{key}_nats_se"] = mean, se
        out[f"{key}_bits"], out[f"{key}_bits_se"] = mean / LN2, se / LN2
        if dims:
            out[f"{key}_bits_per_dim"] = mean / LN2 / dims
    out["num_points"], out["num_samples"] = n, num_samples
    out["max_iwae_mc_se_nats"] = float(r.iwae_se.max())
    if keep_per_point:
        out["nll_nats_per_point"] = [float(v) for v in -r.iwae.cpu()]
    return out


def markdown_table(headers, rows) -> str:
    """A GitHub-markdown table; floats are printed with 3 decimals."""
    def cell(v):
        return f"{v:.3f}" if isinstance(v, float) else str(v)
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def save_figure(fig, path: Path, dpi: int = 110) -> Path:
    """Save a matplotlib figure atomically (:func:`pyro_vaegap.utils.atomic_write`) and close it."""
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=dpi, bbox_inches="tight"))
    finally:
        plt.close(fig)


def write_results(out: Path, name: str, args, results: dict, markdown: str, seconds: float) -> None:
    """``results.json`` (options, seed, versions, wall time, results) and ``results.md``, atomically."""
    payload = {"experiment": name, "config": vars(args), "seed": args.seed, **provenance(),
               "wall_seconds": round(seconds, 1), "results": results}
    atomic_write_json(Path(out) / "results.json", payload)
    cmd = "python -m experiments." + name
    atomic_write_text(Path(out) / "results.md",
                      f"# {name}\n\nWall time: {seconds / 60:.1f} min. Options: `{vars(args)}`\n"
                      f"(`{cmd}`; see results.json for package versions)\n\n" + markdown)


def run_main(main_fn, argv):
    """Run an experiment's body through :func:`pyro_vaegap.cli.run_command`: a user error (bad option or
    data, a full disk, out of memory, Ctrl-C, ...) ends with one line and exit status 2, ``--debug``
    keeps the traceback (the body parses its own options, so ``--debug`` is read from ``argv`` here)."""
    module = sys.modules[main_fn.__module__]  # "__main__" under ``python -m``: name it by its file
    argv = sys.argv[1:] if argv is None else argv
    code = run_command(Path(module.__file__).stem, main_fn, argv, debug="--debug" in argv)
    if code:
        raise SystemExit(code)
