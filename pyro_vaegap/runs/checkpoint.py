r"""A run's checkpoint (``checkpoint.pt``): reading it with a one-line error when damaged, and the RNG states
it keeps so that a resumed run is the run it would have been."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import torch

from ..utils import ConfigError

CHECKPOINT = "checkpoint.pt"


_CHECKPOINT_KEYS = ("model", "guide", "optimizer", "epoch", "rng", "log", "config", "data_dim")


def read_checkpoint(run_dir) -> dict:
    """The checkpoint of the run folder ``run_dir``; :class:`ConfigError` (one line naming the file and
    what to do) when it is missing, empty, truncated, damaged or not a training checkpoint."""
    run_dir = Path(run_dir)
    path = run_dir / CHECKPOINT
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{str(run_dir)!r} is a file, not a run folder (a folder written by vaegap train)")
    if not path.is_file():
        raise ConfigError(f"{run_dir} is not a training run: no {CHECKPOINT} there (train with vaegap train)")
    fix = f"restore it from a backup, or delete the run folder {str(run_dir)!r} and train again"
    if path.stat().st_size == 0:
        raise ConfigError(f"{path} is empty (damaged, e.g. by a full disk or a copy that stopped): {fix}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)  # a GPU run's checkpoint loads anywhere
    except PermissionError:
        raise  # not damaged but unreadable: reported as such
    except Exception as e:  # noqa: BLE001 - torch.load of a damaged file raises any of several types
        raise ConfigError(f"{path} is damaged ({type(e).__name__} while reading it; truncated or overwritten): "
                          f"{fix}") from e
    missing = [k for k in _CHECKPOINT_KEYS if not isinstance(ckpt, dict) or k not in ckpt]
    if missing:
        raise ConfigError(f"{path} is not a training checkpoint of this package (it lacks {', '.join(missing)}): {fix}")
    return ckpt


def _rng_state(shuffle: torch.Generator, device: torch.device) -> dict:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
             "shuffle": shuffle.get_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict, shuffle: torch.Generator, device: torch.device) -> None:
    """Restore the RNG states of a checkpoint. A run resumed on another kind of device than it was saved on
    continues with that device's generator (same seed-determined micro-batch draws, other stream otherwise)."""
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    shuffle.set_state(state["shuffle"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)
