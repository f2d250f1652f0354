"""Small shared utilities: seeding, atomic writes, provenance and clear configuration errors."""
from __future__ import annotations

import hashlib
import json
import os
import platform
import random
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch


class ConfigError(ValueError):
    """A bad option or configuration value; the message names the value and what is allowed."""


class ConfigWarning(UserWarning):
    """Something the user should know that does not stop the command (e.g. a run's ``config.json``
    disagrees with its checkpoint); :func:`pyro_vaegap.harness.run_command` prints it as one line."""


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


THREADS_ENV = "PYRO_VAEGAP_THREADS"


def default_threads() -> int:
    """Torch CPU threads when none are asked for: ``$PYRO_VAEGAP_THREADS``, else 1.

    Torch's own default (one thread per core) oversubscribes a machine shared with other jobs: on the
    2-core development machine one thread was faster than two in every back-to-back comparison while
    another job ran (``docs/benchmarks.md``). Ask for more with ``--threads`` on a dedicated machine.
    """
    value = os.environ.get(THREADS_ENV, "1")
    try:
        return check_positive_int(THREADS_ENV, int(value))
    except ValueError:
        raise ConfigError(f"{THREADS_ENV}={value!r} is not allowed: expected an integer >= 1") from None


def set_threads(threads: int | None) -> int:
    """``torch.set_num_threads`` with ``threads`` (``None``: :func:`default_threads`); returns it."""
    n = default_threads() if threads is None else check_positive_int("--threads", threads)
    torch.set_num_threads(n)
    return n


def resolve_device(name: str | torch.device | None) -> torch.device:
    """The ``torch.device`` called ``name`` (``cpu``, ``cuda``, ``cuda:N``; ``None``: ``cpu``), checked
    to exist now, so that a missing GPU stops a run before any work with :class:`ConfigError`
    instead of failing deep inside it, and never silently falls back to the CPU."""
    if name is None:
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as error:
        raise ConfigError(f"--device {name!r} is not a device: use cpu, cuda or cuda:N") from error
    if device.type == "cpu":
        return device
    if device.type != "cuda":
        raise ConfigError(f"--device {name!r} is not supported: use cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise ConfigError(f"--device {name!r} asks for CUDA, but torch finds no CUDA device on this machine "
                          f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); use --device cpu")
    count = torch.cuda.device_count()
    if device.index is not None and device.index >= count:
        raise ConfigError(f"--device {name!r}: this machine has {count} CUDA device(s), cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", torch.cuda.current_device() if device.index is None else device.index)


def module_device(module: torch.nn.Module) -> torch.device:
    """The device of ``module``'s first parameter or buffer (cpu for a module with neither)."""
    for t in (*module.parameters(), *module.buffers()):
        return t.device
    return torch.device("cpu")


def progress_bar(total: int, desc: str, enabled: bool = True, unit: str = "it"):
    """A tqdm bar on stderr that refreshes at most every 0.5 s on a terminal and every 30 s otherwise
    (a log file gets a periodic line, not thousands of carriage-return updates)."""
    from tqdm.auto import tqdm

    interactive = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, disable=not enabled, leave=False, unit=unit, dynamic_ncols=True,
                mininterval=0.5 if interactive else 30.0, maxinterval=30.0 if interactive else 600.0)


def stable_seed(*parts) -> int:
    """A 63-bit seed that depends only on ``parts`` (e.g. ``(seed, "ais", chunk)``), the same in every
    process and Python session (unlike ``hash``): each piece of a resumable computation seeds itself."""
    digest = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


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
    files differ from that commit, anywhere in the repository (``guides/``, ``experiments/`` and
    ``benchmarks/`` are code too; results under ``docs/results`` aside, they are outputs); ``None`` for
    all three outside a git checkout (an installed wheel).

    ``diff`` is a short hash of those differences (``git diff HEAD``), ``None`` when clean: two dirty
    states of the same commit are told apart, so a resumable computation fingerprinted with this state
    (:func:`pyro_vaegap.report.compute.fingerprint`) never mixes pieces from different code. Untracked files are
    not looked at (a new module counts once it is added to git)."""
    import subprocess

    where = Path(path) if path is not None else Path(__file__).resolve().parent
    try:
        def git(*args, cwd=where):
            return subprocess.run(["git", "-C", str(cwd), *args], capture_output=True, text=True,
                                  check=True, timeout=30).stdout

        top = git("rev-parse", "--show-toplevel").strip()
        # pathspecs relative to the top of the repository, not to ``where``: the whole checkout counts
        spec = ("--", ".", ":(exclude)docs/results")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", *spec, cwd=top).strip())
        diff = (hashlib.sha256(git("diff", "HEAD", "--binary", *spec, cwd=top).encode()).hexdigest()[:16]
                if dirty else None)
        return {"commit": git("rev-parse", "HEAD").strip(), "dirty": dirty, "diff": diff}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None, "diff": None}


_PROVENANCE: dict | None = None


def provenance() -> dict:
    """What every saved result records beside its config and seed: ``versions`` (Python, platform,
    packages) and ``git`` (commit and dirty flag of the code that produced it).

    Read once per process and kept: commands call it when they start, so a long run records the code
    it started with, not whatever the checkout holds when it finishes."""
    global _PROVENANCE
    if _PROVENANCE is None:
        _PROVENANCE = {"versions": package_versions(), "git": git_state()}
    return {k: dict(v) for k, v in _PROVENANCE.items()}


def provenance_line() -> str:
    """:func:`provenance` in one line, for the first line of a benchmark's printed output."""
    pv = provenance()
    v, g = pv["versions"], pv["git"]
    dirty = " (dirty)" if g["dirty"] else ""
    return (f"# git {g['commit'] or 'none'}{dirty}; pyro_vaegap {v['pyro_vaegap']}, torch {v['torch']}, "
            f"pyro-ppl {v['pyro-ppl']}, python {v['python']}, {v['platform']}")


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


