"""The one error path of every command and experiment: a user error is one line and exit status 2.

Everything a user can cause (a bad option or file, damaged data or checkpoint, a folder in use, a full
or read-only disk, running out of memory, Ctrl-C or SIGTERM) ends with one line ``PROG: error: ...`` on
stderr and exit status 2 (:func:`run_command`); ``--debug`` shows the Python traceback instead. Anything
else is a bug and keeps its traceback. A closed output pipe (``vaegap gaps | head``) does not stop a
command half way: its output goes to ``os.devnull`` and the command finishes and saves its results.
"""
from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import warnings
from pathlib import Path

import torch

from ..data import DataError
from ..utils import ConfigError, ConfigWarning, atomic_target, provenance

#: errors caused by the user's input or data: reported in one line, never as a traceback
USER_ERRORS = (ConfigError, DataError, FloatingPointError)

#: what an OSError's errno means for the user, and what to do; other errnos are bugs (traceback)
OS_ERRORS = {
    errno.ENOSPC: ("no space left on the device (the disk is full)", "free some space, then run the command again"),
    errno.EDQUOT: ("the disk quota is exceeded", "free some space, then run the command again"),
    errno.EACCES: ("permission denied", "choose a folder you may write to, or change its permissions"),
    errno.EPERM: ("operation not permitted", "choose a folder you may write to, or change its permissions"),
    errno.EROFS: ("the file system is read-only", "choose a folder on a writable disk"),
    errno.ENOTDIR: ("a part of the path is a file, not a folder", "choose another path"),
    errno.ENAMETOOLONG: ("the file name is too long", "choose a shorter path"),
}


def is_out_of_memory(e: BaseException) -> bool:
    """Python's MemoryError, torch's OutOfMemoryError (CUDA), or the RuntimeError of torch's CPU allocator."""
    return isinstance(e, (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))) or (
        isinstance(e, RuntimeError) and any(s in str(e) for s in ("out of memory", "can't allocate memory")))


def user_error(e: BaseException, oom_hint: str | None = None) -> str | None:
    """The one-line message of an exception the user caused, or None for a bug (which keeps its traceback)."""
    if isinstance(e, USER_ERRORS):
        return str(e).replace("\n", " ")
    if isinstance(e, KeyboardInterrupt):
        return ("interrupted before the command finished; nothing was half-written, and files saved before are "
                "intact: run the command again to start it afresh")
    if is_out_of_memory(e):
        return f"out of memory: lower {oom_hint or 'the sizes of this run (see --help)'}, then run the command again"
    if isinstance(e, OSError) and e.errno in OS_ERRORS:
        cause, fix = OS_ERRORS[e.errno]
        writing = "writing " if e.errno in (errno.ENOSPC, errno.EDQUOT) else ""
        where = f"{writing}{str(atomic_target(e.filename))!r}: " if e.filename else ""
        return f"{where}{cause}; {fix} (nothing was half-written: files saved before are intact)"
    return None


def _close_progress_bars() -> None:
    """Close the progress bars an exception left open, so that the error message starts on a clean line."""
    from tqdm import tqdm

    for bar in list(getattr(tqdm, "_instances", ())):
        bar.close()


class ClosedPipeGuard:
    """``sys.stdout`` while a command runs: when the reader goes away (``vaegap gaps | head``), the rest of
    the output goes to ``os.devnull`` (the recipe of Python's documentation) and the command goes on to
    finish and save its results, instead of dying half way through an evaluation."""

    def __init__(self, stream):
        self.stream, self.broken = stream, False

    def write(self, text):
        try:
            return self.stream.write(text)
        except BrokenPipeError:
            self._closed()
            return len(text)

    def flush(self):
        try:
            self.stream.flush()
        except BrokenPipeError:
            self._closed()

    def _closed(self):
        self.broken = True
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), self.stream.fileno())  # the final flush cannot fail again
        except (OSError, ValueError, AttributeError):  # a stream without a file descriptor
            self.stream = open(os.devnull, "w")

    def __getattr__(self, name):
        return getattr(self.stream, name)


def run_command(prog: str, fn, *args, debug: bool = False, oom_hint: str | None = None) -> int:
    """``fn(*args)``; returns the exit status: 0, or 2 after a user error, printed as one line
    ``prog: error: ...`` on stderr (:func:`user_error`: bad input, damaged files, a folder in use, a full or
    read-only disk, out of memory, Ctrl-C or SIGTERM). A closed output pipe does not stop the command (its output goes
    to ``os.devnull``); it ends with status 2 and no message. ``debug`` re-raises every user error with its
    traceback, and any other exception is a bug and always propagates with its traceback.
    :class:`~pyro_vaegap.utils.ConfigWarning` prints as one line ``prog: warning: ...``."""
    provenance()  # the code this command starts with is what its results record

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, ConfigWarning):
            print(f"{prog}: warning: {message}", file=sys.stderr)
        else:
            default_show(message, category, filename, lineno, file, line)

    stdout = sys.stdout
    guard = sys.stdout = ClosedPipeGuard(stdout)
    # SIGTERM (``kill``, a batch scheduler's time limit) stops a command as Ctrl-C does: finished work
    # kept, one line saying where it stopped and how to resume, instead of a silent death
    terminate = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _interrupt) if terminate else None
    with warnings.catch_warnings():
        default_show = warnings.showwarning
        warnings.showwarning = show
        warnings.simplefilter("always", ConfigWarning)
        try:
            fn(*args)
            guard.flush()  # a closed pipe shows up here, not at interpreter exit
        except BaseException as e:  # noqa: BLE001 - sorted into user errors and bugs right here
            message = None if debug else user_error(e, oom_hint)
            if message is None:
                raise
            _close_progress_bars()
            print(f"{prog}: error: {message}", file=sys.stderr)
            return 2
        finally:
            sys.stdout = guard.stream if guard.broken else stdout
            if terminate:
                signal.signal(signal.SIGTERM, previous)
    return 2 if guard.broken else 0


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def run_main(main_fn, argv=None, oom_hint: str | None = None) -> None:
    """Run an experiment's ``main(argv)`` through :func:`run_command` and exit with its status when it is not 0.

    The experiment is named by its file (``"__main__"`` under ``python -m``); the body parses its own options, so
    ``--debug`` is read from ``argv`` here."""
    module = sys.modules[main_fn.__module__]
    argv = sys.argv[1:] if argv is None else argv
    code = run_command(Path(module.__file__).stem, main_fn, argv, debug="--debug" in argv, oom_hint=oom_hint)
    if code:
        raise SystemExit(code)
