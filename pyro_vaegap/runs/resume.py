r"""The rules of resuming a run: only ``epochs`` may change, a checkpoint is never overwritten, and an
interruption says what the checkpoint holds and how to resume."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from .config import TrainConfig
from ..utils import ConfigError
from .checkpoint import CHECKPOINT, read_checkpoint

def _flag(name: str, value) -> str:
    if isinstance(value, bool):
        return f"--{'' if value else 'no-'}{name.rstrip('_').replace('_', '-')}"
    shown = json.dumps(value) if isinstance(value, dict) else ",".join(map(str, value)) if isinstance(value, tuple) \
        else value
    return f"--{name.rstrip('_').replace('_', '-')} {shown}"


def resume_config(run_dir, given: dict | None = None) -> TrainConfig:
    """The config of resuming the run in ``run_dir``: the checkpoint's own, with ``epochs`` from ``given``
    (options the user passed, field -> value). Any other given option that differs from the run's is an
    error naming it: a resumed run cannot change what it is."""
    ckpt = read_checkpoint(run_dir)
    saved = TrainConfig.from_dict(ckpt["config"])
    given = dict(given or {})
    try:
        wanted = TrainConfig.from_dict({**saved.to_dict(), **given})  # normalizes and validates the values
    except ConfigError as e:
        raise ConfigError(f"{e} (resuming {run_dir})") from None
    differ = [k for k in given if k != "epochs" and getattr(wanted, k) != getattr(saved, k)]
    if differ:
        verb = "differs" if len(differ) == 1 else "differ"
        raise ConfigError(f"{', '.join(_flag(k, given[k]) for k in differ)} {verb} from the run's "
                          f"{', '.join(f'{k}={getattr(saved, k)!r}' for k in differ)}; only --epochs may change when "
                          "resuming: leave the other options out (--resume reads the run's own config)")
    if wanted.epochs < ckpt["epoch"]:
        raise ConfigError(f"--epochs {wanted.epochs} is fewer than the {ckpt['epoch']} epochs already trained in "
                          f"{str(run_dir)!r}: give at least {ckpt['epoch']}, or leave --epochs out")
    return dataclasses.replace(saved, epochs=wanted.epochs)


def _check_start(run_dir: Path, resume: bool) -> None:
    ckpt_path = run_dir / CHECKPOINT
    if ckpt_path.exists() and not resume:
        raise ConfigError(f"{run_dir} already holds a checkpoint: pass --resume (resume=True) to continue it, or "
                          "choose another run folder")
    if resume and not ckpt_path.exists():
        raise ConfigError(f"cannot resume: no {CHECKPOINT} in {run_dir}")


def _interrupted(run_dir: Path, cfg: TrainConfig, epoch, saved_epoch, resume: bool, resume_hint: str) -> str:
    where = "before training started" if epoch is None else f"during epoch {epoch + 1} of {cfg.epochs}"
    if saved_epoch:
        return (f"interrupted {where}; {run_dir / CHECKPOINT} holds epochs 1-{saved_epoch} (nothing is lost): "
                f"resume with {resume_hint}")
    if resume:
        return f"interrupted {where}; {run_dir / CHECKPOINT} is unchanged: resume with {resume_hint}"
    return f"interrupted {where}, before any epoch was saved: run the same command again to start afresh"
