"""Training runs of an experiment: a finished run folder is reused, an interrupted one resumes.

:func:`train_run` is the one way an experiment gets a trained model: it calls
:func:`pyro_vaegap.training.train` (which resumes a checkpoint of the same config, so an interrupted
experiment continues where it stopped) or, for a run folder that already holds the finished training of
the same config, loads it (:func:`pyro_vaegap.runs.load_run`) without taking the folder's lock — so a
run can be evaluated while it is read elsewhere.
"""
from __future__ import annotations

import time
from pathlib import Path

from ..runs import CHECKPOINT, TrainConfig, load_run, read_checkpoint
from ..training import train


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


def finished_run(cfg: TrainConfig, run_dir) -> bool:
    """Whether ``run_dir`` holds the finished training of ``cfg``: a checkpoint of ``cfg.epochs`` epochs whose config
    equals ``cfg`` in every field but ``data_dir`` (where the data were read from is not part of what was trained;
    both runs name the same data set)."""
    if not (Path(run_dir) / CHECKPOINT).is_file():
        return False
    ckpt = read_checkpoint(run_dir)
    saved = TrainConfig.from_dict(ckpt["config"]).to_dict()
    return ckpt["epoch"] == cfg.epochs and {**saved, "data_dir": None} == {**cfg.to_dict(), "data_dir": None}


def train_run(cfg: TrainConfig, run_dir: Path, progress: Progress, device=None, download: bool = False):
    """Train ``cfg`` in ``run_dir`` on ``device``, or reuse/resume the run already there (same config).

    :returns: ``(model, guide, seconds)``, in eval mode; ``seconds`` is the time this call took (near 0 when the
        run was reused: the training's own time is in the run's ``log.csv``). A run with ``cfg.keep_best`` gives
        the weights of its best validation epoch, any other its last epoch's.
    """
    t = time.time()
    run_dir = Path(run_dir)
    if finished_run(cfg, run_dir):
        progress(f"reusing the finished run {run_dir} ({cfg.model} / {cfg.objective}, {cfg.epochs} epochs)")
        model, guide, _ = load_run(run_dir, device, best=cfg.keep_best)
        return model, guide, time.time() - t
    resume = (run_dir / CHECKPOINT).exists()
    progress(f"{'resuming' if resume else 'training'} {cfg.model} / {cfg.objective} (k={cfg.num_particles}) "
             f"on {cfg.dataset} for {cfg.epochs} epochs -> {run_dir}")
    res = train(cfg, run_dir, resume=resume, progress=False, download=download, resume_hint="the same command",
                device=device)
    if cfg.keep_best:
        model, guide, _ = load_run(run_dir, device, best=True)
        return model, guide, time.time() - t
    return res.model.eval(), res.guide.eval(), time.time() - t


def training_cost(run_dir) -> dict:
    """Median and total seconds per epoch (``log.csv``; each epoch includes its validation-ELBO pass), the
    last epoch's training objective and validation ELBO, and the epoch of the best validation ELBO (the first,
    as ``keep_best`` keeps it) with that value and the gain of the best over the first 90% of the epochs' best
    (near 0: the validation curve has flattened)."""
    import csv

    import numpy as np

    with open(Path(run_dir) / "log.csv") as fh:
        rows = list(csv.DictReader(fh))
    sec = [float(r["seconds"]) for r in rows]
    valid = np.asarray([float(r["valid_elbo"]) for r in rows])
    head = valid[:max(1, int(0.9 * len(valid)))]
    return {"epochs": len(rows), "median_epoch_seconds": float(np.median(sec)), "total_seconds": float(sum(sec)),
            "train_objective": float(rows[-1]["train_objective"]), "valid_elbo": float(rows[-1]["valid_elbo"]),
            "best_epoch": int(np.argmax(valid)) + 1, "best_valid_elbo": float(valid.max()),
            "best_gain_last_10pct": float(valid.max() - head.max())}
