"""Every bad input and interruption a user can cause: one line on stderr, exit status 2, nothing lost.

:data:`CASES` is the table: each case has an id, a description for the docs, a setup (files to damage,
a lock to hold, a function to make fail), the command line and a regex its one-line message must
match. :func:`test_case` runs each and checks the exit status, that stderr is exactly that one line,
that no file saved before was changed (unless the case says progress may be saved) and that no
temporary or unexpected file was left behind. Failures that cannot be produced for real on a test
machine are simulated by monkeypatching, as the descriptions say: a full disk (``ENOSPC`` raised by the
atomic writer after half the bytes), a read-only folder (``EACCES``; the tests run as root, for whom
``chmod`` changes nothing), Ctrl-C (``KeyboardInterrupt`` raised by a function of the running
command), out of memory (the exception torch raises), a failed download.

``docs/errors.rst`` shows the table with the messages the cases really produced (temporary paths
replaced by placeholders); :func:`test_docs_table_is_current` fails when it is stale, and
``python tests/test_bad_inputs.py --write-docs`` regenerates it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import errno
import fnmatch
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

import pyro_vaegap.ais
import pyro_vaegap.gaps
import pyro_vaegap.report.render
import pyro_vaegap.training.loop
from pyro_vaegap import cli, data
from pyro_vaegap.utils import FileLock, FolderLock, atomic_write

REPO = Path(__file__).resolve().parents[1]
DOCS = REPO / "docs" / "errors.rst"
BEGIN, END = ".. BEGIN GENERATED TABLE (python tests/test_bad_inputs.py --write-docs)", ".. END GENERATED TABLE"

#: tiny training: the digits data (embedded in scikit-learn), 2 epochs of 12 minibatches
TINY = ["--latent-dim", "2", "--hidden", "8", "--guide-options", '{"hidden": 8}', "--epochs", "2", "--quiet"]
#: tiny evaluation: 2 points, no AIS, 50 samples, 5 local steps
GAPS = ["--num-points", "2", "--no-ais", "--iwae-samples", "50", "--elbo-samples", "50", "--local-max-steps", "5",
        "--local-check-every", "5", "--quiet"]
#: the tiny bdmc
BDMC = ["--num-points", "1", "--ais-chains", "2", "--ais-steps", "2", "--ais-leapfrog", "1", "--quiet"]


# ------------------------------------------------------------------------------------------------
# What each case starts from, and the setups that spoil it
# ------------------------------------------------------------------------------------------------

_TEMPLATE: list = []


def template() -> Path:
    """A folder with ``run/`` (trained 2 epochs, hidden 8) and ``done.json``/``done.md`` (a finished gap
    report of it), made once per process and copied into every case's folder."""
    if not _TEMPLATE:
        holder = tempfile.TemporaryDirectory(prefix="vaegap-template-")
        folder = Path(holder.name)
        with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(io.StringIO()):
            mp.chdir(folder)
            assert cli.main(["train", "--run-dir", "run", *TINY]) == 0
            assert cli.main(["gaps", "--run", "run", "--out", "done", *GAPS]) == 0
        _TEMPLATE.append(holder)  # kept (and deleted) with the process
    return Path(_TEMPLATE[0].name)


@dataclasses.dataclass
class Ctx:
    """What a setup gets: the case's folder (the current directory), a MonkeyPatch undone after the
    case, and an ExitStack for things held during it (locks)."""

    folder: Path
    mp: pytest.MonkeyPatch
    stack: contextlib.ExitStack


def write(path, content):
    def setup(ctx):
        p = ctx.folder / path
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def damage(path, how):
    """Replace a saved file by random bytes, its first half, or nothing."""
    def setup(ctx):
        p = ctx.folder / path
        whole = p.read_bytes()
        p.write_bytes({"random": np.random.default_rng(0).bytes(len(whole)), "truncated": whole[: len(whole) // 2],
                       "empty": b""}[how])
    return setup


def edit_json(path, change):
    def setup(ctx):
        p = ctx.folder / path
        d = json.loads(p.read_text())
        change(d)
        p.write_text(json.dumps(d, indent=2))
    return setup


def fake_mnist(folder="data", **arrays):
    """``FOLDER/binarized_mnist.npz`` with 60/20/20 random binary rows (or the given packed arrays)."""
    def setup(ctx):
        bits = np.random.default_rng(0).integers(0, 2, size=(100, 784), dtype=np.uint8)
        packed = arrays or {"train": np.packbits(bits[:60], axis=1), "valid": np.packbits(bits[60:80], axis=1),
                            "test": np.packbits(bits[80:], axis=1)}
        (ctx.folder / folder).mkdir(exist_ok=True)
        np.savez_compressed(ctx.folder / folder / data.MNIST_NPZ, **packed)
    return setup


def both(*setups):
    def setup(ctx):
        for s in setups:
            s(ctx)
    return setup


def hold(make_lock, command):
    """Hold a lock during the case, as a running ``command`` would (what its lock file records)."""
    def setup(ctx):
        with pytest.MonkeyPatch.context() as m:
            m.setattr(sys, "argv", command.split()[:3])
            ctx.stack.enter_context(make_lock(ctx.folder))
    return setup


def fail_on_call(module, name, exc, call=1):
    """Make the ``call``-th call of ``module.name`` raise ``exc()`` (earlier calls run normally)."""
    def setup(ctx):
        original, count = getattr(module, name), {"n": 0}

        def wrapper(*args, **kwargs):
            count["n"] += 1
            if count["n"] == call:
                raise exc()
            return original(*args, **kwargs)
        ctx.mp.setattr(module, name, wrapper)
    return setup


def disk_full(module, name, only=None):
    """Replace ``module.name`` (an atomic writer ``(path, obj)``) by one whose disk fills half way through
    the temporary file: the real :func:`~pyro_vaegap.utils.atomic_write` must clean up after it."""
    def setup(ctx):
        original = getattr(module, name)

        def writer(path, obj):
            if only and Path(path).name != only:
                return original(path, obj)

            def write(tmp):
                with open(tmp, "wb") as f:
                    f.write(b"x" * 1000)
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), tmp)
            return atomic_write(path, write)
        ctx.mp.setattr(module, name, writer)
    return setup


