r"""Sharded gap evaluation over the processes of PyTorch's own launcher, ``torchrun``.

``torchrun --nproc-per-node N -m pyro_vaegap.cli gaps ...`` (or ``--nnodes M`` with a rendezvous
endpoint, for several machines sharing the output folder) runs the same command in ``N`` processes;
each reads its rank from the environment torchrun sets (``RANK``, ``WORLD_SIZE``). The evaluation is
cut into the pieces its checkpoint folder already keeps (a stage × a chunk of datapoints,
:class:`pyro_vaegap.gaps.Pieces`): rank ``r`` computes the chunks ``c`` with ``c % N == r`` into the
shared folder, all ranks meet at a barrier, and rank 0 assembles the report from the folder and
writes it. A piece's random numbers depend only on the seed, its stage and its chunk, so the
assembled report is the one a single process computes with the same settings, number for number
(same device and threads). Spread the local optimization with ``--local-data-chunk``; without it
that stage is one piece, computed by rank 0.

A rank that fails prints its error naming itself (``vaegap [rank 1/2]: error: ...``) and exits;
torchrun then stops the others, so no report is written from an incomplete set of pieces. The
finished pieces stay in the folder: the same command resumes, recomputing only what is missing.
"""
from __future__ import annotations

import os
from contextlib import contextmanager

import torch.distributed as dist

from .utils import ConfigError


def world_from_env() -> tuple[int, int]:
    """``(rank, world size)`` from torchrun's environment; ``(0, 1)`` when not launched by it."""
    try:
        rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    except ValueError:
        raise ConfigError(f"RANK={os.environ.get('RANK')!r} and WORLD_SIZE={os.environ.get('WORLD_SIZE')!r} must be "
                          "integers (they are set by torchrun)") from None
    if not (world >= 1 and 0 <= rank < world):
        raise ConfigError(f"RANK={rank} is not allowed with WORLD_SIZE={world}: expected 0 <= RANK < WORLD_SIZE")
    return rank, world


@contextmanager
def process_group(world: int):
    """Join torchrun's process group for the block (gloo: the evaluation's tensors stay on each rank, and
    only barriers cross processes); nothing when ``world == 1``."""
    if world == 1 or dist.is_initialized():
        yield
        return
    dist.init_process_group("gloo")
    try:
        yield
    finally:
        dist.destroy_process_group()


def barrier() -> None:
    """Wait for every rank (nothing outside a process group)."""
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def rank_name() -> str:
    """``" [rank r/N]"`` inside a torchrun job, else ``""``: error lines say which process failed."""
    try:
        rank, world = world_from_env()
    except ConfigError:
        return ""  # the command reports the bad environment itself, as a user error
    return f" [rank {rank}/{world}]" if world > 1 else ""

