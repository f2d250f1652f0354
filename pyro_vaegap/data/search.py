"""Where data files are looked for.

:func:`candidate_dirs`: the explicit ``data_dir`` argument alone when one is given (a directory the user
names is used or refused, never silently replaced), else the directory named by the environment variable
``PYRO_VAEGAP_DATA``, then ``~/.cache/pyro_vaegap``. Within each directory a ready-made file beats a
cache of our own binarization, and an earlier directory beats a later one.
"""

from __future__ import annotations

import os
import pathlib

from .errors import DataError


DATA_ENV = "PYRO_VAEGAP_DATA"


def candidate_dirs(data_dir=None) -> list[pathlib.Path]:
    """Directories searched for data files, in priority order: the one place every loader resolves them.

    :param data_dir: an explicit directory (str or path). When given it is the only directory searched
        (and the one a download writes to): a missing file there is an error naming it, so a run's
        ``config.json`` records the directory its data were read from, whatever ``$PYRO_VAEGAP_DATA`` says.
    :returns: ``[data_dir]``, or ``[$PYRO_VAEGAP_DATA, ~/.cache/pyro_vaegap]`` without it (an unset or
        empty variable left out). The directories need not exist.
    """
    if data_dir is not None and str(data_dir) != "":
        return [pathlib.Path(data_dir).expanduser()]
    dirs = []
    env_dir = os.environ.get(DATA_ENV, "")
    if env_dir:
        dirs.append(pathlib.Path(env_dir).expanduser())
    dirs.append(pathlib.Path.home() / ".cache" / "pyro_vaegap")
    unique = []
    for d in dirs:
        if d not in unique:
            unique.append(d)
    return unique


def _first_writable_dir(dirs: list[pathlib.Path]) -> pathlib.Path:
    """The first of ``dirs`` that exists (creating it if needed) and is writable."""
    for d in dirs:
        try:
            d.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(d, os.W_OK):
            return d
    raise DataError(f"none of the data directories is writable: {_format_dirs(dirs)}; pass --data-dir (data_dir=) "
                    "naming a folder you may write to")


def _format_dirs(dirs: list[pathlib.Path]) -> str:
    """The directories on one line (messages are one line), flagging those that do not exist."""
    return ", ".join(f"{d}" + ("" if d.is_dir() else " (does not exist)") for d in dirs)


def _location_fix(dirs: list[pathlib.Path], what: str = "it") -> str:
    """How to point the loaders at the data, for a message: with an explicit directory (``dirs`` from
    :func:`candidate_dirs` with ``data_dir``) only another ``--data-dir`` helps."""
    if dirs != candidate_dirs():
        return (f"pass --data-dir (data_dir=) naming the directory that holds {what} (a directory given that way "
                f"is the only one searched: {DATA_ENV} and the cache are not)")
    return f"set the environment variable {DATA_ENV} (or pass --data-dir, data_dir=) to the directory that holds {what}"