def read_only(folder):
    """Make writes into ``folder`` fail as in a read-only folder (EACCES from tempfile's file creation)."""
    def setup(ctx):
        target = (ctx.folder / folder).resolve()
        for name in ("TemporaryFile", "mkstemp"):
            original = getattr(tempfile, name)

            def refuse(*args, _original=original, **kwargs):
                where = Path(kwargs.get("dir") or tempfile.gettempdir()).resolve()
                if where == target or target in where.parents:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(where))
                return _original(*args, **kwargs)
            ctx.mp.setattr(tempfile, name, refuse)
    return setup


def failing_download(ctx):
    """torchvision's FashionMNIST with no files and no network."""
    import urllib.error

    import torchvision.datasets

    class NoNetwork:
        def __init__(self, root, train=True, download=False):
            if not download:
                raise RuntimeError("Dataset not found. You can use download=True to download it")
            raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")
    ctx.mp.setattr(torchvision.datasets, "FashionMNIST", NoNetwork)


def trained_elsewhere(ctx):
    """A binarized-MNIST run trained with the relative ``--data-dir data`` from the case's folder; the
    case then runs from ``elsewhere/``."""
    fake_mnist()(ctx)
    with contextlib.redirect_stdout(io.StringIO()):
        assert cli.main(["train", "--run-dir", "mnist_run", "--dataset", "binarized_mnist", "--data-dir", "data",
                         *TINY]) == 0
    (ctx.folder / "elsewhere").mkdir()
    ctx.mp.chdir(ctx.folder / "elsewhere")


def oom():
    return RuntimeError("[enforce fail at alloc_cpu.cpp:117] . DefaultCPUAllocator: can't allocate memory: you tried "
                        "to allocate 429496729600 bytes. Error code 12 (Cannot allocate memory)")


# ------------------------------------------------------------------------------------------------
# The table
# ------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Case:
    id: str
    what: str                      #: what the user did, for the docs
    argv: list                     #: the command line after the program name
    message: str | None            #: regex the one stderr line must match after ``PROG: error: ``; None: no line
    setup: Callable | None = None
    status: int = 2
    prog: str = "vaegap"           #: or an experiment: ``cremer_gaps``, ``tutorial_mse``
    changes: tuple = ()            #: globs of saved files that may change (progress saved on purpose)
    creates: tuple = ()            #: globs of files and folders that may appear
    pipe: bool = False             #: run as a process whose stdout reader has gone (``| head``)

    @property
    def command(self) -> str:
        program = "vaegap" if self.prog == "vaegap" else f"python -m experiments.{self.prog}"
        return f"{program} {shlex.join(self.argv)}".strip() + (" | head -0" if self.pipe else "")


