r"""Sweeps: one experiment command over a grid of settings, as independent jobs for a cluster scheduler.

A sweep is planned once (:func:`plan`, ``vaegap sweep-plan``): the cartesian product of the grid's values,
each combination one job — the base command with ``--NAME VALUE`` for every grid axis and its own output
folder. The plan goes to ``SWEEP/sweep.json`` and, one shell command per line, to ``SWEEP/jobs.txt``, so any
scheduler runs it: a SLURM array job runs line ``$SLURM_ARRAY_TASK_ID`` with ``vaegap sweep-run SWEEP --job
$SLURM_ARRAY_TASK_ID`` (:func:`run_job`); a workstation runs them all with ``xargs`` or GNU ``parallel`` over
``jobs.txt``. The jobs share nothing but the file system: each is an ordinary experiment run, resumable as
such, and a failed job is rerun alone.

:func:`merge` (``vaegap sweep-merge``) collects every job's results file (``results.json`` of an experiment
folder, or ``STEM.json`` of a gap report) into ``SWEEP/merged.json`` and a table ``SWEEP/merged.md``: one row
per job, the grid's settings and the requested fields, or the mean ± SD over one axis (e.g. the seeds)
(``vaegap quickstart``'s ``OUT/gaps.json`` is found too). Jobs
without results are listed as missing and the merge says it is incomplete; it is never presented as whole.
"""
from __future__ import annotations

import itertools
import json
import math
import re
import shlex
import statistics
import subprocess
from pathlib import Path

from ..utils import ConfigError, atomic_write_json, atomic_write_text, check_folder, provenance

PLAN = "sweep.json"
JOBS = "jobs.txt"
_AXIS = re.compile(r"^([a-z][a-z0-9_-]*)=(.+)$")

#: fields shown for gap reports when none are asked for: the summary means of the headline rows
GAP_FIELDS = ("summary.log_px.mean", "summary.amortized.mean", "summary.inference.mean")


def parse_grid(axes: list[str]) -> dict[str, list[str]]:
    """``["seed=0,1,2", "latent-dim=10,20"]`` → ``{"seed": ["0", "1", "2"], "latent-dim": ["10", "20"]}``."""
    grid = {}
    for axis in axes:
        m = _AXIS.match(axis)
        if not m or not all(v.strip() for v in m.group(2).split(",")):
            raise ConfigError(f"--grid {axis!r} is not allowed: expected OPTION=V1,V2,... with the option's name "
                              "without its dashes, e.g. --grid seed=0,1,2")
        name = m.group(1)
        if name in grid:
            raise ConfigError(f"--grid {name} is given twice: give all its values in one --grid {name}=V1,V2,...")
        grid[name] = [v.strip() for v in m.group(2).split(",")]
    return grid


def job_name(settings: dict[str, str]) -> str:
    """A folder name made of the settings, e.g. ``seed=0_latent-dim=10``."""
    return "_".join(f"{k}={re.sub(r'[^A-Za-z0-9.+-]', '-', v)}" for k, v in settings.items()) or "job"


def plan(sweep_dir, command: list[str], grid: dict[str, list[str]], out_option: str = "--out",
         out_suffix: str = "", overwrite: bool = False) -> dict:
    """Write the jobs of ``command`` over ``grid`` to ``sweep_dir`` (``sweep.json``, ``jobs.txt``).

    :param command: the base command as a list of words (e.g. ``["python", "-m", "experiments.gpvae_gaps",
        "--profile", "cpu"]``); it must not set the grid's options nor ``out_option`` itself. ``{job}`` in a
        word stands for the job's folder ``SWEEP/jobs/<job name>`` (e.g. ``--run-dir {job}/run``: a folder
        of its own for each job's training run).
    :param out_option: the option naming a job's output; its value is ``SWEEP/jobs/<job name><out_suffix>``
        (``out_suffix="/gaps"`` for commands whose ``--out`` is a file stem, such as ``vaegap gaps``).
    :param overwrite: replace a different plan already in ``sweep_dir`` (results of its jobs stay).
    :returns: the plan.
    """
    if not command:
        raise ConfigError("no command to sweep: give it after --, e.g. vaegap sweep-plan --out S --grid seed=0,1 "
                          "-- python -m experiments.gpvae_gaps --quick")
    if not grid:
        raise ConfigError("a sweep needs at least one --grid OPTION=V1,V2,...")
    taken = [w for w in command if w.split("=")[0] in {out_option, *(f"--{k}" for k in grid)}]
    if taken:
        raise ConfigError(f"the command sets {', '.join(taken)} itself: the sweep sets it for each job; remove it")
    sweep_dir = check_folder(sweep_dir, "sweep folder")
    jobs = []
    for values in itertools.product(*grid.values()):
        settings = dict(zip(grid, values))
        name = job_name(settings)
        folder = str(sweep_dir.resolve() / "jobs" / name)  # absolute: a job may start anywhere
        out = folder + out_suffix
        words = [*(w.replace("{job}", folder) for w in command), *(w for k, v in settings.items() for w in (f"--{k}", v)),
                 out_option, out]
        jobs.append({"name": name, "settings": settings, "out": out, "command": shlex.join(words)})
    new = {"command": command, "grid": grid, "out_option": out_option, "out_suffix": out_suffix, "jobs": jobs}
    path = sweep_dir / PLAN
    if path.exists() and not overwrite:
        old = json.loads(path.read_text())
        if {k: old.get(k) for k in new} != new:
            raise ConfigError(f"{path} holds another sweep: choose another folder, or pass --overwrite to replace "
                              "its plan (results of its jobs are kept)")
    atomic_write_json(path, {**new, "planned_with": provenance()})
    atomic_write_text(sweep_dir / JOBS, "".join(j["command"] + "\n" for j in jobs))
    return new


