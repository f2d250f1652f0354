"""Where data files are looked for.

:func:`candidate_dirs`: the explicit ``data_dir`` argument, then the directory named by the
environment variable ``PYRO_VAEGAP_DATA``, then ``~/.cache/pyro_vaegap``. Within each directory a
ready-made file beats a cache of our own binarization, and an earlier directory beats a later one,
so an explicitly passed directory always wins over a download cache.
"""

from __future__ import annotations

import os
import pathlib

from .errors import DataError


DATA_ENV = "PYRO_VAEGAP_DATA"


def candidate_dirs(data_dir=None) -> list[pathlib.Path]:
    """Directories searched for data files, in priority order.

    :param data_dir: an explicit directory (str or path); searched first when given.
    :returns: ``[data_dir, $PYRO_VAEGAP_DATA, ~/.cache/pyro_vaegap]`` with absent entries
        (no argument, unset or empty variable) and duplicates left out. The directories need
        not exist.
    """
    dirs = []
    if data_dir is not None and str(data_dir) != "":
        dirs.append(pathlib.Path(data_dir).expanduser())
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