RUN = ["train", "--run-dir", "run"]
CASES = [
    # --- options of vaegap train
    Case("train-epochs-zero", "zero epochs", ["train", "--run-dir", "new", "--epochs", "0"],
         r"epochs=0 is not allowed: expected an integer >= 1"),
    Case("train-lr-inf", "an infinite learning rate", ["train", "--run-dir", "new", "--lr", "inf"],
         r"lr=inf is not allowed: expected a finite positive number"),
    Case("train-lr-nan", "a learning rate that is not a number", ["train", "--run-dir", "new", "--lr", "nan"],
         r"lr=nan is not allowed: expected a finite positive number"),
    Case("train-lr-negative", "a negative learning rate", ["train", "--run-dir", "new", "--lr", "-0.1"],
         r"lr=-0.1 is not allowed"),
    Case("train-batch-negative", "a negative batch size", ["train", "--run-dir", "new", "--batch-size", "-5"],
         r"batch_size=-5 is not allowed: expected an integer >= 1"),
    Case("train-not-a-number", "a word where a number belongs", ["train", "--run-dir", "new", "--epochs", "ten"],
         r"argument --epochs: invalid int value: 'ten' \(see vaegap train --help\)"),
    Case("train-misspelled-option", "a misspelled option", ["train", "--run-dir", "new", "--hiden", "8"],
         r"unrecognized arguments: --hiden 8 \(see vaegap train --help\)"),
    Case("train-unknown-dataset", "an unknown data set", ["train", "--run-dir", "new", "--dataset", "cifar100"],
         r"unknown dataset 'cifar100'; allowed datasets are binarized_mnist, .*cifar10"),
    Case("train-unknown-model", "an unknown likelihood", ["train", "--run-dir", "new", "--model", "poisson"],
         r"model='poisson' is not allowed: choose one of \['bernoulli', 'dlogistic', 'gaussian', 'mse', 'pixelcnn'\]"),
    Case("train-unknown-guide", "an unknown posterior family", ["train", "--run-dir", "new", "--guide", "nope"],
         r"unknown guide family 'nope'"),
    Case("train-guide-option-typo", "a misspelled guide option",
         ["train", "--run-dir", "new", "--guide-options", '{"widht": 3}'], r"\['widht'\].*allowed: \["),
    Case("train-rme-diversity-negative", "an RME mixture whose components would be pulled onto the current mixture",
         ["train", "--run-dir", "new", "--guide", "rme", "--guide-options", '{"diversity": -1}'],
         r"diversity=-1 is not allowed: expected a finite number >= 0"),
    Case("train-guide-options-not-json", "guide options that are not JSON",
         ["train", "--run-dir", "new", "--guide-options", "{hidden: 3}"], r"--guide-options must be a JSON object"),
    Case("train-unknown-arch", "an unknown network architecture", ["train", "--run-dir", "new", "--arch", "resnet"],
         r"arch='resnet' is not allowed: choose one of \['conv', 'conv_kim', 'mlp'\]"),
    Case("train-conv-kim-activation", "the paper's Table 6 networks with another activation than theirs",
         ["train", "--run-dir", "new", "--arch", "conv_kim", "--dataset", "digits_continuous", "--model", "gaussian"],
         r"arch='conv_kim' has the paper's activations .*: give activation='relu', not 'elu'"),
    Case("train-holdout-fraction-one", "a hold-out validation split that would leave nothing to train on",
         ["train", "--run-dir", "new", "--valid-split", "holdout", "--holdout-fraction", "1"],
         r"holdout_fraction=1.0 is not allowed: expected a number strictly between 0 and 1"),
    Case("train-vlae-bernoulli", "VLAE on a decoder that is not Gaussian",
         ["train", "--run-dir", "new", "--guide", "vlae"],
         r"the vlae family needs a Gaussian likelihood; the model's site 'x' is Bernoulli"),
    Case("train-conv-dense", "a densely connected convolutional decoder",
         ["train", "--run-dir", "new", "--arch", "conv", "--dense"],
         r"dense=True is an MLP option; it cannot be combined with arch='conv'"),
    Case("train-conv-not-images", "convolutions on data that are not images",
         ["train", "--run-dir", "new", "--arch", "conv", "--dataset", "8gaussians", "--model", "gaussian"],
         r"arch='conv' needs square images of at least 8×8 pixels with 1 or 3 channels; data of width 2 .*"
         r"use arch='mlp'"),
    Case("train-sigma2-zero", "a Gaussian decoder with zero variance", ["train", "--run-dir", "new", "--sigma2", "0"],
         r"sigma2=0.0 is not allowed: expected a finite positive variance"),
    Case("train-anneal-no-epochs", "annealing over zero epochs",
         ["train", "--run-dir", "new", "--anneal", "entropy"], r"anneal='entropy' needs anneal_epochs >= 1"),
    Case("train-threads-zero", "zero threads", ["train", "--run-dir", "new", "--threads", "0"],
         r"--threads=0 is not allowed: expected an integer >= 1"),
    Case("train-config-missing", "a --config file that does not exist",
         ["train", "--run-dir", "new", "--config", "missing.json"], r"--config 'missing.json': no such file"),
    Case("train-config-not-json", "a --config file that is not JSON",
         ["train", "--run-dir", "new", "--config", "cfg.json"], r"--config 'cfg.json' is not valid JSON",
         setup=write("cfg.json", "{")),
    Case("train-config-unknown-key", "a --config file with an unknown key",
         ["train", "--run-dir", "new", "--config", "cfg.json"], r"unknown TrainConfig keys \['bogus'\]",
         setup=write("cfg.json", '{"bogus": 1}')),
    Case("train-binary-model-continuous-data", "a Bernoulli model on continuous data",
         ["train", "--run-dir", "new", "--dataset", "digits_continuous"],
         r"dataset 'digits_continuous' does not suit model 'bernoulli': data: \d+ entries are not 0 or 1 \(first at "
         r"row \d+, column \d+, value .*\); a Bernoulli likelihood needs binary data"),
    # --- InfoVAE options of vaegap train
    Case("train-infovae-gpvae", "InfoVAE with a family that trains with its own objective (gpvae)",
         ["train", "--run-dir", "new", "--guide", "gpvae", "--objective", "infovae", "--alpha", "0", "--lambda", "1"],
         r"guide GPVAEEncoder trains with an objective of its own, not a mixture's stratified ELBO .*"
         r"objective='infovae' cannot "
         r"weight its terms"),
    Case("train-infovae-alpha-nan", "an InfoVAE alpha that is not a number",
         ["train", "--run-dir", "new", "--objective", "infovae", "--alpha", "nan", "--lambda", "1"],
         r"alpha=nan is not allowed: expected a finite number"),
    Case("train-infovae-lambda-inf", "an infinite InfoVAE lambda",
         ["train", "--run-dir", "new", "--objective", "infovae", "--alpha", "0", "--lambda", "inf"],
         r"lambda_=inf is not allowed: expected a finite number"),
    Case("train-infovae-unknown-divergence", "an unknown InfoVAE divergence",
         ["train", "--run-dir", "new", "--objective", "infovae", "--alpha", "1", "--lambda", "2", "--divergence", "js"],
         r"divergence='js' is not allowed: choose one of \['adversarial', 'kl', 'mmd', 'stein'\]"),
    Case("train-infovae-options-without-infovae", "InfoVAE options without --objective infovae",
         ["train", "--run-dir", "new", "--alpha", "1", "--lambda", "2"],
         r"alpha=1.0, lambda_=2.0 apply only to objective='infovae', not to objective='elbo': leave them out or pass "
         r"--objective infovae"),
    Case("train-infovae-missing-lambda", "--objective infovae without --lambda",
         ["train", "--run-dir", "new", "--objective", "infovae", "--alpha", "1"],
         r"objective='infovae' needs lambda_ \(--alpha A --lambda L; alpha=0, lambda_=1 is the ELBO\)"),
    Case("train-infovae-negative-weight", "a divergence weight alpha + lambda - 1 below 0",
         ["train", "--run-dir", "new", "--objective", "infovae", "--alpha", "0", "--lambda", "0.5"],
         r"alpha \+ lambda_ - 1 = -0.5 < 0 is not allowed with divergence='mmd': the divergence of q\(z\) from p\(z\) "
         r"would be maximized; expected lambda_ >= 1 - alpha = 1"),
    Case("train-infovae-mmd-option-for-stein", "an MMD option with another divergence",
         ["train", "--run-dir", "new", "--objective", "infovae", "--alpha", "1", "--lambda", "2", "--divergence",
          "stein", "--mmd-kernel", "imq"],
         r"mmd_kernel='imq' applies only to divergence='mmd', not to divergence='stein': leave it out"),
    Case("train-infovae-bad-scales", "MMD bandwidth multipliers that are not positive numbers",
         ["train", "--run-dir", "new", "--objective", "infovae", "--alpha", "1", "--lambda", "2", "--mmd-scales",
          "1,-2"], r"mmd_scales=1,-2 is not allowed: expected one or more positive finite bandwidth multipliers"),
    Case("train-infovae-disc-steps-zero", "zero critic steps",
         ["train", "--run-dir", "new", "--objective", "infovae", "--alpha", "1", "--lambda", "1", "--divergence",
          "adversarial", "--disc-steps", "0"], r"disc_steps=0 is not allowed: expected an integer >= 1"),
    Case("train-infovae-batch-of-one", "an MMD run whose last minibatch would hold one row",
         ["train", "--run-dir", "new", "--objective", "infovae", "--alpha", "1", "--lambda", "2", "--num-train", "201",
          *TINY], r"divergence='mmd' needs at least 2 datapoints in every minibatch, but 201 training rows in batches of "
         r"100 leave a last batch of 1: choose another batch_size or num_train"),
    # --- run folders
    Case("train-run-dir-is-file", "a run folder that is a file", ["train", "--run-dir", "afile", *TINY],
         r"the run folder 'afile' is a file, not a folder: choose another path"),
    Case("train-run-dir-under-file", "a run folder under a file", ["train", "--run-dir", "afile/run", *TINY],
         r"the run folder 'afile/run' sits under 'afile', which is a file, not a folder"),
    Case("train-existing-run", "training into a finished run without --resume", [*RUN, *TINY],
         r"run already holds a checkpoint: pass --resume \(resume=True\) to continue it, or choose another run folder"),
    Case("train-resume-nothing", "--resume where nothing was trained", ["train", "--run-dir", "empty", "--resume"],
         r"empty is not a training run: no checkpoint.pt there", setup=write("empty/note.txt", "")),
    Case("train-resume-other-options", "--resume with an option that differs from the run's",
         [*RUN, "--resume", "--quiet", "--hidden", "16", "--epochs", "3"],
         r"--hidden 16 differs from the run's hidden=8; only --epochs may change when resuming: leave the other "
         r"options out \(--resume reads the run's own config\)"),
    Case("train-resume-fewer-epochs", "--resume with fewer epochs than already trained",
         [*RUN, "--resume", "--quiet", "--epochs", "1"],
         r"--epochs 1 is fewer than the 2 epochs already trained in 'run'"),
    Case("train-locked", "a second training into a run folder in use", [*RUN, "--resume", "--quiet", "--epochs", "3"],
         r"run folder 'run' is in use by pid \d+ on \S+ \(vaegap train --run-dir, since .*\); wait for it to finish",
         setup=hold(lambda f: FolderLock(f / "run", "run folder"), "vaegap train --run-dir")),
    Case("train-read-only", "a read-only run folder (simulated: EACCES)",
         [*RUN, "--resume", "--quiet", "--epochs", "3"],
         r"cannot write to the run folder 'run': Permission denied", setup=read_only("run")),
    Case("train-disk-full", "the disk fills up while a checkpoint is written (simulated: ENOSPC)",
         [*RUN, "--resume", "--quiet", "--epochs", "3"],
         r"writing '.*/run/checkpoint.pt': no space left on the device \(the disk is full\); free some space, then run "
         r"the command again \(nothing was half-written: files saved before are intact\)",
         setup=disk_full(pyro_vaegap.training.loop, "atomic_torch_save")),
    Case("train-out-of-memory", "a model too large for memory (simulated: torch's allocation error)",
         [*RUN, "--resume", "--quiet", "--epochs", "3"],
         r"out of memory: lower --batch-size \(or --num-particles, --hidden\)",
         setup=fail_on_call(pyro_vaegap.training.loop, "training_step", oom)),
    Case("train-ctrl-c", "Ctrl-C in the middle of a training (simulated: KeyboardInterrupt in epoch 4)",
         [*RUN, "--resume", "--quiet", "--epochs", "4"],
         r'interrupted during epoch 4 of 4; run/checkpoint.pt holds epochs 1-3 \(nothing is lost\): resume with '
         r'"vaegap train --run-dir run --resume"',
         setup=fail_on_call(pyro_vaegap.training.loop, "training_step", KeyboardInterrupt, call=13),
         changes=("run/checkpoint.pt", "run/log.csv", "run/config.json")),
    Case("train-ctrl-c-first-epoch", "Ctrl-C before the first epoch is saved",
         ["train", "--run-dir", "new", *TINY],
         r"interrupted during epoch 1 of 2, before any epoch was saved: run the same command again to start afresh",
         setup=fail_on_call(pyro_vaegap.training.loop, "training_step", KeyboardInterrupt), creates=("new", "new/config.json")),
    Case("train-checkpoint-random", "a checkpoint overwritten with random bytes", [*RUN, "--resume", "--quiet"],
         r"run/checkpoint.pt is damaged \(UnpicklingError while reading it; truncated or overwritten\): restore it "
         r"from a backup, or delete the run folder 'run' and train again",
         setup=damage("run/checkpoint.pt", "random")),
    Case("train-checkpoint-truncated", "a truncated checkpoint", [*RUN, "--resume", "--quiet"],
         r"run/checkpoint.pt is damaged \(\w+ while reading it", setup=damage("run/checkpoint.pt", "truncated")),
    Case("train-checkpoint-empty", "an empty checkpoint", [*RUN, "--resume", "--quiet"],
         r"run/checkpoint.pt is empty \(damaged, .*\): restore it from a backup, or delete the run folder 'run'",
         setup=damage("run/checkpoint.pt", "empty")),
    # --- data
    Case("data-not-found", "binarized MNIST not where --data-dir says",
         ["train", "--run-dir", "new", "--dataset", "binarized_mnist", "--data-dir", "nodata"],
         r"binarized MNIST not found: looked for binarized_mnist.npz and binarized_mnist_train.amat in "
         r".*nodata \(does not exist\).* \(3\) pass --download"),
    Case("data-npz-truncated", "a truncated binarized_mnist.npz",
         ["train", "--run-dir", "new", "--dataset", "binarized_mnist", "--data-dir", "data"],
         r"data/binarized_mnist.npz is damaged or not an .npz archive \(truncated, overwritten or another format\); "
         r"replace it with a good copy", setup=both(fake_mnist(), damage("data/binarized_mnist.npz", "truncated"))),
    Case("data-npz-random", "a binarized_mnist.npz of random bytes",
         ["train", "--run-dir", "new", "--dataset", "binarized_mnist", "--data-dir", "data"],
         r"data/binarized_mnist.npz is damaged or not an .npz archive",
         setup=both(fake_mnist(), damage("data/binarized_mnist.npz", "random"))),
    Case("data-npz-missing-split", "a binarized_mnist.npz without a validation split",
         ["train", "--run-dir", "new", "--dataset", "binarized_mnist", "--data-dir", "data"],
         r"binarized_mnist.npz: no array 'valid'; the file has \['train'\], expected keys train, valid, test",
         setup=fake_mnist(train=np.zeros((5, 98), np.uint8))),
    Case("data-npz-wrong-shape", "a binarized_mnist.npz with rows of the wrong width",
         ["train", "--run-dir", "new", "--dataset", "binarized_mnist", "--data-dir", "data"],
         r"binarized_mnist.npz: array 'train' has shape \(3, 97\) and dtype uint8; expected uint8 of shape \(N, 98\)",
         setup=fake_mnist(train=np.zeros((3, 97), np.uint8))),
    Case("data-download-fails", "--download without a network (simulated)",
         ["train", "--run-dir", "new", "--dataset", "fashion_mnist", "--data-dir", "data", "--download"],
         r"downloading FashionMNIST with torchvision into .*data failed: .*Temporary failure in name resolution",
         setup=both(write("data/README", ""), failing_download)),
    # --- vaegap gaps
    Case("gaps-local-data-chunk-zero", "local optimization in pieces of zero datapoints",
         ["gaps", "--run", "run", "--local-data-chunk", "0"], r"local_data_chunk=0 is not allowed: expected an integer >= 1"),
    Case("gaps-no-run", "a run folder that does not exist", ["gaps", "--run", "nothing"],
         r"nothing is not a training run: no checkpoint.pt there \(train with vaegap train\)"),
    Case("gaps-run-is-file", "a run folder that is a file", ["gaps", "--run", "afile"],
         r"'afile' is a file, not a run folder"),
    Case("gaps-checkpoint-truncated", "a truncated checkpoint", ["gaps", "--run", "run"],
         r"run/checkpoint.pt is damaged \(\w+ while reading it; truncated or overwritten\)",
         setup=damage("run/checkpoint.pt", "truncated")),
    Case("gaps-unknown-family", "an unknown family", ["gaps", "--run", "run", "--families", "ffg,nope"],
         r"unknown guide family 'nope'"),
    Case("gaps-family-twice", "a family listed twice", ["gaps", "--run", "run", "--families", "ffg,ffg"],
         r"families='ffg,ffg' names ffg more than once: list each family once"),
    Case("gaps-family-option-unknown", "an unknown --family-options key",
         ["gaps", "--run", "run", "--family-options", '{"ffg": {"bogus": 1}}'],
         r"unknown option\(s\) \['bogus'\] for the local guide of family 'ffg'; allowed: \['init_scale'\]"),
    Case("gaps-family-options-not-object", "--family-options whose value is not an object",
         ["gaps", "--run", "run", "--family-options", '{"ffg": 3}'],
         r"family_options: the options of family 'ffg' must be a mapping \{option: value\}, got 3"),
    Case("gaps-family-options-other-family", "--family-options for a family not evaluated",
         ["gaps", "--run", "run", "--family-options", '{"flow": {}}'],
         r"family_options names 'flow', which is not in families \['ffg'\]"),
    Case("gaps-local-lr-inf", "an infinite local learning rate", ["gaps", "--run", "run", "--local-lr", "inf"],
         r"local_lr=inf is not allowed: expected a finite positive number"),
    Case("gaps-ais-chains-zero", "zero AIS chains", ["gaps", "--run", "run", "--ais-chains", "0"],
         r"ais_chains=0 is not allowed: expected an integer >= 1"),
    Case("gaps-too-many-points", "more points than the split has", ["gaps", "--run", "run", "--num-points", "301"],
         r"--num-points 301 is not allowed: expected 1..300 \(the test split has 300 rows\)"),
    Case("gaps-unknown-split", "an unknown split", ["gaps", "--run", "run", "--split", "dev"],
         r"argument --split: invalid choice: 'dev'"),
    Case("gaps-ais-estimate-without-ais", "log p̂ from AIS with AIS turned off",
         ["gaps", "--run", "run", "--log-px", "ais", "--no-ais"], r"log_px='ais' needs AIS"),
    Case("gaps-finished-report", "an --out that holds a finished report", ["gaps", "--run", "run", "--out", "done"],
         r"done.json already holds a finished report: pass --overwrite to replace it, or choose another --out"),
    Case("gaps-out-under-file", "an --out under a file", ["gaps", "--run", "run", "--out", "afile/rep"],
         r"the output folder 'afile' is a file, not a folder: choose another path"),
    Case("gaps-out-read-only", "a read-only output folder (simulated: EACCES)",
         ["gaps", "--run", "run", "--out", "out/rep"], r"cannot write to the output folder 'out': Permission denied",
         setup=both(write("out/README", ""), read_only("out"))),
    Case("gaps-locked", "a second evaluation into the same --out", ["gaps", "--run", "run", "--out", "rep", *GAPS],
         r"evaluation checkpoint folder 'rep.partial' is in use by pid \d+ on \S+ \(vaegap gaps --run, since .*\)",
         setup=hold(lambda f: FolderLock(f / "rep.partial", "evaluation checkpoint folder"), "vaegap gaps --run")),
    Case("gaps-other-partial", "rerunning an interrupted evaluation with other options",
         ["gaps", "--run", "run", "--out", "rep", *GAPS],
         r"the checkpoint folder 'rep.partial' holds a partial evaluation with a different .*config.*; rerun with the "
         r"same options and run to resume it, or delete the folder \(or choose another --out\) to start afresh",
         setup=write("rep.partial/manifest.json", json.dumps({"config": {}, "family": "ffg"}))),
    Case("gaps-partial-damaged", "a damaged evaluation checkpoint", ["gaps", "--run", "run", "--out", "rep", *GAPS],
         r"the checkpoint folder 'rep.partial' is damaged \(.*\); delete it to start the evaluation afresh",
         setup=write("rep.partial/manifest.json", "{")),
    Case("gaps-ctrl-c", "Ctrl-C during an evaluation (simulated: KeyboardInterrupt in the second piece)",
         ["gaps", "--run", "run", "--out", "rep", *GAPS, "--data-chunk", "1", "--workers", "1"],
         r"interrupted during \[1/4\] L\[q\] and IWAE; the finished parts are kept in 'rep.partial': rerun the same "
         r"command to resume", setup=fail_on_call(pyro_vaegap.gaps, "importance_sample", KeyboardInterrupt, call=2),
         creates=("rep.partial", "rep.partial/*")),
    Case("gaps-out-of-memory", "an evaluation too large for memory (simulated: torch.OutOfMemoryError)",
         ["gaps", "--run", "run", "--out", "rep", *GAPS],
         r"out of memory: lower --data-chunk, --sample-chunk, --ais-data-chunk or --ais-chains \(the finished parts "
         r"are kept: the command resumes\), then run the command again",
         setup=fail_on_call(pyro_vaegap.gaps, "importance_sample",
                            lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")),
         creates=("rep.partial", "rep.partial/*")),
    Case("gaps-disk-full", "the disk fills up while the report is written (simulated: ENOSPC)",
         ["gaps", "--run", "run", "--out", "rep", *GAPS],
         r"writing '.*/rep.json': no space left on the device \(the disk is full\); free some space, then run the "
         r"command again", setup=disk_full(pyro_vaegap.report.render, "atomic_write_json", only="rep.json"),
         creates=("rep.partial", "rep.partial/*")),
    Case("gaps-config-json-edited", "an edited config.json (the evaluation runs; exit status 0)",
         ["gaps", "--run", "run", "--out", "rep", *GAPS],
         r"run/config.json differs from the checkpoint in hidden \(16 there, 8 in the checkpoint\); the config saved "
         r"in checkpoint.pt is used \(config.json is only a readable copy of it\)",
         setup=edit_json("run/config.json", lambda d: d["config"].update(hidden=16)), status=0,
         creates=("rep.json", "rep.md")),
    Case("gaps-config-json-deleted", "a deleted config.json (the evaluation runs; exit status 0)",
         ["gaps", "--run", "run", "--out", "rep", *GAPS],
         r"run/config.json is missing; the config saved in checkpoint.pt is used",
         setup=lambda ctx: (ctx.folder / "run" / "config.json").unlink(), status=0, creates=("rep.json", "rep.md")),
    Case("gaps-config-json-invalid", "a config.json that is not JSON (the evaluation runs; exit status 0)",
         ["gaps", "--run", "run", "--out", "rep", *GAPS],
         r"run/config.json is not a valid copy of the run's config \(JSONDecodeError\); the config saved in "
         r"checkpoint.pt is used", setup=write("run/config.json", "{"), status=0, creates=("rep.json", "rep.md")),
    Case("gaps-relative-data-dir", "gaps from another folder, for a run trained with a relative --data-dir (works: "
         "the run stores the data folder as an absolute path)",
         ["gaps", "--run", "../mnist_run", "--out", "rep", *GAPS],
         None, setup=trained_elsewhere, status=0, creates=("elsewhere/rep.json", "elsewhere/rep.md")),
    # --- vaegap bdmc
    Case("bdmc-no-run", "a run folder that does not exist", ["bdmc", "--run", "nothing"],
         r"nothing is not a training run: no checkpoint.pt there"),
    Case("bdmc-zero-chains", "zero chains", ["bdmc", "--run", "run", "--ais-chains", "0"],
         r"--ais-chains=0 is not allowed: expected an integer >= 1"),
    Case("bdmc-existing-output", "an --out that holds a result", ["bdmc", "--run", "run", "--out", "b.json", *BDMC],
         r"b.json already holds a BDMC result: pass --overwrite to replace it, or choose another --out",
         setup=write("b.json", "{}")),
    Case("bdmc-locked", "a second bdmc into the same --out", ["bdmc", "--run", "run", "--out", "b.json", *BDMC],
         r"output 'b.json' is in use by pid \d+ on \S+ \(vaegap bdmc --run, since .*\)",
         setup=hold(lambda f: FileLock(f / "b.json"), "vaegap bdmc --run")),
    Case("bdmc-ctrl-c", "Ctrl-C during bdmc (simulated)", ["bdmc", "--run", "run", "--out", "b.json", *BDMC],
         r"interrupted before the command finished; nothing was half-written, and files saved before are intact: "
         r"run the command again to start it afresh", setup=fail_on_call(pyro_vaegap.ais, "bdmc", KeyboardInterrupt)),
    Case("bdmc-out-of-memory", "a bdmc too large for memory (simulated: MemoryError)",
         ["bdmc", "--run", "run", "--out", "b.json", *BDMC], r"out of memory: lower --num-points or --ais-chains",
         setup=fail_on_call(pyro_vaegap.ais, "bdmc", MemoryError)),
    # --- vaegap render, families, quickstart, no command
    Case("render-missing", "a report that does not exist", ["render", "nothing.json"],
         r"'nothing.json': no such file \(give a STEM.json written by vaegap gaps\)"),
    Case("render-not-a-report", "a JSON file that is not a report", ["render", "cfg.json"],
         r"'cfg.json' is not a gap report written by vaegap gaps \(KeyError: 'per_point'\)",
         setup=write("cfg.json", "{}")),
    Case("gaps-broken-pipe", "the reader of the output goes away (a real closed pipe): the evaluation still "
         "finishes and saves its report", ["gaps", "--run", "run", "--out", "rep", *GAPS], None, pipe=True,
         creates=("rep.json", "rep.md")),
    Case("render-broken-pipe", "the reader of the output goes away (a real closed pipe)", ["render", "done.json"],
         None, pipe=True),
    Case("families-broken-pipe", "the reader of the output goes away (a real closed pipe)", ["families"], None,
         pipe=True),
    Case("quickstart-out-is-file", "an output folder that is a file", ["quickstart", "--out", "afile"],
         r"the output folder 'afile' is a file, not a folder: choose another path"),
    Case("quickstart-zero-points", "zero test points", ["quickstart", "--num-points", "0", "--out", "qs"],
         r"--num-points 0 is not allowed: expected 1..300"),
    Case("no-command", "no command", [], r"the following arguments are required: command \(see vaegap --help\)"),
    Case("unknown-command", "a misspelled command", ["trian"], r"argument command: invalid choice: 'trian'"),
    # --- experiments
    Case("cremer-data-not-found", "an experiment without its data", ["--data-dir", "nodata", "--quick"],
         r"binarized MNIST not found: .*nodata \(does not exist\)", prog="cremer_gaps"),
    Case("cremer-bad-choice", "an experiment option outside its choices", ["--decoder-layers", "3"],
         r"argument --decoder-layers: invalid choice: 3 \(choose from 0, 2, 4\)", prog="cremer_gaps"),
    Case("cremer-bad-dataset", "a data set the Cremer experiments do not model", ["--dataset", "svhn"],
         r"argument --dataset: invalid choice: 'svhn' \(choose from 'binarized_mnist', 'fashion_mnist', 'cifar10'\)",
         prog="cremer_gaps"),
    Case("cremer-tables-unknown", "a table of the paper that is not a variant table", ["--tables", "2,4"],
         r"--tables '2,4' is not allowed: expected a comma-separated subset of 2, 3, 5, 6, 10", prog="cremer_tables"),
    Case("tutorial-negative", "a negative count in a tutorial experiment", ["--toy-epochs", "-1"],
         r"--toy-epochs=-1 is not allowed: it must be > 0", prog="tutorial_mse"),
]


# ------------------------------------------------------------------------------------------------
# Running a case
# ------------------------------------------------------------------------------------------------


def _entry(prog):
    if prog == "vaegap":
        return cli.main
    if prog == "cremer_gaps":
        from pyro_vaegap.experiments import cremer_gaps
        return cremer_gaps.main
    from pyro_vaegap.harness import run_main
    module = __import__(f"pyro_vaegap.experiments.{prog}", fromlist=["main"])
    return lambda argv: run_main(module.main, argv) or 0


def _is_lock(rel: str) -> bool:
    name = rel.rsplit("/", 1)[-1]
    return name == ".lock" or (name.startswith(".") and name.endswith(".lock"))


def snapshot(folder: Path) -> dict:
    """``{relative path: content hash, or "dir"}`` of everything under ``folder`` except lock files
    (which record their holder and are rewritten by design) and other programs' caches in the case's HOME
    (ArviZ, matplotlib; this package's own, ``~/.cache/pyro_vaegap``, is kept)."""
    out = {}
    for p in sorted(folder.rglob("*")):
        rel = p.relative_to(folder).as_posix()
        if not _is_lock(rel) and not (rel.startswith("home/.") and not rel.startswith("home/.cache/pyro_vaegap")):
            out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@dataclasses.dataclass
class Result:
    status: int
    stderr: str
    before: dict
    after: dict
    folder: Path


def run_case(case: Case, folder: Path) -> Result:
    """Set up ``folder`` from the template, apply the case's setup, run its command, and snapshot."""
    shutil.copytree(template() / "run", folder / "run")
    for name in ("done.json", "done.md"):
        shutil.copy(template() / name, folder / name)
    (folder / "afile").write_text("a plain file\n")
    (folder / "home").mkdir()
    with pytest.MonkeyPatch.context() as mp, contextlib.ExitStack() as stack:
        mp.chdir(folder)
        mp.setenv("HOME", str(folder / "home"))  # an empty ~/.cache/pyro_vaegap
        mp.delenv(data.DATA_ENV, raising=False)
        mp.setenv("COLUMNS", "100")
        if case.setup:
            with contextlib.redirect_stdout(io.StringIO()):
                case.setup(Ctx(folder, mp, stack))
        before = snapshot(folder)
        if case.pipe:
            # ArviZ (imported by the PSIS diagnostic) prints a multi-line FutureWarning once a day per HOME:
            # not this package's output, silenced here
            env = {**os.environ, "PYTHONWARNINGS": "ignore::FutureWarning"}
            proc = subprocess.Popen([sys.executable, "-m", "pyro_vaegap.cli", *case.argv], cwd=os.getcwd(),
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
            proc.stdout.close()  # the reader is gone before the command writes anything
            err, status = proc.stderr.read().decode(), proc.wait()
            proc.stderr.close()
        else:
            err_buf = io.StringIO()
            with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err_buf):
                try:
                    status = _entry(case.prog)(list(case.argv))
                except SystemExit as e:
                    status = e.code
                except KeyboardInterrupt:  # must never escape the command (it would stop pytest)
                    raise AssertionError(f"{case.id}: KeyboardInterrupt escaped the command") from None
            err = err_buf.getvalue()
    return Result(status, err, before, snapshot(folder), folder)


def check(case: Case, r: Result) -> None:
    """The exit status, exactly one stderr line of the expected form, nothing lost, nothing left behind."""
    lines = r.stderr.splitlines()
    assert r.status == case.status, f"{case.id}: exit status {r.status}, stderr:\n{r.stderr}"
    if case.message is None:
        assert lines == [], f"{case.id}: expected no message, got:\n{r.stderr}"
    else:
        assert len(lines) == 1, f"{case.id}: expected one line on stderr, got {len(lines)}:\n{r.stderr}"
        kind = "error" if case.status else "warning"
        assert lines[0].startswith(f"{case.prog}: {kind}: "), lines[0]
        assert re.search(case.message, lines[0]), f"{case.id}: {case.message!r} not found in\n{lines[0]}"
    allowed = lambda rel, globs: any(fnmatch.fnmatch(rel, g) for g in globs)  # noqa: E731
    for rel, digest in r.before.items():
        assert r.after.get(rel) == digest or allowed(rel, case.changes), f"{case.id}: {rel} was changed or removed"
    for rel in set(r.after) - set(r.before):
        assert not re.search(r"\.tmp", rel), f"{case.id}: temporary file {rel} left behind"
        assert allowed(rel, case.creates), f"{case.id}: unexpected new file {rel}"


RESULTS: dict[str, str] = {}  #: case id -> the stderr line as the docs show it


def normalize(text: str, folder: Path) -> str:
    """The message as the docs show it: the case's temporary folder as ``~/project`` (and its ``home``
    as ``~``), the lock holder's pid, host and start time as placeholders."""
    for real in {str(folder.resolve()), str(folder)}:
        text = text.replace(real + "/home", "~").replace(real, "~/project")
    text = re.sub(r"pid \d+ on \S+ ", "pid 4242 on myhost ", text)
    return re.sub(r"since \d{4}-\d\d-\d\d \d\d:\d\d:\d\d", "since 2025-01-01 12:00:00", text)


def run_and_check(case: Case, folder: Path) -> str:
    r = run_case(case, folder)
    check(case, r)
    RESULTS[case.id] = normalize(r.stderr.strip(), folder)
    return RESULTS[case.id]


def test_case_ids_are_unique_and_many():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(CASES) >= 40


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_case(case, tmp_path):
    run_and_check(case, tmp_path)


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_real_second_training_and_real_ctrl_c(tmp_path, monkeypatch, capsys, signame):
    """Real processes, no simulation: a training runs in a subprocess; a second training into its folder
    is refused naming that process; SIGINT (Ctrl-C) or SIGTERM (``kill``, a scheduler's time limit) then
    stops it with one line naming the saved epochs, and the run resumes from them."""
    import signal
    import time

    monkeypatch.chdir(tmp_path)
    # a shell starts background jobs with SIGINT ignored, and Python keeps an ignored SIGINT ignored: give
    # the child the default disposition, as a terminal's foreground process has
    proc = subprocess.Popen([sys.executable, "-m", "pyro_vaegap.cli", "train", "--run-dir", "run", *TINY[:-3],
                             "--epochs", "1000", "--quiet"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 300
        while not (tmp_path / "run" / "checkpoint.pt").exists():
            assert proc.poll() is None, f"the training ended early: {proc.stderr.read()}"
            assert time.time() < deadline, "no checkpoint within 5 minutes"
            time.sleep(0.1)
        assert cli.main(["train", "--run-dir", "run", "--resume", "--quiet"]) == 2
        err = capsys.readouterr().err
        assert f"run folder 'run' is in use by pid {proc.pid} on " in err and err.count("\n") == 1
        proc.send_signal(getattr(signal, signame))
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 2, err
    m = re.fullmatch(r'vaegap: error: interrupted during epoch (\d+) of 1000; run/checkpoint.pt holds epochs 1-(\d+) '
                     r'\(nothing is lost\): resume with "vaegap train --run-dir run --resume"\n', err)
    # the signal lands inside an epoch (saved: the one before) or, rarely, between the checkpoint of an
    # epoch and the next one (saved: that epoch); either way the message names what the file holds
    assert m and int(m.group(1)) - int(m.group(2)) in (0, 1), err
    saved = int(m.group(2))
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["epoch"] == saved
    assert not [p for p in (tmp_path / "run").iterdir() if ".tmp" in p.name]
    assert cli.main(["train", "--run-dir", "run", "--resume", "--epochs", str(saved + 1), "--quiet"]) == 0
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["epoch"] == saved + 1


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_signal_right_after_the_checkpoint_is_renamed(tmp_path, monkeypatch, capsys, signame):
    """The narrowest window, hit on purpose: the signal arrives the instant epoch 2's checkpoint has replaced
    epoch 1's. The message must name the epochs the file holds (2), not the last save it had recorded (1)."""
    import signal

    monkeypatch.chdir(tmp_path)
    real_replace = os.replace

    def replace_then_signal(src, dst):
        real_replace(src, dst)
        if Path(dst).name == "checkpoint.pt" and torch.load(dst, weights_only=False)["epoch"] == 2:
            signal.raise_signal(getattr(signal, signame))

    monkeypatch.setattr(os, "replace", replace_then_signal)
    # Ctrl-C as a terminal's foreground process gets it: a test run started in the background (nohup, a CI
    # runner) may have SIGINT ignored, and an ignored signal stays ignored by design
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        status = cli.main(["train", "--run-dir", "run", *TINY[:-3], "--epochs", "4", "--quiet"])
    finally:
        signal.signal(signal.SIGINT, previous)
    err = capsys.readouterr().err
    assert status == 2 and err.endswith("run/checkpoint.pt holds epochs 1-2 (nothing is lost): resume with "
                                        '"vaegap train --run-dir run --resume"\n'), err
    assert torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["epoch"] == 2


# ------------------------------------------------------------------------------------------------
# The docs table
# ------------------------------------------------------------------------------------------------


def render_table() -> str:
    """The table of ``docs/errors.rst`` (between its markers), from :data:`RESULTS`."""
    lines = [BEGIN, "", f".. Generated with Python {sys.version_info[0]}.{sys.version_info[1]}; "
             f"{len(CASES)} cases.", "", ".. list-table::", "   :header-rows: 1", "   :widths: 4 36 60", "",
             "   * - #", "     - What the user did (the command)", "     - What they get on stderr"]
    for i, case in enumerate(CASES, 1):
        message = RESULTS[case.id]
        assert "`" not in message and "`" not in case.command, case.id
        shown = f"``{message}``" if message else "(nothing)"
        if case.status != 2:
            shown += f" (exit status {case.status})"
        elif not message:
            shown += " (exit status 2)"
        lines += [f"   * - {i}", f"     - {case.what}", "", f"       ``{case.command}``", f"     - {shown}"]
    return "\n".join(lines + ["", END])


def _current_docs_table() -> str:
    text = DOCS.read_text()
    return text[text.index(BEGIN):text.index(END) + len(END)]


def _run_missing_cases():
    for case in CASES:
        if case.id not in RESULTS:
            with tempfile.TemporaryDirectory() as tmp:
                run_and_check(case, Path(tmp))


def test_docs_table_is_current():
    """docs/errors.rst shows exactly the messages the cases produce (regenerate it with
    ``python tests/test_bad_inputs.py --write-docs``). Messages of argparse and the OS differ a little
    between Python versions, so the comparison runs on the version the table was generated with."""
    version = re.search(r"Generated with Python (\d+\.\d+)", _current_docs_table())
    if version and version.group(1) != f"{sys.version_info[0]}.{sys.version_info[1]}":
        pytest.skip(f"docs/errors.rst was generated with Python {version.group(1)}")
    _run_missing_cases()
    assert _current_docs_table() == render_table(), ("docs/errors.rst is stale: regenerate it with "
                                                     "python tests/test_bad_inputs.py --write-docs")


def write_docs() -> None:
    _run_missing_cases()
    text = DOCS.read_text()
    DOCS.write_text(text.replace(_current_docs_table(), render_table()))
    print(f"wrote {DOCS} ({len(CASES)} cases)")


if __name__ == "__main__":
    if sys.argv[1:] != ["--write-docs"]:
        sys.exit("usage: python tests/test_bad_inputs.py --write-docs")
    write_docs()
