r"""The readable files of a run folder: ``config.json`` (a copy of the checkpoint's config, checked against it)
and ``log.csv`` (one row per epoch)."""
from __future__ import annotations

import csv
import io
import json
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..utils import ConfigWarning, atomic_write_json, provenance
from .checkpoint import CHECKPOINT

if TYPE_CHECKING:
    from .config import TrainConfig

LOG_FIELDS = ("epoch", "train_objective", "valid_elbo", "lr", "anneal_factor", "seconds")


def _log_csv(rows) -> str:
    buf = io.StringIO()
    extra = [k for k in (rows[0] if rows else {}) if k not in LOG_FIELDS]  # e.g. an InfoVAE's divergence
    w = csv.DictWriter(buf, fieldnames=LOG_FIELDS + tuple(extra))
    w.writeheader()
    w.writerows(rows)
    return buf.getvalue()


def _config_json_problem(run_dir, config: dict) -> str | None:
    """What is wrong with ``run_dir/config.json`` as a copy of ``config``, or None."""
    path = Path(run_dir) / "config.json"
    try:
        copy = json.loads(path.read_text())["config"]
        copy.items()
    except FileNotFoundError:
        return "is missing"
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return f"is not a valid copy of the run's config ({type(e).__name__})"
    config = json.loads(json.dumps(config))
    differ = sorted(k for k in set(config) | set(copy) if k not in copy or k not in config or copy[k] != config[k])
    if not differ:
        return None
    return "differs from the checkpoint in " + ", ".join(
        f"{k} ({copy.get(k, '(missing)')!r} there, {config.get(k, '(missing)')!r} in the checkpoint)" for k in differ)


def check_config_json(run_dir, config: dict) -> bool:
    """Whether ``run_dir/config.json`` holds ``config`` (the checkpoint's); if not, a one-line
    :class:`~pyro_vaegap.utils.ConfigWarning` names the file and says that the checkpoint's config is used.

    ``config.json`` is only a readable copy: an edit there changes nothing, so it must not pass in silence."""
    problem = _config_json_problem(run_dir, config)
    if problem:
        warnings.warn(f"{Path(run_dir) / 'config.json'} {problem}; the config saved in {CHECKPOINT} is used "
                      "(config.json is only a readable copy of it)", ConfigWarning, stacklevel=3)
    return problem is None


def _write_config_json(run_dir: Path, cfg: TrainConfig) -> None:
    """``config.json``: the readable copy of ``cfg``, with the seed and the provenance it was first written with."""
    path = run_dir / "config.json"
    try:
        keep = json.loads(path.read_text())
        keep = keep if isinstance(keep, dict) else {}
    except (OSError, ValueError):
        keep = {}
    extra = {k: v for k, v in keep.items() if k not in ("config", "seed")} or provenance()
    atomic_write_json(path, {"config": cfg.to_dict(), "seed": cfg.seed, **extra})
