"""Options and profiles of commands and experiments, declared as data.

Every experiment's parser comes from :func:`make_parser` (``--out``, ``--seed``, ``--quiet``, ``--threads``,
``--device``, ``--debug``); a bad option is one line ``NAME: error: ... (see PROG --help)`` and exit
status 2 (:class:`Parser`), like every other error (:mod:`pyro_vaegap.harness.errors`).

A **profile** is a named set of settings (:class:`Profiles`: ``quick``, ``cpu``, ``paper``, ...): each setting
is an option whose default is "the profile's", so ``--profile paper --epochs 10`` is the paper's settings
with 10 epochs. ``--quick`` is ``--profile quick``.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from typing import Any, Callable

from ..utils import THREADS_ENV, ConfigError, resolve_device, set_threads


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``NAME: error: MESSAGE (see PROG --help)`` and exit status 2.

    ``error_name`` is ``vaegap`` for every subcommand, so a bad option reads like every other error
    instead of argparse's usage block followed by ``vaegap train: error: ...``."""

    def __init__(self, *args, error_name: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.error_name = error_name or self.prog

    def error(self, message):
        self.exit(2, f"{self.error_name}: error: {message} (see {self.prog} --help)\n")

    def parse_args(self, args=None, namespace=None):
        """argparse's, but an unknown option is reported by the subcommand's parser (its ``--help`` is
        the one that lists the options), not the top-level one."""
        known, extras = self.parse_known_args(args, namespace)
        if extras:
            commands = getattr(self, "commands", {})
            commands.get(getattr(known, "command", None), self).error(f"unrecognized arguments: {' '.join(extras)}")
        return known


def common_options() -> argparse.ArgumentParser:
    """Options every command takes (a parent parser): ``--threads`` and ``--debug``."""
    c = argparse.ArgumentParser(add_help=False)
    c.add_argument("--threads", type=int, default=None,
                   help=f"torch CPU threads (default: ${THREADS_ENV}, else 1; one thread does not oversubscribe a "
                        "shared machine)")
    c.add_argument("--debug", action="store_true",
                   help="show the Python traceback of an error instead of its one-line message (for bug reports)")
    return c


def device_option() -> argparse.ArgumentParser:
    """``--device`` (a parent parser), for every command and experiment that computes."""
    d = argparse.ArgumentParser(add_help=False)
    d.add_argument("--device", default="cpu",
                   help="cpu, cuda or cuda:N (cpu). Under torchrun a bare cuda means the GPU of the process's "
                        "LOCAL_RANK. Asking for CUDA where there is none is an error, never a silent CPU run")
    return d


#: ``--workers`` of the commands that evaluate gap reports (:func:`~pyro_vaegap.harness.gap_runs.run_gaps`)
WORKERS_HELP = ("processes computing the evaluation's pieces, each with --threads threads; the report is the same "
                "for any number (default: as many as fit the cores this process may use, os.sched_getaffinity, "
                "divided by --threads; 1 on a GPU); --workers 1 evaluates in this process")


def make_parser(name: str, description: str, profiles: "Profiles | None" = None) -> Parser:
    """A parser with the options every experiment has: ``--out``, ``--seed``, ``--quiet``, ``--threads``,
    ``--device``, ``--debug`` (and, with ``profiles``, ``--profile``, ``--quick`` and every profile setting); a bad
    option is one line ``NAME: error: ...`` and exit status 2, like every other error."""
    p = Parser(prog=f"python -m experiments.{name}", description=description, error_name=name,
               formatter_class=argparse.ArgumentDefaultsHelpFormatter, parents=[device_option()])
    p.add_argument("--out", default=f"results/{name}",
                   help="results folder (JSON, markdown, PNG figures and one training-run folder per model)")
    p.add_argument("--seed", type=int, default=0, help="seed of training (weights, minibatches) and evaluation")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.add_argument("--threads", type=int, default=None,
                   help="torch CPU threads of this process (default: $PYRO_VAEGAP_THREADS, else 1)")
    p.add_argument("--debug", action="store_true",
                   help="show the Python traceback of an error instead of its one-line message (for bug reports)")
    if profiles is not None:
        profiles.add_to(p)
    return p


def check_numbers(parser, args, positive=(), nonneg=(), probability=()) -> None:
    """``parser.error`` (exit status 2) unless each of ``positive`` is > 0, each of ``nonneg`` >= 0 and each of
    ``probability`` in (0, 1) (option dests; an option left at None is not checked)."""
    for dests, ok, allowed in ((positive, lambda v: v > 0, "> 0"), (nonneg, lambda v: v >= 0, ">= 0"),
                               (probability, lambda v: 0 < v < 1, "in (0, 1)")):
        for dest in dests:
            v = getattr(args, dest)
            if v is not None and not ok(v):
                parser.error(f"--{dest.rstrip('_').replace('_', '-')}={v} is not allowed: it must be {allowed}")


def parse_args(parser: argparse.ArgumentParser, argv, positive=(), nonneg=(), probability=(),
               profiles: "Profiles | None" = None):
    """Parse ``argv``, fill in the chosen profile's settings (``profiles``), set the threads, resolve the device
    and check numeric options; a bad value calls ``parser.error`` (exit status 2).

    :param positive: option dests that must be > 0; ``nonneg``: >= 0; ``probability``: in (0, 1).
    """
    args = parser.parse_args(argv)
    if profiles is not None:
        profiles.apply(args)
    if args.threads is not None and args.threads < 1:
        parser.error(f"--threads={args.threads} is not allowed: it must be >= 1")
    set_threads(args.threads)
    try:
        args.device = resolve_device(args.device)  # a GPU asked for and absent stops here, before any work
    except ConfigError as e:
        parser.error(str(e))
    check_numbers(parser, args, positive, ("seed", *nonneg), probability)
    return args


@dataclass(frozen=True)
class Setting:
    """One option a profile sets: its type, help text, ``choices`` and ``nargs`` (``"+"``: a list); ``flag``
    defaults to ``--dest``."""

    type: Callable = int
    help: str = ""
    choices: tuple | None = None
    flag: str | None = None
    nargs: str | None = None


@dataclass
class Profiles:
    """Named sets of settings (``{"quick": {...}, "cpu": {...}, "paper": {...}}``), each a value of every option
    in ``settings``; the options a user gives override the profile's values.

    :param profiles: profile name -> {option dest: value}; every profile names the same options (a profile may
        leave one out: it is then ``None``, meaning "not used by that profile").
    :param settings: option dest -> :class:`Setting` (the options :meth:`add_to` adds, each defaulting to the
        profile's value).
    :param default: the profile used without ``--profile``.
    :param help: what each profile is for, shown by ``--help``.
    """

    profiles: dict[str, dict[str, Any]]
    settings: dict[str, Setting] = field(default_factory=dict)
    default: str = "cpu"
    help: dict[str, str] = field(default_factory=dict)

    def add_to(self, parser, choose: bool = True) -> None:
        """Add ``--profile``, ``--quick`` and an option per setting to ``parser``; ``choose=False`` adds only the
        settings (more settings of profiles that another :class:`Profiles` of the same names lets the user choose)."""
        if not choose:
            return self._add_settings(parser)
        names = [n for n in self.profiles if n != "quick"]
        text = "; ".join(f"{n}: {self.help[n]}" for n in names if n in self.help)
        parser.add_argument("--profile", choices=tuple(self.profiles), default=self.default,
                            help="named set of settings" + (f" ({text})" if text else "")
                                 + "; an option given on the command line overrides the profile's value")
        if "quick" in self.profiles:
            base = self.profiles.get(self.default, {})
            changed = {k: v for k, v in self.profiles["quick"].items() if k not in base or base[k] != v}
            parser.add_argument("--quick", action="store_true",
                                help="the quick profile: a smoke run of the whole pipeline whose numbers mean nothing "
                                     "(" + ", ".join(f"{k} {v}" for k, v in changed.items()) + ")")
        self._add_settings(parser)

    def _add_settings(self, parser) -> None:
        for dest, s in self.settings.items():
            values = ", ".join(f"{n} {self.profiles[n].get(dest)}" for n in self.profiles)
            kw = {"choices": s.choices} if s.choices else {}
            if s.nargs:
                kw["nargs"] = s.nargs
            parser.add_argument(s.flag or "--" + dest.rstrip("_").replace("_", "-"), dest=dest, type=s.type,
                                default=None, help=f"{s.help} (default: the profile's: {values})".lstrip(), **kw)

    def chosen(self, args) -> str:
        """The profile's name: ``quick`` with ``--quick``, else ``--profile``."""
        return "quick" if getattr(args, "quick", False) else getattr(args, "profile", self.default)

    def apply(self, args) -> dict:
        """Fill in every setting ``args`` leaves at None from the chosen profile (``args.profile`` is set to its
        name); returns the settings in force."""
        args.profile = self.chosen(args)
        values = self.profiles[args.profile]
        for dest, v in values.items():
            if getattr(args, dest, None) is None:
                setattr(args, dest, v)
        return {k: getattr(args, k) for k in values}

    def argv(self, name: str) -> list[str]:
        """The profile ``name`` as command-line options (for driving a command of the same options)."""
        return [a for k, v in self.profiles[name].items() if v is not None
                for a in ("--" + k.rstrip("_").replace("_", "-"), *map(str, v if isinstance(v, list) else [v]))]
