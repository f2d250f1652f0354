"""A gap report as a command makes it: checked output stem, resumable pieces, the paper's settings beside ours.

:func:`run_gaps` is what ``vaegap gaps``, ``vaegap quickstart`` and the Cremer experiments call: the report
of :func:`pyro_vaegap.report.compute.gap_report` written to ``STEM.json`` / ``STEM.md``, its finished pieces kept in
``STEM.partial/`` until then (so an interrupted evaluation resumes), computed by every rank when launched
by torchrun.
"""
from __future__ import annotations

import multiprocessing
import pickle
import shutil
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from contextlib import nullcontext
from pathlib import Path

import torch

from ..data import evaluation_rows, load_dataset
from ..training.distributed import barrier, process_group, world_from_env
from ..report.compute import gap_report
from ..report.config import GapConfig
from ..report.paper_columns import paper_for
from ..runs.config import TrainConfig
from ..utils import ConfigError, ConfigWarning, FolderLock, check_folder, check_positive_int

#: the splits a gap report may evaluate
EVAL_SPLITS = ("train", "valid", "test")


def check_output_stem(stem, overwrite: bool = False) -> Path:
    """Refuse an output stem that already holds a finished report (unless ``overwrite``) or whose
    folder cannot be written, before anything is computed."""
    stem = Path(stem)
    done = [p for p in (stem.with_suffix(".json"), stem.with_suffix(".md")) if p.exists()]
    if done and not overwrite:
        raise ConfigError(f"{done[0]} already holds a finished report: pass --overwrite to replace it, or choose "
                          "another --out")
    check_folder(stem.parent, "output folder")
    return stem


def evaluation_data(dataset: str, split: str, num_points: int, seed: int, points: str = "random", data_dir=None,
                    download: bool = False):
    """``(x, description)``: ``num_points`` rows of ``split`` chosen by ``points`` (:func:`~pyro_vaegap.data.
    evaluation_rows`: a seeded random subset, or the first rows), and the words that say which."""
    if split not in EVAL_SPLITS:
        raise ConfigError(f"evaluation split {split!r} is not allowed: expected one of {', '.join(EVAL_SPLITS)}")
    x = load_dataset(dataset, split, data_dir=data_dir, download=download)
    if not 1 <= num_points <= x.shape[0]:
        raise ConfigError(f"--num-points {num_points} is not allowed: expected 1..{x.shape[0]} (the {split} split "
                          f"has {x.shape[0]} rows)")
    rows = evaluation_rows(x.shape[0], num_points, seed, points)
    words = {"train": "training", "valid": "validation", "test": "test"}[split]
    what = (f"the first {num_points} {words} points" if points == "first" else
            f"{num_points} {words} points (a random subset, seed {seed})")
    return x[rows], what


def paper_settings(tcfg: TrainConfig, gcfg: GapConfig, points: str) -> str:
    """Our settings beside the paper's Table 2 protocol, in one line; ``points`` says which were evaluated."""
    ais = (f"AIS {gcfg.ais_chains}×{gcfg.ais_steps}×{gcfg.ais_leapfrog} ({gcfg.ais_schedule}, {gcfg.ais_step_size} "
           f"step sizes)" if gcfg.ais else "AIS off")
    return (f"{tcfg.epochs} epochs ({tcfg.lr_schedule} lr), {points}, log p̂ = {gcfg.log_px_estimator}, {ais}, "
            f"IWAE and L[q] {max(gcfg.iwae_samples, gcfg.elbo_samples)}, L[q*] with {gcfg.local_samples} samples/step "
            f"(init {gcfg.local_init}).")