@contextmanager
def signals_held():
    """Hold SIGINT and SIGTERM during the block and deliver them, to their own handlers, when it ends.

    A save and the record that it happened (``saved_epoch = ...``) must not be torn apart: a Ctrl-C landing
    between ``os.replace`` and the next line would otherwise report the previous epoch as the last one saved.
    An ignored signal stays ignored; outside the main thread (where handlers cannot be set) nothing is held.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught = []
    held = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    held = {s: h for s, h in held.items() if h is not signal.SIG_IGN}
    for s in held:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, h in held.items():
            signal.signal(s, h)
    for s in dict.fromkeys(caught):
        signal.raise_signal(s)


def atomic_target(path: str | os.PathLike) -> Path:
    """The file an :func:`atomic_write` temporary file (``.NAME.XXXXXXXX.tmpSUFFIX``) stands in for, or
    ``path`` itself: an error while writing the temporary file is reported with the name the user knows."""
    path = Path(path)
    m = re.fullmatch(r"\.(.+)\.[A-Za-z0-9_]{8}\.tmp.*", path.name)
    return path.with_name(m.group(1)) if m else path


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
    if isinstance(obj, (Path, torch.device)):
        return str(obj)
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def check_folder(folder, what: str = "folder") -> Path:
    """Create ``folder`` if needed and prove it writable with a temporary file, or raise
    :class:`ConfigError` saying why: a file where the folder or one of its parents should be (``mkdir``
    would only say "File exists" or "Not a directory"), no permission, a full disk."""
    folder = Path(folder)
    for p in (folder, *folder.parents):
        if p.is_dir():
            break
        if p.exists():
            where = "is a file" if p == folder else f"sits under {str(p)!r}, which is a file"
            raise ConfigError(f"the {what} {str(folder)!r} {where}, not a folder: choose another path")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as f:
            f.write(b"x")
            f.flush()
            os.fsync(f.fileno())
    except OSError as e:
        raise ConfigError(f"cannot write to the {what} {str(folder)!r}: {e.strerror or e}") from e
    return folder


class FolderLock:
    """An advisory lock on a folder (``fcntl.flock`` on ``FOLDER/.lock``) for the life of a ``with`` block.

    ``name`` picks another lock file in the folder (``.OUT.json.lock``: one lock per output file, so
    commands writing different files of one folder do not exclude each other).

    A second process asking for the same folder gets a :class:`ConfigError` naming the holder (pid,
    host, command, start time). The kernel drops the lock when its process ends, however it ends, so a
    killed run never leaves a stale lock behind (the file itself stays, harmless).
    """

    def __init__(self, folder, what: str = "folder", name: str = ".lock"):
        self.folder, self.what, self.name, self._fd = Path(folder), what, name, None
        self.subject = self.folder  # what the messages name

    def __enter__(self):
        import fcntl

        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.folder / self.name, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ConfigError(f"cannot use {self.what} {str(self.subject)!r}: {e.strerror or e}") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise ConfigError(f"{self.what} {str(self.subject)!r} is in use by {holder}; wait for it to finish "
                              "or choose another folder") from None
        os.ftruncate(fd, 0)
        os.write(fd, (f"pid {os.getpid()} on {socket.gethostname()} ({' '.join(sys.argv[:3])[:200]}, "
                      f"since {time.strftime('%Y-%m-%d %H:%M:%S')})").encode())
        self._fd = fd
        return self

    def __exit__(self, *exc):
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the lock
            self._fd = None


class FileLock(FolderLock):
    """A :class:`FolderLock` on one output file ``path`` (``.NAME.lock`` beside it): a second command
    writing the same file is refused, commands writing other files of that folder are not."""

    def __init__(self, path, what: str = "output"):
        path = Path(path)
        super().__init__(path.parent, what, name=f".{path.name}.lock")
        self.subject = path