def read_plan(sweep_dir) -> dict:
    path = Path(sweep_dir) / PLAN
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{str(sweep_dir)!r} is not a sweep folder: no {PLAN} (plan one with vaegap sweep-plan)") \
            from None
    except ValueError as e:
        raise ConfigError(f"{path} is damaged ({e}): plan the sweep again with vaegap sweep-plan --overwrite") from e


def run_job(sweep_dir, job: int) -> int:
    """Run job number ``job`` (1-based, the line of ``jobs.txt``); returns its exit status."""
    jobs = read_plan(sweep_dir)["jobs"]
    if not 1 <= job <= len(jobs):
        raise ConfigError(f"--job {job} is not allowed: the sweep {str(sweep_dir)!r} has jobs 1..{len(jobs)}")
    words = shlex.split(jobs[job - 1]["command"])
    try:
        return subprocess.run(words).returncode
    except (FileNotFoundError, PermissionError) as e:
        raise ConfigError(f"job {job}: cannot start {words[0]!r} ({e.strerror}); run the sweep where the command is "
                          "on PATH (e.g. with the project's virtual environment active)") from None


def _results_file(out: str) -> Path | None:
    """A finished job's results: ``OUT/results.json`` (an experiment folder), ``OUT.json`` (a report stem) or
    ``OUT/gaps.json`` (``vaegap quickstart``'s folder)."""
    for path in (Path(out) / "results.json", Path(out + ".json"), Path(out) / "gaps.json"):
        if path.is_file():
            return path
    return None


def field(results: dict, path: str):
    """The value at the dotted ``path`` of ``results`` (list items by index), or None where it is absent."""
    value = results
    for part in path.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
            value = value[int(part)]
        else:
            return None
    return value


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    return "–" if v is None else str(v)


def _mean_sd(values: list) -> str:
    nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)]
    if len(nums) < 2:
        return f"{nums[0]:.3f} (n=1)" if nums else "–"
    return f"{statistics.mean(nums):.3f} ± {statistics.stdev(nums):.3f} (n={len(nums)})"


def merge(sweep_dir, fields: list[str] | None = None, over: str | None = None) -> dict:
    """Collect the jobs' results into ``SWEEP/merged.json`` and ``SWEEP/merged.md``.

    :param fields: dotted paths into each job's results file to tabulate (default for gap reports:
        :data:`GAP_FIELDS`).
    :param over: a grid axis to aggregate over: one row per combination of the other axes, each field as
        mean ± SD over the finished jobs along ``over``.
    :returns: the merged record; ``complete`` is False while jobs are missing.
    """
    sweep_dir = Path(sweep_dir)
    p = read_plan(sweep_dir)
    if over is not None and over not in p["grid"]:
        raise ConfigError(f"--over {over!r} is not an axis of this sweep: choose one of {', '.join(p['grid'])}")
    jobs, missing = [], []
    for j in p["jobs"]:
        path = _results_file(j["out"])
        results = None if path is None else json.loads(path.read_text())
        if results is None:
            missing.append(j["name"])
        jobs.append({**j, "results_file": None if path is None else str(path), "results": results})
    done = [j for j in jobs if j["results"] is not None]
    if fields is None:
        fields = list(GAP_FIELDS) if done and all("summary" in j["results"] for j in done) else []
    axes = [a for a in p["grid"] if a != over]
    rows = []
    if over is None:
        header = [*p["grid"], *fields]
        for j in done:
            rows.append([*j["settings"].values(), *(_fmt(field(j["results"], f)) for f in fields)])
    else:
        header = [*axes, f"jobs over {over}", *fields]
        groups: dict[tuple, list] = {}
        for j in done:
            groups.setdefault(tuple(j["settings"][a] for a in axes), []).append(j)
        for key, members in groups.items():
            rows.append([*key, str(len(members)),
                         *(_mean_sd([field(m["results"], f) for m in members]) for f in fields)])
    merged = {"sweep": {k: p[k] for k in ("command", "grid", "out_option", "out_suffix")}, "fields": fields,
              "over": over, "complete": not missing, "missing": missing, "jobs": jobs, "merged_with": provenance()}
    table = "| " + " | ".join(header) + " |\n|" + "---|" * len(header) + "\n"
    table += "".join("| " + " | ".join(r) + " |\n" for r in rows)
    status = (f"All {len(jobs)} jobs finished." if not missing else
              f"INCOMPLETE: {len(missing)} of {len(jobs)} jobs have no results yet ({', '.join(missing)}); "
              "the table shows the finished ones only.")
    md = f"# Sweep {sweep_dir.name}\n\n`{shlex.join(p['command'])}` over {p['grid']}. {status}\n\n{table}"
    atomic_write_json(sweep_dir / "merged.json", merged)
    atomic_write_text(sweep_dir / "merged.md", md)
    return merged
