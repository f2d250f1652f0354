"""Small shared utilities: seeding, atomic writes, provenance and clear configuration errors."""
from __future__ import annotations

import json
import os
import platform
import random
import sys
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


class ConfigError(ValueError):
    """A bad option or configuration value; the message names the value and what is allowed."""


def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as an int or raise :class:`ConfigError` naming it and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ConfigError(f"{name}={value!r} is not allowed: expected an integer >= {minimum}")
    return int(value)


def check_choice(name: str, value, allowed) -> Any:
    """Return ``value`` if it is one of ``allowed`` or raise :class:`ConfigError` listing them."""
    if value not in allowed:
        raise ConfigError(f"{name}={value!r} is not allowed: choose one of {sorted(allowed)}")
    return value


def check_finite(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Stop with a clear message when ``tensor`` holds NaN or inf instead of letting it propagate."""
    bad = ~torch.isfinite(tensor)
    if bad.any():
        raise FloatingPointError(
            f"{name} has {int(bad.sum())} non-finite entries (first at flat index "
            f"{int(bad.flatten().nonzero()[0])}); refusing to continue with NaN/inf"
        )
    return tensor


def set_seed(seed: int) -> None:
    """Seed Python, NumPy, torch and Pyro so that a run is fixed by ``seed``."""
    import pyro

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    pyro.set_rng_seed(seed)


def package_versions() -> dict[str, str]:
    """Versions of Python and of the packages a result depends on, saved beside every result."""
    out = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in ("pyro_vaegap", "pyro-ppl", "torch", "torchvision", "numpy", "arviz"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def git_state(path: str | os.PathLike | None = None) -> dict:
    """The git commit of the checkout holding this package (or ``path``) and whether its tracked
    files differ from that commit; ``None`` for both outside a git checkout (an installed wheel)."""
    import subprocess

    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        def git(*args):
            return subprocess.run(["git", "-C", str(where), *args], capture_output=True, text=True,
                                  check=True, timeout=30).stdout.strip()

        return {"commit": git("rev-parse", "HEAD"),
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def provenance() -> dict:
    """What every saved result records beside its config and seed: ``versions`` (Python, platform,
    packages) and ``git`` (commit and dirty flag of the code that produced it)."""
    return {"versions": package_versions(), "git": git_state()}


def atomic_write(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Create ``path`` through ``write(tmp)`` so that readers see the old file or the whole new one.

    ``write`` writes a temporary file in the same directory (its name keeps ``path``'s suffix, so
    format-sniffing writers such as ``savefig`` work), which is then ``os.replace``-d over ``path``
    (atomic on POSIX). On any error the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=f".tmp{path.suffix}")
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600 files; results should be readable like any other
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """:func:`atomic_write` of ``text``, flushed to disk before the rename."""
    def write(tmp):
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    return atomic_write(path, write)


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    """:func:`atomic_write_text` of ``obj`` as indented JSON (NaN is refused, not written)."""
    return atomic_write_text(path, json.dumps(obj, indent=2, allow_nan=False, default=_json_default) + "\n")


def atomic_torch_save(path: str | os.PathLike, obj: Any) -> Path:
    """``torch.save`` through :func:`atomic_write`: a checkpoint is never half written."""
    return atomic_write(path, lambda tmp: torch.save(obj, tmp))


def _json_default(obj):
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, (np.ndarray, torch.Tensor)):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")