def run_gaps(model, guide, tcfg: TrainConfig, gcfg: GapConfig, x, out, progress=True, overwrite=False,
             points: str | None = None, split: str = "test", workers: int = 1):
    """The gap report of ``x`` into ``out.json`` / ``out.md``, checkpointed in ``out.partial/`` (kept
    if interrupted, so the same command resumes; removed once the report is saved).

    :param points: which points ``x`` holds, in words (recorded in the report; default "N test points").
    :param split: the split they come from (recorded; a paper's numbers are subtracted from ours only for
        points of the split the paper evaluated).
    :param workers: processes computing the evaluation's pieces (on the CPU; 1: all in this process). With
        ``W > 1``, ``W - 1`` spawned processes of this process's torch threads compute the chunks ``c`` with
        ``c % W = r`` for ``r = 1 … W-1`` into ``out.partial/`` while this one computes ``r = 0``; this process
        then assembles the report from the folder. A piece is seeded by its stage and chunk, so the report is
        the one-process report number for number; a stage of a single chunk (``data_chunk`` ≥ the points, or no
        ``local_data_chunk``) runs in one process, and no more processes are started than the stage with the
        most chunks has (:func:`max_pieces`). Not with torchrun, whose ranks are the workers.
    """
    workers = min(check_positive_int("workers", workers), max_pieces(gcfg, x.shape[0]))
    stem = check_output_stem(out, overwrite)
    partial = stem.with_name(stem.name + ".partial")
    points = points or f"{x.shape[0]} {dict(train='training', valid='validation').get(split, split)} points"
    t = time.time()
    rank, world = world_from_env()  # launched by torchrun: this process computes its share of the pieces
    with process_group(world, x.device), (FolderLock(partial, "evaluation checkpoint folder") if rank == 0 else nullcontext()):
        if world > 1:
            barrier()  # rank 0 holds the folder before any rank writes into it
            gap_report(model, guide, x, gcfg, family=tcfg.guide, progress=progress and rank == 0,
                       log=print if rank == 0 else None, checkpoint=partial, shard=(rank, world))
            barrier()  # every piece is on disk
            if rank != 0:
                return None
        elif workers > 1:
            _compute_shards(model, guide, x, gcfg, tcfg.guide, partial, workers, progress)
        rep = gap_report(model, guide, x, gcfg, family=tcfg.guide, progress=progress, checkpoint=partial,
                         log=print if world == 1 and workers == 1 else None)
        paper = paper_for(tcfg.to_dict())
        rep.meta.update({"train_config": tcfg.to_dict(), "wall_seconds": time.time() - t, "paper": paper,
                         "paper_settings": paper_settings(tcfg, gcfg, points) if paper else None,
                         "evaluation_points": points, "evaluation_split": split, "ranks": world,
                         "workers": workers if world == 1 else 1})
        paths = rep.save(stem)
    shutil.rmtree(partial, ignore_errors=True)
    print(rep.to_markdown())
    print("saved " + " and ".join(map(str, paths)))
    return rep


def max_pieces(gcfg: GapConfig, n: int) -> int:
    """The most pieces (chunks of datapoints) any stage of the evaluation of ``n`` points has: more processes
    than this would have nothing to compute."""
    counts = [-(-n // gcfg.data_chunk), -(-n // (gcfg.local_data_chunk or n))]
    if gcfg.ais:
        counts.append(-(-n // gcfg.ais_data_chunk))
    return max(counts)


def _shard(payload: bytes, gcfg: GapConfig, family: str, partial: Path, rank: int, world: int, threads: int) -> None:
    """A spawned worker of :func:`run_gaps`: the pieces of shard ``(rank, world)`` into ``partial``;
    ``payload``: the pickled ``(model, guide, x)``."""
    torch.set_num_threads(threads)
    model, guide, x = pickle.loads(payload)
    gap_report(model, guide, x, gcfg, family=family, progress=False, log=None, checkpoint=partial,
               shard=(rank, world))


def _compute_shards(model, guide, x, gcfg: GapConfig, family: str, partial: Path, workers: int, progress) -> None:
    """Every piece of the evaluation into ``partial``: shard 0 here, the others in ``workers - 1`` spawned
    processes (spawned, not forked: a forked child would inherit the parent's OpenMP state)."""
    if x.device.type != "cpu":
        raise ConfigError(f"--workers {workers} runs CPU processes; on {x.device} evaluate in one process "
                          "(--workers 1), or launch one rank per GPU with torchrun")
    # pickled here, once and before this process evaluates: the pool pickles submitted arguments in a background
    # thread, which would race with the evaluation below changing the modules' transient state
    try:
        payload = pickle.dumps((model, guide, x))
    except Exception as e:  # noqa: BLE001 - whatever stops the model reaching a worker: evaluate here
        warnings.warn(f"evaluating in one process, not {workers}: the model and guide cannot be sent to worker "
                      f"processes ({type(e).__name__}: {e})", ConfigWarning, stacklevel=3)
        return
    threads = torch.get_num_threads()
    with ProcessPoolExecutor(max_workers=workers - 1, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_shard, payload, gcfg, family, partial, r, workers, threads)
                   for r in range(1, workers)]
        gap_report(model, guide, x, gcfg, family=family, progress=progress, log=print if progress else None,
                   checkpoint=partial, shard=(0, workers))
        for f in futures:
            f.result()  # a worker's error is raised here, as it was raised there
