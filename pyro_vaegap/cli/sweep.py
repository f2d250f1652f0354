"""``vaegap sweep-plan``, ``sweep-run``, ``sweep-merge``: one experiment command over a grid of settings
(:mod:`pyro_vaegap.harness.sweep`)."""
from __future__ import annotations

import shlex
from pathlib import Path

from ..utils import ConfigError

def cmd_sweep_plan(args):
    from ..harness.sweep import parse_grid, plan

    command = args.command_words[1:] if args.command_words[:1] == ["--"] else args.command_words
    p = plan(args.out, command, parse_grid(args.grid), out_option=args.out_option, out_suffix=args.out_suffix,
             overwrite=args.overwrite)
    print(f"planned {len(p['jobs'])} jobs in {Path(args.out) / 'jobs.txt'} (one command per line); run job K with: "
          f"vaegap sweep-run {shlex.quote(str(args.out))} --job K; merge with: vaegap sweep-merge "
          f"{shlex.quote(str(args.out))}")


def cmd_sweep_run(args):
    from ..harness.sweep import run_job

    code = run_job(args.sweep, args.job)
    if code:
        raise ConfigError(f"job {args.job} of {args.sweep} exited with status {code} (its own error is above); "
                          "rerun it with the same command")


def cmd_sweep_merge(args):
    from ..harness.sweep import merge

    m = merge(args.sweep, fields=args.field or None, over=args.over)
    done = len(m["jobs"]) - len(m["missing"])
    print((Path(args.sweep) / "merged.md").read_text(), end="")
    print(f"merged {done} of {len(m['jobs'])} jobs into {Path(args.sweep) / 'merged.json'}"
          + ("" if m["complete"] else f"; INCOMPLETE, missing: {', '.join(m['missing'])}"))
